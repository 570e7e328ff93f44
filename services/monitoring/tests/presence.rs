//! The rep's side and presence: tokens, webhooks in any order, reconciliation, calls, restarts.

mod common;

use std::time::Duration;

use common::{TestMonitoring, User, participant_event, rep_online, track_event};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sb_auth::Role;
use sb_events::Namespace;
use sb_events::proto::{VideoParticipantJoined, VideoParticipantLeft};
use sb_testkit::{Result, wait_until};
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn a_rep_gets_a_microphone_only_token_the_official_sdk_reads() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let (status, body) = monitoring
        .post_empty(&rep, "/monitoring/rep/session")
        .await?;
    assert_eq!(status, 200, "{body}");
    let room = format!("monitor_{org}_{}", rep.id);
    assert_eq!(body["roomName"], room);
    assert_eq!(body["participantName"], format!("rep_{}", rep.id));
    assert_eq!(body["serverUrl"], monitoring.livekit.url());
    assert!(monitoring.livekit.rooms().iter().any(|r| r.name == room));
    let answer = sb_testkit::livekit_node(json!({
        "op": "verify-tokens",
        "apiKey": monitoring.livekit.api_key,
        "apiSecret": monitoring.livekit.api_secret,
        "tokens": {"rep": body["participantToken"]},
    }))
    .await?;
    assert_eq!(answer["rep"]["ok"], true, "{answer}");
    assert_eq!(
        answer["rep"]["video"],
        json!({"roomJoin": true, "room": room, "canPublish": true, "canSubscribe": true,
               "canPublishData": false, "canPublishSources": ["microphone"], "canUpdateOwnMetadata": false})
    );
    // 15 minutes, as in the seed.
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(
        &monitoring.livekit.api_key,
        &monitoring.livekit.api_secret,
    )
    .verify(body["participantToken"].as_str().unwrap_or_default())?;
    assert_eq!(claims.exp - claims.nbf, 900);

    // Supervisors do not publish to a monitoring room; LiveKit down is a 503.
    let ceo = User::new(org, Role::Ceo);
    let (status, _) = monitoring
        .post_empty(&ceo, "/monitoring/rep/session")
        .await?;
    assert_eq!(status, 403);
    monitoring.livekit.fail("CreateRoom", "unavailable", 1);
    let (status, body) = monitoring
        .post_empty(&rep, "/monitoring/rep/session")
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("livekit_unavailable"))
    );
    Ok(())
}

/// The webhooks of a rep's day: connects, microphone on, drops, reconnects, microphone off and on.
fn script(run: &str, room: &str, identity: &str, base: i64) -> Vec<Value> {
    let id = |n: u32| format!("EV_{run}_{n}");
    vec![
        participant_event("participant_joined", &id(0), room, base, "PA_1", identity),
        track_event(
            "track_published",
            &id(1),
            room,
            base + 1,
            "PA_1",
            identity,
            "TR_1",
        ),
        participant_event(
            "participant_left",
            &id(2),
            room,
            base + 60,
            "PA_1",
            identity,
        ),
        participant_event(
            "participant_joined",
            &id(3),
            room,
            base + 70,
            "PA_2",
            identity,
        ),
        track_event(
            "track_published",
            &id(4),
            room,
            base + 71,
            "PA_2",
            identity,
            "TR_2",
        ),
        track_event(
            "track_unpublished",
            &id(5),
            room,
            base + 90,
            "PA_2",
            identity,
            "TR_2",
        ),
        track_event(
            "track_published",
            &id(6),
            room,
            base + 95,
            "PA_2",
            identity,
            "TR_3",
        ),
    ]
}

async fn rep_view(monitoring: &TestMonitoring, supervisor: &User, rep: &User) -> Result<Value> {
    let (status, reps) = monitoring.get_json(supervisor, "/monitoring/reps").await?;
    assert_eq!(status, 200, "{reps}");
    Ok(reps["items"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|r| r["userId"] == rep.id.to_string())
                .cloned()
        })
        .unwrap_or(Value::Null))
}

