//! Twilio's voice webhooks: TwiML for incoming calls, voicemail, recordings, status callbacks
//! applied monotonically (replayed three times in shuffled order), signatures, unknown calls,
//! and how fast the handlers answer.

mod common;

use std::time::{Duration, Instant};

use common::{
    PUBLIC_BASE_URL, Telephone, TestTelephony, User, VoiceIdentity, call_sid, inbound_form, params,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sb_auth::Role;
use sb_events::proto::{
    CallDirection, PhoneCallCompleted, PhoneCallIncoming, PhoneCallStatus, PhoneCallStatusChanged,
    VoicemailReceived,
};
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

const NUMBER: &str = "+33123456789";

type Form = Vec<(String, String)>;
const CALLER: &str = "+447911123456";
const FORWARD: &str = "+33612345678";

struct Org {
    ceo: User,
    rep: User,
}

async fn org(telephony: &TestTelephony, settings: Value) -> Result<Org> {
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    let mut body = json!({"ownerUserId": rep.id});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), settings.as_object()) {
        body.extend(extra.clone());
    }
    telephony.number(&ceo, NUMBER, body).await?;
    Ok(Org { ceo, rep })
}

fn first_call(page: &Value) -> &Value {
    &page["items"][0]
}

#[tokio::test]
async fn incoming_calls_greet_ring_the_owners_app_and_phone_and_are_announced() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(
        &telephony,
        json!({"language": "fr-FR", "forwardTo": FORWARD}),
    )
    .await?;
    let sid = call_sid();
    let answer = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.content_type.starts_with("text/xml"),
        "{}",
        answer.content_type
    );
    let xml = &answer.text;
    assert!(xml.contains("<Say voice=\"alice\" language=\"fr-FR\">Vous avez un appel entrant. Connexion en cours.</Say>"), "{xml}");
    assert!(
        xml.contains(&format!(
            "action=\"{PUBLIC_BASE_URL}/webhook/voice/completed\""
        )),
        "{xml}"
    );
    // The caller waits in the call's conference; the owner's app and phone are rung into it
    // each for the number's ring timeout.
    assert!(xml.contains("</Conference>"), "{xml}");
    assert!(xml.contains("startConferenceOnEnter=\"false\""), "{xml}");
    let rung: Vec<_> = telephony
        .twilio
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Participants.json"))
        .collect();
    let to: Vec<_> = rung.iter().filter_map(|r| r.param("To")).collect();
    assert_eq!(
        to,
        vec![format!("client:{}", org.rep.identity()).as_str(), FORWARD]
    );
    assert!(rung.iter().all(|r| r.param("Timeout") == Some("30")));
    assert_eq!(rung[0].param("From"), Some(CALLER));
    assert_eq!(rung[1].param("From"), Some(NUMBER));

    let page = telephony.get(&org.rep, "/api/calls").await?;
    let call = first_call(&page.body);
    assert_eq!(call["direction"], "INBOUND");
    assert_eq!(call["status"], "RINGING");
    assert_eq!(call["sid"], sid.as_str());
    assert_eq!(call["from"], CALLER);
    assert_eq!(call["to"], NUMBER);
    assert_eq!(call["userId"], org.rep.id.to_string());
    let incoming: Vec<PhoneCallIncoming> =
        telephony.events_of("sb.telephony.call.incoming").await?;
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].call_sid, sid);
    assert_eq!(incoming[0].from_number, CALLER);
    assert_eq!(incoming[0].to_number, NUMBER);
    assert_eq!(incoming[0].user_id, org.rep.id.to_string());
    assert_eq!(incoming[0].org_id, org.rep.org.to_string());

    // Twilio repeating the request gets the same TwiML; nothing is saved or announced twice.
    let again = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
        .await?;
    assert_eq!(again.text, answer.text);
    assert_eq!(telephony.count("telephony_calls").await?, 1);
    assert_eq!(
        telephony
            .events_of::<PhoneCallIncoming>("sb.telephony.call.incoming")
            .await?
            .len(),
        1
    );
    let metrics = telephony.metrics().await?;
    assert!(
        metrics.contains(
            "sb_telephony_webhooks_total{outcome=\"duplicate\",webhook=\"/webhook/voice\"} 1"
        ),
        "{metrics}"
    );
    let _ = &org.ceo;
    Ok(())
}

