//! Recording calls with LiveKit egress (room composite to a file, uploaded to S3-compatible
//! storage when configured), and applying what LiveKit reports about each egress.

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_events::outbox::Outbox;
use sb_events::proto::VideoRecordingReady;
use sb_livekit::protocol::{self as lk, encoded_file_output};
use sb_platform::ApiErrorExt as _;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::config::RecordingConfig;
use crate::domain::call::{EgressState, RecordingStatus};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::calls::{self, Call};
use crate::store::recordings::{self, NewRecording, Recording, RecordingUpdate};

/// The file LiveKit egress writes for a recording of `call` started at `at`.
pub fn file_output(
    config: &RecordingConfig,
    call: &Call,
    at: DateTime<Utc>,
) -> lk::EncodedFileOutput {
    let filepath = format!(
        "{}/{}/{}/{}.mp4",
        config.prefix.trim_end_matches('/'),
        call.org_id,
        call.id,
        at.format("%Y%m%dT%H%M%SZ")
    );
    let output = config.s3.as_ref().map(|s3| {
        encoded_file_output::Output::S3(lk::S3Upload {
            access_key: s3.access_key.clone(),
            secret: s3.secret_key.expose_secret().to_owned(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            force_path_style: s3.force_path_style,
            ..Default::default()
        })
    });
    lk::EncodedFileOutput {
        file_type: lk::EncodedFileType::Mp4 as i32,
        filepath,
        output,
        ..Default::default()
    }
}

/// Starts recording `call_id` unless a recording is already starting or running. LiveKit
/// unreachable: 503 and nothing changes (the client retries). LiveKit refusing the egress: the
/// call shows `recordingStatus: FAILED` and the client gets 502, never silence.
pub async fn start(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
) -> Result<(), VideoError> {
    let call = calls::find(conn, call_id)
        .await?
        .ok_or(VideoError::not_found("call"))?;
    if call.recording_status.is_recording() {
        return Ok(());
    }
    let output = file_output(&state.config.recording, &call, Utc::now());
    let filepath = output.filepath.clone();
    let info = match state
        .livekit_call(
            "start_recording",
            state.livekit.start_recording(&call.room_name, output),
        )
        .await
    {
        Ok(info) => info,
        Err(error) => {
            if !error.is_unavailable() {
                let data = serde_json::json!({ "error": error.to_string() });
                calls::set_recording_result(conn, call.id, RecordingStatus::Failed, None, &data)
                    .await?;
            }
            return Err(error.into());
        }
    };
    let state_now = EgressState::from_livekit(info.status);
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let filepath = &filepath;
            let info = &info;
            let call = calls::lock(conn, call.id).await?;
            let recording = recordings::ensure(
                conn,
                &NewRecording {
                    id: Uuid::now_v7(),
                    call_id: call.id,
                    org_id: call.org_id,
                    egress_id: &info.egress_id,
                    status: state_now,
                    filepath,
                },
            )
            .await?;
            // A webhook may already have moved it further.
            let current = recording.status;
            calls::set_recording_status(conn, call.id, current.call_recording_status()).await?;
            Ok(())
        }))
        .await
}

/// Stops the call's running recordings once it completed. A failure is logged and left to the
/// reconciliation job, which retries and marks recordings that stay stuck as FAILED.
pub async fn stop_for_call(state: &AppState, conn: &mut AsyncPgConnection, call_id: Uuid) {
    let running = match recordings::of_call(conn, call_id).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(call.id = %call_id, error = %error, "cannot read recordings to stop");
            return;
        }
    };
    for recording in running.iter().filter(|r| r.status < EgressState::Ending) {
        if let Err(error) = stop_one(state, conn, recording).await {
            tracing::warn!(call.id = %call_id, egress.id = %recording.egress_id, error = %error, "recording not stopped; the reconciliation job retries");
        }
    }
}

