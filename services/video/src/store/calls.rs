//! Calls, their participants and the LiveKit sessions behind them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::models::Appointment;
use sb_db::schema::{
    appointments, video_call_participants, video_calls, video_participant_sessions,
};
use sb_events::outbox::StagedEvents;
use uuid::Uuid;

use crate::domain::call::{CallStatus, RecordingStatus};
use crate::domain::presence::{Attendance, Presence, Session};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = video_calls, check_for_backend(diesel::pg::Pg))]
pub struct Call {
    pub id: Uuid,
    pub org_id: Uuid,
    pub appointment_id: Uuid,
    pub room_name: String,
    pub status: CallStatus,
    pub room_created: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub end_reason: Option<String>,
    pub recording_status: RecordingStatus,
    pub recording_url: Option<String>,
    pub recording_data: Option<serde_json::Value>,
    pub room_finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the current segment began, once the call has resumed (`None`: its first segment,
    /// which began at `started_at`).
    pub segment_started_at: Option<DateTime<Utc>>,
    /// Seconds of the segments before the current one.
    pub earlier_segments_seconds: i32,
    pub resumed_count: i32,
}

impl Call {
    /// The row [`insert_first_join`] writes for `call`, first joined at `started_at`: ONGOING
    /// since then, created then, and the table's defaults for the rest.
    pub fn started(call: &NewCall<'_>, started_at: DateTime<Utc>) -> Self {
        Self {
            id: call.id,
            org_id: call.org_id,
            appointment_id: call.appointment_id,
            room_name: call.room_name.to_owned(),
            status: CallStatus::Ongoing,
            room_created: call.room_created,
            started_at: Some(started_at),
            ended_at: None,
            duration_seconds: None,
            end_reason: None,
            recording_status: RecordingStatus::None,
            recording_url: None,
            recording_data: None,
            room_finished_at: None,
            created_at: started_at,
            updated_at: started_at,
            segment_started_at: None,
            earlier_segments_seconds: 0,
            resumed_count: 0,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_calls)]
pub struct NewCall<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub appointment_id: Uuid,
    pub room_name: &'a str,
    pub room_created: bool,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = video_call_participants, check_for_backend(diesel::pg::Pg))]
pub struct Participant {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub identity: String,
    pub role: String,
    pub display_name: String,
    pub is_host: bool,
    pub is_guest: bool,
    pub active: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub total_seconds: i32,
}

impl Participant {
    pub fn attendance(&self) -> Attendance {
        Attendance {
            active: self.active,
            joined_at: self.joined_at,
            left_at: self.left_at,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_call_participants)]
pub struct NewParticipant<'a> {
    pub id: Uuid,
    pub call_id: Uuid,
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub identity: &'a str,
    pub role: &'a str,
    pub display_name: &'a str,
    pub is_host: bool,
    pub is_guest: bool,
}

