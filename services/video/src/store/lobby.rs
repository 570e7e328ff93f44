//! External guests in a call's lobby (`video_lobby_guests`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::video_lobby_guests;
use uuid::Uuid;

use crate::domain::lobby::LobbyStatus;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = video_lobby_guests, check_for_backend(diesel::pg::Pg))]
pub struct LobbyGuest {
    pub id: Uuid,
    pub call_id: Uuid,
    pub org_id: Uuid,
    pub link_id: Uuid,
    pub display_name: String,
    pub status: LobbyStatus,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// SHA-256 of the secret handed to the device that took this place (see `DeviceSecret`).
    pub device_secret_sha256: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = video_lobby_guests)]
pub struct NewLobbyGuest<'a> {
    pub id: Uuid,
    pub call_id: Uuid,
    pub org_id: Uuid,
    pub link_id: Uuid,
    pub display_name: &'a str,
    pub expires_at: DateTime<Utc>,
    pub device_secret_sha256: &'a [u8],
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    guest: &NewLobbyGuest<'_>,
) -> QueryResult<LobbyGuest> {
    diesel::insert_into(video_lobby_guests::table)
        .values(guest)
        .returning(LobbyGuest::as_returning())
        .cached()
        .get_result(conn)
        .await
}

/// The guest `id` of `call_id`: a guest id from a path never reaches another call's row.
pub async fn find(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<LobbyGuest>> {
    video_lobby_guests::table
        .find(id)
        .filter(video_lobby_guests::call_id.eq(call_id))
        .select(LobbyGuest::as_select())
        .first(conn)
        .await
        .optional()
}

/// Like [`find`], locking the row until the transaction ends so two decisions serialise.
pub async fn lock(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<LobbyGuest>> {
    video_lobby_guests::table
        .find(id)
        .filter(video_lobby_guests::call_id.eq(call_id))
        .select(LobbyGuest::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Every lobby place the link `link_id` opened in `call_id`, oldest first.
pub async fn of_link(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    link_id: Uuid,
) -> QueryResult<Vec<LobbyGuest>> {
    video_lobby_guests::table
        .filter(video_lobby_guests::call_id.eq(call_id))
        .filter(video_lobby_guests::link_id.eq(link_id))
        .order((
            video_lobby_guests::created_at.asc(),
            video_lobby_guests::id.asc(),
        ))
        .select(LobbyGuest::as_select())
        .load(conn)
        .await
}

/// Guests still waiting in `call_id`'s lobby whose link has not expired.
pub async fn count_waiting(
    conn: &mut AsyncPgConnection,
    call_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<i64> {
    video_lobby_guests::table
        .filter(video_lobby_guests::call_id.eq(call_id))
        .filter(video_lobby_guests::status.eq(LobbyStatus::Waiting))
        .filter(video_lobby_guests::expires_at.gt(now))
        .count()
        .get_result(conn)
        .await
}

/// Every guest of `call_id`, oldest first.
pub async fn of_call(conn: &mut AsyncPgConnection, call_id: Uuid) -> QueryResult<Vec<LobbyGuest>> {
    video_lobby_guests::table
        .filter(video_lobby_guests::call_id.eq(call_id))
        .order((
            video_lobby_guests::created_at.asc(),
            video_lobby_guests::id.asc(),
        ))
        .select(LobbyGuest::as_select())
        .load(conn)
        .await
}

/// Records who decided what about guest `id`, and when.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: LobbyStatus,
    decided_by: Uuid,
    decided_at: DateTime<Utc>,
) -> QueryResult<LobbyGuest> {
    diesel::update(video_lobby_guests::table.find(id))
        .set((
            video_lobby_guests::status.eq(status),
            video_lobby_guests::decided_by.eq(decided_by),
            video_lobby_guests::decided_at.eq(decided_at),
        ))
        .returning(LobbyGuest::as_returning())
        .cached()
        .get_result(conn)
        .await
}
