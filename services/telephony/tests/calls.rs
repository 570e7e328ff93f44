//! Click-to-call (`POST /api/calls/initiate`) against the fake Twilio, the errors it maps, the
//! rate limit, the history scoped by role, the numbers admins manage, and voice tokens.

mod common;

use std::time::Duration;

use common::{Telephone, TestTelephony, User, VoiceIdentity, params};
use sb_auth::Role;
use sb_events::proto::{PhoneCallStatus, PhoneCallStatusChanged};
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

const FROM: &str = "+33123456789";
const TO: &str = "+33987654321";

/// An org with a CEO and a closer who owns `FROM` (ringing the app).
async fn org_with_rep(telephony: &TestTelephony) -> Result<(User, User)> {
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(
            &ceo,
            FROM,
            json!({"ownerUserId": rep.id, "language": "fr-FR"}),
        )
        .await?;
    Ok((ceo, rep))
}

async fn initiate(
    telephony: &TestTelephony,
    user: &User,
    body: Value,
) -> Result<sb_testkit::Answer> {
    telephony.post(user, "/api/calls/initiate", &body).await
}

#[tokio::test]
async fn initiate_rings_the_callers_app_then_dials_the_destination() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    let started = initiate(
        &telephony,
        &rep,
        json!({"from": "+33 1 23 45 67 89", "to": TO}),
    )
    .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.body["status"], "initiated");
    let call_id = started.body["callId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sid = started.body["sid"].as_str().unwrap_or_default().to_owned();
    assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");

    // Twilio was asked to ring the rep's app first, with our TwiML and status callback URLs.
    let request = telephony
        .twilio
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .ok_or("no create request")?;
    assert_eq!(
        request.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls.json",
            telephony.twilio.account_sid
        )
    );
    assert_eq!(
        request.param("To"),
        Some(format!("client:{}", rep.identity()).as_str())
    );
    assert_eq!(request.param("From"), Some(FROM));
    assert_eq!(
        request.param("Url"),
        Some(
            format!(
                "{}/webhook/voice/outbound?callId={call_id}",
                common::PUBLIC_BASE_URL
            )
            .as_str()
        )
    );
    assert_eq!(
        request.param("StatusCallback"),
        Some(
            format!(
                "{}/webhook/voice/status?callId={call_id}",
                common::PUBLIC_BASE_URL
            )
            .as_str()
        )
    );
    assert_eq!(
        request.params_named("StatusCallbackEvent"),
        vec!["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(request.param("Timeout"), Some("30"));

    // Saved INITIATED before answering, and announced.
    let call = telephony
        .get(&rep, &format!("/api/calls/{call_id}"))
        .await?;
    assert_eq!(call.status, 200, "{}", call.text);
    assert_eq!(call.body["status"], "INITIATED");
    assert_eq!(call.body["direction"], "OUTBOUND");
    assert_eq!(call.body["sid"], sid.as_str());
    assert_eq!(call.body["from"], FROM);
    assert_eq!(call.body["to"], TO);
    assert_eq!(call.body["userId"], rep.id.to_string());
    let changes: Vec<PhoneCallStatusChanged> = telephony
        .events_of("sb.telephony.call.status_changed")
        .await?;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].status, PhoneCallStatus::Initiated as i32);
    assert_eq!(
        changes[0].previous_status,
        PhoneCallStatus::Unspecified as i32
    );

    // When the app answers, Twilio fetches the TwiML that brings the rep's leg into the call's
    // conference, and the customer is rung into it (a supervisor can join it).
    let twiml = telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[
                ("CallSid", &sid),
                ("CallStatus", "in-progress"),
                ("From", FROM),
                ("To", &format!("client:{}", rep.identity())),
            ]),
        )
        .await?;
    assert_eq!(twiml.status, 200, "{}", twiml.text);
    assert!(
        twiml.content_type.starts_with("text/xml"),
        "{}",
        twiml.content_type
    );
    let conference = format!("call_{}", call_id.replace('-', ""));
    assert!(
        twiml.text.contains(&format!(">{conference}</Conference>")),
        "{}",
        twiml.text
    );
    assert!(!twiml.text.contains("<Number>"), "{}", twiml.text);
    let customer = telephony
        .twilio
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "POST"
                && r.path
                    .ends_with(&format!("/Conferences/{conference}/Participants.json"))
        })
        .ok_or("the customer was not rung into the conference")?;
    assert_eq!(customer.param("From"), Some(FROM));
    assert_eq!(customer.param("To"), Some(TO));
    assert_eq!(customer.param("Label"), Some("customer"));
    assert_eq!(customer.param("EndConferenceOnExit"), Some("true"));
    // Twilio asking again (a retried webhook) rings nobody twice.
    telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[("CallSid", &sid), ("CallStatus", "in-progress")]),
        )
        .await?;
    let rung = telephony
        .twilio
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/Participants.json"))
        .count();
    assert_eq!(rung, 1);
    assert!(!twiml.text.contains("record="), "{}", twiml.text);
    Ok(())
}

