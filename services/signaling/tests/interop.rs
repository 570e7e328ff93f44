//! Interop with the official npm `socket.io-client` 4.x (interop/socketio): websocket-only and
//! the default transports (long-polling, then the upgrade), every seed event with its payload, an
//! acknowledgement, and two instances relaying signals through the NATS adapter.

mod common;

use common::{Rooms, TestSignaling, User};
use sb_auth::Role;
use sb_testkit::{Result, TestApp, socketio_node};
use serde_json::{Value, json};
use uuid::Uuid;

async fn call(transports: Value) -> Result<(Value, String, String, String)> {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let answer = socketio_node(json!({
        "op": "call",
        "url": signaling.app.url(""),
        "room": room,
        "practitioner": signaling.token(&host),
        "patient": signaling.token(&guest),
        "transports": transports,
    }))
    .await?;
    Ok((answer, room, host.id.to_string(), guest.id.to_string()))
}

fn check_events(answer: &Value, room: &str, hid: &str, gid: &str) {
    let events = &answer["events"];
    assert_eq!(events["practitionerJoined"]["userId"], json!(hid));
    assert_eq!(events["practitionerJoined"]["role"], "practitioner");
    assert_eq!(events["patientJoined"]["role"], "patient");
    assert_eq!(events["patientJoined"]["status"], "InProgress");
    assert!(events["patientJoined"]["iceServers"].is_array());
    assert_eq!(
        events["userJoined"],
        json!({"roomId": room, "userId": gid, "role": "patient"})
    );
    assert_eq!(
        events["offer"],
        json!({"roomId": room, "userId": hid, "signal": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}})
    );
    assert_eq!(
        events["answer"],
        json!({"roomId": room, "userId": gid, "signal": {"type": "answer", "sdp": "v=0\r\n"}, "to": hid})
    );
    assert_eq!(events["candidate"]["signal"]["sdpMLineIndex"], 0);
    assert_eq!(
        events["screenShareStarted"],
        json!({"roomId": room, "userId": hid})
    );
    assert_eq!(
        events["screenShareStopped"],
        json!({"roomId": room, "userId": hid})
    );
    assert_eq!(
        events["videoToggled"],
        json!({"roomId": room, "userId": gid, "isEnabled": false})
    );
    assert_eq!(
        events["audioToggled"],
        json!({"roomId": room, "userId": gid, "isEnabled": true})
    );
    assert_eq!(answer["ack"], json!({"ok": true}));
    assert_eq!(
        events["error"],
        json!({"event": "toggle-video", "code": "invalid_payload", "message": "isEnabled must be a boolean"})
    );
    assert_eq!(events["userLeft"], json!({"roomId": room, "userId": gid}));
    assert_eq!(events["userJoinedAgain"]["userId"], json!(gid));
    assert_eq!(
        events["callEndedPractitioner"],
        json!({"roomId": room, "userId": hid})
    );
    assert_eq!(
        events["callEndedPatient"],
        json!({"roomId": room, "userId": hid})
    );
    assert_eq!(answer["connectError"], "unauthorized: invalid token");
    assert_eq!(answer["connectErrorCode"], "unauthorized");
}

#[tokio::test]
async fn official_client_over_websocket_only() -> Result {
    let (answer, room, hid, gid) = call(json!(["websocket"])).await?;
    check_events(&answer, &room, &hid, &gid);
    assert_eq!(answer["transports"]["first"], "websocket");
    Ok(())
}

#[tokio::test]
async fn official_client_polling_then_upgrade() -> Result {
    let (answer, room, hid, gid) = call(Value::Null).await?;
    check_events(&answer, &room, &hid, &gid);
    // connected over long-polling, then upgraded
    assert_eq!(answer["transports"]["first"], "polling");
    assert_eq!(answer["transports"]["practitioner"], "websocket");
    assert_eq!(answer["transports"]["patient"], "websocket");
    Ok(())
}

#[tokio::test]
async fn two_instances_relay_signals_through_nats() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let second = TestApp::spawn(sb_signaling::build(signaling.config.clone()).await?);
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let answer = socketio_node(json!({
        "op": "cluster",
        "urls": [signaling.app.url(""), second.url("")],
        "room": room,
        "practitioner": signaling.token(&host),
        "patient": signaling.token(&guest),
    }))
    .await?;
    let (hid, gid) = (host.id.to_string(), guest.id.to_string());
    assert_eq!(answer["userJoined"]["userId"], json!(gid));
    assert_eq!(answer["offer"]["userId"], json!(hid));
    assert_eq!(answer["offer"]["signal"]["type"], "offer");
    assert_eq!(answer["answer"]["userId"], json!(gid));
    second.stop().await?;
    Ok(())
}

/// A lead without an account connects with the official client and a guest link (as its
/// `auth.token`), on another instance than the host's, and the call's signals cross.
#[tokio::test]
async fn official_client_joins_with_a_guest_link() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let second = TestApp::spawn(sb_signaling::build(signaling.config.clone()).await?);
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let appointment = signaling
        .appointment(&sb_testkit::TestAppointment::new(host.org, host.id))
        .await?;
    let (status, link) = signaling
        .post_empty(
            &host,
            &format!("/video-call/room/appointment/{appointment}/guest-links"),
        )
        .await?;
    assert_eq!(status, 201, "{link}");
    let answer = socketio_node(json!({
        "op": "cluster",
        "urls": [signaling.app.url(""), second.url("")],
        "room": link["roomId"],
        "practitioner": signaling.token(&host),
        "patient": link["token"],
    }))
    .await?;
    assert_eq!(answer["userJoined"]["userId"], link["userId"], "{answer}");
    assert_eq!(answer["userJoined"]["role"], "patient", "{answer}");
    assert_eq!(answer["offer"]["userId"], json!(host.id.to_string()));
    assert_eq!(answer["answer"]["userId"], link["userId"]);
    second.stop().await?;
    Ok(())
}
