//! Scenario 2: signed Twilio status callbacks on sb-telephony built in-process (fake Twilio from
//! sb-testkit): 1,000 distinct outbound calls, each sent every transition (initiated, ringing,
//! in-progress, completed), 16 in flight. Beside it: pgbench running the SQL transaction our
//! handler commits (`sql/telephony_status.sql`) on the same database, and a reference Node 20
//! Express handler (`node/status-server.mjs`: `twilio.validateRequest` + `pg`, the same
//! transaction) on the same calls.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_telephony::TelephonyConfig;
use sb_telephony::config::{FollowupConfig, RateLimitConfig, TwilioConfig, VoiceTokenConfig};
use sb_telephony::domain::quality::Thresholds;
use sb_testkit::{FakeTwilio, TestApp, TestDb, TestNats, TestTokens, TestUser};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::report::{Row, Verdict};
use crate::stats::{Spread, percent_of, ratios};
use crate::{cpu, loadgen, pgbench};

pub const CALLS: usize = 1_000;
pub const TRANSITIONS: [&str; 4] = ["initiated", "ringing", "in-progress", "completed"];
pub const CONCURRENCY: usize = 16;
const PGBENCH_SECONDS: u64 = 6;
/// pgbench's client counts; the limit is the best of them.
pub const PGBENCH_CLIENTS: [usize; 3] = [4, 10, 16];
/// Twilio signs for the public URL, never the address the harness connects to.
pub const PUBLIC_BASE_URL: &str = "https://voice.example.test/telephony";
const NUMBER: &str = "+33123456789";
const CALLEE: &str = "+447911123456";
const TARGET: &str = "≥ 50 % of pgbench; ≥ 3× Node";
const APP_TARGET: &str = "≤ 1/5 of Node's";
const APP_TIMES: f64 = 5.0;
const STACK_TARGET: &str = "≥ 3× less than Node's";
const STACK_TIMES: f64 = 3.0;

fn config(
    db: &TestDb,
    nats: &TestNats,
    twilio: &FakeTwilio,
    tokens: &TestTokens,
) -> TelephonyConfig {
    let mut http = HttpConfig::ephemeral();
    http.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    TelephonyConfig {
        environment: Environment::Production,
        http,
        database: crate::service_database(db, "sb-telephony"),
        nats: NatsConfig {
            url: sb_testkit::nats_url(),
            connect_timeout: Duration::from_secs(5),
        },
        namespace: Namespace::prefixed(nats.prefix()),
        streams: StreamSettings::default(),
        auth: tokens.auth_config(),
        twilio: TwilioConfig {
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone().into(),
            api_base: twilio.url(),
            insights_base: twilio.url(),
            timeout: Duration::from_secs(5),
            voice: VoiceTokenConfig {
                api_key: None,
                twiml_app_sid: None,
                push_credential_apns: None,
                push_credential_fcm: None,
                ttl: Duration::from_secs(3600),
            },
            insights_enabled: true,
        },
        public_base_url: PUBLIC_BASE_URL.to_owned(),
        // Setting up 1,000 calls per run is not what is measured.
        rate_limit: RateLimitConfig {
            calls: 1_000_000,
            window: Duration::from_secs(60),
        },
        destinations: Default::default(),
        recording_retention: None,
        followup: FollowupConfig {
            interval: Duration::from_secs(3600),
            first_delay: Duration::from_secs(30),
            cost_give_up_after: Duration::from_secs(6 * 3600),
            quality_give_up_after: Duration::from_secs(3600),
            stale_after: Duration::from_secs(15 * 60),
        },
        quality: Thresholds::default(),
    }
}

/// One signed callback, ready to send: path and query, form body, `X-Twilio-Signature`.
pub struct Callback {
    pub path: String,
    pub body: String,
    pub signature: String,
}

