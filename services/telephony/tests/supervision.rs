//! Phone calls bridged through a per-call Twilio conference, and supervision inside it (issue
//! 19): the fake Twilio runs the conference (participants, callbacks signed to the service) and
//! says who hears whom; monitoring's session events are published to JetStream as monitoring
//! would. About 10 s in all.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    PUBLIC_BASE_URL, Telephone, TestTelephony, User, VoiceIdentity, inbound_form, params,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::proto::{
    MonitoringMode, MonitoringSessionModeChanged, MonitoringSessionStarted,
    MonitoringSessionStopped, MonitoringSessionTarget, MonitoringTarget, PhoneSupervisionFailed,
};
use sb_testkit::{Result, wait_until};
use serde_json::json;
use uuid::Uuid;

const FROM: &str = "+33123456789";
const TO: &str = "+33987654321";
const FORWARD: &str = "+33612345678";
const WAIT: Duration = Duration::from_secs(10);

struct Live {
    rep: User,
    call_id: String,
    rep_sid: String,
    customer_sid: String,
    conference: String,
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn participant_status(telephony: &TestTelephony, sid: &str) -> Result<Option<String>> {
    use sb_db::schema::telephony_conference_participants as p;
    let mut conn = telephony.db.conn().await?;
    Ok(p::table
        .find(sid)
        .select(p::status)
        .first(&mut conn)
        .await
        .optional()?)
}

async fn supervision_status(telephony: &TestTelephony, session: Uuid) -> Result<Option<String>> {
    use sb_db::schema::telephony_supervisions as s;
    let mut conn = telephony.db.conn().await?;
    Ok(s::table
        .find(session)
        .select(s::status)
        .first(&mut conn)
        .await
        .optional()?)
}

async fn wait_status(telephony: &TestTelephony, sid: &str, status: &str) -> Result {
    let reached = wait_until(WAIT, status, || async {
        participant_status(telephony, sid)
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some(status)
    })
    .await;
    if reached.is_err() {
        let last = participant_status(telephony, sid).await?;
        return Err(format!("{sid} never became {status} (it is {last:?})").into());
    }
    Ok(())
}

/// An outbound call answered by the rep's app and the customer, live in its conference.
async fn live_call(telephony: &TestTelephony) -> Result<Live> {
    telephony
        .twilio
        .deliver_to(PUBLIC_BASE_URL, &telephony.app.url(""));
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(&ceo, FROM, json!({"ownerUserId": rep.id}))
        .await?;
    let started = telephony
        .post(
            &rep,
            "/api/calls/initiate",
            &json!({"from": FROM, "to": TO}),
        )
        .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let call_id = started.body["callId"].as_str().ok_or("callId")?.to_owned();
    let rep_sid = started.body["sid"].as_str().ok_or("sid")?.to_owned();
    let twiml = telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[("CallSid", &rep_sid), ("CallStatus", "in-progress")]),
        )
        .await?;
    let conference = telephony
        .twilio
        .run_twiml(&rep_sid, &twiml.text)
        .ok_or("no <Conference> in the outbound TwiML")?;
    let customer_sid = telephony
        .twilio
        .conference(&conference)
        .and_then(|c| {
            c.participants
                .values()
                .find(|p| p.label.as_deref() == Some("customer"))
                .map(|p| p.call_sid.clone())
        })
        .ok_or("the customer was not added")?;
    telephony.twilio.answer(&customer_sid);
    wait_status(telephony, &rep_sid, "joined").await?;
    wait_status(telephony, &customer_sid, "joined").await?;
    Ok(Live {
        rep,
        call_id,
        rep_sid,
        customer_sid,
        conference,
    })
}

