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
use crate::store::calls::{self, Call, RowVersion, StatusWrite};
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

/// What applying a report to a call writes: the call as it leaves it, whether its status moved,
/// the events that announce the move and the follow-ups of a call that just ended.
struct Plan {
    next: Call,
    advanced: bool,
    events: Vec<Pending>,
    followups: Vec<FollowupKind>,
}

fn plan(state: &AppState, call: &Call, report: &StatusReport) -> Plan {
    let current = Report {
        status: call.status,
        sequence: call.status_sequence,
    };
    let reported = Report {
        status: report.status,
        sequence: report.sequence,
    };
    let advanced = status::advances(current, reported);
    let price = report
        .price
        .as_ref()
        .filter(|(price, _)| call.price.is_none() && valid_price(price))
        .map(|(price, unit)| (price.clone(), unit.clone().filter(|u| valid_price_unit(u))));
    let next = StatusWrite {
        status: advanced.then_some((reported.status, reported.sequence)),
        reported: report.status,
        at: report.at,
        duration_seconds: report.duration_seconds,
        price,
    }
    .applied_to(call);
    let mut events = Vec::new();
    let mut followups = Vec::new();
    if advanced {
        events.push(Pending::new(&events::status_changed_event(
            &next,
            Some(current.status),
            report.at,
        )));
        if reported.status.is_final() && !current.status.is_final() {
            events.push(Pending::new(&events::completed_event(&next)));
            followups = followups_of_ended(state, &next);
        }
    }
    Plan {
        next,
        advanced,
        events,
        followups,
    }
}

/// Applies `report` to `call`, which the caller has locked in its transaction. Returns the call
/// as written and whether its status moved.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
    report: &StatusReport,
) -> Result<(Call, bool), TelephonyError> {
    let plan = plan(state, call, report);
    let written = calls::write_status_columns(conn, &plan.next).await?;
    // Both events in one insert.
    state.outbox.enqueue_many(conn, &plan.events, None).await?;
    followups::schedule_many(conn, written.id, &plan.followups, first_followup_at(state)).await?;
    Ok((written, plan.advanced))
}

/// Applies `report` to `call` as read at `version`, without a lock or a transaction: the call,
/// its events and follow-ups in one statement, written only if the row is still at `version`
/// (see `calls::write_status_unless_changed`). `None` when it changed since: the caller applies
/// the report under the call's lock instead. Else whether the status moved; a report that
/// changes nothing writes nothing.
pub async fn apply_unless_changed(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    call: &Call,
    version: &RowVersion,
    report: &StatusReport,
) -> Result<Option<bool>, TelephonyError> {
    let plan = plan(state, call, report);
    if !calls::status_columns_differ(call, &plan.next) {
        return Ok(Some(false));
    }
    let events = state.outbox.stage(&plan.events, None);
    let written = calls::write_status_unless_changed(
        conn,
        version,
        &plan.next,
        &events,
        &plan.followups,
        first_followup_at(state),
    )
    .await?;
    if !written {
        return Ok(None);
    }
    if !events.is_empty() {
        state.outbox.wake_relay();
    }
    Ok(Some(plan.advanced))
}

/// A call that just ended: its price (completed calls are charged) and its Voice Insights
/// summary are asked for later, with backoff.
fn followups_of_ended(state: &AppState, call: &Call) -> Vec<FollowupKind> {
    let mut kinds = Vec::with_capacity(2);
    if call.status != CallStatus::Completed {
        return kinds;
    }
    if call.price.is_none() {
        kinds.push(FollowupKind::Cost);
    }
    if state.config.twilio.insights_enabled && call.call_sid.is_some() {
        kinds.push(FollowupKind::Quality);
    }
    kinds
}

fn first_followup_at(state: &AppState) -> DateTime<Utc> {
    let first = chrono::Duration::from_std(backoff::delay(state.config.followup.first_delay, 0))
        .unwrap_or(chrono::Duration::MAX);
    Utc::now() + first
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
