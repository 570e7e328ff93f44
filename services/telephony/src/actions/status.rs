//! Applying a status report to a call, monotonically: the status only moves forward (terminal
//! statuses absorb late reports; two terminal reports are ordered by SequenceNumber), each
//! status's time and the duration are the first reported, and the events announce the moves.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use sb_events::outbox::Pending;

use crate::actions::events;
use crate::domain::backoff;
use crate::domain::followup::FollowupKind;
use crate::domain::status::{self, CallStatus, Report};
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls::{self, Call, StatusWrite};
use crate::store::followups;

/// One report of a call's status (a status callback, the create answer, a fetched resource).
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub status: CallStatus,
    pub sequence: Option<i32>,
    pub at: DateTime<Utc>,
    pub duration_seconds: Option<i32>,
    /// Twilio's price and unit, when the report carries them.
    pub price: Option<(String, Option<String>)>,
}

/// Whether a price string is one Twilio would send (`-0.01750`).
pub fn valid_price(price: &str) -> bool {
    let digits = price.strip_prefix('-').unwrap_or(price);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    !whole.is_empty()
        && whole.len() <= 12
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction
            .is_none_or(|f| !f.is_empty() && f.len() <= 12 && f.chars().all(|c| c.is_ascii_digit()))
}

pub fn valid_price_unit(unit: &str) -> bool {
    unit.len() == 3 && unit.chars().all(|c| c.is_ascii_uppercase())
}

/// Applies `report` to `call`, which the caller has locked in its transaction. Returns the call
/// as written and whether its status moved.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
    report: &StatusReport,
) -> Result<(Call, bool), TelephonyError> {
    let current = Report {
        status: call.status,
        sequence: call.status_sequence,
    };
    let next = Report {
        status: report.status,
        sequence: report.sequence,
    };
    let advanced = status::advances(current, next);
    // The price rides on the status update (the call is locked: no re-read needed).
    let price = report
        .price
        .as_ref()
        .filter(|(price, _)| call.price.is_none() && valid_price(price))
        .map(|(price, unit)| (price.clone(), unit.clone().filter(|u| valid_price_unit(u))));
    let written = calls::write_status(
        conn,
        call,
        &StatusWrite {
            status: advanced.then_some((next.status, next.sequence)),
            reported: report.status,
            at: report.at,
            duration_seconds: report.duration_seconds,
            price,
        },
    )
    .await?;
    if advanced {
        let changed = events::status_changed_event(&written, Some(current.status), report.at);
        if next.status.is_final() && !current.status.is_final() {
            // Both events in one insert.
            state
                .outbox
                .enqueue_many(
                    conn,
                    &[
                        Pending::new(&changed),
                        Pending::new(&events::completed_event(&written)),
                    ],
                    None,
                )
                .await?;
            schedule_followup(conn, state, &written).await?;
        } else {
            state.outbox.enqueue(conn, &changed).await?;
        }
    }
    Ok((written, advanced))
}

/// A call that just ended: its price (completed calls are charged) and its Voice Insights
/// summary are asked for later, with backoff.
async fn schedule_followup(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
) -> Result<(), TelephonyError> {
    if call.status != CallStatus::Completed {
        return Ok(());
    }
    let first = chrono::Duration::from_std(backoff::delay(state.config.followup.first_delay, 0))
        .unwrap_or(chrono::Duration::MAX);
    let next = Utc::now() + first;
    let mut kinds = Vec::with_capacity(2);
    if call.price.is_none() {
        kinds.push(FollowupKind::Cost);
    }
    if state.config.twilio.insights_enabled && call.call_sid.is_some() {
        kinds.push(FollowupKind::Quality);
    }
    // Both in one insert.
    followups::schedule_many(conn, call.id, &kinds, next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_look_like_twilios() {
        for good in ["-0.01750", "0", "0.0", "-1.5", "12"] {
            assert!(valid_price(good), "{good}");
        }
        for bad in ["", "-", "1.", ".5", "1,5", "1e3", "abc", "--1"] {
            assert!(!valid_price(bad), "{bad}");
        }
        assert!(valid_price_unit("USD"));
        assert!(!valid_price_unit("usd"));
    }
}
