//! Quality measurements of calls: the Voice Insights summary and the Voice SDK's samples.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::telephony_call_quality as q;
use uuid::Uuid;

use crate::domain::quality::Metrics;

pub const INSIGHTS: &str = "INSIGHTS";
pub const SDK: &str = "SDK";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = q, check_for_backend(diesel::pg::Pg))]
pub struct QualityRow {
    pub source: String,
    pub jitter_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub packet_loss_percent: Option<f64>,
    pub mos: Option<f64>,
    pub mos_estimated: bool,
    pub codec: Option<String>,
    pub measured_at: DateTime<Utc>,
}

impl QualityRow {
    pub fn metrics(&self) -> Metrics {
        Metrics {
            jitter_ms: self.jitter_ms,
            latency_ms: self.latency_ms,
            packet_loss_percent: self.packet_loss_percent,
            mos: self.mos,
            mos_estimated: self.mos_estimated,
            codec: self.codec.clone(),
        }
    }
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    call: Uuid,
    source: &str,
    metrics: &Metrics,
    measured_at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::insert_into(q::table)
        .values((
            q::id.eq(Uuid::now_v7()),
            q::org_id.eq(org),
            q::call_id.eq(call),
            q::source.eq(source),
            q::jitter_ms.eq(metrics.jitter_ms),
            q::latency_ms.eq(metrics.latency_ms),
            q::packet_loss_percent.eq(metrics.packet_loss_percent),
            q::mos.eq(metrics.mos),
            q::mos_estimated.eq(metrics.mos_estimated),
            q::codec.eq(metrics.codec.as_deref()),
            q::measured_at.eq(measured_at),
        ))
        .cached()
        .execute(conn)
        .await
}

/// Replaces the call's Voice Insights row (one per call; a partial summary is replaced by the
/// complete one). Run with the call locked.
pub async fn replace_insights(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    call: Uuid,
    metrics: &Metrics,
    measured_at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        q::table
            .filter(q::call_id.eq(call))
            .filter(q::source.eq(INSIGHTS)),
    )
    .execute(conn)
    .await?;
    insert(conn, org, call, INSIGHTS, metrics, measured_at).await
}

/// Every measurement of a call, oldest first (SDK samples are capped by the route).
pub async fn of_call(conn: &mut AsyncPgConnection, call: Uuid) -> QueryResult<Vec<QualityRow>> {
    q::table
        .filter(q::call_id.eq(call))
        .order((q::measured_at.asc(), q::id.asc()))
        .select(QualityRow::as_select())
        .load(conn)
        .await
}

pub async fn count_samples(conn: &mut AsyncPgConnection, call: Uuid) -> QueryResult<i64> {
    q::table
        .filter(q::call_id.eq(call))
        .filter(q::source.eq(SDK))
        .count()
        .get_result(conn)
        .await
}