#[tokio::test]
async fn unknown_numbers_hear_a_polite_message_and_nothing_is_saved() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let answer = telephony
        .webhook(
            "/webhook/voice",
            &inbound_form(&call_sid(), CALLER, "+33199887766"),
        )
        .await?;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/xml"));
    assert!(answer.text.contains("not in service"), "{}", answer.text);
    assert!(
        answer.text.contains("<Hangup />") || answer.text.contains("<Hangup/>"),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("<Dial"), "{}", answer.text);
    assert_eq!(telephony.count("telephony_calls").await?, 0);
    assert_eq!(telephony.count("outbox").await?, 0);
    Ok(())
}

#[tokio::test]
async fn unanswered_calls_go_to_voicemail_and_the_message_is_announced_once() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(
        &telephony,
        json!({"language": "fr-FR", "voicemailGreeting": "Laissez-moi un message."}),
    )
    .await?;
    for dial_status in ["no-answer", "busy", "failed", "completed", "canceled"] {
        let sid = call_sid();
        telephony
            .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
            .await?;
        let answer = telephony
            .webhook(
                "/webhook/voice/completed",
                &params(&[
                    ("CallSid", &sid),
                    ("DialCallStatus", dial_status),
                    ("DialCallSid", &call_sid()),
                    ("DialCallDuration", "0"),
                ]),
            )
            .await?;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(answer.content_type.starts_with("text/xml"));
        let voicemail = matches!(dial_status, "no-answer" | "busy" | "failed");
        if voicemail {
            assert!(
                answer.text.contains(
                    "<Say voice=\"alice\" language=\"fr-FR\">Laissez-moi un message.</Say>"
                ),
                "{}",
                answer.text
            );
            assert!(answer.text.contains("maxLength=\"60\""), "{}", answer.text);
            assert!(
                answer.text.contains(&format!(
                    "action=\"{PUBLIC_BASE_URL}/webhook/voice/recording\""
                )),
                "{}",
                answer.text
            );
        } else {
            assert!(
                !answer.text.contains("<Record"),
                "{dial_status}: {}",
                answer.text
            );
            assert!(answer.text.contains("<Hangup"), "{}", answer.text);
        }
    }

    let sid = call_sid();
    telephony
        .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
        .await?;
    telephony
        .webhook(
            "/webhook/voice/completed",
            &params(&[("CallSid", &sid), ("DialCallStatus", "no-answer")]),
        )
        .await?;
    let recording_sid = sb_testkit::twilio_sid("RE");
    let url = format!("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{recording_sid}");
    let action = params(&[
        ("CallSid", &sid),
        ("RecordingSid", &recording_sid),
        ("RecordingUrl", &url),
        ("RecordingDuration", "12"),
        ("Digits", "hangup"),
    ]);
    let answer = telephony
        .webhook("/webhook/voice/recording", &action)
        .await?;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/xml"));
    assert!(answer.text.contains("<Hangup"), "{}", answer.text);
    // The same voicemail again, and its status callback: no second announcement.
    telephony
        .webhook("/webhook/voice/recording", &action)
        .await?;
    let callback = params(&[
        ("CallSid", &sid),
        ("RecordingSid", &recording_sid),
        ("RecordingUrl", &url),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "12"),
        ("RecordingChannels", "1"),
        ("RecordingSource", "RecordVerb"),
    ]);
    let answer = telephony
        .webhook("/webhook/voice/recording", &callback)
        .await?;
    assert_eq!(answer.status, 200);
    let voicemails: Vec<VoicemailReceived> = telephony
        .events_of("sb.telephony.voicemail.received")
        .await?;
    assert_eq!(voicemails.len(), 1);
    assert_eq!(voicemails[0].recording_sid, recording_sid);
    assert_eq!(voicemails[0].duration_seconds, 12);
    assert_eq!(voicemails[0].from_number, CALLER);
    assert_eq!(voicemails[0].user_id, org.rep.id.to_string());

    let page = telephony
        .get(&org.rep, &format!("/api/calls?number=%2B{}", &CALLER[1..]))
        .await?;
    let call_id = page.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["sid"] == sid.as_str())
        .and_then(|c| c["id"].as_str())
        .ok_or("the voicemail's call is listed")?
        .to_owned();
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    assert_eq!(call.body["voicemail"], true, "{}", call.text);
    assert_eq!(call.body["dialStatus"], "no-answer");
    let recordings = call.body["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recordings.len(), 1, "{}", call.text);
    assert_eq!(recordings[0]["kind"], "VOICEMAIL");
    assert_eq!(recordings[0]["status"], "completed");
    assert_eq!(recordings[0]["url"], url.as_str());
    assert_eq!(recordings[0]["durationSeconds"], 12);
    Ok(())
}

