//! After a call: the follow-up job fetches the price (with backoff, giving up after a while) and
//! the Voice Insights summary, recovers calls whose status callbacks were lost, and fails calls
//! Twilio never confirmed; the app reports quality samples; degraded quality is announced once.

mod common;

use std::time::Duration;

use common::{Telephone, TestTelephony, User, params};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::proto::{CallQualityDegraded, PhoneCallCompleted, PhoneCallStatus};
use sb_telephony::followup_once;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

const FROM: &str = "+33123456789";
const TO: &str = "+33987654321";

struct Placed {
    id: String,
    sid: String,
    path: String,
}

async fn rep(telephony: &TestTelephony) -> Result<User> {
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(&ceo, FROM, json!({"ownerUserId": rep.id}))
        .await?;
    Ok(rep)
}

async fn place(telephony: &TestTelephony, rep: &User) -> Result<Placed> {
    let started = telephony
        .post(rep, "/api/calls/initiate", &json!({"from": FROM, "to": TO}))
        .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let id = started.body["callId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Placed {
        sid: started.body["sid"].as_str().unwrap_or_default().to_owned(),
        path: format!("/webhook/voice/status?callId={id}"),
        id,
    })
}

async fn report(
    telephony: &TestTelephony,
    call: &Placed,
    status: &str,
    extra: &[(&str, &str)],
) -> Result {
    let mut form = params(&[("CallSid", &call.sid), ("CallStatus", status)]);
    form.extend(params(extra));
    let answer = telephony.webhook(&call.path, &form).await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    Ok(())
}

/// A call that rang, was answered and completed after `duration` seconds.
async fn completed_call(telephony: &TestTelephony, rep: &User, duration: u32) -> Result<Placed> {
    let call = place(telephony, rep).await?;
    report(telephony, &call, "ringing", &[("SequenceNumber", "1")]).await?;
    report(telephony, &call, "in-progress", &[("SequenceNumber", "2")]).await?;
    let duration_text = duration.to_string();
    report(
        telephony,
        &call,
        "completed",
        &[("SequenceNumber", "3"), ("CallDuration", &duration_text)],
    )
    .await?;
    telephony.twilio.end_call(&call.sid, "completed", duration);
    Ok(call)
}

#[tokio::test]
async fn the_price_is_fetched_with_backoff_until_twilio_sets_it() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = rep(&telephony).await?;
    let call = completed_call(&telephony, &rep, 42).await?;
    let completed: Vec<PhoneCallCompleted> =
        telephony.events_of("sb.telephony.call.completed").await?;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].duration_seconds, 42);
    assert_eq!(completed[0].status, PhoneCallStatus::Completed as i32);
    assert_eq!(completed[0].price, "", "Twilio has not priced it yet");
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["costStatus"], "PENDING");
    assert_eq!(view["price"], Value::Null);

    let state = telephony.state().await?;
    for _ in 0..3 {
        let pass = followup_once(&state).await?;
        assert_eq!(pass.prices_stored, 0);
    }
    let fetches = |telephony: &TestTelephony| {
        telephony
            .twilio
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/Calls/{}.json", call.sid)))
            .count()
    };
    assert_eq!(fetches(&telephony), 3, "one fetch per due attempt");

    telephony.twilio.set_price(&call.sid, "-0.01750", "USD");
    let pass = followup_once(&state).await?;
    assert_eq!(pass.prices_stored, 1);
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["price"], "-0.01750");
    assert_eq!(view["priceUnit"], "USD");
    assert_eq!(view["costStatus"], "KNOWN");
    // Done: the job does not ask again.
    followup_once(&state).await?;
    assert_eq!(fetches(&telephony), 4);

    // With a real first delay the next attempt waits (the backoff is stored, not slept).
    let patient =
        TestTelephony::spawn_with(|c| c.followup.first_delay = Duration::from_secs(30)).await?;
    let rep = self::rep(&patient).await?;
    completed_call(&patient, &rep, 5).await?;
    let pass = followup_once(&patient.state().await?).await?;
    assert_eq!(pass, sb_telephony::FollowupReport::default());
    assert!(
        patient.twilio.requests().iter().all(|r| r.method == "POST"),
        "nothing fetched before it is due"
    );
    Ok(())
}

#[tokio::test]
async fn a_price_in_a_status_callback_is_kept_and_announced() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = rep(&telephony).await?;
    let call = place(&telephony, &rep).await?;
    report(
        &telephony,
        &call,
        "completed",
        &[
            ("CallDuration", "7"),
            ("Price", "-0.0085"),
            ("PriceUnit", "EUR"),
        ],
    )
    .await?;
    let completed: Vec<PhoneCallCompleted> =
        telephony.events_of("sb.telephony.call.completed").await?;
    assert_eq!(
        (
            completed[0].price.as_str(),
            completed[0].price_unit.as_str()
        ),
        ("-0.0085", "EUR")
    );
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["costStatus"], "KNOWN");
    Ok(())
}

