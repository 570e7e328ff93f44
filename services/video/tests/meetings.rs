//! Ad-hoc meetings (seed 003) through the HTTP API: creation with its LiveKit room, listing,
//! access, join tokens per call type and mode, leaving and ending, persistence across a restart,
//! and LiveKit's webhooks about meeting rooms.

mod common;

use chrono::{DateTime, Utc};
use common::{TestVideo, User};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use livekit_api::access_token::{Claims, TokenVerifier};
use sb_auth::Role;
use sb_platform::config::Environment;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

const ROOMS: &str = "/api/livekit/rooms";

fn claims(video: &TestVideo, body: &Value) -> Result<Claims> {
    let token = body["token"].as_str().ok_or("no token in the answer")?;
    Ok(
        TokenVerifier::with_api_key(&video.livekit.api_key, &video.livekit.api_secret)
            .verify(token)?,
    )
}

fn livekit_room(org: Uuid, body: &Value) -> Result<String> {
    let id = body["id"].as_str().ok_or("no meeting id")?;
    Ok(format!("org_{org}_mtg_{id}"))
}

/// The member `user` in a meeting view.
fn member<'a>(meeting: &'a Value, user: &User) -> Result<&'a Value> {
    meeting["participants"]
        .as_array()
        .and_then(|members| members.iter().find(|m| m["user_id"] == user.id.to_string()))
        .ok_or_else(|| format!("{} is not a member: {meeting}", user.id).into())
}

async fn join(video: &TestVideo, user: &User, room: &str) -> Result<Claims> {
    let (status, body) = video
        .post_empty(user, &format!("{ROOMS}/{room}/join"))
        .await?;
    assert_eq!(status, 200, "{body}");
    claims(video, &body)
}

fn sources(claims: &Claims) -> Vec<&str> {
    claims
        .video
        .can_publish_sources
        .iter()
        .map(String::as_str)
        .collect()
}

async fn meetings_in_db(video: &TestVideo) -> Result<i64> {
    let mut conn = video.db.conn().await?;
    Ok(sb_db::schema::video_meetings::table
        .count()
        .get_result(&mut *conn)
        .await?)
}

fn time(value: &Value) -> Result<DateTime<Utc>> {
    Ok(value.as_str().ok_or("not a time")?.parse()?)
}

