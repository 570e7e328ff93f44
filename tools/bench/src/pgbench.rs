//! The Postgres limit beside a scenario: `/usr/bin/pgbench` running the scenario's SQL
//! transaction (a script file committed in `tools/bench/sql/`) on the same database at the same
//! concurrency.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

pub const PGBENCH: &str = "/usr/bin/pgbench";

/// What pgbench reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_avg_ms: f64,
    /// From pgbench's per-transaction log (`-l`); NaN when it wrote none.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// CPU per transaction (µs) of pgbench and its backends, over a window inside the run
    /// (the transactions that ended in it, from the log); `None` without a probe.
    pub cpu: Option<crate::cpu::PerOp>,
}

/// Reads `tps = …` and `latency average = … ms` from pgbench's report.
pub fn parse_report(output: &str) -> anyhow::Result<PgbenchResult> {
    let tps = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no `tps = ` line in pgbench's output:\n{output}"))?;
    let latency_avg_ms = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("latency average = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    Ok(PgbenchResult {
        tps,
        latency_avg_ms,
        latency_p50_ms: f64::NAN,
        latency_p99_ms: f64::NAN,
        cpu: None,
    })
}

/// The latencies (µs) in pgbench's per-transaction log lines
/// (`client_id transaction_no time script_no time_epoch time_us [schedule_lag]`) of the
/// transactions that ended at or after `since` (Unix time, µs). With a rate (`--rate`) each line
/// also has the transaction's schedule lag, how late it started after it was due; its `time`
/// already counts from when it was due (pgbench computes it as end minus scheduled start, as the
/// open loop's latencies do), so the lag is part of it and must not be added again.
pub fn parse_transaction_log(log: &str, since_us: u64) -> Vec<u64> {
    parse_log_entries(log)
        .into_iter()
        .filter(|&(ended_us, _)| ended_us >= since_us)
        .map(|(_, latency)| latency)
        .collect()
}

/// Each logged transaction's end (Unix time, µs) and latency (µs).
pub fn parse_log_entries(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((number(4)? * 1_000_000 + number(5)?, number(2)?))
        })
        .collect()
}

/// How many of `entries` ended within `[from_us, to_us)`.
pub fn ended_between(entries: &[(u64, u64)], from_us: u64, to_us: u64) -> u64 {
    entries
        .iter()
        .filter(|&&(ended, _)| ended >= from_us && ended < to_us)
        .count() as u64
}

/// The `p` quantile of `latencies_us`, in ms (nearest rank); NaN if empty.
pub fn percentile_ms(latencies_us: &mut [u64], p: f64) -> f64 {
    if latencies_us.is_empty() {
        return f64::NAN;
    }
    latencies_us.sort_unstable();
    let rank = ((p * latencies_us.len() as f64).ceil() as usize).clamp(1, latencies_us.len());
    latencies_us[rank - 1] as f64 / 1000.0
}

/// Reads and removes the per-transaction logs pgbench wrote under `dir`.
fn transaction_log(dir: &Path) -> Vec<(u64, u64)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(log) = std::fs::read_to_string(entry.path()) {
            all.extend(parse_log_entries(&log));
        }
    }
    std::fs::remove_dir_all(dir).ok();
    all
}

fn unix_us(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// How pgbench loads the database: `clients` connections, each starting its next transaction
/// as soon as the last one ends (closed loop) or, with `rate`, transactions due at that many
/// per second in all (pgbench's `--rate`: open loop); for `warm_up` unrecorded, then `seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: usize,
    pub seconds: u64,
    pub rate: Option<f64>,
    pub warm_up: Duration,
}

impl Load {
    pub fn closed(clients: usize, seconds: u64) -> Self {
        Self {
            clients,
            seconds,
            rate: None,
            warm_up: Duration::ZERO,
        }
    }
}

