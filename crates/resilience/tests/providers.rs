//! LiveKit or Twilio slow (5 s) or failing: our endpoints answer within their budget with clear
//! problem+json errors, and once the provider is back a retry or a job settles the state.

mod common;

use std::time::{Duration, Instant};

use common::Result;
use sb_auth::Role;
use sb_resilience::Stack;
use sb_testkit::{PrivateDeps, TestUser};
use serde_json::{Value, json};

/// `LIVEKIT_TIMEOUT` and `TWILIO_TIMEOUT` of the stack (see `service_env`).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling noise on a shared 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);
const SLOW: Duration = Duration::from_secs(5);

async fn production_stack(deps: &PrivateDeps) -> Result<Stack> {
    Ok(
        Stack::start(&deps.postgres.url("switchboard"), &deps.nats.url(), |env| {
            // The production path: a LiveKit failure is an error, not a development shortcut.
            env.insert("APP_ENV".into(), "production".into());
            env.insert("TELEPHONY_FOLLOWUP_FIRST_DELAY".into(), "1s".into());
        })
        .await?,
    )
}

fn assert_problem(what: &str, status: u16, body: &Value, expected_status: u16, elapsed: Duration) {
    assert_eq!(status, expected_status, "{what}: {body}");
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: no problem code in {body}"
    );
    assert!(
        body["detail"].as_str().is_some() || body["title"].as_str().is_some(),
        "{what}: {body}"
    );
    assert!(
        elapsed <= PROVIDER_TIMEOUT + MARGIN,
        "{what} took {elapsed:?}, over the {PROVIDER_TIMEOUT:?} budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_or_failing_livekit_answers_503_in_budget_and_a_retry_succeeds() -> Result {
    let deps = PrivateDeps::start().await?;
    let stack = production_stack(&deps).await?;
    let traffic = stack.traffic(Duration::from_secs(15)).await?;
    let host = TestUser::new(traffic.org, Role::Closer);

    for (what, slow) in [("slow LiveKit", true), ("failing LiveKit", false)] {
        let appointment = traffic.appointment(&host, None).await?;
        if slow {
            stack.livekit.set_latency(SLOW);
        } else {
            stack.livekit.fail("CreateRoom", "unavailable", 1);
        }
        let started = Instant::now();
        let (sample, _) = traffic.join(&host, appointment).await;
        let elapsed = started.elapsed();
        stack.livekit.set_latency(Duration::ZERO);
        println!("{what}: {} {:?} in {elapsed:?}", sample.status, sample.code);
        assert_problem(
            what,
            sample.status,
            &json!({"code": sample.code, "detail": ""}),
            503,
            elapsed,
        );
        // Nothing half-made: the call was rolled back with the room it could not create.
        assert_eq!(
            calls_of(&deps, appointment).await?,
            0,
            "{what}: a call outlived its failed room"
        );
        // LiveKit is back: the same join succeeds, with one call and its room.
        let path = format!("/calls/appointments/{appointment}/join");
        let (status, body) = stack
            .video
            .post_json(&traffic.token(&host), &path, &json!({}))
            .await?;
        assert_eq!(status, 200, "{what} retry: {body}");
        let room = body["roomName"].as_str().ok_or("no roomName")?;
        assert!(
            stack.livekit.rooms().iter().any(|r| r.name == room),
            "{what}: the room was not created on retry"
        );
        assert_eq!(calls_of(&deps, appointment).await?, 1, "{what}");
    }
    stack.stop().await?;
    Ok(())
}

/// Calls of `appointment` in the database.
async fn calls_of(deps: &PrivateDeps, appointment: uuid::Uuid) -> Result<i64> {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use sb_db::schema::video_calls;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(&deps.postgres.url("switchboard")).await?;
    Ok(video_calls::table
        .filter(video_calls::appointment_id.eq(appointment))
        .count()
        .get_result(&mut conn)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_or_failing_twilio_answers_in_budget_and_the_price_job_catches_up() -> Result {
    let deps = PrivateDeps::start().await?;
    let stack = production_stack(&deps).await?;
    let traffic = stack.traffic(Duration::from_secs(15)).await?;
    // The number's owner places calls from it.
    let number: Value = stack
        .telephony
        .get_json(
            &traffic.token(&traffic.ceo),
            &format!("/api/numbers/{}", traffic.number),
        )
        .await?
        .1;
    let owner = TestUser {
        id: number["ownerUserId"].as_str().ok_or("no owner")?.parse()?,
        ..TestUser::new(traffic.org, Role::Closer)
    };
    let token = traffic.token(&owner);
    let initiate = json!({"from": traffic.number, "to": "+33987654321"});

    // Slow: 503 provider_unavailable within the budget, the call kept INITIATED.
    stack.twilio.set_latency(SLOW);
    let started = Instant::now();
    let (status, body) = stack
        .telephony
        .post_json(&token, "/api/calls/initiate", &initiate)
        .await?;
    assert_problem("slow Twilio", status, &body, 503, started.elapsed());
    assert_eq!(body["code"], "provider_unavailable", "{body}");
    stack.twilio.set_latency(Duration::ZERO);

    // Failing with a 500: 503 as well (Twilio's outage, not a refusal of this call).
    stack.twilio.fail_next_creates(500, 1);
    let started = Instant::now();
    let (status, body) = stack
        .telephony
        .post_json(&token, "/api/calls/initiate", &initiate)
        .await?;
    println!("failing Twilio: {status} {body}");
    assert!(status == 503 || status == 502, "{body}");
    assert_problem("failing Twilio", status, &body, status, started.elapsed());

    // A call completes while Twilio has no price yet and then answers slowly: the job keeps
    // trying and stores the price once Twilio answers in time.
    let (status, placed) = stack
        .telephony
        .post_json(&token, "/api/calls/initiate", &initiate)
        .await?;
    assert_eq!(status, 201, "{placed}");
    let id = placed["callId"].as_str().ok_or("no callId")?.to_owned();
    let sid = placed["sid"].as_str().ok_or("no sid")?.to_owned();
    let path = format!("/webhook/voice/status?callId={id}");
    for (state, sequence) in [("ringing", "1"), ("in-progress", "2"), ("completed", "3")] {
        let form: Vec<(String, String)> = [
            ("CallSid", sid.as_str()),
            ("CallStatus", state),
            ("SequenceNumber", sequence),
            ("CallDuration", "42"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sample = traffic.twilio_webhook("status", &path, &form).await;
        assert_eq!(sample.status, 200, "{state}: {sample:?}");
    }
    stack.twilio.end_call(&sid, "completed", 42);
    stack.twilio.set_latency(SLOW);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let view = stack
        .telephony
        .get_json(&token, &format!("/api/calls/{id}"))
        .await?
        .1;
    assert_eq!(view["costStatus"], "PENDING", "{view}");
    stack.twilio.set_price(&sid, "-0.01750", "USD");
    stack.twilio.set_latency(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let (_, view) = stack
            .telephony
            .get_json(&token, &format!("/api/calls/{id}"))
            .await?;
        if view["costStatus"] == "KNOWN" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the price job never caught up: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last["price"], "-0.01750");
    assert_eq!(
        last["status"].as_str().map(str::to_lowercase),
        Some("completed".to_owned())
    );
    stack.stop().await?;
    Ok(())
}
