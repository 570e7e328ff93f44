//! The Node CRM example of docs/crm-integration.md (`examples/crm-node`), run against the video
//! service: its publisher's appointment is projected (the appointment becomes joinable, a stale
//! version changes nothing, a retried event id is dropped as a duplicate), and its consumer
//! decodes the `sb.video.call.started` the join publishes. A message without the headers the
//! guide requires is dead-lettered and projects nothing, so a publisher that got them wrong fails
//! here. Its user publisher feeds the monitoring service's roster.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_platform::config::HttpConfig;
use sb_testkit::{FakeLiveKit, Result, TestApp, TestDb, TestNats, TestTokens, TestUser};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/crm-node")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `npm ci` once, when the example's packages are not installed (`.ci/run` installs them too).
fn ensure_installed() -> Result {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let modules = example_dir().join("node_modules");
    if ["nats", "protobufjs"]
        .iter()
        .all(|p| modules.join(p).join("package.json").exists())
    {
        return Ok(());
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(example_dir())
        .status()
        .map_err(|e| format!("npm is needed for the CRM example: {e}"))?;
    if !status.success() {
        return Err(format!("npm ci in examples/crm-node failed: {status}").into());
    }
    Ok(())
}

struct Stack {
    app: TestApp,
    db: TestDb,
    nats: TestNats,
    tokens: TestTokens,
    _livekit: FakeLiveKit,
}

impl Stack {
    /// The video service as `switchboard up` builds it (from the environment), on its own
    /// database and NATS prefix, with the fake LiveKit.
    async fn spawn() -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let livekit = FakeLiveKit::start().await?;
        let tokens = TestTokens::new();
        let vars: HashMap<String, String> = [
            ("APP_ENV", "development".to_owned()),
            ("NATS_URL", sb_testkit::nats_url()),
            ("EVENTS_NAMESPACE", nats.prefix().to_owned()),
            ("LIVEKIT_URL", livekit.url()),
            ("LIVEKIT_API_KEY", livekit.api_key.clone()),
            ("LIVEKIT_API_SECRET", livekit.api_secret.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut config = sb_video::VideoConfig::from_env(&sb_platform::Env::new(&vars))?;
        config.http = HttpConfig::ephemeral();
        config.database = db.config();
        config.auth = tokens.auth_config();
        let app = TestApp::spawn(sb_video::build(config).await?);
        Ok(Self {
            app,
            db,
            nats,
            tokens,
            _livekit: livekit,
        })
    }

    /// Runs one of the example's scripts with the service's NATS and namespace; its stdout.
    async fn node(&self, args: &[&str], stdin: Option<&Value>) -> Result<String> {
        ensure_installed()?;
        let mut child = tokio::process::Command::new("node")
            .args(args)
            .current_dir(example_dir())
            .env("NATS_URL", sb_testkit::nats_url())
            .env("EVENTS_NAMESPACE", self.nats.prefix())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("node is needed for the CRM example: {e}"))?;
        let mut input = child.stdin.take().ok_or("no stdin")?;
        if let Some(body) = stdin {
            input.write_all(body.to_string().as_bytes()).await?;
        }
        drop(input);
        let output = sb_testkit::within(
            Duration::from_secs(30),
            "the CRM example",
            child.wait_with_output(),
        )
        .await??;
        let stdout = String::from_utf8(output.stdout)?;
        if !output.status.success() {
            return Err(format!(
                "node {args:?} failed ({}): {}{stdout}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(stdout)
    }

    async fn publish(&self, verb: &str, appointment: &Value, extra: &[&str]) -> Result<Value> {
        let mut args = vec!["publish-appointment.mjs", verb, "-"];
        args.extend_from_slice(extra);
        let out = self.node(&args, Some(appointment)).await?;
        Ok(serde_json::from_str(out.trim())?)
    }

    async fn projected_version(&self, id: Uuid) -> Option<i64> {
        use sb_db::schema::appointments;
        let mut conn = self.db.conn().await.ok()?;
        appointments::table
            .find(id)
            .select(appointments::version)
            .first(&mut conn)
            .await
            .ok()
    }
}

fn appointment(id: Uuid, org: Uuid, host: Uuid, version: i64) -> Value {
    json!({
        "id": id.to_string(),
        "org_id": org.to_string(),
        "host_user_id": host.to_string(),
        "lead": {"name": "Jane Lead", "phone": "+33612345678"},
        "scheduled_at_unix_ms": chrono::Utc::now().timestamp_millis() + 3_600_000,
        "ends_at_unix_ms": chrono::Utc::now().timestamp_millis() + 5_400_000,
        "kind": "APPOINTMENT_KIND_REMOTE",
        "status": "APPOINTMENT_STATUS_SCHEDULED",
        "version": version,
    })
}

#[tokio::test]
async fn the_node_crm_example_publishes_appointments_and_reads_call_events() -> Result {
    let stack = Stack::spawn().await?;
    let org = Uuid::now_v7();
    let closer = TestUser::new(org, Role::Closer);
    let id = Uuid::now_v7();

    // created, version 1, then the same event again (a CRM retry): JetStream drops the second.
    let event_id = Uuid::now_v7().to_string();
    let first = stack
        .publish(
            "created",
            &appointment(id, org, closer.id, 1),
            &["--event-id", &event_id],
        )
        .await?;
    assert_eq!(first["duplicate"], json!(false), "{first}");
    assert_eq!(first["subject"], json!("crm.appointment.created"));
    let retry = stack
        .publish(
            "created",
            &appointment(id, org, closer.id, 1),
            &["--event-id", &event_id],
        )
        .await?;
    assert_eq!(retry["duplicate"], json!(true), "{retry}");
    assert_eq!(retry["seq"], first["seq"]);

    sb_testkit::wait_until(
        Duration::from_secs(15),
        "the appointment to be projected",
        || async { stack.projected_version(id).await == Some(1) },
    )
    .await?;

    // A newer version replaces it; an older one arriving late changes nothing.
    stack
        .publish("updated", &appointment(id, org, closer.id, 3), &[])
        .await?;
    stack
        .publish("updated", &appointment(id, org, closer.id, 2), &[])
        .await?;
    sb_testkit::wait_until(
        Duration::from_secs(15),
        "version 3 to be projected",
        || async { stack.projected_version(id).await == Some(3) },
    )
    .await?;

    // The host joins the appointment's call: the service publishes sb.video.call.started.
    let token = stack.tokens.for_principal(&closer.principal());
    let (status, joined) = stack
        .app
        .post_json(
            &token,
            &format!("/calls/appointments/{id}/join"),
            &json!({"displayName": "Lucas"}),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");

    let out = stack
        .node(
            &[
                "consume-events.mjs",
                "sb.video.call.started",
                "--durable",
                "crm-timeline",
                "--count",
                "1",
                "--timeout-ms",
                "20000",
            ],
            None,
        )
        .await?;
    let line: Value = serde_json::from_str(out.lines().next().ok_or("no event printed")?)?;
    assert_eq!(line["subject"], json!("sb.video.call.started"), "{line}");
    assert_eq!(
        line["type"],
        json!("switchboard.events.v1.VideoCallStarted"),
        "{line}"
    );
    assert_eq!(line["orgId"], json!(org.to_string()), "{line}");
    assert!(
        line["id"]
            .as_str()
            .is_some_and(|v| Uuid::parse_str(v).is_ok()),
        "{line}"
    );
    let event = &line["event"];
    assert_eq!(event["appointment_id"], json!(id.to_string()), "{line}");
    assert_eq!(event["org_id"], json!(org.to_string()), "{line}");
    assert_eq!(event["call_id"], joined["callId"], "{line}");
    assert_eq!(
        event["room_name"],
        json!(format!("org_{org}_apt_{id}")),
        "{line}"
    );
    assert!(
        event["started_at_unix_ms"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|ms| ms > 0),
        "{line}"
    );

    // The durable consumer remembers: a second run has nothing new and times out.
    let again = stack
        .node(
            &[
                "consume-events.mjs",
                "sb.video.call.started",
                "--durable",
                "crm-timeline",
                "--count",
                "1",
                "--timeout-ms",
                "1500",
            ],
            None,
        )
        .await;
    assert!(again.is_err(), "the event was delivered twice: {again:?}");
    Ok(())
}

/// What the guide says is required really is: the same appointment without `Sb-Event-Type` is
/// never projected and ends as a dead letter naming the header.
#[tokio::test]
async fn an_event_without_its_type_header_is_dead_lettered_not_projected() -> Result {
    use sb_db::schema::dead_letters;
    let stack = Stack::spawn().await?;
    let org = Uuid::now_v7();
    let id = Uuid::now_v7();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
    headers.insert("Sb-Org-Id", org.to_string().as_str());
    let payload = {
        use prost::Message;
        sb_events::proto::AppointmentCreated {
            appointment: Some(sb_events::proto::Appointment {
                id: id.to_string(),
                org_id: org.to_string(),
                host_user_id: Uuid::now_v7().to_string(),
                kind: sb_events::proto::AppointmentKind::Remote as i32,
                status: sb_events::proto::AppointmentStatus::Scheduled as i32,
                scheduled_at_unix_ms: chrono::Utc::now().timestamp_millis(),
                version: 1,
                ..Default::default()
            }),
        }
        .encode_to_vec()
    };
    stack
        .nats
        .jetstream()
        .publish_with_headers(
            stack.nats.subject("crm.appointment.created"),
            headers,
            payload.into(),
        )
        .await?
        .await?;
    sb_testkit::wait_until(Duration::from_secs(15), "the dead letter", || async {
        let Ok(mut conn) = stack.db.conn().await else {
            return false;
        };
        dead_letters::table
            .filter(dead_letters::consumer.eq("video-appointments"))
            .select(dead_letters::error)
            .load::<String>(&mut conn)
            .await
            .is_ok_and(|errors| errors.iter().any(|e| e.contains("Sb-Event-Type")))
    })
    .await?;
    assert_eq!(stack.projected_version(id).await, None);
    Ok(())
}

/// The example's user publisher feeds monitoring's roster: a closer the CRM announces is listed
/// (offline) with the CRM's name; deactivated, they leave it.
#[tokio::test]
async fn the_node_crm_example_publishes_users_onto_the_monitoring_roster() -> Result {
    let stack = Stack::spawn().await?;
    let livekit = FakeLiveKit::start().await?;
    let vars: HashMap<String, String> = [
        ("APP_ENV", "development".to_owned()),
        ("NATS_URL", sb_testkit::nats_url()),
        ("EVENTS_NAMESPACE", stack.nats.prefix().to_owned()),
        ("LIVEKIT_URL", livekit.url()),
        ("LIVEKIT_API_KEY", livekit.api_key.clone()),
        ("LIVEKIT_API_SECRET", livekit.api_secret.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut config = sb_monitoring::MonitoringConfig::from_env(&sb_platform::Env::new(&vars))?;
    config.http = HttpConfig::ephemeral();
    config.database = stack.db.config();
    config.auth = stack.tokens.auth_config();
    let monitoring = TestApp::spawn(sb_monitoring::build(config).await?);

    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let closer = Uuid::now_v7();
    let user = json!({
        "id": closer.to_string(),
        "org_id": org.to_string(),
        "role": "USER_ROLE_CLOSER",
        "team_ids": [team.to_string()],
        "display_name": "Ada From The CRM",
        "active": true,
        "version": 1,
    });
    let out = stack
        .node(&["publish-user.mjs", "created", "-"], Some(&user))
        .await?;
    let answer: Value = serde_json::from_str(out.trim())?;
    assert_eq!(answer["subject"], "crm.user.created", "{answer}");
    let manager = TestUser::new(org, Role::Manager).in_team(team);
    let token = stack.tokens.for_principal(&manager.principal());
    let names = || async {
        monitoring
            .send(monitoring.get("/monitoring/reps"), Some(&token))
            .await
            .map(|(_, body)| {
                body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| (r["name"].clone(), r["status"].clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    sb_testkit::wait_until(
        Duration::from_secs(15),
        "the CRM's closer on the roster",
        || async { names().await == [(json!("Ada From The CRM"), json!("OFFLINE"))] },
    )
    .await?;
    let mut later = user.clone();
    later["version"] = json!(2);
    stack
        .node(&["publish-user.mjs", "deactivated", "-"], Some(&later))
        .await?;
    sb_testkit::wait_until(
        Duration::from_secs(15),
        "the deactivated closer to leave",
        || async { names().await.is_empty() },
    )
    .await?;
    Ok(())
}