#[tokio::test]
async fn a_number_that_rings_nowhere_goes_straight_to_voicemail() -> Result {
    let telephony = TestTelephony::spawn().await?;
    org(&telephony, json!({"ringApp": false})).await?;
    let answer = telephony
        .webhook("/webhook/voice", &inbound_form(&call_sid(), CALLER, NUMBER))
        .await?;
    assert!(answer.text.contains("<Record"), "{}", answer.text);
    assert!(!answer.text.contains("<Dial"), "{}", answer.text);
    assert!(
        answer
            .text
            .contains("Please leave a message after the beep."),
        "{}",
        answer.text
    );
    Ok(())
}

#[tokio::test]
async fn callers_still_reach_the_rep_by_a_direct_dial_when_twilio_cannot_ring_the_conference()
-> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony, json!({"forwardTo": FORWARD})).await?;
    // Both legs (the app, the forward) are refused by Twilio's REST API.
    telephony.twilio.fail_next_creates(500, 2);
    let sid = call_sid();
    let answer = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let xml = &answer.text;
    assert!(!xml.contains("<Conference"), "{xml}");
    assert!(
        xml.contains(&format!("<Client>{}</Client>", org.rep.identity())),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<Number>{FORWARD}</Number>")),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "action=\"{PUBLIC_BASE_URL}/webhook/voice/completed\""
        )),
        "{xml}"
    );
    // Nobody answering that <Dial> still ends in voicemail.
    let answer = telephony
        .webhook(
            "/webhook/voice/completed",
            &params(&[("CallSid", &sid), ("DialCallStatus", "no-answer")]),
        )
        .await?;
    assert!(answer.text.contains("<Record"), "{}", answer.text);
    let page = telephony.get(&org.rep, "/api/calls").await?;
    assert_eq!(first_call(&page.body)["sid"], sid.as_str());
    Ok(())
}

#[tokio::test]
async fn dual_channel_recordings_of_outbound_calls_are_stored() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony, json!({"recordCalls": true})).await?;
    let started = telephony
        .post(
            &org.rep,
            "/api/calls/initiate",
            &json!({"from": NUMBER, "to": CALLER}),
        )
        .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let (call_id, sid) = (
        started.body["callId"].as_str().unwrap_or_default(),
        started.body["sid"].as_str().unwrap_or_default(),
    );
    let recording_sid = sb_testkit::twilio_sid("RE");
    for status in ["in-progress", "completed", "in-progress"] {
        let mut form = params(&[
            ("CallSid", sid),
            ("RecordingSid", &recording_sid),
            ("RecordingStatus", status),
            ("RecordingSource", "DialVerb"),
            ("RecordingChannels", "2"),
        ]);
        if status == "completed" {
            form.extend(params(&[
                ("RecordingUrl", "https://api.twilio.com/rec"),
                ("RecordingDuration", "95"),
            ]));
        }
        let answer = telephony.webhook("/webhook/voice/recording", &form).await?;
        assert_eq!(answer.status, 200);
        assert!(
            !answer.text.contains("<Hangup"),
            "status callbacks get an empty document: {}",
            answer.text
        );
    }
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    let recording = &call.body["recordings"][0];
    assert_eq!(recording["kind"], "CALL");
    assert_eq!(
        recording["status"], "completed",
        "a late in-progress does not reopen it"
    );
    assert_eq!(recording["channels"], 2);
    assert_eq!(recording["durationSeconds"], 95);
    assert_eq!(call.body["recorded"], true);
    assert!(
        telephony
            .events_of::<VoicemailReceived>("sb.telephony.voicemail.received")
            .await?
            .is_empty()
    );
    Ok(())
}

