//! The cleanup job: rooms of past appointments are ended.

use sb_platform::Metrics;
use sb_platform::jobs::Job;
use tokio_util::sync::CancellationToken;

use sb_socketio::SocketIo;

use crate::actions::{self, Change, Ending};
use crate::error::SignalingError;
use crate::state::AppState;
use crate::store;

/// Ends every room whose appointment is over by `cleanup_after`, telling its members on every
/// instance through `io` (see [`actions::hang_up`]); returns how many.
pub async fn cleanup_once(state: &AppState, io: &SocketIo) -> Result<usize, SignalingError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(state.config.cleanup_after)
            .unwrap_or_else(|_| chrono::Duration::hours(4));
    let stale = {
        let mut conn = state.conn().await?;
        store::stale_rooms(&mut conn, cutoff).await?
    };
    for room in &stale {
        actions::change(state, io, room, Change::End(Ending::Over)).await?;
    }
    Ok(stale.len())
}

/// The job: its one pass runs every `SIGNALING_CLEANUP_INTERVAL`.
pub fn job(state: AppState, io: SocketIo) -> Job<(AppState, SocketIo)> {
    let period = state.config.cleanup_interval;
    Job::new("signaling-cleanup", period, (state, io))
        .pass("past_rooms", |(state, io)| async move {
            cleanup_once(&state, &io).await
        })
}

/// Runs the job until `stop`.
pub async fn run(state: AppState, io: SocketIo, metrics: Metrics, stop: CancellationToken) {
    job(state, io).run(metrics, stop).await;
}
