//! The follow-up job: what Twilio only knows after a call, and what lost callbacks leave behind.
//! Prices (Twilio fills them minutes after a call ends: the Call resource is re-fetched with
//! backoff until it has one, or the job gives up), Voice Insights summaries (partial within
//! minutes, complete within half an hour), unfinished calls with no news (Twilio does not retry
//! status callbacks: the Call resource says how they ended), and calls Twilio never confirmed.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use tokio_util::sync::CancellationToken;

use crate::actions::calls::twilio_time;
use crate::actions::{quality, status};
use crate::domain::backoff;
use crate::domain::quality::{SummaryState, from_summary};
use crate::domain::status::CallStatus;
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls::{self, Call};
use crate::store::followups;
use crate::twilio::{CallResource, TwilioError};

/// How many calls one pass looks at per kind of work.
const BATCH: i64 = 100;

/// A call Twilio never confirmed (no CallSid) is failed after this long.
const ORPHAN_AFTER: chrono::Duration = chrono::Duration::minutes(15);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FollowupReport {
    pub prices_stored: u64,
    pub prices_given_up: u64,
    pub quality_stored: u64,
    pub quality_given_up: u64,
    pub statuses_synced: u64,
    pub orphans_failed: u64,
}

/// Runs a pass every `TELEPHONY_FOLLOWUP_INTERVAL` until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let mut interval = tokio::time::interval(state.config.followup.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        match followup_once(&state).await {
            Ok(report) if report != FollowupReport::default() => {
                tracing::info!(?report, "followed calls up");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "follow-up pass failed; next pass retries")
            }
        }
    }
}

fn chrono(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// When attempt `attempts + 1` is due, or `None` once `give_up_after` has passed since the end.
fn next_attempt(
    state: &AppState,
    call: &Call,
    attempts: i32,
    give_up_after: std::time::Duration,
) -> Option<DateTime<Utc>> {
    let now = Utc::now();
    let ended = call.ended_at.unwrap_or(call.updated_at);
    if now - ended >= chrono(give_up_after) {
        return None;
    }
    let delay = backoff::delay(
        state.config.followup.first_delay,
        u32::try_from(attempts).unwrap_or(u32::MAX),
    );
    Some(now + chrono(delay))
}

/// One pass.
pub async fn followup_once(state: &AppState) -> Result<FollowupReport, TelephonyError> {
    let mut report = FollowupReport::default();
    let now = Utc::now();
    let mut conn = state.conn().await?;
    state
        .metrics
        .set_active_calls(calls::count_active(&mut conn).await?);

    for (followup, call) in followups::due(&mut conn, followups::COST, now, BATCH).await? {
        let attempts = followup.attempts.saturating_add(1);
        let Some(sid) = call.call_sid.clone() else {
            followups::record(
                &mut conn,
                call.id,
                followups::COST,
                "GAVE_UP",
                attempts,
                None,
            )
            .await?;
            continue;
        };
        if call.price.is_some() {
            // A status callback carried it meanwhile.
            followups::record(
                &mut conn,
                call.id,
                followups::COST,
                "DONE",
                followup.attempts,
                None,
            )
            .await?;
            continue;
        }
        let fetched = state
            .twilio_call("fetch_call", state.twilio.fetch_call(&sid))
            .await;
        let priced = match &fetched {
            Ok(resource) => resource
                .price
                .as_deref()
                .filter(|p| status::valid_price(p))
                .map(|p| (p.to_owned(), resource.price_unit.clone())),
            Err(error) => {
                tracing::debug!(call.id = %call.id, error = %error, "price not fetched");
                None
            }
        };
        match priced {
            Some((price, unit)) => {
                let unit = unit.filter(|u| status::valid_price_unit(u));
                state
                    .outbox
                    .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
                        calls::set_price(conn, call.id, &price, unit.as_deref()).await?;
                        followups::record(conn, call.id, followups::COST, "DONE", attempts, None)
                            .await?;
                        Ok(())
                    }))
                    .await?;
                report.prices_stored += 1;
            }
            None => match next_attempt(
                state,
                &call,
                attempts,
                state.config.followup.cost_give_up_after,
            ) {
                Some(next) => {
                    followups::record(
                        &mut conn,
                        call.id,
                        followups::COST,
                        "PENDING",
                        attempts,
                        Some(next),
                    )
                    .await?;
                }
                None => {
                    tracing::info!(call.id = %call.id, attempts, "Twilio never priced the call; giving up");
                    followups::record(
                        &mut conn,
                        call.id,
                        followups::COST,
                        "GAVE_UP",
                        attempts,
                        None,
                    )
                    .await?;
                    report.prices_given_up += 1;
                }
            },
        }
    }

    for (followup, call) in followups::due(&mut conn, followups::QUALITY, now, BATCH).await? {
        let attempts = followup.attempts.saturating_add(1);
        let Some(sid) = call.call_sid.clone() else {
            followups::record(
                &mut conn,
                call.id,
                followups::QUALITY,
                "GAVE_UP",
                attempts,
                None,
            )
            .await?;
            continue;
        };
        let summary = state
            .twilio_call("call_summary", state.twilio.call_summary(&sid))
            .await;
        let parsed = match &summary {
            Ok(Some(summary)) => from_summary(summary),
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(call.id = %call.id, error = %error, "call summary not fetched");
                None
            }
        };
        let give_up = state.config.followup.quality_give_up_after;
        let next = next_attempt(state, &call, attempts, give_up);
        if let Some((metrics, processing)) = parsed {
            // A partial summary is kept and asked for again; past the deadline it is the best
            // there will be.
            let (status, next) = match (processing, next) {
                (SummaryState::Partial, Some(next)) => ("PARTIAL", Some(next)),
                _ => ("DONE", None),
            };
            state
                .outbox
                .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
                    quality::store_insights(conn, state, &call, &metrics).await?;
                    followups::record(conn, call.id, followups::QUALITY, status, attempts, next)
                        .await?;
                    Ok(())
                }))
                .await?;
            report.quality_stored += 1;
            continue;
        }
        let partial = followup.status == "PARTIAL";
        match next {
            Some(next) => {
                let status = if partial { "PARTIAL" } else { "PENDING" };
                followups::record(
                    &mut conn,
                    call.id,
                    followups::QUALITY,
                    status,
                    attempts,
                    Some(next),
                )
                .await?;
            }
            None if partial => {
                followups::record(
                    &mut conn,
                    call.id,
                    followups::QUALITY,
                    "DONE",
                    attempts,
                    None,
                )
                .await?;
            }
            None => {
                followups::record(
                    &mut conn,
                    call.id,
                    followups::QUALITY,
                    "GAVE_UP",
                    attempts,
                    None,
                )
                .await?;
                report.quality_given_up += 1;
            }
        }
    }

    let stale_before = now - chrono(state.config.followup.stale_after);
    for call in calls::stale(&mut conn, stale_before, BATCH).await? {
        let Some(sid) = call.call_sid.clone() else {
            continue;
        };
        let resource = match state
            .twilio_call("fetch_call", state.twilio.fetch_call(&sid))
            .await
        {
            Ok(resource) => resource,
            Err(TwilioError::Rejected { status: 404, .. }) => CallResource {
                sid: sid.clone(),
                status: "failed".to_owned(),
                duration: None,
                price: None,
                price_unit: None,
                start_time: None,
                end_time: None,
            },
            Err(error) => {
                tracing::debug!(call.id = %call.id, error = %error, "stale call not fetched");
                continue;
            }
        };
        if sync_from_resource(state, &call, &resource).await? {
            report.statuses_synced += 1;
        }
    }

    for call in calls::orphans(&mut conn, now - ORPHAN_AFTER, BATCH).await? {
        let failed = state
            .outbox
            .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
                let locked = calls::lock(conn, call.id).await?;
                if locked.call_sid.is_some() {
                    return Ok(false);
                }
                calls::set_error(conn, call.id, None, "Twilio never confirmed the call").await?;
                let (_, advanced) = status::apply(
                    conn,
                    state,
                    &locked,
                    &status::StatusReport {
                        status: CallStatus::Failed,
                        sequence: None,
                        at: Utc::now(),
                        duration_seconds: None,
                        price: None,
                    },
                )
                .await?;
                Ok(advanced)
            }))
            .await?;
        if failed {
            report.orphans_failed += 1;
        }
    }

    state.metrics.followup("price_stored", report.prices_stored);
    state
        .metrics
        .followup("price_gave_up", report.prices_given_up);
    state
        .metrics
        .followup("quality_stored", report.quality_stored);
    state
        .metrics
        .followup("quality_gave_up", report.quality_given_up);
    state
        .metrics
        .followup("status_synced", report.statuses_synced);
    state
        .metrics
        .followup("orphan_failed", report.orphans_failed);
    Ok(report)
}

