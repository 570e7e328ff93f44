//! The state handlers, the namespace and jobs share: pool, outbox, verifier, config, metrics.

use std::sync::Arc;

use sb_auth::JwtVerifier;
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
}

impl AppState {
    pub async fn conn(&self) -> Result<DbConn, SignalingError> {
        Ok(self.pool.get().await?)
    }
}