#[tokio::test]
async fn a_meeting_is_created_listed_read_and_joined_with_host_and_participant_grants() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Setter);
    let colleague = User::new(org, Role::Closer);

    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "team-meeting", "participants": [invitee.id, invitee.id, host.id]}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["room_name"], "team-meeting");
    assert_eq!(created["call_type"], "video");
    assert_eq!(created["mode"], "meeting");
    assert_eq!(created["status"], "open");
    assert_eq!(created["created_by"], host.id.to_string());
    assert_eq!(created["invite_link"], "/meeting/invite?room=team-meeting");
    assert!(created["ended_at"].is_null());
    let members = created["participants"]
        .as_array()
        .ok_or("no participants")?;
    assert_eq!(members.len(), 2, "duplicates collapse: {created}");
    assert_eq!(members[0]["user_id"], host.id.to_string(), "the host first");
    assert_eq!(members[0]["role"], "host");
    assert_eq!(member(&created, &invitee)?["role"], "participant");
    assert_eq!(member(&created, &invitee)?["in_room"], false);

    // The LiveKit room is named after the org and the meeting, never the user's name.
    let room = livekit_room(org, &created)?;
    let rooms = video.livekit.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, room);

    for user in [&host, &invitee] {
        let (status, list) = video.get_json(user, ROOMS).await?;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list["items"][0]["room_name"], "team-meeting");
        let (status, read) = video
            .get_json(user, &format!("{ROOMS}/team-meeting"))
            .await?;
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["id"], created["id"]);
    }
    let (status, list) = video.get_json(&colleague, ROOMS).await?;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "not invited, not listed");

    // The host: camera, microphone, screen share.
    let (status, body) = video
        .post_json(
            &host,
            &format!("{ROOMS}/team-meeting/join"),
            json!({"username": "  Ada Host "}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_name"], "team-meeting");
    assert_eq!(body["url"], video.livekit.url());
    assert_eq!(body["identity"], format!("u_{}", host.id));
    let host_claims = claims(&video, &body)?;
    assert_eq!(host_claims.video.room, room);
    assert!(host_claims.video.room_join);
    assert_eq!(host_claims.sub, format!("u_{}", host.id));
    assert_eq!(host_claims.name, "Ada Host");
    assert_eq!(host_claims.video.can_publish, Some(true));
    assert!(sources(&host_claims).contains(&"camera"));
    assert!(sources(&host_claims).contains(&"screen_share"));
    assert!(
        !host_claims.video.room_admin,
        "no server powers in a participant token"
    );

    let invitee_claims = join(&video, &invitee, "team-meeting").await?;
    assert_eq!(invitee_claims.video.room, room);
    assert_eq!(
        invitee_claims.name, invitee.name,
        "the JWT's name by default"
    );
    assert_eq!(invitee_claims.video.can_publish, Some(true));
    assert_eq!(invitee_claims.video.can_subscribe, Some(true));
    assert!(sources(&invitee_claims).contains(&"camera"));

    let (_, read) = video
        .get_json(&host, &format!("{ROOMS}/team-meeting"))
        .await?;
    for user in [&host, &invitee] {
        assert_eq!(member(&read, user)?["in_room"], true, "{read}");
        assert!(time(&member(&read, user)?["joined_at"]).is_ok());
    }
    Ok(())
}

#[tokio::test]
async fn an_audio_call_publishes_the_microphone_only() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Member);
    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "voice", "participants": [invitee.id], "call_type": "audio"}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["call_type"], "audio");
    for user in [&host, &invitee] {
        let claims = join(&video, user, "voice").await?;
        assert_eq!(claims.video.can_publish, Some(true));
        assert_eq!(sources(&claims), vec!["microphone"], "{user:?}");
        assert_eq!(claims.video.can_subscribe, Some(true));
    }
    Ok(())
}

#[tokio::test]
async fn a_webinar_lets_speakers_publish_and_listeners_only_subscribe() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Director);
    let speaker = User::new(org, Role::Closer);
    let listener = User::new(org, Role::Member);
    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({
                "room_name": "all-hands",
                "mode": "webinar",
                "participants": [listener.id],
                "speakers": [speaker.id],
            }),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["mode"], "webinar");
    assert_eq!(member(&created, &host)?["role"], "host");
    assert_eq!(member(&created, &speaker)?["role"], "speaker");
    assert_eq!(member(&created, &listener)?["role"], "listener");

    for user in [&host, &speaker] {
        let claims = join(&video, user, "all-hands").await?;
        assert_eq!(claims.video.can_publish, Some(true), "{user:?}");
        assert!(sources(&claims).contains(&"camera"));
        assert!(sources(&claims).contains(&"microphone"));
    }
    let claims = join(&video, &listener, "all-hands").await?;
    assert_eq!(claims.video.can_publish, Some(false));
    assert!(claims.video.can_publish_sources.is_empty());
    assert_eq!(claims.video.can_publish_data, Some(false));
    assert_eq!(claims.video.can_subscribe, Some(true));

    // Speakers belong to webinars.
    let (status, body) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "not-a-webinar", "speakers": [speaker.id]}),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "speakers");
    Ok(())
}

