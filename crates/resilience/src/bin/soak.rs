//! `just soak`: the four services in one process on a private Postgres and NATS, under a steady,
//! bounded mix of traffic (call joins, LiveKit and Twilio webhooks, Socket.IO signaling,
//! monitoring sessions) for N minutes. Reports 5xx, events lost or duplicated end to end through
//! JetStream, memory over time and p99 per route; exits non-zero when a criterion fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sb_resilience::Stack;
use sb_resilience::events::{account, drained};
use sb_resilience::traffic::Sample;
use sb_testkit::PrivateDeps;

/// Memory is flat when the median RSS of the last third of the run is within this many percent
/// of the first third's.
const FLAT_PERCENT: f64 = 15.0;

#[derive(Parser)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Traffic scenarios started per second (each is 1 to 5 requests).
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// Scenarios in flight at most; a tick that finds them all busy is counted as skipped.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] as f64,
        n => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.minutes > 0, "--minutes must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let run_for = Duration::from_secs(args.minutes * 60);
    let deps = PrivateDeps::start()
        .await
        .map_err(anyhow::Error::from_boxed)?;
    let database_url = deps.postgres.url("switchboard");
    let stack = Stack::start(&database_url, &deps.nats.url(), |_| {}).await?;
    let traffic = stack.traffic(Duration::from_secs(30)).await?;
    println!(
        "soak: {} min, {} scenarios/s, at most {} in flight, services on {}",
        args.minutes,
        args.rate,
        args.concurrency,
        stack
            .services()
            .iter()
            .map(|(name, app)| format!("{name}:{}", app.port))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut skipped = 0u64;
    let mut started_scenarios = 0u64;
    let mut rss = vec![(Duration::ZERO, rss_kib())];
    let begin = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_sample = Duration::from_secs(args.sample_every);
    let mut next_progress = Duration::from_secs(60);
    // Ctrl-C or SIGTERM ends the run early with a report, and the private Postgres and NATS are
    // stopped on the way out (they are killed when their handles drop).
    let interrupted = sb_platform::shutdown::signal();
    tokio::pin!(interrupted);
    let mut stopped_early = false;
    while begin.elapsed() < run_for {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut interrupted => {
                println!("interrupted after {} s: reporting what ran", begin.elapsed().as_secs());
                stopped_early = true;
                break;
            }
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let kind = started_scenarios % 4;
        started_scenarios += 1;
        let traffic = traffic.clone();
        let collected = samples.clone();
        tokio::spawn(async move {
            let got = match kind {
                0 => traffic.video_call().await,
                1 => traffic.inbound_call().await,
                2 => traffic.monitoring_session().await,
                _ => traffic.signaling_exchange().await,
            };
            collected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(got);
            drop(permit);
        });
        let elapsed = begin.elapsed();
        if elapsed >= next_sample {
            rss.push((elapsed, rss_kib()));
            next_sample += Duration::from_secs(args.sample_every);
        }
        if elapsed >= next_progress {
            let done = samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            println!(
                "  {:>3} s: {started_scenarios} scenarios, {done} requests, RSS {} MiB",
                elapsed.as_secs(),
                rss_kib() / 1024
            );
            next_progress += Duration::from_secs(60);
        }
    }
    // Let the scenarios in flight finish (bounded).
    let all = u32::try_from(args.concurrency).unwrap_or(u32::MAX);
    tokio::time::timeout(Duration::from_secs(60), slots.acquire_many(all))
        .await
        .map_err(|_| anyhow::anyhow!("scenarios still running 60 s after the end"))??
        .forget();
    let elapsed = begin.elapsed();
    rss.push((elapsed, rss_kib()));

    drained(&database_url, Duration::from_secs(60)).await?;
    let accounting = account(&database_url, &deps.nats.url(), Duration::from_secs(30)).await?;
    let samples = std::mem::take(
        &mut *samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );

    let mut routes: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for sample in &samples {
        routes.entry(sample.route).or_default().push(sample);
    }
    println!();
    println!(
        "{} requests in {:.0} s ({:.1}/s), {started_scenarios} scenarios, {skipped} ticks skipped (all slots busy)",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
    println!();
    println!("| route | requests | non-2xx | 5xx | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut server_errors = 0usize;
    let mut failures = 0usize;
    for (route, list) in &routes {
        let mut times: Vec<Duration> = list.iter().map(|s| s.elapsed).collect();
        times.sort_unstable();
        let non_2xx = list
            .iter()
            .filter(|s| !(200..300).contains(&s.status))
            .count();
        let five = list
            .iter()
            .filter(|s| s.status >= 500 || s.status == 0)
            .count();
        server_errors += five;
        failures += non_2xx;
        println!(
            "| {route} | {} | {non_2xx} | {five} | {:.1} | {:.1} | {:.1} |",
            list.len(),
            percentile(&times, 50.0).as_secs_f64() * 1000.0,
            percentile(&times, 99.0).as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
    }
    let examples: Vec<String> = samples
        .iter()
        .filter(|s| !(200..300).contains(&s.status))
        .take(5)
        .map(|s| format!("{} -> {} {:?}", s.route, s.status, s.code))
        .collect();
    if !examples.is_empty() {
        println!();
        println!("first failures: {}", examples.join("; "));
    }

    let values: Vec<u64> = rss.iter().map(|(_, kib)| *kib).collect();
    let third = (values.len() / 3).max(1);
    let first = median(&values[..third]);
    let last = median(&values[values.len() - third..]);
    let growth = if first > 0.0 {
        (last - first) / first * 100.0
    } else {
        0.0
    };
    let flat = growth.abs() <= FLAT_PERCENT;
    println!();
    println!(
        "memory (RSS of the whole process: four services, fakes and load generator), {} samples every {} s:",
        values.len(),
        args.sample_every
    );
    let step = (rss.len() / 10).max(1);
    let shown: Vec<String> = rss
        .iter()
        .step_by(step)
        .chain(rss.last())
        .map(|(at, kib)| format!("{}s={}MiB", at.as_secs(), kib / 1024))
        .collect();
    println!("  {}", shown.join(" "));
    println!(
        "  first-third median {:.1} MiB, last-third median {:.1} MiB: {growth:+.1} % (flat = within ±{FLAT_PERCENT} %): {}",
        first / 1024.0,
        last / 1024.0,
        if flat { "flat" } else { "NOT FLAT" }
    );
    println!();
    println!("events end to end through JetStream: {accounting}");

    stack.stop().await?;
    let verdict =
        !stopped_early && server_errors == 0 && failures == 0 && accounting.is_exact() && flat;
    println!();
    println!(
        "soak {}: {server_errors} 5xx, {failures} non-2xx, {} lost, {} duplicated, memory {}",
        if verdict { "PASSED" } else { "FAILED" },
        accounting.missing.len(),
        accounting.duplicated.len(),
        if flat { "flat" } else { "growing" }
    );
    anyhow::ensure!(verdict, "soak criteria not met");
    Ok(())
}
