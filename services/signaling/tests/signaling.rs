//! The signaling service end to end with a raw Socket.IO client: REST rooms, CRM-driven rooms,
//! every seed 004 event, status transitions with their events, reconnect grace.

mod common;

use std::time::Duration;

use common::{Rooms, TestSignaling, User, WAIT, visit};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::Namespace;
use sb_events::proto::{Appointment, AppointmentCancelled, AppointmentCreated, AppointmentStatus};
use sb_testkit::{Result, TestAppointment, wait_until};
use serde_json::json;
use uuid::Uuid;

async fn status_events(signaling: &TestSignaling) -> Result<i64> {
    let subjects = signaling.event_subjects().await?;
    let changes = subjects
        .iter()
        .filter(|s| *s == "sb.signaling.room.status_changed")
        .count();
    Ok(i64::try_from(changes)?)
}

#[tokio::test]
async fn rooms_are_created_and_read_by_those_who_may_see_the_appointment() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let stranger = User::new(org, Role::Closer);
    let outsider = User::new(Uuid::now_v7(), Role::Ceo);
    let appointment = signaling.appointment(&visit(&host, &guest)).await?;
    let path = format!("/video-call/room/appointment/{appointment}");

    let (status, _) = signaling.get_json(&host, &path).await?;
    assert_eq!(status, 404, "no room yet");
    let (status, created) = signaling
        .post_empty(&host, &format!("{path}/create"))
        .await?;
    assert_eq!(status, 200);
    let room_id = created["roomId"].as_str().ok_or("no roomId")?;
    assert!(room_id.starts_with("room_"));
    // idempotent
    let (_, again) = signaling
        .post_empty(&guest, &format!("{path}/create"))
        .await?;
    assert_eq!(again["roomId"], created["roomId"]);

    let (status, room) = signaling.get_json(&guest, &path).await?;
    assert_eq!(status, 200);
    assert_eq!(room["roomId"], created["roomId"]);
    assert_eq!(room["appointmentId"], json!(appointment));
    assert_eq!(room["status"], "Waiting");
    assert_eq!(room["practitionerJoined"], false);
    assert_eq!(room["patientJoined"], false);
    assert_eq!(room["startedAt"], json!(null));
    assert_eq!(room["appointment"]["patient"]["id"], json!(guest.id));
    assert_eq!(room["appointment"]["patient"]["firstName"], "John");
    assert_eq!(room["appointment"]["patient"]["lastName"], "Doe");
    assert_eq!(room["appointment"]["practitioner"]["id"], json!(host.id));
    // The CRM shares no user names: the practitioner's come from their token once they join.
    assert_eq!(
        room["appointment"]["practitioner"]["firstName"],
        json!(null)
    );
    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room_id}))
        .await?;
    practitioner.expect("joined-room").await?;
    let (_, room) = signaling.get_json(&guest, &path).await?;
    let (first, last) = host.name.split_once(' ').ok_or("a two-word test name")?;
    assert_eq!(
        room["appointment"]["practitioner"]["firstName"], first,
        "{room}"
    );
    assert_eq!(
        room["appointment"]["practitioner"]["lastName"], last,
        "{room}"
    );

    for user in [&stranger, &outsider] {
        let (status, _) = signaling.get_json(user, &path).await?;
        assert_eq!(status, 404);
        let (status, _) = signaling
            .post_empty(user, &format!("{path}/create"))
            .await?;
        assert_eq!(status, 404);
    }
    let response = signaling.app.get(&path).send().await?;
    assert_eq!(response.status(), 401);
    Ok(())
}

fn crm_appointment(
    id: Uuid,
    org: Uuid,
    host: Uuid,
    guest: Uuid,
    version: i64,
    status: AppointmentStatus,
) -> Appointment {
    TestAppointment {
        id,
        ..TestAppointment::new(org, host).with_guest(guest)
    }
    .crm(version, status)
}

