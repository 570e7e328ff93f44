//! Recordings people play and delete: a short-lived presigned URL of the file in the bucket
//! (one audit row per play), deletion there and here (tombstone, audit row, event), and the
//! retention pass that deletes old ones the same way.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::Principal;
use sb_db::recording_access::{
    RecordingAccess, RecordingAction, RecordingService, record_recording_access,
};
use sb_events::proto::VideoRecordingDeleted;
use sb_platform::ApiErrorExt as _;
use url::Url;
use uuid::Uuid;

use crate::actions::access;
use crate::domain::call::EgressState;
use crate::error::VideoError;
use crate::state::AppState;
use crate::storage::RecordingStorage;
use crate::store::calls;
use crate::store::recordings::{self, Recording};

/// How many recordings one retention pass deletes.
const RETENTION_BATCH: i64 = 100;

/// Why a recording was deleted (the event's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    User,
    Retention,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::User => "user",
            Reason::Retention => "retention",
        }
    }
}

/// The recordings bucket. Without one (no `RECORDING_S3_BUCKET`) egress kept the files where
/// this service can neither read nor delete them: 404, as for a file that is not there.
fn reachable_storage(state: &AppState) -> Result<&RecordingStorage, VideoError> {
    state
        .storage
        .as_ref()
        .ok_or(VideoError::not_found("recording file"))
}

/// `GET /calls/{id}/recordings/{recordingId}/media`: where to fetch the file (a presigned URL
/// valid for [`crate::storage::PLAY_URL_TTL`]), with one audit row per access. Read access is the
/// call's; a deleted recording is 404 like one that never existed.
pub async fn play(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    recording_id: Uuid,
    range: Option<&str>,
) -> Result<Url, VideoError> {
    let mut conn = state.conn().await?;
    let (call, _) = access::call(&mut conn, principal, call_id).await?;
    let recording = recordings::find_of_call(&mut conn, call.id, recording_id)
        .await?
        .filter(|r| r.deleted_at.is_none())
        .ok_or(VideoError::not_found("recording"))?;
    if recording.status != EgressState::Complete || recording.filepath.is_empty() {
        return Err(VideoError::RecordingNotReady(format!(
            "the recording is {}: there is no file to play",
            recording.status.as_str()
        )));
    }
    let url = reachable_storage(state)?.play_url(&recording.filepath);
    record_recording_access(
        &mut conn,
        &RecordingAccess {
            org_id: recording.org_id,
            service: RecordingService::Video,
            recording_id: recording.id,
            call_id: recording.call_id,
            user_id: Some(principal.user_id.as_uuid()),
            action: RecordingAction::Play,
            byte_range: range,
        },
    )
    .await?;
    Ok(url)
}

/// `DELETE /calls/{id}/recordings/{recordingId}`: the host or an org leader deletes the file
/// and the recording. Deleting again changes nothing and answers the same.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    recording_id: Uuid,
) -> Result<(), VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    let recording = recordings::find_of_call(&mut conn, call.id, recording_id)
        .await?
        .ok_or(VideoError::not_found("recording"))?;
    if recording.deleted_at.is_some() {
        return Ok(());
    }
    if !recording.status.is_final() {
        return Err(VideoError::RecordingNotReady(format!(
            "the recording is {}: stop it before deleting it",
            recording.status.as_str()
        )));
    }
    let storage = reachable_storage(state)?;
    remove(
        state,
        storage,
        &mut conn,
        &recording,
        Some(principal.user_id.as_uuid()),
        Reason::User,
    )
    .await?;
    Ok(())
}

/// Deletes the file from the bucket (a file already gone counts), then marks the recording
/// deleted with its audit row and event in one transaction. The bucket first: should the
/// transaction fail, the next attempt finds no file and completes it here; should the bucket
/// fail, nothing changed here. `by` is `None` for the retention pass. Whether it was deleted
/// now (false: someone else did meanwhile).
async fn remove(
    state: &AppState,
    storage: &RecordingStorage,
    conn: &mut AsyncPgConnection,
    recording: &Recording,
    by: Option<Uuid>,
    reason: Reason,
) -> Result<bool, VideoError> {
    // A failed egress may have written nothing, under no name.
    if !recording.filepath.is_empty() {
        storage.delete(&recording.filepath).await?;
    }
    let id = recording.id;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let recording = recordings::lock(conn, id).await?;
            if recording.deleted_at.is_some() {
                return Ok(false);
            }
            let at: DateTime<Utc> = Utc::now();
            recordings::mark_deleted(conn, recording.id, at).await?;
            calls::forget_recording(conn, recording.call_id, &recording.egress_id).await?;
            record_recording_access(
                conn,
                &RecordingAccess {
                    org_id: recording.org_id,
                    service: RecordingService::Video,
                    recording_id: recording.id,
                    call_id: recording.call_id,
                    user_id: by,
                    action: RecordingAction::Delete,
                    byte_range: None,
                },
            )
            .await?;
            state
                .outbox
                .enqueue(
                    conn,
                    &VideoRecordingDeleted {
                        recording_id: recording.id.to_string(),
                        call_id: recording.call_id.to_string(),
                        org_id: recording.org_id.to_string(),
                        deleted_by_user_id: by.map(|u| u.to_string()).unwrap_or_default(),
                        reason: reason.as_str().to_owned(),
                        deleted_at_unix_ms: at.timestamp_millis(),
                    },
                )
                .await?;
            Ok(true)
        }))
        .await
}

/// The retention pass: finished recordings that ended longer ago than
/// `VIDEO_RECORDING_RETENTION` are deleted like a user would (reason "retention", no user).
/// The bucket unreachable ends the pass with the error; the next run retries. How many it
/// deleted.
pub async fn delete_expired(state: &AppState) -> Result<u64, VideoError> {
    let (Some(storage), Some(retention)) = (
        state.storage.as_ref(),
        state
            .config
            .recording
            .s3
            .as_ref()
            .and_then(|s3| s3.retention),
    ) else {
        return Ok(0);
    };
    // A retention too long to subtract from now keeps everything.
    let Some(cutoff) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|retention| Utc::now().checked_sub_signed(retention))
    else {
        return Ok(0);
    };
    let mut conn = state.conn().await?;
    let mut deleted = 0;
    for recording in recordings::expired(&mut conn, cutoff, RETENTION_BATCH).await? {
        if remove(
            state,
            storage,
            &mut conn,
            &recording,
            None,
            Reason::Retention,
        )
        .await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}