fn target(call_id: &str, supervisor: &User) -> MonitoringSessionTarget {
    MonitoringSessionTarget {
        kind: MonitoringTarget::PhoneCall as i32,
        call_id: call_id.to_owned(),
        room_name: String::new(),
        supervisor_address: format!("client:{}", supervisor.identity()),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn publish<E: sb_events::Event>(telephony: &TestTelephony, event: &E) -> Result {
    sb_events::publish::publish(
        &telephony.nats.jetstream(),
        &telephony.nats.namespace(),
        event,
    )
    .await?;
    Ok(())
}

fn supervisor_leg(
    telephony: &TestTelephony,
    conference: &str,
    session: Uuid,
) -> Option<sb_testkit::FakeParticipant> {
    let label = format!("supervisor_{}", session.simple());
    telephony.twilio.conference(conference).and_then(|c| {
        c.participants
            .values()
            .find(|p| p.label.as_deref() == Some(label.as_str()))
            .cloned()
    })
}

#[tokio::test]
async fn listen_coach_barge_and_stop_route_the_audio_as_twilio_does() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let live = live_call(&telephony).await?;
    let (rep, customer, conf) = (&live.rep_sid, &live.customer_sid, &live.conference);
    assert_eq!(telephony.twilio.hears(conf, rep), set(&[customer]));
    let supervisor = User::new(live.rep.org, Role::Manager);
    let session = Uuid::now_v7();
    let base = now_ms();
    let started = MonitoringSessionStarted {
        session_id: session.to_string(),
        org_id: live.rep.org.to_string(),
        supervisor_user_id: supervisor.id.to_string(),
        rep_user_id: live.rep.id.to_string(),
        mode: MonitoringMode::Listen as i32,
        started_at_unix_ms: base,
        target: Some(target(&live.call_id, &supervisor)),
    };
    publish(&telephony, &started).await?;
    wait_until(WAIT, "the supervisor's leg", || async {
        supervisor_leg(&telephony, conf, session).is_some()
    })
    .await?;
    let leg = supervisor_leg(&telephony, conf, session).ok_or("leg")?;
    let created = telephony
        .twilio
        .requests()
        .into_iter()
        .find(|r| r.param("Label") == Some(&format!("supervisor_{}", session.simple())))
        .ok_or("the create request")?;
    assert_eq!(
        created.path,
        format!(
            "/2010-04-01/Accounts/{}/Conferences/{conf}/Participants.json",
            telephony.twilio.account_sid
        )
    );
    assert_eq!(created.param("From"), Some(FROM));
    assert_eq!(
        created.param("To"),
        Some(format!("client:{}", supervisor.identity()).as_str())
    );
    assert_eq!(created.param("Muted"), Some("true"));
    assert_eq!(created.param("EndConferenceOnExit"), Some("false"));
    telephony.twilio.answer(&leg.call_sid);
    let sup = leg.call_sid.clone();
    wait_status(&telephony, &sup, "joined").await?;

    // Listen: the supervisor hears both, nobody hears the supervisor.
    assert_eq!(telephony.twilio.hears(conf, &sup), set(&[rep, customer]));
    assert_eq!(telephony.twilio.hears(conf, rep), set(&[customer]));
    assert_eq!(telephony.twilio.hears(conf, customer), set(&[rep]));

    // Coach: only the rep hears the supervisor.
    let mode =
        |mode: MonitoringMode, previous: MonitoringMode, at: i64| MonitoringSessionModeChanged {
            session_id: session.to_string(),
            org_id: live.rep.org.to_string(),
            supervisor_user_id: supervisor.id.to_string(),
            rep_user_id: live.rep.id.to_string(),
            previous_mode: previous as i32,
            mode: mode as i32,
            changed_at_unix_ms: at,
            target: Some(target(&live.call_id, &supervisor)),
        };
    publish(
        &telephony,
        &mode(MonitoringMode::Coach, MonitoringMode::Listen, base + 1000),
    )
    .await?;
    wait_until(WAIT, "coaching", || async {
        supervisor_leg(&telephony, conf, session).is_some_and(|p| p.coaching && !p.muted)
    })
    .await?;
    assert_eq!(
        supervisor_leg(&telephony, conf, session).and_then(|p| p.call_sid_to_coach),
        Some(rep.clone())
    );
    assert_eq!(telephony.twilio.hears(conf, rep), set(&[customer, &sup]));
    assert_eq!(telephony.twilio.hears(conf, customer), set(&[rep]));
    assert_eq!(telephony.twilio.hears(conf, &sup), set(&[rep, customer]));

    // A start delivered again and an older mode change change nothing.
    publish(&telephony, &started).await?;
    publish(
        &telephony,
        &mode(MonitoringMode::Listen, MonitoringMode::Listen, base + 500),
    )
    .await?;

    // Barge: everyone hears everyone.
    publish(
        &telephony,
        &mode(MonitoringMode::Barge, MonitoringMode::Coach, base + 2000),
    )
    .await?;
    wait_until(WAIT, "barging", || async {
        supervisor_leg(&telephony, conf, session).is_some_and(|p| !p.coaching && !p.muted)
    })
    .await?;
    assert_eq!(telephony.twilio.hears(conf, rep), set(&[customer, &sup]));
    assert_eq!(telephony.twilio.hears(conf, customer), set(&[rep, &sup]));
    assert_eq!(telephony.twilio.hears(conf, &sup), set(&[rep, customer]));

    // Stop: the supervisor is gone, the call goes on.
    publish(
        &telephony,
        &MonitoringSessionStopped {
            session_id: session.to_string(),
            org_id: live.rep.org.to_string(),
            supervisor_user_id: supervisor.id.to_string(),
            rep_user_id: live.rep.id.to_string(),
            started_at_unix_ms: base,
            stopped_at_unix_ms: base + 3000,
            duration_seconds: 3,
            target: Some(target(&live.call_id, &supervisor)),
        },
    )
    .await?;
    wait_until(WAIT, "the supervisor removed", || async {
        supervisor_leg(&telephony, conf, session).is_none()
    })
    .await?;
    wait_status(&telephony, &sup, "left").await?;
    assert_eq!(
        supervision_status(&telephony, session).await?.as_deref(),
        Some("stopped")
    );
    assert_eq!(telephony.twilio.hears(conf, rep), set(&[customer]));
    assert_eq!(telephony.twilio.hears(conf, customer), set(&[rep]));
    let creates = telephony
        .twilio
        .requests()
        .iter()
        .filter(|r| r.param("Label") == Some(&format!("supervisor_{}", session.simple())))
        .count();
    assert_eq!(creates, 1, "the supervisor was added once");
    // The stale mode change was skipped: one update per applied change (coach, barge).
    let updates = telephony
        .twilio
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/Participants/{sup}.json")))
        .count();
    assert_eq!(updates, 2);
    Ok(())
}

#[tokio::test]
async fn supervising_a_call_that_is_not_live_is_refused_and_announced() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let live = live_call(&telephony).await?;
    // The call ends: the customer hangs up and the conference ends with it.
    telephony.twilio.hang_up(&live.customer_sid);
    wait_status(&telephony, &live.rep_sid, "left").await?;
    let supervisor = User::new(live.rep.org, Role::Manager);
    let session = Uuid::now_v7();
    publish(
        &telephony,
        &MonitoringSessionStarted {
            session_id: session.to_string(),
            org_id: live.rep.org.to_string(),
            supervisor_user_id: supervisor.id.to_string(),
            rep_user_id: live.rep.id.to_string(),
            mode: MonitoringMode::Listen as i32,
            started_at_unix_ms: now_ms(),
            target: Some(target(&live.call_id, &supervisor)),
        },
    )
    .await?;
    // Another org's session naming this call is refused as well (the call is not theirs).
    let stranger = Uuid::now_v7();
    publish(
        &telephony,
        &MonitoringSessionStarted {
            session_id: stranger.to_string(),
            org_id: Uuid::now_v7().to_string(),
            supervisor_user_id: supervisor.id.to_string(),
            rep_user_id: live.rep.id.to_string(),
            mode: MonitoringMode::Barge as i32,
            started_at_unix_ms: now_ms(),
            target: Some(target(&live.call_id, &supervisor)),
        },
    )
    .await?;
    wait_until(WAIT, "both refusals announced", || async {
        telephony
            .events_of::<PhoneSupervisionFailed>("sb.telephony.supervision.failed")
            .await
            .is_ok_and(|e| e.len() == 2)
    })
    .await?;
    let failed: Vec<PhoneSupervisionFailed> = telephony
        .events_of("sb.telephony.supervision.failed")
        .await?;
    assert_eq!(failed[0].session_id, session.to_string());
    assert_eq!(failed[0].reason, "call_not_live");
    assert_eq!(failed[0].stage, "started");
    assert_eq!(failed[0].call_id, live.call_id);
    assert_eq!(failed[1].session_id, stranger.to_string());
    assert_eq!(
        supervision_status(&telephony, session).await?.as_deref(),
        Some("refused")
    );
    let supervisors = telephony
        .twilio
        .requests()
        .iter()
        .filter(|r| {
            r.param("Label")
                .is_some_and(|l| l.starts_with("supervisor_"))
        })
        .count();
    assert_eq!(supervisors, 0, "Twilio was not asked");
    Ok(())
}