#[tokio::test]
async fn crm_events_create_rooms_and_cancellations_end_them() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let js = signaling.nats.jetstream();
    let ns = Namespace::prefixed(signaling.nats.prefix());
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let id = Uuid::now_v7();
    let appointment = crm_appointment(id, org, host.id, guest.id, 1, AppointmentStatus::Scheduled);
    // twice: the room is created once
    for _ in 0..2 {
        sb_events::publish::publish(
            &js,
            &ns,
            &AppointmentCreated {
                appointment: Some(appointment.clone()),
            },
        )
        .await?;
    }
    let path = format!("/video-call/room/appointment/{id}");
    wait_until(WAIT, "the room of the remote appointment", || async {
        signaling
            .get_json(&host, &path)
            .await
            .is_ok_and(|(s, _)| s == 200)
    })
    .await?;
    let (_, room) = signaling.get_json(&host, &path).await?;
    assert_eq!(room["status"], "Waiting");

    let cancelled = crm_appointment(id, org, host.id, guest.id, 2, AppointmentStatus::Cancelled);
    sb_events::publish::publish(
        &js,
        &ns,
        &AppointmentCancelled {
            appointment: Some(cancelled),
            ..Default::default()
        },
    )
    .await?;
    wait_until(WAIT, "the room to end", || async {
        signaling
            .get_json(&host, &path)
            .await
            .is_ok_and(|(_, room)| room["status"] == "Ended")
    })
    .await?;
    assert_eq!(status_events(&signaling).await?, 1);
    Ok(())
}

#[tokio::test]
async fn connect_needs_a_valid_token() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let mut socket = signaling.raw_socket().await?;
    socket.send("40/video-call,").await?;
    // the message as before, and a code beside it (and in `data`, where socket.io-client puts it)
    assert_eq!(
        socket.recv().await?,
        "44/video-call,{\"code\":\"unauthorized\",\"data\":{\"code\":\"unauthorized\"},\"message\":\"unauthorized: no token\"}"
    );
    socket
        .send("40/video-call,{\"token\":\"not.a.jwt\"}")
        .await?;
    assert_eq!(
        socket.recv().await?,
        "44/video-call,{\"code\":\"unauthorized\",\"data\":{\"code\":\"unauthorized\"},\"message\":\"unauthorized: invalid token\"}"
    );
    socket.send("40/elsewhere,").await?;
    assert_eq!(
        socket.recv().await?,
        "44/elsewhere,{\"message\":\"Invalid namespace\"}"
    );
    Ok(())
}

