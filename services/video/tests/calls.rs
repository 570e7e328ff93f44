//! Appointment calls through the HTTP API: join, start, stop, read, list, errors and limits.

mod common;

use chrono::{Duration, Utc};
use common::{TestAppointment, TestVideo, User};
use sb_auth::Role;
use sb_events::proto::{VideoCallCompleted, VideoCallResumed};
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn the_host_joins_an_appointment_call_and_gets_a_livekit_token() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;

    let (status, body) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({"displayName": "  Ada Closer  "}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let room = format!("org_{org}_apt_{}", appointment.id);
    assert_eq!(body["roomName"], room);
    assert_eq!(body["livekitUrl"], video.livekit.url());
    assert_eq!(body["status"], "ONGOING");
    assert_eq!(body["recording"], false);
    assert_eq!(body["appointment"]["id"], appointment.id.to_string());
    assert_eq!(body["appointment"]["closer"]["id"], closer.id.to_string());
    assert_eq!(body["appointment"]["lead"]["name"], "Lead Person");
    assert_eq!(body["participant"]["displayName"], "Ada Closer");
    assert_eq!(body["participant"]["isHost"], true);
    assert_eq!(body["participant"]["active"], true);
    // The token is LiveKit's: verified with the fake server's key, host grants for this room.
    let token = body["token"].as_str().unwrap_or_default();
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(
        &video.livekit.api_key,
        &video.livekit.api_secret,
    )
    .verify(token)?;
    assert_eq!(claims.video.room, room);
    assert!(claims.video.room_join);
    assert_eq!(claims.sub, format!("u_{}", closer.id));
    assert_eq!(claims.name, "Ada Closer");
    // One room was created in LiveKit.
    assert_eq!(video.livekit.rooms().len(), 1);
    assert_eq!(video.livekit.rooms()[0].name, room);
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_joins_make_one_call_and_one_room() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    // LiveKit answers slowly, so the joins really overlap while the first creates the room.
    video
        .livekit
        .set_latency(std::time::Duration::from_millis(150));
    let users: Vec<User> = (0..20)
        .map(|i| {
            if i == 0 {
                closer.clone()
            } else {
                User::new(org, Role::Ceo)
            }
        })
        .collect();
    let path = format!("/calls/appointments/{}/join", appointment.id);
    let joins = users
        .iter()
        .map(|user| video.post_json(user, &path, json!({})));
    let answers = futures_util::future::join_all(joins).await;
    let mut call_ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, body) = answer?;
        assert_eq!(status, 200, "{body}");
        call_ids.insert(body["callId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(call_ids.len(), 1, "{call_ids:?}");
    let call_id = call_ids.into_iter().next().unwrap_or_default();
    // Each first join asks LiveKit for the room before one of them writes the call (CreateRoom is
    // idempotent): one room, and whichever request created it named the call that was written.
    let room = format!("org_{org}_apt_{}", appointment.id);
    let creates: Vec<_> = video
        .livekit
        .calls()
        .into_iter()
        .filter(|c| c.method == "CreateRoom")
        .collect();
    assert!(!creates.is_empty());
    assert!(creates.iter().all(|c| c.room == room), "{creates:?}");
    let rooms: Vec<_> = video
        .livekit
        .rooms()
        .into_iter()
        .filter(|r| r.name == room)
        .collect();
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        rooms[0].metadata,
        json!({ "callId": call_id }).to_string(),
        "the room names the call that was written"
    );
    let (status, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["participants"].as_array().map(Vec::len), Some(20));
    assert_eq!(call["status"], "ONGOING");
    Ok(())
}

