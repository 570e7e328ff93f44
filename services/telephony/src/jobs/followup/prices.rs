//! The `prices` pass: Twilio fills a call's price minutes after it ends, so the Call resource is
//! fetched again with backoff until it has one, or until `cost_give_up_after`.

use diesel_async::AsyncConnection;

use super::{BATCH, Step, Tally, next_attempt};
use crate::actions::status;
use crate::domain::followup::{FollowupKind, FollowupStatus};
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls::{self, Call};
use crate::store::followups::{self, Followup};

pub async fn run(state: &AppState) -> Result<Tally, TelephonyError> {
    let mut done = Tally::default();
    let mut conn = state.conn().await?;
    let now = chrono::Utc::now();
    for (followup, call) in followups::due(&mut conn, FollowupKind::Cost, now, BATCH).await? {
        done.count(one(state, &mut conn, &followup, &call).await?);
    }
    state.metrics.followup("price_stored", done.stored);
    state.metrics.followup("price_gave_up", done.given_up);
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
            FollowupKind::Cost,
            FollowupStatus::GaveUp,
            attempts,
            None,
        )
        .await?;
        return Ok(Step::Other);
    };
    if call.price.is_some() {
        // A status callback carried it meanwhile.
        followups::record(
            conn,
            call.id,
            FollowupKind::Cost,
            FollowupStatus::Done,
            followup.attempts,
            None,
        )
        .await?;
        return Ok(Step::Other);
    }
    let fetched = state
        .twilio_call("fetch_call", Resend::AfterTransient, || {
            state.twilio.fetch_call(&sid)
        })
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
    if let Some((price, unit)) = priced {
        let unit = unit.filter(|u| status::valid_price_unit(u));
        state
            .outbox
            .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
                calls::set_price(conn, call.id, &price, unit.as_deref()).await?;
                followups::record(
                    conn,
                    call.id,
                    FollowupKind::Cost,
                    FollowupStatus::Done,
                    attempts,
                    None,
                )
                .await?;
                Ok(())
            }))
            .await?;
        return Ok(Step::Stored);
    }
    let give_up = state.config.followup.cost_give_up_after;
    match next_attempt(state, call, attempts, give_up) {
        Some(next) => {
            followups::record(
                conn,
                call.id,
                FollowupKind::Cost,
                FollowupStatus::Pending,
                attempts,
                Some(next),
            )
            .await?;
            Ok(Step::Other)
        }
        None => {
            tracing::info!(call.id = %call.id, attempts, "Twilio never priced the call; giving up");
            followups::record(
                conn,
                call.id,
                FollowupKind::Cost,
                FollowupStatus::GaveUp,
                attempts,
                None,
            )
            .await?;
            Ok(Step::GaveUp)
        }
    }
}