#[tokio::test]
async fn only_invited_members_of_the_org_see_or_join_a_meeting() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Closer);
    let colleague = User::new(org, Role::Ceo);
    let stranger = User::new(Uuid::now_v7(), Role::Admin);
    let (status, _) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "private", "participants": [invitee.id]}),
        )
        .await?;
    assert_eq!(status, 201);

    for user in [&colleague, &stranger] {
        let (status, body) = video.get_json(user, &format!("{ROOMS}/private")).await?;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("not_found")),
            "{body}"
        );
        let (status, body) = video
            .post_empty(user, &format!("{ROOMS}/private/join"))
            .await?;
        assert_eq!(status, 404, "{body}");
        let (status, body) = video
            .post_json(user, "/api/livekit/token", json!({"room_name": "private"}))
            .await?;
        assert_eq!(status, 404, "{body}");
        let (status, body) = video
            .post_empty(user, &format!("{ROOMS}/private/leave"))
            .await?;
        assert_eq!(status, 404, "{body}");
    }
    let (status, body) = video.get_json(&host, &format!("{ROOMS}/unknown")).await?;
    assert_eq!(status, 404, "{body}");

    // The token route mints a token for the caller only.
    let (status, body) = video
        .post_json(
            &invitee,
            "/api/livekit/token",
            json!({"room_name": "private", "user_id": host.id}),
        )
        .await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = video
        .post_json(
            &invitee,
            "/api/livekit/token",
            json!({"room_name": "private", "user_id": invitee.id, "username": "  John Doe  "}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_name"], "private");
    assert_eq!(body["identity"], format!("u_{}", invitee.id));
    let claims = claims(&video, &body)?;
    assert_eq!(claims.name, "John Doe");
    assert_eq!(claims.video.can_publish, Some(true));
    let (status, body) = video
        .post_json(
            &invitee,
            "/api/livekit/token",
            json!({"room_name": "private", "username": "x".repeat(101)}),
        )
        .await?;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("username")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn room_names_are_unique_per_org_and_bodies_are_checked() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let other_org = User::new(Uuid::now_v7(), Role::Closer);
    let (status, _) = video
        .post_json(&host, ROOMS, json!({"room_name": "daily"}))
        .await?;
    assert_eq!(status, 201);
    let (status, body) = video
        .post_json(&host, ROOMS, json!({"room_name": "daily"}))
        .await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("room_exists")),
        "{body}"
    );
    let (status, body) = video
        .post_json(&other_org, ROOMS, json!({"room_name": "daily"}))
        .await?;
    assert_eq!(status, 201, "another org has its own names: {body}");

    let too_many: Vec<Uuid> = (0..51).map(|_| Uuid::now_v7()).collect();
    let cases = [
        (
            json!({"room_name": "x", "participants": [Uuid::now_v7(), Uuid::now_v7(), "nope"]}),
            "participants[2]",
        ),
        (json!({"room_name": "a b"}), "room_name"),
        (json!({"room_name": ""}), "room_name"),
        (json!({"room_name": "x".repeat(65)}), "room_name"),
        (json!({"room_name": "x", "call_type": "VIDEO"}), "call_type"),
        (json!({"room_name": "x", "mode": "party"}), "mode"),
        (
            json!({"room_name": "x", "participants": too_many}),
            "participants",
        ),
        (json!({"participants": []}), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = video.post_json(&host, ROOMS, body.clone()).await?;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["code"], "invalid_field", "{answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
    }
    let (status, body) = video
        .get_json(&host, &format!("{ROOMS}/not%20valid"))
        .await?;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("room_name")),
        "{body}"
    );
    // Nothing but the two good meetings was written.
    assert_eq!(meetings_in_db(&video).await?, 2);
    Ok(())
}

#[tokio::test]
async fn livekit_down_creates_nothing_and_a_retry_succeeds() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Closer);
    let body = json!({"room_name": "standup", "participants": [invitee.id]});
    video.livekit.fail("CreateRoom", "unavailable", 1);

    let (status, answer) = video.post_json(&host, ROOMS, body.clone()).await?;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "livekit_unavailable");
    assert_eq!(meetings_in_db(&video).await?, 0, "rolled back");
    let (_, list) = video.get_json(&host, ROOMS).await?;
    assert_eq!(list["items"], json!([]));
    let (status, _) = video
        .get_json(&invitee, &format!("{ROOMS}/standup"))
        .await?;
    assert_eq!(status, 404);

    let (status, answer) = video.post_json(&host, ROOMS, body).await?;
    assert_eq!(status, 201, "the name is free again: {answer}");
    assert_eq!(meetings_in_db(&video).await?, 1);
    assert_eq!(video.livekit.rooms().len(), 1);
    Ok(())
}

