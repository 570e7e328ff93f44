//! Scenario 4: the outbox measured beside raw JetStream publishing, in one run on this machine
//! (formerly `switchboard bench outbox`; the measurement is unchanged).
//!
//! - Publishing rate: N events as fast as possible. Raw: pipelined `publish` + ack (256 in flight,
//!   the relay's batch size). Outbox: N committed rows drained by the relay (claim, publish, ack,
//!   mark published); the clock stops at the last JetStream ack.
//! - End to end: producers committing one event per transaction (as services do) while the relay
//!   publishes, beside the same transactions with no relay running: the rate Postgres allows for
//!   that SQL on this machine (NOTIFY serialises commits, so that is the ceiling, not the relay).
//! - Latency at a fixed rate: events paced at `--rate` per second for `--seconds`. Raw: publish to
//!   ack. Outbox: transaction commit to JetStream ack (as the relay observes it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use diesel_async::{AsyncConnection, RunQueryDsl};
use sb_db::DatabaseConfig;
use sb_events::outbox::{Outbox, Relay, RelayConfig};
use sb_events::proto::VideoCallStarted;
use sb_events::streams::{StreamSettings, ensure_stream};
use sb_events::{Domain, Event, EventMetrics, Namespace, headers};
use sb_platform::config::NatsConfig;
use sb_platform::{Env, ProcessEnv};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cpu;
use crate::report::{Row, Verdict};
use crate::stats::{Spread, number, percent_of};

/// What the scenario runs (the former `switchboard bench outbox` defaults).
#[derive(Clone)]
pub struct OutboxArgs {
    /// Events per throughput measurement.
    pub events: usize,
    /// Events per second in the latency measurement.
    pub rate: u64,
    /// Length of the latency measurement, in seconds.
    pub seconds: u64,
    /// Concurrent producers (connections committing transactions).
    pub producers: usize,
    /// Relay batch size, and the raw loop's number of publishes in flight (kept equal).
    pub batch: usize,
    /// Repetitions; figures are medians with min–max spread.
    pub runs: usize,
}

impl OutboxArgs {
    pub fn with_runs(runs: usize) -> Self {
        Self {
            events: 20_000,
            rate: 1_000,
            seconds: 10,
            producers: 8,
            batch: 256,
            runs,
        }
    }
}

const TARGET_RATE: &str = "≥ 80 % of raw publish rate";
/// The relay's share of the raw publish rate it must reach (a performance target).
const RATE_SHARE: f64 = 80.0;
const TARGET_P99: &str = "p99 < 50 ms at 1,000 events/s";

pub async fn run(runs: usize) -> Vec<Row> {
    match outbox(OutboxArgs::with_runs(runs)).await {
        Ok(rows) => rows,
        Err(error) => vec![Row::failed("4. outbox", TARGET_RATE, &format!("{error:#}"))],
    }
}

const SOURCE: &str = "bench";
/// `application_name` of the scenario's database connections.
const OUTBOX_APP: &str = "sb-outbox";

struct Bench {
    /// CPU of this process (where the relay and the raw loop run), the database's backends, NATS.
    probe: cpu::Probe,
    batch: usize,
    js: jetstream::Context,
    ns: Namespace,
    database: DatabaseConfig,
    pool: sb_db::DbPool,
    /// Shared with the relay, as in the services: producers wake it in memory after their commit.
    outbox: Outbox,
}

/// CPU per event of one window, µs: this process, the database's backends, NATS.
#[derive(Clone, Copy)]
struct EventCpu {
    process: f64,
    backends: f64,
    nats: f64,
}

impl EventCpu {
    fn of(usage: &cpu::Usage, events: usize) -> Self {
        let us = |seconds: f64| seconds * 1e6 / events.max(1) as f64;
        Self {
            // The harness's every thread: the relay and the raw loop run on its runtime.
            process: us(usage.of(cpu::Part::LoadGenerator)
                + usage.of(cpu::Part::Service)
                + usage.of(cpu::Part::Fakes)),
            backends: us(usage.of(cpu::Part::RelayBackends)),
            nats: us(usage.of(cpu::Part::Nats)),
        }
    }

    fn total(&self) -> f64 {
        self.process + self.backends + self.nats
    }
}

#[derive(Default)]
struct Figures {
    raw_rate: Vec<f64>,
    outbox_rate: Vec<f64>,
    raw_cpu: Vec<EventCpu>,
    outbox_cpu: Vec<EventCpu>,
    end_to_end_rate: Vec<f64>,
    sql_limit_rate: Vec<f64>,
    raw_p50: Vec<f64>,
    raw_p99: Vec<f64>,
    outbox_p50: Vec<f64>,
    outbox_p99: Vec<f64>,
    outbox_achieved_rate: Vec<f64>,
}