/// Twilio's form for step `step` of a call (SequenceNumber = step, a second apart).
pub fn form(sid: &str, step: usize, base: chrono::DateTime<chrono::Utc>) -> Vec<(String, String)> {
    let status = TRANSITIONS[step % TRANSITIONS.len()];
    let at = (base + chrono::Duration::seconds(step as i64))
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string();
    let mut form: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", NUMBER),
        ("To", CALLEE),
        ("SequenceNumber", &step.to_string()),
        ("Timestamp", &at),
        ("CallbackSource", "call-progress-events"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if status == "completed" {
        form.push(("CallDuration".to_owned(), "42".to_owned()));
        form.push(("Duration".to_owned(), "1".to_owned()));
    }
    form
}

/// The callbacks of `calls` (id, sid), every transition, ordered step by step: the calls'
/// callbacks interleave as a busy account's do, and one call's callbacks are far apart.
pub fn callbacks(twilio: &FakeTwilio, calls: &[(Uuid, String)]) -> Vec<Callback> {
    let base = chrono::Utc::now() - chrono::Duration::minutes(5);
    let mut out = Vec::with_capacity(calls.len() * TRANSITIONS.len());
    for step in 0..TRANSITIONS.len() {
        for (id, sid) in calls {
            let path = format!("/webhook/voice/status?callId={id}");
            let form = form(sid, step, base);
            let signature = twilio.sign(&format!("{PUBLIC_BASE_URL}{path}"), &form);
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&form)
                .finish();
            out.push(Callback {
                path,
                body,
                signature,
            });
        }
    }
    out
}

#[derive(Default)]
struct Figures {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    node_rate: Vec<f64>,
    node_p99: Vec<f64>,
    pgbench: Vec<f64>,
    pgbench_p99: Vec<f64>,
    pgbench_clients: Vec<f64>,
    /// CPU per callback: ours, Node's, pgbench's (per transaction, at its best client count).
    cpu: Vec<cpu::PerOp>,
    node_cpu: Vec<cpu::PerOp>,
    pgbench_cpu: Vec<cpu::PerOp>,
    /// Callbacks of each run written under the call's lock (the version check lost a race).
    locked: Vec<f64>,
}

/// `sb_telephony_status_writes_total{path="locked"}` of the running service.
async fn locked_writes(app: &TestApp) -> anyhow::Result<f64> {
    let metrics = app.metrics().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix("sb_telephony_status_writes_total{path=\"locked\"} "))
        .map_or(Ok(0.0), str::parse)?)
}

pub async fn run(runs: usize, log_sql: bool) -> Vec<Row> {
    match measure(runs, log_sql).await {
        Ok(rows) => rows,
        Err(error) => vec![Row::failed(
            "2. Twilio status callbacks",
            TARGET,
            &format!("{error:#}"),
        )],
    }
}

/// Creates `count` outbound calls through the API (as the rep's app would), returns (id, sid).
async fn new_calls(
    app: &TestApp,
    token: &str,
    count: usize,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    let client = loadgen::client(8)?;
    let calls = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(count)));
    let (base, token) = (Arc::new(app.address.clone()), Arc::new(token.to_owned()));
    let sink = calls.clone();
    let result = loadgen::closed_loop(8, count, Duration::from_secs(120), move |_| {
        let (client, base, token, sink) =
            (client.clone(), base.clone(), token.clone(), sink.clone());
        async move {
            let response = client
                .post(format!("{base}/api/calls/initiate"))
                .bearer_auth(&*token)
                .json(&serde_json::json!({"from": NUMBER, "to": CALLEE}))
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            if status != reqwest::StatusCode::CREATED {
                anyhow::bail!("initiate answered {status}: {body}");
            }
            let id: Uuid = body["callId"].as_str().unwrap_or_default().parse()?;
            let sid = body["sid"].as_str().unwrap_or_default().to_owned();
            sink.lock().await.push((id, sid));
            Ok(())
        }
    })
    .await?;
    if let Some(error) = result.first_error {
        anyhow::bail!("creating calls: {error}");
    }
    let calls = calls.lock().await.clone();
    Ok(calls)
}