#[tokio::test]
async fn in_development_a_livekit_failure_keeps_the_meeting() -> Result {
    let video =
        TestVideo::spawn_with(|config| config.environment = Environment::Development).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    video.livekit.fail("CreateRoom", "unavailable", 1);
    let (status, created) = video
        .post_json(&host, ROOMS, json!({"room_name": "dev-room"}))
        .await?;
    assert_eq!(
        status, 201,
        "LiveKit's dev server creates the room on connection: {created}"
    );
    assert!(video.livekit.rooms().is_empty());
    let claims = join(&video, &host, "dev-room").await?;
    assert_eq!(claims.video.room, livekit_room(host.org, &created)?);
    Ok(())
}

#[tokio::test]
async fn concurrent_creations_of_one_name_make_one_meeting_and_one_room() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let users: Vec<User> = (0..5).map(|_| User::new(org, Role::Closer)).collect();
    let answers = futures_util::future::join_all(
        users
            .iter()
            .map(|user| video.post_json(user, ROOMS, json!({"room_name": "race"}))),
    )
    .await;
    let mut statuses = Vec::new();
    for answer in answers {
        statuses.push(answer?.0);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 409, 409, 409, 409]);
    assert_eq!(meetings_in_db(&video).await?, 1);
    assert_eq!(video.livekit.rooms().len(), 1);
    Ok(())
}

