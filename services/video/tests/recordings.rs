//! Recordings people play and delete, against a real S3-compatible server (`moto_server`, from
//! PyPI's `moto[server]`, started per test on a free loopback port): the media route redirects
//! to a presigned URL the bucket serves with ranges, every play and deletion leaves an audit row,
//! deletion removes the file and announces it once, the retention pass deletes old ones only.

mod common;

use std::time::Duration;

use common::{TestAppointment, TestVideo, User};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_db::schema::{recording_access_audit as audit, video_recordings};
use sb_events::proto::VideoRecordingDeleted;
use sb_testkit::{MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY, Moto, Result, TestBucket};
use sb_video::config::S3Config;
use serde_json::json;
use uuid::Uuid;

const DELETED: &str = "sb.video.recording.deleted";

/// The service's S3 settings for `bucket` on `moto`.
fn s3_config(moto: &Moto, bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        region: MOTO_REGION.to_owned(),
        endpoint: moto.endpoint().to_owned(),
        access_key: MOTO_ACCESS_KEY.to_owned(),
        secret_key: MOTO_SECRET_KEY.to_owned().into(),
        force_path_style: true,
        retention: None,
    }
}

/// What egress uploaded: 1,000 bytes, each its index mod 251.
fn media() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

struct Recorded {
    call_id: String,
    recording_id: String,
    key: String,
}

/// A call of `host`'s whose recording egress finished `ended_secs_ago` seconds ago, its file
/// uploaded to `bucket` (LiveKit's egress_ended webhook names it).
async fn recorded_call(
    video: &TestVideo,
    bucket: &TestBucket,
    host: &User,
    ended_secs_ago: i64,
) -> Result<Recorded> {
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
    let call_id = joined["callId"].as_str().unwrap_or_default().to_owned();
    let room = joined["roomName"].as_str().unwrap_or_default().to_owned();
    let egress = format!("EG_{}", Uuid::now_v7().simple());
    let key = format!("recordings/{}/{call_id}/{egress}.mp4", host.org);
    bucket.put(&key, media()).await?;
    let ended = chrono::Utc::now().timestamp() - ended_secs_ago;
    let event = sb_testkit::egress_ended_webhook(&room, &egress, &key, media().len(), ended);
    let (status, answer) = video.livekit_webhook(&event).await?;
    assert_eq!(status, 200, "{answer}");
    let (_, call) = video.get_json(host, &format!("/calls/{call_id}")).await?;
    assert_eq!(call["recordings"][0]["status"], "COMPLETE", "{call}");
    assert_eq!(call["recordingData"]["filename"], json!(key), "{call}");
    let recording_id = call["recordings"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Recorded {
        call_id,
        recording_id,
        key,
    })
}

/// A client that does not follow redirects, as `user`.
async fn media_unfollowed(video: &TestVideo, user: &User, path: &str) -> Result<reqwest::Response> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    Ok(client
        .get(video.app.url(path))
        .bearer_auth(video.token(user))
        .send()
        .await?)
}

/// The audit rows of `recording`: (action, user, byte range), oldest first.
async fn audit_rows(
    video: &TestVideo,
    recording: &str,
) -> Result<Vec<(String, Option<Uuid>, Option<String>)>> {
    let mut conn = video.db.conn().await?;
    Ok(audit::table
        .filter(audit::recording_id.eq(Uuid::parse_str(recording)?))
        .filter(audit::service.eq("video"))
        .order(audit::at.asc())
        .select((audit::action, audit::user_id, audit::byte_range))
        .load(&mut conn)
        .await?)
}

async fn deleted_at(
    video: &TestVideo,
    recording: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    let mut conn = video.db.conn().await?;
    Ok(video_recordings::table
        .find(Uuid::parse_str(recording)?)
        .select(video_recordings::deleted_at)
        .first(&mut conn)
        .await?)
}

async fn spawn(moto: &Moto, retention: Option<Duration>) -> Result<(TestVideo, TestBucket)> {
    let bucket_name = format!("rec-{}", Uuid::now_v7().simple());
    let s3 = S3Config {
        retention,
        ..s3_config(moto, &bucket_name)
    };
    let bucket = TestBucket::create(&s3.endpoint, &s3.bucket).await?;
    let video = TestVideo::spawn_with(|c| c.recording.s3 = Some(s3)).await?;
    Ok((video, bucket))
}

