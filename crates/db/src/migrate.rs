//! Embedded migrations, run under a Postgres advisory lock so replicas starting together don't race.

use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Digest of the migrations embedded in [`MIGRATIONS`] (file names and contents, computed by the
/// build script from the same files): names caches of a migrated database, such as the tests'
/// template, after what this binary would apply rather than what is on disk now.
pub const MIGRATIONS_DIGEST: &str = env!("SB_MIGRATIONS_DIGEST");

/// Advisory lock key: "sb-migr" in ASCII, so it is recognisable in `pg_locks`.
const MIGRATION_LOCK_KEY: i64 = 0x73_62_2d_6d_69_67_72;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to {url} to migrate: {reason}")]
    Connect { url: String, reason: String },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("migration task panicked or was cancelled: {0}")]
    Task(String),
}

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

async fn with_locked_connection<T, F>(config: &DatabaseConfig, work: F) -> Result<T, MigrateError>
where
    T: Send + 'static,
    F: FnOnce(&mut Wrapper) -> Result<T, MigrateError> + Send + 'static,
{
    use diesel::{Connection, RunQueryDsl};
    let url = config.url.expose_secret().to_owned();
    let shown = config.redacted_url();
    tokio::task::spawn_blocking(move || {
        let mut conn = Wrapper::establish(&url).map_err(|e| MigrateError::Connect {
            url: shown,
            reason: e.to_string(),
        })?;
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(&mut conn)
            .map_err(|e| MigrateError::Migration(format!("cannot take the migration lock: {e}")))?;
        let result = work(&mut conn);
        // Closing the connection releases the lock too; unlock explicitly to be prompt.
        drop(
            diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
                .execute(&mut conn),
        );
        result
    })
    .await
    .map_err(|e| MigrateError::Task(e.to_string()))?
}

/// Applies pending migrations; returns the versions applied (empty when up to date).
pub async fn run_pending(config: &DatabaseConfig) -> Result<Vec<String>, MigrateError> {
    let applied = with_locked_connection(config, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| MigrateError::Migration(e.to_string()))
    })
    .await?;
    for version in &applied {
        tracing::info!(migration = %version, "applied migration");
    }
    Ok(applied)
}

/// Reverts every applied migration (development and the up/down/up test).
pub async fn revert_all(config: &DatabaseConfig) -> Result<Vec<String>, MigrateError> {
    with_locked_connection(config, |conn| {
        conn.revert_all_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| MigrateError::Migration(e.to_string()))
    })
    .await
}

/// Versions of the embedded migrations not yet applied.
pub async fn pending(config: &DatabaseConfig) -> Result<Vec<String>, MigrateError> {
    with_locked_connection(config, |conn| {
        conn.pending_migrations(MIGRATIONS)
            .map(|list| {
                list.iter()
                    .map(|m| m.name().to_string())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| MigrateError::Migration(e.to_string()))
    })
    .await
}
