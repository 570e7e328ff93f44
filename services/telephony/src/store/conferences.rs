//! The conference that bridges each call, its participants (rep, customer, supervisors) and the
//! supervision sessions applied to them. Statuses only move forward: `ended`, `left`, `failed`
//! and `stopped` absorb, so Twilio's repeated or late callbacks and JetStream's redeliveries
//! change nothing twice.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::schema::telephony_conference_participants as p;
use sb_db::schema::telephony_conferences as c;
use sb_db::schema::telephony_supervisions as s;
use uuid::Uuid;

/// Conference statuses (a new one is `pending` by the table's default).
pub const LIVE: &str = "live";
pub const ENDED: &str = "ended";

/// Participant roles and statuses.
pub const REP: &str = "rep";
pub const CUSTOMER: &str = "customer";
pub const SUPERVISOR: &str = "supervisor";
pub const RINGING: &str = "ringing";
pub const JOINED: &str = "joined";
pub const LEFT: &str = "left";
pub const FAILED: &str = "failed";

/// Supervision statuses.
pub const ACTIVE: &str = "active";
pub const STOPPED: &str = "stopped";
pub const REFUSED: &str = "refused";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = c, check_for_backend(diesel::pg::Pg))]
pub struct Conference {
    pub conference_sid: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = p, check_for_backend(diesel::pg::Pg))]
pub struct Participant {
    pub call_sid: String,
    pub call_id: Uuid,
    pub role: String,
    pub session_id: Option<Uuid>,
    pub status: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = s, check_for_backend(diesel::pg::Pg))]
pub struct Supervision {
    pub call_id: Option<Uuid>,
    pub mode: String,
    pub status: String,
    pub participant_call_sid: Option<String>,
    pub mode_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = s)]
pub struct NewSupervision<'a> {
    pub session_id: Uuid,
    pub org_id: Uuid,
    pub call_id: Option<Uuid>,
    pub supervisor_user_id: Option<Uuid>,
    pub mode: &'a str,
    pub status: &'a str,
    pub participant_call_sid: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub mode_at: DateTime<Utc>,
}

/// The name Twilio knows the call's conference by: no personal data, only our id.
pub fn name(call_id: Uuid) -> String {
    format!("call_{}", call_id.simple())
}

/// The call a conference name stands for.
pub fn call_of_name(name: &str) -> Option<Uuid> {
    name.strip_prefix("call_")
        .and_then(|id| Uuid::try_parse(id).ok())
}

/// Notes that the call is bridged through its conference (idempotent).
pub async fn ensure(conn: &mut AsyncPgConnection, call_id: Uuid, org_id: Uuid) -> QueryResult<()> {
    diesel::insert_into(c::table)
        .values((c::call_id.eq(call_id), c::org_id.eq(org_id)))
        .on_conflict(c::call_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find(conn: &mut AsyncPgConnection, call_id: Uuid) -> QueryResult<Option<Conference>> {
    c::table
        .find(call_id)
        .select(Conference::as_select())
        .first(conn)
        .await
        .optional()
}

/// Applies a conference status callback: the SID once known, `live` after `start`, `ended`
/// after `end` (never back).
pub async fn record_conference(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    org_id: Uuid,
    conference_sid: &str,
    status: &str,
) -> QueryResult<()> {
    ensure(conn, call_id, org_id).await?;
    let target = match status {
        ENDED => ENDED,
        _ => LIVE,
    };
    diesel::update(c::table.find(call_id))
        .filter(c::status.ne(ENDED))
        .set((
            c::conference_sid.eq(conference_sid),
            c::status.eq(target),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

fn rank(status: &str) -> u8 {
    match status {
        RINGING => 0,
        JOINED => 1,
        _ => 2,
    }
}

/// Records a participant, or moves it forward (`left` and `failed` absorb). Returns the row.
pub async fn upsert_participant(
    conn: &mut AsyncPgConnection,
    call_sid: &str,
    call_id: Uuid,
    org_id: Uuid,
    role: &str,
    session_id: Option<Uuid>,
    status: &str,
) -> QueryResult<Participant> {
    let known: Option<Participant> = p::table
        .find(call_sid)
        .select(Participant::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match known {
        None => {
            diesel::insert_into(p::table)
                .values((
                    p::call_sid.eq(call_sid),
                    p::call_id.eq(call_id),
                    p::org_id.eq(org_id),
                    p::role.eq(role),
                    p::session_id.eq(session_id),
                    p::status.eq(status),
                ))
                .on_conflict(p::call_sid)
                .do_nothing()
                .execute(conn)
                .await?;
            p::table
                .find(call_sid)
                .select(Participant::as_select())
                .first(conn)
                .await
        }
        Some(known) if rank(status) > rank(&known.status) => {
            diesel::update(p::table.find(call_sid))
                .set((p::status.eq(status), p::updated_at.eq(diesel::dsl::now)))
                .returning(Participant::as_returning())
                .get_result(conn)
                .await
        }
        Some(known) => Ok(known),
    }
}

pub async fn participants(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
) -> QueryResult<Vec<Participant>> {
    p::table
        .filter(p::call_id.eq(call_id))
        .select(Participant::as_select())
        .order(p::created_at.asc())
        .load(conn)
        .await
}

pub async fn participant(
    conn: &mut AsyncPgConnection,
    call_sid: &str,
) -> QueryResult<Option<Participant>> {
    p::table
        .find(call_sid)
        .select(Participant::as_select())
        .first(conn)
        .await
        .optional()
}

/// The session's row, locked: events of one session are applied one at a time.
pub async fn lock_supervision(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
) -> QueryResult<Option<Supervision>> {
    s::table
        .find(session_id)
        .select(Supervision::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn insert_supervision(
    conn: &mut AsyncPgConnection,
    row: &NewSupervision<'_>,
) -> QueryResult<()> {
    diesel::insert_into(s::table)
        .values(row)
        .on_conflict(s::session_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_supervision(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    mode: &str,
    status: &str,
    reason: Option<&str>,
    mode_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(s::table.find(session_id))
        .set((
            s::mode.eq(mode),
            s::status.eq(status),
            s::reason.eq(reason),
            s::mode_at.eq(mode_at),
            s::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