async fn stop_one(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    recording: &Recording,
) -> Result<(), VideoError> {
    let info = match state
        .livekit_call(
            "stop_egress",
            state.livekit.stop_egress(&recording.egress_id),
        )
        .await
    {
        Ok(info) => info,
        // Already gone on LiveKit's side: its final state comes from the webhook or the job.
        Err(error) if error.is_not_found() => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    apply_egress(conn, &state.outbox, &info, None).await?;
    Ok(())
}

fn time_from_nanos(nanos: i64) -> Option<DateTime<Utc>> {
    (nanos > 0).then(|| Utc.timestamp_nanos(nanos))
}

/// What `apply_egress` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressApplied {
    Advanced,
    Stale,
    UnknownRoom,
}

/// Applies LiveKit's report about an egress (webhook, StopEgress answer or ListEgress), if it
/// moves the recording forward; a completed recording fills the call's `recordingUrl` and
/// `recordingData` and announces `sb.video.recording.ready`. `fallback_error` names why a
/// recording is failed when LiveKit gave no reason (the job's verdict).
pub async fn apply_egress(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    info: &lk::EgressInfo,
    fallback_error: Option<&str>,
) -> Result<EgressApplied, VideoError> {
    let Some(call) = calls::find_by_room(conn, &info.room_name).await? else {
        return Ok(EgressApplied::UnknownRoom);
    };
    let call = calls::lock(conn, call.id).await?;
    let next = EgressState::from_livekit(info.status);
    let recording = match recordings::lock_by_egress(conn, &info.egress_id).await? {
        Some(recording) => recording,
        None => {
            let filepath = info
                .file_results
                .first()
                .map(|f| f.filename.clone())
                .unwrap_or_default();
            recordings::ensure(
                conn,
                &NewRecording {
                    id: Uuid::now_v7(),
                    call_id: call.id,
                    org_id: call.org_id,
                    egress_id: &info.egress_id,
                    status: EgressState::Starting,
                    filepath: &filepath,
                },
            )
            .await?
        }
    };
    let current = recording.status;
    if !current.advances_to(next) {
        return Ok(EgressApplied::Stale);
    }
    let file = info.file_results.first();
    let error = (next == EgressState::Failed).then(|| {
        if info.error.is_empty() {
            fallback_error.unwrap_or("the recording failed").to_owned()
        } else {
            info.error.clone()
        }
    });
    let update = RecordingUpdate {
        status: next,
        location: file.map(|f| f.location.clone()).filter(|l| !l.is_empty()),
        duration_seconds: file.map(|f| f.duration / 1_000_000_000),
        size_bytes: file.map(|f| f.size),
        error: error.clone(),
        ended_at: if next.is_final() {
            time_from_nanos(info.ended_at).or_else(|| Some(Utc::now()))
        } else {
            None
        },
    };
    recordings::update(conn, recording.id, &update).await?;
    let status = next.call_recording_status();
    match next {
        EgressState::Complete => {
            let data = serde_json::json!({
                "egressId": info.egress_id,
                "filename": file.map(|f| f.filename.clone()),
                "location": update.location,
                "durationSeconds": update.duration_seconds,
                "sizeBytes": update.size_bytes,
                "startedAt": time_from_nanos(info.started_at),
                "endedAt": update.ended_at,
            });
            calls::set_recording_result(conn, call.id, status, update.location.as_deref(), &data)
                .await?;
            outbox
                .enqueue(
                    conn,
                    &VideoRecordingReady {
                        recording_id: recording.id.to_string(),
                        call_id: call.id.to_string(),
                        org_id: call.org_id.to_string(),
                        appointment_id: call.appointment_id.to_string(),
                        egress_id: info.egress_id.clone(),
                        location: update.location.clone().unwrap_or_default(),
                        duration_seconds: update.duration_seconds.unwrap_or(0),
                        size_bytes: update.size_bytes.unwrap_or(0),
                    },
                )
                .await?;
        }
        EgressState::Failed => {
            let data = serde_json::json!({ "egressId": info.egress_id, "error": error });
            calls::set_recording_result(conn, call.id, status, None, &data).await?;
        }
        _ => {
            calls::set_recording_status(conn, call.id, status).await?;
        }
    }
    Ok(EgressApplied::Advanced)
}
