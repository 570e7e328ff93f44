//! PostgreSQL access shared by the services: the diesel schema (generated), models of the shared
//! tables, the diesel-async + deadpool pool, and embedded migrations.

mod config;
pub mod migrate;
pub mod models;
mod pool;
pub mod schema;

pub use config::{DatabaseConfig, redact_url};
pub use pool::{DbConn, DbPool, PoolBuildError, PostgresProbe, build_pool, ensure_database_exists};

/// Re-exported so services use the same versions.
pub use diesel;
pub use diesel_async;