#[tokio::test]
async fn access_follows_the_appointment_policy() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let setter = User::new(org, Role::Setter);
    let mut appointment = TestAppointment::new(org, closer.id);
    appointment.team = Some(team);
    appointment.setter = Some(setter.id);
    video.appointment(&appointment).await?;
    let path = format!("/calls/appointments/{}/join", appointment.id);

    let allowed = [
        User::new(org, Role::Ceo),
        User::new(org, Role::Director),
        User::new(org, Role::Manager).in_team(team),
        setter.clone(),
        closer.clone(),
        User::new(Uuid::now_v7(), Role::Admin),
    ];
    for user in &allowed {
        let (status, body) = video.post_json(user, &path, json!({})).await?;
        assert_eq!(status, 200, "{:?}: {body}", user.role);
    }
    let forbidden = [
        User::new(org, Role::Manager).in_team(Uuid::now_v7()),
        User::new(org, Role::Closer),
        User::new(org, Role::Setter),
        User::new(org, Role::Member),
    ];
    for user in &forbidden {
        let (status, body) = video.post_json(user, &path, json!({})).await?;
        assert_eq!(status, 403, "{:?}: {body}", user.role);
        assert_eq!(body["code"], "forbidden");
    }
    // Another org's appointment (even for its CEO) and an unknown one: 404, no difference.
    let outsider = User::new(Uuid::now_v7(), Role::Ceo);
    let (status, body) = video.post_json(&outsider, &path, json!({})).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", Uuid::now_v7()),
            json!({}),
        )
        .await?;
    assert_eq!(status, 404);
    // The call itself is hidden from the outsider too.
    let (_, joined) = video.post_json(&closer, &path, json!({})).await?;
    let call_id = joined["callId"].as_str().unwrap_or_default().to_owned();
    for path in [format!("/calls/{call_id}")] {
        let (status, _) = video.get_json(&outsider, &path).await?;
        assert_eq!(status, 404);
    }
    let (status, _) = video
        .post_empty(&outsider, &format!("/calls/{call_id}/stop"))
        .await?;
    assert_eq!(status, 404);
    // No token at all.
    let response = video.app.post(&path).send().await?;
    assert_eq!(response.status(), 401);
    Ok(())
}

#[tokio::test]
async fn bad_bodies_and_queries_are_400_naming_the_field() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let path = format!("/calls/appointments/{}/join", appointment.id);
    for (body, field) in [
        (json!({"displayName": "x".repeat(101)}), "displayName"),
        (json!({"displayName": "   "}), "displayName"),
        (json!({"displayName": 42}), "displayName"),
        (json!({"unexpected": true}), "unexpected"),
    ] {
        let (status, answer) = video.post_json(&closer, &path, body).await?;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["code"], "invalid_field");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let response = video
        .app
        .post(&path)
        .bearer_auth(video.token(&closer))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    // No body at all is fine: the seed's body is optional.
    let (status, body) = video.post_empty(&closer, &path).await?;
    assert_eq!(status, 200, "{body}");
    for (query, field) in [
        ("status=DONE", "status"),
        ("from=yesterday", "from"),
        ("pageSize=0", "pageSize"),
        ("pageSize=101", "pageSize"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ] {
        let (status, answer) = video.get_json(&closer, &format!("/calls?{query}")).await?;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["field"], field, "{query}: {answer}");
    }
    Ok(())
}

#[tokio::test]
async fn join_takes_only_a_json_body() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let path = format!("/calls/appointments/{}/join", appointment.id);
    let body = json!({"displayName": "Ada"}).to_string();
    let send = |content_type: &'static str, body: String| {
        video
            .app
            .post(&path)
            .bearer_auth(video.token(&closer))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    for (content_type, body) in [
        ("text/plain", body.clone()),
        (
            "application/x-www-form-urlencoded",
            "displayName=Ada".to_owned(),
        ),
    ] {
        let response = send(content_type, body).await?;
        assert_eq!(response.status(), 415, "{content_type}");
        let answer: Value = response.json().await?;
        assert_eq!(answer["code"], "unsupported_media_type", "{answer}");
    }
    let response = send("application/json; charset=utf-8", body).await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

#[tokio::test]
async fn livekit_down_is_503_and_leaves_nothing_behind() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let path = format!("/calls/appointments/{}/join", appointment.id);
    video.livekit.fail("CreateRoom", "unavailable", 1);
    let (status, body) = video.post_json(&closer, &path, json!({})).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "livekit_unavailable");
    let mut conn = video.db.conn().await?;
    let calls: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        sb_db::schema::video_calls::table
            .count()
            .get_result(&mut conn)
            .await?
    };
    assert_eq!(calls, 0, "the failed join left a call behind");
    // LiveKit is back: the next join works.
    let (status, body) = video.post_json(&closer, &path, json!({})).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn in_development_a_join_survives_livekit_and_the_job_creates_the_room() -> Result {
    let video = TestVideo::spawn_with(|config| {
        config.environment = sb_platform::config::Environment::Development;
    })
    .await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    // The join tries CreateRoom once; the job's attempt then finds LiveKit back.
    video.livekit.fail("CreateRoom", "unavailable", 1);
    let (status, body) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(video.livekit.rooms().is_empty());
    let state = video.state().await?;
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(report.rooms_created, 1, "{report:?}");
    assert_eq!(video.livekit.rooms().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_cancelled_appointment_cannot_be_joined() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let mut appointment = TestAppointment::new(org, closer.id);
    appointment.status = sb_db::models::AppointmentStatus::Cancelled;
    video.appointment(&appointment).await?;
    let (status, body) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("appointment_cancelled"))
    );
    Ok(())
}

