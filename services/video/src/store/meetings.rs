//! Ad-hoc meetings and their members.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::{video_meeting_members, video_meetings};
use uuid::Uuid;

use crate::domain::meeting::{CallType, MeetingStatus, MemberRole, Mode, Presence};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = video_meetings, check_for_backend(diesel::pg::Pg))]
pub struct Meeting {
    pub id: Uuid,
    pub org_id: Uuid,
    pub room_name: String,
    pub livekit_room: String,
    pub created_by: Uuid,
    pub call_type: CallType,
    pub mode: Mode,
    pub status: MeetingStatus,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Meeting {
    pub fn is_ended(&self) -> bool {
        self.status == MeetingStatus::Ended
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_meetings)]
pub struct NewMeeting<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub room_name: &'a str,
    pub livekit_room: &'a str,
    pub created_by: Uuid,
    pub call_type: CallType,
    pub mode: Mode,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = video_meeting_members, check_for_backend(diesel::pg::Pg))]
pub struct Member {
    pub meeting_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub in_room: bool,
}

impl Member {
    pub fn presence(&self) -> Presence {
        Presence {
            in_room: self.in_room,
            joined_at: self.joined_at,
            left_at: self.left_at,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_meeting_members)]
pub struct NewMember {
    pub meeting_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
}

/// A member's presence as written back.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = video_meeting_members, treat_none_as_null = true)]
pub struct MemberChanges {
    pub in_room: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

impl From<Presence> for MemberChanges {
    fn from(p: Presence) -> Self {
        Self {
            in_room: p.in_room,
            joined_at: p.joined_at,
            left_at: p.left_at,
        }
    }
}

/// Inserts the meeting unless its org already has one of that name (`None` then). A concurrent
/// insert of the same name waits on the unique index, so exactly one wins.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    meeting: &NewMeeting<'_>,
) -> QueryResult<Option<Meeting>> {
    diesel::insert_into(video_meetings::table)
        .values(meeting)
        .on_conflict((video_meetings::org_id, video_meetings::room_name))
        .do_nothing()
        .returning(Meeting::as_returning())
        .cached()
        .get_result(conn)
        .await
        .optional()
}

/// Those of `users` known to belong to an organisation other than `org`: they host another
/// org's appointments or created another org's meetings (a user belongs to one org). Users
/// nobody has seen yet are not known to be anywhere, so they are not listed.
pub async fn members_of_other_orgs(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    users: &[Uuid],
) -> QueryResult<Vec<Uuid>> {
    use sb_db::schema::appointments;
    let hosts: Vec<Uuid> = appointments::table
        .filter(appointments::host_user_id.eq_any(users))
        .filter(appointments::org_id.ne(org))
        .select(appointments::host_user_id)
        .distinct()
        .load(conn)
        .await?;
    let creators: Vec<Uuid> = video_meetings::table
        .filter(video_meetings::created_by.eq_any(users))
        .filter(video_meetings::org_id.ne(org))
        .select(video_meetings::created_by)
        .distinct()
        .load(conn)
        .await?;
    let mut known: Vec<Uuid> = hosts.into_iter().chain(creators).collect();
    known.sort_unstable();
    known.dedup();
    Ok(known)
}

pub async fn insert_members(
    conn: &mut AsyncPgConnection,
    members: &[NewMember],
) -> QueryResult<usize> {
    diesel::insert_into(video_meeting_members::table)
        .values(members)
        .cached()
        .execute(conn)
        .await
}

/// The org's meeting named `room_name`.
pub async fn find_by_name(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    room_name: &str,
) -> QueryResult<Option<Meeting>> {
    video_meetings::table
        .filter(video_meetings::org_id.eq(org_id))
        .filter(video_meetings::room_name.eq(room_name))
        .select(Meeting::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Meeting>> {
    video_meetings::table
        .find(id)
        .select(Meeting::as_select())
        .first(conn)
        .await
        .optional()
}

/// The meeting behind a LiveKit room (webhooks name rooms, not meetings).
pub async fn find_by_livekit_room(
    conn: &mut AsyncPgConnection,
    livekit_room: &str,
) -> QueryResult<Option<Meeting>> {
    video_meetings::table
        .filter(video_meetings::livekit_room.eq(livekit_room))
        .select(Meeting::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the meeting row until the transaction ends: presence changes and the end of a meeting
/// apply one after the other.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Meeting> {
    video_meetings::table
        .find(id)
        .select(Meeting::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Open → ended; returns whether this call made the change.
pub async fn end(conn: &mut AsyncPgConnection, id: Uuid, at: DateTime<Utc>) -> QueryResult<bool> {
    let changed = diesel::update(
        video_meetings::table
            .find(id)
            .filter(video_meetings::status.eq(MeetingStatus::Open)),
    )
    .set((
        video_meetings::status.eq(MeetingStatus::Ended),
        video_meetings::ended_at.eq(at),
    ))
    .cached()
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// The meetings of `org_id` that `user_id` created or was invited to: open ones first, then
/// newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    user_id: Uuid,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Meeting>, i64)> {
    let visible = || {
        let invited = video_meeting_members::table
            .filter(video_meeting_members::user_id.eq(user_id))
            .select(video_meeting_members::meeting_id);
        video_meetings::table
            .filter(video_meetings::org_id.eq(org_id))
            .filter(
                video_meetings::created_by
                    .eq(user_id)
                    .or(video_meetings::id.eq_any(invited)),
            )
    };
    let total = visible().count().get_result(conn).await?;
    let meetings = visible()
        .order((
            // false sorts before true: open meetings first.
            video_meetings::status.ne(MeetingStatus::Open),
            video_meetings::created_at.desc(),
            video_meetings::id.desc(),
        ))
        .limit(limit)
        .offset(offset)
        .select(Meeting::as_select())
        .load(conn)
        .await?;
    Ok((meetings, total))
}

/// Members of these meetings, the host first in each.
pub async fn members_of(
    conn: &mut AsyncPgConnection,
    meeting_ids: &[Uuid],
) -> QueryResult<Vec<Member>> {
    video_meeting_members::table
        .filter(video_meeting_members::meeting_id.eq_any(meeting_ids))
        .order((
            video_meeting_members::meeting_id,
            video_meeting_members::role.ne(MemberRole::Host),
            video_meeting_members::user_id,
        ))
        .select(Member::as_select())
        .load(conn)
        .await
}

pub async fn find_member(
    conn: &mut AsyncPgConnection,
    meeting_id: Uuid,
    user_id: Uuid,
) -> QueryResult<Option<Member>> {
    video_meeting_members::table
        .find((meeting_id, user_id))
        .select(Member::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn write_presence(
    conn: &mut AsyncPgConnection,
    meeting_id: Uuid,
    user_id: Uuid,
    changes: &MemberChanges,
) -> QueryResult<usize> {
    diesel::update(video_meeting_members::table.find((meeting_id, user_id)))
        .set(changes)
        .cached()
        .execute(conn)
        .await
}

/// Members the service thinks are in an open meeting's room, with that LiveKit room.
pub async fn members_in_room(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<(Member, String)>> {
    video_meeting_members::table
        .inner_join(video_meetings::table)
        .filter(video_meeting_members::in_room.eq(true))
        .filter(video_meetings::status.eq(MeetingStatus::Open))
        .order(video_meeting_members::joined_at.asc())
        .limit(limit)
        .select((Member::as_select(), video_meetings::livekit_room))
        .load(conn)
        .await
}
