//! Scale-out under faults: two replicas of every service, each a process of its own, on one
//! Postgres and a 3-node NATS JetStream cluster (streams at R3), with traffic spread over both
//! replicas and a CRM publishing appointments. One replica of every service is SIGKILLed and
//! restarted, a NATS node is SIGKILLed and restarted, Postgres restarts. Then: every request the
//! surviving and restarted replicas took was answered (a 503 at worst), every outbox event is in
//! its stream once, every consumer applied every event of its filter once (its inbox against its
//! stream), no dead letter, the CRM's appointments were projected and their rooms created once,
//! the two replicas shared the consumers' work, a per-user rate limit counts across replicas, a
//! supervisor's live stream on one replica sees sessions started on the other, and `end-call` on
//! one replica reaches a peer on the other.
//! Run time: about a minute.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use common::{Load, Result, describe};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sb_auth::Role;
use sb_events::proto::{Appointment, AppointmentCreated, AppointmentKind, AppointmentStatus};
use sb_events::{Domain, Namespace};
use sb_resilience::events::{account, applications, dead_letters, drained};
use sb_resilience::process::{ServiceProcess, endpoints};
use sb_resilience::service_env;
use sb_resilience::socket::SocketClient;
use sb_resilience::traffic::{Sample, Traffic};
use sb_testkit::{FakeLiveKit, FakeTwilio, NatsCluster, PrivatePostgres, TestTokens, TestUser};
use serde_json::json;
use uuid::Uuid;

/// The durable consumers of the stack, the stream each reads and its filter.
const CONSUMERS: [(&str, Domain, &str); 4] = [
    ("video-appointments", Domain::Crm, "crm.appointment."),
    ("signaling-appointments", Domain::Crm, "crm.appointment."),
    ("monitoring-video", Domain::Video, "sb.video.participant."),
    (
        "monitoring-telephony",
        Domain::Telephony,
        "sb.telephony.call.",
    ),
];

/// Calls a user may start per window in this test, counted in Postgres for every replica.
const CALL_LIMIT: usize = 4;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_service"))
}

/// Answered, a 503 at worst; never unanswered or another server error. The traffic's own
/// writes to the read model (standing in for the CRM projector, `appointment insert`) are not
/// requests to the services: they fail while Postgres is down, and are not judged.
fn assert_answered(phase: &str, samples: &[Sample]) {
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.route != "appointment insert")
        .filter(|s| !((1..500).contains(&s.status) || s.status == 503))
        .collect();
    assert!(
        failed.is_empty(),
        "{phase}: {} of {} requests failed:\n{}",
        failed.len(),
        samples.len(),
        describe(&failed)
    );
}

