//! Supervision inside the rep's real conversation: a video call's LiveKit room (who hears whom,
//! as the fake SFU routes it, in listen, coach and barge), a phone call's conference (the
//! events telephony acts on), the call's end, refused attempts in the audit, and meetings
//! counting as calls.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestMonitoring, User, participant_event, track_event};
use sb_auth::Role;
use sb_events::Namespace;
use sb_events::proto::{
    MonitoringSessionModeChanged, MonitoringSessionStarted, MonitoringSessionStopped,
    MonitoringTarget, PhoneCallStatus, PhoneCallStatusChanged, VideoParticipantJoined,
    VideoParticipantLeft,
};
use sb_testkit::{Result, wait_until};
use serde_json::{Value, json};
use uuid::Uuid;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
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

/// Video announces the rep in a call's room (an appointment's or a meeting's); waits until
/// monitoring shows them on a call. The rep must be known to monitoring (their token asked).
async fn rep_joins_video_call(
    monitoring: &TestMonitoring,
    viewer: &User,
    rep: &User,
    call: Uuid,
    room: &str,
) -> Result {
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    sb_events::publish::publish(
        &js,
        &ns,
        &VideoParticipantJoined {
            call_id: call.to_string(),
            org_id: rep.org.to_string(),
            room_name: room.to_owned(),
            user_id: rep.id.to_string(),
            identity: format!("u_{}", rep.id),
            role: "participant".into(),
            joined_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the rep on a video call",
        || async {
            rep_view(monitoring, viewer, rep)
                .await
                .is_ok_and(|v| v["onCall"]["kind"] == "video")
        },
    )
    .await?;
    Ok(())
}

/// The rep registers with monitoring (their token), without connecting to their side room.
async fn rep_known(monitoring: &TestMonitoring, rep: &User) -> Result {
    let (status, body) = monitoring
        .post_empty(rep, "/monitoring/rep/session")
        .await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

async fn mode(monitoring: &TestMonitoring, who: &User, id: &str, mode: &str) -> Result {
    let (status, body) = monitoring
        .post_json(
            who,
            &format!("/monitoring/sessions/{id}/mode"),
            json!({"mode": mode}),
        )
        .await?;
    assert_eq!(status, 200, "{mode}: {body}");
    Ok(())
}

#[tokio::test]
async fn video_listen_coach_barge_and_stop_route_audio_inside_the_call() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let lk = &monitoring.livekit;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep = User::new(org, Role::Closer).in_team(team);
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    rep_known(&monitoring, &rep).await?;

    // The appointment's call: the rep and a customer (a guest) talking.
    let call = Uuid::now_v7();
    let room = format!("org_{org}_apt_{}", Uuid::now_v7());
    let rep_id = format!("u_{}", rep.id);
    let customer = format!("g_{}", Uuid::now_v7());
    lk.join(&room, &rep_id, &rep.name);
    lk.join(&room, &customer, "Customer");
    lk.publish_audio(&room, &rep_id);
    lk.publish_audio(&room, &customer);
    rep_joins_video_call(&monitoring, &ceo, &rep, call, &room).await?;

    // The rep's side room is silent (no monitoring app): the call is supervised all the same.
    let (status, started) = monitoring
        .post_json(&manager, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{started}");
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let target = &started["session"]["target"];
    assert_eq!(target["kind"], "video_call", "{started}");
    assert_eq!(target["callId"], call.to_string());
    assert_eq!(target["roomName"], room.as_str());
    assert!(target["supervisorAddress"].is_null());
    assert_eq!(started["roomName"], room.as_str());

    // The supervisor's app connects with the token: hidden, subscribe only.
    let token = started["participantToken"].as_str().unwrap_or_default();
    let (joined_room, supervisor) = lk.connect(token)?;
    assert_eq!(joined_room, room);
    assert_eq!(supervisor, format!("sup_{}", manager.id));
    assert!(!supervisor.starts_with("u_") && !supervisor.starts_with("g_"));
    let permission = lk.permission(&room, &supervisor).unwrap_or_default();
    assert!(permission.hidden && !permission.can_publish && permission.can_subscribe);
    assert_eq!(
        lk.publish_audio(&room, &supervisor),
        None,
        "a listener cannot publish"
    );
    assert_eq!(lk.hears(&room, &supervisor), set(&[&rep_id, &customer]));
    assert_eq!(lk.hears(&room, &rep_id), set(&[&customer]));
    assert_eq!(lk.hears(&room, &customer), set(&[&rep_id]));

    // Coach: the supervisor publishes; only the rep hears them, the SFU enforcing it.
    mode(&monitoring, &manager, &id, "coach").await?;
    let permission = lk.permission(&room, &supervisor).unwrap_or_default();
    assert!(
        permission.can_publish && permission.hidden,
        "{permission:?}"
    );
    let track = lk
        .publish_audio(&room, &supervisor)
        .ok_or("the coach may publish")?;
    let now = chrono::Utc::now().timestamp();
    let sup_sid = "PA_supervisor";
    let (status, answer) = monitoring
        .livekit_webhook(&track_event(
            "track_published",
            "EV_coach_track",
            &room,
            now,
            sup_sid,
            &supervisor,
            &track,
        ))
        .await?;
    assert_eq!(
        (status, &answer["outcome"]),
        (200, &json!("applied")),
        "{answer}"
    );
    assert_eq!(lk.hears(&room, &rep_id), set(&[&customer, &supervisor]));
    assert_eq!(
        lk.hears(&room, &customer),
        set(&[&rep_id]),
        "the customer never hears a coach"
    );
    assert_eq!(lk.hears(&room, &supervisor), set(&[&rep_id, &customer]));
    assert!(
        lk.calls()
            .iter()
            .any(|c| c.method == "UpdateSubscriptions" && c.room == room)
    );

    // Someone joining during coaching auto-subscribes; the join's webhook takes the coach away.
    let late = format!("g_{}", Uuid::now_v7());
    lk.join(&room, &late, "Late customer");
    lk.publish_audio(&room, &late);
    let (status, _) = monitoring
        .livekit_webhook(&participant_event(
            "participant_joined",
            "EV_late_join",
            &room,
            now,
            "PA_late",
            &late,
        ))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(lk.hears(&room, &late), set(&[&rep_id, &customer]));
    assert_eq!(
        lk.hears(&room, &rep_id),
        set(&[&customer, &late, &supervisor])
    );
    // The reconciliation job applies it too, should a webhook be lost.
    let lost = format!("g_{}", Uuid::now_v7());
    lk.join(&room, &lost, "Webhook lost");
    assert!(lk.hears(&room, &lost).contains(&supervisor));
    sb_monitoring::reconcile_once(&monitoring.state().await?).await?;
    assert!(!lk.hears(&room, &lost).contains(&supervisor));
    lk.leave(&room, &lost);

    // Barge: visible, and everyone hears the supervisor.
    mode(&monitoring, &manager, &id, "barge").await?;
    let permission = lk.permission(&room, &supervisor).unwrap_or_default();
    assert!(
        permission.can_publish && !permission.hidden,
        "{permission:?}"
    );
    for listener in [&rep_id, &customer, &late] {
        assert!(
            lk.hears(&room, listener).contains(&supervisor),
            "{listener} hears the barging supervisor"
        );
    }

    // Back to listen: the microphone is unpublished, nobody hears the supervisor.
    mode(&monitoring, &manager, &id, "listen").await?;
    for listener in [&rep_id, &customer, &late] {
        assert!(!lk.hears(&room, listener).contains(&supervisor));
    }
    assert!(lk.permission(&room, &supervisor).is_some_and(|p| p.hidden));
    assert_eq!(
        lk.hears(&room, &supervisor),
        set(&[&rep_id, &customer, &late])
    );

    // Stop: out of the room, announced with the same target.
    let (status, stopped) = monitoring
        .post_empty(&manager, &format!("/monitoring/sessions/{id}/stop"))
        .await?;
    assert_eq!(status, 200, "{stopped}");
    assert!(
        lk.permission(&room, &supervisor).is_none(),
        "removed from the call"
    );
    let events = monitoring
        .events_of::<MonitoringSessionStopped>("sb.monitoring.session.stopped")
        .await?;
    let target = events
        .last()
        .and_then(|e| e.target.clone())
        .unwrap_or_default();
    assert_eq!(target.kind, MonitoringTarget::VideoCall as i32);
    assert_eq!(
        (target.call_id, target.room_name),
        (call.to_string(), room.clone())
    );
    let changes = monitoring
        .events_of::<MonitoringSessionModeChanged>("sb.monitoring.session.mode_changed")
        .await?;
    assert_eq!(changes.len(), 3);
    assert!(
        changes
            .iter()
            .all(|e| e.target.as_ref().is_some_and(|t| t.room_name == room))
    );
    Ok(())
}

#[tokio::test]
async fn the_end_of_the_reps_video_call_stops_the_sessions_inside_it() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Setter);
    let ceo = User::new(org, Role::Ceo);
    rep_known(&monitoring, &rep).await?;
    let call = Uuid::now_v7();
    let room = format!("org_{org}_mtg_{}", Uuid::now_v7());
    rep_joins_video_call(&monitoring, &ceo, &rep, call, &room).await?;
    let (status, started) = monitoring
        .post_json(
            &ceo,
            "/monitoring/sessions",
            json!({"repId": rep.id, "target": "call"}),
        )
        .await?;
    assert_eq!(status, 201, "{started}");
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    monitoring
        .livekit
        .connect(started["participantToken"].as_str().unwrap_or_default())?;
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    sb_events::publish::publish(
        &js,
        &ns,
        &VideoParticipantLeft {
            call_id: call.to_string(),
            org_id: org.to_string(),
            room_name: room.clone(),
            user_id: rep.id.to_string(),
            identity: format!("u_{}", rep.id),
            left_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(Duration::from_secs(10), "the session stopped", || async {
        monitoring
            .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
            .await
            .is_ok_and(|(_, s)| s["status"] == "STOPPED" && s["stopReason"] == "call_ended")
    })
    .await?;
    assert!(
        monitoring
            .livekit
            .permission(&room, &format!("sup_{}", ceo.id))
            .is_none(),
        "the supervisor is taken out of the call's room"
    );
    let (_, audit) = monitoring
        .get_json(&ceo, &format!("/monitoring/audit?sessionId={id}"))
        .await?;
    assert_eq!(audit["items"][0]["action"], "stop", "{audit}");
    assert_eq!(audit["items"][0]["detail"], "call_ended", "{audit}");
    assert_eq!(audit["items"][0]["target"], "video_call", "{audit}");
    // Nothing to supervise in the call any more: `target: call` is refused.
    let (status, refused) = monitoring
        .post_json(
            &ceo,
            "/monitoring/sessions",
            json!({"repId": rep.id, "target": "call"}),
        )
        .await?;
    assert_eq!(
        (status, &refused["code"]),
        (409, &json!("call_not_live")),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn a_phone_call_is_supervised_through_events_naming_the_conference_and_the_supervisor()
-> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep = User::new(org, Role::Closer).in_team(team);
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    rep_known(&monitoring, &rep).await?;
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    let call = Uuid::now_v7();
    let status_changed = |status: PhoneCallStatus| PhoneCallStatusChanged {
        call_id: call.to_string(),
        org_id: org.to_string(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
        user_id: rep.id.to_string(),
        direction: 0,
        previous_status: 0,
        status: status as i32,
        changed_at_unix_ms: chrono::Utc::now().timestamp_millis(),
    };
    sb_events::publish::publish(&js, &ns, &status_changed(PhoneCallStatus::InProgress)).await?;
    wait_until(
        Duration::from_secs(10),
        "the rep on a phone call",
        || async {
            rep_view(&monitoring, &ceo, &rep)
                .await
                .is_ok_and(|v| v["onCall"]["kind"] == "phone")
        },
    )
    .await?;

    // A number that is not E.164 is refused (and audited), nothing is started.
    let (status, refused) = monitoring
        .post_json(
            &manager,
            "/monitoring/sessions",
            json!({"repId": rep.id, "phone": {"via": "number", "number": "0612345678"}}),
        )
        .await?;
    assert_eq!(
        (status, &refused["code"]),
        (400, &json!("invalid_phone_number")),
        "{refused}"
    );
    assert_eq!(monitoring.count("monitoring_sessions").await?, 0);

    // The manager is rung on their phone.
    let (status, started) = monitoring
        .post_json(
            &manager,
            "/monitoring/sessions",
            json!({"repId": rep.id, "phone": {"via": "number", "number": "+1 415 555 2671"}}),
        )
        .await?;
    assert_eq!(status, 201, "{started}");
    let target = &started["session"]["target"];
    assert_eq!(target["kind"], "phone_call", "{started}");
    assert_eq!(target["callId"], call.to_string());
    assert_eq!(target["supervisorAddress"], "+14155552671");
    assert!(target["roomName"].is_null() && started["participantToken"].is_null());
    let manager_session = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let published = monitoring
        .nats
        .published::<MonitoringSessionStarted>()
        .await?;
    let target = published.target.unwrap_or_default();
    assert_eq!(published.session_id, manager_session);
    assert_eq!(target.kind, MonitoringTarget::PhoneCall as i32);
    assert_eq!(target.call_id, call.to_string());
    assert_eq!(target.supervisor_address, "+14155552671");
    assert_eq!(target.room_name, "");

    // Coach, announced for telephony with the same target.
    mode(&monitoring, &manager, &manager_session, "coach").await?;
    let changed = monitoring
        .nats
        .published::<MonitoringSessionModeChanged>()
        .await?;
    let target = changed.target.unwrap_or_default();
    assert_eq!(changed.session_id, manager_session);
    assert_eq!(target.kind, MonitoringTarget::PhoneCall as i32);
    assert_eq!(target.supervisor_address, "+14155552671");
    // No LiveKit room is involved (creating the rep's side room aside).
    assert!(
        monitoring
            .livekit
            .calls()
            .iter()
            .all(|c| c.method == "CreateRoom"),
        "{:?}",
        monitoring.livekit.calls()
    );

    // The CEO joins from their app: telephony rings the Voice SDK client.
    let (status, started) = monitoring
        .post_json(
            &ceo,
            "/monitoring/sessions",
            json!({"repId": rep.id, "target": "call"}),
        )
        .await?;
    assert_eq!(status, 201, "{started}");
    let app_address = format!("client:u_{}", ceo.id.simple());
    assert_eq!(
        started["session"]["target"]["supervisorAddress"],
        app_address.as_str()
    );
    let ceo_session = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let published: MonitoringSessionStarted =
        published_for(&monitoring, &ceo_session, |e: &MonitoringSessionStarted| {
            e.session_id.clone()
        })
        .await?;
    assert_eq!(
        published.target.unwrap_or_default().supervisor_address,
        app_address
    );

    // The manager stops; the call's end stops the CEO's session.
    let (status, _) = monitoring
        .post_empty(
            &manager,
            &format!("/monitoring/sessions/{manager_session}/stop"),
        )
        .await?;
    assert_eq!(status, 200);
    let stopped: MonitoringSessionStopped = published_for(
        &monitoring,
        &manager_session,
        |e: &MonitoringSessionStopped| e.session_id.clone(),
    )
    .await?;
    let target = stopped.target.unwrap_or_default();
    assert_eq!(target.kind, MonitoringTarget::PhoneCall as i32);
    assert_eq!(target.supervisor_address, "+14155552671");
    sb_events::publish::publish(&js, &ns, &status_changed(PhoneCallStatus::Completed)).await?;
    wait_until(
        Duration::from_secs(10),
        "the CEO's session stopped",
        || async {
            monitoring
                .get_json(&ceo, &format!("/monitoring/sessions/{ceo_session}"))
                .await
                .is_ok_and(|(_, s)| s["stopReason"] == "call_ended")
        },
    )
    .await?;
    let stopped: MonitoringSessionStopped =
        published_for(&monitoring, &ceo_session, |e: &MonitoringSessionStopped| {
            e.session_id.clone()
        })
        .await?;
    assert_eq!(
        stopped.target.unwrap_or_default().supervisor_address,
        app_address
    );
    Ok(())
}

/// The last `E` on JetStream once it is `session`'s (the relay publishes shortly after the
/// commit; the previous one may still be the last).
async fn published_for<E: sb_events::Event>(
    monitoring: &TestMonitoring,
    session: &str,
    id: impl Fn(&E) -> String,
) -> Result<E> {
    for _ in 0..250 {
        let event = monitoring.nats.published::<E>().await?;
        if id(&event) == session {
            return Ok(event);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no {} of session {session} on JetStream", E::TYPE).into())
}

async fn refusals(monitoring: &TestMonitoring, reader: &User, rep: Uuid) -> Result<Vec<Value>> {
    let (status, audit) = monitoring
        .get_json(reader, &format!("/monitoring/audit?repId={rep}"))
        .await?;
    assert_eq!(status, 200, "{audit}");
    Ok(audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "refuse")
        .cloned()
        .collect())
}

#[tokio::test]
async fn refused_attempts_are_audited_without_telling_the_caller_more() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let other_org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep = User::new(org, Role::Closer).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    let outsider_manager = User::new(org, Role::Manager).in_team(Uuid::now_v7());
    let closer = User::new(org, Role::Closer);
    let foreign_rep = User::new(other_org, Role::Closer);
    let foreign_ceo = User::new(other_org, Role::Ceo);
    rep_known(&monitoring, &rep).await?;
    rep_known(&monitoring, &foreign_rep).await?;

    let attempts = [
        (&ceo, json!({"repId": rep.id}), 409, "rep_offline"),
        (
            &ceo,
            json!({"repId": rep.id, "target": "call"}),
            409,
            "call_not_live",
        ),
        (
            &outsider_manager,
            json!({"repId": rep.id}),
            404,
            "not_found",
        ),
        (&closer, json!({"repId": rep.id}), 403, "forbidden"),
    ];
    for (who, body, status, reason) in &attempts {
        let (got, answer) = monitoring
            .post_json(who, "/monitoring/sessions", body.clone())
            .await?;
        assert_eq!(got, *status, "{reason}: {answer}");
    }
    let rows = refusals(&monitoring, &ceo, rep.id).await?;
    assert_eq!(rows.len(), attempts.len(), "{rows:?}");
    let mut reasons: Vec<&str> = rows.iter().filter_map(|r| r["detail"].as_str()).collect();
    reasons.sort_unstable();
    let mut expected: Vec<&str> = attempts.iter().map(|a| a.3).collect();
    expected.sort_unstable();
    assert_eq!(reasons, expected);
    for row in &rows {
        assert!(row["sessionId"].is_null(), "{row}");
        assert_eq!(row["repId"], rep.id.to_string());
        assert!(row["actorId"].is_string());
    }
    let by_target: Vec<&str> = rows.iter().filter_map(|r| r["target"].as_str()).collect();
    assert!(
        by_target.contains(&"call") && by_target.contains(&"auto"),
        "{by_target:?}"
    );

    // Too many supervisors: the org allows one.
    let (status, _) = monitoring
        .app
        .send(
            monitoring.app.client.put(monitoring.app.url("/monitoring/settings")).json(
                &json!({"notifyRep": false, "allowCoach": true, "allowBarge": true, "maxSupervisorsPerRep": 1}),
            ),
            Some(&monitoring.token(&ceo)),
        )
        .await?;
    assert_eq!(status, 200);
    let call = Uuid::now_v7();
    rep_joins_video_call(
        &monitoring,
        &ceo,
        &rep,
        call,
        &format!("org_{org}_apt_{call}"),
    )
    .await?;
    let (status, _) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201);
    let director = User::new(org, Role::Director);
    let (status, _) = monitoring
        .post_json(&director, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 409);
    let rows = refusals(&monitoring, &ceo, rep.id).await?;
    assert_eq!(rows[0]["detail"], "too_many_supervisors", "{rows:?}");
    assert_eq!(rows[0]["actorId"], director.id.to_string());

    // Another org's rep: the same 404 as an unknown id; the row stays in the caller's org and
    // holds only what the caller sent.
    let unknown = Uuid::now_v7();
    for target in [foreign_rep.id, unknown] {
        let (status, answer) = monitoring
            .post_json(&ceo, "/monitoring/sessions", json!({"repId": target}))
            .await?;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["detail"], "rep not found", "{answer}");
        let rows = refusals(&monitoring, &ceo, target).await?;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["detail"], "not_found");
    }
    assert!(
        refusals(&monitoring, &foreign_ceo, foreign_rep.id)
            .await?
            .is_empty(),
        "the rep's org learns nothing of another org's attempt"
    );
    Ok(())
}

#[tokio::test]
async fn a_rep_in_a_meeting_is_on_a_call_and_supervised_in_the_meetings_room() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let director = User::new(org, Role::Director);
    rep_known(&monitoring, &rep).await?;
    let meeting = Uuid::now_v7();
    let room = format!("org_{org}_mtg_{meeting}");
    rep_joins_video_call(&monitoring, &director, &rep, meeting, &room).await?;
    assert_eq!(
        rep_view(&monitoring, &director, &rep).await?["status"],
        "ON_CALL"
    );
    let (status, started) = monitoring
        .post_json(&director, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["session"]["target"]["kind"], "video_call");
    assert_eq!(started["roomName"], room.as_str());

    // Left, then back in the same meeting room (rooms are reused): on a call again.
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    sb_events::publish::publish(
        &js,
        &ns,
        &VideoParticipantLeft {
            call_id: meeting.to_string(),
            org_id: org.to_string(),
            room_name: room.clone(),
            user_id: rep.id.to_string(),
            identity: format!("u_{}", rep.id),
            left_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(Duration::from_secs(10), "the rep off the call", || async {
        rep_view(&monitoring, &director, &rep)
            .await
            .is_ok_and(|v| v["onCall"].is_null())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    rep_joins_video_call(&monitoring, &director, &rep, meeting, &room).await?;
    Ok(())
}

#[tokio::test]
async fn a_phone_supervision_telephony_could_not_set_up_stops_the_session() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let ceo = User::new(org, Role::Ceo);
    rep_known(&monitoring, &rep).await?;
    let js = monitoring.nats.jetstream();
    let ns = Namespace::prefixed(monitoring.nats.prefix());
    let call = Uuid::now_v7();
    sb_events::publish::publish(
        &js,
        &ns,
        &PhoneCallStatusChanged {
            call_id: call.to_string(),
            org_id: org.to_string(),
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            user_id: rep.id.to_string(),
            direction: 0,
            previous_status: 0,
            status: PhoneCallStatus::InProgress as i32,
            changed_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the rep on a phone call",
        || async {
            rep_view(&monitoring, &ceo, &rep)
                .await
                .is_ok_and(|v| v["onCall"]["kind"] == "phone")
        },
    )
    .await?;
    let (status, started) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{started}");
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let failed = |org: Uuid| sb_events::proto::PhoneSupervisionFailed {
        session_id: id.clone(),
        org_id: org.to_string(),
        call_id: call.to_string(),
        supervisor_user_id: ceo.id.to_string(),
        rep_user_id: rep.id.to_string(),
        reason: "provider_rejected".into(),
        twilio_code: 13_001,
        stage: "started".into(),
        failed_at_unix_ms: chrono::Utc::now().timestamp_millis(),
    };
    sb_events::publish::publish(&js, &ns, &failed(org)).await?;
    wait_until(Duration::from_secs(10), "the session stopped", || async {
        monitoring
            .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
            .await
            .is_ok_and(|(_, s)| s["status"] == "STOPPED")
    })
    .await?;
    let (_, session) = monitoring
        .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
        .await?;
    assert_eq!(
        session["stopReason"], "phone_provider_rejected",
        "{session}"
    );
    let stopped: MonitoringSessionStopped =
        published_for(&monitoring, &id, |e: &MonitoringSessionStopped| {
            e.session_id.clone()
        })
        .await?;
    assert_eq!(
        stopped.target.unwrap_or_default().kind,
        MonitoringTarget::PhoneCall as i32
    );
    Ok(())
}