#[tokio::test]
async fn every_seed_event_flows_between_practitioner_and_patient() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let stranger = User::new(org, Role::Closer);
    let room = signaling.room(&host, &guest).await?;
    let (hid, gid) = (host.id.to_string(), guest.id.to_string());

    let mut practitioner = signaling.socket(&host).await?;
    // the payload's userId is ignored: the token says who this is
    practitioner
        .emit("join-room", json!({"roomId": room, "userId": gid}))
        .await?;
    let joined = practitioner.expect("joined-room").await?;
    assert_eq!(joined["userId"], json!(hid));
    assert_eq!(joined["role"], "practitioner");
    assert_eq!(joined["status"], "Waiting");
    assert_eq!(
        joined["members"],
        json!([{"userId": hid, "role": "practitioner"}])
    );
    assert_eq!(
        joined["iceServers"][0]["urls"],
        json!(["stun:stun.example.test:3478"])
    );
    let turn = &joined["iceServers"][1];
    assert!(
        turn["username"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!(":{hid}")))
    );
    assert!(turn["credential"].as_str().is_some_and(|c| c.len() == 28));

    let mut patient = signaling.socket(&guest).await?;
    patient
        .emit("join-room", json!({"roomId": room, "userId": "forged"}))
        .await?;
    let joined = patient.expect("joined-room").await?;
    assert_eq!(joined["role"], "patient");
    assert_eq!(joined["status"], "InProgress");
    assert_eq!(joined["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        practitioner.expect("user-joined").await?,
        json!({"roomId": room, "userId": gid, "role": "patient"})
    );

    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    practitioner
        .emit(
            "webrtc-signal",
            json!({"roomId": room, "userId": "x", "signal": offer}),
        )
        .await?;
    assert_eq!(
        patient.expect("webrtc-signal").await?,
        json!({"roomId": room, "userId": hid, "signal": offer})
    );
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    patient
        .emit(
            "webrtc-signal",
            json!({"roomId": room, "signal": answer, "to": hid}),
        )
        .await?;
    assert_eq!(
        practitioner.expect("webrtc-signal").await?,
        json!({"roomId": room, "userId": gid, "signal": answer, "to": hid})
    );
    for (sent, received) in [
        ("screen-share-start", "screen-share-started"),
        ("screen-share-stop", "screen-share-stopped"),
    ] {
        practitioner
            .emit(sent, json!({"roomId": room, "userId": hid}))
            .await?;
        assert_eq!(
            patient.expect(received).await?,
            json!({"roomId": room, "userId": hid})
        );
    }
    for (sent, received) in [
        ("toggle-video", "video-toggled"),
        ("toggle-audio", "audio-toggled"),
    ] {
        patient
            .emit(
                sent,
                json!({"roomId": room, "userId": gid, "isEnabled": false}),
            )
            .await?;
        assert_eq!(
            practitioner.expect(received).await?,
            json!({"roomId": room, "userId": gid, "isEnabled": false})
        );
    }

    // bad payloads: an `error` event, and the socket stays
    patient
        .emit("toggle-video", json!({"roomId": room, "isEnabled": "yes"}))
        .await?;
    assert_eq!(
        patient.expect("error").await?,
        json!({"event": "toggle-video", "code": "invalid_payload", "message": "isEnabled must be a boolean"})
    );
    patient
        .emit("webrtc-signal", json!("not an object"))
        .await?;
    assert_eq!(
        patient.expect("error").await?,
        json!({"event": "webrtc-signal", "code": "invalid_payload", "message": "the payload must be an object"})
    );
    patient
        .emit("join-room", json!({"roomId": "room_0_nope"}))
        .await?;
    assert_eq!(
        patient.expect("error").await?,
        json!({"event": "join-room", "code": "not_found", "message": "room room_0_nope not found"})
    );
    patient
        .emit(
            "webrtc-signal",
            json!({"roomId": "room_0_other", "signal": {}}),
        )
        .await?;
    assert_eq!(
        patient.expect("error").await?,
        json!({"event": "webrtc-signal", "code": "not_in_room", "message": "not in room room_0_other"})
    );
    let mut intruder = signaling.socket(&stranger).await?;
    intruder.emit("join-room", json!({"roomId": room})).await?;
    // A room the caller may not see answers as one that does not exist (REST says 404 too).
    assert_eq!(
        intruder.expect("error").await?,
        json!({"event": "join-room", "code": "not_found", "message": format!("room {room} not found")})
    );
    // an acknowledgement round-trips
    patient
        .send(&format!(
            "42/video-call,7{}",
            json!(["toggle-audio", {"roomId": room, "isEnabled": true}])
        ))
        .await?;
    assert_eq!(patient.recv().await?, "43/video-call,7[{\"ok\":true}]");
    practitioner.expect("audio-toggled").await?;
    // join-room's acknowledgement says ok too, with what joined-room says
    patient
        .send(&format!(
            "42/video-call,8{}",
            json!(["join-room", {"roomId": room}])
        ))
        .await?;
    let ack = loop {
        let frame = patient.recv().await?;
        if let Some(body) = frame.strip_prefix("43/video-call,8") {
            break serde_json::from_str::<serde_json::Value>(body)?;
        }
    };
    assert_eq!(ack[0]["ok"], true, "{ack}");
    assert_eq!(ack[0]["roomId"], json!(room), "{ack}");

    let (_, view) = signaling
        .get_json(
            &host,
            &format!(
                "/video-call/room/appointment/{}",
                joined["appointmentId"].as_str().unwrap_or_default()
            ),
        )
        .await?;
    assert_eq!(view["status"], "InProgress");
    assert_eq!(view["practitionerJoined"], true);
    assert_eq!(view["patientJoined"], true);
    assert!(view["startedAt"].is_string());

    practitioner
        .emit("end-call", json!({"roomId": room, "userId": hid}))
        .await?;
    assert_eq!(
        practitioner.expect("call-ended").await?,
        json!({"roomId": room, "userId": hid})
    );
    assert_eq!(
        patient.expect("call-ended").await?,
        json!({"roomId": room, "userId": hid})
    );
    // everyone left: signals reach nobody and are refused
    patient
        .emit("webrtc-signal", json!({"roomId": room, "signal": offer}))
        .await?;
    assert_eq!(
        patient.expect("error").await?,
        json!({"event": "webrtc-signal", "code": "not_in_room", "message": format!("not in room {room}")})
    );
    let (_, view) = signaling
        .get_json(
            &host,
            &format!(
                "/video-call/room/appointment/{}",
                joined["appointmentId"].as_str().unwrap_or_default()
            ),
        )
        .await?;
    assert_eq!(view["status"], "Ended");
    assert!(view["endedAt"].is_string());
    // Waiting → InProgress → Ended
    assert_eq!(status_events(&signaling).await?, 2);
    // Joining again within the appointment's window resumes the call (it used to answer
    // call_ended for good; outside the window, or cancelled, it still does: see the resume tests).
    patient.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(patient.expect("joined-room").await?["status"], "Waiting");
    Ok(())
}

