//! The append-only audit of monitoring (the table refuses updates and deletes).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::monitoring_audit;
use uuid::Uuid;

use crate::domain::Mode;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = monitoring_audit, check_for_backend(diesel::pg::Pg))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: Uuid,
    /// Null for a refused attempt (`action` = `refuse`), which opened no session.
    pub session_id: Option<Uuid>,
    /// Who did it; null when the system did (rep went offline, token expired).
    pub actor_id: Option<Uuid>,
    pub rep_id: Uuid,
    pub action: String,
    pub mode: Mode,
    pub detail: Option<String>,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
    /// What was supervised (`side_room`, `video_call`, `phone_call`), or for a refusal what was
    /// asked (`auto`, `call`, `side_room`).
    pub target: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = monitoring_audit)]
pub struct NewAuditEntry<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub session_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub rep_id: Uuid,
    pub action: &'a str,
    pub mode: Mode,
    pub detail: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub target: Option<&'a str>,
}

pub async fn append(conn: &mut AsyncPgConnection, entry: &NewAuditEntry<'_>) -> QueryResult<usize> {
    diesel::insert_into(monitoring_audit::table)
        .values(entry)
        .cached()
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org: Uuid,
    pub rep_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<AuditEntry>, i64)> {
    let matching = || {
        let mut query = monitoring_audit::table
            .filter(monitoring_audit::org_id.eq(filter.org))
            .into_boxed();
        if let Some(rep) = filter.rep_id {
            query = query.filter(monitoring_audit::rep_id.eq(rep));
        }
        if let Some(actor) = filter.actor_id {
            query = query.filter(monitoring_audit::actor_id.eq(actor));
        }
        if let Some(session) = filter.session_id {
            query = query.filter(monitoring_audit::session_id.eq(session));
        }
        if let Some(from) = filter.from {
            query = query.filter(monitoring_audit::at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(monitoring_audit::at.lt(to));
        }
        query
    };
    let total = matching().count().get_result(conn).await?;
    let entries = matching()
        .order((monitoring_audit::at.desc(), monitoring_audit::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(AuditEntry::as_select())
        .load(conn)
        .await?;
    Ok((entries, total))
}
