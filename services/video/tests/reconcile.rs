//! The reconciliation job against the fake LiveKit: calls whose departures never arrived,
//! recordings LiveKit finished or forgot.

mod common;

use common::{TestAppointment, TestVideo, User};
use sb_auth::Role;
use sb_livekit::protocol::EgressStatus;
use sb_testkit::Result;
use serde_json::json;
use uuid::Uuid;

async fn ongoing_call(video: &TestVideo, host: &User) -> Result<(String, String)> {
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
    Ok((
        joined["callId"].as_str().unwrap_or_default().to_owned(),
        joined["roomName"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn a_call_whose_room_is_empty_is_completed_and_its_recording_stopped() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let (call_id, room) = ongoing_call(&video, &host).await?;
    let busy = User::new(host.org, Role::Closer);
    let (busy_call, busy_room) = ongoing_call(&video, &busy).await?;
    video
        .livekit
        .join(&busy_room, &format!("u_{}", busy.id), "Busy");
    let (status, _) = video
        .post_json(
            &host,
            &format!("/calls/{call_id}/start"),
            json!({"startRecording": true}),
        )
        .await?;
    assert_eq!(status, 200);
    // Nobody is in the LiveKit room but a monitoring supervisor who was not taken out, and
    // participant_left never came: the supervisor does not keep the call going.
    video
        .livekit
        .join(&room, &format!("sup_{}", Uuid::now_v7()), "Supervisor");
    assert_eq!(video.livekit.participants(&room).len(), 1);
    let state = video.state().await?;
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(report.calls_completed, 1, "{report:?}");
    let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
    assert_eq!(call["status"], "COMPLETED", "{call}");
    assert_eq!(call["endReason"], "reconciled");
    assert_eq!(call["participants"][0]["active"], false);
    assert!(
        video
            .livekit
            .calls()
            .iter()
            .any(|c| c.method == "StopEgress")
    );
    // The call with someone in its room is left alone.
    let (_, other) = video
        .get_json(&busy, &format!("/calls/{busy_call}"))
        .await?;
    assert_eq!(other["status"], "ONGOING");
    // A second pass has nothing left to do for calls.
    let again = sb_video::reconcile_once(&state).await?;
    assert_eq!(again.calls_completed, 0);
    Ok(())
}

#[tokio::test]
async fn recordings_follow_what_livekit_lists_or_fail_when_it_forgot_them() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let (call_id, room) = ongoing_call(&video, &host).await?;
    // The host is in the room: this pass is about recordings, not the call.
    video.livekit.join(&room, &format!("u_{}", host.id), "Host");
    let (status, _) = video
        .post_json(
            &host,
            &format!("/calls/{call_id}/start"),
            json!({"startRecording": true}),
        )
        .await?;
    assert_eq!(status, 200);
    let egress = video.livekit.egress();
    assert_eq!(egress.len(), 1);
    // The egress_ended webhook was lost; LiveKit lists the egress as complete.
    video
        .livekit
        .set_egress_status(&egress[0].egress_id, EgressStatus::EgressComplete, "");
    // A second recording LiveKit never heard of (its start answer got lost on the way back).
    let now = chrono::Utc::now().timestamp();
    let orphan = json!({"event": "egress_started", "id": "EV_orphan", "createdAt": now.to_string(),
        "room": {"name": room}, "egressInfo": {"egressId": "EG_orphan", "roomName": room, "status": "EGRESS_ACTIVE"}});
    let (status, _) = video.livekit_webhook(&orphan).await?;
    assert_eq!(status, 200);

    let state = video.state().await?;
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(
        (report.recordings_updated, report.recordings_failed),
        (1, 1),
        "{report:?}"
    );
    let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
    let recordings = call["recordings"].as_array().cloned().unwrap_or_default();
    let status_of = |egress_id: &str| {
        recordings
            .iter()
            .find(|r| r["egressId"] == egress_id)
            .map(|r| (r["status"].clone(), r["error"].clone()))
    };
    assert_eq!(
        status_of(&egress[0].egress_id).map(|s| s.0),
        Some(json!("COMPLETE"))
    );
    assert_eq!(
        status_of("EG_orphan"),
        Some((
            json!("FAILED"),
            json!("LiveKit no longer knows this recording")
        ))
    );
    Ok(())
}

#[tokio::test]
async fn livekit_unreachable_during_a_pass_changes_nothing() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let (call_id, _) = ongoing_call(&video, &host).await?;
    video.livekit.fail("ListParticipants", "unavailable", 1);
    let state = video.state().await?;
    // LiveKit away ends the pass with its error (the job logs it and retries next period).
    let pass = sb_video::reconcile_once(&state).await;
    assert!(
        pass.as_ref()
            .is_err_and(|e| e.to_string().contains("LiveKit")),
        "{pass:?}"
    );
    let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
    assert_eq!(call["status"], "ONGOING");
    // LiveKit back: the next pass sees the empty room and completes the call.
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(report.calls_completed, 1, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_meeting_member_livekit_no_longer_has_is_marked_out() -> Result {
    let video = TestVideo::spawn().await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let (status, created) = video
        .post_json(
            &host,
            "/api/livekit/rooms",
            json!({"room_name": "standup", "participants": []}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let (status, _) = video
        .post_empty(&host, "/api/livekit/rooms/standup/join")
        .await?;
    assert_eq!(status, 200);
    // A minute later, the member's tab is gone and no participant_left came.
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use sb_db::schema::video_meeting_members as m;
        let mut conn = video.db.conn().await?;
        diesel::update(m::table.filter(m::user_id.eq(host.id)))
            .set(m::joined_at.eq(chrono::Utc::now() - chrono::Duration::minutes(1)))
            .execute(&mut conn)
            .await?;
    }
    let in_room = |body: &serde_json::Value| body["participants"][0]["in_room"].clone();
    let (_, meeting) = video.get_json(&host, "/api/livekit/rooms/standup").await?;
    assert_eq!(in_room(&meeting), json!(true), "{meeting}");
    let state = video.state().await?;
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(report.meeting_members_left, 1, "{report:?}");
    let (_, meeting) = video.get_json(&host, "/api/livekit/rooms/standup").await?;
    assert_eq!(in_room(&meeting), json!(false), "{meeting}");
    // The departure is announced, as a webhook's would be.
    let left = video
        .events_of::<sb_events::proto::VideoParticipantLeft>("sb.video.participant.left")
        .await?;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].user_id, host.id.to_string());
    assert_eq!(left[0].call_id, created["id"].as_str().unwrap_or_default());
    Ok(())
}

/// Polls `/metrics` until it has `line` (the gauge is set by the job's passes).
async fn metrics_show(video: &TestVideo, line: &str) -> Result<()> {
    sb_testkit::within(std::time::Duration::from_secs(10), line, async {
        loop {
            let metrics = video.metrics().await?;
            if metrics.lines().any(|l| l == line) {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await?
}

#[tokio::test]
async fn the_active_calls_gauge_counts_ongoing_calls() -> Result {
    let video = TestVideo::spawn_with(|c| {
        c.reconcile.interval = std::time::Duration::from_millis(100);
        // Nobody is in the fake LiveKit's rooms: the job must not complete the call meanwhile.
        c.reconcile.empty_grace = std::time::Duration::from_secs(3600);
    })
    .await?;
    metrics_show(&video, "sb_video_active_calls 0").await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let (call_id, _) = ongoing_call(&video, &host).await?;
    metrics_show(&video, "sb_video_active_calls 1").await?;
    let (status, stopped) = video
        .post_json(&host, &format!("/calls/{call_id}/stop"), json!({}))
        .await?;
    assert_eq!(status, 200, "{stopped}");
    metrics_show(&video, "sb_video_active_calls 0").await?;
    Ok(())
}