#[tokio::test]
async fn the_job_gives_up_on_a_price_after_the_configured_time() -> Result {
    let telephony =
        TestTelephony::spawn_with(|c| c.followup.cost_give_up_after = Duration::ZERO).await?;
    let rep = rep(&telephony).await?;
    let call = completed_call(&telephony, &rep, 10).await?;
    let pass = followup_once(&telephony.state().await?).await?;
    assert_eq!(pass.prices_given_up, 1);
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["costStatus"], "GAVE_UP");
    Ok(())
}

fn summary(state: &str, jitter: f64, loss: f64) -> Value {
    json!({
        "account_sid": "AC0123456789abcdef0123456789abcdef",
        "call_type": "carrier",
        "call_state": "completed",
        "processing_state": state,
        "carrier_edge": {
            "properties": {"direction": "outbound", "media_region": "ie1"},
            "metrics": {
                "inbound": {"codec": 0, "codec_name": "pcmu", "packets_received": 3000, "packets_lost": 3, "packets_loss_percentage": 0.1, "jitter": {"avg": 2.0, "max": 8.0}},
                "outbound": {"codec": 0, "codec_name": "pcmu", "packets_sent": 3000, "packets_lost": 0, "packets_loss_percentage": loss, "jitter": {"avg": jitter, "max": jitter * 2.0}, "latency": {"avg": 80.0, "max": 120.0}}
            }
        },
        "tags": []
    })
}

#[tokio::test]
async fn voice_insights_summaries_are_stored_and_degraded_quality_is_announced() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = rep(&telephony).await?;
    let call = completed_call(&telephony, &rep, 60).await?;
    let state = telephony.state().await?;
    // No summary yet: asked again later.
    assert_eq!(followup_once(&state).await?.quality_stored, 0);
    let quality = telephony
        .get(&rep, &format!("/api/calls/{}/quality", call.id))
        .await?;
    assert_eq!(quality.status, 200);
    assert_eq!(quality.body["source"], Value::Null);
    assert_eq!(quality.body["mos"], Value::Null);

    // A partial summary within its thresholds, then the complete one, degraded.
    telephony
        .twilio
        .set_summary(&call.sid, summary("partial", 4.0, 0.5));
    assert_eq!(followup_once(&state).await?.quality_stored, 1);
    let quality = telephony
        .get(&rep, &format!("/api/calls/{}/quality", call.id))
        .await?
        .body;
    assert_eq!(quality["source"], "insights");
    assert_eq!(quality["jitter"], 4.0);
    assert_eq!(quality["packetLoss"], 0.5);
    assert_eq!(quality["latency"], 80.0);
    assert_eq!(quality["codec"], "pcmu");
    assert_eq!(quality["mosEstimated"], true);
    assert_eq!(quality["degraded"], false);
    assert!(
        telephony
            .events_of::<CallQualityDegraded>("sb.telephony.quality.degraded")
            .await?
            .is_empty()
    );

    telephony
        .twilio
        .set_summary(&call.sid, summary("complete", 45.0, 4.5));
    assert_eq!(followup_once(&state).await?.quality_stored, 1);
    let quality = telephony
        .get(&rep, &format!("/api/calls/{}/quality", call.id))
        .await?
        .body;
    assert_eq!(quality["jitter"], 45.0);
    assert_eq!(quality["degraded"], true);
    let degraded: Vec<CallQualityDegraded> =
        telephony.events_of("sb.telephony.quality.degraded").await?;
    assert_eq!(degraded.len(), 1);
    assert_eq!(degraded[0].call_sid, call.sid);
    assert_eq!(degraded[0].jitter_ms, 45.0);
    assert_eq!(degraded[0].packet_loss_percent, 4.5);
    assert_eq!(degraded[0].user_id, rep.id.to_string());
    // Complete: never fetched again.
    assert_eq!(followup_once(&state).await?.quality_stored, 0);
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["qualityDegraded"], true);
    Ok(())
}