#[tokio::test]
async fn recorded_calls_record_their_conference_with_a_callback() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    let started = initiate(
        &telephony,
        &rep,
        json!({"from": FROM, "to": TO, "record": true}),
    )
    .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let call_id = started.body["callId"].as_str().unwrap_or_default();
    let sid = started.body["sid"].as_str().unwrap_or_default();
    let twiml = telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[("CallSid", sid), ("CallStatus", "in-progress")]),
        )
        .await?;
    assert!(
        twiml.text.contains("record=\"record-from-start\""),
        "{}",
        twiml.text
    );
    assert!(
        twiml.text.contains(&format!(
            "recordingStatusCallback=\"{}/webhook/voice/recording?callId={call_id}\"",
            common::PUBLIC_BASE_URL
        )),
        "{}",
        twiml.text
    );
    Ok(())
}

#[tokio::test]
async fn numbers_are_validated_with_a_phone_number_library() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    for (body, field) in [
        (json!({"from": FROM, "to": "0612345678"}), "to"),
        (json!({"from": FROM, "to": "+33 12"}), "to"),
        (json!({"from": FROM, "to": "+999 123 456 789"}), "to"),
        (json!({"from": "hello", "to": TO}), "from"),
    ] {
        let refused = initiate(&telephony, &rep, body.clone()).await?;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert_eq!(
            refused.body["code"], "invalid_phone_number",
            "{}",
            refused.text
        );
        assert_eq!(refused.body["field"], field);
    }
    let malformed = initiate(&telephony, &rep, json!({"from": FROM})).await?;
    assert_eq!(
        (malformed.status, malformed.body["code"].as_str()),
        (400, Some("invalid_field"))
    );
    assert!(
        telephony.twilio.requests().is_empty(),
        "Twilio was never asked"
    );
    Ok(())
}

#[tokio::test]
async fn initiate_takes_only_a_json_body() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    let body = json!({"from": FROM, "to": TO}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = telephony
            .app
            .post("/api/calls/initiate")
            .bearer_auth(telephony.token(&rep))
            .header("Content-Type", content_type)
            .body(body.clone())
            .send()
            .await?;
        assert_eq!(response.status(), 415, "{content_type}");
        let answer: Value = response.json().await?;
        assert_eq!(answer["code"], "unsupported_media_type", "{answer}");
    }
    assert!(
        telephony.twilio.requests().is_empty(),
        "Twilio was never asked"
    );
    Ok(())
}

#[tokio::test]
async fn from_must_be_one_of_the_callers_numbers() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (ceo, rep) = org_with_rep(&telephony).await?;
    let colleague = User::new(rep.org, Role::Setter);
    let outsider = User::new(Uuid::now_v7(), Role::Closer);
    for user in [&colleague, &ceo, &outsider] {
        let refused = initiate(&telephony, user, json!({"from": FROM, "to": TO})).await?;
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert_eq!(refused.body["code"], "number_not_owned");
    }
    // A valid number nobody has is not the caller's either.
    let unknown = initiate(&telephony, &rep, json!({"from": "+33144556677", "to": TO})).await?;
    assert_eq!(unknown.body["code"], "number_not_owned");
    assert_eq!(telephony.count("telephony_calls").await?, 0);
    Ok(())
}