#[tokio::test]
async fn a_call_records_and_completes_when_the_last_participant_stops() -> Result {
    let video = TestVideo::spawn_with(|config| {
        config.recording.s3 = Some(sb_video::config::S3Config {
            bucket: "calls".to_owned(),
            region: "eu-west-3".to_owned(),
            endpoint: "https://s3.example.test".to_owned(),
            access_key: "AKIATEST".to_owned(),
            secret_key: "s3-secret".to_owned().into(),
            force_path_style: true,
            retention: None,
        });
    })
    .await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let ceo = User::new(org, Role::Ceo);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let join = format!("/calls/appointments/{}/join", appointment.id);
    let (_, joined) = video.post_json(&closer, &join, json!({})).await?;
    let call_id = joined["callId"].as_str().unwrap_or_default().to_owned();
    video.post_json(&ceo, &join, json!({})).await?;

    // Only the host or a leader may record; the CEO is a leader.
    let (status, call) = video
        .post_json(
            &ceo,
            &format!("/calls/{call_id}/start"),
            json!({"startRecording": true}),
        )
        .await?;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["recording"], true);
    assert_eq!(call["recordingStatus"], "STARTING");
    let requests = video.livekit.egress_requests();
    assert_eq!(requests.len(), 1);
    let file = requests[0]
        .file_outputs
        .first()
        .cloned()
        .unwrap_or_default();
    assert!(
        file.filepath
            .starts_with(&format!("recordings/{org}/{call_id}/")),
        "{}",
        file.filepath
    );
    match file.output {
        Some(sb_livekit::protocol::encoded_file_output::Output::S3(s3)) => {
            assert_eq!(
                (s3.bucket.as_str(), s3.region.as_str()),
                ("calls", "eu-west-3")
            );
            assert_eq!(s3.endpoint, "https://s3.example.test");
            assert!(s3.force_path_style);
        }
        other => panic!("expected an S3 upload, got {other:?}"),
    }
    // Starting again does not start a second egress.
    video
        .post_json(
            &closer,
            &format!("/calls/{call_id}/start"),
            json!({"startRecording": true}),
        )
        .await?;
    assert_eq!(video.livekit.egress_requests().len(), 1);
    let (_, joined_again) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(
        joined_again["recording"], true,
        "the join response carries the consent flag"
    );

    let (status, call) = video
        .post_json(
            &ceo,
            &format!("/calls/{call_id}/stop"),
            json!({"reason": "bye"}),
        )
        .await?;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["status"], "ONGOING");
    let (status, call) = video
        .post_json(
            &closer,
            &format!("/calls/{call_id}/stop"),
            json!({"reason": "Call ended"}),
        )
        .await?;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["status"], "COMPLETED");
    assert_eq!(call["endReason"], "Call ended");
    assert!(call["endedAt"].is_string());
    assert!(call["durationSeconds"].as_i64().is_some_and(|d| d >= 0));
    // The recording was stopped with the call.
    assert!(
        video
            .livekit
            .calls()
            .iter()
            .any(|c| c.method == "StopEgress")
    );
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["recordingStatus"], "STOPPING");
    let participants = call["participants"].as_array().cloned().unwrap_or_default();
    assert!(
        participants
            .iter()
            .all(|p| p["active"] == false && p["leftAt"].is_string())
    );
    // Stopping again is harmless. (Joining again within the appointment's window resumes the
    // call: see `a_completed_call_resumes_within_its_window_and_adds_up_its_segments`.)
    let (status, _) = video
        .post_empty(&closer, &format!("/calls/{call_id}/stop"))
        .await?;
    assert_eq!(status, 200);

    let subjects = video.event_subjects().await?;
    assert_eq!(
        subjects,
        [
            "sb.video.participant.joined",
            "sb.video.call.started",
            "sb.video.participant.joined",
            "sb.video.participant.left",
            "sb.video.participant.left",
            "sb.video.call.completed",
        ]
    );
    Ok(())
}