#[tokio::test]
async fn the_app_reports_quality_samples_and_degradation_is_announced_once() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = rep(&telephony).await?;
    let manager = User::new(rep.org, Role::Manager);
    let call = place(&telephony, &rep).await?;
    let path = format!("/api/calls/{}/quality", call.id);
    let good = telephony
        .post(
            &rep,
            &path,
            &json!({"jitter": 12.5, "latency": 45, "packetLoss": 0.2, "mos": 4.2, "codec": "opus"}),
        )
        .await?;
    assert_eq!(good.status, 201, "{}", good.text);
    assert_eq!(good.body["source"], "sdk");
    assert_eq!(good.body["samples"], 1);
    assert_eq!(good.body["mos"], 4.2);
    assert_eq!(good.body["degraded"], false);
    for _ in 0..2 {
        let bad = telephony
            .post(
                &rep,
                &path,
                &json!({"jitter": 80.0, "latency": 300, "packetLoss": 9.0, "codec": "opus"}),
            )
            .await?;
        assert_eq!(bad.status, 201, "{}", bad.text);
    }
    let summary = telephony.get(&rep, &path).await?.body;
    assert_eq!(summary["samples"], 3);
    assert_eq!(summary["degraded"], true, "{summary}");
    assert!(
        summary["mos"].as_f64().is_some_and(|mos| mos < 3.5),
        "{summary}"
    );
    let degraded: Vec<CallQualityDegraded> =
        telephony.events_of("sb.telephony.quality.degraded").await?;
    assert_eq!(degraded.len(), 1, "once per call");
    assert!(
        telephony
            .metrics()
            .await?
            .contains("sb_telephony_quality_degraded_total{source=\"sdk\"} 1")
    );

    for body in [
        json!({"packetLoss": 101}),
        json!({"mos": 0.5}),
        json!({"jitter": -1}),
        json!({"codec": "opus"}),
        json!({"jitter": 1, "codec": ""}),
        json!({"jitter": 1, "loudness": 3}),
    ] {
        let refused = telephony.post(&rep, &path, &body).await?;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
    }
    // Only the rep on the call reports; their manager may read.
    let refused = telephony
        .post(&manager, &path, &json!({"jitter": 1}))
        .await?;
    assert_eq!(refused.status, 403);
    let outsider = User::new(Uuid::now_v7(), Role::Closer);
    assert_eq!(telephony.get(&outsider, &path).await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn calls_whose_callbacks_were_lost_are_recovered_from_twilio() -> Result {
    let telephony = TestTelephony::spawn_with(|c| c.followup.stale_after = Duration::ZERO).await?;
    let rep = rep(&telephony).await?;
    let call = place(&telephony, &rep).await?;
    report(&telephony, &call, "ringing", &[("SequenceNumber", "1")]).await?;
    // The completed callback never arrives; Twilio knows how the call ended.
    telephony.twilio.end_call(&call.sid, "completed", 33);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pass = followup_once(&telephony.state().await?).await?;
    assert_eq!(pass.statuses_synced, 1, "{pass:?}");
    let view = telephony
        .get(&rep, &format!("/api/calls/{}", call.id))
        .await?
        .body;
    assert_eq!(view["status"], "COMPLETED", "{view}");
    assert_eq!(view["durationSeconds"], 33);
    assert!(
        view["answeredAt"].is_string() && view["endedAt"].is_string(),
        "{view}"
    );
    let completed: Vec<PhoneCallCompleted> =
        telephony.events_of("sb.telephony.call.completed").await?;
    assert_eq!(completed.len(), 1);
    Ok(())
}

#[tokio::test]
async fn calls_twilio_never_confirmed_are_failed() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = rep(&telephony).await?;
    // A 500: Twilio may or may not have placed it (a 503 would be sent again and succeed).
    telephony.twilio.fail_next_creates(500, 1);
    let lost = telephony
        .post(
            &rep,
            "/api/calls/initiate",
            &json!({"from": FROM, "to": TO}),
        )
        .await?;
    assert_eq!(lost.status, 503);
    {
        use sb_db::schema::telephony_calls as c;
        let mut conn = telephony.db.conn().await?;
        diesel::update(c::table)
            .set(c::created_at.eq(chrono::Utc::now() - chrono::Duration::hours(1)))
            .execute(&mut conn)
            .await?;
    }
    let pass = followup_once(&telephony.state().await?).await?;
    assert_eq!(pass.orphans_failed, 1);
    let page = telephony.get(&rep, "/api/calls").await?.body;
    assert_eq!(page["items"][0]["status"], "FAILED");
    assert_eq!(
        page["items"][0]["errorMessage"],
        "Twilio never confirmed the call"
    );
    Ok(())
}

/// Polls `/metrics` until it has `line` (the gauge is set by the job's passes).
async fn metrics_show(telephony: &TestTelephony, line: &str) -> Result<()> {
    sb_testkit::within(Duration::from_secs(10), line, async {
        loop {
            let metrics = telephony.metrics().await?;
            if metrics.lines().any(|l| l == line) {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?
}

#[tokio::test]
async fn the_active_calls_gauge_counts_calls_not_yet_final() -> Result {
    let telephony =
        TestTelephony::spawn_with(|c| c.followup.interval = Duration::from_millis(100)).await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let owner = User::new(org, Role::Closer);
    telephony
        .number(&ceo, FROM, json!({"ownerUserId": owner.id}))
        .await?;
    metrics_show(&telephony, "sb_telephony_active_calls 0").await?;
    let sid = common::call_sid();
    let answer = telephony
        .webhook("/webhook/voice", &common::inbound_form(&sid, TO, FROM))
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    metrics_show(&telephony, "sb_telephony_active_calls 1").await?;
    let done = telephony
        .webhook(
            "/webhook/voice/status",
            &params(&[
                ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                ("CallSid", &sid),
                ("CallStatus", "completed"),
                ("CallDuration", "42"),
                ("SequenceNumber", "3"),
            ]),
        )
        .await?;
    assert_eq!(done.status, 200, "{}", done.text);
    metrics_show(&telephony, "sb_telephony_active_calls 0").await?;
    Ok(())
}
