//! The state every handler and job shares.

use std::future::Future;
use std::sync::Arc;

use sb_db::{DbConn, DbPool};
use sb_events::Namespace;
use sb_events::outbox::Outbox;
use sb_livekit::{LiveKitApi, LiveKitClient, LiveKitError, TokenIssuer, WebhookVerifier};
use tokio_util::sync::CancellationToken;

use crate::config::MonitoringConfig;
use crate::error::MonitoringError;
use crate::metrics::MonitoringMetrics;

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub livekit: Arc<dyn LiveKitApi>,
    pub tokens: TokenIssuer,
    pub webhooks: Arc<WebhookVerifier>,
    pub outbox: Outbox,
    pub metrics: MonitoringMetrics,
    /// Core NATS: live streams subscribe to the service's own events.
    pub nats: async_nats::Client,
    pub namespace: Namespace,
    pub config: Arc<MonitoringConfig>,
    /// Cancelled when the service starts shutting down: live streams end at once instead of
    /// holding the process until SHUTDOWN_TIMEOUT.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        config: Arc<MonitoringConfig>,
        pool: DbPool,
        nats: async_nats::Client,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            livekit: Arc::new(LiveKitClient::new(&config.livekit)),
            tokens: TokenIssuer::new(config.livekit.clone()),
            webhooks: Arc::new(WebhookVerifier::new(&config.livekit)),
            outbox: Outbox::new(crate::SERVICE),
            metrics: MonitoringMetrics::register(registry)?,
            nats,
            namespace: config.namespace.clone(),
            config,
            shutdown: CancellationToken::new(),
        })
    }

    pub async fn conn(&self) -> Result<DbConn, MonitoringError> {
        Ok(self.pool.get().await?)
    }

    /// One LiveKit call, bounded by `LIVEKIT_TIMEOUT` and counted.
    pub async fn livekit_call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, LiveKitError>>,
    ) -> Result<T, LiveKitError> {
        let outcome = sb_livekit::bounded(self.config.livekit_timeout, call).await;
        self.metrics.livekit_call(operation, &outcome);
        outcome
    }
}
