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
