//! Reps, the LiveKit facts about their connections and microphones, and the calls they are on.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::{
    monitoring_rep_calls, monitoring_rep_connections, monitoring_rep_tracks, monitoring_reps,
};
use uuid::Uuid;

use crate::domain::RepStatus;

use crate::domain::{Connection, Track};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = monitoring_reps, check_for_backend(diesel::pg::Pg))]
pub struct Rep {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: String,
    pub teams: Vec<Option<Uuid>>,
    pub name: String,
    pub room_name: String,
    pub status: RepStatus,
    pub publishing: bool,
    pub status_changed_at: DateTime<Utc>,
}

impl Rep {
    pub fn team_ids(&self) -> Vec<Uuid> {
        self.teams.iter().flatten().copied().collect()
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = monitoring_reps)]
pub struct NewRep<'a> {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: &'a str,
    pub teams: Vec<Option<Uuid>>,
    pub name: &'a str,
    pub room_name: &'a str,
}

/// Creates the rep or refreshes what their JWT says (role, teams, name). Once the CRM has told
/// about the user (`crm_version` set), the CRM's role, teams and name stand: the roster follows
/// the CRM, whatever a token minted earlier still says.
pub async fn upsert(conn: &mut AsyncPgConnection, rep: &NewRep<'_>) -> QueryResult<Rep> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Array, Nullable, Text};
    diesel::insert_into(monitoring_reps::table)
        .values(rep)
        .on_conflict(monitoring_reps::user_id)
        .do_update()
        .set((
            monitoring_reps::role.eq(sql::<Text>(
                "CASE WHEN monitoring_reps.crm_version IS NULL THEN excluded.role \
                 ELSE monitoring_reps.role END",
            )),
            monitoring_reps::teams.eq(sql::<Array<Nullable<diesel::sql_types::Uuid>>>(
                "CASE WHEN monitoring_reps.crm_version IS NULL THEN excluded.teams \
                 ELSE monitoring_reps.teams END",
            )),
            monitoring_reps::name.eq(sql::<Text>(
                "CASE WHEN monitoring_reps.crm_version IS NULL THEN excluded.name \
                 ELSE monitoring_reps.name END",
            )),
            monitoring_reps::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Rep::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Rep>> {
    monitoring_reps::table
        .find(id)
        .select(Rep::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the rep row: presence changes and session starts for one rep run one at a time.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Rep>> {
    monitoring_reps::table
        .find(id)
        .select(Rep::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_room(conn: &mut AsyncPgConnection, room: &str) -> QueryResult<Option<Rep>> {
    monitoring_reps::table
        .filter(monitoring_reps::room_name.eq(room))
        .select(Rep::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn of_org(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Vec<Rep>> {
    monitoring_reps::table
        .filter(monitoring_reps::org_id.eq(org))
        .order(monitoring_reps::name.asc())
        .select(Rep::as_select())
        .load(conn)
        .await
}

/// The roster: the org's reps still on it (not deactivated nor moved to another role by the
/// CRM), online or not.
pub async fn roster_of_org(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Vec<Rep>> {
    monitoring_reps::table
        .filter(monitoring_reps::org_id.eq(org))
        .filter(monitoring_reps::left_roster_at.is_null())
        .order(monitoring_reps::name.asc())
        .select(Rep::as_select())
        .load(conn)
        .await
}

/// A user as the CRM last described them (`crm.user.*`).
#[derive(Debug, Clone)]
pub struct CrmUser<'a> {
    pub user_id: Uuid,
    pub org_id: Uuid,
    /// The role's name (`CLOSER`, `MANAGER`…).
    pub role: &'a str,
    pub teams: Vec<Option<Uuid>>,
    pub name: &'a str,
    pub version: i64,
    /// Active and a monitored role (CLOSER, SETTER).
    pub on_roster: bool,
}

/// Applies a CRM user snapshot unless a version at least as high was applied: an older event
/// arriving late, or a duplicate, changes nothing. Users who are not (or no longer) on the roster
/// are kept with `left_roster_at` so that guard still holds for them. Returns whether it wrote.
pub async fn apply_crm_user(conn: &mut AsyncPgConnection, user: &CrmUser<'_>) -> QueryResult<bool> {
    use diesel::dsl::sql;
    use diesel::query_dsl::methods::FilterDsl;
    use diesel::sql_types::{Nullable, Timestamptz};
    use diesel::upsert::excluded;
    let left_roster_at = (!user.on_roster).then(Utc::now);
    let upsert = diesel::insert_into(monitoring_reps::table)
        .values((
            monitoring_reps::user_id.eq(user.user_id),
            monitoring_reps::org_id.eq(user.org_id),
            monitoring_reps::role.eq(user.role),
            monitoring_reps::teams.eq(&user.teams),
            monitoring_reps::name.eq(user.name),
            monitoring_reps::room_name.eq(crate::domain::rep_room(user.org_id, user.user_id)),
            monitoring_reps::crm_version.eq(Some(user.version)),
            monitoring_reps::left_roster_at.eq(left_roster_at),
        ))
        .on_conflict(monitoring_reps::user_id)
        .do_update()
        .set((
            monitoring_reps::role.eq(excluded(monitoring_reps::role)),
            monitoring_reps::teams.eq(excluded(monitoring_reps::teams)),
            monitoring_reps::name.eq(excluded(monitoring_reps::name)),
            monitoring_reps::crm_version.eq(excluded(monitoring_reps::crm_version)),
            // The first time they left counts; coming back clears it.
            monitoring_reps::left_roster_at.eq(sql::<Nullable<Timestamptz>>(
                "CASE WHEN excluded.left_roster_at IS NULL THEN NULL \
                 ELSE COALESCE(monitoring_reps.left_roster_at, excluded.left_roster_at) END",
            )),
            monitoring_reps::updated_at.eq(diesel::dsl::now),
        ));
    let written = FilterDsl::filter(
        upsert,
        monitoring_reps::crm_version
            .is_null()
            .or(monitoring_reps::crm_version.lt(excluded(monitoring_reps::crm_version))),
    )
    .execute(conn)
    .await?;
    Ok(written == 1)
}

/// Reps LiveKit may have in their room (the reconciliation job checks them): those we think are
/// connected, and those active since `recent` (their token may still be valid even if no
/// participant_joined reached us).
pub async fn possibly_connected(
    conn: &mut AsyncPgConnection,
    recent: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Rep>> {
    let open = monitoring_rep_connections::table
        .filter(monitoring_rep_connections::rep_id.eq(monitoring_reps::user_id))
        .filter(monitoring_rep_connections::left_at.is_null());
    monitoring_reps::table
        .filter(
            diesel::dsl::exists(open)
                .or(monitoring_reps::status.ne(RepStatus::Offline))
                .or(monitoring_reps::updated_at.gt(recent)),
        )
        .order(monitoring_reps::updated_at.asc())
        .limit(limit)
        .select(Rep::as_select())
        .load(conn)
        .await
}

pub async fn write_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: RepStatus,
    publishing: bool,
) -> QueryResult<usize> {
    diesel::update(monitoring_reps::table.find(id))
        .set((
            monitoring_reps::status.eq(status),
            monitoring_reps::publishing.eq(publishing),
            monitoring_reps::status_changed_at.eq(diesel::dsl::now),
            monitoring_reps::updated_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Records a connection fact (join and/or departure); earlier reports are kept, LiveKit's own
/// departure beats the job's inference.
pub async fn record_connection(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
    sid: &str,
    joined_at: Option<DateTime<Utc>>,
    left: Option<(DateTime<Utc>, &str)>,
) -> QueryResult<usize> {
    use monitoring_rep_connections as c;
    let (left_at, left_source) = match left {
        Some((at, source)) => (Some(at), Some(source)),
        None => (None, None),
    };
    diesel::insert_into(c::table)
        .values((
            c::sid.eq(sid),
            c::rep_id.eq(rep_id),
            c::joined_at.eq(joined_at),
            c::left_at.eq(left_at),
            c::left_source.eq(left_source),
        ))
        .on_conflict((c::rep_id, c::sid))
        .do_update()
        .set((
            c::joined_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "COALESCE(monitoring_rep_connections.joined_at, excluded.joined_at)",
            )),
            c::left_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "CASE WHEN excluded.left_source = 'webhook' THEN excluded.left_at \
                 ELSE COALESCE(monitoring_rep_connections.left_at, excluded.left_at) END",
            )),
            c::left_source.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "CASE WHEN excluded.left_source = 'webhook' THEN 'webhook' \
                 ELSE COALESCE(monitoring_rep_connections.left_source, excluded.left_source) END",
            )),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Records a microphone track fact (publication and/or unpublication).
pub async fn record_track(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
    sid: &str,
    track_sid: &str,
    published_at: Option<DateTime<Utc>>,
    unpublished_at: Option<DateTime<Utc>>,
) -> QueryResult<usize> {
    use monitoring_rep_tracks as t;
    diesel::insert_into(t::table)
        .values((
            t::track_sid.eq(track_sid),
            t::sid.eq(sid),
            t::rep_id.eq(rep_id),
            t::published_at.eq(published_at),
            t::unpublished_at.eq(unpublished_at),
        ))
        .on_conflict((t::rep_id, t::track_sid))
        .do_update()
        .set((
            t::published_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "COALESCE(monitoring_rep_tracks.published_at, excluded.published_at)",
            )),
            t::unpublished_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "COALESCE(monitoring_rep_tracks.unpublished_at, excluded.unpublished_at)",
            )),
        ))
        .cached()
        .execute(conn)
        .await
}

pub async fn connections(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
) -> QueryResult<Vec<Connection>> {
    use monitoring_rep_connections as c;
    type Row = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = c::table
        .filter(c::rep_id.eq(rep_id))
        .select((c::sid, c::joined_at, c::left_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(sid, joined_at, left_at)| Connection {
            sid,
            joined_at,
            left_at,
        })
        .collect())
}

pub async fn tracks(conn: &mut AsyncPgConnection, rep_id: Uuid) -> QueryResult<Vec<Track>> {
    use monitoring_rep_tracks as t;
    type Row = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = t::table
        .filter(t::rep_id.eq(rep_id))
        .select((t::sid, t::published_at, t::unpublished_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(sid, published_at, unpublished_at)| Track {
            sid,
            published_at,
            unpublished_at,
        })
        .collect())
}

/// A fact about a rep's call (`sb.video.participant.*`, `sb.telephony.call.*`).
#[derive(Debug, Clone)]
pub struct CallFact<'a> {
    pub rep_id: Uuid,
    pub org_id: Uuid,
    /// `video` or `phone`.
    pub kind: &'a str,
    pub call_id: Uuid,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The LiveKit room of a video call.
    pub room_name: Option<&'a str>,
}

/// Records that a rep is on (or left) a call; earlier facts are kept, except that a join after
/// the recorded departure reopens the call.
pub async fn record_call(conn: &mut AsyncPgConnection, fact: &CallFact<'_>) -> QueryResult<usize> {
    use monitoring_rep_calls as c;
    diesel::insert_into(c::table)
        .values((
            c::rep_id.eq(fact.rep_id),
            c::org_id.eq(fact.org_id),
            c::kind.eq(fact.kind),
            c::call_id.eq(fact.call_id),
            c::started_at.eq(fact.started_at),
            c::ended_at.eq(fact.ended_at),
            c::room_name.eq(fact.room_name),
        ))
        .on_conflict((c::rep_id, c::kind, c::call_id))
        .do_update()
        .set((
            // A join after the last departure (a resumed call, a meeting room used again)
            // opens the call again; a departure older than the latest join changes nothing.
            c::started_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "CASE WHEN excluded.started_at > monitoring_rep_calls.ended_at \
                 THEN excluded.started_at \
                 ELSE COALESCE(monitoring_rep_calls.started_at, excluded.started_at) END",
            )),
            c::ended_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "CASE WHEN excluded.started_at > monitoring_rep_calls.ended_at \
                 THEN excluded.ended_at \
                 WHEN excluded.ended_at < monitoring_rep_calls.started_at \
                 THEN monitoring_rep_calls.ended_at \
                 ELSE COALESCE(monitoring_rep_calls.ended_at, excluded.ended_at) END",
            )),
            c::room_name.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "COALESCE(monitoring_rep_calls.room_name, excluded.room_name)",
            )),
        ))
        .cached()
        .execute(conn)
        .await
}