#[tokio::test]
async fn twilio_refusals_map_to_stable_codes_and_fail_the_call() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    // Refusals the caller can act on are 422 with a code and a detail saying what to do; the
    // others (credentials, account state) are 502 for an operator.
    for (code, status, problem, field) in [
        (21211, 422, "invalid_destination", "to"),
        (21217, 422, "invalid_destination", "to"),
        (21215, 422, "destination_not_permitted", "to"),
        (21210, 422, "caller_id_not_verified", "from"),
        (21219, 422, "destination_unverified", "to"),
        (20003, 502, "provider_rejected", ""),
    ] {
        telephony.twilio.fail_next_creates(code, 1);
        let refused = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
        assert_eq!(refused.status, status, "{code}: {}", refused.text);
        assert_eq!(refused.body["code"], problem, "{code}");
        assert_eq!(refused.body["twilioCode"], code, "{code}");
        if status == 422 {
            assert_eq!(refused.body["field"], field, "{code}");
            assert!(
                refused.body["detail"]
                    .as_str()
                    .is_some_and(|d| d.len() > 30 && !d.contains("Request refused")),
                "{code}: a detail of ours, not Twilio's: {}",
                refused.text
            );
        }
    }
    // Each attempt is in the history as FAILED with Twilio's code.
    let history = telephony.get(&rep, "/api/calls?status=failed").await?;
    assert_eq!(history.body["total"], 6, "{}", history.text);
    let codes: Vec<i64> = history.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["errorCode"].as_i64())
        .collect();
    assert_eq!(codes, vec![20003, 21219, 21210, 21215, 21217, 21211]);
    Ok(())
}

/// The create requests the fake received.
fn creates(telephony: &TestTelephony) -> usize {
    telephony
        .twilio
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .count()
}

#[tokio::test]
async fn a_busy_twilio_is_asked_again_within_the_budget_and_never_fails_the_call() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    // Throttled twice (429 / 20429), then overloaded twice (503): Twilio did not act, so the
    // call is placed again, and the rep only sees it placed.
    for (code, times) in [(20429, 2), (503, 2)] {
        let before = creates(&telephony);
        telephony.twilio.fail_next_creates(code, times);
        let placed = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
        assert_eq!(placed.status, 201, "{code}: {}", placed.text);
        assert_eq!(creates(&telephony), before + times + 1, "{code}");
    }
    assert_eq!(telephony.twilio.calls().len(), 2, "each call placed once");

    // Busy past the budget (2 s in tests): 503 provider_unavailable with Retry-After, and the
    // call is not FAILED.
    telephony.twilio.fail_next_creates(20429, 1000);
    let busy = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(
        (busy.status, busy.body["code"].as_str()),
        (503, Some("provider_unavailable")),
        "{}",
        busy.text
    );
    assert!(busy.retry_after.is_some());
    let history = telephony.get(&rep, "/api/calls?status=failed").await?;
    assert_eq!(history.body["total"], 0, "{}", history.text);
    Ok(())
}

#[tokio::test]
async fn after_a_twilio_error_that_may_have_placed_the_call_it_is_not_placed_again() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    for code in [500, 502, 504] {
        let before = creates(&telephony);
        telephony.twilio.fail_next_creates(code, 1);
        let down = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
        assert_eq!(
            (down.status, down.body["code"].as_str()),
            (503, Some("provider_unavailable")),
            "{code}: {}",
            down.text
        );
        assert_eq!(
            creates(&telephony),
            before + 1,
            "{code}: asked once, never twice"
        );
    }
    let history = telephony.get(&rep, "/api/calls").await?;
    for call in history.body["items"].as_array().into_iter().flatten() {
        assert_eq!(call["status"], "INITIATED", "{call}");
    }
    Ok(())
}