#[tokio::test]
async fn meetings_survive_a_restart_of_the_service() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Closer);
    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "kept", "participants": [invitee.id]}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");

    // The seed kept rooms in memory: a second instance on the same database must know them.
    let second = video.restart().await?;
    let (status, read) = second.get_json(&invitee, &format!("{ROOMS}/kept")).await?;
    assert_eq!(status, 200);
    assert_eq!(read["id"], created["id"]);
    assert_eq!(read["participants"], created["participants"]);
    let (status, joined) = second
        .post_empty(&invitee, &format!("{ROOMS}/kept/join"))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(joined["identity"], format!("u_{}", invitee.id));
    second.app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn leaving_keeps_the_meeting_and_the_creator_ends_it_deleting_the_livekit_room() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Closer);
    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "weekly", "participants": [invitee.id]}),
        )
        .await?;
    assert_eq!(status, 201);
    let room = livekit_room(org, &created)?;
    join(&video, &host, "weekly").await?;
    join(&video, &invitee, "weekly").await?;

    // Everyone leaving leaves the meeting open: rooms are reused.
    for user in [&invitee, &host] {
        let (status, left) = video
            .post_empty(user, &format!("{ROOMS}/weekly/leave"))
            .await?;
        assert_eq!(status, 200, "{left}");
        assert_eq!(left["status"], "open");
        assert_eq!(member(&left, user)?["in_room"], false);
        assert!(time(&member(&left, user)?["left_at"]).is_ok());
    }
    join(&video, &host, "weekly").await?;
    join(&video, &invitee, "weekly").await?;

    let (status, body) = video
        .post_json(
            &invitee,
            &format!("{ROOMS}/weekly/leave"),
            json!({"end": true}),
        )
        .await?;
    assert_eq!(status, 403, "only the creator ends it: {body}");
    assert_eq!(video.livekit.rooms().len(), 1);

    let (status, ended) = video
        .post_json(
            &host,
            &format!("{ROOMS}/weekly/leave"),
            json!({"end": true}),
        )
        .await?;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert!(time(&ended["ended_at"]).is_ok());
    for user in [&host, &invitee] {
        assert_eq!(member(&ended, user)?["in_room"], false, "{ended}");
    }
    assert!(
        video.livekit.rooms().is_empty(),
        "the LiveKit room is deleted"
    );
    assert!(
        video
            .livekit
            .calls()
            .iter()
            .any(|c| c.method == "DeleteRoom" && c.room == room)
    );

    let (status, body) = video
        .post_empty(&invitee, &format!("{ROOMS}/weekly/join"))
        .await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("meeting_ended")),
        "{body}"
    );
    let (status, body) = video
        .post_json(
            &invitee,
            "/api/livekit/token",
            json!({"room_name": "weekly"}),
        )
        .await?;
    assert_eq!(status, 409, "{body}");
    // A join LiveKit reports late is from before the end.
    let late = participant_event(
        "EV_after_end",
        "participant_joined",
        &room,
        &invitee,
        Utc::now().timestamp(),
    );
    let (_, outcome) = video.livekit_webhook(&late).await?;
    assert_eq!(outcome["outcome"], "ignored");
    // Ending again changes nothing and asks LiveKit nothing.
    let (status, again) = video
        .post_json(
            &host,
            &format!("{ROOMS}/weekly/leave"),
            json!({"end": true}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(again["ended_at"], ended["ended_at"]);
    let deletes = video
        .livekit
        .calls()
        .iter()
        .filter(|c| c.method == "DeleteRoom")
        .count();
    assert_eq!(deletes, 1);
    // Ended meetings are listed after open ones.
    let (status, _) = video
        .post_json(&host, ROOMS, json!({"room_name": "next"}))
        .await?;
    assert_eq!(status, 201);
    let (_, list) = video.get_json(&host, ROOMS).await?;
    assert_eq!(list["items"][0]["room_name"], "next");
    assert_eq!(list["items"][1]["room_name"], "weekly");
    Ok(())
}

fn participant_event(id: &str, event: &str, room: &str, user: &User, at: i64) -> Value {
    json!({
        "id": id,
        "event": event,
        "createdAt": at.to_string(),
        "room": {"sid": "RM_meeting", "name": room},
        "participant": {
            "sid": "PA_meeting",
            "identity": format!("u_{}", user.id),
            "name": user.name,
            "state": "ACTIVE",
        },
    })
}

#[tokio::test]
async fn webhooks_apply_once_and_a_late_older_departure_does_not_mark_the_member_out() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let invitee = User::new(org, Role::Closer);
    let (status, created) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "hooks", "participants": [invitee.id]}),
        )
        .await?;
    assert_eq!(status, 201);
    let room = livekit_room(org, &created)?;
    let path = format!("{ROOMS}/hooks");
    let now = Utc::now().timestamp();

    let joined = participant_event("EV_join", "participant_joined", &room, &invitee, now);
    let (status, outcome) = video.livekit_webhook(&joined).await?;
    assert_eq!(
        (status, &outcome["outcome"]),
        (200, &json!("applied")),
        "{outcome}"
    );
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &invitee)?["in_room"], true, "{read}");
    assert_eq!(
        time(&member(&read, &invitee)?["joined_at"])?.timestamp(),
        now
    );
    let (_, outcome) = video.livekit_webhook(&joined).await?;
    assert_eq!(outcome["outcome"], "duplicate");
    // Announced once, like a call participant (monitoring counts a rep in a meeting on a call).
    let announced = video
        .events_of::<sb_events::proto::VideoParticipantJoined>("sb.video.participant.joined")
        .await?;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        (
            announced[0].user_id.as_str(),
            announced[0].room_name.as_str(),
            announced[0].joined_at_unix_ms
        ),
        (invitee.id.to_string().as_str(), room.as_str(), now * 1000)
    );
    assert_eq!(
        announced[0].call_id,
        created["id"].as_str().unwrap_or_default()
    );

    // A departure from an earlier session, delivered late, is older than the join.
    let stale = participant_event("EV_stale", "participant_left", &room, &invitee, now - 60);
    let (_, outcome) = video.livekit_webhook(&stale).await?;
    assert_eq!(outcome["outcome"], "applied");
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &invitee)?["in_room"], true, "{read}");

    let left = participant_event("EV_left", "participant_left", &room, &invitee, now + 5);
    for expected in ["applied", "duplicate"] {
        let (_, outcome) = video.livekit_webhook(&left).await?;
        assert_eq!(outcome["outcome"], expected);
    }
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &invitee)?["in_room"], false, "{read}");
    assert_eq!(
        time(&member(&read, &invitee)?["left_at"])?.timestamp(),
        now + 5
    );
    let left_events = video
        .events_of::<sb_events::proto::VideoParticipantLeft>("sb.video.participant.left")
        .await?;
    assert!(
        left_events
            .iter()
            .any(|e| e.user_id == invitee.id.to_string() && e.left_at_unix_ms == (now + 5) * 1000),
        "{left_events:?}"
    );
    assert_eq!(
        time(&member(&read, &invitee)?["joined_at"])?.timestamp(),
        now
    );

    // The join reported again under another id, after the departure: still out.
    let late_join = participant_event("EV_late", "participant_joined", &room, &invitee, now - 30);
    video.livekit_webhook(&late_join).await?;
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &invitee)?["in_room"], false, "{read}");

    // Someone who is not a member, and a recorder, are ignored.
    let stranger = User::new(org, Role::Closer);
    let (_, outcome) = video
        .livekit_webhook(&participant_event(
            "EV_x",
            "participant_joined",
            &room,
            &stranger,
            now,
        ))
        .await?;
    assert_eq!(outcome["outcome"], "ignored");

    // room_finished marks whoever is still in the room out; the meeting stays open.
    join(&video, &host, "hooks").await?;
    let finished = json!({
        "id": "EV_finished",
        "event": "room_finished",
        "createdAt": (Utc::now().timestamp() + 1).to_string(),
        "room": {"sid": "RM_meeting", "name": room},
    });
    let (_, outcome) = video.livekit_webhook(&finished).await?;
    assert_eq!(outcome["outcome"], "applied");
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &host)?["in_room"], false, "{read}");
    assert_eq!(read["status"], "open");
    // The meeting is reusable: joining again puts the host back in.
    join(&video, &host, "hooks").await?;
    let (_, read) = video.get_json(&host, &path).await?;
    assert_eq!(member(&read, &host)?["in_room"], true, "{read}");
    let receipts: i64 = {
        let mut conn = video.db.conn().await?;
        sb_db::schema::webhook_receipts::table
            .count()
            .get_result(&mut *conn)
            .await?
    };
    assert_eq!(receipts, 6, "one receipt per distinct event");
    Ok(())
}

