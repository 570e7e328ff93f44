//! Supervisors' monitoring sessions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::monitoring_sessions;
use uuid::Uuid;

use crate::domain::{Mode, SessionStatus, TargetKind};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = monitoring_sessions, check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub id: Uuid,
    pub org_id: Uuid,
    pub rep_id: Uuid,
    pub supervisor_id: Uuid,
    pub supervisor_role: String,
    /// The LiveKit room the supervisor joins; none for a phone call's conference.
    pub room_name: Option<String>,
    pub identity: String,
    pub status: SessionStatus,
    pub mode: Mode,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<String>,
    pub token_expires_at: DateTime<Utc>,
    pub target: TargetKind,
    pub call_id: Option<Uuid>,
    pub supervisor_address: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = monitoring_sessions)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub rep_id: Uuid,
    pub supervisor_id: Uuid,
    pub supervisor_role: &'a str,
    pub room_name: Option<&'a str>,
    pub identity: &'a str,
    pub token_expires_at: DateTime<Utc>,
    pub target: TargetKind,
    pub call_id: Option<Uuid>,
    pub supervisor_address: Option<&'a str>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    session: &NewSession<'_>,
) -> QueryResult<Session> {
    diesel::insert_into(monitoring_sessions::table)
        .values(session)
        .returning(Session::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Session>> {
    monitoring_sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Session> {
    monitoring_sessions::table
        .find(id)
        .select(Session::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Sessions of `rep_id` not stopped yet.
pub async fn open_of_rep(conn: &mut AsyncPgConnection, rep_id: Uuid) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::rep_id.eq(rep_id))
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .order(monitoring_sessions::started_at.asc())
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Sessions of `org_id` not stopped yet in which `user_id` is the supervisor or the rep.
pub async fn open_involving(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    user_id: Uuid,
) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::org_id.eq(org_id))
        .filter(
            monitoring_sessions::supervisor_id
                .eq(user_id)
                .or(monitoring_sessions::rep_id.eq(user_id)),
        )
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .order(monitoring_sessions::started_at.asc())
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Open sessions inside the call `call_id` of `rep_id` (stopped when the rep's call ends).
pub async fn open_in_call(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
    call_id: Uuid,
) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::rep_id.eq(rep_id))
        .filter(monitoring_sessions::call_id.eq(call_id))
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Open sessions inside the video call whose LiveKit room is `room`.
pub async fn open_in_room(conn: &mut AsyncPgConnection, room: &str) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::target.eq(TargetKind::VideoCall))
        .filter(monitoring_sessions::room_name.eq(room))
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .select(Session::as_select())
        .load(conn)
        .await
}

/// Active sessions coaching or barging inside video calls (their audio routing is re-applied).
pub async fn speaking_in_calls(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::target.eq(TargetKind::VideoCall))
        .filter(monitoring_sessions::status.eq(SessionStatus::Active))
        .filter(monitoring_sessions::mode.ne(Mode::Listen))
        .order(monitoring_sessions::started_at.asc())
        .limit(limit)
        .select(Session::as_select())
        .load(conn)
        .await
}

pub async fn open_of(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
    supervisor_id: Uuid,
) -> QueryResult<Option<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::rep_id.eq(rep_id))
        .filter(monitoring_sessions::supervisor_id.eq(supervisor_id))
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

/// Open sessions whose supervisor token has expired.
pub async fn expired(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Session>> {
    monitoring_sessions::table
        .filter(monitoring_sessions::status.ne(SessionStatus::Stopped))
        .filter(monitoring_sessions::token_expires_at.lt(now))
        .select(Session::as_select())
        .load(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: SessionStatus,
) -> QueryResult<usize> {
    diesel::update(monitoring_sessions::table.find(id))
        .set((
            monitoring_sessions::status.eq(status),
            monitoring_sessions::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn set_mode(conn: &mut AsyncPgConnection, id: Uuid, mode: Mode) -> QueryResult<usize> {
    diesel::update(monitoring_sessions::table.find(id))
        .set((
            monitoring_sessions::mode.eq(mode),
            monitoring_sessions::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn set_token_expiry(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(monitoring_sessions::table.find(id))
        .set((
            monitoring_sessions::token_expires_at.eq(at),
            monitoring_sessions::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn stop(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        monitoring_sessions::table
            .find(id)
            .filter(monitoring_sessions::status.ne(SessionStatus::Stopped)),
    )
    .set((
        monitoring_sessions::status.eq(SessionStatus::Stopped),
        monitoring_sessions::stopped_at.eq(at),
        monitoring_sessions::stop_reason.eq(reason),
        monitoring_sessions::updated_at.eq(diesel::dsl::now),
    ))
    .cached()
    .execute(conn)
    .await
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub org: Uuid,
    pub status: Option<SessionStatus>,
    pub rep_id: Option<Uuid>,
    pub supervisor_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `None`: every session of the org (its leaders). `Some`: only this supervisor's own
    /// sessions and those on these reps (the ones the caller may monitor).
    pub visible_to: Option<(Uuid, Vec<Uuid>)>,
}

/// A page of the sessions of an org matching `filter`, newest first, and the total matching.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &SessionFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Session>, i64)> {
    let matching = || {
        let mut query = monitoring_sessions::table
            .filter(monitoring_sessions::org_id.eq(filter.org))
            .into_boxed();
        if let Some(status) = &filter.status {
            query = query.filter(monitoring_sessions::status.eq(*status));
        }
        if let Some(rep) = filter.rep_id {
            query = query.filter(monitoring_sessions::rep_id.eq(rep));
        }
        if let Some(supervisor) = filter.supervisor_id {
            query = query.filter(monitoring_sessions::supervisor_id.eq(supervisor));
        }
        if let Some(from) = filter.from {
            query = query.filter(monitoring_sessions::started_at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(monitoring_sessions::started_at.lt(to));
        }
        if let Some((supervisor, reps)) = &filter.visible_to {
            query = query.filter(
                monitoring_sessions::supervisor_id
                    .eq(*supervisor)
                    .or(monitoring_sessions::rep_id.eq_any(reps.clone())),
            );
        }
        query
    };
    let total = matching().count().get_result(conn).await?;
    let sessions = matching()
        .order((
            monitoring_sessions::started_at.desc(),
            monitoring_sessions::id.desc(),
        ))
        .limit(limit)
        .offset(offset)
        .select(Session::as_select())
        .load(conn)
        .await?;
    Ok((sessions, total))
}
