//! LiveKit egress of calls.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::video_recordings;
use uuid::Uuid;

use crate::domain::call::EgressState;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = video_recordings, check_for_backend(diesel::pg::Pg))]
pub struct Recording {
    pub id: Uuid,
    pub call_id: Uuid,
    pub org_id: Uuid,
    pub egress_id: String,
    pub status: EgressState,
    pub filepath: String,
    pub location: Option<String>,
    pub duration_seconds: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Set once deleted (file gone from the bucket); the row stays as a tombstone.
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_recordings)]
pub struct NewRecording<'a> {
    pub id: Uuid,
    pub call_id: Uuid,
    pub org_id: Uuid,
    pub egress_id: &'a str,
    pub status: EgressState,
    pub filepath: &'a str,
}

/// The recording of `egress_id`, created if a webhook about it arrived first.
pub async fn ensure(
    conn: &mut AsyncPgConnection,
    recording: &NewRecording<'_>,
) -> QueryResult<Recording> {
    diesel::insert_into(video_recordings::table)
        .values(recording)
        .on_conflict(video_recordings::egress_id)
        .do_update()
        // A no-op update so RETURNING gives the existing row.
        .set(video_recordings::egress_id.eq(video_recordings::egress_id))
        .returning(Recording::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn lock_by_egress(
    conn: &mut AsyncPgConnection,
    egress_id: &str,
) -> QueryResult<Option<Recording>> {
    video_recordings::table
        .filter(video_recordings::egress_id.eq(egress_id))
        .select(Recording::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The outcome LiveKit reported (only called when the state moves forward).
#[derive(Debug, Clone)]
pub struct RecordingUpdate {
    pub status: EgressState,
    pub location: Option<String>,
    pub duration_seconds: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    change: &RecordingUpdate,
) -> QueryResult<usize> {
    diesel::update(video_recordings::table.find(id))
        .set((
            video_recordings::status.eq(&change.status),
            video_recordings::location.eq(&change.location),
            video_recordings::duration_seconds.eq(change.duration_seconds),
            video_recordings::size_bytes.eq(change.size_bytes),
            video_recordings::error.eq(&change.error),
            video_recordings::ended_at.eq(change.ended_at),
            video_recordings::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// The call's recordings that are not deleted, oldest first.
pub async fn of_call(conn: &mut AsyncPgConnection, call_id: Uuid) -> QueryResult<Vec<Recording>> {
    video_recordings::table
        .filter(video_recordings::call_id.eq(call_id))
        .filter(video_recordings::deleted_at.is_null())
        .order(video_recordings::started_at.asc())
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// Recordings not finished yet, oldest first.
pub async fn unfinished(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Recording>> {
    video_recordings::table
        .filter(video_recordings::status.eq_any([
            EgressState::Starting,
            EgressState::Active,
            EgressState::Ending,
        ]))
        .order(video_recordings::started_at.asc())
        .limit(limit)
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// Recording `id` of call `call_id`, deleted or not.
pub async fn find_of_call(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Recording>> {
    video_recordings::table
        .filter(video_recordings::id.eq(id))
        .filter(video_recordings::call_id.eq(call_id))
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Recording> {
    video_recordings::table
        .find(id)
        .select(Recording::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Marks the recording deleted (once: a deleted one keeps its first time); how many rows moved.
pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        video_recordings::table
            .find(id)
            .filter(video_recordings::deleted_at.is_null()),
    )
    .set((
        video_recordings::deleted_at.eq(at),
        video_recordings::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// Finished recordings, not deleted, that ended before `cutoff`: oldest first.
pub async fn expired(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Recording>> {
    video_recordings::table
        .filter(video_recordings::deleted_at.is_null())
        .filter(video_recordings::status.eq_any([EgressState::Complete, EgressState::Failed]))
        .filter(video_recordings::ended_at.lt(cutoff))
        .order(video_recordings::ended_at.asc())
        .limit(limit)
        .select(Recording::as_select())
        .load(conn)
        .await
}
