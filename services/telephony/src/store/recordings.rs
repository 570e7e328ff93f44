//! Voicemails and call recordings Twilio reported.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::telephony_recordings as r;
use uuid::Uuid;

use crate::domain::status::{RecordingKind, RecordingStatus};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = r, check_for_backend(diesel::pg::Pg))]
pub struct Recording {
    pub id: Uuid,
    pub recording_sid: String,
    pub kind: RecordingKind,
    pub status: RecordingStatus,
    pub url: Option<String>,
    pub duration_seconds: Option<i32>,
    pub channels: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub org_id: Uuid,
    pub call_id: Uuid,
    /// Set once deleted (here and at Twilio); the row stays as the history.
    pub deleted_at: Option<DateTime<Utc>>,
    pub transcription: Option<String>,
    pub transcription_status: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = r)]
pub struct NewRecording<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub call_id: Uuid,
    pub recording_sid: &'a str,
    pub kind: RecordingKind,
    pub status: RecordingStatus,
    pub url: Option<&'a str>,
    pub duration_seconds: Option<i32>,
    pub channels: Option<i32>,
}

/// Inserts the recording unless it is known; `None` when it was.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    recording: &NewRecording<'_>,
) -> QueryResult<Option<Recording>> {
    diesel::insert_into(r::table)
        .values(recording)
        .on_conflict(r::recording_sid)
        .do_nothing()
        .returning(Recording::as_returning())
        .cached()
        .get_result(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, sid: &str) -> QueryResult<Recording> {
    r::table
        .filter(r::recording_sid.eq(sid))
        .select(Recording::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Writes what a later report adds: a final status, and the URL, duration and channels it
/// carries where they were unknown.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: RecordingStatus,
    url: Option<&str>,
    duration_seconds: Option<i32>,
    channels: Option<i32>,
) -> QueryResult<Recording> {
    let current: Recording = r::table
        .find(id)
        .select(Recording::as_select())
        .first(conn)
        .await?;
    diesel::update(r::table.find(id))
        .set((
            r::status.eq(status),
            r::url.eq(current.url.as_deref().or(url)),
            r::duration_seconds.eq(current.duration_seconds.or(duration_seconds)),
            r::channels.eq(current.channels.or(channels)),
            r::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Recording::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn of_call(conn: &mut AsyncPgConnection, call: Uuid) -> QueryResult<Vec<Recording>> {
    r::table
        .filter(r::call_id.eq(call))
        .order((r::created_at.asc(), r::recording_sid.asc()))
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// Recording `id` of call `call`: a recording id from a path never reaches another call's.
pub async fn find_of_call(
    conn: &mut AsyncPgConnection,
    call: Uuid,
    id: Uuid,
) -> QueryResult<Option<Recording>> {
    r::table
        .find(id)
        .filter(r::call_id.eq(call))
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks the recording deleted at `at`; `false` when it already was.
pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let changed = diesel::update(r::table.find(id).filter(r::deleted_at.is_null()))
        .set((r::deleted_at.eq(at), r::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// Recordings created before `before` and not deleted yet, oldest first (the retention pass).
pub async fn expired(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Recording>> {
    r::table
        .filter(r::created_at.lt(before))
        .filter(r::deleted_at.is_null())
        .order(r::created_at.asc())
        .limit(limit)
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// Stores Twilio's transcription of recording `sid` unless one is stored already; `None` when
/// it was (a repeated callback) or the recording is unknown.
pub async fn set_transcription(
    conn: &mut AsyncPgConnection,
    sid: &str,
    text: &str,
    status: &str,
) -> QueryResult<Option<Recording>> {
    diesel::update(
        r::table
            .filter(r::recording_sid.eq(sid))
            .filter(r::transcription_status.is_null()),
    )
    .set((
        r::transcription.eq(text),
        r::transcription_status.eq(status),
        r::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Recording::as_returning())
    .get_result(conn)
    .await
    .optional()
}
