//! The connection pool (diesel-async over tokio-postgres: no libpq), its readiness probe, and the
//! dev helper that creates the database.

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_platform::ReadinessProbe;
use secrecy::ExposeSecret;

use crate::config::{DatabaseConfig, redact_url};

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
#[error("cannot build the database pool: {0}")]
pub struct PoolBuildError(String);

/// Builds the pool. Lazy: no connection is opened until first use, so a service starts (and
/// answers `/healthz`) while Postgres is down; `/readyz` reports it.
pub fn build_pool(config: &DatabaseConfig) -> Result<DbPool, PoolBuildError> {
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new(config.url.expose_secret());
    Pool::builder(manager)
        .max_size(config.max_connections)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| PoolBuildError(e.to_string()))
}

/// Ready when a pooled connection answers `SELECT 1`.
pub struct PostgresProbe {
    pool: DbPool,
}

impl PostgresProbe {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

impl ReadinessProbe for PostgresProbe {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseUnreachable {
    #[error(
        "PostgreSQL is not reachable at {url}: {reason}. Start it with: pg_ctlcluster 15 main start (Debian), or set DATABASE_URL"
    )]
    Server { url: String, reason: String },
    #[error("cannot create database {database} at {url}: {reason}")]
    Create {
        database: String,
        url: String,
        reason: String,
    },
}

/// Development convenience: connects to the server's `postgres` database and creates the target
/// database if it is missing. Returns whether it was created.
pub async fn ensure_database_exists(config: &DatabaseConfig) -> Result<bool, DatabaseUnreachable> {
    let raw = config.url.expose_secret();
    let shown = redact_url(raw);
    let mut url = url::Url::parse(raw).map_err(|e| DatabaseUnreachable::Server {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    let database = url.path().trim_start_matches('/').to_owned();
    url.set_path("/postgres");
    let connect = AsyncPgConnection::establish(url.as_str());
    let mut admin = match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(DatabaseUnreachable::Server {
                url: shown,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(DatabaseUnreachable::Server {
                url: shown,
                reason: format!("no answer within {} ms", config.connect_timeout.as_millis()),
            });
        }
    };
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let exists: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&database)
            .get_result(&mut admin)
            .await
            .map_err(|e| DatabaseUnreachable::Server {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
    if exists.exists {
        return Ok(false);
    }
    let create = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
    match diesel::sql_query(create).execute(&mut admin).await {
        Ok(_) => Ok(true),
        // Another process created it between our check and our CREATE.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) if e.to_string().contains("already exists") => Ok(false),
        Err(e) => Err(DatabaseUnreachable::Create {
            database,
            url: shown,
            reason: e.to_string(),
        }),
    }
}
