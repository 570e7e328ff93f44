//! Single-use tickets for the live stream, kept as a SHA-256 so a leaked table opens nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::schema::monitoring_stream_tickets as t;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = t, check_for_backend(diesel::pg::Pg))]
pub struct Ticket {
    pub ticket_hash: Vec<u8>,
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: String,
    pub teams: Vec<Option<Uuid>>,
    pub token_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new ticket, and forgets the ones that expired unused (they can no longer open
/// anything; the index on `expires_at` keeps this cheap).
pub async fn issue(conn: &mut AsyncPgConnection, ticket: &Ticket) -> QueryResult<()> {
    diesel::delete(t::table.filter(t::expires_at.lt(diesel::dsl::now)))
        .execute(conn)
        .await?;
    diesel::insert_into(t::table)
        .values(ticket)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the ticket: whichever replica asks first gets it, once. The caller checks its expiry.
pub async fn redeem(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<Option<Ticket>> {
    diesel::delete(t::table.find(hash))
        .returning(Ticket::as_returning())
        .get_result(conn)
        .await
        .optional()
}