fn event(n: u64) -> VideoCallStarted {
    VideoCallStarted {
        call_id: Uuid::now_v7().to_string(),
        org_id: "0190a000-0000-7000-8000-000000000001".to_owned(),
        appointment_id: Uuid::now_v7().to_string(),
        room_name:
            "org_0190a000-0000-7000-8000-000000000001_apt_0190a000-0000-7000-8003-000000000101"
                .to_owned(),
        started_at_unix_ms: i64::try_from(n).unwrap_or(0),
    }
}

fn raw_headers(id: Uuid) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    map.insert(headers::MSG_ID, id.to_string().as_str());
    map.insert(headers::EVENT_TYPE, VideoCallStarted::TYPE);
    map.insert(headers::ORG_ID, "0190a000-0000-7000-8000-000000000001");
    map.insert(headers::TRACEPARENT, headers::new_traceparent(id).as_str());
    map
}

async fn outbox(args: OutboxArgs) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(&ProcessEnv);
    let mut database = DatabaseConfig::from_env(&env)?;
    let mut url = url_of(&database)?;
    let name = format!("switchboard_bench_{}", std::process::id());
    url.set_path(&format!("/{name}"));
    // Named like a service's connections (`sb-…`, not `…/http`), so the CPU probe counts its
    // backends as the relay's: during the drain only the relay uses the database.
    database.url = cpu::with_application_name(url.as_str(), OUTBOX_APP).into();
    database.max_connections = args.producers + 4;
    sb_db::ensure_database_exists(&database).await?;
    sb_db::migrate::run_pending(&database).await?;
    let pool = sb_db::build_pool(&database)?;
    let client = sb_platform::nats::connect(&NatsConfig::from_env(&env)?, "bench").await?;
    let server_version = client.server_info().version;
    let js = jetstream::new(client);
    let ns = Namespace::prefixed(&format!("bench{}", std::process::id()));
    ensure_stream(&js, &ns, Domain::Video, &StreamSettings::default()).await?;
    let probe = cpu::Probe::new(&cpu::with_application_name(url.as_str(), OUTBOX_APP)).await?;
    let bench = Bench {
        probe,
        batch: args.batch,
        js,
        ns,
        database: database.clone(),
        pool,
        outbox: Outbox::new(SOURCE),
    };

    eprintln!(
        "  NATS {server_version}; PostgreSQL at {}",
        database.redacted_url()
    );
    let mut figures = Figures::default();
    for run in 1..=args.runs {
        eprintln!("  outbox run {run}/{}…", args.runs);
        let (rate, cpu) = bench.raw_throughput(args.events).await?;
        figures.raw_rate.push(rate);
        figures.raw_cpu.push(cpu);
        let (rate, cpu) = bench.relay_drain(args.events).await?;
        figures.outbox_rate.push(rate);
        figures.outbox_cpu.push(cpu);
        figures.end_to_end_rate.push(
            bench
                .outbox_throughput(args.events / 4, args.producers)
                .await?,
        );
        figures
            .sql_limit_rate
            .push(bench.sql_limit(args.events / 4, args.producers).await?);
        let (p50, p99, _) = bench
            .raw_paced(args.rate, args.seconds, args.producers)
            .await?;
        figures.raw_p50.push(p50);
        figures.raw_p99.push(p99);
        let (p50, p99, achieved) = bench
            .outbox_paced(args.rate, args.seconds, args.producers)
            .await?;
        figures.outbox_p50.push(p50);
        figures.outbox_p99.push(p99);
        figures.outbox_achieved_rate.push(achieved);
    }
    drop(bench.js.delete_stream(bench.ns.stream(Domain::Video)).await);
    bench.pool.close();
    drop_database(&database, &name).await;
    Ok(rows(&args, &figures))
}

fn url_of(database: &DatabaseConfig) -> anyhow::Result<url::Url> {
    use secrecy::ExposeSecret;
    Ok(url::Url::parse(database.url.expose_secret())?)
}