/// Applies what Twilio's Call resource says about a call whose callbacks went missing: its
/// status (monotonically, like a callback), answer and end times, and duration.
async fn sync_from_resource(
    state: &AppState,
    call: &Call,
    resource: &CallResource,
) -> Result<bool, TelephonyError> {
    let Some(reported) = CallStatus::from_twilio(&resource.status) else {
        return Ok(false);
    };
    let duration: Option<i32> = resource.duration.as_deref().and_then(|d| d.parse().ok());
    let started = twilio_time(resource.start_time.as_deref());
    let ended = twilio_time(resource.end_time.as_deref());
    let answered = reported == CallStatus::InProgress
        || (reported == CallStatus::Completed && duration.is_some_and(|d| d > 0));
    let mut reports = Vec::new();
    if answered && let Some(started) = started {
        reports.push(status::StatusReport {
            status: CallStatus::InProgress,
            sequence: None,
            at: started,
            duration_seconds: None,
            price: None,
        });
    }
    if reported != CallStatus::InProgress {
        reports.push(status::StatusReport {
            status: reported,
            sequence: None,
            at: ended.or(started).unwrap_or_else(Utc::now),
            duration_seconds: duration,
            price: resource
                .price
                .clone()
                .map(|p| (p, resource.price_unit.clone())),
        });
    }
    let mut conn = state.conn().await?;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            calls::set_synced(conn, call.id).await?;
            let mut moved = false;
            for report in &reports {
                let locked = calls::lock(conn, call.id).await?;
                let (_, advanced) = status::apply(conn, state, &locked, report).await?;
                moved |= advanced;
            }
            Ok(moved)
        }))
        .await
}