/// Runs `scripts` (each with its weight) under `load` on `database`, with `-D name=value`
/// variables; prepared statements, as diesel-async uses. With a `probe`, pgbench's and its
/// backends' CPU is read from 1 s after the start (or the warm-up's end) to 1 s before the end,
/// while they all run, and divided by the transactions that ended in between.
pub async fn run(
    database: &sb_db::DatabaseConfig,
    scripts: &[(&Path, u32)],
    load: Load,
    variables: &[(&str, String)],
    probe: Option<&crate::cpu::Probe>,
) -> anyhow::Result<PgbenchResult> {
    let Load {
        clients,
        seconds,
        rate,
        warm_up,
    } = load;
    let seconds = seconds + warm_up.as_secs();
    crate::checkpoint(database).await?;
    let url = url::Url::parse(database.url.expose_secret())?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(clients);
    let mut command = tokio::process::Command::new(PGBENCH);
    command
        .args(["-n", "-M", "prepared"])
        .args(["-h", url.host_str().unwrap_or("127.0.0.1")])
        .args(["-p", &url.port().unwrap_or(5432).to_string()])
        .args([
            "-U",
            if url.username().is_empty() {
                "postgres"
            } else {
                url.username()
            },
        ])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()])
        // Plain TCP like the services (tokio-postgres without TLS): libpq would otherwise
        // negotiate TLS with a server that offers it and pay for encryption they do not.
        .env("PGSSLMODE", "disable")
        .kill_on_drop(true);
    // Per-transaction latencies, for the p99 beside ours.
    let logs = std::env::temp_dir().join(format!("sb-bench-pgbench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&logs)?;
    command
        .arg("-l")
        .arg(format!("--log-prefix={}", logs.join("tx").display()));
    for (script, weight) in scripts {
        command
            .arg("-f")
            .arg(format!("{}@{weight}", script.display()));
    }
    if let Some(rate) = rate {
        command.args(["--rate", &format!("{rate:.1}")]);
    }
    if let Some(password) = url.password() {
        command.env("PGPASSWORD", password);
    }
    for (name, value) in variables {
        command.args(["-D", &format!("{name}={value}")]);
    }
    command.arg(url.path().trim_start_matches('/'));
    let started = tokio::time::Instant::now();
    let recorded_from = std::time::SystemTime::now() + warm_up;
    let since_us = unix_us(recorded_from);
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let window_from = started + warm_up.max(Duration::from_secs(1));
    let window_to = started + Duration::from_secs(seconds.saturating_sub(1));
    let sample = async {
        let probe = probe?;
        if window_to <= window_from {
            return None;
        }
        tokio::time::sleep_until(window_from).await;
        let (before, from_us) = (
            probe.snapshot(pid).await.ok()?,
            unix_us(std::time::SystemTime::now()),
        );
        tokio::time::sleep_until(window_to).await;
        let (after, to_us) = (
            probe.snapshot(pid).await.ok()?,
            unix_us(std::time::SystemTime::now()),
        );
        Some((after.since(&before), from_us, to_us))
    };
    let finish = tokio::time::timeout(Duration::from_secs(seconds + 60), child.wait_with_output());
    let (output, sample) = tokio::join!(finish, sample);
    let output = output.map_err(|_| anyhow::anyhow!("pgbench did not finish"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let entries = transaction_log(&logs);
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut result = parse_report(&stdout)?;
    let mut latencies: Vec<u64> = entries
        .iter()
        .filter(|&&(ended, _)| ended >= since_us)
        .map(|&(_, latency)| latency)
        .collect();
    result.latency_p50_ms = percentile_ms(&mut latencies, 0.50);
    result.latency_p99_ms = percentile_ms(&mut latencies, 0.99);
    result.cpu =
        sample.map(|(usage, from_us, to_us)| usage.per_op(ended_between(&entries, from_us, to_us)));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_parsed() {
        let report = "pgbench (15.20 (Debian 15.20-0+deb12u1))\ntransaction type: sql/join.sql\nscaling factor: 1\nquery mode: prepared\nnumber of clients: 16\nnumber of threads: 2\nmaximum number of tries: 1\nduration: 5 s\nnumber of transactions actually processed: 10234\nnumber of failed transactions: 0 (0.000%)\nlatency average = 7.812 ms\ninitial connection time = 20.109 ms\ntps = 2048.123456 (without initial connection time)\n";
        let parsed = parse_report(report).unwrap();
        assert_eq!(parsed.tps, 2048.123456);
        assert_eq!(parsed.latency_avg_ms, 7.812);
        assert!(parse_report("pgbench: error: connection refused").is_err());
    }

    #[test]
    fn the_transaction_log_gives_the_p99() {
        let text: String = (1..=200)
            .map(|n| format!("0 {n} {} 0 1763700000 123456\n", n * 100))
            .collect();
        let mut log = parse_transaction_log(&text, 0);
        assert_eq!(log.len(), 200);
        // 198th of 200 sorted latencies: 19,800 µs.
        assert_eq!(percentile_ms(&mut log, 0.99), 19.8);
        assert!(percentile_ms(&mut [], 0.99).is_nan());
        assert!(parse_transaction_log("garbage\n", 0).is_empty());
    }

    #[test]
    fn a_rated_transaction_counts_from_when_it_was_due_once_and_warm_up_is_left_out() {
        // Due, started 1,500 µs late, ended 4,000 µs after it was due at 1763700000.123456: the
        // logged time (4,000) already holds the lag (1,500), which is not added a second time.
        let line = "3 17 4000 0 1763700000 123456 1500\n";
        assert_eq!(parse_transaction_log(line, 0), vec![4_000]);
        assert_eq!(
            parse_transaction_log(line, 1_763_700_000_123_456),
            vec![4_000]
        );
        assert!(parse_transaction_log(line, 1_763_700_000_123_457).is_empty());
    }

    #[test]
    fn the_cpu_window_counts_the_transactions_that_ended_in_it() {
        let log = "0 1 900 0 100 999999\n0 2 900 0 101 0\n1 1 900 0 101 500000\n1 2 900 0 102 0\n";
        let entries = parse_log_entries(log);
        assert_eq!(entries.len(), 4);
        // [101 s, 102 s): the 2nd and 3rd; the end is left out.
        assert_eq!(ended_between(&entries, 101_000_000, 102_000_000), 2);
        assert_eq!(ended_between(&entries, 0, u64::MAX), 4);
    }

    #[test]
    fn the_scripts_outbox_rows_are_out_of_every_relays_reach() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut inserts = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let script = std::fs::read_to_string(&path).unwrap();
            for line in script
                .lines()
                .filter(|l| l.starts_with("INSERT INTO outbox"))
            {
                inserts += 1;
                assert!(
                    line.contains("VALUES (gen_random_uuid(), 'pgbench', "),
                    "{}: a relay publishes outbox rows of its service's source: {line}",
                    path.display()
                );
            }
        }
        assert!(inserts > 0, "no outbox INSERT found in {dir}");
    }
}