#[tokio::test]
async fn recording_needs_the_host_and_a_refused_egress_is_visible() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let setter = User::new(org, Role::Setter);
    let mut appointment = TestAppointment::new(org, closer.id);
    appointment.setter = Some(setter.id);
    video.appointment(&appointment).await?;
    let (_, joined) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    let call_id = joined["callId"].as_str().unwrap_or_default().to_owned();
    let start = format!("/calls/{call_id}/start");
    let (status, _) = video
        .post_json(&setter, &start, json!({"startRecording": true}))
        .await?;
    assert_eq!(status, 403);
    video
        .livekit
        .fail("StartRoomCompositeEgress", "resource_exhausted", 1);
    let (status, body) = video
        .post_json(&closer, &start, json!({"startRecording": true}))
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("livekit_error")),
        "{body}"
    );
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["recordingStatus"], "FAILED");
    assert_eq!(call["recording"], false);
    Ok(())
}

#[tokio::test]
async fn lists_and_statistics_are_scoped_like_access() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let other_closer = User::new(org, Role::Closer);
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    let mut ids = Vec::new();
    for (host, in_team) in [(&closer, true), (&closer, false), (&other_closer, false)] {
        let mut appointment = TestAppointment::new(org, host.id);
        if in_team {
            appointment.team = Some(team);
        }
        video.appointment(&appointment).await?;
        let (_, joined) = video
            .post_json(
                host,
                &format!("/calls/appointments/{}/join", appointment.id),
                json!({}),
            )
            .await?;
        ids.push(joined["callId"].as_str().unwrap_or_default().to_owned());
    }
    // Complete the first call.
    video
        .post_empty(&closer, &format!("/calls/{}/stop", ids[0]))
        .await?;
    // Another org's calls never show.
    let stranger = User::new(Uuid::now_v7(), Role::Closer);
    let apt = TestAppointment::new(stranger.org, stranger.id);
    video.appointment(&apt).await?;
    video
        .post_json(
            &stranger,
            &format!("/calls/appointments/{}/join", apt.id),
            json!({}),
        )
        .await?;

    let count = |body: &serde_json::Value| body["total"].as_i64().unwrap_or(-1);
    let (_, all) = video.get_json(&ceo, "/calls").await?;
    assert_eq!(count(&all), 3, "{all}");
    assert_eq!(all["items"][0]["id"], ids[2], "newest first");
    let (_, mine) = video.get_json(&closer, "/calls").await?;
    assert_eq!(count(&mine), 2);
    let (_, team_calls) = video.get_json(&manager, "/calls").await?;
    assert_eq!(count(&team_calls), 1);
    let (_, completed) = video.get_json(&ceo, "/calls?status=COMPLETED").await?;
    assert_eq!(count(&completed), 1);
    let (_, page) = video.get_json(&ceo, "/calls?pageSize=2&page=2").await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["id"], ids[0]);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, none) = video
        .get_json(&ceo, &format!("/calls?from={}", urlencode(&future)))
        .await?;
    assert_eq!((status, count(&none)), (200, 0), "{none}");

    let (status, stats) = video.get_json(&ceo, "/calls/stats").await?;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["count"], 3);
    assert_eq!(stats["byStatus"]["COMPLETED"], 1);
    assert_eq!(stats["byStatus"]["ONGOING"], 2);
    assert_eq!(stats["completionRate"], 1.0);
    assert_eq!(stats["averageParticipants"], 1.0);
    assert_eq!(stats["recordingRate"], 0.0);
    assert!(stats["p90DurationSeconds"].is_i64());
    let (_, closer_stats) = video.get_json(&closer, "/calls/stats").await?;
    assert_eq!(closer_stats["count"], 2);

    // ADMIN (platform staff, in an org of their own) follows one rule everywhere: every org's
    // calls, by id as in lists and statistics; `orgId` narrows to one org. Others' `orgId` is
    // ignored: their own org's calls only.
    let admin = User::new(Uuid::now_v7(), Role::Admin);
    let (status, one) = video
        .get_json(&admin, &format!("/calls/{}", ids[0]))
        .await?;
    assert_eq!((status, &one["id"]), (200, &json!(ids[0])), "{one}");
    let (_, everything) = video.get_json(&admin, "/calls").await?;
    assert_eq!(count(&everything), 4, "{everything}");
    let (_, stats) = video.get_json(&admin, "/calls/stats").await?;
    assert_eq!(stats["count"], 4, "{stats}");
    let (_, org_only) = video
        .get_json(&admin, &format!("/calls?orgId={org}"))
        .await?;
    assert_eq!(count(&org_only), 3, "{org_only}");
    let (_, stats) = video
        .get_json(&admin, &format!("/calls/stats?orgId={}", stranger.org))
        .await?;
    assert_eq!(stats["count"], 1, "{stats}");
    let (_, ceo_elsewhere) = video
        .get_json(&ceo, &format!("/calls?orgId={}", stranger.org))
        .await?;
    assert_eq!(count(&ceo_elsewhere), 3, "{ceo_elsewhere}");
    Ok(())
}

