//! Scenario 5: each service's release binary spawned with a valid local configuration: time from
//! spawn to the first 200 from `/readyz` (Postgres and NATS reachable), then its resident memory
//! (VmRSS) after a few idle seconds.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sb_testkit::TestDb;
use secrecy::ExposeSecret;

use crate::report::{Row, Verdict};
use crate::stats::Spread;

pub const SERVICES: [&str; 4] = ["sb-video", "sb-telephony", "sb-signaling", "sb-monitoring"];
const IDLE: Duration = Duration::from_secs(3);
const START_LIMIT_MS: f64 = 1000.0;
const RSS_LIMIT_MB: f64 = 30.0;
const TARGET: &str = "ready < 1 s; idle RSS < 30 MB";

/// `VmRSS` of a `/proc/<pid>/status` text, in MB (10^6 bytes).
pub fn parse_vm_rss_mb(status: &str) -> Option<f64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e6)
}

async fn build() -> anyhow::Result<()> {
    let mut command = crate::cargo();
    command.args(["build", "--release"]);
    for service in SERVICES {
        command.args(["-p", service]);
    }
    // With the harness itself: the same feature resolution as `cargo run -p sb-bench`, so this
    // finds the binaries built, rather than building the workspace a second way.
    command.args(["-p", "sb-bench"]);
    if !command.status().await?.success() {
        anyhow::bail!("cargo build --release of the services failed");
    }
    Ok(())
}

/// One start: (ms to the first 200 from /readyz, MB resident after `IDLE`).
async fn start_once(binary: &Path, db: &TestDb, namespace: &str) -> anyhow::Result<(f64, f64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let database = db.config();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("APP_ENV", "development")
        .env("RUST_LOG", "warn")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database.url.expose_secret())
        .env("NATS_URL", sb_testkit::nats_url())
        .env("EVENTS_NAMESPACE", namespace)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ready_ms = loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            break started.elapsed().as_secs_f64() * 1000.0;
        }
        if let Some(status) = child.try_wait()? {
            let output = child.wait_with_output().await?;
            anyhow::bail!(
                "{} exited ({status}): {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if started.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("{} was not ready within 20 s", binary.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(IDLE).await;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("the service exited"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = parse_vm_rss_mb(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    drop(child.start_kill());
    drop(child.wait().await);
    Ok((ready_ms, rss))
}

pub async fn run(runs: usize) -> Vec<Row> {
    match measure(runs).await {
        Ok(rows) => rows,
        Err(error) => vec![Row::failed("5. cold start", TARGET, &format!("{error:#}"))],
    }
}

async fn measure(runs: usize) -> anyhow::Result<Vec<Row>> {
    build().await?;
    let root = crate::workspace_root()?;
    let db = TestDb::new().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let namespace = format!("benchcold{}", std::process::id());
    let mut rows = Vec::new();
    for service in SERVICES {
        let binary = root.join("target/release").join(service);
        let (mut ready, mut rss) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            eprintln!("  {service} start {run}/{runs}…");
            match start_once(&binary, &db, &namespace).await {
                Ok((ms, mb)) => {
                    ready.push(ms);
                    rss.push(mb);
                }
                Err(error) => {
                    rows.push(Row::failed(
                        &format!("5. {service}"),
                        TARGET,
                        &format!("{error:#}"),
                    ));
                    break;
                }
            }
        }
        if let (Some(ready), Some(rss)) = (Spread::of(&ready), Spread::of(&rss)) {
            rows.push(Row {
                scenario: format!(
                    "5. {service}: spawn → /readyz 200; VmRSS after {} s idle",
                    IDLE.as_secs()
                ),
                ours: format!("{} ms; {} MB", ready.render(0), rss.render(1)),
                peer: "limits: 1,000 ms; 30 MB".to_owned(),
                ratio: format!(
                    "{:.0} % ; {:.0} % of the limits",
                    ready.median / START_LIMIT_MS * 100.0,
                    rss.median / RSS_LIMIT_MB * 100.0
                ),
                target: TARGET.to_owned(),
                met: Verdict::all(&[
                    Verdict::from_bool(ready.median < START_LIMIT_MS),
                    Verdict::from_bool(rss.median < RSS_LIMIT_MB),
                ]),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_megabytes() {
        let status = "Name:\tsb-video\nVmPeak:\t  100000 kB\nVmRSS:\t   19532 kB\nThreads:\t5\n";
        let mb = parse_vm_rss_mb(status).unwrap();
        assert!((mb - 20.0).abs() < 0.01, "{mb}");
        assert_eq!(parse_vm_rss_mb("Name:\tx\n"), None);
    }
}
