//! The connection pool (diesel-async over tokio-postgres: no libpq), its readiness probe, and the
//! dev helper that creates the database.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_platform::ReadinessProbe;
use secrecy::ExposeSecret;
use tokio::runtime::RuntimeFlavor;

use crate::config::{DatabaseConfig, redact_url};

pub type DbConn = Object<AsyncPgConnection>;
type PgPool = Pool<AsyncPgConnection>;

/// A service's connection pools: one for each thread running a single-threaded runtime (every
/// actix HTTP worker), built on first use there, and one shared by everything else (the relay,
/// consumers and jobs on the multi-threaded runtime).
///
/// Why per worker: tokio-postgres drives each connection from a task on the runtime where it was
/// established. Shared by all workers, a query from a request crossed threads twice (request task
/// → connection task on another runtime → back), a futex wake-up each way: profiled, the join's
/// statements cost about twice pgbench's round trip. A worker's own pool keeps the query on its
/// thread; and since only that worker's requests use it, a worker stopping at shutdown cannot cut
/// a connection another worker's request is still draining on.
#[derive(Clone)]
pub struct DbPool {
    shared: PgPool,
    config: Arc<DatabaseConfig>,
}

thread_local! {
    /// This thread's pools, each beside the config of the `DbPool` it belongs to (tests run several
    /// services per process). A `Weak` both identifies it (its allocation cannot be reused while
    /// the `Weak` lives) and tells when that `DbPool` is gone.
    static WORKER_POOLS: RefCell<Vec<(Weak<DatabaseConfig>, PgPool)>> = const { RefCell::new(Vec::new()) };
}

impl DbPool {
    /// A connection: from this thread's pool on a single-threaded runtime, else from the shared one.
    pub async fn get(&self) -> Result<DbConn, PoolError> {
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::CurrentThread);
        let pool = if on_worker {
            self.worker_pool()
        } else {
            self.shared.clone()
        };
        pool.get().await
    }

    fn worker_pool(&self) -> PgPool {
        WORKER_POOLS.with_borrow_mut(|pools| {
            pools.retain(|(config, _)| config.strong_count() > 0);
            if let Some((_, pool)) = pools
                .iter()
                .find(|(config, _)| std::ptr::eq(config.as_ptr(), Arc::as_ptr(&self.config)))
            {
                return pool.clone();
            }
            // Built inside this thread's runtime, so its connections are driven from here. The
            // workers (one per core by default) split `max_connections` between them.
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let config = DatabaseConfig {
                max_connections: self.config.max_connections.div_ceil(workers).max(1),
                ..(*self.config).clone()
            };
            let pool = build_one(&config, "http").unwrap_or_else(|_| self.shared.clone());
            pools.push((Arc::downgrade(&self.config), pool.clone()));
            pool
        })
    }

    /// Closes the shared pool (worker pools close with their threads).
    pub fn close(&self) {
        self.shared.close();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the database pool: {0}")]
pub struct PoolBuildError(String);

/// Builds the pool. Lazy: no connection is opened until first use, so a service starts (and
/// answers `/healthz`) while Postgres is down; `/readyz` reports it.
///
/// Connections are opened on the runtime that builds the pool. tokio-postgres drives each
/// connection from a task spawned where it was established; opened from a request on one of
/// actix's per-worker runtimes, that task dies with the worker, and at graceful shutdown the idle
/// workers stop first: a request still draining on another worker then finds its pooled
/// connection closed under it (seen as a 503 mid-join in the SIGTERM test).
pub fn build_pool(config: &DatabaseConfig) -> Result<DbPool, PoolBuildError> {
    Ok(DbPool {
        shared: build_one(config, "background")?,
        config: Arc::new(config.clone()),
    })
}

/// `url` with its `application_name` (else `switchboard`) followed by `/role`: in
/// `pg_stat_activity`, a service's request connections (`http`, the workers' pools) are told from
/// its background ones (`background`: relay, consumers, jobs), and each backend's CPU can be
/// charged to one of them (sb-bench does). An unparseable URL is left as it is (connecting reports it).
pub fn with_application_role(url: &str, role: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let mut base = "switchboard".to_owned();
    let others: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| {
            if key == "application_name" {
                base = value.into_owned();
                None
            } else {
                Some((key.into_owned(), value.into_owned()))
            }
        })
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("application_name", &format!("{base}/{role}"));
    parsed.into()
}

fn build_one(config: &DatabaseConfig, role: &str) -> Result<PgPool, PoolBuildError> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // A checked-out connection is not pinged (`Verified` would cost every request a `SELECT 1`
    // round trip): a closed one is known from its client and dropped, and a connection the server
    // cut since fails its first query, which `connection_lost` turns into a 503.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        let runtime = runtime.clone();
        async move {
            match runtime {
                Some(runtime) => runtime
                    .spawn(async move { AsyncPgConnection::establish(&url).await })
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?,
                None => AsyncPgConnection::establish(&url).await,
            }
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        with_application_role(config.url.expose_secret(), role),
        manager_config,
    );
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

/// Answered 503 by `ApiError`, so it lives with it in sb-platform (which cannot depend on sb-db).
pub use sb_platform::error::db::connection_lost;

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::{connection_lost, with_application_role};

    #[test]
    fn each_pool_names_its_connections_by_role() {
        assert_eq!(
            with_application_role("postgres://postgres@127.0.0.1:5432/sb", "http"),
            "postgres://postgres@127.0.0.1:5432/sb?application_name=switchboard%2Fhttp"
        );
        // A name given in the URL is kept as the prefix; other parameters stay.
        assert_eq!(
            with_application_role(
                "postgres://u:p@h/db?sslmode=disable&application_name=sb-video",
                "background"
            ),
            "postgres://u:p@h/db?sslmode=disable&application_name=sb-video%2Fbackground"
        );
        assert_eq!(with_application_role("not a url", "http"), "not a url");
    }

    fn db(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_lost_connection_is_told_apart_from_a_failed_query() {
        for lost in [
            db(
                DatabaseErrorKind::UnableToSendCommand,
                "error communicating with the server",
            ),
            db(DatabaseErrorKind::ClosedConnection, "connection closed"),
            db(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            db(
                DatabaseErrorKind::Unknown,
                "the database system is shutting down",
            ),
            Error::BrokenTransactionManager,
        ] {
            assert!(connection_lost(&lost), "{lost}");
        }
        for failed in [
            db(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            db(DatabaseErrorKind::Unknown, "syntax error at or near"),
            Error::NotFound,
        ] {
            assert!(!connection_lost(&failed), "{failed}");
        }
    }
}
