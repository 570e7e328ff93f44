//! Scenario 3, the signaling relay: runs `crates/socketio/examples/bench.rs` (owned by the
//! signaling work, which measures our server beside a Node `socket.io` 4.8 server doing the same
//! relay) as a subprocess and reads its one `BENCH_JSON` line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use crate::cpu;
use crate::report::{Row, Verdict};
use crate::stats::{Spread, ratios};

pub const PREFIX: &str = "BENCH_JSON ";
/// Pairs, signals in flight per pair, seconds, idle sockets.
pub const ARGS: [&str; 5] = ["--json", "50", "16", "10", "10000"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ServerFigures {
    pub msgs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_s_per_100k: f64,
    pub idle_sockets: u64,
    pub idle_rss_mb: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BenchJson {
    pub pairs: u64,
    pub window: u64,
    pub seconds: f64,
    pub ours: ServerFigures,
    pub reference: ServerFigures,
}

/// The figures of the first `BENCH_JSON` line of `output`.
pub fn parse_output(output: &str) -> anyhow::Result<BenchJson> {
    let line = output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(PREFIX))
        .ok_or_else(|| anyhow::anyhow!("no `{}` line in the benchmark's output", PREFIX.trim()))?;
    Ok(serde_json::from_str(line.trim())?)
}

/// The generator's core and the servers' (each server, in turn, alone on its core).
pub const GENERATOR_CPU: &str = "1";
pub const SERVER_CPU: &str = "0";

/// Runs the example once and parses its line: per core, the generator pinned to one core
/// (`taskset`), each server to the other, ours with one HTTP worker (Node is single-threaded).
async fn run_once(binary: &Path) -> anyhow::Result<BenchJson> {
    let child = tokio::process::Command::new("taskset")
        .args(["-c", GENERATOR_CPU])
        .arg(binary)
        .args(ARGS)
        .env("BENCH_SERVER_CPUS", SERVER_CPU)
        .env("BENCH_WORKERS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("the signaling benchmark took more than 240 s"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("the signaling benchmark exited with {}", output.status);
    }
    parse_output(&stdout)
}

/// Builds the example, and installs the Node reference server's packages it starts.
pub async fn build() -> anyhow::Result<std::path::PathBuf> {
    let root = crate::workspace_root()?;
    crate::npm_ci_unless_installed(&root.join("interop/socketio"), "socket.io").await?;
    let status = crate::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "sb-socketio",
            "--example",
            "bench",
        ])
        .status()
        .await?;
    if !status.success() {
        anyhow::bail!("cargo build of the signaling benchmark failed");
    }
    Ok(root.join("target/release/examples/bench"))
}

const TARGET_RATE: &str = "≥ 6× socket.io per core at a lower p99";
const TARGET_CPU: &str = "≤ 1/6 of socket.io's";
const TARGET_MEMORY: &str = "10,000 idle sockets < 200 MB";
const TIMES: f64 = 6.0;

pub async fn run(runs: usize) -> Vec<Row> {
    let binary = match build().await {
        Ok(b) => b,
        Err(error) => {
            return vec![Row::failed(
                "3. signaling relay",
                TARGET_RATE,
                &error.to_string(),
            )];
        }
    };
    let mut results = Vec::new();
    for run in 1..=runs {
        eprintln!("  signaling run {run}/{runs}…");
        match run_once(&binary).await {
            Ok(figures) => results.push(figures),
            Err(error) => {
                return vec![Row::failed(
                    "3. signaling relay",
                    TARGET_RATE,
                    &format!("{error} (needs the example's `--json` flag)"),
                )];
            }
        }
    }
    rows(&results)
}