/// The status callbacks Twilio sends for one scripted call, each with its SequenceNumber and
/// Timestamp (the facts are the same however they are delivered).
fn script(
    kind: &str,
    sid: &str,
    base: chrono::DateTime<chrono::Utc>,
) -> Vec<Vec<(String, String)>> {
    let steps: &[(&str, i64, Option<&str>)] = match kind {
        "answered" => &[
            ("initiated", 0, None),
            ("ringing", 2, None),
            ("in-progress", 9, None),
            ("completed", 131, Some("122")),
        ],
        "busy" => &[
            ("initiated", 0, None),
            ("ringing", 1, None),
            ("busy", 6, Some("0")),
        ],
        "no-answer-then-canceled" => &[
            ("initiated", 0, None),
            ("ringing", 1, None),
            ("no-answer", 31, Some("0")),
            ("canceled", 32, Some("0")),
        ],
        "inbound" => &[
            ("ringing", 0, None),
            ("in-progress", 4, None),
            ("completed", 64, Some("60")),
        ],
        _ => &[],
    };
    steps
        .iter()
        .enumerate()
        .map(|(sequence, (status, offset, duration))| {
            let at = (base + chrono::Duration::seconds(*offset))
                .format("%a, %d %b %Y %H:%M:%S +0000")
                .to_string();
            let mut form = params(&[
                ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                ("CallSid", sid),
                ("CallStatus", status),
                ("SequenceNumber", &sequence.to_string()),
                ("Timestamp", &at),
                ("CallbackSource", "call-progress-events"),
            ]);
            if let Some(duration) = duration {
                form.extend(params(&[("CallDuration", duration), ("Duration", "1")]));
            }
            form
        })
        .collect()
}