/// The appointment `id` whatever its org (callers check access) and its call if it has one, in
/// one read.
pub async fn find_appointment_with_call(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<(Appointment, Option<Call>)>> {
    appointments::table
        .left_join(video_calls::table.on(video_calls::appointment_id.eq(appointments::id)))
        .filter(appointments::id.eq(id))
        .select((Appointment::as_select(), Option::<Call>::as_select()))
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_appointment(
    conn: &mut AsyncPgConnection,
    appointment_id: Uuid,
) -> QueryResult<Option<Call>> {
    video_calls::table
        .filter(video_calls::appointment_id.eq(appointment_id))
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()
}

/// The call `id` whatever its org: callers check access through its appointment.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Call>> {
    video_calls::table
        .find(id)
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_room(conn: &mut AsyncPgConnection, room: &str) -> QueryResult<Option<Call>> {
    video_calls::table
        .filter(video_calls::room_name.eq(room))
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the call row until the transaction ends: every change of a call's presence and status
/// happens under this lock, so concurrent joins, stops and webhooks apply one after the other.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Call> {
    video_calls::table
        .find(id)
        .select(Call::as_select())
        .for_update()
        .first(conn)
        .await
}

pub async fn set_room_created(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    created: bool,
) -> QueryResult<usize> {
    diesel::update(video_calls::table.find(id))
        .set(video_calls::room_created.eq(created))
        .cached()
        .execute(conn)
        .await
}

/// PENDING → ONGOING; returns whether this call made the change.
pub async fn mark_ongoing(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let changed = diesel::update(
        video_calls::table
            .find(id)
            .filter(video_calls::status.eq(CallStatus::Pending)),
    )
    .set((
        video_calls::status.eq(CallStatus::Ongoing),
        video_calls::started_at.eq(at),
        video_calls::updated_at.eq(diesel::dsl::now),
    ))
    .cached()
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Writes a call's times and, when `status` is given, its new status; returns the call as written.
pub async fn update_times(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: Option<CallStatus>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    duration_seconds: Option<i32>,
) -> QueryResult<Call> {
    diesel::update(video_calls::table.find(id))
        .set((
            video_calls::started_at.eq(started_at),
            video_calls::ended_at.eq(ended_at),
            video_calls::duration_seconds.eq(duration_seconds),
            video_calls::updated_at.eq(diesel::dsl::now),
            status.map(|status| video_calls::status.eq(status)),
        ))
        .returning(Call::as_returning())
        .cached()
        .get_result(conn)
        .await
}

/// COMPLETED → ONGOING at `at`: the finished segment's seconds are kept, the end, the end
/// reason and LiveKit's room_finished are cleared, and a new segment begins. Sessions the
/// finished segment left open (nobody is connected to a completed call) close at its end, so
/// none of them counts in the new segment; LiveKit's own departure report still wins later.
pub async fn resume(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<Call> {
    use video_participant_sessions as s;
    diesel::update(
        s::table
            .filter(s::call_id.eq(id))
            .filter(s::left_at.is_null()),
    )
    .set((
        s::left_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >(
            "GREATEST(joined_at, (SELECT COALESCE(ended_at, now()) FROM video_calls \
             WHERE video_calls.id = video_participant_sessions.call_id))",
        )),
        s::left_source.eq("resume"),
    ))
    .execute(conn)
    .await?;
    diesel::update(
        video_calls::table
            .find(id)
            .filter(video_calls::status.eq(CallStatus::Completed)),
    )
    .set((
        video_calls::status.eq(CallStatus::Ongoing),
        video_calls::earlier_segments_seconds.eq(diesel::dsl::sql::<diesel::sql_types::Int4>(
            "COALESCE(duration_seconds, earlier_segments_seconds)",
        )),
        video_calls::segment_started_at.eq(at),
        video_calls::resumed_count.eq(video_calls::resumed_count + 1),
        video_calls::ended_at.eq(None::<DateTime<Utc>>),
        video_calls::duration_seconds.eq(None::<i32>),
        video_calls::end_reason.eq(None::<String>),
        video_calls::room_finished_at.eq(None::<DateTime<Utc>>),
        video_calls::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Call::as_returning())
    .get_result(conn)
    .await
}

pub async fn set_end_reason(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        video_calls::table
            .find(id)
            .filter(video_calls::end_reason.is_null()),
    )
    .set(video_calls::end_reason.eq(reason))
    .cached()
    .execute(conn)
    .await
}

pub async fn set_room_finished(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    // The earliest report wins, so replays in any order agree; a report older than the
    // current segment is an earlier segment's room and ends nothing.
    diesel::update(
        video_calls::table.find(id).filter(
            video_calls::segment_started_at
                .is_null()
                .or(video_calls::segment_started_at.le(at)),
        ),
    )
    .set(
        video_calls::room_finished_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("LEAST(room_finished_at, ")
        .bind::<diesel::sql_types::Timestamptz, _>(at)
        .sql(")")),
    )
    .cached()
    .execute(conn)
    .await
}

pub async fn set_recording_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: RecordingStatus,
) -> QueryResult<usize> {
    diesel::update(video_calls::table.find(id))
        .set((
            video_calls::recording_status.eq(status),
            video_calls::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn set_recording_result(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: RecordingStatus,
    url: Option<&str>,
    data: &serde_json::Value,
) -> QueryResult<usize> {
    diesel::update(video_calls::table.find(id))
        .set((
            video_calls::recording_status.eq(status),
            video_calls::recording_url.eq(url),
            video_calls::recording_data.eq(data),
            video_calls::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Clears the call's `recording_url` and `recording_data` when they describe the recording of
/// `egress_id` (deleted): the call no longer points at a file that is gone.
pub async fn forget_recording(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    egress_id: &str,
) -> QueryResult<usize> {
    use diesel::sql_types::{Bool, Text};
    diesel::update(video_calls::table.find(id).filter(
        diesel::dsl::sql::<Bool>("recording_data->>'egressId' = ").bind::<Text, _>(egress_id),
    ))
    .set((
        video_calls::recording_url.eq(None::<String>),
        video_calls::recording_data.eq(None::<serde_json::Value>),
        video_calls::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

pub async fn participants(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
) -> QueryResult<Vec<Participant>> {
    video_call_participants::table
        .filter(video_call_participants::call_id.eq(call_id))
        .order((
            video_call_participants::created_at.asc(),
            video_call_participants::id.asc(),
        ))
        .select(Participant::as_select())
        .load(conn)
        .await
}

pub async fn find_participant(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    identity: &str,
) -> QueryResult<Option<Participant>> {
    video_call_participants::table
        .filter(video_call_participants::call_id.eq(call_id))
        .filter(video_call_participants::identity.eq(identity))
        .select(Participant::as_select())
        .first(conn)
        .await
        .optional()
}

/// Creates the participant if new (inactive); keeps the row's identity fields otherwise but
/// refreshes the display name.
pub async fn ensure_participant(
    conn: &mut AsyncPgConnection,
    participant: &NewParticipant<'_>,
) -> QueryResult<Participant> {
    diesel::insert_into(video_call_participants::table)
        .values(participant)
        .on_conflict((
            video_call_participants::call_id,
            video_call_participants::identity,
        ))
        .do_update()
        .set((
            video_call_participants::display_name.eq(participant.display_name),
            video_call_participants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Participant::as_returning())
        .cached()
        .get_result(conn)
        .await
}

/// An appointment's first join as one statement, without a transaction: `call` inserted
/// ONGOING since `joined_at` (as [`Call::started`] describes it) unless the appointment has a call
/// already, and only then the participant inserted present since `joined_at` (what
/// [`ensure_participant`] and a presence refresh would have written), its API session `sid` opened
/// at the same instant, and `events` in the outbox. `None` when another request inserted the
/// appointment's call first: nothing was written. Concurrent first joins of one appointment wait
/// on the unique indexes, so only one call is written. No conflict target: the room name is
/// derived from the appointment, and a concurrent insert can surface on its unique index first
/// (seen in CI as a 500), which a target of `appointment_id` would not cover.
pub async fn insert_first_join(
    conn: &mut AsyncPgConnection,
    call: &NewCall<'_>,
    participant: &NewParticipant<'_>,
    joined_at: DateTime<Utc>,
    sid: &str,
    events: &StagedEvents,
) -> QueryResult<Option<Participant>> {
    use diesel::sql_types::{Bool, Nullable, Text, Timestamptz, Uuid as U};
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH call AS ( \
               INSERT INTO video_calls (id, org_id, appointment_id, room_name, room_created, \
                 status, started_at, created_at, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) \
               ON CONFLICT DO NOTHING \
               RETURNING id), \
             participant AS ( \
               INSERT INTO video_call_participants (id, call_id, org_id, user_id, identity, role, \
                 display_name, is_host, is_guest, active, joined_at) \
               SELECT $8, call.id, $2, $9, $10, $11, $12, $13, $14, true, $7 FROM call \
               RETURNING id, user_id, identity, role, display_name, is_host, is_guest, active, \
                 joined_at, left_at, total_seconds), \
             session AS ( \
               INSERT INTO video_participant_sessions (call_id, sid, identity, joined_at) \
               SELECT call.id, $15, $10, $7 FROM call), \
             events AS ({}) \
             SELECT * FROM participant",
            StagedEvents::insert_sql(16, "call")
        )
    });
    let query = diesel::sql_query(SQL.as_str())
        .into_boxed()
        .bind::<U, _>(call.id)
        .bind::<U, _>(call.org_id)
        .bind::<U, _>(call.appointment_id)
        .bind::<Text, _>(call.room_name)
        .bind::<Bool, _>(call.room_created)
        .bind::<Text, _>(CallStatus::Ongoing.as_str())
        .bind::<Timestamptz, _>(joined_at)
        .bind::<U, _>(participant.id)
        .bind::<Nullable<U>, _>(participant.user_id)
        .bind::<Text, _>(participant.identity)
        .bind::<Text, _>(participant.role)
        .bind::<Text, _>(participant.display_name)
        .bind::<Bool, _>(participant.is_host)
        .bind::<Bool, _>(participant.is_guest)
        .bind::<Text, _>(sid);
    events
        .bind(query)
        .cached()
        .get_result(conn)
        .await
        .optional()
}

/// Like [`ensure_participant`] for a report that carries no name: a new row takes
/// `participant.display_name` (a placeholder), an existing row keeps the name it has.
pub async fn ensure_participant_keeping_name(
    conn: &mut AsyncPgConnection,
    participant: &NewParticipant<'_>,
) -> QueryResult<Participant> {
    diesel::insert_into(video_call_participants::table)
        .values(participant)
        .on_conflict((
            video_call_participants::call_id,
            video_call_participants::identity,
        ))
        .do_update()
        .set(video_call_participants::updated_at.eq(diesel::dsl::now))
        .returning(Participant::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn write_presence(
    conn: &mut AsyncPgConnection,
    participant_id: Uuid,
    presence: &Presence,
) -> QueryResult<usize> {
    diesel::update(video_call_participants::table.find(participant_id))
        .set((
            video_call_participants::active.eq(presence.active),
            video_call_participants::joined_at.eq(presence.joined_at),
            video_call_participants::left_at.eq(presence.left_at),
            video_call_participants::total_seconds.eq(presence.total_seconds),
            video_call_participants::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Sessions the join route opens are named `api:<uuid>`; LiveKit's sids start with `PA_`.
pub const API_SESSION_PREFIX: &str = "api:";

/// Whether `identity` has a session that has not left.
pub async fn has_open_session(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    identity: &str,
) -> QueryResult<bool> {
    use video_participant_sessions as s;
    diesel::select(diesel::dsl::exists(
        s::table
            .filter(s::call_id.eq(call_id))
            .filter(s::identity.eq(identity))
            .filter(s::left_at.is_null()),
    ))
    .get_result(conn)
    .await
}

/// Records that LiveKit reported session `sid` joined at `joined_at` (kept if already known).
pub async fn record_session(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    sid: &str,
    identity: &str,
    joined_at: Option<DateTime<Utc>>,
    left: Option<(DateTime<Utc>, &str)>,
) -> QueryResult<usize> {
    use video_participant_sessions as s;
    let (left_at, left_source) = match left {
        Some((at, source)) => (Some(at), Some(source)),
        None => (None, None),
    };
    diesel::insert_into(s::table)
        .values((
            s::call_id.eq(call_id),
            s::sid.eq(sid),
            s::identity.eq(identity),
            s::joined_at.eq(joined_at),
            s::left_at.eq(left_at),
            s::left_source.eq(left_source),
        ))
        .on_conflict((s::call_id, s::sid))
        .do_update()
        .set((
            s::joined_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "COALESCE(video_participant_sessions.joined_at, excluded.joined_at)",
            )),
            // LiveKit's own report of a departure beats one inferred by the job or a stop.
            s::left_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "CASE WHEN excluded.left_source = 'webhook' THEN excluded.left_at \
                 ELSE COALESCE(video_participant_sessions.left_at, excluded.left_at) END",
            )),
            s::left_source.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "CASE WHEN excluded.left_source = 'webhook' THEN 'webhook' \
                 ELSE COALESCE(video_participant_sessions.left_source, excluded.left_source) END",
            )),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Whether LiveKit reported a connection to the call that joined at or after `since`.
pub async fn joined_since(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    since: DateTime<Utc>,
) -> QueryResult<bool> {
    use video_participant_sessions as s;
    diesel::select(diesel::dsl::exists(
        s::table
            .filter(s::call_id.eq(call_id))
            .filter(s::sid.not_like(format!("{API_SESSION_PREFIX}%")))
            .filter(s::joined_at.ge(since)),
    ))
    .get_result(conn)
    .await
}

/// Closes `identity`'s open sessions at `at` (a stop from the API, or the job's inference).
pub async fn close_open_sessions(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    identity: Option<&str>,
    at: DateTime<Utc>,
    source: &str,
) -> QueryResult<usize> {
    use video_participant_sessions as s;
    let open = s::table
        .filter(s::call_id.eq(call_id))
        .filter(s::left_at.is_null())
        .into_boxed();
    let open = match identity {
        Some(identity) => open.filter(s::identity.eq(identity.to_owned())),
        None => open,
    };
    let sids: Vec<String> = open.select(s::sid).load(conn).await?;
    diesel::update(
        s::table
            .filter(s::call_id.eq(call_id))
            .filter(s::sid.eq_any(sids)),
    )
    .set((s::left_at.eq(at), s::left_source.eq(source)))
    .cached()
    .execute(conn)
    .await
}

/// A session as stored: sid, joined_at, left_at.
type SessionRow = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub async fn sessions(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    identity: &str,
) -> QueryResult<Vec<Session>> {
    use video_participant_sessions as s;
    let rows: Vec<SessionRow> = s::table
        .filter(s::call_id.eq(call_id))
        .filter(s::identity.eq(identity))
        .select((s::sid, s::joined_at, s::left_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(sid, joined_at, left_at)| Session {
            api: sid.starts_with(API_SESSION_PREFIX),
            joined_at,
            left_at,
        })
        .collect())
}

/// Calls still open (PENDING or ONGOING) created before `before`, oldest first.
pub async fn open_calls(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Call>> {
    video_calls::table
        .filter(video_calls::status.eq_any([CallStatus::Pending, CallStatus::Ongoing]))
        .order(video_calls::updated_at.asc())
        .limit(limit)
        .select(Call::as_select())
        .load(conn)
        .await
}

/// Calls whose LiveKit room could not be created yet.
pub async fn calls_without_room(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<Call>> {
    video_calls::table
        .filter(video_calls::room_created.eq(false))
        .filter(video_calls::status.eq_any([CallStatus::Pending, CallStatus::Ongoing]))
        .order(video_calls::created_at.asc())
        .limit(limit)
        .select(Call::as_select())
        .load(conn)
        .await
}

/// Who may see which calls: the list and statistics scope, mirroring
/// `policy::can_access_appointment` in SQL.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every org (ADMIN, platform staff, without `orgId`).
    Everywhere,
    /// The whole org (CEO, DIRECTOR, ADMIN with `orgId`).
    Org(Uuid),
    /// The org's calls of these teams, or where the user is host, guest or setter (MANAGER).
    Teams {
        org: Uuid,
        user: Uuid,
        teams: Vec<Uuid>,
    },
    /// Calls where the user is host or guest user, or setter when `setter` (everyone else).
    Own { org: Uuid, user: Uuid, setter: bool },
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<CallStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

type ScopedCalls<'a> = diesel::dsl::IntoBoxed<
    'a,
    diesel::dsl::InnerJoinOn<
        video_calls::table,
        appointments::table,
        diesel::dsl::Eq<appointments::id, video_calls::appointment_id>,
    >,
    diesel::pg::Pg,
>;

fn scoped<'a>(scope: &Scope, filter: &CallFilter) -> ScopedCalls<'a> {
    let mut query = video_calls::table
        .inner_join(appointments::table.on(appointments::id.eq(video_calls::appointment_id)))
        .into_boxed();
    match scope {
        Scope::Everywhere => {}
        Scope::Org(org) => query = query.filter(video_calls::org_id.eq(*org)),
        Scope::Teams { org, user, teams } => {
            query = query.filter(video_calls::org_id.eq(*org)).filter(
                appointments::team_id
                    .eq_any(teams.clone())
                    .or(appointments::host_user_id.eq(*user))
                    .or(appointments::guest_user_id.eq(*user)),
            );
        }
        Scope::Own { org, user, setter } => {
            query = query.filter(video_calls::org_id.eq(*org));
            let mine = appointments::host_user_id
                .eq(*user)
                .or(appointments::guest_user_id.eq(*user));
            query = if *setter {
                query.filter(mine.or(appointments::setter_user_id.eq(*user)))
            } else {
                query.filter(
                    appointments::host_user_id
                        .eq(*user)
                        .or(appointments::guest_user_id.eq(*user)),
                )
            };
        }
    }
    if let Some(status) = &filter.status {
        query = query.filter(video_calls::status.eq(*status));
    }
    if let Some(from) = filter.from {
        query = query.filter(video_calls::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(video_calls::created_at.lt(to));
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
        .order((video_calls::created_at.desc(), video_calls::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Call::as_select())
        .load(conn)
        .await?;
    Ok((calls, total))
}

/// What the statistics are computed from: per call, its status, duration, participant count and
/// whether it was recorded.
pub async fn stats_rows(
    conn: &mut AsyncPgConnection,
    scope: &Scope,
    filter: &CallFilter,
) -> QueryResult<Vec<(CallStatus, Option<i32>, RecordingStatus, i64)>> {
    let participants = video_call_participants::table
        .filter(video_call_participants::call_id.eq(video_calls::id))
        .filter(video_call_participants::joined_at.is_not_null())
        .count()
        .single_value();
    scoped(scope, filter)
        .select((
            video_calls::status,
            video_calls::duration_seconds,
            video_calls::recording_status,
            participants.assume_not_null(),
        ))
        .load(conn)
        .await
}

/// Calls ONGOING now, in every org (the `sb_video_active_calls` gauge).
pub async fn count_ongoing(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    video_calls::table
        .filter(video_calls::status.eq(CallStatus::Ongoing))
        .count()
        .get_result(conn)
        .await
}
