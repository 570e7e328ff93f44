//! SIGTERM to the four services (real processes) while they take traffic and NATS is down, so
//! events wait in the outbox: in-flight requests finish, Socket.IO sockets are told why they
//! close, the processes exit cleanly, and after a restart the outbox is published, nothing lost.
//! Then SIGTERM again under traffic with NATS up, so relays stop between publishing events and
//! marking them: after a restart every event is in its stream once. Every request of the traffic
//! is judged: before SIGTERM each is answered without a 5xx; during the drain each is answered
//! (a 503 at worst) or turned away unanswered (not listening any more, a socket closed with 1001,
//! a connection closed before the service took the request: no `request started` line with its
//! id in the service's log), never cut.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Load, Result, describe};
use sb_auth::Role;
use sb_resilience::events::{account, drained, unpublished};
use sb_resilience::process::{ServiceProcess, endpoints};
use sb_resilience::service_env;
use sb_resilience::socket::{Closed, SocketClient};
use sb_resilience::traffic::{Sample, Traffic};
use sb_testkit::{FakeLiveKit, FakeTwilio, PrivateDeps, TestTokens, TestUser};
use serde_json::json;

type Process = ServiceProcess;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_service"))
}

async fn spawn_all(env: &HashMap<String, String>) -> Result<Vec<Process>> {
    ServiceProcess::spawn_all(binary(), env).await
}

/// Every request of `samples` was answered without a server error.
fn assert_answered(phase: &str, samples: &[Sample]) {
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.status == 0 || s.status >= 500)
        .collect();
    assert!(
        failed.is_empty(),
        "{phase}: {} of {} requests failed:\n{}",
        failed.len(),
        samples.len(),
        describe(&failed)
    );
}

/// Every request of `samples` was answered (a 503 at worst: retry elsewhere) or turned away
/// before a service took it (`started`: the ids of the requests the services took); none was
/// cut, left unanswered or failed with another server error.
fn assert_drained(phase: &str, samples: &[Sample], started: &HashSet<String>) {
    // HTTP/1.1 lets a server close an idle kept-alive connection, and a client may have sent a
    // request on it in the same instant: unanswered, but never taken. One the service took and
    // did not answer was cut.
    let closed_before_taken = |s: &Sample| {
        s.status == 0
            && !s.timed_out
            && s.request_id
                .as_ref()
                .is_some_and(|id| !started.contains(id))
    };
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| {
            !(s.turned_away
                || closed_before_taken(s)
                || (1..500).contains(&s.status)
                || s.status == 503)
        })
        .collect();
    let count = |keep: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| keep(s)).count();
    println!(
        "{phase}: {} requests; {} answered, {} refused or told 1001, {} closed before a service took them",
        samples.len(),
        count(&|s| s.status != 0),
        count(&|s| s.turned_away),
        count(&|s| !s.turned_away && closed_before_taken(s)),
    );
    assert!(
        failed.is_empty(),
        "{phase}: {} of {} requests cut or failed:\n{}",
        failed.len(),
        samples.len(),
        describe(&failed)
    );
}