/// A fresh call of `kind`: outbound ones through the API (their callbacks carry `callId`),
/// inbound ones through the voice webhook. Returns (call id, status callback path, sid).
async fn new_call(
    telephony: &TestTelephony,
    org: &Org,
    kind: &str,
) -> Result<(String, String, String)> {
    if kind == "inbound" {
        let sid = call_sid();
        telephony
            .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
            .await?;
        let page = telephony
            .get(&org.rep, "/api/calls?direction=inbound&pageSize=1")
            .await?;
        let id = first_call(&page.body)["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        return Ok((id, "/webhook/voice/status".to_owned(), sid));
    }
    let started = telephony
        .post(
            &org.rep,
            "/api/calls/initiate",
            &json!({"from": NUMBER, "to": CALLER}),
        )
        .await?;
    assert_eq!(started.status, 201, "{}", started.text);
    let id = started.body["callId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sid = started.body["sid"].as_str().unwrap_or_default().to_owned();
    Ok((
        id.clone(),
        format!("/webhook/voice/status?callId={id}"),
        sid,
    ))
}

/// The call as the API shows it, without what differs between runs by construction: ids, and
/// the times the service itself set when the call began (an outbound call is INITIATED when the
/// API creates it, an inbound one RINGING when its voice webhook arrives).
async fn final_state(telephony: &TestTelephony, org: &Org, id: &str) -> Result<Value> {
    let mut call = telephony
        .get(&org.rep, &format!("/api/calls/{id}"))
        .await?
        .body;
    let first = if call["direction"] == "INBOUND" {
        "ringingAt"
    } else {
        "initiatedAt"
    };
    for key in ["id", "sid", "createdAt", "updatedAt", first] {
        call.as_object_mut().map(|c| c.remove(key));
    }
    Ok(call)
}

#[tokio::test]
async fn status_callbacks_replayed_three_times_shuffled_end_in_the_same_state() -> Result {
    let telephony = TestTelephony::spawn_with(|c| c.rate_limit.calls = 100).await?;
    let org = org(&telephony, json!({})).await?;
    let seed: u64 = std::env::var("SHUFFLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    for (kind, final_status, duration) in [
        ("answered", "COMPLETED", Some(122)),
        ("busy", "BUSY", Some(0)),
        ("no-answer-then-canceled", "CANCELED", Some(0)),
        ("inbound", "COMPLETED", Some(60)),
    ] {
        let (id, path, sid) = new_call(&telephony, &org, kind).await?;
        for form in script(kind, &sid, base) {
            let answer = telephony.webhook(&path, &form).await?;
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert!(answer.content_type.starts_with("text/xml"));
        }
        let expected = final_state(&telephony, &org, &id).await?;
        assert_eq!(expected["status"], final_status, "{kind}: {expected}");
        assert_eq!(
            expected["durationSeconds"].as_i64(),
            duration,
            "{kind}: {expected}"
        );
        if kind == "answered" {
            assert_eq!(
                expected["answeredAt"],
                (base + chrono::Duration::seconds(9))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }

        for run in 0..3 {
            let (id, path, sid) = new_call(&telephony, &org, kind).await?;
            let events = script(kind, &sid, base);
            let mut replay: Vec<_> = events
                .iter()
                .chain(&events)
                .chain(&events)
                .cloned()
                .collect();
            replay.shuffle(&mut rng);
            for form in &replay {
                let answer = telephony.webhook(&path, form).await?;
                assert_eq!(answer.status, 200, "{}", answer.text);
            }
            let state = final_state(&telephony, &org, &id).await?;
            assert_eq!(
                state, expected,
                "{kind} run {run} differs (SHUFFLE_SEED={seed})"
            );
        }
    }
    // Every call completed exactly once, whatever the order.
    let completed: Vec<PhoneCallCompleted> =
        telephony.events_of("sb.telephony.call.completed").await?;
    assert_eq!(completed.len(), 16, "SHUFFLE_SEED={seed}");
    let answered: Vec<&PhoneCallCompleted> = completed
        .iter()
        .filter(|c| c.duration_seconds == 122)
        .collect();
    assert_eq!(answered.len(), 4);
    assert!(
        answered
            .iter()
            .all(|c| c.direction == CallDirection::Outbound as i32
                && c.status == PhoneCallStatus::Completed as i32)
    );
    // A status change is only announced forward: never back from a terminal status.
    let changes: Vec<PhoneCallStatusChanged> = telephony
        .events_of("sb.telephony.call.status_changed")
        .await?;
    for change in &changes {
        let terminal = |s: i32| s >= PhoneCallStatus::Completed as i32;
        assert!(
            !terminal(change.previous_status) || change.status == PhoneCallStatus::Canceled as i32,
            "{change:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_late_ringing_never_overwrites_completed() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony, json!({})).await?;
    let (id, path, sid) = new_call(&telephony, &org, "answered").await?;
    let base = chrono::Utc::now();
    let steps = script("answered", &sid, base);
    telephony.webhook(&path, &steps[3]).await?;
    telephony.webhook(&path, &steps[1]).await?;
    telephony.webhook(&path, &steps[2]).await?;
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{id}"))
        .await?
        .body;
    assert_eq!(call["status"], "COMPLETED");
    assert_eq!(call["durationSeconds"], 122);
    assert!(
        call["ringingAt"].is_string() && call["answeredAt"].is_string(),
        "late reports still fill in their times: {call}"
    );
    let metrics = telephony.metrics().await?;
    assert!(metrics.contains("outcome=\"stale\""), "{metrics}");
    Ok(())
}

/// A callback reads its call without a lock and writes it in one statement only if the row did
/// not change meanwhile. Here another writer (another replica's in-progress callback) changes
/// the call between the two: the ringing callback's write waits for its lock, finds the row
/// changed, and applies the report under the lock instead, where ringing no longer advances.
#[tokio::test]
async fn a_callback_racing_another_write_of_its_call_never_moves_it_back() -> Result {
    use diesel::sql_types::{BigInt, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = BigInt)]
        waiting: i64,
    }

    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony, json!({})).await?;
    let (id, path, sid) = new_call(&telephony, &org, "answered").await?;
    let steps = script("answered", &sid, chrono::Utc::now());
    let call: Uuid = id.parse()?;

    let mut other = telephony.db.conn().await?;
    diesel::sql_query("BEGIN").execute(&mut other).await?;
    diesel::sql_query(
        "UPDATE telephony_calls SET status = 'IN_PROGRESS', status_sequence = 2, \
         answered_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind::<SqlUuid, _>(call)
    .execute(&mut other)
    .await?;
    let mut watch = telephony.db.conn().await?;
    let commit_once_the_callback_waits = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let blocked: Waiting = diesel::sql_query(
                "SELECT count(*) AS waiting FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut watch)
            .await?;
            if blocked.waiting > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the callback never waited for the call's row"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        diesel::sql_query("COMMIT").execute(&mut other).await?;
        Ok::<_, anyhow::Error>(())
    };
    let (answer, committed) = tokio::join!(
        telephony.webhook(&path, &steps[1]),
        commit_once_the_callback_waits
    );
    committed?;
    assert_eq!(answer?.status, 200);

    let state = telephony
        .get(&org.rep, &format!("/api/calls/{id}"))
        .await?
        .body;
    assert_eq!(state["status"], "IN_PROGRESS", "moved back: {state}");
    assert!(state["ringingAt"].is_string(), "{state}");
    let changes: Vec<PhoneCallStatusChanged> = telephony
        .events_of("sb.telephony.call.status_changed")
        .await?;
    assert!(
        changes
            .iter()
            .all(|c| c.status != PhoneCallStatus::Ringing as i32),
        "{changes:?}"
    );
    let metrics = telephony.metrics().await?;
    assert!(
        metrics.contains("sb_telephony_status_writes_total{path=\"locked\"} 1"),
        "the callback fell back to the locked path: {metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_nothing_is_written() -> Result {
    let telephony = TestTelephony::spawn().await?;
    org(&telephony, json!({})).await?;
    let calls_before = telephony.count("telephony_calls").await?;
    let events_before = telephony.count("outbox").await?;
    let form = inbound_form(&call_sid(), CALLER, NUMBER);
    let url = format!("{PUBLIC_BASE_URL}/webhook/voice");
    let mut tampered = form.clone();
    tampered[2].1 = call_sid();
    let cases: Vec<(&str, Form, Option<String>)> = vec![
        ("missing", form.clone(), None),
        ("garbage", form.clone(), Some("not-a-signature".to_owned())),
        (
            "wrong token",
            form.clone(),
            Some(sb_testkit::sign_twilio_webhook(
                "another-auth-token",
                &url,
                &form,
            )),
        ),
        // Signed for the address the request really reached (the Host header), not the public URL.
        (
            "host url",
            form.clone(),
            Some(
                telephony
                    .twilio
                    .sign(&telephony.app.url("/webhook/voice"), &form),
            ),
        ),
        (
            "other path",
            form.clone(),
            Some(
                telephony
                    .twilio
                    .sign(&format!("{PUBLIC_BASE_URL}/webhook/other"), &form),
            ),
        ),
        (
            "tampered",
            tampered,
            Some(telephony.twilio.sign(&url, &form)),
        ),
    ];
    let count = cases.len();
    for (name, body, signature) in cases {
        for path in [
            "/webhook/voice",
            "/webhook/voice/status",
            "/webhook/voice/completed",
            "/webhook/voice/recording",
            "/webhook/voice/outbound",
        ] {
            let answer = telephony
                .webhook_signed(path, &body, signature.as_deref())
                .await?;
            assert_eq!(answer.status, 403, "{name} {path}: {}", answer.text);
            assert_eq!(answer.body["code"], "invalid_signature", "{name}");
            assert!(answer.content_type.starts_with("application/problem+json"));
        }
    }
    assert_eq!(telephony.count("telephony_calls").await?, calls_before);
    assert_eq!(telephony.count("outbox").await?, events_before);
    let metrics = telephony.metrics().await?;
    assert!(
        metrics.contains(&format!(
            "sb_telephony_webhooks_total{{outcome=\"rejected\",webhook=\"/webhook/voice\"}} {count}"
        )),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn the_public_url_is_accepted_with_and_without_its_default_port() -> Result {
    let telephony = TestTelephony::spawn().await?;
    org(&telephony, json!({})).await?;
    let form = inbound_form(&call_sid(), CALLER, NUMBER);
    let with_port = telephony.twilio.sign(
        "https://voice.example.test:443/telephony/webhook/voice",
        &form,
    );
    let answer = telephony
        .webhook_signed("/webhook/voice", &form, Some(&with_port))
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let other_port = telephony.twilio.sign(
        "https://voice.example.test:8443/telephony/webhook/voice",
        &form,
    );
    let answer = telephony
        .webhook_signed("/webhook/voice", &form, Some(&other_port))
        .await?;
    assert_eq!(answer.status, 403);

    // A gateway on a non-default port: the port is part of the public URL.
    let ported =
        TestTelephony::spawn_with(|c| c.public_base_url = "http://gw.example.test:8080".to_owned())
            .await?;
    let form = inbound_form(&call_sid(), CALLER, "+33199887766");
    for (url, status) in [
        ("http://gw.example.test:8080/webhook/voice", 200),
        // Like the official libraries, a signature over the URL without its port passes too.
        ("http://gw.example.test/webhook/voice", 200),
        ("http://gw.example.test:80/webhook/voice", 403),
    ] {
        let signature = ported.twilio.sign(url, &form);
        let answer = ported
            .webhook_signed("/webhook/voice", &form, Some(&signature))
            .await?;
        assert_eq!(answer.status, status, "{url}");
    }
    // Query strings are part of what is signed.
    let sid = call_sid();
    let form = params(&[("CallSid", &sid), ("CallStatus", "ringing")]);
    let signature = ported.twilio.sign(
        "http://gw.example.test:8080/webhook/voice/status?callId=x&a=%C3%A9",
        &form,
    );
    let answer = ported
        .webhook_signed(
            "/webhook/voice/status?callId=x&a=%C3%A9",
            &form,
            Some(&signature),
        )
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = ported
        .webhook_signed(
            "/webhook/voice/status?callId=y&a=%C3%A9",
            &form,
            Some(&signature),
        )
        .await?;
    assert_eq!(answer.status, 403);
    Ok(())
}

#[tokio::test]
async fn callbacks_about_unknown_calls_answer_200_so_twilio_stops() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let sid = call_sid();
    for (path, form) in [
        (
            "/webhook/voice/status",
            params(&[
                ("CallSid", &sid),
                ("CallStatus", "completed"),
                ("CallDuration", "3"),
            ]),
        ),
        (
            &format!("/webhook/voice/status?callId={}", Uuid::now_v7()) as &str,
            params(&[("CallSid", &sid), ("CallStatus", "ringing")]),
        ),
        (
            "/webhook/voice/completed",
            params(&[("CallSid", &sid), ("DialCallStatus", "no-answer")]),
        ),
        (
            "/webhook/voice/recording",
            params(&[
                ("CallSid", &sid),
                ("RecordingSid", &sb_testkit::twilio_sid("RE")),
                ("RecordingStatus", "completed"),
            ]),
        ),
        (
            &format!("/webhook/voice/outbound?callId={}", Uuid::now_v7()) as &str,
            params(&[("CallSid", &sid)]),
        ),
    ] {
        let answer = telephony.webhook(path, &form).await?;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        assert!(answer.content_type.starts_with("text/xml"), "{path}");
    }
    assert_eq!(telephony.count("telephony_calls").await?, 0);
    let metrics = telephony.metrics().await?;
    for webhook in [
        "/webhook/voice/status\"} 2",
        "/webhook/voice/completed\"} 1",
        "/webhook/voice/recording\"} 1",
        "/webhook/voice/outbound\"} 1",
    ] {
        assert!(
            metrics.contains(&format!(
                "sb_telephony_webhooks_total{{outcome=\"unknown_call\",webhook=\"{webhook}"
            )),
            "{webhook}: {metrics}"
        );
    }
    // A request that is not a Twilio callback at all (no CallSid) is a 400, signed or not.
    let answer = telephony
        .webhook(
            "/webhook/voice/status",
            &params(&[("CallStatus", "ringing")]),
        )
        .await?;
    assert_eq!(answer.status, 400);
    Ok(())
}

#[tokio::test]
async fn calls_placed_from_the_app_dial_from_the_users_number() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony, json!({})).await?;
    let sid = call_sid();
    let form = params(&[
        ("CallSid", &sid),
        ("From", &format!("client:{}", org.rep.identity())),
        ("To", "+44 7911 123456"),
        ("CallStatus", "ringing"),
        ("ApplicationSid", common::TWIML_APP_SID),
    ]);
    for path in ["/webhook/voice/outbound", "/webhook/voice"] {
        let answer = telephony.webhook(path, &form).await?;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(answer.text.contains("</Conference>"), "{}", answer.text);
    }
    // The customer is rung once (the second request is the same call), from the user's number.
    let rung: Vec<_> = telephony
        .twilio
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Participants.json"))
        .collect();
    assert_eq!(rung.len(), 1);
    assert_eq!(rung[0].param("From"), Some(NUMBER));
    assert_eq!(rung[0].param("To"), Some(CALLER));
    let page = telephony.get(&org.rep, "/api/calls").await?;
    assert_eq!(page.body["total"], 1, "{}", page.text);
    assert_eq!(first_call(&page.body)["direction"], "OUTBOUND");
    assert_eq!(first_call(&page.body)["sid"], sid.as_str());
    // Someone without a number, or a number that is not a phone number, hears an apology.
    let stranger = User::new(org.rep.org, Role::Setter);
    let refused = telephony
        .webhook(
            "/webhook/voice/outbound",
            &params(&[
                ("CallSid", &call_sid()),
                ("From", &format!("client:{}", stranger.identity())),
                ("To", CALLER),
            ]),
        )
        .await?;
    assert!(
        refused.text.contains("<Hangup") && !refused.text.contains("<Dial"),
        "{}",
        refused.text
    );
    let invalid = telephony
        .webhook(
            "/webhook/voice/outbound",
            &params(&[
                ("CallSid", &call_sid()),
                ("From", &format!("client:{}", org.rep.identity())),
                ("To", "12"),
            ]),
        )
        .await?;
    assert!(!invalid.text.contains("<Dial"), "{}", invalid.text);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test]
async fn webhook_handlers_answer_fast() -> Result {
    let telephony = TestTelephony::spawn_with(|c| c.rate_limit.calls = 1000).await?;
    org(&telephony, json!({"forwardTo": FORWARD})).await?;
    // Warm the connection pool and the HTTP client.
    for _ in 0..10 {
        telephony
            .webhook("/webhook/voice", &inbound_form(&call_sid(), CALLER, NUMBER))
            .await?;
    }
    let mut incoming = Vec::new();
    let mut status = Vec::new();
    for _ in 0..200 {
        let sid = call_sid();
        let form = inbound_form(&sid, CALLER, NUMBER);
        let started = Instant::now();
        let answer = telephony.webhook("/webhook/voice", &form).await?;
        incoming.push(started.elapsed());
        assert_eq!(answer.status, 200);
        let form = params(&[
            ("CallSid", &sid),
            ("CallStatus", "completed"),
            ("CallDuration", "5"),
            ("SequenceNumber", "2"),
        ]);
        let started = Instant::now();
        let answer = telephony.webhook("/webhook/voice/status", &form).await?;
        status.push(started.elapsed());
        assert_eq!(answer.status, 200);
    }
    for (name, mut samples) in [("incoming", incoming), ("status", status)] {
        samples.sort();
        let (p50, p95, p99) = (
            percentile(&samples, 0.5),
            percentile(&samples, 0.95),
            percentile(&samples, 0.99),
        );
        println!(
            "{name}: n={} p50={p50:?} p95={p95:?} p99={p99:?} (client-measured, includes signing and HTTP)",
            samples.len()
        );
        // The target is < 50 ms; the median is asserted so a busy CI machine does not flake.
        assert!(p50 < Duration::from_millis(50), "{name} p50 {p50:?}");
    }
    Ok(())
}
