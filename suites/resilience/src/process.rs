//! Services as real processes (the crate's `service` binary), for the tests that signal, kill and
//! restart them.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::traffic::Endpoints;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub struct ServiceProcess {
    pub name: &'static str,
    pub child: Child,
    pub address: String,
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
            .env("RUST_LOG", "warn")
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
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            name,
            child,
            address: format!("http://127.0.0.1:{port}"),
        })
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

    /// Waits for the process to exit and says whether it exited successfully.
    pub async fn wait(&mut self) -> Result<bool, Error> {
        let status = sb_testkit::within(
            Duration::from_secs(30),
            "the service to exit",
            self.child.wait(),
        )
        .await??;
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