fn urlencode(raw: &str) -> String {
    raw.replace('+', "%2B").replace(':', "%3A")
}

/// Every list route of the service takes `page` and `pageSize` and answers the one envelope
/// of `sb_platform::pagination`; a bad page size is a 400 naming the parameter.
#[tokio::test]
async fn every_list_route_pages_the_same_way() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let (status, joined) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");
    let call = joined["callId"].as_str().unwrap_or_default().to_owned();
    for name in ["first", "second"] {
        let (status, body) = video
            .post_json(&closer, "/api/livekit/rooms", json!({"room_name": name}))
            .await?;
        assert_eq!(status, 201, "{body}");
    }

    for (route, total) in [
        ("/calls".to_owned(), 1),
        ("/api/livekit/rooms".to_owned(), 2),
        (format!("/calls/{call}/lobby"), 0),
    ] {
        let (status, page) = video.get_json(&closer, &route).await?;
        assert_eq!(status, 200, "{route}: {page}");
        let keys: Vec<&str> = page
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        assert_eq!(keys, sb_platform::pagination::ENVELOPE, "{route}: {page}");
        assert_eq!(
            (&page["page"], &page["pageSize"], &page["total"]),
            (&json!(1), &json!(50), &json!(total)),
            "{route}: {page}"
        );
        for (query, field) in [
            ("pageSize=0", "pageSize"),
            ("pageSize=101", "pageSize"),
            ("pageSize=ten", "pageSize"),
            ("page=0", "page"),
        ] {
            let (status, answer) = video.get_json(&closer, &format!("{route}?{query}")).await?;
            assert_eq!(status, 400, "{route}?{query}: {answer}");
            assert_eq!(answer["code"], "invalid_field", "{route}?{query}: {answer}");
            assert_eq!(answer["field"], field, "{route}?{query}: {answer}");
        }
    }
    // The second page of one meeting per page holds the other meeting, newest first.
    let (_, second) = video
        .get_json(&closer, "/api/livekit/rooms?page=2&pageSize=1")
        .await?;
    assert_eq!(
        second["items"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert_eq!(second["items"][0]["room_name"], "first", "{second}");
    assert_eq!(second["total"], 2);
    Ok(())
}

/// A webhook for one LiveKit connection of `identity` in `room`.
fn connection(kind: &str, room: &str, sid: &str, identity: &str, joined: i64, at: i64) -> Value {
    json!({
        "event": kind,
        "id": format!("EV_{sid}_{kind}"),
        "createdAt": at.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity, "name": "Closer", "state": "ACTIVE", "joinedAt": joined.to_string()},
    })
}

