//! Calls: their monotonic status, times, dial outcome and price.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::telephony_calls as c;
use uuid::Uuid;

use sb_events::outbox::StagedEvents;

use crate::domain::followup::FollowupKind;
use crate::domain::status::{CallStatus, Direction};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = c, check_for_backend(diesel::pg::Pg))]
pub struct Call {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub phone_number_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    pub direction: Direction,
    pub call_sid: Option<String>,
    pub from_number: String,
    pub to_number: String,
    pub status: CallStatus,
    pub status_sequence: Option<i32>,
    pub initiated_at: Option<DateTime<Utc>>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub dial_status: Option<String>,
    pub talk_seconds: Option<i32>,
    pub voicemail: bool,
    pub record: bool,
    pub price: Option<String>,
    pub price_unit: Option<String>,
    pub quality_degraded_at: Option<DateTime<Utc>>,
    pub error_code: Option<i32>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = c)]
pub struct NewCall<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub phone_number_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    pub direction: Direction,
    pub call_sid: Option<&'a str>,
    pub from_number: &'a str,
    pub to_number: &'a str,
    pub status: CallStatus,
    pub initiated_at: Option<DateTime<Utc>>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub record: bool,
}

pub async fn insert(conn: &mut AsyncPgConnection, call: &NewCall<'_>) -> QueryResult<Call> {
    diesel::insert_into(c::table)
        .values(call)
        .returning(Call::as_returning())
        .cached()
        .get_result(conn)
        .await
}

/// Inserts a call Twilio told us about unless its CallSid is known; `None` when it was (a
/// retried webhook).
pub async fn insert_if_new_sid(
    conn: &mut AsyncPgConnection,
    call: &NewCall<'_>,
) -> QueryResult<Option<Call>> {
    diesel::insert_into(c::table)
        .values(call)
        .on_conflict(c::call_sid)
        .do_nothing()
        .returning(Call::as_returning())
        .cached()
        .get_result(conn)
        .await
        .optional()
}

