//! What the follow-up job still has to learn about ended calls (price, Voice Insights summary),
//! with each one's backoff.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::{telephony_calls as c, telephony_followups as f};
use uuid::Uuid;

use crate::domain::followup::{FollowupKind, FollowupStatus};
use crate::store::calls::Call;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = f, check_for_backend(diesel::pg::Pg))]
pub struct Followup {
    pub kind: FollowupKind,
    pub status: FollowupStatus,
    pub attempts: i32,
}

/// Schedules the first attempt of `kinds` for `call` at `at`, in one insert (kept when already
/// scheduled).
pub async fn schedule_many(
    conn: &mut AsyncPgConnection,
    call: Uuid,
    kinds: &[FollowupKind],
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let rows: Vec<_> = kinds
        .iter()
        .map(|kind| {
            (
                f::call_id.eq(call),
                f::kind.eq(*kind),
                f::status.eq(FollowupStatus::Pending),
                f::next_at.eq(at),
            )
        })
        .collect();
    diesel::insert_into(f::table)
        .values(rows)
        .on_conflict_do_nothing()
        .cached()
        .execute(conn)
        .await
}

/// Records an attempt: `status` PENDING/PARTIAL with the next time, or DONE/GAVE_UP with none.
pub async fn record(
    conn: &mut AsyncPgConnection,
    call: Uuid,
    kind: FollowupKind,
    status: FollowupStatus,
    attempts: i32,
    next_at: Option<DateTime<Utc>>,
) -> QueryResult<usize> {
    diesel::update(f::table.find((call, kind)))
        .set((
            f::status.eq(status),
            f::attempts.eq(attempts),
            f::next_at.eq(next_at),
            f::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Follow-ups of `kind` due at `now`, oldest due first, with their calls.
pub async fn due(
    conn: &mut AsyncPgConnection,
    kind: FollowupKind,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<(Followup, Call)>> {
    f::table
        .inner_join(c::table)
        .filter(f::kind.eq(kind))
        .filter(f::status.eq_any([FollowupStatus::Pending, FollowupStatus::Partial]))
        .filter(f::next_at.le(now))
        .order(f::next_at.asc())
        .limit(limit)
        .select((Followup::as_select(), Call::as_select()))
        .load(conn)
        .await
}

/// The follow-ups of one call.
pub async fn of_call(conn: &mut AsyncPgConnection, call: Uuid) -> QueryResult<Vec<Followup>> {
    f::table
        .filter(f::call_id.eq(call))
        .order(f::kind.asc())
        .select(Followup::as_select())
        .load(conn)
        .await
}