#[tokio::test]
async fn presence_from_shuffled_and_duplicated_webhooks_matches_the_in_order_result() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let base = chrono::Utc::now().timestamp() - 600;
    let seed: u64 = std::env::var("SHUFFLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut states = Vec::new();
    for run in 0..4 {
        let rep = User::new(org, Role::Setter);
        let (_, body) = monitoring
            .post_empty(&rep, "/monitoring/rep/session")
            .await?;
        let room = body["roomName"].as_str().unwrap_or_default().to_owned();
        let events = script(&format!("r{run}"), &room, &format!("rep_{}", rep.id), base);
        let replay: Vec<Value> = if run == 0 {
            events
        } else {
            let mut all: Vec<Value> = events
                .iter()
                .chain(&events)
                .chain(&events)
                .cloned()
                .collect();
            all.shuffle(&mut rng);
            all
        };
        for event in &replay {
            let (status, answer) = monitoring.livekit_webhook(event).await?;
            assert_eq!(status, 200, "{answer}");
        }
        let view = rep_view(&monitoring, &ceo, &rep).await?;
        states.push((view["status"].clone(), view["online"].clone()));
    }
    assert_eq!(states[0], (json!("ONLINE"), json!(true)));
    for (run, state) in states.iter().enumerate() {
        assert_eq!(state, &states[0], "run {run} (SHUFFLE_SEED={seed})");
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_participant_left_is_corrected_by_reconciliation() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    let room = rep_online(&monitoring, &rep).await?;
    let (status, started) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{started}");
    assert_eq!(
        rep_view(&monitoring, &ceo, &rep).await?["status"],
        "LISTENED"
    );
    // The rep's app died: LiveKit dropped them but no participant_left ever came.
    monitoring.livekit.leave(&room, &format!("rep_{}", rep.id));
    let state = monitoring.state().await?;
    let report = sb_monitoring::reconcile_once(&state).await?;
    assert_eq!(report.connections_closed, 1, "{report:?}");
    let view = rep_view(&monitoring, &ceo, &rep).await?;
    assert_eq!(
        (view["status"].clone(), view["online"].clone()),
        (json!("OFFLINE"), json!(false))
    );
    // The session ended with the rep's presence.
    let session_id = started["session"]["id"].as_str().unwrap_or_default();
    let (_, session) = monitoring
        .get_json(&ceo, &format!("/monitoring/sessions/{session_id}"))
        .await?;
    assert_eq!(
        (session["status"].as_str(), session["stopReason"].as_str()),
        (Some("STOPPED"), Some("rep_offline"))
    );

    // And a connection LiveKit has but no webhook told us about is found.
    monitoring
        .livekit
        .join(&room, &format!("rep_{}", rep.id), "Rep");
    monitoring
        .livekit
        .publish_audio(&room, &format!("rep_{}", rep.id));
    let report = sb_monitoring::reconcile_once(&state).await?;
    assert_eq!(report.connections_found, 1, "{report:?}");
    assert_eq!(rep_view(&monitoring, &ceo, &rep).await?["status"], "ONLINE");
    Ok(())
}

#[tokio::test]
async fn calls_from_video_and_telephony_events_show_the_rep_on_a_call() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Director);
    let rep = User::new(org, Role::Closer);
    rep_online(&monitoring, &rep).await?;
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    let call = Uuid::now_v7();
    sb_events::publish::publish(
        &js,
        &ns,
        &VideoParticipantJoined {
            call_id: call.to_string(),
            org_id: org.to_string(),
            room_name: "org_x_apt_y".into(),
            user_id: rep.id.to_string(),
            identity: format!("u_{}", rep.id),
            role: "CLOSER".into(),
            joined_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the rep to show on a call",
        || async {
            rep_view(&monitoring, &ceo, &rep)
                .await
                .is_ok_and(|v| v["status"] == "ON_CALL" && v["onCall"]["kind"] == "video")
        },
    )
    .await?;
    sb_events::publish::publish(
        &js,
        &ns,
        &VideoParticipantLeft {
            call_id: call.to_string(),
            org_id: org.to_string(),
            room_name: "org_x_apt_y".into(),
            user_id: rep.id.to_string(),
            identity: format!("u_{}", rep.id),
            left_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the rep to be back online",
        || async {
            rep_view(&monitoring, &ceo, &rep)
                .await
                .is_ok_and(|v| v["status"] == "ONLINE" && v["onCall"].is_null())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_restart_loses_nothing() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    rep_online(&monitoring, &rep).await?;
    let (status, _) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201);
    let restarted = monitoring.restart().await?;
    let view = rep_view(&restarted, &ceo, &rep).await?;
    assert_eq!(view["status"], "LISTENED", "{view}");
    assert_eq!(view["listenedBy"], json!([ceo.id]));
    let (_, sessions) = restarted
        .get_json(&ceo, "/monitoring/sessions?status=ACTIVE")
        .await?;
    assert_eq!(sessions["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(sessions["total"], 1);
    Ok(())
}

#[tokio::test]
async fn bad_webhook_signatures_are_refused_and_nothing_is_written() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let (_, body) = monitoring
        .post_empty(&rep, "/monitoring/rep/session")
        .await?;
    let room = body["roomName"].as_str().unwrap_or_default().to_owned();
    let now = chrono::Utc::now().timestamp();
    let event = participant_event(
        "participant_joined",
        "EV_bad",
        &room,
        now,
        "PA_x",
        &format!("rep_{}", rep.id),
    );
    let forged = sb_testkit::sign_webhook(
        "APIother",
        "not-the-livekit-secret-0123456789",
        &event.to_string(),
    )?;
    let request = monitoring
        .app
        .post("/webhooks/livekit")
        .header("Authorization", forged)
        .body(event.to_string());
    let (status, answer) = monitoring.app.send(request, None).await?;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("invalid_signature"))
    );
    // The genuine one is then applied: the forged one left no receipt behind.
    let (status, answer) = monitoring.livekit_webhook(&event).await?;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
    Ok(())
}