#[tokio::test]
async fn playing_redirects_to_the_file_which_the_bucket_serves_with_ranges_and_each_play_is_audited()
-> Result {
    let moto = Moto::start().await?;
    let (video, bucket) = spawn(&moto, None).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let recorded = recorded_call(&video, &bucket, &host, 60).await?;
    let path = format!(
        "/calls/{}/recordings/{}/media",
        recorded.call_id, recorded.recording_id
    );

    let answer = media_unfollowed(&video, &host, &path).await?;
    assert_eq!(answer.status(), 307);
    assert_eq!(
        answer.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with(moto.endpoint()) && location.contains("X-Amz-Signature="),
        "a presigned URL of the bucket: {location}"
    );
    assert!(!location.contains("test-secret-key"), "{location}");
    // The URL alone is enough: no credentials of ours go with it.
    let file = reqwest::get(&location).await?;
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"video/mp4"[..])
    );
    assert_eq!(file.bytes().await?.to_vec(), media());

    // A player asking for a range through the media route gets it from the bucket.
    let ranged = video
        .app
        .client
        .get(video.app.url(&path))
        .bearer_auth(video.token(&host))
        .header("Range", "bytes=10-19")
        .send()
        .await?;
    assert_eq!(ranged.status(), 206);
    let header = |name: &str| {
        ranged
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-length").as_deref(), Some("10"));
    assert_eq!(header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(header("content-range").as_deref(), Some("bytes 10-19/1000"));
    assert_eq!(ranged.bytes().await?.to_vec(), media()[10..20].to_vec());

    // Another org's user learns nothing, and leaves no trace.
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    let refused = media_unfollowed(&video, &stranger, &path).await?;
    assert_eq!(refused.status(), 404);
    // An unknown recording of a call the host sees is 404 too.
    let unknown = media_unfollowed(
        &video,
        &host,
        &format!(
            "/calls/{}/recordings/{}/media",
            recorded.call_id,
            Uuid::now_v7()
        ),
    )
    .await?;
    assert_eq!(unknown.status(), 404);

    assert_eq!(
        audit_rows(&video, &recorded.recording_id).await?,
        vec![
            ("play".to_owned(), Some(host.id), None),
            (
                "play".to_owned(),
                Some(host.id),
                Some("bytes=10-19".to_owned())
            ),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_recording_still_running_has_nothing_to_play_until_egress_finishes() -> Result {
    let moto = Moto::start().await?;
    let (video, _bucket) = spawn(&moto, None).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let appointment = TestAppointment::new(host.org, host.id);
    video.appointment(&appointment).await?;
    let (_, joined) = video
        .post_json(
            &host,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({}),
        )
        .await?;
    let call_id = joined["callId"].as_str().unwrap_or_default().to_owned();
    let (status, _) = video
        .post_json(
            &host,
            &format!("/calls/{call_id}/start"),
            json!({"startRecording": true}),
        )
        .await?;
    assert_eq!(status, 200);
    let (_, call) = video.get_json(&host, &format!("/calls/{call_id}")).await?;
    let recording = call["recordings"][0]["id"].as_str().unwrap_or_default();
    assert!(!recording.is_empty(), "{call}");
    let path = format!("/calls/{call_id}/recordings/{recording}");
    let play = media_unfollowed(&video, &host, &format!("{path}/media")).await?;
    assert_eq!(play.status(), 409);
    let (status, body) = video.call(&host, "DELETE", &path, None).await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("recording_not_ready")),
        "{body}"
    );
    assert_eq!(audit_rows(&video, recording).await?, vec![]);
    assert!(deleted_at(&video, recording).await?.is_none());

    // Once egress has finished the file, the same route redirects to it.
    let egress = video.livekit.egress();
    let room = joined["roomName"].as_str().unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let ended = json!({"event": "egress_ended", "id": "EV_ended", "createdAt": now.to_string(),
        "room": {"name": room}, "egressInfo": {"egressId": egress[0].egress_id, "roomName": room,
        "status": "EGRESS_COMPLETE", "endedAt": (now * 1_000_000_000).to_string()}});
    let (status, answer) = video.livekit_webhook(&ended).await?;
    assert_eq!(status, 200, "{answer}");
    let play = media_unfollowed(&video, &host, &format!("{path}/media")).await?;
    assert_eq!(play.status(), 307);
    assert_eq!(audit_rows(&video, recording).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn deleting_removes_the_file_tombstones_the_recording_and_announces_it_once() -> Result {
    let moto = Moto::start().await?;
    let (video, bucket) = spawn(&moto, None).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let recorded = recorded_call(&video, &bucket, &host, 60).await?;
    let path = format!(
        "/calls/{}/recordings/{}",
        recorded.call_id, recorded.recording_id
    );

    // Neither another org nor a rep who does not host the call may delete it.
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    let (status, _) = video.call(&stranger, "DELETE", &path, None).await?;
    assert_eq!(status, 404);
    let colleague = User::new(host.org, Role::Closer);
    let (status, _) = video.call(&colleague, "DELETE", &path, None).await?;
    assert_eq!(status, 403);
    assert_eq!(bucket.status_of(&recorded.key).await?, 200);
    assert!(
        video
            .events_of::<VideoRecordingDeleted>(DELETED)
            .await?
            .is_empty()
    );

    let before = chrono::Utc::now();
    let (status, body) = video.call(&host, "DELETE", &path, None).await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(bucket.status_of(&recorded.key).await?, 404);
    let tombstone = deleted_at(&video, &recorded.recording_id).await?;
    assert!(tombstone.is_some_and(|at| at >= before), "{tombstone:?}");
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", recorded.call_id))
        .await?;
    assert_eq!(
        call["recordings"],
        json!([]),
        "deleted recordings leave the call"
    );
    // The call no longer points at the file.
    assert_eq!(
        (&call["recordingUrl"], &call["recordingData"]),
        (&json!(null), &json!(null)),
        "{call}"
    );
    let play = media_unfollowed(&video, &host, &format!("{path}/media")).await?;
    assert_eq!(play.status(), 404);
    let events = video.events_of::<VideoRecordingDeleted>(DELETED).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].recording_id, recorded.recording_id);
    assert_eq!(events[0].call_id, recorded.call_id);
    assert_eq!(events[0].org_id, host.org.to_string());
    assert_eq!(events[0].deleted_by_user_id, host.id.to_string());
    assert_eq!(events[0].reason, "user");
    assert_eq!(
        events[0].deleted_at_unix_ms,
        tombstone.map(|t| t.timestamp_millis()).unwrap_or_default()
    );

    // Again: the same answer, nothing more.
    let (status, _) = video.call(&host, "DELETE", &path, None).await?;
    assert_eq!(status, 204);
    assert_eq!(
        video
            .events_of::<VideoRecordingDeleted>(DELETED)
            .await?
            .len(),
        1
    );
    assert_eq!(deleted_at(&video, &recorded.recording_id).await?, tombstone);
    assert_eq!(
        audit_rows(&video, &recorded.recording_id).await?,
        vec![("delete".to_owned(), Some(host.id), None)]
    );
    Ok(())
}

#[tokio::test]
async fn a_bucket_that_does_not_answer_changes_nothing() -> Result {
    // A bucket where nothing listens: the port of a listener closed at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let moto = Moto::start().await?;
    let (video, bucket) = spawn(&moto, None).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let recorded = recorded_call(&video, &bucket, &host, 60).await?;
    let mut video = video;
    if let Some(s3) = video.config.recording.s3.as_mut() {
        s3.endpoint = format!("http://127.0.0.1:{port}");
    }
    let video = video.restart().await?;
    let path = format!(
        "/calls/{}/recordings/{}",
        recorded.call_id, recorded.recording_id
    );
    let (status, body) = video.call(&host, "DELETE", &path, None).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "storage_unavailable");
    assert_eq!(deleted_at(&video, &recorded.recording_id).await?, None);
    assert!(
        video
            .events_of::<VideoRecordingDeleted>(DELETED)
            .await?
            .is_empty()
    );
    assert_eq!(audit_rows(&video, &recorded.recording_id).await?, vec![]);
    assert_eq!(bucket.status_of(&recorded.key).await?, 200);
    let (_, call) = video
        .get_json(&host, &format!("/calls/{}", recorded.call_id))
        .await?;
    assert_eq!(call["recordings"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn the_retention_pass_deletes_only_recordings_older_than_the_setting() -> Result {
    let moto = Moto::start().await?;
    let week = 7 * 24 * 3600;
    let (video, bucket) = spawn(&moto, Some(Duration::from_secs(week))).await?;
    let host = User::new(Uuid::now_v7(), Role::Closer);
    let old = recorded_call(&video, &bucket, &host, (week + 3 * 24 * 3600) as i64).await?;
    let recent = recorded_call(&video, &bucket, &host, 3600).await?;

    let state = video.state().await?;
    assert_eq!(sb_video::delete_expired_recordings(&state).await?, 1);
    assert_eq!(bucket.status_of(&old.key).await?, 404);
    assert_eq!(bucket.status_of(&recent.key).await?, 200);
    assert!(deleted_at(&video, &old.recording_id).await?.is_some());
    assert_eq!(deleted_at(&video, &recent.recording_id).await?, None);
    let events = video.events_of::<VideoRecordingDeleted>(DELETED).await?;
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.recording_id.clone(),
                e.reason.clone(),
                e.deleted_by_user_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(
            old.recording_id.clone(),
            "retention".to_owned(),
            String::new()
        )]
    );
    assert_eq!(
        audit_rows(&video, &old.recording_id).await?,
        vec![("delete".to_owned(), None, None)]
    );

    // Safe to run again: nothing left to do; the reconciliation job runs it too.
    let report = sb_video::reconcile_once(&state).await?;
    assert_eq!(report.recordings_deleted, 0, "{report:?}");
    assert_eq!(
        video
            .events_of::<VideoRecordingDeleted>(DELETED)
            .await?
            .len(),
        1
    );
    Ok(())
}
