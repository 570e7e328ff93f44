//! Tenant isolation generated from each service's OpenAPI document: every route with a path
//! parameter is called by another org's leader (404), by a user of the same org without the
//! role or relation (403 or 404) and by the owner (not 404: the fixture is real and survived
//! the attacks; a route refusing everyone, its owner too, fails), each against fresh objects of
//! org A created through the API. Routes naming objects only in their body (`repId`,
//! `appointmentId`, …) are attacked the same way with org A's ids in the body. Every list route
//! is read by org B's leader with A's ids in its query: none of A's objects may show. A route
//! added to a service is attacked without editing this file; one whose path parameter has no
//! fixture fails with a message saying what to add.

mod common;

use common::services::{self, Service};
use common::{AttackerBodies, Callers, Credential, Exception, Fixture, check_isolation};
use sb_auth::Role;
use sb_testkit::{Moto, Result, TestAppointment, TestBucket, TestUser};
use serde_json::{Value, json};
use uuid::Uuid;

fn text(value: &Value, what: &str) -> Result<String> {
    Ok(value
        .as_str()
        .ok_or_else(|| format!("{what}: expected a string, got {value}"))?
        .to_owned())
}

fn report(service: &str, problems: &[String], log: &[String]) {
    for line in log {
        println!("{line}");
    }
    assert!(
        problems.is_empty(),
        "{service}: tenant isolation problems:\n{}",
        problems.join("\n")
    );
}