/// Every answered HTTP request of `samples` is among those the services logged as taken: the
/// log that tells an unanswered request from a cut one is complete.
fn assert_taken(samples: &[Sample], started: &HashSet<String>) {
    let missing: Vec<_> = samples
        .iter()
        .filter(|s| s.status != 0)
        .filter(|s| {
            s.request_id
                .as_ref()
                .is_some_and(|id| !started.contains(id))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not logged as started:\n{}",
        describe(&missing)
    );
}

async fn traffic_on(
    processes: &[Process],
    tokens: &TestTokens,
    livekit: &Arc<FakeLiveKit>,
    twilio: &FakeTwilio,
    database_url: &str,
) -> Result<Traffic> {
    Ok(Traffic::new(
        endpoints(processes)?,
        tokens.clone(),
        livekit.clone(),
        twilio.auth_token.clone(),
        database_url,
        Duration::from_secs(15),
    )
    .await?)
}

/// Waits for every process to exit cleanly; returns the ids of the requests they took.
async fn wait_for_exit(processes: Vec<Process>) -> Result<HashSet<String>> {
    let mut started = HashSet::new();
    for mut process in processes {
        assert!(
            process.wait().await?,
            "{} did not exit cleanly",
            process.name
        );
        started.extend(process.requests_started());
    }
    Ok(started)
}

async fn sigterm(process: &Process) -> Result {
    process.sigterm().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_requests_closes_sockets_with_a_reason_and_loses_no_event() -> Result {
    let mut deps = PrivateDeps::start().await?;
    let database_url = deps.postgres.url("switchboard");
    let livekit = Arc::new(FakeLiveKit::start().await?);
    let twilio = FakeTwilio::start().await?;
    let env = service_env(&database_url, &deps.nats.url(), &livekit, &twilio);
    let processes = spawn_all(&env).await?;
    let tokens = TestTokens::new();
    let traffic = traffic_on(&processes, &tokens, &livekit, &twilio, &database_url).await?;

    // Two people in a signaling room, connected over websockets.
    let host = TestUser::new(traffic.org, Role::Closer);
    let guest = TestUser::new(traffic.org, Role::Member);
    let appointment = traffic.appointment(&host, Some(&guest)).await?;
    let signaling = traffic.endpoints.signaling.clone();
    let (status, body) = traffic
        .send(
            "create room",
            traffic.client.post(format!(
                "{signaling}/video-call/room/appointment/{appointment}/create"
            )),
            Some(&host),
        )
        .await;
    assert_eq!(status.status, 200, "{body}");
    let room = body["roomId"].as_str().ok_or("no roomId")?.to_owned();
    let mut sockets = Vec::new();
    for user in [&host, &guest] {
        let mut socket = SocketClient::connect(&signaling, &traffic.token(user)).await?;
        socket.emit("join-room", json!({"roomId": room})).await?;
        socket.expect("joined-room").await?;
        sockets.push(socket);
    }

    let load = Load::start(&traffic, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Events produced from now on wait in the outbox.
    deps.nats.stop().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A join that is in flight when SIGTERM arrives (LiveKit answers slowly).
    livekit.set_latency(Duration::from_millis(1500));
    let joiner = TestUser::new(traffic.org, Role::Closer);
    let joining = traffic.appointment(&joiner, None).await?;
    let in_flight = {
        let traffic = traffic.clone();
        tokio::spawn(async move { traffic.join(&joiner, joining).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before_sigterm = load.take();
    for process in &processes {
        sigterm(process).await?;
    }
    let (joined, call) =
        sb_testkit::within(Duration::from_secs(20), "the in-flight join", in_flight).await??;
    assert_eq!(joined.status, 200, "the in-flight join was cut: {joined:?}");
    assert!(call.is_some());

    for mut socket in sockets {
        let closed = socket.until_closed(Duration::from_secs(15)).await?;
        assert_eq!(
            closed,
            Closed::WithReason("1001 server shutting down".to_owned())
        );
    }
    let started = wait_for_exit(processes).await?;
    let during_drain = load.stop().await?;
    livekit.set_latency(Duration::ZERO);
    assert!(
        before_sigterm.len() >= 8,
        "too little traffic before SIGTERM to mean anything: {}",
        before_sigterm.len()
    );
    assert_answered("before SIGTERM (NATS down)", &before_sigterm);
    assert_taken(&before_sigterm, &started);
    assert_drained("SIGTERM with NATS down", &during_drain, &started);

    let waiting = unpublished(&database_url).await?;
    assert!(
        waiting > 0,
        "no event waited in the outbox: the restart tests nothing"
    );
    deps.nats.resume().await?;
    let restarted = spawn_all(&env).await?;
    drained(&database_url, Duration::from_secs(60)).await?;
    let accounting = account(&database_url, &deps.nats.url(), Duration::from_secs(30)).await?;
    println!("{waiting} events waited; {accounting}");
    assert!(accounting.is_exact(), "{accounting}");

    // SIGTERM under traffic with NATS up: relays stop wherever they are, between publishing a
    // batch and marking it included; nothing may be lost or reach a stream twice.
    let traffic = traffic_on(&restarted, &tokens, &livekit, &twilio, &database_url).await?;
    let load = Load::start(&traffic, 3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_sigterm = load.take();
    for process in &restarted {
        sigterm(process).await?;
    }
    let started = wait_for_exit(restarted).await?;
    let during_drain = load.stop().await?;
    assert!(
        before_sigterm.len() >= 8,
        "too little traffic before SIGTERM to mean anything: {}",
        before_sigterm.len()
    );
    assert_answered("before SIGTERM (NATS up)", &before_sigterm);
    assert_taken(&before_sigterm, &started);
    assert_drained("SIGTERM with NATS up", &during_drain, &started);

    let again = spawn_all(&env).await?;
    drained(&database_url, Duration::from_secs(60)).await?;
    let accounting = account(&database_url, &deps.nats.url(), Duration::from_secs(30)).await?;
    println!(
        "NATS up: {} requests before SIGTERM, {} during the drain; {accounting}",
        before_sigterm.len(),
        during_drain.len()
    );
    assert!(accounting.is_exact(), "{accounting}");
    for process in &again {
        sigterm(process).await?;
    }
    wait_for_exit(again).await?;
    Ok(())
}