#[tokio::test]
async fn a_short_reconnect_does_not_flap_and_a_long_one_is_a_leave() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let gid = guest.id.to_string();

    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut patient = signaling.socket(&guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    patient.expect("joined-room").await?;
    practitioner.expect("user-joined").await?;

    // the patient's network blips: back within the grace (1.5 s in tests)
    patient.close().await?;
    let mut patient = signaling.socket(&guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(patient.expect("joined-room").await?["status"], "InProgress");
    // the practitioner saw neither a leave nor a join: the next event is this toggle
    patient
        .emit("toggle-audio", json!({"roomId": room, "isEnabled": true}))
        .await?;
    assert_eq!(
        practitioner.expect("audio-toggled").await?["userId"],
        json!(gid)
    );

    // gone for longer than the grace: user-left
    patient.close().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        practitioner.expect("user-left").await?,
        json!({"roomId": room, "userId": gid})
    );
    Ok(())
}

#[tokio::test]
async fn the_demo_page_and_its_client_bundle_are_served() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let page = signaling.app.get("/demo").send().await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    for event in [
        "join-room",
        "webrtc-signal",
        "toggle-audio",
        "toggle-video",
        "screen-share-start",
        "screen-share-stop",
        "end-call",
    ] {
        assert!(html.contains(&format!("\"{event}\"")), "{event}");
    }
    let bundle = signaling.app.get("/demo/socket.io.min.js").send().await?;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.text().await?.contains("Socket.IO v4.8.1"));
    Ok(())
}

#[tokio::test]
async fn cleanup_ends_rooms_of_past_appointments_only() -> Result {
    use sb_db::schema::appointments;
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let past = signaling.appointment(&visit(&host, &guest)).await?;
    let current = signaling.appointment(&visit(&host, &guest)).await?;
    for id in [past, current] {
        let (status, _) = signaling
            .post_empty(&host, &format!("/video-call/room/appointment/{id}/create"))
            .await?;
        assert_eq!(status, 200);
    }
    {
        let mut conn = signaling.db.conn().await?;
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(10);
        diesel::update(appointments::table.find(past))
            .set((
                appointments::scheduled_at.eq(long_ago),
                appointments::ends_at.eq(Some(long_ago + chrono::Duration::minutes(30))),
            ))
            .execute(&mut conn)
            .await?;
    }
    let state = sb_signaling::AppState {
        pool: signaling.db.pool(),
        outbox: sb_events::outbox::Outbox::new(sb_signaling::SERVICE),
        verifier: std::sync::Arc::new(signaling.tokens.verifier()),
        config: std::sync::Arc::new(signaling.config.clone()),
        metrics: sb_signaling::SignalingMetrics::detached()?,
        guest_links: sb_signaling::AppState::guest_links(&signaling.config),
    };
    let io = sb_signaling::socket_server(&state);
    assert_eq!(sb_signaling::cleanup_once(&state, &io).await?, 1);
    let (_, room) = signaling
        .get_json(&host, &format!("/video-call/room/appointment/{past}"))
        .await?;
    assert_eq!(room["status"], "Ended");
    let (_, room) = signaling
        .get_json(&host, &format!("/video-call/room/appointment/{current}"))
        .await?;
    assert_eq!(room["status"], "Waiting");
    assert_eq!(sb_signaling::cleanup_once(&state, &io).await?, 0);
    Ok(())
}

