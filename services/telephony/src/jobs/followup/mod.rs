//! The follow-up job: what Twilio only knows after a call, and what lost callbacks leave behind,
//! in small named passes: `prices` (Twilio fills them minutes after a call ends), `quality`
//! (Voice Insights summaries), `stale_calls` (unfinished calls with no news: Twilio does not retry
//! status callbacks), `orphans` (calls Twilio never confirmed) and `recording_retention`
//! (recordings older than `TELEPHONY_RECORDING_RETENTION`).

mod orphans;
mod prices;
mod quality;
mod stale;

use chrono::{DateTime, Utc};
use sb_platform::Metrics;
use sb_platform::jobs::Job;
use tokio_util::sync::CancellationToken;

use crate::actions::recordings;
use crate::domain::backoff;
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls::{self, Call};

/// How many calls one pass looks at.
const BATCH: i64 = 100;

/// What a pass over the due follow-ups of one kind did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub stored: u64,
    pub given_up: u64,
}

/// What following one call up came to.
enum Step {
    Stored,
    GaveUp,
    Other,
}

impl Tally {
    fn count(&mut self, step: Step) {
        match step {
            Step::Stored => self.stored += 1,
            Step::GaveUp => self.given_up += 1,
            Step::Other => {}
        }
    }
}

/// What one run of every pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FollowupReport {
    pub prices_stored: u64,
    pub prices_given_up: u64,
    pub quality_stored: u64,
    pub quality_given_up: u64,
    pub statuses_synced: u64,
    pub orphans_failed: u64,
    pub recordings_expired: u64,
}

/// The job: its passes run in turn every `TELEPHONY_FOLLOWUP_INTERVAL`.
pub fn job(state: AppState) -> Job<AppState> {
    let period = state.config.followup.interval;
    Job::new("telephony-followup", period, state)
        .pass(
            "active_calls",
            |s| async move { count_active_calls(&s).await },
        )
        .pass("prices", |s| async move { prices::run(&s).await })
        .pass("quality", |s| async move { quality::run(&s).await })
        .pass("stale_calls", |s| async move { stale::run(&s).await })
        .pass("orphans", |s| async move { orphans::run(&s).await })
        .pass("recording_retention", |s| async move {
            recordings::expire(&s).await
        })
}

/// Runs the job until `stop`.
pub async fn run(state: AppState, metrics: Metrics, stop: CancellationToken) {
    job(state).run(metrics, stop).await;
}

/// Every pass once, in order, stopping at the first that fails.
pub async fn followup_once(state: &AppState) -> Result<FollowupReport, TelephonyError> {
    count_active_calls(state).await?;
    let prices = prices::run(state).await?;
    let quality = quality::run(state).await?;
    let statuses_synced = stale::run(state).await?;
    let orphans_failed = orphans::run(state).await?;
    let recordings_expired = recordings::expire(state).await?;
    Ok(FollowupReport {
        prices_stored: prices.stored,
        prices_given_up: prices.given_up,
        quality_stored: quality.stored,
        quality_given_up: quality.given_up,
        statuses_synced,
        orphans_failed,
        recordings_expired,
    })
}

/// The `sb_telephony_active_calls` gauge, from the database (every replica reports the same).
async fn count_active_calls(state: &AppState) -> Result<(), TelephonyError> {
    let mut conn = state.conn().await?;
    state
        .metrics
        .set_active_calls(calls::count_active(&mut conn).await?);
    Ok(())
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
