//! `POST /webhooks/livekit`: signature checks (ours and the official Node SDK's), idempotency,
//! order independence, monotonic status, recordings.

mod common;

use chrono::Utc;
use common::{TestAppointment, TestVideo, User};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sb_auth::Role;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

struct Scenario {
    appointment: TestAppointment,
    call_id: String,
    room: String,
}

async fn call(video: &TestVideo, host: &User) -> Result<Scenario> {
    let appointment = TestAppointment::new(host.org, host.id);
    video.appointment(&appointment).await?;
    let (status, joined) = video
        .post_json(
            host,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");
    Ok(Scenario {
        call_id: joined["callId"].as_str().unwrap_or_default().to_owned(),
        room: joined["roomName"].as_str().unwrap_or_default().to_owned(),
        appointment,
    })
}

fn participant_event(
    kind: &str,
    id: &str,
    room: &str,
    at: i64,
    sid: &str,
    identity: &str,
    joined_at: i64,
) -> Value {
    json!({
        "event": kind,
        "id": id,
        "createdAt": at.to_string(),
        "room": {"sid": "RM_1", "name": room},
        "participant": {"sid": sid, "identity": identity, "name": "Someone", "state": "ACTIVE", "joinedAt": joined_at.to_string()},
    })
}

fn egress_event(kind: &str, id: &str, room: &str, at: i64, egress: &str, status: &str) -> Value {
    let mut info = json!({"egressId": egress, "roomName": room, "status": status, "startedAt": (at * 1_000_000_000).to_string()});
    if status == "EGRESS_COMPLETE" {
        info["endedAt"] = json!(((at + 1) * 1_000_000_000).to_string());
        info["fileResults"] = json!([{
            "filename": "recordings/call.mp4",
            "location": "https://s3.example.test/calls/recordings/call.mp4",
            "duration": "420000000000",
            "size": "1048576"
        }]);
    }
    json!({"event": kind, "id": id, "createdAt": at.to_string(), "room": {"name": room}, "egressInfo": info})
}

/// The webhooks LiveKit sends for one call: two people, one of whom drops and rejoins, a
/// recording, the room closing. Times are before the API join so they decide the call's start.
fn script(run: &str, room: &str, host: &User, guest: &User, base: i64) -> Vec<Value> {
    let h = format!("u_{}", host.id);
    let g = format!("u_{}", guest.id);
    let id = |n: u32| format!("EV_{run}_{n}");
    let egress = format!("EG_{run}");
    vec![
        json!({"event": "room_started", "id": id(0), "createdAt": base.to_string(), "room": {"name": room}}),
        participant_event(
            "participant_joined",
            &id(1),
            room,
            base + 1,
            "PA_h1",
            &h,
            base + 1,
        ),
        participant_event(
            "participant_joined",
            &id(2),
            room,
            base + 2,
            "PA_g1",
            &g,
            base + 2,
        ),
        egress_event(
            "egress_started",
            &id(3),
            room,
            base + 3,
            &egress,
            "EGRESS_ACTIVE",
        ),
        participant_event(
            "participant_left",
            &id(4),
            room,
            base + 60,
            "PA_g1",
            &g,
            base + 2,
        ),
        participant_event(
            "participant_joined",
            &id(5),
            room,
            base + 70,
            "PA_g2",
            &g,
            base + 70,
        ),
        participant_event(
            "participant_left",
            &id(6),
            room,
            base + 400,
            "PA_g2",
            &g,
            base + 70,
        ),
        participant_event(
            "participant_left",
            &id(7),
            room,
            base + 420,
            "PA_h1",
            &h,
            base + 1,
        ),
        egress_event(
            "egress_ended",
            &id(8),
            room,
            base + 425,
            &egress,
            "EGRESS_COMPLETE",
        ),
        json!({"event": "room_finished", "id": id(9), "createdAt": (base + 720).to_string(), "room": {"name": room}}),
    ]
}

/// The call as `GET /calls/{id}` shows it, without what differs between runs by construction
/// (ids, room, appointment, creation times, egress id).
async fn final_state(video: &TestVideo, user: &User, call_id: &str) -> Result<Value> {
    let (status, mut call) = video.get_json(user, &format!("/calls/{call_id}")).await?;
    assert_eq!(status, 200, "{call}");
    for key in [
        "id",
        "appointmentId",
        "roomName",
        "createdAt",
        "appointment",
    ] {
        call.as_object_mut().map(|c| c.remove(key));
    }
    if let Some(data) = call["recordingData"].as_object_mut() {
        data.remove("egressId");
    }
    for recording in call["recordings"].as_array_mut().into_iter().flatten() {
        for key in ["id", "egressId", "filepath", "startedAt"] {
            recording.as_object_mut().map(|r| r.remove(key));
        }
    }
    let mut participants = call["participants"].as_array().cloned().unwrap_or_default();
    for participant in &mut participants {
        participant.as_object_mut().map(|p| p.remove("id"));
    }
    participants.sort_by_key(|p| p["identity"].as_str().unwrap_or_default().to_owned());
    call["participants"] = Value::Array(participants);
    Ok(call)
}

#[tokio::test]
async fn replaying_a_calls_webhooks_three_times_in_any_order_gives_the_same_state() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Ceo);
    let base = Utc::now().timestamp() - 3600;

    let baseline = call(&video, &host).await?;
    for event in script("base", &baseline.room, &host, &guest, base) {
        let (status, answer) = video.livekit_webhook(&event).await?;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some("applied")),
            "{event}: {answer}"
        );
    }
    let expected = final_state(&video, &host, &baseline.call_id).await?;
    assert_eq!(expected["status"], "COMPLETED", "{expected}");
    assert_eq!(expected["durationSeconds"], 419, "{expected}");
    assert_eq!(expected["recordingStatus"], "READY");
    assert_eq!(
        expected["recordingUrl"],
        "https://s3.example.test/calls/recordings/call.mp4"
    );
    let guest_row = &expected["participants"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["identity"] == format!("u_{}", guest.id))
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(guest_row["totalSeconds"], 58 + 330, "{guest_row}");
    assert_eq!(guest_row["active"], false);

    let seed: u64 = std::env::var("SHUFFLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for run in 0..3 {
        let scenario = call(&video, &host).await?;
        let events = script(&format!("r{run}"), &scenario.room, &host, &guest, base);
        let mut replay: Vec<Value> = events
            .iter()
            .chain(&events)
            .chain(&events)
            .cloned()
            .collect();
        replay.shuffle(&mut rng);
        let mut applied = 0;
        for event in &replay {
            let (status, answer) = video.livekit_webhook(event).await?;
            assert_eq!(status, 200, "{event}: {answer}");
            if answer["outcome"] == "applied" {
                applied += 1;
            }
        }
        assert_eq!(
            applied,
            events.len(),
            "each event applied once (seed {seed})"
        );
        let state = final_state(&video, &host, &scenario.call_id).await?;
        assert_eq!(state, expected, "run {run} differs (SHUFFLE_SEED={seed})");
        let _ = &scenario.appointment;
    }
    Ok(())
}