/// Sends `callbacks` to `base` with `CONCURRENCY` workers; every one must answer 200.
async fn send(base: &str, callbacks: Arc<Vec<Callback>>) -> anyhow::Result<loadgen::LoadResult> {
    let client = loadgen::client(CONCURRENCY)?;
    let base = Arc::new(base.to_owned());
    let total = callbacks.len();
    let result = loadgen::closed_loop(CONCURRENCY, total, Duration::from_secs(60), move |i| {
        let (client, base, callbacks) = (client.clone(), base.clone(), callbacks.clone());
        async move {
            let callback = &callbacks[i];
            let response = client
                .post(format!("{base}{}", callback.path))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", &callback.signature)
                .body(callback.body.clone())
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            if status != reqwest::StatusCode::OK {
                anyhow::bail!(
                    "status callback answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }
    })
    .await?;
    if let Some(error) = &result.first_error {
        anyhow::bail!(
            "{} of {total} callbacks failed, first: {error}",
            result.errors
        );
    }
    Ok(result)
}

/// Fills `bench_calls (n, id)` with the calls pgbench updates (pgbench finds the call by `n`).
async fn index_calls(db: &TestDb, calls: &[(Uuid, String)]) -> anyhow::Result<()> {
    let mut conn = db.conn().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS bench_calls (n int PRIMARY KEY, id uuid NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query("TRUNCATE bench_calls")
        .execute(&mut conn)
        .await?;
    let values: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(n, (id, _))| format!("({n}, '{id}')"))
        .collect();
    diesel::sql_query(format!(
        "INSERT INTO bench_calls (n, id) VALUES {}",
        values.join(",")
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

async fn measure(runs: usize, log_sql: bool) -> anyhow::Result<Vec<Row>> {
    let err = |e: sb_testkit::Error| anyhow::anyhow!("{e}");
    let root = crate::workspace_root()?;
    let node = NodeReference::start(&root.join("tools/bench/node")).await;
    let db = TestDb::new().await.map_err(err)?;
    if log_sql {
        crate::log_statements(&db).await?;
    }
    let probe = cpu::Probe::new(&db.url()).await?;
    let nats = TestNats::new().await.map_err(err)?;
    let twilio = probe
        .fakes_started(FakeTwilio::start())
        .await
        .map_err(err)?;
    let tokens = TestTokens::new();
    let service = crate::ServiceRuntime::new()?;
    let config = config(&db, &nats, &twilio, &tokens);
    let app = service
        .run(async move { anyhow::Ok(TestApp::spawn(sb_telephony::build(config).await?)) })
        .await??;
    let org = Uuid::now_v7();
    let ceo = TestUser::new(org, Role::Ceo);
    let rep = TestUser::new(org, Role::Closer);
    let response = app
        .client
        .put(app.url(&format!("/api/numbers/{NUMBER}")))
        .bearer_auth(tokens.for_principal(&ceo.principal()))
        .json(&serde_json::json!({"ownerUserId": rep.id}))
        .send()
        .await?;
    if !response.status().is_success() {
        anyhow::bail!("assigning the number: {}", response.text().await?);
    }
    let rep_token = tokens.for_principal(&rep.principal());
    let node = match node {
        Ok(node) => node.listen(&db.config(), &twilio.auth_token).await,
        Err(error) => Err(error),
    };
    let mut node = match node {
        Ok(node) => Some(node),
        Err(error) => {
            eprintln!("  Node reference unavailable: {error:#}");
            None
        }
    };
    if log_sql {
        let calls = new_calls(&app, &rep_token, 2).await?;
        send(&app.address, Arc::new(callbacks(&twilio, &calls))).await?;
        if let Some(node) = &node {
            let calls = new_calls(&app, &rep_token, 2).await?;
            send(&node.address, Arc::new(callbacks(&twilio, &calls))).await?;
        }
        eprintln!(
            "  logged the statements of 2 calls' callbacks on database {}",
            db.name()
        );
        return Ok(Vec::new());
    }
    let status_script = root.join("tools/bench/sql/telephony_status.sql");
    let completed_script = root.join("tools/bench/sql/telephony_completed.sql");
    let mut figures = Figures::default();
    for run in 1..=runs {
        eprintln!("  telephony run {run}/{runs}: ours…");
        let calls = new_calls(&app, &rep_token, CALLS).await?;
        crate::drain_outbox(&db, sb_telephony::SERVICE).await?;
        crate::checkpoint(&db.config()).await?;
        let locked_before = locked_writes(&app).await?;
        let before = probe.snapshot(None).await?;
        let ours = send(&app.address, Arc::new(callbacks(&twilio, &calls))).await?;
        crate::drain_outbox(&db, sb_telephony::SERVICE).await?;
        figures
            .cpu
            .push(probe.snapshot(None).await?.since(&before).per_op(ours.ok));
        figures
            .locked
            .push(locked_writes(&app).await? - locked_before);
        figures.rate.push(ours.rate());
        figures.p50.push(ours.percentile_ms(0.50));
        figures.p99.push(ours.percentile_ms(0.99));
        if let Some(node) = &mut node {
            eprintln!("  telephony run {run}/{runs}: Node…");
            let calls = new_calls(&app, &rep_token, CALLS).await?;
            crate::drain_outbox(&db, sb_telephony::SERVICE).await?;
            crate::checkpoint(&db.config()).await?;
            let pid = node.child.id();
            let before = probe.snapshot(pid).await?;
            let result = send(&node.address, Arc::new(callbacks(&twilio, &calls))).await?;
            figures
                .node_cpu
                .push(probe.snapshot(pid).await?.since(&before).per_op(result.ok));
            figures.node_rate.push(result.rate());
            figures.node_p99.push(result.percentile_ms(0.99));
        }
        index_calls(&db, &calls).await?;
        let mut best: Option<(usize, pgbench::PgbenchResult)> = None;
        for clients in PGBENCH_CLIENTS {
            eprintln!("  telephony run {run}/{runs}: pgbench at {clients} clients…");
            let limit = pgbench::run(
                &db.config(),
                // One callback in four ends its call.
                &[
                    (status_script.as_path(), 3),
                    (completed_script.as_path(), 1),
                ],
                pgbench::Load::closed(clients, PGBENCH_SECONDS),
                &[("calls", calls.len().to_string())],
                Some(&probe),
            )
            .await?;
            if best.is_none_or(|(_, b)| limit.tps > b.tps) {
                best = Some((clients, limit));
            }
        }
        if let Some((clients, limit)) = best {
            figures.pgbench.push(limit.tps);
            figures.pgbench_p99.push(limit.latency_p99_ms);
            figures.pgbench_clients.push(clients as f64);
            figures.pgbench_cpu.extend(limit.cpu);
        }
    }
    if let Some(node) = node.take() {
        node.stop().await;
    }
    drop(app);
    Ok(rows(&figures))
}

fn rows(f: &Figures) -> Vec<Row> {
    let scenario = format!(
        "2. Twilio status callbacks, signed, {} calls × {} transitions, {CONCURRENCY} in flight: callbacks/s; p50 / p99",
        crate::stats::number(CALLS as f64, 0),
        TRANSITIONS.len()
    );
    let (Some(rate), Some(p50), Some(p99), Some(limit)) = (
        Spread::of(&f.rate),
        Spread::of(&f.p50),
        Spread::of(&f.p99),
        Spread::of(&f.pgbench),
    ) else {
        return vec![Row::failed(&scenario, TARGET, "no run")];
    };
    let of_pgbench = percent_of(&f.rate, &f.pgbench);
    let node = Spread::of(&f.node_rate);
    let node_p99 = Spread::of(&f.node_p99);
    let times_node = Spread::of(&ratios(&f.rate, &f.node_rate));
    let pg_met = Verdict::from_bool(of_pgbench.is_some_and(|r| r.median >= 50.0));
    let node_met = times_node.map_or(Verdict::NotApplicable, |r| {
        Verdict::from_bool(r.median >= 3.0)
    });
    let app_ratios = cpu::times_less(
        &f.cpu.iter().map(|p| p.service).collect::<Vec<_>>(),
        &f.node_cpu.iter().map(|p| p.peer).collect::<Vec<_>>(),
    );
    let (app_ratio, app_met) = cpu::at_least(&app_ratios, APP_TIMES);
    let stack_ratios = cpu::times_less(
        &f.cpu.iter().map(cpu::PerOp::ours).collect::<Vec<_>>(),
        &f.node_cpu
            .iter()
            .map(cpu::PerOp::peer_stack)
            .collect::<Vec<_>>(),
    );
    let (stack_ratio, stack_met) = cpu::at_least(&stack_ratios, STACK_TIMES);
    let us = |values: Vec<f64>| Spread::render_of(&values, 0);
    vec![
        Row {
            scenario: "2. Twilio status callbacks: app CPU per callback (the service's process / Node's), µs".to_owned(),
            ours: us(f.cpu.iter().map(|p| p.service).collect()),
            peer: format!(
                "Node 20 Express + twilio + pg (NODE_ENV=production, named statements): {}",
                us(f.node_cpu.iter().map(|p| p.peer).collect())
            ),
            ratio: format!("Node's ÷ ours: {}", cpu::times(app_ratio)),
            target: APP_TARGET.to_owned(),
            met: app_met,
        },
        Row {
            scenario: "2. Twilio status callbacks: whole-stack CPU per callback, µs".to_owned(),
            ours: format!(
                "{}; written under the call's lock: {} of {} callbacks",
                cpu::describe_ours(&f.cpu, "fake Twilio"),
                Spread::render_of(&f.locked, 0),
                CALLS * TRANSITIONS.len()
            ),
            peer: format!(
                "Node: {} (its events stay in the outbox: nothing publishes them); pgbench, same SQL, best client count: {}",
                cpu::describe_peer(&f.node_cpu, "node"),
                cpu::describe_peer(&f.pgbench_cpu, "pgbench")
            ),
            ratio: format!("Node's ÷ ours: {}", cpu::times(stack_ratio)),
            target: STACK_TARGET.to_owned(),
            met: stack_met,
        },
        Row {
            scenario,
            ours: format!(
                "{} callbacks/s; p50 {} ms, p99 {} ms",
                rate.render(0),
                p50.render(2),
                p99.render(2)
            ),
            peer: format!(
                "pgbench, same SQL, best client count ({}): {} tx/s, p99 {} ms; Node 20 Express + twilio + pg: {}",
                Spread::render_of(&f.pgbench_clients, 0),
                limit.render(0),
                Spread::render_of(&f.pgbench_p99, 2),
                match (node, node_p99) {
                    (Some(n), Some(p)) =>
                        format!("{} callbacks/s, p99 {} ms", n.render(0), p.render(2)),
                    _ => "not measured (Node/npm unavailable)".to_owned(),
                }
            ),
            ratio: format!(
                "{} of pgbench; {} Node",
                of_pgbench.map_or("n/a".to_owned(), |r| format!("{} %", r.render(0))),
                times_node.map_or("n/a".to_owned(), |r| format!("{}×", r.render(1)))
            ),
            target: TARGET.to_owned(),
            met: Verdict::all(&[pg_met, node_met]),
        },
    ]
}

/// The Node reference server: `npm ci` when needed, then `node status-server.mjs`.
struct NodeReference {
    dir: PathBuf,
}

struct RunningNode {
    address: String,
    child: tokio::process::Child,
}

impl NodeReference {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        crate::npm_ci_unless_installed(dir, "twilio").await?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    async fn listen(
        self,
        database: &sb_db::DatabaseConfig,
        auth_token: &str,
    ) -> anyhow::Result<RunningNode> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = tokio::process::Command::new("node")
            .arg("status-server.mjs")
            .current_dir(&self.dir)
            .env("PORT", port.to_string())
            // As its users run it: Express's production mode (no per-request view/debug work).
            .env("NODE_ENV", "production")
            .env(
                "DATABASE_URL",
                cpu::with_application_name(database.url.expose_secret(), cpu::NODE_APP),
            )
            .env("TWILIO_AUTH_TOKEN", auth_token)
            .env("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
            .env("POOL_SIZE", database.max_connections.to_string())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(format!("{address}/healthz")).send().await
                && response.status().is_success()
            {
                return Ok(RunningNode { address, child });
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the Node reference exited: {status}");
            }
            if started.elapsed() > Duration::from_secs(20) {
                anyhow::bail!("the Node reference did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl RunningNode {
    async fn stop(mut self) {
        drop(self.child.start_kill());
        drop(self.child.wait().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_sent_in_order_with_its_sequence_number() {
        let base = chrono::Utc::now();
        let steps: Vec<Vec<(String, String)>> = (0..4).map(|s| form("CA00", s, base)).collect();
        let get = |f: &[(String, String)], k: &str| {
            f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let statuses: Vec<_> = steps
            .iter()
            .map(|f| get(f, "CallStatus").unwrap())
            .collect();
        assert_eq!(statuses, TRANSITIONS);
        let sequences: Vec<_> = steps
            .iter()
            .map(|f| get(f, "SequenceNumber").unwrap())
            .collect();
        assert_eq!(sequences, ["0", "1", "2", "3"]);
        assert_eq!(get(&steps[3], "CallDuration").as_deref(), Some("42"));
        assert_eq!(get(&steps[2], "CallDuration"), None);
    }
}
