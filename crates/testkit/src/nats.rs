//! NATS isolation for tests: a unique prefix on the shared server, or a private `nats-server`
//! on a free port for fault tests (stop it, start it again, same storage).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The shared NATS server tests use: `TEST_NATS_URL`, else `NATS_URL`, else the local default.
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL")
        .or_else(|_| std::env::var("NATS_URL"))
        .unwrap_or_else(|_| sb_platform::config::NatsConfig::DEFAULT_URL.to_owned())
}

/// A connection to the shared server plus a prefix unique to this test: streams and subjects
/// named through it cannot collide with another test's. Streams created under the prefix are
/// deleted on drop.
pub struct TestNats {
    pub client: async_nats::Client,
    prefix: String,
}

/// How a service under test connects to the shared server.
pub fn nats_config() -> sb_platform::config::NatsConfig {
    sb_platform::config::NatsConfig {
        url: nats_url(),
        connect_timeout: Duration::from_secs(5),
    }
}

impl TestNats {
    pub async fn new() -> crate::Result<Self> {
        crate::init();
        let url = nats_url();
        let client = crate::within(
            Duration::from_secs(10),
            "connecting to NATS",
            async_nats::connect(&url),
        )
        .await?
        .map_err(|e| {
            format!("tests need NATS with JetStream at {url}: {e} (start it with: nats-server -js)")
        })?;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Ok(Self { client, prefix })
    }

    /// Unique prefix: use it for subjects (`{prefix}.sb.video.>`) and stream names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The events namespace of a service under this test's prefix.
    pub fn namespace(&self) -> sb_events::Namespace {
        sb_events::Namespace::prefixed(&self.prefix)
    }

    /// The last `E` on its JetStream stream under this test's prefix, waiting (bounded) until
    /// the outbox relay has published one.
    pub async fn published<E: sb_events::Event>(&self) -> crate::Result<E> {
        let ns = self.namespace();
        let stream = self
            .jetstream()
            .get_stream(ns.stream(E::SUBJECT.domain))
            .await?;
        let subject = ns.subject(&E::SUBJECT.to_string());
        let message = crate::within(Duration::from_secs(10), E::TYPE, async {
            loop {
                if let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await {
                    return message;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await?;
        Ok(E::decode(message.payload)?)
    }

    /// `subject` under this test's prefix.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}.{subject}", self.prefix)
    }

    /// A stream name under this test's prefix.
    pub fn stream_name(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix.to_uppercase())
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let prefix = self.prefix.to_uppercase();
        crate::wait::block_on_side_thread(async move {
            use futures_util::StreamExt;
            // A connection of its own: the test's client is driven by the test's runtime,
            // which is blocked while this thread runs.
            let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(nats_url())).await
            else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            let mut names = js.stream_names();
            let mut mine = Vec::new();
            while let Ok(Some(Ok(name))) =
                tokio::time::timeout(Duration::from_secs(2), names.next()).await
            {
                if name.starts_with(&prefix) {
                    mine.push(name);
                }
            }
            for name in mine {
                drop(tokio::time::timeout(Duration::from_secs(2), js.delete_stream(&name)).await);
            }
        });
    }
}

/// A private `nats-server -js` on a free loopback port with its own storage directory, for tests
/// that stop and restart NATS. Killed on drop.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
}

impl NatsServer {
    pub async fn start() -> crate::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let binary = which_nats_server().ok_or("nats-server not found on PATH or in /usr/sbin")?;
        let mut server = Self {
            port,
            store: tempfile::tempdir()?,
            child: None,
            binary,
        };
        server.resume().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (SIGKILL: an outage, not a goodbye) and waits for the port to close.
    pub async fn stop(&mut self) -> crate::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and storage; returns once it accepts connections.
    pub async fn resume(&mut self) -> crate::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        crate::wait_until(
            Duration::from_secs(10),
            "private nats-server to listen",
            || {
                let address = address.clone();
                async move { tokio::net::TcpStream::connect(address).await.is_ok() }
            },
        )
        .await?;
        Ok(())
    }
}

pub(crate) fn which_nats_server() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    from_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nats-server");
        sbin.is_file().then_some(sbin)
    })
}