/// The call `id` whatever its org: callers check access.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Call>> {
    c::table
        .find(id)
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_sid(conn: &mut AsyncPgConnection, sid: &str) -> QueryResult<Option<Call>> {
    c::table
        .filter(c::call_sid.eq(sid))
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the call until the transaction ends: every change of a call happens under this lock,
/// so concurrent callbacks apply one after the other.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Call> {
    c::table
        .find(id)
        .select(Call::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Locks the call `id` if it exists.
pub async fn try_lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Call>> {
    lock(conn, id).await.optional()
}

/// Locks the call with Twilio's CallSid `sid` if it exists.
pub async fn try_lock_by_sid(conn: &mut AsyncPgConnection, sid: &str) -> QueryResult<Option<Call>> {
    c::table
        .filter(c::call_sid.eq(sid))
        .select(Call::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Records Twilio's CallSid once known (the create answer or the first callback).
pub async fn set_sid(conn: &mut AsyncPgConnection, id: Uuid, sid: &str) -> QueryResult<usize> {
    diesel::update(c::table.find(id).filter(c::call_sid.is_null()))
        .set((c::call_sid.eq(sid), c::updated_at.eq(diesel::dsl::now)))
        .cached()
        .execute(conn)
        .await
}

/// What one status report writes: each status's time is the first reported (every report of one
/// status carries the same facts, so replays in any order agree); `status`, and with a terminal
/// status the end time and duration, only when the report advances the call.
#[derive(Debug, Clone)]
pub struct StatusWrite {
    pub status: Option<(CallStatus, Option<i32>)>,
    pub reported: CallStatus,
    pub at: DateTime<Utc>,
    pub duration_seconds: Option<i32>,
    /// Twilio's price and unit, written when the call has none yet (the first price stays).
    pub price: Option<(String, Option<String>)>,
}

impl StatusWrite {
    /// `call` as this write leaves it (`updated_at` aside).
    pub fn applied_to(&self, call: &Call) -> Call {
        let mut next = call.clone();
        let at = Some(self.at);
        // The terminal report that wins (see `status::advances`) brings the end time and
        // duration, whatever terminal report was applied before it.
        let terminal_wins = self.status.is_some() && self.reported.is_final();
        match self.reported {
            CallStatus::Queued => {}
            CallStatus::Initiated => next.initiated_at = next.initiated_at.or(at),
            CallStatus::Ringing => next.ringing_at = next.ringing_at.or(at),
            CallStatus::InProgress => next.answered_at = next.answered_at.or(at),
            _ if terminal_wins => {
                next.ended_at = at;
                next.duration_seconds = self.duration_seconds;
            }
            _ => {}
        }
        if let Some((status, sequence)) = self.status {
            next.status = status;
            next.status_sequence = sequence;
        }
        if let (None, Some((price, unit))) = (&call.price, &self.price) {
            next.price = Some(price.clone());
            next.price_unit = unit.clone();
        }
        next
    }
}

/// Whether `next` differs from `call` in a column a status write sets.
pub fn status_columns_differ(call: &Call, next: &Call) -> bool {
    (
        &call.price,
        &call.price_unit,
        call.status,
        call.status_sequence,
        call.initiated_at,
        call.ringing_at,
        call.answered_at,
        call.ended_at,
        call.duration_seconds,
    ) != (
        &next.price,
        &next.price_unit,
        next.status,
        next.status_sequence,
        next.initiated_at,
        next.ringing_at,
        next.answered_at,
        next.ended_at,
        next.duration_seconds,
    )
}

/// Writes the status columns of `next` (see [`StatusWrite::applied_to`]) over its call, which the
/// caller has locked in its transaction: what it read is what the row has.
pub async fn write_status_columns(conn: &mut AsyncPgConnection, next: &Call) -> QueryResult<Call> {
    diesel::update(c::table.find(next.id))
        .set((
            c::price.eq(&next.price),
            c::price_unit.eq(&next.price_unit),
            c::status.eq(next.status),
            c::status_sequence.eq(next.status_sequence),
            c::initiated_at.eq(next.initiated_at),
            c::ringing_at.eq(next.ringing_at),
            c::answered_at.eq(next.answered_at),
            c::ended_at.eq(next.ended_at),
            c::duration_seconds.eq(next.duration_seconds),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Call::as_returning())
        .cached()
        .get_result(conn)
        .await
}

/// The version of a call's row as read: Postgres's `xmin`, the id of the transaction that wrote
/// that row version. Every write of the row makes a new version with a new `xmin`; locking it
/// does not. Compared by [`write_status_unless_changed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowVersion(String);

/// The call `id`, or without one the call with Twilio's CallSid `sid`, and its row's version,
/// read without a lock.
pub async fn find_versioned(
    conn: &mut AsyncPgConnection,
    id: Option<Uuid>,
    sid: &str,
) -> QueryResult<Option<(Call, RowVersion)>> {
    let query = c::table
        .select((
            Call::as_select(),
            diesel::dsl::sql::<diesel::sql_types::Text>("telephony_calls.xmin::text"),
        ))
        .into_boxed();
    let query = match id {
        Some(id) => query.filter(c::id.eq(id)),
        None => query.filter(c::call_sid.eq(sid)),
    };
    query
        .limit(1)
        .cached()
        .get_result::<(Call, String)>(conn)
        .await
        .optional()
        .map(|found| found.map(|(call, xmin)| (call, RowVersion(xmin))))
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    written: i64,
}

/// Writes the status columns of `next` over its call if the row is still at `version`, with
/// `events` in the outbox and the `followups` scheduled at `followups_at`, as ONE statement:
/// atomic without a transaction, one round trip. `false` (nothing written) when the call changed
/// since it was read: the caller reads it again, or applies its report under the call's lock.
pub async fn write_status_unless_changed(
    conn: &mut AsyncPgConnection,
    version: &RowVersion,
    next: &Call,
    events: &StagedEvents,
    followups: &[FollowupKind],
    followups_at: DateTime<Utc>,
) -> QueryResult<bool> {
    use diesel::sql_types::{Array, Int4, Nullable, Text, Timestamptz, Uuid as U};
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH written AS ( \
               UPDATE telephony_calls SET price = $3, price_unit = $4, status = $5, \
                 status_sequence = $6, initiated_at = $7, ringing_at = $8, answered_at = $9, \
                 ended_at = $10, duration_seconds = $11, updated_at = now() \
               WHERE id = $1 AND xmin = $2::xid RETURNING id), \
             followups AS ( \
               INSERT INTO telephony_followups (call_id, kind, status, next_at) \
               SELECT written.id, k.kind, 'PENDING', $13 FROM written, \
                 unnest($12::text[]) AS k(kind) \
               ON CONFLICT DO NOTHING), \
             events AS ({}) \
             SELECT count(*) AS written FROM written",
            StagedEvents::insert_sql(14, "written")
        )
    });
    let followups: Vec<&str> = followups.iter().map(|kind| kind.as_str()).collect();
    let query = diesel::sql_query(SQL.as_str())
        .into_boxed()
        .bind::<U, _>(next.id)
        .bind::<Text, _>(&version.0)
        .bind::<Nullable<Text>, _>(&next.price)
        .bind::<Nullable<Text>, _>(&next.price_unit)
        .bind::<Text, _>(next.status)
        .bind::<Nullable<Int4>, _>(next.status_sequence)
        .bind::<Nullable<Timestamptz>, _>(next.initiated_at)
        .bind::<Nullable<Timestamptz>, _>(next.ringing_at)
        .bind::<Nullable<Timestamptz>, _>(next.answered_at)
        .bind::<Nullable<Timestamptz>, _>(next.ended_at)
        .bind::<Nullable<Int4>, _>(next.duration_seconds)
        .bind::<Array<Text>, _>(&followups)
        .bind::<Timestamptz, _>(followups_at);
    let written: Written = events.bind(query).cached().get_result(conn).await?;
    Ok(written.written == 1)
}

/// The `<Dial>` outcome (first report wins).
pub async fn set_dial_outcome(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    dial_status: &str,
    talk_seconds: Option<i32>,
) -> QueryResult<usize> {
    diesel::update(c::table.find(id).filter(c::dial_status.is_null()))
        .set((
            c::dial_status.eq(dial_status),
            c::talk_seconds.eq(talk_seconds),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn set_voicemail(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(c::table.find(id))
        .set((c::voicemail.eq(true), c::updated_at.eq(diesel::dsl::now)))
        .cached()
        .execute(conn)
        .await
}

pub async fn set_error(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    code: Option<i32>,
    message: &str,
) -> QueryResult<usize> {
    let message: String = message.chars().take(1000).collect();
    diesel::update(c::table.find(id))
        .set((
            c::error_code.eq(code),
            c::error_message.eq(message),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Stores the price (first known wins).
pub async fn set_price(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    price: &str,
    unit: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(c::table.find(id).filter(c::price.is_null()))
        .set((
            c::price.eq(price),
            c::price_unit.eq(unit),
            c::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Marks the call degraded; `false` when it already was (one event per call).
pub async fn mark_degraded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let changed = diesel::update(c::table.find(id).filter(c::quality_degraded_at.is_null()))
        .set(c::quality_degraded_at.eq(at))
        .cached()
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

pub async fn set_synced(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::update(c::table.find(id))
        .set(c::synced_at.eq(diesel::dsl::now))
        .cached()
        .execute(conn)
        .await
}

/// Serialises the rate-limit check and insert of one user's calls across replicas: a
/// transaction-scoped advisory lock on the user id.
pub async fn lock_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<()> {
    let [a, b] = [user.as_u64_pair().0, user.as_u64_pair().1];
    // The two halves folded into one key; collisions only make two users wait for each other.
    let key = i64::from_ne_bytes((a ^ b).to_ne_bytes());
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(key)
        .cached()
        .execute(conn)
        .await?;
    Ok(())
}

/// Outbound calls `user` started since `since`, and the oldest of them.
pub async fn outbound_since(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    since: DateTime<Utc>,
) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    let recent = c::table
        .filter(c::user_id.eq(user))
        .filter(c::direction.eq(Direction::Outbound))
        .filter(c::created_at.ge(since));
    let count = recent.count().get_result(conn).await?;
    let oldest = recent
        .select(diesel::dsl::min(c::created_at))
        .first(conn)
        .await?;
    Ok((count, oldest))
}

/// Who may see which calls.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The whole org (CEO, DIRECTOR, ADMIN).
    Org(Uuid),
    /// The org's calls of these teams, and the user's own (MANAGER).
    Teams {
        org: Uuid,
        user: Uuid,
        teams: Vec<Uuid>,
    },
    /// The user's own calls (reps and everyone else).
    Own { org: Uuid, user: Uuid },
}

impl Scope {
    pub fn org(&self) -> Uuid {
        match self {
            Scope::Org(org) | Scope::Teams { org, .. } | Scope::Own { org, .. } => *org,
        }
    }

    /// Whether a call of `org`, `user`, `team` is in the scope.
    pub fn contains(&self, call: &Call) -> bool {
        if call.org_id != self.org() {
            return false;
        }
        match self {
            Scope::Org(_) => true,
            Scope::Teams { user, teams, .. } => {
                call.user_id == Some(*user) || call.team_id.is_some_and(|t| teams.contains(&t))
            }
            Scope::Own { user, .. } => call.user_id == Some(*user),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Either party's number.
    pub number: Option<String>,
    pub user: Option<Uuid>,
}

fn scoped<'a>(scope: &Scope, filter: &CallFilter) -> c::BoxedQuery<'a, diesel::pg::Pg> {
    let mut query = c::table.filter(c::org_id.eq(scope.org())).into_boxed();
    match scope {
        Scope::Org(_) => {}
        Scope::Teams { user, teams, .. } => {
            query = query.filter(c::user_id.eq(*user).or(c::team_id.eq_any(teams.clone())));
        }
        Scope::Own { user, .. } => query = query.filter(c::user_id.eq(*user)),
    }
    if let Some(direction) = &filter.direction {
        query = query.filter(c::direction.eq(*direction));
    }
    if let Some(status) = &filter.status {
        query = query.filter(c::status.eq(*status));
    }
    if let Some(from) = filter.from {
        query = query.filter(c::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(c::created_at.lt(to));
    }
    if let Some(number) = &filter.number {
        query = query.filter(
            c::from_number
                .eq(number.clone())
                .or(c::to_number.eq(number.clone())),
        );
    }
    if let Some(user) = filter.user {
        query = query.filter(c::user_id.eq(user));
    }
    query
}

/// A page of the calls `scope` may see, newest first, and the total matching.
pub async fn list(
    conn: &mut AsyncPgConnection,
    scope: &Scope,
    filter: &CallFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Call>, i64)> {
    let total = scoped(scope, filter).count().get_result(conn).await?;
    let calls = scoped(scope, filter)
        .order((c::created_at.desc(), c::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Call::as_select())
        .load(conn)
        .await?;
    Ok((calls, total))
}

/// Unfinished calls with a CallSid and no news (nor sync) since `before`.
pub async fn stale(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Call>> {
    c::table
        .filter(c::status.eq_any([
            CallStatus::Queued,
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
        ]))
        .filter(c::call_sid.is_not_null())
        .filter(c::updated_at.lt(before))
        .filter(c::synced_at.is_null().or(c::synced_at.lt(before)))
        .order(c::updated_at.asc())
        .limit(limit)
        .select(Call::as_select())
        .load(conn)
        .await
}

/// Calls created before `before` that never got a CallSid (Twilio never confirmed them).
pub async fn orphans(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Call>> {
    c::table
        .filter(c::status.eq_any([CallStatus::Queued, CallStatus::Initiated]))
        .filter(c::call_sid.is_null())
        .filter(c::created_at.lt(before))
        .order(c::created_at.asc())
        .limit(limit)
        .select(Call::as_select())
        .load(conn)
        .await
}

/// Calls not yet in a final status, in every org (the `sb_telephony_active_calls` gauge).
pub async fn count_active(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    let open: Vec<CallStatus> = CallStatus::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .collect();
    c::table
        .filter(c::status.eq_any(open))
        .count()
        .get_result(conn)
        .await
}
