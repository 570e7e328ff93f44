//! Postgres restarted while the four services take traffic: requests fail fast with 503 (never
//! slower than the pool's acquire timeout plus a margin), the services recover by themselves,
//! and no row is half-written.

mod common;

use std::time::Duration;

use common::{Load, Result, describe, readyz};
use sb_resilience::Stack;
use sb_resilience::consistency::{rows, violations};
use sb_resilience::events::{account, drained};
use sb_testkit::PrivateDeps;

/// `DATABASE_ACQUIRE_TIMEOUT` and `DATABASE_CONNECT_TIMEOUT` of the stack (see `service_env`).
const POOL_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling noise on a shared 2-core machine, and a provider call after a failed write.
const MARGIN: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_fails_fast_recovers_and_leaves_no_half_written_rows() -> Result {
    let mut deps = PrivateDeps::start().await?;
    let database_url = deps.postgres.url("switchboard");
    let stack = Stack::start(&database_url, &deps.nats.url(), |_| {}).await?;
    let traffic = stack.traffic(Duration::from_secs(15)).await?;
    let client = sb_resilience::http_client(Duration::from_secs(5))?;

    let load = Load::start(&traffic, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = load.take();

    deps.postgres.stop().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, app) in stack.services() {
        let (status, content_type, body) = readyz(&client, &app.address).await?;
        assert_eq!(status, 503, "{name}: {body}");
        assert!(content_type.starts_with("application/problem+json"));
        assert_eq!(
            body["checks"]["postgres"]["status"], "failed",
            "{name}: {body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    deps.postgres.resume().await?;
    let restarted = tokio::time::Instant::now();
    let during = load.take();

    for (name, app) in stack.services() {
        sb_testkit::wait_until(Duration::from_secs(20), "readyz to recover", || {
            let client = client.clone();
            let address = app.address.clone();
            async move { matches!(readyz(&client, &address).await, Ok((200, _, _))) }
        })
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    }
    println!("recovered {:?} after the restart", restarted.elapsed());
    // Whatever was in flight at the restart settles; then everything must work again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(load.take());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = load.stop().await?;

    let own_writes = |route: &str| route == "appointment insert";
    let failed = |samples: &[sb_resilience::traffic::Sample]| {
        samples
            .iter()
            .filter(|s| !own_writes(s.route) && (s.status == 0 || s.status >= 500))
            .cloned()
            .collect::<Vec<_>>()
    };
    let before_failed = failed(&before);
    assert!(
        before_failed.is_empty(),
        "before:\n{}",
        describe(&before_failed.iter().collect::<Vec<_>>())
    );
    let after_failed = failed(&after);
    assert!(
        after_failed.is_empty(),
        "{} of {} requests failed after recovery:\n{}",
        after_failed.len(),
        after.len(),
        describe(&after_failed.iter().collect::<Vec<_>>())
    );
    assert!(
        after.iter().filter(|s| s.status < 300).count() >= 8,
        "too little traffic after"
    );

    // While Postgres was away: answers (no hang), 503 problem+json when failing, fast.
    let during: Vec<_> = during.iter().filter(|s| !own_writes(s.route)).collect();
    let unavailable: Vec<_> = during.iter().filter(|s| s.status == 503).copied().collect();
    assert!(
        !unavailable.is_empty(),
        "no request met the outage: it tested nothing"
    );
    let wrong: Vec<_> = during
        .iter()
        .filter(|s| s.status == 0 || (s.status >= 500 && s.status != 503))
        .copied()
        .collect();
    assert!(wrong.is_empty(), "not a 503:\n{}", describe(&wrong));
    let unnamed: Vec<_> = unavailable
        .iter()
        .filter(|s| s.code.is_none())
        .copied()
        .collect();
    assert!(
        unnamed.is_empty(),
        "503 without a problem code:\n{}",
        describe(&unnamed)
    );
    let slow: Vec<_> = during
        .iter()
        .filter(|s| s.elapsed > POOL_TIMEOUT + MARGIN)
        .copied()
        .collect();
    assert!(
        slow.is_empty(),
        "slower than {:?}:\n{}",
        POOL_TIMEOUT + MARGIN,
        describe(&slow)
    );

    // Nothing half-written, nothing lost on the way to JetStream.
    let broken = violations(&database_url).await?;
    assert!(broken.is_empty(), "half-written rows: {broken:?}");
    for table in [
        "video_calls",
        "telephony_calls",
        "monitoring_sessions",
        "signaling_rooms",
    ] {
        assert!(rows(&database_url, table).await? > 0, "no {table} to check");
    }
    drained(&database_url, Duration::from_secs(30)).await?;
    let accounting = account(&database_url, &deps.nats.url(), Duration::from_secs(30)).await?;
    assert!(accounting.is_exact(), "{accounting}");
    stack.stop().await?;
    Ok(())
}
