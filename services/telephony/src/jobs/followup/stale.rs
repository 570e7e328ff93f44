//! The `stale_calls` pass: Twilio does not retry status callbacks, so an unfinished call with no
//! news is synced from its Call resource (a 404 means it never existed there: failed).

use chrono::Utc;
use diesel_async::AsyncConnection;

use super::{BATCH, chrono};
use crate::actions::calls::twilio_time;
use crate::actions::status;
use crate::domain::status::CallStatus;
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls::{self, Call};
use sb_twilio::{CallResource, TwilioError};

/// How many calls the pass moved.
pub async fn run(state: &AppState) -> Result<u64, TelephonyError> {
    let mut synced = 0;
    let mut conn = state.conn().await?;
    let stale_before = Utc::now() - chrono(state.config.followup.stale_after);
    for call in calls::stale(&mut conn, stale_before, BATCH).await? {
        let Some(sid) = call.call_sid.clone() else {
            continue;
        };
        let resource = match state
            .twilio_call("fetch_call", Resend::AfterTransient, || {
                state.twilio.fetch_call(&sid)
            })
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
            synced += 1;
        }
    }
    state.metrics.followup("status_synced", synced);
    Ok(synced)
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