#[tokio::test]
async fn conference_callbacks_are_signed_verified_and_applied_once() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let live = live_call(&telephony).await?;
    let path = format!("/webhook/voice/conference?callId={}", live.call_id);
    let stranger = sb_testkit::twilio_sid("CA");
    let join = params(&[
        ("ConferenceSid", &live.conference),
        (
            "FriendlyName",
            &format!("call_{}", Uuid::parse_str(&live.call_id)?.simple()),
        ),
        ("StatusCallbackEvent", "participant-join"),
        ("CallSid", &stranger),
        ("ParticipantLabel", "customer"),
    ]);
    for signature in [None, Some("bm90IGEgc2lnbmF0dXJl")] {
        let refused = telephony.webhook_signed(&path, &join, signature).await?;
        assert_eq!(refused.status, 403, "{}", refused.text);
    }
    assert_eq!(participant_status(&telephony, &stranger).await?, None);
    for _ in 0..2 {
        let applied = telephony.webhook(&path, &join).await?;
        assert_eq!(applied.status, 200, "{}", applied.text);
    }
    assert_eq!(
        participant_status(&telephony, &stranger).await?.as_deref(),
        Some("joined")
    );
    let mut leave = join.clone();
    leave[2].1 = "participant-leave".to_owned();
    telephony.webhook(&path, &leave).await?;
    // A late join does not bring a leg that left back.
    telephony.webhook(&path, &join).await?;
    assert_eq!(
        participant_status(&telephony, &stranger).await?.as_deref(),
        Some("left")
    );
    let metrics = telephony.metrics().await?;
    assert!(
        metrics.contains("outcome=\"rejected\",webhook=\"/webhook/voice/conference\"} 2"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_outbound_customer_who_does_not_answer_ends_the_reps_leg() -> Result {
    let telephony = TestTelephony::spawn().await?;
    telephony
        .twilio
        .deliver_to(PUBLIC_BASE_URL, &telephony.app.url(""));
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(&ceo, FROM, json!({"ownerUserId": rep.id}))
        .await?;
    let started = telephony
        .post(
            &rep,
            "/api/calls/initiate",
            &json!({"from": FROM, "to": TO}),
        )
        .await?;
    let call_id = started.body["callId"].as_str().ok_or("callId")?.to_owned();
    let rep_sid = started.body["sid"].as_str().ok_or("sid")?.to_owned();
    let twiml = telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[("CallSid", &rep_sid), ("CallStatus", "in-progress")]),
        )
        .await?;
    let conference = telephony
        .twilio
        .run_twiml(&rep_sid, &twiml.text)
        .ok_or("conference")?;
    let customer = telephony
        .twilio
        .conference(&conference)
        .and_then(|c| {
            c.participants
                .values()
                .find(|p| p.label.as_deref() == Some("customer"))
                .map(|p| p.call_sid.clone())
        })
        .ok_or("customer")?;
    telephony.twilio.fail_leg(&customer, "no-answer");
    wait_until(WAIT, "the rep's leg hung up", || async {
        telephony.twilio.requests().iter().any(|r| {
            r.path.ends_with(&format!("/Calls/{rep_sid}.json"))
                && r.param("Status") == Some("completed")
        })
    })
    .await?;
    let call = telephony
        .get(&rep, &format!("/api/calls/{call_id}"))
        .await?;
    assert_eq!(call.body["dialStatus"], "no-answer", "{}", call.text);
    Ok(())
}