#[tokio::test]
async fn members_and_the_reconnect_grace_span_instances() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let second = sb_testkit::TestApp::spawn(sb_signaling::build(signaling.config.clone()).await?);
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let (hid, gid) = (host.id.to_string(), guest.id.to_string());

    // the practitioner is on the first instance, the patient joins through the second
    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut patient = signaling.socket_at(&second, &guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    let joined = patient.expect("joined-room").await?;
    let members = joined["members"].as_array().ok_or("no members")?;
    assert!(
        members.contains(&json!({"userId": hid, "role": "practitioner"})),
        "the practitioner on the other instance is listed: {joined}"
    );
    assert!(
        members.contains(&json!({"userId": gid, "role": "patient"})),
        "{joined}"
    );
    assert_eq!(members.len(), 2, "{joined}");
    assert_eq!(joined["status"], "InProgress");
    assert_eq!(
        practitioner.expect("user-joined").await?["userId"],
        json!(gid)
    );

    // the patient's network blips and it comes back through the first instance within the grace
    patient.close().await?;
    let mut patient = signaling.socket(&guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    patient.expect("joined-room").await?;
    // let the second instance's grace (1.5 s) run out: it was cancelled, so nothing comes
    tokio::time::sleep(Duration::from_millis(2000)).await;
    patient
        .emit("toggle-audio", json!({"roomId": room, "isEnabled": true}))
        .await?;
    // the practitioner saw neither a leave nor a join: the next event is this toggle
    assert_eq!(
        practitioner.expect("audio-toggled").await?["userId"],
        json!(gid)
    );

    // now the practitioner drops and comes back through the second instance after the grace
    practitioner.close().await?;
    assert_eq!(
        patient.expect("user-left").await?,
        json!({"roomId": room, "userId": hid})
    );
    let mut practitioner = signaling.socket_at(&second, &host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    let joined = practitioner.expect("joined-room").await?;
    assert!(
        joined["members"]
            .as_array()
            .ok_or("no members")?
            .contains(&json!({"userId": gid, "role": "patient"})),
        "{joined}"
    );
    assert_eq!(patient.expect("user-joined").await?["userId"], json!(hid));
    second.stop().await?;
    Ok(())
}

/// `end-call` on one instance reaches a peer connected to another before that peer is taken out
/// of the room: the notice and the removal travel as one cluster question, answered in that order
/// by every instance (as two messages on two subjects they raced, and the peer missed the notice
/// about 3 times in 10). Twenty rooms, each ended from the other instance than its peer's.
#[tokio::test]
async fn end_call_reaches_a_peer_on_another_instance_every_time() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let second = sb_testkit::TestApp::spawn(sb_signaling::build(signaling.config.clone()).await?);
    let org = Uuid::now_v7();
    for trial in 0..20 {
        let host = User::new(org, Role::Closer);
        let guest = User::new(org, Role::Member);
        let room = signaling.room(&host, &guest).await?;
        let mut practitioner = signaling.socket(&host).await?;
        practitioner
            .emit("join-room", json!({"roomId": room}))
            .await?;
        practitioner.expect("joined-room").await?;
        let mut patient = signaling.socket_at(&second, &guest).await?;
        patient.emit("join-room", json!({"roomId": room})).await?;
        patient.expect("joined-room").await?;
        practitioner.expect("user-joined").await?;

        practitioner
            .emit("end-call", json!({"roomId": room}))
            .await?;
        let ended = patient
            .expect("call-ended")
            .await
            .map_err(|error| format!("trial {trial}: the peer missed call-ended: {error}"))?;
        assert_eq!(ended["roomId"], json!(room), "trial {trial}: {ended}");
        assert_eq!(
            practitioner.expect("call-ended").await?["roomId"],
            json!(room),
            "trial {trial}"
        );
        practitioner.close().await?;
        patient.close().await?;
    }
    Ok(())
}

/// A practitioner on the first instance and a patient on the second, both in `room`.
async fn call_across_instances(
    signaling: &TestSignaling,
    second: &sb_testkit::TestApp,
    host: &User,
    guest: &User,
    room: &str,
) -> Result<(common::RawSocket, common::RawSocket)> {
    let mut practitioner = signaling.socket(host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut patient = signaling.socket_at(second, guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    patient.expect("joined-room").await?;
    practitioner.expect("user-joined").await?;
    Ok((practitioner, patient))
}

/// After `call-ended`, a socket relays nothing in the room and cannot join it again.
async fn refused_after_the_end(socket: &mut common::RawSocket, room: &str) -> Result {
    socket
        .emit(
            "webrtc-signal",
            json!({"roomId": room, "signal": {"type": "offer", "sdp": "v=0\r\n"}}),
        )
        .await?;
    assert_eq!(
        socket.expect("error").await?,
        json!({"event": "webrtc-signal", "code": "not_in_room", "message": format!("not in room {room}")})
    );
    socket.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(
        socket.expect("error").await?,
        json!({"event": "join-room", "code": "call_ended", "message": "the call has ended"})
    );
    Ok(())
}

/// A CRM cancellation ends the call for everyone in it, on every instance: each hears
/// `call-ended` (reason `cancelled`) and is out of the room (it used to end the room in the
/// database only: both kept relaying signals to each other).
#[tokio::test]
async fn a_cancellation_ends_the_call_for_everyone_on_every_instance() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let second = sb_testkit::TestApp::spawn(sb_signaling::build(signaling.config.clone()).await?);
    let js = signaling.nats.jetstream();
    let ns = Namespace::prefixed(signaling.nats.prefix());
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let appointment = visit(&host, &guest);
    signaling.appointment(&appointment).await?;
    let (status, created) = signaling
        .post_empty(
            &host,
            &format!("/video-call/room/appointment/{}/create", appointment.id),
        )
        .await?;
    assert_eq!(status, 200, "{created}");
    let room = created["roomId"].as_str().ok_or("no roomId")?.to_owned();
    let (mut practitioner, mut patient) =
        call_across_instances(&signaling, &second, &host, &guest, &room).await?;

    sb_events::publish::publish(
        &js,
        &ns,
        &AppointmentCancelled {
            appointment: Some(appointment.crm(2, AppointmentStatus::Cancelled)),
            ..Default::default()
        },
    )
    .await?;
    let notice = json!({"roomId": room, "reason": "cancelled"});
    assert_eq!(practitioner.expect("call-ended").await?, notice);
    assert_eq!(patient.expect("call-ended").await?, notice);
    refused_after_the_end(&mut patient, &room).await?;
    refused_after_the_end(&mut practitioner, &room).await?;
    let (_, view) = signaling
        .get_json(
            &host,
            &format!("/video-call/room/appointment/{}", appointment.id),
        )
        .await?;
    assert_eq!(view["status"], "Ended");
    second.stop().await?;
    Ok(())
}

/// The cleanup job ends a long-past appointment's call for everyone still in it, on every
/// instance (reason `over`), as `end-call` does.
#[tokio::test]
async fn the_cleanup_job_ends_the_call_for_everyone_on_every_instance() -> Result {
    use sb_db::schema::appointments;
    let signaling = TestSignaling::spawn().await?;
    // the second instance runs the cleanup job often; the first one never in this test
    let mut config = signaling.config.clone();
    config.cleanup_interval = Duration::from_millis(200);
    let second = sb_testkit::TestApp::spawn(sb_signaling::build(config).await?);
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let appointment = signaling.appointment(&visit(&host, &guest)).await?;
    let (_, created) = signaling
        .post_empty(
            &host,
            &format!("/video-call/room/appointment/{appointment}/create"),
        )
        .await?;
    let room = created["roomId"].as_str().ok_or("no roomId")?.to_owned();
    let (mut practitioner, mut patient) =
        call_across_instances(&signaling, &second, &host, &guest, &room).await?;

    {
        let mut conn = signaling.db.conn().await?;
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(10);
        diesel::update(appointments::table.find(appointment))
            .set((
                appointments::scheduled_at.eq(long_ago),
                appointments::ends_at.eq(Some(long_ago + chrono::Duration::minutes(30))),
            ))
            .execute(&mut conn)
            .await?;
    }
    let notice = json!({"roomId": room, "reason": "over"});
    assert_eq!(practitioner.expect("call-ended").await?, notice);
    assert_eq!(patient.expect("call-ended").await?, notice);
    refused_after_the_end(&mut practitioner, &room).await?;
    refused_after_the_end(&mut patient, &room).await?;
    second.stop().await?;
    Ok(())
}

/// An expired token at CONNECT says so with a code (`token_expired`), in the shape of the other
/// refusals (it used to be a bare "unauthorized: invalid token").
#[tokio::test]
async fn an_expired_token_at_connect_says_token_expired() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let user = User::new(Uuid::now_v7(), Role::Closer);
    let minter = signaling.tokens.minter();
    let mut claims = minter.claims(&user.principal(), Duration::from_secs(60));
    claims.exp = chrono::Utc::now().timestamp() - 3600;
    claims.nbf = claims.exp - 3600;
    claims.iat = claims.nbf;
    let expired = minter.sign(&claims)?;
    let mut socket = signaling.raw_socket().await?;
    socket
        .send(&format!("40/video-call,{}", json!({"token": expired})))
        .await?;
    let frame = socket.recv().await?;
    let body = frame
        .strip_prefix("44/video-call,")
        .ok_or_else(|| format!("not a connect_error: {frame}"))?;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body)?,
        json!({"message": "unauthorized: token expired", "code": "token_expired", "data": {"code": "token_expired"}})
    );
    Ok(())
}