/// A call of `host`'s new appointment in `org`: (call id, room name).
async fn video_call(video: &Service, org: Uuid, host: &TestUser) -> Result<(String, String)> {
    let appointment = video
        .appointment(&TestAppointment::new(org, host.id))
        .await?;
    let (status, joined) = video
        .call(
            host,
            "POST",
            &format!("/calls/appointments/{appointment}/join"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, 200, "join: {joined}");
    Ok((
        text(&joined["callId"], "callId")?,
        text(&joined["roomName"], "roomName")?,
    ))
}

async fn guest_link(video: &Service, host: &TestUser, call: &str) -> Result<String> {
    let (status, link) = video
        .call(host, "POST", &format!("/calls/{call}/guest-links"), None)
        .await?;
    assert_eq!(status, 201, "guest link: {link}");
    text(&link["token"], "token")
}

async fn video_fixture(video: &Service, bucket: &TestBucket) -> Result<Fixture> {
    let org = Uuid::now_v7();
    let host = TestUser::new(org, Role::Closer);
    let appointment = video
        .appointment(&TestAppointment::new(org, host.id))
        .await?;
    let (status, joined) = video
        .call(
            &host,
            "POST",
            &format!("/calls/appointments/{appointment}/join"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, 200, "join: {joined}");
    let call = text(&joined["callId"], "callId")?;
    let room = text(&joined["roomName"], "roomName")?;
    // The call's recording: egress uploaded its file and LiveKit reported it finished.
    let egress = format!("EG_{}", Uuid::now_v7().simple());
    let key = format!("recordings/{org}/{call}/{egress}.mp4");
    bucket.put(&key, vec![7; 64]).await?;
    let ended = chrono::Utc::now().timestamp();
    let finished = sb_testkit::egress_ended_webhook(&room, &egress, &key, 64, ended);
    let (status, answer) = video.livekit_webhook(&finished).await?;
    assert_eq!(status, 200, "egress_ended: {answer}");
    let (status, view) = video
        .call(&host, "GET", &format!("/calls/{call}"), None)
        .await?;
    assert_eq!(status, 200, "call: {view}");
    let recording = text(&view["recordings"][0]["id"], "recording id")?;
    let link = guest_link(video, &host, &call).await?;
    let (status, waiting) = video
        .app
        .send(
            video
                .app
                .post("/calls/guest/join")
                .json(&json!({"token": link, "displayName": "Guest of A"})),
            None,
        )
        .await?;
    assert_eq!(status, 202, "guest join: {waiting}");
    let guest = text(&waiting["guestId"], "guestId")?;
    let device_secret = text(&waiting["deviceSecret"], "deviceSecret")?;
    let identity = format!("g_{guest}");
    let livekit = &video.livekit;
    livekit.join(&room, &identity, "Guest of A");
    let track = livekit
        .publish_audio(&room, &identity)
        .ok_or("the fake LiveKit published no track")?;
    let meeting = format!("iso-{}", Uuid::now_v7().simple());
    let (status, created) = video
        .call(
            &host,
            "POST",
            "/api/livekit/rooms",
            Some(json!({"room_name": meeting, "participants": []})),
        )
        .await?;
    assert_eq!(status, 201, "meeting: {created}");

    // Org B's call and link; a second call of org A and its link.
    let org_b = Uuid::now_v7();
    let host_b = TestUser::new(org_b, Role::Closer);
    let (call_b, _) = video_call(video, org_b, &host_b).await?;
    let link_b = guest_link(video, &host_b, &call_b).await?;
    let (other_call_a, _) = video_call(video, org, &host).await?;
    let link_other_call_a = guest_link(video, &host, &other_call_a).await?;

    let ceo_b = TestUser::new(org_b, Role::Ceo);
    let member_a = TestUser::new(org, Role::Member);
    let mut fixture = Fixture {
        bearer: Some(Callers {
            owner: Credential::Bearer(video.token(&host)),
            other_org: Credential::Bearer(video.token(&ceo_b)),
            same_org_without_role: Credential::Bearer(video.token(&member_a)),
        }),
        ..Fixture::default()
    };
    // The others hold the owner's device secret too: only the link of the guest's own call
    // reads the guest.
    let guest_link = |token: &str| Credential::GuestLink {
        token: token.to_owned(),
        device_secret: device_secret.clone(),
    };
    fixture.public.insert(
        "GET /calls/guest/{guestId}".to_owned(),
        Callers {
            owner: guest_link(&link),
            other_org: guest_link(&link_b),
            same_org_without_role: guest_link(&link_other_call_a),
        },
    );
    for (name, value) in [
        ("id", &call),
        ("recordingId", &recording),
        ("appointmentId", &appointment.to_string()),
        ("guestId", &guest),
        ("identity", &identity),
        ("room_name", &meeting),
    ] {
        fixture.ids.insert(name.to_owned(), value.clone());
        fixture.secrets.insert(value.clone());
    }
    fixture.secrets.insert(room);
    fixture.bodies.insert(
        "POST /calls/{id}/participants/{identity}/mute".to_owned(),
        json!({"trackSid": track, "muted": true}),
    );
    // A token for A's meeting: each caller names themselves (a token is never minted for
    // someone else), so what is judged is their access to the meeting.
    fixture.bodies.insert(
        "POST /api/livekit/token".to_owned(),
        json!({"room_name": meeting, "user_id": host.id}),
    );
    fixture.attacker_bodies.insert(
        "POST /api/livekit/token".to_owned(),
        AttackerBodies {
            other_org: json!({"room_name": meeting, "user_id": ceo_b.id}),
            same_org_without_role: json!({"room_name": meeting, "user_id": member_a.id}),
        },
    );
    Ok(fixture)
}

#[tokio::test]
async fn video_routes_are_isolated_between_tenants() -> Result {
    let moto = Moto::start().await?;
    let bucket = TestBucket::create(moto.endpoint(), "isolation").await?;
    let video = services::video_recording_to(moto.endpoint(), "isolation").await?;
    let (problems, log) =
        check_isolation("video", &video.app, || video_fixture(&video, &bucket)).await?;
    report("video", &problems, &log);
    Ok(())
}

async fn monitoring_fixture(monitoring: &Service) -> Result<Fixture> {
    let org = Uuid::now_v7();
    let rep = TestUser::new(org, Role::Closer);
    let supervisor = TestUser::new(org, Role::Ceo);
    let (status, session) = monitoring
        .call(&rep, "POST", "/monitoring/rep/session", None)
        .await?;
    assert_eq!(status, 200, "rep session: {session}");
    let room = text(&session["roomName"], "roomName")?;
    let identity = format!("rep_{}", rep.id);
    let livekit = &monitoring.livekit;
    livekit.join(&room, &identity, &rep.name);
    livekit.publish_audio(&room, &identity);
    let now = chrono::Utc::now().timestamp();
    let sid = format!("PA_{}", &rep.id.simple().to_string()[20..]);
    for event in [
        json!({"event": "participant_joined", "id": format!("EV_j_{sid}"), "createdAt": now.to_string(),
               "room": {"name": room}, "participant": {"sid": sid, "identity": identity, "joinedAt": now.to_string()}}),
        json!({"event": "track_published", "id": format!("EV_t_{sid}"), "createdAt": now.to_string(),
               "room": {"name": room}, "participant": {"sid": sid, "identity": identity},
               "track": {"sid": format!("TR_{sid}"), "type": "AUDIO", "source": "MICROPHONE"}}),
    ] {
        let (status, answer) = monitoring.app.livekit_webhook(livekit, &event).await?;
        assert_eq!(status, 200, "webhook: {answer}");
    }
    let (status, started) = monitoring
        .call(
            &supervisor,
            "POST",
            "/monitoring/sessions",
            Some(json!({"repId": rep.id})),
        )
        .await?;
    assert_eq!(status, 201, "session: {started}");
    let session = text(&started["session"]["id"], "session.id")?;

    let ceo_b = TestUser::new(Uuid::now_v7(), Role::Ceo);
    let other_rep_a = TestUser::new(org, Role::Setter);
    let mut fixture = Fixture {
        bearer: Some(Callers {
            owner: Credential::Bearer(monitoring.token(&supervisor)),
            other_org: Credential::Bearer(monitoring.token(&ceo_b)),
            same_org_without_role: Credential::Bearer(monitoring.token(&other_rep_a)),
        }),
        ..Fixture::default()
    };
    fixture.ids.insert("id".to_owned(), session.clone());
    for (name, value) in [
        ("repId", rep.id.to_string()),
        ("supervisorId", supervisor.id.to_string()),
        ("orgId", org.to_string()),
        ("sessionId", session.clone()),
    ] {
        fixture.ids.insert(name.to_owned(), value);
    }
    fixture
        .secrets
        .extend([session, rep.id.to_string(), supervisor.id.to_string(), room]);
    fixture.bodies.insert(
        "POST /monitoring/sessions/{id}/mode".to_owned(),
        json!({"mode": "listen"}),
    );
    fixture.bodies.insert(
        "POST /monitoring/sessions".to_owned(),
        json!({"repId": rep.id}),
    );
    Ok(fixture)
}

#[tokio::test]
async fn monitoring_routes_are_isolated_between_tenants() -> Result {
    let monitoring = services::monitoring().await?;
    let (problems, log) = check_isolation("monitoring", &monitoring.app, || {
        monitoring_fixture(&monitoring)
    })
    .await?;
    report("monitoring", &problems, &log);
    Ok(())
}

async fn telephony_fixture(telephony: &Service) -> Result<Fixture> {
    let org = Uuid::now_v7();
    let ceo = TestUser::new(org, Role::Ceo);
    let rep = TestUser::new(org, Role::Closer);
    // A Paris number of its own per fixture (numbers are unique across orgs).
    let suffix = Uuid::now_v7().as_u128() % 10_000_000;
    let number = format!("+3314{suffix:07}");
    let (status, assigned) = telephony
        .call(
            &ceo,
            "PUT",
            &format!("/api/numbers/{number}"),
            Some(json!({"ownerUserId": rep.id})),
        )
        .await?;
    assert!(
        status == 201 || status == 200,
        "PUT number: {status} {assigned}"
    );
    let (status, started) = telephony
        .call(
            &rep,
            "POST",
            "/api/calls/initiate",
            Some(json!({"from": number, "to": "+33987654321"})),
        )
        .await?;
    assert_eq!(status, 201, "initiate: {started}");
    let call = text(&started["callId"], "callId")?;
    let sid = text(&started["sid"], "sid")?;
    // The call's recording, as Twilio reports it and keeps its media.
    let recording_sid = sb_testkit::twilio_sid("RE");
    telephony.twilio.add_recording(&recording_sid, vec![7; 64]);
    let form: Vec<(String, String)> = [
        ("CallSid", sid.as_str()),
        ("RecordingSid", recording_sid.as_str()),
        ("RecordingStatus", "completed"),
        ("RecordingUrl", "https://api.twilio.com/recording"),
        ("RecordingDuration", "3"),
        ("RecordingChannels", "2"),
        ("RecordingSource", "DialVerb"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let reported = telephony
        .twilio_webhook(
            sb_resilience::PUBLIC_BASE_URL,
            "/webhook/voice/recording",
            &form,
        )
        .await?;
    assert_eq!(
        reported.status, 200,
        "recording callback: {}",
        reported.text
    );
    let (status, view) = telephony
        .call(&ceo, "GET", &format!("/api/calls/{call}"), None)
        .await?;
    assert_eq!(status, 200, "call: {view}");
    let recording = text(&view["recordings"][0]["id"], "recording id")?;

    let ceo_b = TestUser::new(Uuid::now_v7(), Role::Ceo);
    let other_rep_a = TestUser::new(org, Role::Closer);
    // A's appointment, hosted by the rep, and a number of their own for each attacker: they
    // name A's appointment in a call from their own number.
    let appointment = telephony
        .appointment(&TestAppointment::new(org, rep.id))
        .await?;
    let own_number = |leader: &TestUser, owner: &TestUser| {
        let suffix = Uuid::now_v7().as_u128() % 10_000_000;
        let number = format!("+3314{suffix:07}");
        let (leader, owner) = (leader.clone(), owner.id);
        async move {
            let (status, assigned) = telephony
                .call(
                    &leader,
                    "PUT",
                    &format!("/api/numbers/{number}"),
                    Some(json!({"ownerUserId": owner})),
                )
                .await?;
            assert!(
                status == 201 || status == 200,
                "PUT number: {status} {assigned}"
            );
            Ok::<_, sb_testkit::Error>(number)
        }
    };
    let number_b = own_number(&ceo_b, &ceo_b).await?;
    let number_other_rep_a = own_number(&ceo, &other_rep_a).await?;
    let mut fixture = Fixture {
        bearer: Some(Callers {
            owner: Credential::Bearer(telephony.token(&ceo)),
            other_org: Credential::Bearer(telephony.token(&ceo_b)),
            same_org_without_role: Credential::Bearer(telephony.token(&other_rep_a)),
        }),
        ..Fixture::default()
    };
    for (name, value) in [
        ("id", call.clone()),
        ("recordingId", recording),
        ("e164", number.clone()),
        ("number", number.clone()),
        ("userId", rep.id.to_string()),
        ("orgId", org.to_string()),
    ] {
        fixture.ids.insert(name.to_owned(), value);
    }
    fixture.secrets.extend([call, number.clone(), sid]);
    let sample =
        json!({"jitter": 12.5, "latency": 45, "packetLoss": 0.2, "mos": 4.2, "codec": "opus"});
    fixture
        .bodies
        .insert("POST /api/calls/{id}/quality".to_owned(), sample);
    fixture.bodies.insert(
        "PUT /api/numbers/{e164}".to_owned(),
        json!({"ownerUserId": rep.id}),
    );
    // The app of the rep on the call reports its quality, not their leader.
    fixture.owners.insert(
        "POST /api/calls/{id}/quality".to_owned(),
        Credential::Bearer(telephony.token(&rep)),
    );
    let to = "+33987654321";
    fixture.bodies.insert(
        "POST /api/calls/initiate".to_owned(),
        json!({"from": number, "to": to, "appointmentId": appointment}),
    );
    fixture.owners.insert(
        "POST /api/calls/initiate".to_owned(),
        Credential::Bearer(telephony.token(&rep)),
    );
    fixture.attacker_bodies.insert(
        "POST /api/calls/initiate".to_owned(),
        AttackerBodies {
            other_org: json!({"from": number_b, "to": to, "appointmentId": appointment}),
            same_org_without_role: json!({
                "from": number_other_rep_a, "to": to, "appointmentId": appointment
            }),
        },
    );
    fixture.other_org_exceptions.insert(
        "PUT /api/numbers/{e164}".to_owned(),
        Exception {
            status: 409,
            code: "number_taken",
            why: "a phone number routes to one Twilio account, so another org cannot take it; \
                  the answer names no org and changes nothing (the owner's PUT still succeeds)",
        },
    );
    Ok(fixture)
}

#[tokio::test]
async fn telephony_routes_are_isolated_between_tenants() -> Result {
    let telephony = services::telephony().await?;
    let (problems, log) = check_isolation("telephony", &telephony.app, || {
        telephony_fixture(&telephony)
    })
    .await?;
    report("telephony", &problems, &log);
    Ok(())
}

async fn signaling_fixture(signaling: &Service) -> Result<Fixture> {
    let org = Uuid::now_v7();
    let host = TestUser::new(org, Role::Closer);
    let patient = TestUser::new(org, Role::Member);
    let appointment = signaling
        .appointment(&TestAppointment::new(org, host.id).with_guest(patient.id))
        .await?;
    let (status, created) = signaling
        .call(
            &host,
            "POST",
            &format!("/video-call/room/appointment/{appointment}/create"),
            None,
        )
        .await?;
    assert!(status == 200 || status == 201, "room: {status} {created}");
    let room = text(&created["roomId"], "roomId")?;
    let ceo_b = TestUser::new(Uuid::now_v7(), Role::Ceo);
    let member_a = TestUser::new(org, Role::Member);
    let mut fixture = Fixture {
        bearer: Some(Callers {
            owner: Credential::Bearer(signaling.token(&host)),
            other_org: Credential::Bearer(signaling.token(&ceo_b)),
            same_org_without_role: Credential::Bearer(signaling.token(&member_a)),
        }),
        ..Fixture::default()
    };
    fixture
        .ids
        .insert("appointmentId".to_owned(), appointment.to_string());
    fixture.secrets.extend([appointment.to_string(), room]);
    Ok(fixture)
}

#[tokio::test]
async fn signaling_routes_are_isolated_between_tenants() -> Result {
    let signaling = services::signaling().await?;
    let (problems, log) = check_isolation("signaling", &signaling.app, || {
        signaling_fixture(&signaling)
    })
    .await?;
    report("signaling", &problems, &log);
    Ok(())
}

/// The engine itself must fail a route whose parameter has no fixture (else a new route would
/// pass unchecked).
#[tokio::test]
async fn a_route_without_a_fixture_fails_with_what_to_add() -> Result {
    let signaling = services::signaling().await?;
    let (problems, _) = check_isolation("signaling", &signaling.app, || async {
        let mut fixture = signaling_fixture(&signaling).await?;
        fixture.ids.clear();
        Ok(fixture)
    })
    .await?;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`appointmentId` has no fixture") && p.contains("add its id")),
        "{problems:#?}"
    );
    Ok(())
}

/// A route that answers 403 to everyone, its owner included, must fail: refusing everyone says
/// nothing about isolation.
#[tokio::test]
async fn a_route_refusing_its_owner_too_fails() -> Result {
    let monitoring = services::monitoring().await?;
    let (problems, _) = check_isolation("monitoring", &monitoring.app, || async {
        let mut fixture = monitoring_fixture(&monitoring).await?;
        fixture.owners.clear();
        let callers = fixture.bearer.as_mut().ok_or("no callers")?;
        // The "owner" is now a caller every route refuses.
        callers.owner = callers.same_org_without_role.clone();
        Ok(fixture)
    })
    .await?;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("the owner got 403") && p.contains("refuses everyone")),
        "{problems:#?}"
    );
    Ok(())
}

/// A route naming objects only in its body is attacked too: without a body naming org A's
/// objects in the fixture, it fails with what to add.
#[tokio::test]
async fn a_route_with_ids_in_its_body_and_no_fixture_fails_with_what_to_add() -> Result {
    let monitoring = services::monitoring().await?;
    let (problems, _) = check_isolation("monitoring", &monitoring.app, || async {
        let mut fixture = monitoring_fixture(&monitoring).await?;
        fixture.bodies.remove("POST /monitoring/sessions");
        Ok(fixture)
    })
    .await?;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("POST /monitoring/sessions:")
                && p.contains("repId")
                && p.contains("add a body")),
        "{problems:#?}"
    );
    Ok(())
}
