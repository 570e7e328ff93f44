//! `recording_access_audit`: one row per play or deletion of a recording, whichever service
//! holds it. The table refuses updates and deletes, so the rows are evidence.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::recording_access_audit as audit;

/// The service whose recording it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingService {
    Video,
    Telephony,
}

impl RecordingService {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingService::Video => "video",
            RecordingService::Telephony => "telephony",
        }
    }
}

/// What was done with the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingAction {
    Play,
    Delete,
}

impl RecordingAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingAction::Play => "play",
            RecordingAction::Delete => "delete",
        }
    }
}

/// Longest `Range` header kept (the column's limit).
const MAX_RANGE_LEN: usize = 200;

/// One access to a recording.
#[derive(Debug, Clone)]
pub struct RecordingAccess<'a> {
    pub org_id: Uuid,
    pub service: RecordingService,
    pub recording_id: Uuid,
    pub call_id: Uuid,
    /// `None` for the retention job.
    pub user_id: Option<Uuid>,
    pub action: RecordingAction,
    /// The `Range` header of a play, if the player sent one.
    pub byte_range: Option<&'a str>,
}

pub async fn record_recording_access(
    conn: &mut AsyncPgConnection,
    access: &RecordingAccess<'_>,
) -> QueryResult<()> {
    let byte_range = access
        .byte_range
        .map(|range| range.chars().take(MAX_RANGE_LEN).collect::<String>());
    diesel::insert_into(audit::table)
        .values((
            audit::id.eq(Uuid::now_v7()),
            audit::org_id.eq(access.org_id),
            audit::service.eq(access.service.as_str()),
            audit::recording_id.eq(access.recording_id),
            audit::call_id.eq(access.call_id),
            audit::user_id.eq(access.user_id),
            audit::action.eq(access.action.as_str()),
            audit::byte_range.eq(byte_range),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