#[tokio::test]
async fn premium_rate_and_own_numbers_are_refused_before_twilio_is_asked() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (ceo, rep) = org_with_rep(&telephony).await?;
    let second_line = "+33144556677";
    telephony.number(&ceo, second_line, json!({})).await?;
    for to in [
        "+1 900 555 0199",
        "+44 909 879 0000",
        "+33 8 92 68 01 01",
        FROM,
        second_line,
    ] {
        let refused = initiate(&telephony, &rep, json!({"from": FROM, "to": to})).await?;
        assert_eq!(
            (
                refused.status,
                refused.body["code"].as_str(),
                refused.body["field"].as_str()
            ),
            (422, Some("destination_blocked"), Some("to")),
            "{to}: {}",
            refused.text
        );
    }
    assert_eq!(creates(&telephony), 0);
    assert_eq!(telephony.count("telephony_calls").await?, 0);

    // The list is the deployment's: with `none`, premium numbers go through (Twilio's own geo
    // permissions still apply); own numbers stay refused.
    let open = TestTelephony::spawn_with(|c| {
        c.destinations =
            sb_telephony::domain::destination::DestinationPolicy::parse("none").unwrap_or_default();
    })
    .await?;
    let (_, rep) = org_with_rep(&open).await?;
    let placed = initiate(&open, &rep, json!({"from": FROM, "to": "+1 900 555 0199"})).await?;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let own = initiate(&open, &rep, json!({"from": FROM, "to": FROM})).await?;
    assert_eq!(own.body["code"], "destination_blocked", "{}", own.text);
    Ok(())
}

#[tokio::test]
async fn twilio_unreachable_or_slow_answers_503_and_leaves_the_call_initiated() -> Result {
    let telephony =
        TestTelephony::spawn_with(|c| c.twilio.timeout = Duration::from_millis(300)).await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    // A 500 may have placed the call: it is not placed again (see the test below).
    telephony.twilio.fail_next_creates(500, 1);
    let down = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(
        (down.status, down.body["code"].as_str()),
        (503, Some("provider_unavailable")),
        "{}",
        down.text
    );
    assert!(down.retry_after.is_some());
    telephony.twilio.set_latency(Duration::from_millis(1500));
    let slow = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(slow.status, 503, "{}", slow.text);
    // Twilio may have placed them: they stay INITIATED until a callback or the job decides.
    let history = telephony.get(&rep, "/api/calls").await?;
    for call in history.body["items"].as_array().into_iter().flatten() {
        assert_eq!(call["status"], "INITIATED", "{call}");
        assert!(
            call["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("unavailable")),
            "{call}"
        );
    }

    let nowhere =
        TestTelephony::spawn_with(|c| c.twilio.api_base = "http://127.0.0.1:9".to_owned()).await?;
    let (_, rep) = org_with_rep(&nowhere).await?;
    let refused = initiate(&nowhere, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (503, Some("provider_unavailable"))
    );
    Ok(())
}

#[tokio::test]
async fn the_rate_limit_is_per_user_counted_in_postgres_with_retry_after() -> Result {
    let telephony = TestTelephony::spawn_with(|c| c.rate_limit.calls = 3).await?;
    let (ceo, rep) = org_with_rep(&telephony).await?;
    // Concurrent requests cannot slip past the limit: the count and insert are serialised per user.
    let attempts = futures_util::future::join_all(
        (0..6).map(|_| initiate(&telephony, &rep, json!({"from": FROM, "to": TO}))),
    )
    .await;
    let mut statuses: Vec<u16> = Vec::new();
    for attempt in attempts {
        let attempt = attempt?;
        if attempt.status == 429 {
            assert_eq!(attempt.body["code"], "rate_limited");
            let retry: u64 = attempt.retry_after.as_deref().unwrap_or("0").parse()?;
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
        }
        statuses.push(attempt.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 201, 201, 429, 429, 429]);
    // Another user of the org is not limited by the first one's calls.
    let other = User::new(rep.org, Role::Setter);
    telephony
        .number(&ceo, "+33155667788", json!({"ownerUserId": other.id}))
        .await?;
    let allowed = initiate(
        &telephony,
        &other,
        json!({"from": "+33155667788", "to": TO}),
    )
    .await?;
    assert_eq!(allowed.status, 201, "{}", allowed.text);
    Ok(())
}

#[tokio::test]
async fn a_number_without_app_rings_its_forward_number_first() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(
            &ceo,
            FROM,
            json!({"ownerUserId": rep.id, "ringApp": false, "forwardTo": "+33 6 12 34 56 78"}),
        )
        .await?;
    let started = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let request = telephony
        .twilio
        .requests()
        .into_iter()
        .next()
        .ok_or("no request")?;
    assert_eq!(request.param("To"), Some("+33612345678"));
    telephony
        .number(&ceo, FROM, json!({"ownerUserId": rep.id, "ringApp": false}))
        .await?;
    let nowhere = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(
        (nowhere.status, nowhere.body["code"].as_str()),
        (409, Some("no_device"))
    );
    Ok(())
}

