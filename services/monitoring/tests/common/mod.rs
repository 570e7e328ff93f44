//! The monitoring service as `sb_testkit::TestService` runs it (its test configuration and
//! build), and how a rep comes online.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a part of the harness"
)]

use std::time::Duration;

use sb_monitoring::MonitoringConfig;
use sb_testkit::{Deps, Result, Service};
use serde_json::{Value, json};

pub use sb_testkit::TestUser as User;

pub type TestMonitoring = sb_testkit::TestService<Monitoring>;

pub struct Monitoring;

impl Service for Monitoring {
    type Config = MonitoringConfig;
    type State = sb_monitoring::AppState;

    fn config(deps: &Deps<'_>) -> MonitoringConfig {
        sb_testkit::service_config!(
            deps,
            MonitoringConfig {
                livekit: deps.livekit.config(),
                livekit_timeout: Duration::from_secs(2),
                rep_token_ttl: Duration::from_secs(15 * 60),
                supervisor_token_ttl: Duration::from_secs(5 * 60),
                // Tests run passes themselves with `reconcile_once`.
                reconcile_interval: Duration::from_secs(3600),
                reconcile_min_age: Duration::ZERO,
                stream_keepalive: Duration::from_secs(15),
                stream_ticket_ttl: Duration::from_secs(30),
                stream_replay_max: 1000,
                stream_replay_window: Duration::from_secs(10 * 60),
            }
        )
    }

    fn name(_: &MonitoringConfig) -> &str {
        "monitoring"
    }

    async fn build(config: MonitoringConfig) -> Result<sb_platform::Application> {
        Ok(sb_monitoring::build(config).await?)
    }

    async fn state(config: MonitoringConfig) -> Result<sb_monitoring::AppState> {
        Ok(sb_monitoring::state_for_tests(config).await?)
    }
}

/// The rep asks for their token (registering them), then LiveKit reports them connected with
/// their microphone on: they are ONLINE. Returns the rep's room.
pub async fn rep_online(monitoring: &TestMonitoring, rep: &User) -> Result<String> {
    let (status, body) = monitoring
        .post_empty(rep, "/monitoring/rep/session")
        .await?;
    assert_eq!(status, 200, "{body}");
    let room = body["roomName"].as_str().unwrap_or_default().to_owned();
    let identity = format!("rep_{}", rep.id);
    monitoring.livekit.join(&room, &identity, &rep.name);
    monitoring.livekit.publish_audio(&room, &identity);
    let now = chrono::Utc::now().timestamp();
    let sid = format!("PA_{}", &rep.id.simple().to_string()[20..]);
    for event in [
        participant_event(
            "participant_joined",
            &format!("EV_j_{sid}"),
            &room,
            now,
            &sid,
            &identity,
        ),
        track_event(
            "track_published",
            &format!("EV_t_{sid}"),
            &room,
            now,
            &sid,
            &identity,
            &format!("TR_{sid}"),
        ),
    ] {
        let (status, answer) = monitoring.livekit_webhook(&event).await?;
        assert_eq!(status, 200, "{answer}");
    }
    Ok(room)
}

pub fn participant_event(
    kind: &str,
    id: &str,
    room: &str,
    at: i64,
    sid: &str,
    identity: &str,
) -> Value {
    json!({
        "event": kind, "id": id, "createdAt": at.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity, "joinedAt": at.to_string()},
    })
}

pub fn track_event(
    kind: &str,
    id: &str,
    room: &str,
    at: i64,
    sid: &str,
    identity: &str,
    track: &str,
) -> Value {
    json!({
        "event": kind, "id": id, "createdAt": at.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity},
        "track": {"sid": track, "type": "AUDIO", "source": "MICROPHONE"},
    })
}