#[tokio::test]
async fn a_completed_call_resumes_within_its_window_and_adds_up_its_segments() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let lead = User::new(org, Role::Member);
    let mut appointment = TestAppointment::new(org, closer.id);
    appointment.guest = Some(lead.id);
    // Began 30 minutes ago (45 minutes long; the window closes 2 hours after the end).
    appointment.scheduled_at = Utc::now() - Duration::minutes(30);
    video.appointment(&appointment).await?;
    let join = format!("/calls/appointments/{}/join", appointment.id);
    let (status, joined) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(status, 200, "{joined}");
    let call_id = joined["callId"].as_str().ok_or("callId")?.to_owned();
    let room = joined["roomName"].as_str().ok_or("roomName")?.to_owned();
    let closer_identity = format!("u_{}", closer.id);

    // First segment, as LiveKit reports it: the closer connected 20 to 10 minutes ago, then the
    // room closed. The call completes: 600 s.
    let now = Utc::now().timestamp();
    let (first_in, first_out) = (now - 1200, now - 600);
    for (kind, at) in [
        ("participant_joined", first_in),
        ("participant_left", first_out),
    ] {
        let event = connection(kind, &room, "PA_1", &closer_identity, first_in, at);
        assert_eq!(video.livekit_webhook(&event).await?.0, 200);
    }
    let finished = json!({"event": "room_finished", "id": "EV_finished_1", "createdAt": (first_out + 5).to_string(), "room": {"name": room}});
    assert_eq!(video.livekit_webhook(&finished).await?.0, 200);
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["status"], "COMPLETED", "{call}");
    assert_eq!(call["durationSeconds"], 600, "{call}");

    // The closer comes back within the window: the call goes on (before: 409 call_finished),
    // in a room LiveKit is asked to open again, and an event says so.
    let rooms_created = |video: &TestVideo| {
        video
            .livekit
            .calls()
            .iter()
            .filter(|c| c.method == "CreateRoom" && c.room == room)
            .count()
    };
    let created_before = rooms_created(&video);
    let (status, again) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["callId"], call_id.as_str());
    assert_eq!(again["status"], "ONGOING", "{again}");
    assert_eq!(rooms_created(&video), created_before + 1);
    let resumed: Vec<VideoCallResumed> = video.events_of("sb.video.call.resumed").await?;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].call_id, call_id);
    assert_eq!(
        (
            resumed[0].resumed_count,
            resumed[0].earlier_segments_seconds
        ),
        (1, 600)
    );
    // The lead joins the resumed call too.
    let (status, body) = video.post_json(&lead, &join, json!({})).await?;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("ONGOING")),
        "{body}"
    );
    // The old segment's room_finished, delivered late, ends nothing.
    let (status, _) = video.livekit_webhook(&finished).await?;
    assert_eq!(status, 200);
    let late = json!({"event": "room_finished", "id": "EV_finished_old", "createdAt": (first_out + 30).to_string(), "room": {"name": room}});
    assert_eq!(video.livekit_webhook(&late).await?.0, 200);
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["status"], "ONGOING", "{call}");
    assert_eq!(call["resumedCount"], 1);

    // Both leave: the call completes again, its duration the two segments without the gap, and
    // the closer's total both connections.
    for user in [&closer, &lead] {
        let (status, body) = video
            .post_empty(user, &format!("/calls/{call_id}/stop"))
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["status"], "COMPLETED", "{call}");
    let duration = call["durationSeconds"].as_i64().ok_or("durationSeconds")?;
    let second_segment = Utc::now().timestamp() - now;
    assert!(
        (600..=600 + second_segment + 1).contains(&duration),
        "600 s before the gap plus at most the {second_segment} s since: {call}"
    );
    let completed: Vec<VideoCallCompleted> = video.events_of("sb.video.call.completed").await?;
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[1].duration_seconds, duration);
    assert_eq!(completed[1].participant_count, 2);
    let closer_row = call["participants"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|p| p["identity"] == closer_identity.as_str())
        })
        .ok_or("closer")?;
    assert!(
        closer_row["totalSeconds"]
            .as_i64()
            .is_some_and(|t| t >= 600),
        "{closer_row}"
    );
    Ok(())
}

#[tokio::test]
async fn outside_its_window_or_cancelled_a_finished_call_stays_finished() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    // Began 4 hours ago: 45 minutes long, the window closed 75 minutes ago.
    let mut appointment = TestAppointment::new(org, closer.id);
    appointment.scheduled_at = Utc::now() - Duration::hours(4);
    video.appointment(&appointment).await?;
    let join = format!("/calls/appointments/{}/join", appointment.id);
    let (status, joined) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(status, 200, "{joined}");
    let call_id = joined["callId"].as_str().ok_or("callId")?.to_owned();
    let (status, stopped) = video
        .post_empty(&closer, &format!("/calls/{call_id}/stop"))
        .await?;
    assert_eq!((status, &stopped["status"]), (200, &json!("COMPLETED")));
    let (status, body) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("call_finished")),
        "{body}"
    );

    // In its window, but the CRM cancelled it: never resumed.
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;
    let join = format!("/calls/appointments/{}/join", appointment.id);
    let (_, joined) = video.post_json(&closer, &join, json!({})).await?;
    let call_id = joined["callId"].as_str().ok_or("callId")?.to_owned();
    video
        .post_empty(&closer, &format!("/calls/{call_id}/stop"))
        .await?;
    let mut cancelled = appointment.row();
    cancelled.status = sb_db::models::AppointmentStatus::Cancelled;
    cancelled.version = 2;
    sb_db::models::upsert_appointment(&mut *video.db.conn().await?, &cancelled).await?;
    let (status, body) = video.post_json(&closer, &join, json!({})).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("appointment_cancelled")),
        "{body}"
    );
    let (_, call) = video
        .get_json(&closer, &format!("/calls/{call_id}"))
        .await?;
    assert_eq!(call["status"], "COMPLETED");
    assert!(
        video
            .events_of::<VideoCallResumed>("sb.video.call.resumed")
            .await?
            .is_empty()
    );
    Ok(())
}
