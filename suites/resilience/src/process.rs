//! Services as real processes (the crate's `service` binary), for the tests that signal, kill and
//! restart them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::traffic::Endpoints;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct ServiceProcess {
    pub name: &'static str,
    pub child: Child,
    pub address: String,
    /// Ids of the requests the service took: its `request started` log lines.
    started: Arc<Mutex<HashSet<String>>>,
    /// Reads the service's stdout until it closes.
    log: Option<JoinHandle<()>>,
}

/// The request id of a `request started` line of a service's JSON log.
fn started_request(line: &str) -> Option<String> {
    if !line.contains("request started") {
        return None;
    }
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    (event["message"] == "request started")
        .then(|| event["request_id"].as_str().map(str::to_owned))
        .flatten()
}

impl ServiceProcess {
    /// Starts service `name` from `binary` with `env`; returns once it prints its port.
    pub async fn spawn(
        binary: &Path,
        name: &'static str,
        env: &HashMap<String, String>,
    ) -> Result<Self, Error> {
        let mut child = Command::new(binary)
            .arg(name)
            .env_clear()
            .envs(env)
            // Warnings, and each request as the service takes it (see `requests_started`).
            .env("RUST_LOG", "warn,sb_platform::metrics=debug")
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = sb_testkit::within(Duration::from_secs(30), "the service to listen", async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = line.strip_prefix("listening on ") {
                    return Ok::<_, Error>(port.trim().parse::<u16>()?);
                }
            }
            Err(format!("{name} exited before listening").into())
        })
        .await??;
        // Keep draining stdout so the child never blocks on a full pipe.
        let started = Arc::new(Mutex::new(HashSet::new()));
        let log = tokio::spawn({
            let started = started.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(id) = started_request(&line) {
                        started
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id);
                    }
                }
            }
        });
        Ok(Self {
            name,
            child,
            address: format!("http://127.0.0.1:{port}"),
            started,
            log: Some(log),
        })
    }

    /// The ids (`X-Request-Id`) of the requests the service has taken so far; complete once
    /// `wait` has returned. A request sent with an id that is not here never reached the service.
    pub fn requests_started(&self) -> HashSet<String> {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every service of the stack, one process each.
    pub async fn spawn_all(
        binary: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Vec<Self>, Error> {
        let mut processes = Vec::new();
        for name in crate::SERVICES {
            processes.push(Self::spawn(binary, name, env).await?);
        }
        Ok(processes)
    }

    pub async fn sigterm(&self) -> Result<(), Error> {
        let pid = self.child.id().ok_or("already exited")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed").into());
        }
        Ok(())
    }

    /// SIGKILL: a crash, no drain.
    pub async fn kill(&mut self) -> Result<(), Error> {
        self.child.kill().await?;
        Ok(())
    }

    /// Waits for the process to exit and its log to be read to the end; says whether it exited
    /// successfully.
    pub async fn wait(&mut self) -> Result<bool, Error> {
        let status = sb_testkit::within(
            Duration::from_secs(30),
            "the service to exit",
            self.child.wait(),
        )
        .await??;
        if let Some(log) = self.log.take() {
            sb_testkit::within(Duration::from_secs(10), "the service's log to end", log).await??;
        }
        Ok(status.success())
    }
}

/// The base URLs of a set of processes, one per service.
pub fn endpoints(processes: &[ServiceProcess]) -> Result<Endpoints, Error> {
    let of = |name: &str| {
        processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.address.clone())
            .ok_or_else(|| format!("no {name}"))
    };
    Ok(Endpoints {
        video: of("video")?,
        telephony: of("telephony")?,
        signaling: of("signaling")?,
        monitoring: of("monitoring")?,
    })
}
