//! Checks for half-written state: each query counts rows that one transaction should have written
//! together with another row and that lack it. Every count must be zero.

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// (what, query counting the violations).
pub const CHECKS: [(&str, &str); 5] = [
    (
        // A call is created (with its room) in one transaction and joined in the next: a PENDING
        // call nobody joined yet is whole (the next join completes it); a started one is not.
        "started video call without any participant",
        "SELECT count(*) AS n FROM video_calls c WHERE c.status <> 'PENDING' AND NOT EXISTS \
         (SELECT 1 FROM video_call_participants p WHERE p.call_id = c.id)",
    ),
    (
        "ongoing video call without its sb.video.call.started event",
        "SELECT count(*) AS n FROM video_calls c WHERE c.status = 'ONGOING' AND NOT EXISTS \
         (SELECT 1 FROM outbox o WHERE o.subject = 'sb.video.call.started' \
          AND position(convert_to(c.id::text, 'UTF8') IN o.payload) > 0)",
    ),
    (
        "inbound phone call without its sb.telephony.call.incoming event",
        "SELECT count(*) AS n FROM telephony_calls c WHERE c.direction = 'INBOUND' AND NOT EXISTS \
         (SELECT 1 FROM outbox o WHERE o.subject = 'sb.telephony.call.incoming' \
          AND position(convert_to(c.id::text, 'UTF8') IN o.payload) > 0)",
    ),
    (
        "monitoring session without its sb.monitoring.session.started event",
        "SELECT count(*) AS n FROM monitoring_sessions s WHERE NOT EXISTS \
         (SELECT 1 FROM outbox o WHERE o.subject = 'sb.monitoring.session.started' \
          AND position(convert_to(s.id::text, 'UTF8') IN o.payload) > 0)",
    ),
    (
        "monitoring session without an audit row",
        "SELECT count(*) AS n FROM monitoring_sessions s WHERE NOT EXISTS \
         (SELECT 1 FROM monitoring_audit a WHERE a.session_id = s.id)",
    ),
];

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The violated checks with their counts (empty when the data is whole), and how many rows of
/// each kind there are (so a test can tell it checked something).
pub async fn violations(database_url: &str) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    let mut found = Vec::new();
    for (what, query) in CHECKS {
        let Count { n } = diesel::sql_query(query).get_result(&mut conn).await?;
        if n != 0 {
            found.push((what, n));
        }
    }
    Ok(found)
}

/// Rows in `table` (a name from the schema, not user input).
pub async fn rows(database_url: &str, table: &str) -> anyhow::Result<i64> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    let Count { n } = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .get_result(&mut conn)
        .await?;
    Ok(n)
}
