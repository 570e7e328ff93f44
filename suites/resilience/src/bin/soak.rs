//! `just soak`: the four services in one child process on a private Postgres and NATS, under a
//! steady, bounded mix of traffic (call joins, LiveKit and Twilio webhooks, Socket.IO signaling,
//! monitoring sessions) from this process for N minutes. Reports 5xx, events lost or duplicated
//! end to end through JetStream, p99 per route, and memory over time: the services' (the child's
//! RSS, which the verdict is on) apart from the harness's (the fakes and the load generator here).
//! Exits non-zero when a criterion fails.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sb_platform::config::LogConfig;
use sb_platform::{Env, ProcessEnv};
use sb_resilience::events::{account, drained};
use sb_resilience::memory::{Trend, anon_rss_kib, find_in_tree, rss_kib, tree_rss_kib, trend};
use sb_resilience::traffic::{Endpoints, Sample, Traffic};
use sb_resilience::{SERVICES, service_env};
use sb_testkit::{FakeLiveKit, FakeTwilio, PrivateDeps, TestTokens};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Memory is flat when, after warm-up, the median RSS of the last third of the run is within this
/// many percent of the first third's.
const FLAT_PERCENT: f64 = 5.0;

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
    /// Seconds of warm-up (pools filling, allocator arenas growing) left out of the memory verdict.
    #[arg(long, default_value_t = 60)]
    warm_up: u64,
    /// Run the services' process under this command (split on spaces), e.g.
    /// `--wrap "heaptrack -o /tmp/services"` to see where their memory goes; RSS is then that of
    /// the wrapper and everything under it.
    #[arg(long)]
    wrap: Option<String>,
    /// Internal: run these services (comma-separated) from the environment until SIGTERM; the
    /// soak starts its child process this way.
    #[arg(long, hide = true, value_delimiter = ',')]
    serve: Vec<String>,
}

/// The child's side: the named services in this process, each port printed as it listens.
async fn serve(names: &[String]) -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    sb_platform::telemetry::init(&LogConfig::from_env(&env)?);
    let mut running = Vec::new();
    for name in names {
        let app = sb_resilience::build_service(name, &env).await?;
        // The parent reads the ports from these lines.
        println!("listening on {name} {}", app.port());
        running.push(app.run_until_signal());
    }
    futures_util::future::try_join_all(running).await?;
    println!("stopped");
    Ok(())
}

/// The four services in a child process (its own process group, so a Ctrl-C to the soak does
/// not reach it before the report).
struct Services {
    child: Child,
    pid: u32,
    endpoints: Endpoints,
    /// Set once the child exited after SIGTERM; until then dropping `Services` kills its whole
    /// process group (a wrapper's child would outlive `kill_on_drop`, which only kills the wrapper).
    stopped: bool,
}

impl Drop for Services {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.pid)])
                .status();
        }
    }
}

