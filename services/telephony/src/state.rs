//! The state every handler and job shares: pool, Twilio client, outbox, config, metrics.

use std::future::Future;
use std::sync::Arc;

use sb_db::{DbConn, DbPool};
use sb_events::outbox::Outbox;

use crate::config::TelephonyConfig;
use crate::error::TelephonyError;
use crate::metrics::TelephonyMetrics;
use sb_twilio::{Account, TwilioApi, TwilioClient, TwilioError};

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub twilio: Arc<dyn TwilioApi>,
    pub outbox: Outbox,
    pub metrics: TelephonyMetrics,
    pub config: Arc<TelephonyConfig>,
}

impl AppState {
    pub fn new(
        config: Arc<TelephonyConfig>,
        pool: DbPool,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            twilio: Arc::new(TwilioClient::new(Account {
                account_sid: config.twilio.account_sid.clone(),
                auth_token: config.twilio.auth_token.clone(),
                api_base: config.twilio.api_base.clone(),
                insights_base: config.twilio.insights_base.clone(),
                timeout: config.twilio.timeout,
            })?),
            outbox: Outbox::new(crate::SERVICE),
            metrics: TelephonyMetrics::register(registry)?,
            config,
        })
    }

    pub async fn conn(&self) -> Result<DbConn, TelephonyError> {
        Ok(self.pool.get().await?)
    }

    /// Runs one Twilio API call with the configured timeout; a timeout counts as unavailable.
    pub async fn twilio_call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, TwilioError>>,
    ) -> Result<T, TwilioError> {
        let limit = self.config.twilio.timeout;
        let outcome = match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(TwilioError::Unavailable(format!(
                "no answer within {limit:?}"
            ))),
        };
        self.metrics.twilio_call(operation, &outcome);
        outcome
    }

    /// Absolute URL of one of the service's routes as Twilio reaches it.
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.config.public_base_url)
    }
}
