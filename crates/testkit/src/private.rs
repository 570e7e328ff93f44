//! Private dependencies for fault tests: a PostgreSQL cluster and a `nats-server -js` of the
//! test's own, on free loopback ports with their data in temporary directories, that the test may
//! stop, start and restart (the data survives) without touching the shared servers.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sb_db::DatabaseConfig;
use tokio::process::{Child, Command};

pub use crate::nats::NatsServer as PrivateNats;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn free_port() -> crate::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Postgres refuses to run as root: when the test runs as root the cluster belongs to the
/// `postgres` user and its programs run through `setpriv` (which execs, so the child's pid is
/// the server's and signals reach it).
fn as_cluster_owner(program: &Path) -> crate::Result<(Command, Option<(u32, u32)>)> {
    let running_as_root = std::fs::metadata("/proc/self")?.uid() == 0;
    if !running_as_root {
        return Ok((Command::new(program), None));
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let ids = passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next() != Some("postgres") {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or("running as root needs a `postgres` user to own a private cluster")?;
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={}", ids.0),
            &format!("--regid={}", ids.1),
            "--clear-groups",
            "--",
        ])
        .arg(program);
    Ok((command, Some(ids)))
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) -> crate::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// A PostgreSQL 15 cluster of the test's own: trust authentication, fsync off, a socket
/// directory of its own. Killed and deleted on drop.
pub struct PrivatePostgres {
    port: u16,
    data: tempfile::TempDir,
    socket_dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// `initdb` then start; returns once the server accepts connections.
    pub async fn start() -> crate::Result<Self> {
        crate::init();
        let data = tempfile::Builder::new().prefix("sb-pg-data").tempdir()?;
        let socket_dir = tempfile::Builder::new().prefix("sb-pg-sock").tempdir()?;
        let (mut initdb, owner) = as_cluster_owner(&Path::new(PG_BIN).join("initdb"))?;
        chown_tree(data.path(), owner)?;
        chown_tree(socket_dir.path(), owner)?;
        let output = initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(data.path())
            .stdin(Stdio::null())
            .output()
            .await?;
        if !output.status.success() {
            return Err(
                format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)).into(),
            );
        }
        let mut server = Self {
            port: free_port()?,
            data,
            socket_dir,
            child: None,
        };
        server.resume().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `name` and runs every migration in it: the configuration services connect with.
    pub async fn migrated_database(&self, name: &str) -> crate::Result<DatabaseConfig> {
        let mut admin = AsyncPgConnection::establish(&self.url("postgres")).await?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let config = DatabaseConfig::with_url(&self.url(name));
        sb_db::migrate::run_pending(&config).await?;
        Ok(config)
    }

    /// Fast shutdown (SIGINT: sessions are cut, like a restart by an operator or a failover);
    /// returns once the server has exited.
    pub async fn stop(&mut self) -> crate::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let status = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status()
                    .await?;
                if !status.success() {
                    child.kill().await?;
                }
            }
            crate::within(
                Duration::from_secs(20),
                "private postgres to stop",
                child.wait(),
            )
            .await??;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data; returns once it accepts connections.
    pub async fn resume(&mut self) -> crate::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let (mut postgres, _) = as_cluster_owner(&Path::new(PG_BIN).join("postgres"))?;
        let child = postgres
            .arg("-D")
            .arg(self.data.path())
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(self.socket_dir.path())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let url = self.url("postgres");
        crate::wait_until(
            Duration::from_secs(20),
            "private postgres to accept connections",
            || {
                let url = url.clone();
                async move { AsyncPgConnection::establish(&url).await.is_ok() }
            },
        )
        .await?;
        Ok(())
    }

    /// Stop then start, keeping the data.
    pub async fn restart(&mut self) -> crate::Result<()> {
        self.stop().await?;
        self.resume().await
    }

    /// The data directory (for the curious test).
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // kill_on_drop sends SIGKILL; the temporary directories go with the value.
        drop(self.child.take());
    }
}

/// Both private dependencies at once.
pub struct PrivateDeps {
    pub postgres: PrivatePostgres,
    pub nats: PrivateNats,
    pub database: DatabaseConfig,
}

impl PrivateDeps {
    /// A private Postgres with a migrated `switchboard` database and a private JetStream server.
    pub async fn start() -> crate::Result<Self> {
        let (postgres, nats) = tokio::join!(PrivatePostgres::start(), PrivateNats::start());
        let postgres = postgres?;
        let database = postgres.migrated_database("switchboard").await?;
        Ok(Self {
            postgres,
            nats: nats?,
            database,
        })
    }
}
