//! PostgreSQL access shared by the services: the diesel schema (generated), models of the shared
//! tables, the diesel-async + deadpool pool, and embedded migrations.

mod cached;
mod config;
pub mod migrate;
pub mod models;
mod pool;
pub mod recording_access;
pub mod schema;
mod text_enum;

pub use cached::{CacheBySql, Cached};
pub use config::{DatabaseConfig, redact_url};
pub use pool::{
    DbConn, DbPool, PoolBuildError, PostgresProbe, build_pool, connection_lost,
    ensure_database_exists,
};

/// What a service does with its database at start-up: migrate when `MIGRATE_ON_START` is set,
/// then build the (lazy) pool.
pub async fn prepare(config: &DatabaseConfig) -> Result<DbPool, StartupError> {
    if config.migrate_on_start {
        migrate::run_pending(config).await?;
    }
    Ok(build_pool(config)?)
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error(transparent)]
    Pool(#[from] PoolBuildError),
}

/// Re-exported so services use the same versions.
pub use diesel;
pub use diesel_async;