#[tokio::test]
async fn history_is_scoped_by_role_and_filtered() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let (team_a, team_b) = (Uuid::now_v7(), Uuid::now_v7());
    let ceo = User::new(org, Role::Ceo);
    let director = User::new(org, Role::Director);
    let manager = User::new(org, Role::Manager).in_team(team_a);
    let rep_a = User::new(org, Role::Closer).in_team(team_a);
    let rep_b = User::new(org, Role::Setter).in_team(team_b);
    let admin = User::new(Uuid::now_v7(), Role::Admin);
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    telephony
        .number(
            &ceo,
            "+33123456789",
            json!({"ownerUserId": rep_a.id, "teamId": team_a}),
        )
        .await?;
    telephony
        .number(
            &ceo,
            "+33155667788",
            json!({"ownerUserId": rep_b.id, "teamId": team_b}),
        )
        .await?;
    let mut ids = Vec::new();
    for (user, from) in [
        (&rep_a, "+33123456789"),
        (&rep_a, "+33123456789"),
        (&rep_b, "+33155667788"),
    ] {
        let started = initiate(&telephony, user, json!({"from": from, "to": TO})).await?;
        assert_eq!(started.status, 201, "{}", started.text);
        ids.push(
            started.body["callId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    // An inbound call to rep_b's number.
    let sid = common::call_sid();
    let inbound = telephony
        .webhook(
            "/webhook/voice",
            &common::inbound_form(&sid, "+447911123456", "+33155667788"),
        )
        .await?;
    assert_eq!(inbound.status, 200, "{}", inbound.text);

    let total = |answer: &sb_testkit::Answer| answer.body["total"].as_i64().unwrap_or(-1);
    for (user, expected) in [
        (&ceo, 4),
        (&director, 4),
        (&manager, 2),
        (&rep_a, 2),
        (&rep_b, 2),
        (&stranger, 0),
    ] {
        let page = telephony.get(user, "/api/calls").await?;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(total(&page), expected, "{:?}: {}", user.role, page.text);
    }
    let across = telephony
        .get(&admin, &format!("/api/calls?orgId={org}"))
        .await?;
    assert_eq!(total(&across), 4);
    let refused = telephony
        .get(&ceo, &format!("/api/calls?orgId={}", Uuid::now_v7()))
        .await?;
    assert_eq!(refused.status, 403);

    for (query, expected) in [
        ("direction=inbound", 1),
        ("direction=OUTBOUND", 3),
        ("status=initiated", 3),
        ("status=ringing", 1),
        ("number=%2B447911123456", 1),
        (&format!("userId={}", rep_a.id) as &str, 2),
        ("from=2000-01-01&to=2100-01-01", 4),
        ("from=2100-01-01", 0),
        ("pageSize=2", 4),
    ] {
        let page = telephony.get(&ceo, &format!("/api/calls?{query}")).await?;
        assert_eq!(total(&page), expected, "{query}: {}", page.text);
    }
    let page = telephony.get(&ceo, "/api/calls?pageSize=2&page=2").await?;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page.body["items"][1]["id"], ids[0].as_str(), "newest first");
    for bad in [
        "pageSize=0",
        "pageSize=101",
        "page=-1",
        "direction=sideways",
        "status=sleeping",
        "from=yesterday",
        "number=12",
        "from=2026-02-01&to=2026-01-01",
    ] {
        let refused = telephony.get(&ceo, &format!("/api/calls?{bad}")).await?;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text);
    }

    // One call: the rep and their manager and leaders see it; a rep of another team is refused;
    // another org cannot tell it exists.
    let path = format!("/api/calls/{}", ids[0]);
    for user in [&rep_a, &manager, &ceo, &director, &admin] {
        assert_eq!(
            telephony.get(user, &path).await?.status,
            200,
            "{:?}",
            user.role
        );
    }
    assert_eq!(telephony.get(&rep_b, &path).await?.status, 403);
    assert_eq!(telephony.get(&stranger, &path).await?.status, 404);
    assert_eq!(
        telephony
            .get(&ceo, &format!("/api/calls/{}", Uuid::now_v7()))
            .await?
            .status,
        404
    );
    assert_eq!(
        telephony.get(&ceo, "/api/calls/not-a-uuid").await?.status,
        400
    );
    let unauthenticated = telephony.app.get("/api/calls").send().await?;
    assert_eq!(unauthenticated.status(), 401);
    Ok(())
}

