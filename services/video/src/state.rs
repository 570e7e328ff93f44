//! The state every handler and job shares: pool, LiveKit, token issuers, config, metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sb_auth::GuestLinks;
use sb_db::{DbConn, DbPool};
use sb_events::outbox::Outbox;
use sb_livekit::{LiveKitApi, LiveKitClient, LiveKitError, TokenIssuer, WebhookVerifier};

use crate::config::VideoConfig;
use crate::error::VideoError;
use crate::metrics::VideoMetrics;
use crate::storage::RecordingStorage;

/// Longest wait for the recordings bucket (deleting a file) before the request gives up.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub livekit: Arc<dyn LiveKitApi>,
    pub tokens: TokenIssuer,
    pub webhooks: Arc<WebhookVerifier>,
    pub guest_links: GuestLinks,
    pub outbox: Outbox,
    pub metrics: VideoMetrics,
    pub config: Arc<VideoConfig>,
    /// The recordings bucket (`RECORDING_S3_*`); `None` when egress keeps files elsewhere.
    pub storage: Option<RecordingStorage>,
}

impl AppState {
    pub fn new(
        config: Arc<VideoConfig>,
        pool: DbPool,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            livekit: Arc::new(LiveKitClient::new(&config.livekit)),
            tokens: TokenIssuer::new(config.livekit.clone()),
            webhooks: Arc::new(WebhookVerifier::new(&config.livekit)),
            guest_links: GuestLinks::new(config.guest_links.secret.clone()),
            outbox: Outbox::new(crate::SERVICE),
            metrics: VideoMetrics::register(registry)?,
            storage: config
                .recording
                .s3
                .as_ref()
                .map(|s3| RecordingStorage::new(s3, STORAGE_TIMEOUT))
                .transpose()?,
            config,
        })
    }

    pub async fn conn(&self) -> Result<DbConn, VideoError> {
        Ok(self.pool.get().await?)
    }

    /// Runs one LiveKit call with the configured timeout; a timeout counts as unavailable.
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
