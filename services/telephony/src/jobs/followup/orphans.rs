//! The `orphans` pass: a call Twilio never confirmed (no CallSid) is failed after a while.

use chrono::Utc;
use diesel_async::AsyncConnection;

use super::BATCH;
use crate::actions::status;
use crate::domain::status::CallStatus;
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls;

/// A call Twilio never confirmed (no CallSid) is failed after this long.
const ORPHAN_AFTER: chrono::Duration = chrono::Duration::minutes(15);

/// How many calls the pass failed.
pub async fn run(state: &AppState) -> Result<u64, TelephonyError> {
    let mut failed_calls = 0;
    let mut conn = state.conn().await?;
    for call in calls::orphans(&mut conn, Utc::now() - ORPHAN_AFTER, BATCH).await? {
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
            failed_calls += 1;
        }
    }
    state.metrics.followup("orphan_failed", failed_calls);
    Ok(failed_calls)
}