#[tokio::test]
async fn calls_for_an_appointment_need_access_to_it() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    let mut conn = telephony.db.conn().await?;
    let mine = Uuid::now_v7();
    let theirs = Uuid::now_v7();
    for (id, host) in [(mine, rep.id), (theirs, Uuid::now_v7())] {
        sb_db::models::upsert_appointment(
            &mut conn,
            &sb_db::models::NewAppointment {
                id,
                org_id: rep.org,
                host_user_id: host,
                guest_user_id: None,
                setter_user_id: None,
                team_id: None,
                lead: json!({"name": "Lead", "phone": TO}),
                scheduled_at: chrono::Utc::now(),
                ends_at: None,
                kind: sb_db::models::AppointmentKind::Remote,
                status: sb_db::models::AppointmentStatus::Scheduled,
                version: 1,
            },
        )
        .await?;
    }
    let ok = initiate(
        &telephony,
        &rep,
        json!({"from": FROM, "to": TO, "appointmentId": mine}),
    )
    .await?;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let call = telephony
        .get(
            &rep,
            &format!(
                "/api/calls/{}",
                ok.body["callId"].as_str().unwrap_or_default()
            ),
        )
        .await?;
    assert_eq!(call.body["appointmentId"], mine.to_string());
    let refused = initiate(
        &telephony,
        &rep,
        json!({"from": FROM, "to": TO, "appointmentId": theirs}),
    )
    .await?;
    assert_eq!(refused.status, 403);
    let missing = initiate(
        &telephony,
        &rep,
        json!({"from": FROM, "to": TO, "appointmentId": Uuid::now_v7()}),
    )
    .await?;
    assert_eq!(missing.status, 404);
    Ok(())
}