impl Services {
    async fn spawn(env: &HashMap<String, String>, wrap: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = match wrap.map(str::split_whitespace) {
            Some(mut words) => {
                let program = words
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--wrap names no command"))?;
                let mut command = Command::new(program);
                command.args(words).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        // The wrapper (heaptrack) may need the PATH of this process (not a setting: any bytes).
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut child = command
            .arg("--serve")
            .arg(SERVICES.join(","))
            .env_clear()
            .envs(env)
            .env("PATH", path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the services exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut ports: HashMap<String, String> = HashMap::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while ports.len() < SERVICES.len() {
                let line = lines
                    .next_line()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the services exited before listening"))?;
                if let Some((name, port)) = line
                    .strip_prefix("listening on ")
                    .and_then(|rest| rest.split_once(' '))
                {
                    ports.insert(name.to_owned(), format!("http://127.0.0.1:{}", port.trim()));
                }
            }
            anyhow::Ok(())
        })
        .await
        .map_err(|_| anyhow::anyhow!("the services did not listen within 60 s"))??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let of = |name: &str| {
            ports
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{name} did not report its port"))
        };
        let endpoints = Endpoints {
            video: of("video")?,
            telephony: of("telephony")?,
            signaling: of("signaling")?,
            monitoring: of("monitoring")?,
        };
        Ok(Self {
            child,
            pid,
            endpoints,
            stopped: false,
        })
    }

    /// SIGTERM to the services (under a wrapper, to the services' process only: the wrapper
    /// then finishes its report), then the graceful exit (bounded).
    async fn stop(mut self) -> anyhow::Result<()> {
        let target = find_in_tree(self.pid, "--serve")
            .ok_or_else(|| anyhow::anyhow!("the services' process is gone"))?;
        let sent = Command::new("kill")
            .args(["-s", "TERM", &target.to_string()])
            .status()
            .await?;
        anyhow::ensure!(sent.success(), "kill -s TERM {target} failed");
        // heaptrack writes its report after the exit: give it time.
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("the services did not exit within 60 s of SIGTERM"))??;
        self.stopped = true;
        anyhow::ensure!(status.success(), "the services exited with {status}");
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints a process's RSS over the run and its trend after warm-up.
fn report_memory(
    what: &str,
    rss: &[(Duration, u64)],
    warm_up: Duration,
    requests: usize,
    elapsed: Duration,
) -> Option<Trend> {
    println!("{what}, {} samples:", rss.len());
    let step = (rss.len() / 10).max(1);
    let shown: Vec<String> = rss
        .iter()
        .step_by(step)
        .chain(rss.last())
        .map(|(at, kib)| format!("{}s={:.1}MiB", at.as_secs(), *kib as f64 / 1024.0))
        .collect();
    println!("  {}", shown.join(" "));
    let trend = trend(rss, warm_up);
    match &trend {
        Some(t) => {
            let per_request = if requests > 0 {
                t.slope_kib_per_min * (elapsed.as_secs_f64() / 60.0) / requests as f64
            } else {
                0.0
            };
            println!(
                "  after {} s of warm-up: first-third median {:.1} MiB, last-third median {:.1} MiB ({:+.1} %), slope {:+.0} KiB/min (~{per_request:+.2} KiB per request)",
                warm_up.as_secs(),
                t.first_third_kib / 1024.0,
                t.last_third_kib / 1024.0,
                t.growth_percent,
                t.slope_kib_per_min,
            );
        }
        None => println!("  too few samples after warm-up for a trend"),
    }
    trend
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.serve.is_empty() {
        return serve(&args.serve).await;
    }
    anyhow::ensure!(args.minutes > 0, "--minutes must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let run_for = Duration::from_secs(args.minutes * 60);
    let deps = PrivateDeps::start()
        .await
        .map_err(anyhow::Error::from_boxed)?;
    let database_url = deps.postgres.url("switchboard");
    sb_testkit::init();
    let livekit = Arc::new(
        FakeLiveKit::start()
            .await
            .map_err(anyhow::Error::from_boxed)?,
    );
    let twilio = FakeTwilio::start()
        .await
        .map_err(anyhow::Error::from_boxed)?;
    let env = service_env(&database_url, &deps.nats.url(), &livekit, &twilio);
    let services = Services::spawn(&env, args.wrap.as_deref()).await?;
    let traffic = Traffic::new(
        services.endpoints.clone(),
        TestTokens::new(),
        livekit.clone(),
        twilio.auth_token.clone(),
        &database_url,
        Duration::from_secs(30),
    )
    .await?;
    let pid = services.pid;
    // Under a wrapper, the services' own process for RssAnon.
    let serve_pid = find_in_tree(pid, "--serve").unwrap_or(pid);
    let sample_rss = |rss: &mut Vec<(Duration, u64)>,
                      anon: &mut Vec<(Duration, u64)>,
                      harness: &mut Vec<(Duration, u64)>,
                      at| {
        rss.push((at, tree_rss_kib(pid).unwrap_or(0)));
        anon.push((at, anon_rss_kib(Some(serve_pid)).unwrap_or(0)));
        harness.push((at, rss_kib(None).unwrap_or(0)));
    };
    println!(
        "soak: {} min, {} scenarios/s, at most {} in flight, services in process {pid}: {:?}",
        args.minutes, args.rate, args.concurrency, services.endpoints
    );

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut skipped = 0u64;
    let mut started_scenarios = 0u64;
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    let mut harness = Vec::new();
    sample_rss(&mut rss, &mut anon, &mut harness, Duration::ZERO);
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
            sample_rss(&mut rss, &mut anon, &mut harness, elapsed);
            next_sample += Duration::from_secs(args.sample_every);
        }
        if elapsed >= next_progress {
            let done = samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            println!(
                "  {:>3} s: {started_scenarios} scenarios, {done} requests, RSS services {} MiB, harness {} MiB",
                elapsed.as_secs(),
                tree_rss_kib(pid).unwrap_or(0) / 1024,
                rss_kib(None).unwrap_or(0) / 1024
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
    sample_rss(&mut rss, &mut anon, &mut harness, elapsed);

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

    let warm_up = Duration::from_secs(args.warm_up);
    println!();
    let services_trend = report_memory(
        &format!(
            "memory of the four services (RSS of process {pid}, every {} s)",
            args.sample_every
        ),
        &rss,
        warm_up,
        samples.len(),
        elapsed,
    );
    report_memory(
        &format!("of which anonymous (RssAnon of process {serve_pid}: heap, stacks; not judged)"),
        &anon,
        warm_up,
        samples.len(),
        elapsed,
    );
    report_memory(
        "memory of the harness (this process: fakes, load generator; not judged)",
        &harness,
        warm_up,
        samples.len(),
        elapsed,
    );
    let flat = services_trend
        .as_ref()
        .is_some_and(|t| t.growth_percent.abs() <= FLAT_PERCENT);
    println!(
        "  services: {} (flat = last-third median within ±{FLAT_PERCENT} % of the first third's, after warm-up)",
        if flat { "flat" } else { "NOT FLAT" }
    );
    println!();
    println!("events end to end through JetStream: {accounting}");

    services.stop().await?;
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
