//! Call quality: samples from the mobile Voice SDK, Voice Insights summaries fetched by the
//! job, the summary the API shows, and the degraded event (once per call).

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::actions::{access, events};
use crate::domain::quality::{self, Metrics};
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls::{self, Call};
use crate::store::quality::{self as store, QualityRow};

/// Most samples one call keeps (one a second for an hour).
pub const MAX_SAMPLES: i64 = 3600;

/// What `GET /api/calls/{id}/quality` shows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub metrics: Metrics,
    /// `insights`, `sdk`, or `None` while nothing is known.
    pub source: Option<&'static str>,
    pub samples: usize,
    pub degraded: bool,
    pub measured_at: Option<DateTime<Utc>>,
}

/// Voice Insights' summary when there is one (it measures Twilio's side of every leg), else the
/// average of the app's samples.
pub fn summarise(rows: &[QualityRow], degraded: bool) -> Summary {
    let insights = rows.iter().find(|r| r.source == store::INSIGHTS);
    let samples: Vec<&QualityRow> = rows.iter().filter(|r| r.source == store::SDK).collect();
    let (metrics, source, measured_at) = match insights {
        Some(row) => (row.metrics(), Some("insights"), Some(row.measured_at)),
        None if !samples.is_empty() => {
            let metrics: Vec<Metrics> = samples.iter().map(|r| r.metrics()).collect();
            (
                quality::average(&metrics),
                Some("sdk"),
                samples.last().map(|r| r.measured_at),
            )
        }
        None => (Metrics::default(), None, None),
    };
    Summary {
        metrics,
        source,
        samples: samples.len(),
        degraded,
        measured_at,
    }
}

/// Re-evaluates the call's quality after a new measurement, inside the caller's transaction
/// (the call locked): the first time it crosses a threshold, the call is marked and announced.
async fn evaluate(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
    source: &'static str,
) -> Result<bool, TelephonyError> {
    let rows = store::of_call(conn, call.id).await?;
    let summary = summarise(&rows, call.quality_degraded_at.is_some());
    let crossed = state.config.quality.crossed(&summary.metrics);
    if crossed.is_empty() {
        return Ok(false);
    }
    let now = Utc::now();
    if !calls::mark_degraded(conn, call.id, now).await? {
        return Ok(false);
    }
    tracing::info!(call.id = %call.id, source, crossed = ?crossed, "call quality degraded");
    events::degraded(conn, &state.outbox, call, &summary.metrics, now).await?;
    state.metrics.degraded(source);
    Ok(true)
}

/// `POST /api/calls/{id}/quality`: a sample from the app of the rep on the call.
pub async fn report(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    metrics: Metrics,
    measured_at: Option<DateTime<Utc>>,
) -> Result<Summary, TelephonyError> {
    quality::validate(&metrics)
        .map_err(|(field, detail)| TelephonyError::invalid(field, detail))?;
    let mut conn = state.conn().await?;
    let call = access::call(&mut conn, principal, call_id).await?;
    if call.user_id != Some(principal.user_id.as_uuid()) {
        return Err(TelephonyError::forbidden(
            Code::Forbidden,
            "only the rep on the call reports its quality".to_owned(),
        ));
    }
    let now = Utc::now();
    // A client clock far off is not trusted further than the call's own span.
    let measured_at = measured_at
        .filter(|t| {
            *t <= now + chrono::Duration::minutes(5)
                && *t >= call.created_at - chrono::Duration::minutes(5)
        })
        .unwrap_or(now);
    let metrics = quality::with_estimated_mos(metrics);
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let call = calls::lock(conn, call.id).await?;
            if store::count_samples(conn, call.id).await? >= MAX_SAMPLES {
                return Err(TelephonyError::conflict(
                    Code::TooManySamples,
                    format!("a call keeps at most {MAX_SAMPLES} samples"),
                ));
            }
            store::insert(
                conn,
                call.org_id,
                call.id,
                store::SDK,
                &metrics,
                measured_at,
            )
            .await?;
            evaluate(conn, state, &call, "sdk").await?;
            Ok(())
        }))
        .await?;
    summary(state, principal, call_id).await
}

/// `GET /api/calls/{id}/quality`.
pub async fn summary(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
) -> Result<Summary, TelephonyError> {
    let mut conn = state.conn().await?;
    let call = access::call(&mut conn, principal, call_id).await?;
    let rows = store::of_call(&mut conn, call.id).await?;
    Ok(summarise(&rows, call.quality_degraded_at.is_some()))
}

/// Stores a Voice Insights summary's metrics (the job), replacing an earlier partial one.
pub async fn store_insights(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
    metrics: &Metrics,
) -> Result<(), TelephonyError> {
    let call = calls::lock(conn, call.id).await?;
    store::replace_insights(
        conn,
        call.org_id,
        call.id,
        metrics,
        call.ended_at.unwrap_or_else(Utc::now),
    )
    .await?;
    evaluate(conn, state, &call, "insights").await?;
    Ok(())
}
