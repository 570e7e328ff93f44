//! Bounded waits: every wait in a test has a timeout, so a broken test fails instead of hanging.

use std::future::Future;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("timed out after {0:?}: {1}")]
pub struct WaitTimeout(pub Duration, pub String);

/// Awaits `future`, failing after `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> Result<T, WaitTimeout> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| WaitTimeout(limit, what.to_owned()))
}

/// Polls `condition` every 20 ms until it is true, failing after `limit`.
pub async fn wait_until<F, Fut>(
    limit: Duration,
    what: &str,
    mut condition: F,
) -> Result<(), WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(limit, what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