#[tokio::test]
async fn org_leaders_manage_numbers() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let director = User::new(org, Role::Director);
    let manager = User::new(org, Role::Manager);
    let rep = User::new(org, Role::Closer);
    let admin = User::new(Uuid::now_v7(), Role::Admin);
    let other_ceo = User::new(Uuid::now_v7(), Role::Ceo);

    let created = telephony
        .put(&ceo, "/api/numbers/+33123456789", &json!({
            "ownerUserId": rep.id, "forwardTo": "+33 6 12 34 56 78", "greeting": "Bonjour, ne quittez pas.",
            "voicemailGreeting": "Laissez un message.", "language": "fr-FR", "voice": "Polly.Lea",
            "ringTimeoutSeconds": 20, "recordCalls": true
        }))
        .await?;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["e164"], "+33123456789");
    assert_eq!(created.body["forwardTo"], "+33612345678");
    assert_eq!(created.body["ringApp"], true);
    assert_eq!(created.body["ringTimeoutSeconds"], 20);
    // `+` may come percent-encoded; PUT replaces every setting.
    let replaced = telephony
        .put(
            &director,
            "/api/numbers/%2B33123456789",
            &json!({"ownerUserId": rep.id}),
        )
        .await?;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["forwardTo"], Value::Null);
    assert_eq!(replaced.body["language"], "en-US");
    assert_eq!(replaced.body["id"], created.body["id"]);

    for user in [&manager, &rep] {
        let refused = telephony
            .put(user, "/api/numbers/+33123456789", &json!({}))
            .await?;
        assert_eq!(refused.status, 403, "{:?}", user.role);
        assert_eq!(
            telephony
                .delete(user, "/api/numbers/+33123456789")
                .await?
                .status,
            403
        );
    }
    // The owner reads their number and sees it in their list; a manager does not see it.
    assert_eq!(
        telephony
            .get(&rep, "/api/numbers/+33123456789")
            .await?
            .status,
        200
    );
    assert_eq!(
        telephony
            .get(&manager, "/api/numbers/+33123456789")
            .await?
            .status,
        403
    );
    let mine = telephony.get(&rep, "/api/numbers").await?;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine.body["total"], 1);
    assert_eq!(
        telephony.get(&manager, "/api/numbers").await?.body["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        telephony.get(&ceo, "/api/numbers").await?.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Another org: cannot see it, cannot take it.
    assert_eq!(
        telephony
            .get(&other_ceo, "/api/numbers/+33123456789")
            .await?
            .status,
        404
    );
    let taken = telephony
        .put(&other_ceo, "/api/numbers/+33123456789", &json!({}))
        .await?;
    assert_eq!(
        (taken.status, taken.body["code"].as_str()),
        (409, Some("number_taken"))
    );
    // ADMIN acts on any org with orgId.
    let listed = telephony
        .get(&admin, &format!("/api/numbers?orgId={org}"))
        .await?;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    let assigned = telephony
        .put(
            &admin,
            &format!("/api/numbers/+33155667788?orgId={org}"),
            &json!({}),
        )
        .await?;
    assert_eq!(assigned.status, 201);
    assert_eq!(assigned.body["orgId"], org.to_string());

    for (path, body, field) in [
        ("/api/numbers/0123456789", json!({}), "e164"),
        (
            "/api/numbers/+33123456789",
            json!({"forwardTo": "nope"}),
            "forwardTo",
        ),
        (
            "/api/numbers/+33123456789",
            json!({"language": "French"}),
            "language",
        ),
        (
            "/api/numbers/+33123456789",
            json!({"ringTimeoutSeconds": 2}),
            "ringTimeoutSeconds",
        ),
        (
            "/api/numbers/+33123456789",
            json!({"voice": "<Hangup/>"}),
            "voice",
        ),
        (
            "/api/numbers/+33123456789",
            json!({"greeting": "x".repeat(501)}),
            "greeting",
        ),
        (
            "/api/numbers/+33123456789",
            json!({"colour": "red"}),
            "body",
        ),
    ] {
        let refused = telephony.put(&ceo, path, &body).await?;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        if field != "body" {
            assert_eq!(refused.body["field"], field, "{}", refused.text);
        }
    }

    let deleted = telephony.delete(&ceo, "/api/numbers/+33123456789").await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        telephony
            .get(&ceo, "/api/numbers/+33123456789")
            .await?
            .status,
        404
    );
    assert_eq!(
        telephony
            .delete(&ceo, "/api/numbers/+33123456789")
            .await?
            .status,
        404
    );
    Ok(())
}