/// The call the rep is on now, if any: (kind, call id, since).
pub async fn current_call(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
) -> QueryResult<Option<(String, Uuid, Option<DateTime<Utc>>)>> {
    use monitoring_rep_calls as c;
    c::table
        .filter(c::rep_id.eq(rep_id))
        .filter(c::ended_at.is_null())
        .order(c::started_at.desc())
        .select((c::kind, c::call_id, c::started_at))
        .first(conn)
        .await
        .optional()
}

/// The call the rep is on now with its LiveKit room (video calls): (kind, call id, room).
pub async fn live_call(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
) -> QueryResult<Option<(String, Uuid, Option<String>)>> {
    use monitoring_rep_calls as c;
    c::table
        .filter(c::rep_id.eq(rep_id))
        .filter(c::ended_at.is_null())
        .order(c::started_at.desc())
        .select((c::kind, c::call_id, c::room_name))
        .first(conn)
        .await
        .optional()
}

/// Whether the rep's call is still open (started and not ended) after the facts so far.
pub async fn call_open(
    conn: &mut AsyncPgConnection,
    rep_id: Uuid,
    kind: &str,
    call_id: Uuid,
) -> QueryResult<bool> {
    use monitoring_rep_calls as c;
    diesel::select(diesel::dsl::exists(
        c::table
            .filter(c::rep_id.eq(rep_id))
            .filter(c::kind.eq(kind))
            .filter(c::call_id.eq(call_id))
            .filter(c::ended_at.is_null()),
    ))
    .get_result(conn)
    .await
}
