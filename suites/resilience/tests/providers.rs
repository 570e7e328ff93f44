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

/// `GET /calls/{id}` as `host`, timed.
async fn call_view(stack: &Stack, token: &str, call: &str) -> Result<(u16, Value, Duration)> {
    let started = Instant::now();
    let (status, body) = stack
        .video
        .get_json(token, &format!("/calls/{call}"))
        .await?;
    Ok((status, body, started.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_livekit_keeps_video_reconcile_bounded_and_http_answering_and_it_catches_up() -> Result
{
    let deps = PrivateDeps::start().await?;
    let stack = Stack::start(&deps.postgres.url("switchboard"), &deps.nats.url(), |env| {
        env.insert("APP_ENV".into(), "production".into());
        // A call is reconciled as soon as its room is seen empty.
        env.insert("VIDEO_EMPTY_ROOM_GRACE".into(), "0s".into());
    })
    .await?;
    let traffic = stack.traffic(Duration::from_secs(15)).await?;

    // Three ongoing calls whose hosts are in their rooms: the job leaves them alone.
    let mut calls = Vec::new();
    for _ in 0..3 {
        let host = TestUser::new(traffic.org, Role::Closer);
        let appointment = traffic.appointment(&host, None).await?;
        let (sample, call) = traffic.join(&host, appointment).await;
        assert_eq!(sample.status, 200, "{sample:?}");
        let (call, room) = call.ok_or("no call")?;
        let identity = format!("u_{}", host.id);
        stack.livekit.join(&room, &identity, "Host");
        let joined = traffic.participant_joined(&room, &identity).await;
        assert_eq!(joined.status, 200, "{joined:?}");
        calls.push((traffic.token(&host), call, room, identity));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (token, call, ..) in &calls {
        let (status, body, _) = call_view(&stack, token, call).await?;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("ONGOING")),
            "{body}"
        );
    }

    // LiveKit slows down, and the hosts leave without a participant_left reaching us.
    stack.livekit.set_latency(SLOW);
    for (_, _, room, identity) in &calls {
        stack.livekit.leave(room, identity);
    }
    // One pass with the service's configuration, next to the service's own job: it ends after
    // about one LiveKit timeout, not one per call, and concludes nothing.
    let config = sb_video::VideoConfig::from_env(&sb_platform::Env::new(&stack.env))?;
    let state = sb_video::state_for_tests(config)?;
    let started = Instant::now();
    let pass = tokio::spawn(async move { sb_video::reconcile_once(&state).await });
    // Meanwhile HTTP answers at once.
    for (token, call, ..) in &calls {
        let (status, body, took) = call_view(&stack, token, call).await?;
        assert_eq!(status, 200, "{body}");
        assert!(
            took < Duration::from_secs(1),
            "GET /calls/{{id}} took {took:?} while the job waited on LiveKit"
        );
    }
    let outcome = sb_testkit::within(Duration::from_secs(30), "the reconcile pass", pass).await??;
    let took = started.elapsed();
    println!("reconcile pass with LiveKit slow: {outcome:?} in {took:?}");
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.to_string().contains("LiveKit")),
        "a pass that could not reach LiveKit must say so: {outcome:?}"
    );
    assert!(
        took <= PROVIDER_TIMEOUT + MARGIN,
        "the pass took {took:?} over {} calls: LiveKit's timeout once per call",
        calls.len()
    );
    for (token, call, ..) in &calls {
        let (_, body, _) = call_view(&stack, token, call).await?;
        assert_eq!(
            body["status"], "ONGOING",
            "concluded without LiveKit: {body}"
        );
    }

    // LiveKit is back: the service's own job completes the three calls.
    stack.livekit.set_latency(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    for (token, call, ..) in &calls {
        loop {
            let (_, body, _) = call_view(&stack, token, call).await?;
            if body["status"] == "COMPLETED" {
                assert_eq!(body["endReason"], "reconciled", "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the job never reconciled the call: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stack.stop().await?;
    Ok(())
}

/// Rows of `monitoring_audit` for `session` with `action`.
async fn audit_rows(deps: &PrivateDeps, session: uuid::Uuid, action: &str) -> Result<i64> {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use sb_db::schema::monitoring_audit;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(&deps.postgres.url("switchboard")).await?;
    Ok(monitoring_audit::table
        .filter(monitoring_audit::session_id.eq(session))
        .filter(monitoring_audit::action.eq(action))
        .count()
        .get_result(&mut conn)
        .await?)
}

/// Rows of `monitoring_reps` for `user`.
async fn rep_rows(deps: &PrivateDeps, user: uuid::Uuid) -> Result<i64> {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use sb_db::schema::monitoring_reps;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(&deps.postgres.url("switchboard")).await?;
    Ok(monitoring_reps::table
        .filter(monitoring_reps::user_id.eq(user))
        .count()
        .get_result(&mut conn)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_livekit_on_monitoring_answers_503_in_budget_writes_nothing_and_recovers() -> Result {
    let deps = PrivateDeps::start().await?;
    let stack = Stack::start(&deps.postgres.url("switchboard"), &deps.nats.url(), |env| {
        env.insert("APP_ENV".into(), "production".into());
        env.insert("MONITORING_RECONCILE_INTERVAL".into(), "1s".into());
    })
    .await?;
    let traffic = stack.traffic(Duration::from_secs(15)).await?;
    let ceo = traffic.token(&traffic.ceo);
    let rep = TestUser::new(traffic.org, Role::Closer);

    // The rep's room cannot be created: 503 in budget, and no rep row.
    stack.livekit.set_latency(SLOW);
    let started = Instant::now();
    let (status, body) = stack
        .monitoring
        .post_empty(&traffic.token(&rep), "/monitoring/rep/session")
        .await?;
    assert_problem(
        "slow LiveKit: rep session",
        status,
        &body,
        503,
        started.elapsed(),
    );
    assert_eq!(body["code"], "livekit_unavailable", "{body}");
    assert_eq!(
        rep_rows(&deps, rep.id).await?,
        0,
        "a rep stored without a room"
    );

    // LiveKit back: the rep comes online, the CEO starts listening and connects.
    stack.livekit.set_latency(Duration::ZERO);
    let (samples, room) = traffic.rep_online(&rep).await;
    assert!(samples.iter().all(|s| s.status == 200), "{samples:?}");
    let room = room.ok_or("no rep room")?;
    let (status, body) = stack
        .monitoring
        .post_json(&ceo, "/monitoring/sessions", &json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let id: uuid::Uuid = body["session"]["id"].as_str().ok_or("no id")?.parse()?;
    let supervisor = body["participantName"]
        .as_str()
        .ok_or("no participantName")?
        .to_owned();
    stack.livekit.join(&room, &supervisor, "CEO");

    // Slow LiveKit: pausing and coaching change the supervisor's grants in LiveKit first, so
    // both are 503 in budget and the session stays as it was, with no audit row.
    stack.livekit.set_latency(SLOW);
    for (path, change, body) in [
        (
            format!("/monitoring/sessions/{id}/pause"),
            "pause",
            json!({}),
        ),
        (
            format!("/monitoring/sessions/{id}/mode"),
            "mode_change",
            json!({"mode": "coach"}),
        ),
    ] {
        let started = Instant::now();
        let (status, answer) = stack.monitoring.post_json(&ceo, &path, &body).await?;
        assert_problem(change, status, &answer, 503, started.elapsed());
        assert_eq!(answer["code"], "livekit_unavailable", "{answer}");
        assert_eq!(audit_rows(&deps, id, change).await?, 0, "{change} audited");
    }
    let (_, view) = stack
        .monitoring
        .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
        .await?;
    assert_eq!(
        (&view["status"], &view["mode"]),
        (&json!("ACTIVE"), &json!("listen")),
        "{view}"
    );

    // Stopping is the supervisor's right whatever LiveKit does: STOPPED within the budget.
    let started = Instant::now();
    let (status, view) = stack
        .monitoring
        .post_json(&ceo, &format!("/monitoring/sessions/{id}/stop"), &json!({}))
        .await?;
    let took = started.elapsed();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "STOPPED", "{view}");
    assert!(took <= PROVIDER_TIMEOUT + MARGIN, "stop took {took:?}");
    stack.livekit.set_latency(Duration::ZERO);
    let present = |who: &str| {
        stack
            .livekit
            .participants(&room)
            .iter()
            .any(|p| p.identity == who)
    };
    let removals = || {
        stack
            .livekit
            .calls()
            .iter()
            .filter(|c| c.method == "RemoveParticipant")
            .count()
    };

    // LiveKit back: a new session works, and pausing it too.
    let (status, body) = stack
        .monitoring
        .post_json(&ceo, "/monitoring/sessions", &json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let again = body["session"]["id"].as_str().ok_or("no id")?.to_owned();
    let (status, view) = stack
        .monitoring
        .post_json(
            &ceo,
            &format!("/monitoring/sessions/{again}/pause"),
            &json!({}),
        )
        .await?;
    assert_eq!((status, &view["status"]), (200, &json!("PAUSED")), "{view}");

    // A stop whose removal LiveKit refuses (unavailable): the session is STOPPED, but the
    // supervisor is still connected and listening. The job takes them out once LiveKit answers.
    // (The slow removal of the first stop lands late, like a slow server's would: wait for it.)
    sb_testkit::wait_until(
        SLOW + Duration::from_secs(5),
        "the first removal",
        || async { !present(&supervisor) },
    )
    .await?;
    stack.livekit.join(&room, &supervisor, "CEO");
    stack.livekit.fail("RemoveParticipant", "unavailable", 1);
    let before = removals();
    let (status, view) = stack
        .monitoring
        .post_json(
            &ceo,
            &format!("/monitoring/sessions/{again}/stop"),
            &json!({}),
        )
        .await?;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("STOPPED")),
        "{view}"
    );
    assert!(
        present(&supervisor),
        "the refused removal removed the supervisor"
    );
    sb_testkit::wait_until(
        Duration::from_secs(20),
        "the job removing the supervisor",
        || async { !present(&supervisor) },
    )
    .await?;
    assert!(removals() > before, "removed without RemoveParticipant");
    assert!(
        present(&format!("rep_{}", rep.id)),
        "the rep was removed too"
    );
    stack.stop().await?;
    Ok(())
}
