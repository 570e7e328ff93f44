//! Call recordings and voicemails people can play, keep and delete: streamed from Twilio with the
//! account's credentials (never handed out), deleted there and here, expired by the retention
//! pass, and Twilio's transcription of a voicemail.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::Principal;
use sb_db::recording_access::{
    RecordingAccess, RecordingAction, RecordingService, record_recording_access,
};
use sb_events::proto::{PhoneRecordingDeleted, VoicemailTranscribed};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_twilio::{Media, Params, twiml};
use uuid::Uuid;

use crate::actions::access;
use crate::actions::voice::{Answer, valid_recording_sid};
use crate::domain::status::RecordingStatus;
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls;
use crate::store::recordings::{self, Recording};

/// Longest transcription kept (the column's limit).
const MAX_TRANSCRIPTION_CHARS: usize = 20_000;

/// How many recordings one retention pass deletes.
const RETENTION_BATCH: i64 = 100;

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// The recording `recording_id` of a call `principal` may see, unless deleted.
async fn visible(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    call_id: Uuid,
    recording_id: Uuid,
) -> Result<Recording, TelephonyError> {
    let call = access::call(conn, principal, call_id).await?;
    recordings::find_of_call(conn, call.id, recording_id)
        .await?
        .filter(|recording| recording.deleted_at.is_none())
        .ok_or(TelephonyError::not_found("recording"))
}

/// `GET /api/calls/{id}/recordings/{recordingId}/media`: Twilio's MP3, `range` passed on, with
/// one audit row per access.
pub async fn play(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    recording_id: Uuid,
    range: Option<&str>,
) -> Result<Media, TelephonyError> {
    let mut conn = state.conn().await?;
    let recording = visible(&mut conn, principal, call_id, recording_id).await?;
    if recording.status != RecordingStatus::Completed {
        return Err(TelephonyError::conflict(
            Code::RecordingNotReady,
            format!("the recording is {}", recording.status.as_str()),
        ));
    }
    let media = state
        .twilio_call("recording_media", Resend::AfterTransient, || {
            state
                .twilio
                .recording_media(&recording.recording_sid, range)
        })
        .await?
        .ok_or(TelephonyError::not_found("recording"))?;
    record_recording_access(
        &mut conn,
        &RecordingAccess {
            org_id: recording.org_id,
            service: RecordingService::Telephony,
            recording_id: recording.id,
            call_id: recording.call_id,
            user_id: Some(principal.user_id.as_uuid()),
            action: RecordingAction::Play,
            byte_range: range,
        },
    )
    .await?;
    Ok(media)
}

/// `DELETE /api/calls/{id}/recordings/{recordingId}`: deleted at Twilio, then here (tombstone,
/// audit row and event in one transaction). Deleting again changes nothing.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    recording_id: Uuid,
) -> Result<(), TelephonyError> {
    let mut conn = state.conn().await?;
    let call = access::call(&mut conn, principal, call_id).await?;
    let recording = recordings::find_of_call(&mut conn, call.id, recording_id)
        .await?
        .ok_or(TelephonyError::not_found("recording"))?;
    if recording.deleted_at.is_some() {
        return Ok(());
    }
    remove(
        state,
        &mut conn,
        &recording,
        Some(principal.user_id.as_uuid()),
    )
    .await?;
    Ok(())
}

/// Deletes `recording` at Twilio (one already gone there counts), then marks it deleted with
/// its audit row and event. Twilio first: should the transaction fail, the next attempt finds
/// nothing at Twilio and completes it here. `by` is `None` for the retention pass.
async fn remove(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    recording: &Recording,
    by: Option<Uuid>,
) -> Result<bool, TelephonyError> {
    state
        .twilio_call("delete_recording", Resend::AfterTransient, || {
            state.twilio.delete_recording(&recording.recording_sid)
        })
        .await?;
    let outbox = &state.outbox;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let now = Utc::now();
            if !recordings::mark_deleted(conn, recording.id, now).await? {
                return Ok(false);
            }
            record_recording_access(
                conn,
                &RecordingAccess {
                    org_id: recording.org_id,
                    service: RecordingService::Telephony,
                    recording_id: recording.id,
                    call_id: recording.call_id,
                    user_id: by,
                    action: RecordingAction::Delete,
                    byte_range: None,
                },
            )
            .await?;
            outbox
                .enqueue(
                    conn,
                    &PhoneRecordingDeleted {
                        recording_id: recording.id.to_string(),
                        call_id: recording.call_id.to_string(),
                        org_id: recording.org_id.to_string(),
                        recording_sid: recording.recording_sid.clone(),
                        kind: recording.kind.as_str().to_owned(),
                        deleted_by_user_id: opt_id(by),
                        reason: if by.is_some() { "user" } else { "retention" }.to_owned(),
                        deleted_at_unix_ms: now.timestamp_millis(),
                    },
                )
                .await?;
            Ok(true)
        }))
        .await
}

/// The `retention` pass: recordings older than `TELEPHONY_RECORDING_RETENTION` are deleted like
/// a user's deletion (reason `retention`). Returns how many.
pub async fn expire(state: &AppState) -> Result<u64, TelephonyError> {
    let Some(retention) = state.config.recording_retention else {
        return Ok(0);
    };
    let before =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut conn = state.conn().await?;
    let mut deleted = 0;
    for recording in recordings::expired(&mut conn, before, RETENTION_BATCH).await? {
        if remove(state, &mut conn, &recording, None).await? {
            deleted += 1;
        }
    }
    state.metrics.followup("recording_expired", deleted);
    Ok(deleted)
}

/// `POST /webhook/voice/transcription`: Twilio's transcription of a voicemail, kept with it and
/// announced once (`sb.telephony.voicemail.transcribed`); a repeated callback changes nothing.
pub async fn transcribed(state: &AppState, params: &Params) -> Result<Answer, TelephonyError> {
    let recording_sid = params
        .get("RecordingSid")
        .filter(|s| valid_recording_sid(s))
        .ok_or_else(|| {
            TelephonyError::invalid("RecordingSid", "missing or not a Twilio RecordingSid")
        })?
        .to_owned();
    let status = match params.get("TranscriptionStatus") {
        Some("completed") => "completed",
        Some("failed") => "failed",
        _ => {
            return Err(TelephonyError::invalid(
                "TranscriptionStatus",
                "expected completed or failed",
            ));
        }
    };
    let text: String = params
        .get("TranscriptionText")
        .unwrap_or_default()
        .chars()
        .take(MAX_TRANSCRIPTION_CHARS)
        .collect();
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let outcome = state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let Some(recording) =
                recordings::set_transcription(conn, &recording_sid, &text, status).await?
            else {
                return Ok("duplicate");
            };
            let call = calls::lock(conn, recording.call_id).await?;
            outbox
                .enqueue(
                    conn,
                    &VoicemailTranscribed {
                        voicemail_id: recording.id.to_string(),
                        call_id: call.id.to_string(),
                        org_id: call.org_id.to_string(),
                        user_id: opt_id(call.user_id),
                        recording_sid: recording.recording_sid.clone(),
                        transcription: text.clone(),
                        status: status.to_owned(),
                        transcribed_at_unix_ms: Utc::now().timestamp_millis(),
                    },
                )
                .await?;
            Ok("applied")
        }))
        .await?;
    Ok(Answer {
        twiml: twiml::empty(),
        outcome,
    })
}
