//! The state handlers, the namespace and jobs share: pool, outbox, verifier, config, metrics.

use std::sync::Arc;

use sb_auth::{GuestLinks, JwtVerifier};
use sb_db::{DbConn, DbPool};
use sb_events::outbox::Outbox;

use crate::config::SignalingConfig;
use crate::error::SignalingError;
use crate::metrics::SignalingMetrics;

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub outbox: Outbox,
    pub verifier: Arc<JwtVerifier>,
    pub config: Arc<SignalingConfig>,
    pub metrics: SignalingMetrics,
    /// Signaling's guest links (`None`: this deployment has no guest-link key).
    pub guest_links: Option<GuestLinks>,
}

impl AppState {
    /// Signaling's guest links from the configuration.
    pub fn guest_links(config: &SignalingConfig) -> Option<GuestLinks> {
        config
            .guest_links
            .secret
            .as_ref()
            .map(|secret| GuestLinks::scoped(secret.clone(), sb_auth::LinkScope::SIGNALING))
    }

    pub async fn conn(&self) -> Result<DbConn, SignalingError> {
        Ok(self.pool.get().await?)
    }
}