async fn drop_database(database: &DatabaseConfig, name: &str) {
    let Ok(mut url) = url_of(database) else {
        return;
    };
    url.set_path("/postgres");
    if let Ok(mut admin) = diesel_async::AsyncPgConnection::establish(url.as_str()).await {
        drop(
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await,
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

impl Bench {
    fn relay(&self, observer: sb_events::outbox::AckObserver) -> anyhow::Result<Relay> {
        Ok(Relay::new(
            self.outbox.clone(),
            self.pool.clone(),
            self.database.clone(),
            self.js.clone(),
            self.ns.clone(),
            EventMetrics::standalone()?,
        )
        .with_config(RelayConfig {
            batch_size: i64::try_from(self.batch).unwrap_or(256),
            ..RelayConfig::default()
        })
        .with_ack_observer(observer))
    }

    async fn raw_throughput(&self, events: usize) -> anyhow::Result<(f64, EventCpu)> {
        let subject = self.ns.subject(&VideoCallStarted::SUBJECT.to_string());
        let before = self.probe.snapshot(None).await?;
        let started = Instant::now();
        let mut in_flight = std::collections::VecDeque::with_capacity(self.batch);
        for n in 0..events {
            let id = Uuid::now_v7();
            let payload = prost::Message::encode_to_vec(&event(n as u64));
            in_flight.push_back(
                self.js
                    .publish_with_headers(subject.clone(), raw_headers(id), payload.into())
                    .await?,
            );
            if in_flight.len() >= self.batch
                && let Some(ack) = in_flight.pop_front()
            {
                ack.await?;
            }
        }
        for ack in in_flight {
            ack.await?;
        }
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let usage = self.probe.snapshot(None).await?.since(&before);
        Ok((rate, EventCpu::of(&usage, events)))
    }

    /// Commits `events` rows of `source`, one event per transaction, from `producers` connections.
    async fn produce(
        &self,
        source: &'static str,
        events: usize,
        producers: usize,
    ) -> anyhow::Result<()> {
        let per_producer = events.div_ceil(producers);
        let mut tasks = Vec::new();
        let outbox = if source == SOURCE {
            self.outbox.clone()
        } else {
            Outbox::new(source)
        };
        for p in 0..producers {
            let pool = self.pool.clone();
            let outbox = outbox.clone();
            let count = per_producer.min(events.saturating_sub(p * per_producer));
            tasks.push(tokio::spawn(async move {
                let mut conn = pool.get().await?;
                for n in 0..count {
                    let event = event(n as u64);
                    outbox
                        .wake_on_commit(conn.transaction::<_, diesel::result::Error, _>(
                            async |c| outbox.enqueue(c, &event).await,
                        ))
                        .await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    }

    /// The relay alone: `events` rows already committed, drained to JetStream.
    async fn relay_drain(&self, events: usize) -> anyhow::Result<(f64, EventCpu)> {
        // Fill in large transactions (not timed); the relay is not running yet.
        let mut conn = self.pool.get().await?;
        for chunk in 0..events.div_ceil(1000) {
            let count = 1000.min(events - chunk * 1000);
            conn.transaction::<_, diesel::result::Error, _>(async |c| {
                for n in 0..count {
                    Outbox::new(SOURCE).enqueue(c, &event(n as u64)).await?;
                }
                Ok(())
            })
            .await?;
        }
        drop(conn);
        let (tx, mut acks) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let before = self.probe.snapshot(None).await?;
        let started = Instant::now();
        let relay = tokio::spawn(self.relay(tx)?.run(stop.clone()));
        let rate = ack_rate(&mut acks, events, started).await?;
        // At the last ack; the last batch's mark may still be running (a few rows' worth).
        let usage = self.probe.snapshot(None).await?.since(&before);
        stop.cancel();
        relay.await?;
        Ok((rate, EventCpu::of(&usage, events)))
    }

    /// The same producer transactions with no relay: what Postgres allows for this SQL here.
    async fn sql_limit(&self, events: usize, producers: usize) -> anyhow::Result<f64> {
        const LIMIT_SOURCE: &str = "bench-limit";
        let started = Instant::now();
        self.produce(LIMIT_SOURCE, events, producers).await?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let mut conn = self.pool.get().await?;
        diesel::sql_query("DELETE FROM outbox WHERE source = 'bench-limit'")
            .execute(&mut conn)
            .await?;
        Ok(rate)
    }

    async fn outbox_throughput(&self, events: usize, producers: usize) -> anyhow::Result<f64> {
        let (tx, mut acks) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay(tx)?.run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        self.produce(SOURCE, events, producers).await?;
        let rate = ack_rate(&mut acks, events, started).await?;
        stop.cancel();
        relay.await?;
        Ok(rate)
    }

    /// Dispatches `rate` ticks per second to `workers` tasks running `work`; returns the latencies.
    async fn paced<F, Fut>(
        &self,
        rate: u64,
        seconds: u64,
        workers: usize,
        work: F,
    ) -> anyhow::Result<(usize, Duration)>
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let (tick_tx, tick_rx) = async_channel(rate as usize * 2);
        let work = Arc::new(work);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let rx = tick_rx.clone();
            let work = work.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    // Take the lock only to receive: holding it while working would serialise
                    // the workers.
                    let next = rx.lock().await.recv().await;
                    let Some(n) = next else { break };
                    work(n).await?;
                }
                anyhow::Ok(())
            }));
        }
        drop(tick_rx);
        let total = rate * seconds;
        let started = Instant::now();
        // Send every tick that is due, then sleep a millisecond: timer granularity must not lower
        // the rate (sleeping until each tick would overshoot by up to 1 ms every time).
        let mut sent = 0;
        while sent < total {
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            while sent < due {
                tick_tx.send(sent).await?;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(tick_tx);
        for task in tasks {
            task.await??;
        }
        Ok((total as usize, started.elapsed()))
    }

    async fn raw_paced(
        &self,
        rate: u64,
        seconds: u64,
        workers: usize,
    ) -> anyhow::Result<(f64, f64, f64)> {
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let js = self.js.clone();
        let subject = self.ns.subject(&VideoCallStarted::SUBJECT.to_string());
        let sink = latencies.clone();
        let (count, elapsed) = self
            .paced(rate, seconds, workers, move |n| {
                let (js, subject, sink) = (js.clone(), subject.clone(), sink.clone());
                async move {
                    let started = Instant::now();
                    let payload = prost::Message::encode_to_vec(&event(n));
                    js.publish_with_headers(subject, raw_headers(Uuid::now_v7()), payload.into())
                        .await?
                        .await?;
                    sink.lock().await.push(started.elapsed());
                    Ok(())
                }
            })
            .await?;
        let mut sorted = latencies.lock().await.clone();
        sorted.sort();
        Ok((
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            count as f64 / elapsed.as_secs_f64(),
        ))
    }

    async fn outbox_paced(
        &self,
        rate: u64,
        seconds: u64,
        workers: usize,
    ) -> anyhow::Result<(f64, f64, f64)> {
        let (tx, mut acks) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay(tx)?.run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let commits: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
        let pool = self.pool.clone();
        let sink = commits.clone();
        let outbox = self.outbox.clone();
        let (count, elapsed) = self
            .paced(rate, seconds, workers, move |n| {
                let (pool, sink, outbox) = (pool.clone(), sink.clone(), outbox.clone());
                async move {
                    let mut conn = pool.get().await?;
                    let event = event(n);
                    let id = outbox
                        .wake_on_commit(conn.transaction::<_, diesel::result::Error, _>(
                            async |c| outbox.enqueue(c, &event).await,
                        ))
                        .await?;
                    sink.lock().await.insert(id, Instant::now());
                    Ok(())
                }
            })
            .await?;
        let mut acked = HashMap::with_capacity(count);
        while acked.len() < count {
            match tokio::time::timeout(Duration::from_secs(30), acks.recv()).await? {
                Some((id, at)) => {
                    acked.insert(id, at);
                }
                None => break,
            }
        }
        stop.cancel();
        relay.await?;
        let commits = commits.lock().await;
        let mut latencies: Vec<Duration> = acked
            .iter()
            .filter_map(|(id, at)| {
                commits
                    .get(id)
                    .map(|committed| at.saturating_duration_since(*committed))
            })
            .collect();
        latencies.sort();
        Ok((
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            count as f64 / elapsed.as_secs_f64(),
        ))
    }
}

/// Waits for `events` acks from the relay's observer; the rate since `started`, once all arrived.
async fn ack_rate(
    acks: &mut mpsc::UnboundedReceiver<(Uuid, Instant)>,
    events: usize,
    started: Instant,
) -> anyhow::Result<f64> {
    let mut received = 0;
    while received < events {
        if tokio::time::timeout(Duration::from_secs(30), acks.recv())
            .await?
            .is_none()
        {
            break;
        }
        received += 1;
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}

/// A bounded multi-consumer channel from tokio's mpsc and a mutex (no extra dependency).
fn async_channel(capacity: usize) -> (mpsc::Sender<u64>, Arc<Mutex<mpsc::Receiver<u64>>>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (tx, Arc::new(Mutex::new(rx)))
}

fn rows(args: &OutboxArgs, f: &Figures) -> Vec<Row> {
    let spread = |v: &[f64]| Spread::of(v);
    let (
        Some(raw_rate),
        Some(outbox_rate),
        Some(end_to_end),
        Some(sql_limit),
        Some(raw_p50),
        Some(raw_p99),
        Some(outbox_p50),
        Some(outbox_p99),
        Some(achieved),
    ) = (
        spread(&f.raw_rate),
        spread(&f.outbox_rate),
        spread(&f.end_to_end_rate),
        spread(&f.sql_limit_rate),
        spread(&f.raw_p50),
        spread(&f.raw_p99),
        spread(&f.outbox_p50),
        spread(&f.outbox_p99),
        spread(&f.outbox_achieved_rate),
    )
    else {
        return vec![Row::failed("4. outbox", TARGET_RATE, "no run")];
    };
    // Each run measures raw and relay back to back, so the per-run ratios are compared.
    let publish_ratio = percent_of(&f.outbox_rate, &f.raw_rate);
    let end_to_end_ratio = percent_of(&f.end_to_end_rate, &f.sql_limit_rate);
    let render_ratio =
        |r: Option<Spread>| r.map_or("n/a".to_owned(), |r| format!("{} %", r.render(0)));
    let totals = |v: &[EventCpu]| v.iter().map(EventCpu::total).collect::<Vec<_>>();
    let median_of = |v: &[EventCpu], f: fn(&EventCpu) -> f64| {
        Spread::of(&v.iter().map(f).collect::<Vec<_>>()).map_or(f64::NAN, |s| s.median)
    };
    let cpu_row = match (spread(&totals(&f.outbox_cpu)), spread(&totals(&f.raw_cpu))) {
        (Some(relay), Some(raw)) => Row {
            scenario: "4. outbox: CPU per event published, µs (relay draining committed rows; \
                 /proc ticks of 10 ms over windows of a few tenths of a second)"
                .to_owned(),
            ours: format!(
                "{}: relay's process {}, its Postgres backends {}, NATS {}",
                relay.render(1),
                number(median_of(&f.outbox_cpu, |c| c.process), 1),
                number(median_of(&f.outbox_cpu, |c| c.backends), 1),
                number(median_of(&f.outbox_cpu, |c| c.nats), 1),
            ),
            peer: format!(
                "raw publish: {}: process {}, NATS {}",
                raw.render(1),
                number(median_of(&f.raw_cpu, |c| c.process), 1),
                number(median_of(&f.raw_cpu, |c| c.nats), 1),
            ),
            // Per run, the relay's total over the raw loop's (both measured back to back).
            ratio: format!(
                "{} raw's",
                cpu::times(Spread::of(&crate::stats::ratios(
                    &totals(&f.outbox_cpu),
                    &totals(&f.raw_cpu)
                )))
            ),
            target: String::new(),
            met: Verdict::NotApplicable,
        },
        _ => Row::failed("4. outbox CPU per event", "", "no run"),
    };
    vec![
        cpu_row,
        Row {
            scenario: "4. outbox publishing: events/s (relay draining committed rows)".to_owned(),
            ours: outbox_rate.render(0),
            peer: format!(
                "raw async-nats JetStream publish, {} in flight: {}",
                args.batch,
                raw_rate.render(0)
            ),
            ratio: render_ratio(publish_ratio),
            target: TARGET_RATE.to_owned(),
            met: Verdict::from_bool(publish_ratio.is_some_and(|r| r.median >= RATE_SHARE)),
        },
        Row {
            scenario: format!(
                "4. outbox end to end: events/s ({} producers, one event per transaction)",
                args.producers
            ),
            ours: end_to_end.render(0),
            peer: format!("the same transactions, no relay: {}", sql_limit.render(0)),
            ratio: render_ratio(end_to_end_ratio),
            target: String::new(),
            met: Verdict::NotApplicable,
        },
        Row {
            scenario: format!(
                "4. outbox commit → JetStream ack at {} events/s (achieved {}): p50 / p99",
                number(args.rate as f64, 0),
                number(achieved.median, 0)
            ),
            ours: format!(
                "p50 {} ms, p99 {} ms",
                outbox_p50.render(2),
                outbox_p99.render(2)
            ),
            peer: format!(
                "raw publish → ack: p50 {} ms, p99 {} ms",
                raw_p50.render(2),
                raw_p99.render(2)
            ),
            ratio: String::new(),
            target: TARGET_P99.to_owned(),
            met: Verdict::from_bool(outbox_p99.median < 50.0),
        },
    ]
}