#[tokio::test]
async fn inbound_callers_wait_in_the_conference_and_reach_voicemail_when_nobody_answers() -> Result
{
    let telephony = TestTelephony::spawn().await?;
    telephony
        .twilio
        .deliver_to(PUBLIC_BASE_URL, &telephony.app.url(""));
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(
            &ceo,
            FROM,
            json!({"ownerUserId": rep.id, "forwardTo": FORWARD}),
        )
        .await?;
    let caller = "+447911123456";

    // Answered on the app: the forward number stops ringing.
    let sid = common::call_sid();
    let twiml = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, caller, FROM))
        .await?;
    let conference = telephony
        .twilio
        .run_twiml(&sid, &twiml.text)
        .ok_or("conference")?;
    let legs = telephony
        .twilio
        .conference(&conference)
        .ok_or("conference")?
        .participants;
    let app = legs
        .values()
        .find(|p| p.label.as_deref() == Some("rep"))
        .ok_or("app leg")?
        .call_sid
        .clone();
    let phone = legs
        .values()
        .find(|p| p.label.as_deref() == Some("rep_forward"))
        .ok_or("phone leg")?
        .call_sid
        .clone();
    telephony.twilio.answer(&app);
    wait_until(WAIT, "the forward leg removed", || async {
        telephony.twilio.requests().iter().any(|r| {
            r.method == "DELETE" && r.path.ends_with(&format!("/Participants/{phone}.json"))
        })
    })
    .await?;
    assert_eq!(telephony.twilio.hears(&conference, &app), set(&[&sid]));
    assert_eq!(telephony.twilio.hears(&conference, &sid), set(&[&app]));

    // Nobody answers: the caller is sent to voicemail.
    let sid = common::call_sid();
    let twiml = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, caller, FROM))
        .await?;
    let conference = telephony
        .twilio
        .run_twiml(&sid, &twiml.text)
        .ok_or("conference")?;
    for leg in telephony
        .twilio
        .conference(&conference)
        .ok_or("conference")?
        .participants
        .values()
    {
        if leg.call_sid != sid {
            telephony.twilio.fail_leg(&leg.call_sid, "no-answer");
        }
    }
    wait_until(WAIT, "the caller redirected", || async {
        telephony.twilio.redirects().iter().any(|(s, _)| s == &sid)
    })
    .await?;
    let redirects = telephony.twilio.redirects();
    let (_, url) = redirects
        .iter()
        .find(|(s, _)| s == &sid)
        .ok_or("redirect")?;
    let path = url.strip_prefix(PUBLIC_BASE_URL).ok_or("our URL")?;
    let voicemail = telephony
        .webhook(
            path,
            &params(&[("CallSid", &sid), ("CallStatus", "in-progress")]),
        )
        .await?;
    assert!(voicemail.text.contains("<Record"), "{}", voicemail.text);
    Ok(())
}
