//! The cleanup job: rooms of past appointments are ended.

use tokio_util::sync::CancellationToken;

use crate::actions::{self, Change};
use crate::error::SignalingError;
use crate::state::AppState;
use crate::store;

/// Ends every room whose appointment is over by `cleanup_after`; returns how many.
pub async fn cleanup_once(state: &AppState) -> Result<usize, SignalingError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(state.config.cleanup_after)
            .unwrap_or_else(|_| chrono::Duration::hours(4));
    let stale = {
        let mut conn = state.conn().await?;
        store::stale_rooms(&mut conn, cutoff).await?
    };
    for room in &stale {
        actions::change(state, room, Change::End).await?;
    }
    Ok(stale.len())
}

pub async fn run(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(state.config.cleanup_interval) => {}
        }
        match cleanup_once(&state).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "rooms of past appointments ended"),
            Err(error) => tracing::warn!(%error, "room cleanup failed"),
        }
    }
}
