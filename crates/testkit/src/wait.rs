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

/// Runs `task` (handed a stop token) in the background until `condition` holds, then stops it
/// and waits (bounded) for it to finish. For consumers, relays and other run-until-stopped loops.
pub async fn run_until<T, Fut, C, CFut>(
    limit: Duration,
    what: &str,
    task: T,
    condition: C,
) -> crate::Result
where
    T: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    C: FnMut() -> CFut,
    CFut: Future<Output = bool>,
{
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(task(stop.clone()));
    let waited = wait_until(limit, what, condition).await;
    stop.cancel();
    within(
        Duration::from_secs(5),
        "the background task to stop",
        handle,
    )
    .await??;
    Ok(waited?)
}

/// Runs `future` to completion on a thread with its own runtime and waits for it: for cleanup in
/// `Drop`, which runs inside the test's runtime and cannot block on it.
pub(crate) fn block_on_side_thread(future: impl Future<Output = ()> + Send + 'static) {
    let handle = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(future);
        }
    });
    drop(handle.join());
}
