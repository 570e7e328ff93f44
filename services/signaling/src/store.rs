//! Queries on `signaling_rooms` and the appointments read model.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::models::Appointment;
use sb_db::schema::{appointments, signaling_rooms};
use uuid::Uuid;

use crate::domain::RoomStatus;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signaling_rooms)]
pub struct Room {
    pub id: Uuid,
    pub org_id: Uuid,
    pub room_id: String,
    pub appointment_id: Uuid,
    pub status: RoomStatus,
    pub practitioner_joined: bool,
    pub patient_joined: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// What the practitioner's token called them when they last joined (see the migration).
    pub practitioner_name: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = signaling_rooms)]
pub struct NewRoom<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub room_id: &'a str,
    pub appointment_id: Uuid,
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = signaling_rooms)]
pub struct RoomChanges {
    pub status: RoomStatus,
    pub practitioner_joined: bool,
    pub patient_joined: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Keeps the name the practitioner joined `room_id` with (a write only when it changed).
pub async fn set_practitioner_name(
    conn: &mut AsyncPgConnection,
    room_id: &str,
    name: &str,
) -> QueryResult<usize> {
    diesel::update(
        signaling_rooms::table
            .filter(signaling_rooms::room_id.eq(room_id))
            .filter(
                signaling_rooms::practitioner_name
                    .is_null()
                    .or(signaling_rooms::practitioner_name.ne(name)),
            ),
    )
    .set(signaling_rooms::practitioner_name.eq(name))
    .execute(conn)
    .await
}

pub async fn appointment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<Appointment>> {
    appointments::table
        .find(id)
        .select(Appointment::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn by_appointment(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Room>> {
    signaling_rooms::table
        .filter(signaling_rooms::appointment_id.eq(id))
        .select(Room::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn by_room_id(conn: &mut AsyncPgConnection, room_id: &str) -> QueryResult<Option<Room>> {
    signaling_rooms::table
        .filter(signaling_rooms::room_id.eq(room_id))
        .select(Room::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the room for a status change inside the caller's transaction.
pub async fn lock_by_room_id(
    conn: &mut AsyncPgConnection,
    room_id: &str,
) -> QueryResult<Option<Room>> {
    signaling_rooms::table
        .filter(signaling_rooms::room_id.eq(room_id))
        .select(Room::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks the appointment's room for a status change inside the caller's transaction.
pub async fn lock_by_appointment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<Room>> {
    signaling_rooms::table
        .filter(signaling_rooms::appointment_id.eq(id))
        .select(Room::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The room's status once no status change holds its lock: a change in flight (an ending
/// telling the room's members) commits or rolls back first.
pub async fn settled_status(
    conn: &mut AsyncPgConnection,
    room_id: &str,
) -> QueryResult<Option<RoomStatus>> {
    signaling_rooms::table
        .filter(signaling_rooms::room_id.eq(room_id))
        .select(signaling_rooms::status)
        .for_share()
        .first(conn)
        .await
        .optional()
}

/// Creates the appointment's room unless it has one; returns the room either way.
pub async fn create(conn: &mut AsyncPgConnection, room: &NewRoom<'_>) -> QueryResult<Room> {
    diesel::insert_into(signaling_rooms::table)
        .values(room)
        .on_conflict(signaling_rooms::appointment_id)
        .do_nothing()
        .cached()
        .execute(conn)
        .await?;
    signaling_rooms::table
        .filter(signaling_rooms::appointment_id.eq(room.appointment_id))
        .select(Room::as_select())
        .first(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &RoomChanges,
) -> QueryResult<()> {
    diesel::update(signaling_rooms::table.find(id))
        .set(changes)
        .cached()
        .execute(conn)
        .await
        .map(drop)
}

/// An Ended room back to Waiting, nobody present yet, no end time (its first start stays).
pub async fn reopen(conn: &mut AsyncPgConnection, id: Uuid, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(signaling_rooms::table.find(id))
        .set((
            signaling_rooms::status.eq(RoomStatus::Waiting),
            signaling_rooms::practitioner_joined.eq(false),
            signaling_rooms::patient_joined.eq(false),
            signaling_rooms::ended_at.eq(None::<DateTime<Utc>>),
            signaling_rooms::updated_at.eq(now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Room ids of rooms not ended whose appointment started (or ended) before `before`.
pub async fn stale_rooms(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    signaling_rooms::table
        .inner_join(appointments::table)
        .filter(signaling_rooms::status.ne(RoomStatus::Ended))
        .filter(
            appointments::ends_at.lt(before).or(appointments::ends_at
                .is_null()
                .and(appointments::scheduled_at.lt(before))),
        )
        .select(signaling_rooms::room_id)
        .load(conn)
        .await
}
