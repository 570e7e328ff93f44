//! The org's Twilio numbers and where their calls ring.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::telephony_phone_numbers as n;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = n, check_for_backend(diesel::pg::Pg))]
pub struct PhoneNumber {
    pub id: Uuid,
    pub org_id: Uuid,
    pub e164: String,
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub ring_app: bool,
    pub forward_to: Option<String>,
    pub greeting: Option<String>,
    pub voicemail_greeting: Option<String>,
    pub language: String,
    pub voice: String,
    pub ring_timeout_seconds: i32,
    pub record_calls: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PhoneNumber {
    /// How long the rep's devices ring, for Twilio (the column is validated on write; 30 s
    /// should it ever not fit).
    pub fn ring_timeout(&self) -> u32 {
        u32::try_from(self.ring_timeout_seconds).unwrap_or(30)
    }
}

/// Everything an admin sets on a number (`PUT /api/numbers/{e164}` replaces it all).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = n, treat_none_as_null = true)]
pub struct NumberSettings {
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub ring_app: bool,
    pub forward_to: Option<String>,
    pub greeting: Option<String>,
    pub voicemail_greeting: Option<String>,
    pub language: String,
    pub voice: String,
    pub ring_timeout_seconds: i32,
    pub record_calls: bool,
}

/// The number `e164` whatever its org (Twilio's webhooks name only the number).
pub async fn find(conn: &mut AsyncPgConnection, e164: &str) -> QueryResult<Option<PhoneNumber>> {
    n::table
        .filter(n::e164.eq(e164))
        .select(PhoneNumber::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the number `e164` (if it exists) until the transaction ends.
pub async fn lock(conn: &mut AsyncPgConnection, e164: &str) -> QueryResult<Option<PhoneNumber>> {
    n::table
        .filter(n::e164.eq(e164))
        .select(PhoneNumber::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    e164: &str,
    settings: &NumberSettings,
) -> QueryResult<PhoneNumber> {
    diesel::insert_into(n::table)
        .values((
            n::id.eq(Uuid::now_v7()),
            n::org_id.eq(org),
            n::e164.eq(e164),
            settings,
        ))
        .returning(PhoneNumber::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    settings: &NumberSettings,
) -> QueryResult<PhoneNumber> {
    diesel::update(n::table.find(id))
        .set((settings, n::updated_at.eq(diesel::dsl::now)))
        .returning(PhoneNumber::as_returning())
        .cached()
        .get_result(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(n::table.find(id)).execute(conn).await
}

/// The org's numbers (of one owner when given), by number.
pub async fn list(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    owner: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<PhoneNumber>, i64)> {
    let visible = || {
        let mut query = n::table.filter(n::org_id.eq(org)).into_boxed();
        if let Some(owner) = owner {
            query = query.filter(n::owner_user_id.eq(owner));
        }
        query
    };
    let total = visible().count().get_result(conn).await?;
    let numbers = visible()
        .order(n::e164.asc())
        .limit(limit)
        .offset(offset)
        .select(PhoneNumber::as_select())
        .load(conn)
        .await?;
    Ok((numbers, total))
}

/// The numbers `user` owns, oldest first (their default caller id is the first).
pub async fn owned_by(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<PhoneNumber>> {
    n::table
        .filter(n::owner_user_id.eq(user))
        .order((n::created_at.asc(), n::e164.asc()))
        .select(PhoneNumber::as_select())
        .load(conn)
        .await
}