/// Binary packets (and their attachments), binary frames and packets of an unknown type are
/// answered with an `error` that carries a code, instead of being dropped silently; an unreadable
/// packet's error carries one too; the socket stays.
#[tokio::test]
async fn binary_unknown_and_unreadable_packets_get_an_error_with_a_code() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let mut socket = signaling.socket(&host).await?;
    let binary =
        json!({"code": "unsupported_packet", "message": "binary packets are not supported"});

    // a BINARY_EVENT and its one attachment: one error for the packet
    socket
        .send("451-/video-call,[\"webrtc-signal\",{\"_placeholder\":true,\"num\":0}]")
        .await?;
    socket.send_binary(&[1, 2, 3]).await?;
    assert_eq!(socket.expect("error").await?, binary);
    // a binary frame on its own
    socket.send_binary(&[4, 5, 6]).await?;
    assert_eq!(socket.expect("error").await?, binary);
    // a packet type Socket.IO does not have
    socket.send("47/video-call,[\"join-room\"]").await?;
    assert_eq!(
        socket.expect("error").await?,
        json!({"code": "unsupported_packet", "message": "unknown packet type"})
    );
    // unreadable JSON
    socket.send("42/video-call,[\"join-room\",").await?;
    let error = socket.expect("error").await?;
    assert_eq!(error["code"], "invalid_packet", "{error}");
    // still connected, and the attachment was not taken for anything
    socket.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(socket.expect("joined-room").await?["roomId"], json!(room));
    Ok(())
}