#[tokio::test]
async fn voice_tokens_carry_the_callers_identity_and_grants() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = User::new(Uuid::now_v7(), Role::Closer);
    let answer = telephony.get(&rep, "/api/voice/token?platform=ios").await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["identity"], rep.identity());
    assert_eq!(answer.body["ttlSeconds"], 3600);
    let token = answer.body["token"].as_str().unwrap_or_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let decoded = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(common::API_KEY_SECRET.as_bytes()),
        &validation,
    )?;
    assert_eq!(decoded.header.cty.as_deref(), Some("twilio-fpa;v=1"));
    let claims = decoded.claims;
    assert_eq!(claims["iss"], common::API_KEY_SID);
    assert_eq!(claims["sub"], telephony.twilio.account_sid.as_str());
    assert_eq!(claims["grants"]["identity"], rep.identity());
    assert_eq!(claims["grants"]["voice"]["incoming"]["allow"], true);
    assert_eq!(
        claims["grants"]["voice"]["outgoing"]["application_sid"],
        common::TWIML_APP_SID
    );
    assert_eq!(
        claims["grants"]["voice"]["push_credential_sid"],
        common::PUSH_APNS
    );
    let android = telephony
        .get(&rep, "/api/voice/token?platform=android")
        .await?;
    let android = android.body["token"].as_str().unwrap_or_default();
    let claims = jsonwebtoken::decode::<Value>(
        android,
        &jsonwebtoken::DecodingKey::from_secret(common::API_KEY_SECRET.as_bytes()),
        &validation,
    )?
    .claims;
    assert_eq!(
        claims["grants"]["voice"]["push_credential_sid"],
        common::PUSH_FCM
    );
    assert_eq!(
        telephony
            .get(&rep, "/api/voice/token?platform=windows")
            .await?
            .status,
        400
    );

    let unconfigured = TestTelephony::spawn_with(|c| c.twilio.voice.api_key = None).await?;
    let refused = unconfigured.get(&rep, "/api/voice/token").await?;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (503, Some("voice_tokens_unavailable"))
    );
    Ok(())
}

#[tokio::test]
async fn call_events_reach_jetstream_through_the_outbox_relay() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let (_, rep) = org_with_rep(&telephony).await?;
    let started = initiate(&telephony, &rep, json!({"from": FROM, "to": TO})).await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let event: PhoneCallStatusChanged = telephony.nats.published().await?;
    assert_eq!(
        event.call_id,
        started.body["callId"].as_str().unwrap_or_default()
    );
    assert_eq!(event.org_id, rep.org.to_string());
    assert_eq!(event.status, PhoneCallStatus::Initiated as i32);
    Ok(())
}

/// Both list routes take `page` and `pageSize` and answer the one envelope of
/// `sb_platform::pagination`; a bad page size is a 400 naming the parameter.
#[tokio::test]
async fn every_list_route_pages_the_same_way() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    for route in ["/api/calls", "/api/numbers"] {
        let page = telephony.get(&ceo, route).await?;
        assert_eq!(page.status, 200, "{route}: {}", page.text);
        let keys: Vec<&str> = page
            .body
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        assert_eq!(
            keys,
            sb_platform::pagination::ENVELOPE,
            "{route}: {}",
            page.text
        );
        assert_eq!(page.body["items"], serde_json::json!([]));
        assert_eq!(
            (&page.body["page"], &page.body["pageSize"]),
            (&serde_json::json!(1), &serde_json::json!(50))
        );
        for (query, field) in [
            ("pageSize=0", "pageSize"),
            ("pageSize=101", "pageSize"),
            ("pageSize=ten", "pageSize"),
            ("page=0", "page"),
        ] {
            let refused = telephony.get(&ceo, &format!("{route}?{query}")).await?;
            assert_eq!(refused.status, 400, "{route}?{query}: {}", refused.text);
            assert_eq!(refused.body["code"], "invalid_field", "{route}?{query}");
            assert_eq!(
                refused.body["field"], field,
                "{route}?{query}: {}",
                refused.text
            );
        }
    }
    Ok(())
}