#[tokio::test]
async fn a_late_participant_joined_never_reopens_a_completed_call() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let scenario = call(&video, &host).await?;
    let (_, stopped) = video
        .post_empty(&host, &format!("/calls/{}/stop", scenario.call_id))
        .await?;
    assert_eq!(stopped["status"], "COMPLETED");
    let now = Utc::now().timestamp();
    let late = participant_event(
        "participant_joined",
        "EV_late",
        &scenario.room,
        now,
        "PA_late",
        &format!("u_{}", host.id),
        now,
    );
    let (status, answer) = video.livekit_webhook(&late).await?;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", scenario.call_id))
        .await?;
    assert_eq!(call["status"], "COMPLETED", "{call}");
    Ok(())
}

#[tokio::test]
async fn unsigned_tampered_or_foreign_webhooks_are_refused_and_nothing_is_written() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let scenario = call(&video, &host).await?;
    let event = json!({"event": "room_finished", "id": "EV_x", "createdAt": Utc::now().timestamp().to_string(), "room": {"name": scenario.room}});
    let body = event.to_string();
    let signed = video.livekit.sign_webhook(&body)?;
    let foreign =
        sb_testkit::sign_webhook("APIother", "another-secret-entirely-0123456789", &body)?;
    let tampered = body.replace("room_finished", "room_started");
    for (authorization, payload) in [
        (None, body.clone()),
        (Some("garbage".to_owned()), body.clone()),
        (Some(foreign), body.clone()),
        (Some(signed.clone()), tampered),
    ] {
        let mut request = video.app.post("/webhooks/livekit").body(payload);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 403);
        let problem: Value = response.json().await?;
        assert_eq!(problem["code"], "invalid_signature");
    }
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", scenario.call_id))
        .await?;
    assert_eq!(call["status"], "ONGOING");
    let metrics = video.metrics().await?;
    assert!(
        metrics.contains("sb_video_webhooks_total{event=\"unknown\",outcome=\"rejected\"} 4"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn webhooks_signed_by_the_official_node_sdk_are_accepted() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let scenario = call(&video, &host).await?;
    let now = Utc::now().timestamp();
    let body = participant_event(
        "participant_joined",
        "EV_node",
        &scenario.room,
        now,
        "PA_n",
        &format!("u_{}", host.id),
        now,
    )
    .to_string();
    let signed = sb_testkit::livekit_node(json!({
        "op": "sign-webhook",
        "apiKey": video.livekit.api_key,
        "apiSecret": video.livekit.api_secret,
        "body": body,
    }))
    .await?;
    let authorization = signed["authorization"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let send = |payload: String| {
        video
            .app
            .post("/webhooks/livekit")
            .header("Authorization", authorization.clone())
            .header("Content-Type", "application/webhook+json")
            .body(payload)
            .send()
    };
    let tampered = send(body.replace("PA_n", "PA_x")).await?;
    assert_eq!(tampered.status(), 403);
    let accepted = send(body.clone()).await?;
    assert_eq!(accepted.status(), 200);
    let answer: Value = accepted.json().await?;
    assert_eq!(answer["outcome"], "applied");
    Ok(())
}

#[tokio::test]
async fn a_failed_egress_shows_on_the_call() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let scenario = call(&video, &host).await?;
    let now = Utc::now().timestamp();
    let mut failed = egress_event(
        "egress_ended",
        "EV_f",
        &scenario.room,
        now,
        "EG_f",
        "EGRESS_FAILED",
    );
    failed["egressInfo"]["error"] = json!("storage refused the upload");
    video.livekit_webhook(&failed).await?;
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", scenario.call_id))
        .await?;
    assert_eq!(call["recordingStatus"], "FAILED");
    assert_eq!(call["recordingData"]["error"], "storage refused the upload");
    assert_eq!(call["recordings"][0]["status"], "FAILED");
    // A late "active" report of the same egress does not resurrect it.
    video
        .livekit_webhook(&egress_event(
            "egress_updated",
            "EV_g",
            &scenario.room,
            now - 5,
            "EG_f",
            "EGRESS_ACTIVE",
        ))
        .await?;
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", scenario.call_id))
        .await?;
    assert_eq!(call["recordingStatus"], "FAILED");
    Ok(())
}

#[tokio::test]
async fn a_participant_report_without_a_name_keeps_the_name_the_call_knows() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let appointment = TestAppointment::new(host.org, host.id);
    video.appointment(&appointment).await?;
    let (status, joined) = video
        .post_json(
            &host,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({"displayName": "Hanna Host"}),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");
    let call_id = joined["callId"].as_str().ok_or("callId")?;
    let room = joined["roomName"].as_str().ok_or("roomName")?;
    let identity = format!("u_{}", host.id);
    let name_on_the_call = |call: &Value| {
        call["participants"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["identity"] == identity.as_str()))
            .map(|p| p["displayName"].clone())
    };

    let now = Utc::now().timestamp();
    for (id, sid, name) in [("EV_blank", "PA_1", ""), ("EV_spaces", "PA_2", "   ")] {
        let mut event = participant_event("participant_joined", id, room, now, sid, &identity, now);
        event["participant"]["name"] = json!(name);
        let (status, answer) = video.livekit_webhook(&event).await?;
        assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
        let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
        assert_eq!(name_on_the_call(&call), Some(json!("Hanna Host")), "{call}");
    }
    // A report with a name still updates it (the name the token carried).
    let event = participant_event(
        "participant_joined",
        "EV_named",
        room,
        now,
        "PA_3",
        &identity,
        now,
    );
    assert_eq!(video.livekit_webhook(&event).await?.0, 200);
    let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
    assert_eq!(name_on_the_call(&call), Some(json!("Someone")), "{call}");
    Ok(())
}

#[tokio::test]
async fn two_devices_of_one_participant_count_their_overlap_once() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let scenario = call(&video, &host).await?;
    let identity = format!("u_{}", host.id);
    let base = Utc::now().timestamp() - 3600;
    // Laptop 0–600 s; phone 300–900 s (joined before the laptop left); a reconnect of the
    // laptop 1000–1100 s. Connected: 900 + 100 s, not 600 + 600 + 100.
    let sessions = [
        ("PA_laptop", 0, 600),
        ("PA_phone", 300, 900),
        ("PA_again", 1000, 1100),
    ];
    for (sid, joined, left) in sessions {
        for (kind, at) in [("participant_joined", joined), ("participant_left", left)] {
            let event = participant_event(
                kind,
                &format!("EV_{sid}_{kind}"),
                &scenario.room,
                base + at,
                sid,
                &identity,
                base + joined,
            );
            let (status, answer) = video.livekit_webhook(&event).await?;
            assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
        }
    }
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", scenario.call_id))
        .await?;
    let row = call["participants"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["identity"] == identity.as_str()))
        .ok_or("no participant")?;
    assert_eq!(row["totalSeconds"], 1000, "{row}");
    assert_eq!(row["active"], false, "{row}");
    Ok(())
}
