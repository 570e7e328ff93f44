//! sb-bench: every performance scenario beside its peer and its limit, run several times on
//! this machine, summarised in one markdown table (in `docs/performance.md`).

pub mod cpu;
pub mod loadgen;
pub mod pgbench;
pub mod report;
pub mod scenarios;
pub mod stats;

use std::path::PathBuf;

/// The workspace root (two levels above `tools/bench`): the harness runs cargo, pgbench scripts
/// and writes `docs/performance.md` from there.
pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|crates| crates.parent())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no workspace root above {}", manifest.display()))
}

/// Makes Postgres log every statement run on `db` from now on (new connections), with its parse,
/// bind and execute durations, to derive the pgbench scripts in `sql/` from what the services
/// really run and to see where a request's database time goes (`--log-sql`).
pub async fn log_statements(db: &sb_testkit::TestDb) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let mut conn = db.conn().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    diesel::sql_query(format!(
        "ALTER DATABASE {} SET log_min_duration_statement = 0",
        db.name()
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Writes out the database server's dirty buffers (`CHECKPOINT`) before a measurement, so it
/// does not pay for the previous one's writes: seen here, the WAL flushes of commits stalled for
/// ~100 ms a few seconds after a pgbench run that wrote a lot, whichever client came next.
pub async fn checkpoint(database: &sb_db::DatabaseConfig) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use secrecy::ExposeSecret;
    let mut conn = AsyncPgConnection::establish(database.url.expose_secret()).await?;
    diesel::sql_query("CHECKPOINT").execute(&mut conn).await?;
    Ok(())
}

/// Installs the Node packages of `dir` from its lockfile (`npm ci`) unless `package` is already
/// there: a fresh clone has none, and the Node peers need them.
pub async fn npm_ci_unless_installed(dir: &std::path::Path, package: &str) -> anyhow::Result<()> {
    if dir.join("node_modules").join(package).exists() {
        return Ok(());
    }
    eprintln!("  npm ci in {}…", dir.display());
    let status = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "npm ci failed in {}", dir.display());
    Ok(())
}

/// `cargo` for a nested build, without the variables `cargo run` sets for the harness
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …): build scripts watch some of them, and inheriting
/// them would make cargo rebuild half the workspace instead of finding it built.
pub fn cargo() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "CARGO"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name.as_ref());
        }
    }
    command.current_dir(workspace_root().unwrap_or_else(|_| ".".into()));
    command
}

/// A runtime of its own for a service built in-process (threads named `sb-svc`): the service's
/// background tasks (outbox relay, consumers, jobs) and its shared pool's connections run there,
/// not on the load generator's threads (`sb-load`), so that their CPU is the service's
/// ([`cpu`]). Shut down, without waiting, when dropped.
pub struct ServiceRuntime(Option<tokio::runtime::Runtime>);

impl ServiceRuntime {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(Some(
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("sb-svc")
                .enable_all()
                .build()?,
        )))
    }

    /// Runs `future` on the service's runtime and waits for its output.
    pub async fn run<F, T>(&self, future: F) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .0
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the service runtime is shut down"))?;
        Ok(runtime.spawn(future).await?)
    }
}

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The in-process service's database settings: `db`'s, its connections named `name` (its pools
/// then name theirs `name/http` and `name/background`: see [`cpu::backend_part`]).
pub fn service_database(db: &sb_testkit::TestDb, name: &str) -> sb_db::DatabaseConfig {
    use secrecy::ExposeSecret;
    let config = db.config();
    sb_db::DatabaseConfig {
        url: cpu::with_application_name(config.url.expose_secret(), name).into(),
        ..config
    }
}

/// Waits (up to 5 s) until the relay of `source` has published every row, so that a window's CPU
/// includes publishing the events its requests enqueued and nothing of the previous window's.
pub async fn drain_outbox(db: &sb_testkit::TestDb, source: &str) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pending {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pending: Pending = diesel::sql_query(
            "SELECT count(*) AS n FROM outbox WHERE source = $1 AND published_at IS NULL",
        )
        .bind::<diesel::sql_types::Text, _>(source)
        .get_result(&mut conn)
        .await?;
        if pending.n == 0 || std::time::Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