/// The CRM: `count` remote appointments of `org` hosted by `host`, one every `every`, each
/// retried with its event id until JetStream takes it (a node may be down).
async fn publish_appointments(
    js: jetstream::Context,
    org: Uuid,
    host: Uuid,
    count: usize,
    every: Duration,
) -> Result<Vec<Uuid>> {
    let ns = Namespace::production();
    let mut ids = Vec::new();
    for n in 0..count {
        let id = Uuid::now_v7();
        let start = Utc::now() + chrono::Duration::hours(1);
        let event = AppointmentCreated {
            appointment: Some(Appointment {
                id: id.to_string(),
                org_id: org.to_string(),
                host_user_id: host.to_string(),
                scheduled_at_unix_ms: start.timestamp_millis(),
                ends_at_unix_ms: (start + chrono::Duration::minutes(30)).timestamp_millis(),
                kind: AppointmentKind::Remote as i32,
                status: AppointmentStatus::Confirmed as i32,
                version: 1,
                ..Appointment::default()
            }),
        };
        let event_id = Uuid::now_v7();
        let mut attempts = 0;
        while let Err(error) = sb_events::publish::publish_with_id(&js, &ns, &event, event_id).await
        {
            attempts += 1;
            if attempts > 100 {
                return Err(format!("appointment {n}: {error}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids.push(id);
        tokio::time::sleep(every).await;
    }
    Ok(ids)
}

/// `sb_consumer_messages_total{consumer="…",outcome="applied"}` of the service at `base`.
async fn applied_by(client: &reqwest::Client, base: &str, consumer: &str) -> Result<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let series =
        format!("sb_consumer_messages_total{{consumer=\"{consumer}\",outcome=\"applied\"}}");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Counts `event: session.started` frames of a supervisor's live stream at `base` until `stop`.
fn watch_sessions(
    client: reqwest::Client,
    base: String,
    token: String,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Result<usize>> {
    tokio::spawn(async move {
        let mut response = client
            .get(format!("{base}/monitoring/stream"))
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 200, "the live stream");
        let mut text = String::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                chunk = response.chunk() => match chunk? {
                    Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                    None => break,
                },
            }
        }
        Ok(text.matches("event: session.started").count())
    })
}

async fn traffic_on(
    processes: &[ServiceProcess],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_per_service_on_a_nats_cluster_survive_crashes_and_apply_every_event_once()
-> Result {
    let started = Instant::now();
    let mut postgres = PrivatePostgres::start().await?;
    postgres.migrated_database("switchboard").await?;
    let database_url = postgres.url("switchboard");
    let mut nats = NatsCluster::start(3).await?;
    let livekit = Arc::new(FakeLiveKit::start().await?);
    let twilio = FakeTwilio::start().await?;
    let mut env = service_env(&database_url, &nats.urls(), &livekit, &twilio);
    env.insert("EVENTS_STREAM_REPLICAS".to_owned(), "3".to_owned());
    env.insert(
        "TELEPHONY_CALL_RATE_LIMIT".to_owned(),
        CALL_LIMIT.to_string(),
    );
    env.insert("TELEPHONY_CALL_RATE_WINDOW".to_owned(), "10m".to_owned());
    let mut a = ServiceProcess::spawn_all(binary(), &env).await?;
    let b = ServiceProcess::spawn_all(binary(), &env).await?;
    let tokens = TestTokens::new();
    let traffic_a = traffic_on(&a, &tokens, &livekit, &twilio, &database_url).await?;
    let traffic_b = traffic_on(&b, &tokens, &livekit, &twilio, &database_url).await?;

    let seeds: Vec<String> = nats.urls().split(',').map(str::to_owned).collect();
    let js = jetstream::new(async_nats::connect(seeds.clone()).await?);
    let crm_org = Uuid::now_v7();
    let crm_host = Uuid::now_v7();
    let crm = tokio::spawn(publish_appointments(
        js.clone(),
        crm_org,
        crm_host,
        100,
        Duration::from_millis(120),
    ));
    let load_a = Load::start(&traffic_a, 2);
    let load_b = Load::start(&traffic_b, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Replica A of every service crashes and is started again.
    let a_before_crash = load_a.take();
    for process in &mut a {
        process.kill().await?;
    }
    let a_crashed = load_a.stop().await?;
    let a = ServiceProcess::spawn_all(binary(), &env).await?;
    let traffic_a = traffic_on(&a, &tokens, &livekit, &twilio, &database_url).await?;
    // Replica B's supervisor watches the live stream of replica A: the sessions B's traffic
    // starts on replica B must reach it.
    let watching = tokio_util::sync::CancellationToken::new();
    let monitoring_a = endpoints(&a)?.monitoring;
    let watcher = watch_sessions(
        reqwest::Client::new(),
        monitoring_a,
        tokens.for_principal(&traffic_b.ceo.principal()),
        watching.clone(),
    );
    let load_a = Load::start(&traffic_a, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A NATS node crashes and comes back (R3 streams keep their quorum meanwhile).
    nats.kill(0).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    nats.resume(0).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Postgres restarts.
    postgres.stop().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.resume().await?;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let a_after_restart = load_a.stop().await?;
    let b_samples = load_b.stop().await?;
    watching.cancel();
    let b_sessions_seen_on_a =
        sb_testkit::within(Duration::from_secs(10), "the live stream to end", watcher).await???;
    let b_sessions_started = b_samples
        .iter()
        .filter(|s| s.route == "POST /monitoring/sessions" && s.status == 201)
        .count();
    let appointments =
        sb_testkit::within(Duration::from_secs(60), "the CRM to publish", crm).await???;
    println!(
        "requests: replica A {} before its crash, {} while crashed, {} after its restart; \
         replica B {}",
        a_before_crash.len(),
        a_crashed.len(),
        a_after_restart.len(),
        b_samples.len()
    );
    println!(
        "monitoring: {b_sessions_started} sessions started on replica B, {b_sessions_seen_on_a} \
         seen in a live stream on replica A"
    );
    assert!(
        b_sessions_seen_on_a > 0 && b_sessions_started > 0,
        "replica A's live stream saw none of replica B's sessions"
    );
    assert_answered("replica A before its crash", &a_before_crash);
    assert_answered("replica A after its restart", &a_after_restart);
    assert_answered("replica B throughout", &b_samples);
    assert!(
        b_samples.len() >= 20 && a_after_restart.len() >= 10,
        "too little traffic to mean anything"
    );

    // Nothing lost or published twice, every consumer applied every event once.
    drained(&database_url, Duration::from_secs(90)).await?;
    let accounting = account(&database_url, &seeds[1], Duration::from_secs(30)).await?;
    println!("events: {accounting}");
    assert!(accounting.is_exact(), "{accounting}");
    let applied = applications(
        &database_url,
        &seeds[1],
        &CONSUMERS,
        Duration::from_secs(60),
    )
    .await?;
    for application in &applied {
        println!("consumer {application}");
        assert!(
            application.missing.is_empty() && application.unknown.is_empty(),
            "{application}: missing {:?}, unknown {:?}",
            application.missing,
            application.unknown
        );
        assert!(application.expected > 0, "{application}: no event to apply");
    }
    assert_eq!(dead_letters(&database_url).await?, 0, "dead letters");

    // The CRM's appointments: projected once each, one room each.
    let mut conn = AsyncPgConnection::establish(&database_url).await?;
    let projected: i64 = sb_db::schema::appointments::table
        .filter(sb_db::schema::appointments::id.eq_any(&appointments))
        .count()
        .get_result(&mut conn)
        .await?;
    assert_eq!(
        projected,
        appointments.len() as i64,
        "appointments projected"
    );
    let rooms: i64 = sb_db::schema::signaling_rooms::table
        .filter(sb_db::schema::signaling_rooms::appointment_id.eq_any(&appointments))
        .count()
        .get_result(&mut conn)
        .await?;
    assert_eq!(
        rooms,
        appointments.len() as i64,
        "one room per remote appointment"
    );

    // The replicas share the consumers' work: more appointments, read by both.
    let more = publish_appointments(js, crm_org, crm_host, 60, Duration::from_millis(30)).await?;
    let client = reqwest::Client::new();
    let signaling = |set: &[ServiceProcess]| {
        set.iter()
            .find(|p| p.name == "signaling")
            .map(|p| p.address.clone())
    };
    let (on_a, on_b) = (
        signaling(&a).ok_or("no signaling on A")?,
        signaling(&b).ok_or("no signaling on B")?,
    );
    sb_testkit::wait_until(
        Duration::from_secs(30),
        "the new appointments' rooms",
        || {
            let (database_url, more) = (database_url.clone(), more.clone());
            async move {
                let Ok(mut conn) = AsyncPgConnection::establish(&database_url).await else {
                    return false;
                };
                sb_db::schema::signaling_rooms::table
                    .filter(sb_db::schema::signaling_rooms::appointment_id.eq_any(&more))
                    .count()
                    .get_result::<i64>(&mut conn)
                    .await
                    .is_ok_and(|n| n == more.len() as i64)
            }
        },
    )
    .await?;
    let applied_a = applied_by(&client, &on_a, "signaling-appointments").await?;
    let applied_b = applied_by(&client, &on_b, "signaling-appointments").await?;
    println!("signaling-appointments applied: replica A {applied_a}, replica B {applied_b}");
    assert!(
        applied_a > 0 && applied_b > 0,
        "one replica did all the work: A {applied_a}, B {applied_b}"
    );

    // A per-user call limit counts across replicas: calls alternate between A and B.
    let org = Uuid::now_v7();
    let ceo = TestUser::new(org, Role::Ceo);
    let rep = TestUser::new(org, Role::Closer);
    let number = format!("+3314{:07}", Uuid::now_v7().as_u128() % 10_000_000);
    let telephony = |set: &[ServiceProcess]| {
        set.iter()
            .find(|p| p.name == "telephony")
            .map(|p| p.address.clone())
    };
    let telephony = [
        telephony(&a).ok_or("no telephony on A")?,
        telephony(&b).ok_or("no telephony on B")?,
    ];
    let assigned = client
        .put(format!("{}/api/numbers/{number}", telephony[0]))
        .bearer_auth(tokens.for_principal(&ceo.principal()))
        .json(&json!({"ownerUserId": rep.id}))
        .send()
        .await?;
    assert!(
        assigned.status().is_success(),
        "number: {}",
        assigned.status()
    );
    let mut statuses = Vec::new();
    for n in 0..=CALL_LIMIT {
        let answer = client
            .post(format!("{}/api/calls/initiate", telephony[n % 2]))
            .bearer_auth(tokens.for_principal(&rep.principal()))
            .json(&json!({"from": number, "to": "+33987654321"}))
            .send()
            .await?;
        statuses.push(answer.status().as_u16());
    }
    let mut expected = vec![201; CALL_LIMIT];
    expected.push(429);
    assert_eq!(statuses, expected, "calls alternating between the replicas");

    // A signaling room spans the replicas: the host on A ends the call, the guest on B hears it.
    let (signaling_a, signaling_b) = (endpoints(&a)?.signaling, endpoints(&b)?.signaling);
    for trial in 0..5 {
        let host = TestUser::new(traffic_a.org, Role::Closer);
        let guest = TestUser::new(traffic_a.org, Role::Member);
        let appointment = traffic_a.appointment(&host, Some(&guest)).await?;
        let (status, body) = traffic_a
            .send(
                "create room",
                client.post(format!(
                    "{signaling_a}/video-call/room/appointment/{appointment}/create"
                )),
                Some(&host),
            )
            .await;
        assert_eq!(status.status, 200, "{body}");
        let room = body["roomId"].as_str().ok_or("no roomId")?.to_owned();
        let mut on_a = SocketClient::connect(&signaling_a, &traffic_a.token(&host)).await?;
        on_a.emit("join-room", json!({"roomId": room})).await?;
        on_a.expect("joined-room").await?;
        let mut on_b = SocketClient::connect(&signaling_b, &traffic_a.token(&guest)).await?;
        on_b.emit("join-room", json!({"roomId": room})).await?;
        on_b.expect("joined-room").await?;
        on_a.emit("end-call", json!({"roomId": room})).await?;
        let ended = on_b
            .expect("call-ended")
            .await
            .map_err(|e| format!("trial {trial}: replica B's guest missed call-ended: {e}"))?;
        assert_eq!(ended["roomId"], json!(room), "trial {trial}");
    }

    for process in a.iter().chain(&b) {
        process.sigterm().await?;
    }
    for mut process in a.into_iter().chain(b) {
        process.wait().await?;
    }
    println!("run time {:?}", started.elapsed());
    Ok(())
}