/// The table rows of several runs.
pub fn rows(results: &[BenchJson]) -> Vec<Row> {
    let pick = |f: fn(&ServerFigures) -> f64, ours: bool| -> Vec<f64> {
        results
            .iter()
            .map(|r| f(if ours { &r.ours } else { &r.reference }))
            .collect()
    };
    let (Some(first), Some(rate), Some(ref_rate), Some(p99), Some(ref_p99), Some(p50)) = (
        results.first(),
        Spread::of(&pick(|s| s.msgs_per_s, true)),
        Spread::of(&pick(|s| s.msgs_per_s, false)),
        Spread::of(&pick(|s| s.p99_ms, true)),
        Spread::of(&pick(|s| s.p99_ms, false)),
        Spread::of(&pick(|s| s.p50_ms, true)),
    ) else {
        return vec![Row::failed("3. signaling relay", TARGET_RATE, "no run")];
    };
    let ratio = Spread::of(&ratios(
        &pick(|s| s.msgs_per_s, true),
        &pick(|s| s.msgs_per_s, false),
    ));
    let ratio_median = ratio.map_or(f64::NAN, |r| r.median);
    // CPU-seconds per 100k messages × 10 = µs per message.
    let us = |ours: bool| -> Vec<f64> {
        pick(|s| s.cpu_s_per_100k, ours)
            .iter()
            .map(|s| s * 10.0)
            .collect()
    };
    let (cpu_ratio, cpu_met) = cpu::at_least(&cpu::times_less(&us(true), &us(false)), TIMES);
    let mut out = vec![
        Row {
            scenario: "3. signaling relay: server CPU per message (user + system), µs".to_owned(),
            ours: Spread::render_of(&us(true), 2),
            peer: format!("Node socket.io 4.8: {}", Spread::render_of(&us(false), 2)),
            ratio: format!("socket.io's ÷ ours: {}", cpu::times(cpu_ratio)),
            target: TARGET_CPU.to_owned(),
            met: cpu_met,
        },
        Row {
            scenario: format!(
                "3. signaling relay per core (each server pinned to core {SERVER_CPU}, ours with 1 worker; generator on core {GENERATOR_CPU}), {} pairs × {} in flight, {} s: msgs/s; p50 / p99",
                first.pairs, first.window, first.seconds
            ),
            ours: format!(
                "{} msgs/s; p50 {} ms, p99 {} ms",
                rate.render(0),
                p50.render(1),
                p99.render(1)
            ),
            peer: format!(
                "Node socket.io 4.8: {} msgs/s; p99 {} ms",
                ref_rate.render(0),
                ref_p99.render(1)
            ),
            ratio: ratio.map_or("n/a".to_owned(), |r| format!("{}×", r.render(1))),
            target: TARGET_RATE.to_owned(),
            met: Verdict::from_bool(ratio_median >= TIMES && p99.median < ref_p99.median),
        },
    ];
    if let (Some(rss), Some(ref_rss)) = (
        Spread::of(&pick(|s| s.idle_rss_mb, true)),
        Spread::of(&pick(|s| s.idle_rss_mb, false)),
    ) {
        out.push(Row {
            scenario: format!(
                "3. signaling, RSS with {} idle sockets (MB)",
                first.ours.idle_sockets
            ),
            ours: rss.render(1),
            peer: format!("Node socket.io 4.8: {}", ref_rss.render(1)),
            ratio: format!("{:.2}×", rss.median / ref_rss.median),
            target: TARGET_MEMORY.to_owned(),
            met: Verdict::from_bool(first.ours.idle_sockets >= 10_000 && rss.median < 200.0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "relay: 50 pairs, window 16, 10 s\nsome progress line\nBENCH_JSON {\"pairs\":50,\"window\":16,\"seconds\":10,\"ours\":{\"msgs_per_s\":182900.5,\"p50_ms\":8.1,\"p99_ms\":17.0,\"cpu_s_per_100k\":0.91,\"idle_sockets\":10000,\"idle_rss_mb\":189.5},\"reference\":{\"msgs_per_s\":36100.0,\"p50_ms\":25.3,\"p99_ms\":83.6,\"cpu_s_per_100k\":2.7,\"idle_sockets\":10000,\"idle_rss_mb\":209.1}}\ndone\n";

    #[test]
    fn the_bench_json_line_is_found_and_parsed() {
        let parsed = parse_output(FIXTURE).unwrap();
        assert_eq!(parsed.pairs, 50);
        assert_eq!(parsed.window, 16);
        assert_eq!(parsed.seconds, 10.0);
        assert_eq!(parsed.ours.msgs_per_s, 182900.5);
        assert_eq!(parsed.ours.idle_sockets, 10_000);
        assert_eq!(parsed.reference.p99_ms, 83.6);
        assert_eq!(parsed.reference.idle_rss_mb, 209.1);
    }

    #[test]
    fn output_without_the_line_or_with_a_broken_one_is_an_error() {
        assert!(parse_output("relay: 50 pairs\nno json here\n").is_err());
        assert!(parse_output("BENCH_JSON {\"pairs\":50}").is_err());
        assert!(parse_output("BENCH_JSON not json").is_err());
    }

    #[test]
    fn rows_state_the_ratio_and_the_targets() {
        let parsed = parse_output(FIXTURE).unwrap();
        let rows = rows(&[parsed.clone(), parsed]);
        assert_eq!(rows.len(), 3);
        // CPU: 0.91 and 2.7 s per 100k = 9.1 and 27 µs per message: 2.97× less, missed.
        assert_eq!(rows[0].ours, "9.10 [9.10–9.10]");
        assert_eq!(rows[0].ratio, "socket.io's ÷ ours: 2.97 [2.97–2.97]×");
        assert_eq!(rows[0].met, Verdict::Missed);
        // 182,900 / 36,100 = 5.07× with a lower p99: short of 6×.
        assert_eq!(rows[1].ratio, "5.1 [5.1–5.1]×");
        assert_eq!(rows[1].met, Verdict::Missed);
        // 189.5 MB < 200 MB.
        assert_eq!(rows[2].met, Verdict::Met);
        let mut fast = parse_output(FIXTURE).unwrap();
        fast.ours.msgs_per_s = 250_000.0;
        fast.ours.cpu_s_per_100k = 0.4;
        let rows = super::rows(&[fast.clone()]);
        assert_eq!(
            (rows[0].met.clone(), rows[1].met.clone()),
            (Verdict::Met, Verdict::Met)
        );
        // 6× the rate at a higher p99 is missed.
        fast.ours.p99_ms = 90.0;
        assert_eq!(super::rows(&[fast])[1].met, Verdict::Missed);
    }
}
