//! NATS stopped for 30 s while the four services take traffic: HTTP keeps answering, `/readyz`
//! says NATS is down, and every event produced meanwhile reaches JetStream exactly once after.

mod common;

use std::time::Duration;

use common::{Load, Result, describe, readyz};
use sb_resilience::Stack;
use sb_resilience::events::{account, drained};
use sb_testkit::PrivateDeps;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_down_for_30_seconds_loses_and_duplicates_nothing() -> Result {
    let mut deps = PrivateDeps::start().await?;
    let database_url = deps.postgres.url("switchboard");
    let stack = Stack::start(&database_url, &deps.nats.url(), |_| {}).await?;
    let traffic = stack.traffic(Duration::from_secs(10)).await?;
    let client = sb_resilience::http_client(Duration::from_secs(5))?;

    let load = Load::start(&traffic, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_outage = load.take();

    deps.nats.stop().await?;
    let outage = tokio::time::Instant::now();
    // Readiness reports NATS (and only NATS) down on every service, as problem+json.
    for (name, app) in stack.services() {
        sb_testkit::wait_until(
            Duration::from_secs(10),
            "readyz to report NATS down",
            || {
                let client = client.clone();
                let address = app.address.clone();
                async move { matches!(readyz(&client, &address).await, Ok((503, _, _))) }
            },
        )
        .await?;
        let (status, content_type, body) = readyz(&client, &app.address).await?;
        assert_eq!(status, 503, "{name}: {body}");
        assert!(
            content_type.starts_with("application/problem+json"),
            "{name}: {content_type}"
        );
        assert_eq!(body["code"], "not_ready", "{name}: {body}");
        assert_eq!(body["checks"]["nats"]["status"], "failed", "{name}: {body}");
        assert_eq!(body["checks"]["postgres"]["status"], "ok", "{name}: {body}");
    }
    let remaining = Duration::from_secs(30).saturating_sub(outage.elapsed());
    tokio::time::sleep(remaining).await;
    let during = load.take();
    let waiting = sb_resilience::events::unpublished(&database_url).await?;
    assert!(
        waiting > 0,
        "no event waited for NATS: the outage tested nothing"
    );
    deps.nats.resume().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = load.stop().await?;

    for (phase, samples) in [
        ("before", &before_outage),
        ("during", &during),
        ("after", &after),
    ] {
        let failed: Vec<_> = samples
            .iter()
            .filter(|s| s.status == 0 || s.status >= 500)
            .collect();
        assert!(
            failed.is_empty(),
            "{phase} the outage, {} of {} requests failed:\n{}",
            failed.len(),
            samples.len(),
            describe(&failed)
        );
    }
    // Enough traffic of every kind went through while NATS was down.
    for route in [
        "POST /calls/appointments/{id}/join",
        "POST /webhook/voice",
        "POST /monitoring/sessions",
        "socket.io join + signal round trip",
    ] {
        let ok = during
            .iter()
            .filter(|s| s.route == route && s.status < 300)
            .count();
        assert!(ok >= 2, "only {ok} successful {route} during the outage");
    }

    for (name, app) in stack.services() {
        sb_testkit::wait_until(Duration::from_secs(20), "readyz to recover", || {
            let client = client.clone();
            let address = app.address.clone();
            async move { matches!(readyz(&client, &address).await, Ok((200, _, _))) }
        })
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    }
    drained(&database_url, Duration::from_secs(60)).await?;
    let accounting = account(&database_url, &deps.nats.url(), Duration::from_secs(30)).await?;
    println!("events: {accounting}");
    assert!(
        accounting.is_exact(),
        "{accounting}: missing {:?}, duplicated {:?}, unknown {:?}",
        accounting.missing,
        accounting.duplicated,
        accounting.unknown
    );
    assert!(
        accounting.produced >= 20,
        "too little traffic to mean anything: {accounting}"
    );
    stack.stop().await?;
    Ok(())
}
