//! The state every handler and job shares: pool, Twilio client, outbox, config, metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sb_db::{DbConn, DbPool};
use sb_events::outbox::Outbox;

use crate::config::TelephonyConfig;
use crate::error::TelephonyError;
use crate::metrics::TelephonyMetrics;
use sb_twilio::{Account, TwilioApi, TwilioClient, TwilioError};

/// The first wait before a Twilio request is sent again, and the longest.
const FIRST_RESEND_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_RESEND_PAUSE: Duration = Duration::from_secs(1);

/// Which failures a Twilio request is sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Reads: any transient failure (busy, unreachable, a 5xx, a timeout).
    AfterTransient,
    /// Requests that create something (placing a call): only when Twilio said it did not act
    /// (HTTP 429 or 503). After a timeout or another 5xx Twilio may have placed the call, and
    /// placing it again would ring the customer twice.
    IfNotActedOn,
}

impl Resend {
    fn allows(self, error: &TwilioError) -> bool {
        match self {
            Resend::AfterTransient => error.is_transient(),
            Resend::IfNotActedOn => error.is_safe_to_resend(),
        }
    }
}

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

    /// Runs a Twilio operation within `TWILIO_TIMEOUT`, sending it again after a transient
    /// failure while the budget allows (100 ms, then twice as long each time, at most 1 s
    /// apart). `resend` says which failures allow it; running out of time counts as
    /// unavailable.
    pub async fn twilio_call<T, F, Fut>(
        &self,
        operation: &'static str,
        resend: Resend,
        mut attempt: F,
    ) -> Result<T, TwilioError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TwilioError>>,
    {
        let budget = self.config.twilio.timeout;
        let deadline = Instant::now() + budget;
        let mut pause = FIRST_RESEND_PAUSE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(TwilioError::Unavailable(format!(
                    "no answer within {budget:?}"
                ))),
            };
            self.metrics.twilio_call(operation, &outcome);
            match outcome {
                Err(error) if resend.allows(&error) && Instant::now() + pause < deadline => {
                    tracing::debug!(operation, error = %error, ?pause, "Twilio busy or away; sending again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_RESEND_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// Absolute URL of one of the service's routes as Twilio reaches it.
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.config.public_base_url)
    }
}