/// The flood notice carries the code `rate_limited` before the socket is disconnected.
#[tokio::test]
async fn the_flood_notice_says_rate_limited() -> Result {
    let signaling = TestSignaling::spawn_with(|config| {
        config.socket.events_per_second = 5;
        config.socket.event_burst = 5;
    })
    .await?;
    let user = User::new(Uuid::now_v7(), Role::Closer);
    let mut socket = signaling.socket(&user).await?;
    for _ in 0..20 {
        socket
            .emit(
                "toggle-audio",
                json!({"roomId": "room_0_x", "isEnabled": true}),
            )
            .await?;
    }
    let notice = loop {
        let (name, payload) = socket.event().await?;
        if name == "error" && payload["code"] != "not_in_room" {
            break payload;
        }
    };
    assert_eq!(
        notice,
        json!({"code": "rate_limited", "message": "rate limit exceeded"})
    );
    assert_eq!(socket.recv().await?, "41/video-call,");
    Ok(())
}

/// The decoded `sb.signaling.room.status_changed` events: (previous, status) names.
async fn transitions(signaling: &TestSignaling) -> Result<Vec<(String, String)>> {
    use sb_events::proto::{SignalingRoomStatus, SignalingRoomStatusChanged};
    let name = |status: i32| {
        SignalingRoomStatus::try_from(status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("SIGNALING_ROOM_STATUS_")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    Ok(signaling
        .events_of::<SignalingRoomStatusChanged>("sb.signaling.room.status_changed")
        .await?
        .into_iter()
        .map(|e| (name(e.previous_status), name(e.status)))
        .collect())
}

/// Within the appointment's window, a room Ended by `end-call` (or by both sides dropping) is
/// joined again: it goes back to Waiting, then InProgress, and `status_changed` says Ended →
/// Waiting (it used to answer call_ended to every join for good).
#[tokio::test]
async fn an_ended_call_resumes_within_the_appointments_window() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    let (hid, gid) = (host.id.to_string(), guest.id.to_string());
    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut patient = signaling.socket(&guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    patient.expect("joined-room").await?;
    practitioner.expect("user-joined").await?;
    practitioner
        .emit("end-call", json!({"roomId": room}))
        .await?;
    practitioner.expect("call-ended").await?;
    patient.expect("call-ended").await?;

    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    let joined = practitioner.expect("joined-room").await?;
    assert_eq!(joined["status"], "Waiting", "{joined}");
    assert_eq!(
        joined["members"],
        json!([{"userId": hid, "role": "practitioner"}])
    );
    patient.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(patient.expect("joined-room").await?["status"], "InProgress");
    assert_eq!(
        practitioner.expect("user-joined").await?,
        json!({"roomId": room, "userId": gid, "role": "patient"})
    );
    // the resumed call relays again
    patient
        .emit("toggle-video", json!({"roomId": room, "isEnabled": false}))
        .await?;
    assert_eq!(
        practitioner.expect("video-toggled").await?["userId"],
        json!(gid)
    );
    let path = format!(
        "/video-call/room/appointment/{}",
        joined["appointmentId"].as_str().unwrap_or_default()
    );
    let (_, view) = signaling.get_json(&host, &path).await?;
    assert_eq!(view["status"], "InProgress");
    assert_eq!(view["endedAt"], json!(null));
    assert!(view["startedAt"].is_string());
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    wait_until(WAIT, "the resumed call's events", || async {
        transitions(&signaling).await.is_ok_and(|t| t.len() == 4)
    })
    .await?;
    assert_eq!(
        transitions(&signaling).await?,
        [
            pair("WAITING", "IN_PROGRESS"),
            pair("IN_PROGRESS", "ENDED"),
            pair("ENDED", "WAITING"),
            pair("WAITING", "IN_PROGRESS"),
        ]
    );
    Ok(())
}

/// Outside the appointment's window an Ended room stays ended, and a cancelled appointment's
/// room never resumes, even within its window.
#[tokio::test]
async fn an_ended_call_stays_ended_outside_the_window_or_when_cancelled() -> Result {
    use sb_db::schema::appointments;
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);

    // the appointment ended 9.5 hours ago: its window (2 hours after its end) is closed
    let appointment = signaling.appointment(&visit(&host, &guest)).await?;
    let (_, created) = signaling
        .post_empty(
            &host,
            &format!("/video-call/room/appointment/{appointment}/create"),
        )
        .await?;
    let room = created["roomId"].as_str().ok_or("no roomId")?.to_owned();
    {
        let mut conn = signaling.db.conn().await?;
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(10);
        diesel::update(appointments::table.find(appointment))
            .set((
                appointments::scheduled_at.eq(long_ago),
                appointments::ends_at.eq(Some(long_ago + chrono::Duration::minutes(30))),
            ))
            .execute(&mut conn)
            .await?;
    }
    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    practitioner
        .emit("end-call", json!({"roomId": room}))
        .await?;
    practitioner.expect("call-ended").await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    assert_eq!(
        practitioner.expect("error").await?,
        json!({"event": "join-room", "code": "call_ended", "message": "the call has ended"})
    );

    // cancelled by the CRM, within the window
    let js = signaling.nats.jetstream();
    let ns = Namespace::prefixed(signaling.nats.prefix());
    let visit = visit(&host, &guest);
    signaling.appointment(&visit).await?;
    let (_, created) = signaling
        .post_empty(
            &host,
            &format!("/video-call/room/appointment/{}/create", visit.id),
        )
        .await?;
    let room = created["roomId"].as_str().ok_or("no roomId")?.to_owned();
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    sb_events::publish::publish(
        &js,
        &ns,
        &AppointmentCancelled {
            appointment: Some(visit.crm(2, AppointmentStatus::Cancelled)),
            ..Default::default()
        },
    )
    .await?;
    practitioner.expect("call-ended").await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    assert_eq!(
        practitioner.expect("error").await?,
        json!({"event": "join-room", "code": "call_ended", "message": "the call has ended"})
    );
    Ok(())
}