#[tokio::test]
async fn the_meeting_routes_are_in_the_openapi_document() -> Result {
    let video = TestVideo::spawn().await?;
    let doc: Value = video.app.get("/openapi.json").send().await?.json().await?;
    for (path, method) in [
        ("/api/livekit/rooms", "post"),
        ("/api/livekit/rooms", "get"),
        ("/api/livekit/rooms/{room_name}", "get"),
        ("/api/livekit/rooms/{room_name}/join", "post"),
        ("/api/livekit/rooms/{room_name}/leave", "post"),
        ("/api/livekit/token", "post"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["tags"],
            json!(["meetings"]),
            "{method} {path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn users_known_to_belong_to_another_org_cannot_be_invited() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let colleague = User::new(org, Role::Setter);
    // Org B's closer hosts an appointment there; org B's manager created a meeting there.
    let org_b = Uuid::now_v7();
    let closer_b = User::new(org_b, Role::Closer);
    let manager_b = User::new(org_b, Role::Manager);
    video
        .appointment(&common::TestAppointment::new(org_b, closer_b.id))
        .await?;
    let (status, body) = video
        .post_json(
            &manager_b,
            ROOMS,
            json!({"room_name": "b-team", "participants": []}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let rooms_before = video.count("video_meetings").await?;

    for stranger in [&closer_b, &manager_b] {
        let (status, body) = video
            .post_json(
                &host,
                ROOMS,
                json!({"room_name": "mixed", "participants": [colleague.id, stranger.id]}),
            )
            .await?;
        assert_eq!(
            (status, &body["code"], &body["field"]),
            (400, &json!("invalid_field"), &json!("participants")),
            "{body}"
        );
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&stranger.id.to_string())),
            "{body}"
        );
    }
    // Nothing was created: no row, and the name is still free.
    assert_eq!(video.count("video_meetings").await?, rooms_before);
    let (status, body) = video
        .post_json(
            &host,
            ROOMS,
            json!({"room_name": "mixed", "participants": [colleague.id]}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}
