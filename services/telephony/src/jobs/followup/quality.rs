//! The `quality` pass: Voice Insights call summaries are partial within minutes and complete
//! within half an hour; a partial one is kept and asked for again until `quality_give_up_after`.

use diesel_async::AsyncConnection;

use super::{BATCH, Step, Tally, next_attempt};
use crate::actions::quality;
use crate::domain::followup::{FollowupKind, FollowupStatus};
use crate::domain::quality::{SummaryState, from_summary};
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls::Call;
use crate::store::followups::{self, Followup};

pub async fn run(state: &AppState) -> Result<Tally, TelephonyError> {
    let mut done = Tally::default();
    let mut conn = state.conn().await?;
    let now = chrono::Utc::now();
    for (followup, call) in followups::due(&mut conn, FollowupKind::Quality, now, BATCH).await? {
        done.count(one(state, &mut conn, &followup, &call).await?);
    }
    state.metrics.followup("quality_stored", done.stored);
    state.metrics.followup("quality_gave_up", done.given_up);
    Ok(done)
}

async fn one(
    state: &AppState,
    conn: &mut sb_db::DbConn,
    followup: &Followup,
    call: &Call,
) -> Result<Step, TelephonyError> {
    let attempts = followup.attempts.saturating_add(1);
    let Some(sid) = call.call_sid.clone() else {
        followups::record(
            conn,
            call.id,
            FollowupKind::Quality,
            FollowupStatus::GaveUp,
            attempts,
            None,
        )
        .await?;
        return Ok(Step::Other);
    };
    let summary = state
        .twilio_call("call_summary", Resend::AfterTransient, || {
            state.twilio.call_summary(&sid)
        })
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
    let next = next_attempt(state, call, attempts, give_up);
    if let Some((metrics, processing)) = parsed {
        // A partial summary is kept and asked for again; past the deadline it is the best
        // there will be.
        let (status, next) = match (processing, next) {
            (SummaryState::Partial, Some(next)) => (FollowupStatus::Partial, Some(next)),
            _ => (FollowupStatus::Done, None),
        };
        state
            .outbox
            .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
                quality::store_insights(conn, state, call, &metrics).await?;
                followups::record(conn, call.id, FollowupKind::Quality, status, attempts, next)
                    .await?;
                Ok(())
            }))
            .await?;
        return Ok(Step::Stored);
    }
    let partial = followup.status == FollowupStatus::Partial;
    let (status, next, step) = match next {
        Some(next) if partial => (FollowupStatus::Partial, Some(next), Step::Other),
        Some(next) => (FollowupStatus::Pending, Some(next), Step::Other),
        // The partial summary already stored is the best there will be.
        None if partial => (FollowupStatus::Done, None, Step::Other),
        None => (FollowupStatus::GaveUp, None, Step::GaveUp),
    };
    followups::record(conn, call.id, FollowupKind::Quality, status, attempts, next).await?;
    Ok(step)
}
