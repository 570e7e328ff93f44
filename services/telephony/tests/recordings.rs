//! Recordings and voicemails people can play, keep and delete: streamed from the fake Twilio
//! (which checks the account's credentials) with ranges, deleted there and here, expired by the
//! retention pass, transcribed from Twilio's signed callback. Runs in about 5 s.

mod common;

use std::time::Duration;

use common::{Telephone, TestTelephony, User, call_sid, inbound_form, params};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::proto::{PhoneRecordingDeleted, VoicemailTranscribed};
use sb_telephony::followup_once;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

const NUMBER: &str = "+33123456789";
const CALLER: &str = "+447911123456";

struct Org {
    ceo: User,
    rep: User,
}

async fn org(telephony: &TestTelephony) -> Result<Org> {
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    telephony
        .number(&ceo, NUMBER, json!({"ownerUserId": rep.id}))
        .await?;
    Ok(Org { ceo, rep })
}

/// The media the fake Twilio keeps for a recording: 1,000 bytes, each its index mod 251.
fn media() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

/// An inbound call nobody answered and its voicemail; returns (call id, voicemail view).
async fn voicemail(telephony: &TestTelephony, org: &Org) -> Result<(String, Value, String)> {
    let sid = call_sid();
    telephony
        .webhook("/webhook/voice", &inbound_form(&sid, CALLER, NUMBER))
        .await?;
    let record = telephony
        .webhook(
            "/webhook/voice/completed",
            &params(&[("CallSid", &sid), ("DialCallStatus", "no-answer")]),
        )
        .await?;
    assert!(
        record.text.contains("transcribe=\"true\"")
            && record
                .text
                .contains("transcribeCallback=\"https://voice.example.test/telephony/webhook/voice/transcription\""),
        "the voicemail asks Twilio for a transcription: {}",
        record.text
    );
    let recording_sid = sb_testkit::twilio_sid("RE");
    telephony.twilio.add_recording(&recording_sid, media());
    let url = format!(
        "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording_sid}",
        telephony.twilio.account_sid
    );
    let answer = telephony
        .webhook(
            "/webhook/voice/recording",
            &params(&[
                ("CallSid", &sid),
                ("RecordingSid", &recording_sid),
                ("RecordingUrl", &url),
                ("RecordingDuration", "12"),
            ]),
        )
        .await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let page = telephony.get(&org.rep, "/api/calls").await?;
    let call_id = page.body["items"]
        .as_array()
        .and_then(|calls| {
            calls
                .iter()
                .find(|c| c["sid"] == sid.as_str())
                .and_then(|c| c["id"].as_str())
        })
        .ok_or("the voicemail's call")?
        .to_owned();
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    let recording = call.body["recordings"][0].clone();
    assert_eq!(recording["sid"], recording_sid.as_str(), "{}", call.text);
    Ok((call_id, recording, recording_sid))
}

async fn play(
    telephony: &TestTelephony,
    user: &User,
    path: &str,
    range: Option<&str>,
) -> Result<reqwest::Response> {
    let mut request = telephony.app.get(path).bearer_auth(telephony.token(user));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    Ok(request.send().await?)
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn audit_rows(
    telephony: &TestTelephony,
    action: &str,
) -> Result<Vec<(Option<Uuid>, Option<String>)>> {
    use sb_db::schema::recording_access_audit as a;
    let mut conn = telephony.db.conn().await?;
    Ok(a::table
        .filter(a::action.eq(action))
        .filter(a::service.eq("telephony"))
        .order(a::at.asc())
        .select((a::user_id, a::byte_range))
        .load(&mut conn)
        .await?)
}

#[tokio::test]
async fn a_voicemail_plays_whole_or_in_ranges_for_those_who_may_see_the_call() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony).await?;
    let (call_id, recording, _) = voicemail(&telephony, &org).await?;
    let path = recording["mediaUrl"].as_str().ok_or("mediaUrl")?.to_owned();
    assert_eq!(
        path,
        format!(
            "/api/calls/{call_id}/recordings/{}/media",
            recording["id"].as_str().unwrap_or_default()
        )
    );

    let whole = play(&telephony, &org.rep, &path, None).await?;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        header(&whole, "content-type").as_deref(),
        Some("audio/mpeg")
    );
    assert_eq!(header(&whole, "content-length").as_deref(), Some("1000"));
    assert_eq!(header(&whole, "accept-ranges").as_deref(), Some("bytes"));
    assert!(header(&whole, "authorization").is_none());
    assert_eq!(whole.bytes().await?.to_vec(), media());

    let part = play(&telephony, &org.ceo, &path, Some("bytes=10-19")).await?;
    assert_eq!(part.status(), 206);
    assert_eq!(
        header(&part, "content-range").as_deref(),
        Some("bytes 10-19/1000")
    );
    assert_eq!(header(&part, "content-length").as_deref(), Some("10"));
    assert_eq!(part.bytes().await?.to_vec(), media()[10..20].to_vec());
    let past = play(&telephony, &org.rep, &path, Some("bytes=5000-")).await?;
    assert_eq!(past.status(), 416);

    // Scoped exactly like the call: another org's leader 404, a colleague outside it 403.
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    assert_eq!(
        play(&telephony, &stranger, &path, None).await?.status(),
        404
    );
    let colleague = User::new(org.rep.org, Role::Closer);
    assert_eq!(
        play(&telephony, &colleague, &path, None).await?.status(),
        403
    );
    let unknown = format!("/api/calls/{call_id}/recordings/{}/media", Uuid::now_v7());
    assert_eq!(
        play(&telephony, &org.rep, &unknown, None).await?.status(),
        404
    );

    // One audit row per play that reached the media, with who and which range.
    let rows = audit_rows(&telephony, "play").await?;
    assert_eq!(
        rows,
        vec![
            (Some(org.rep.id), None),
            (Some(org.ceo.id), Some("bytes=10-19".to_owned())),
            (Some(org.rep.id), Some("bytes=5000-".to_owned())),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_recording_removes_it_at_twilio_and_here_once() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony).await?;
    let (call_id, recording, recording_sid) = voicemail(&telephony, &org).await?;
    let id = recording["id"].as_str().ok_or("id")?.to_owned();
    let path = format!("/api/calls/{call_id}/recordings/{id}");

    // Another org cannot delete it.
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    assert_eq!(telephony.delete(&stranger, &path).await?.status, 404);
    assert!(telephony.twilio.has_recording(&recording_sid));

    let deleted = telephony.delete(&org.rep, &path).await?;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(!telephony.twilio.has_recording(&recording_sid));
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    let view = &call.body["recordings"][0];
    assert!(view["deletedAt"].is_string(), "{view}");
    assert_eq!(view["mediaUrl"], Value::Null);
    let media = play(&telephony, &org.rep, &format!("{path}/media"), None).await?;
    assert_eq!(media.status(), 404);

    // Again: the same answer, no second event or audit row.
    assert_eq!(telephony.delete(&org.rep, &path).await?.status, 204);
    let events: Vec<PhoneRecordingDeleted> = telephony
        .events_of("sb.telephony.recording.deleted")
        .await?;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].recording_sid.as_str(),
            events[0].kind.as_str(),
            events[0].reason.as_str()
        ),
        (recording_sid.as_str(), "VOICEMAIL", "user")
    );
    assert_eq!(events[0].deleted_by_user_id, org.rep.id.to_string());
    assert_eq!(
        audit_rows(&telephony, "delete").await?,
        vec![(Some(org.rep.id), None)]
    );
    Ok(())
}

#[tokio::test]
async fn twilio_away_leaves_a_recording_as_it_was() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony).await?;
    let (call_id, recording, _) = voicemail(&telephony, &org).await?;
    let path = format!(
        "/api/calls/{call_id}/recordings/{}",
        recording["id"].as_str().unwrap_or_default()
    );
    // Slower than the 2 s budget of the tests.
    telephony.twilio.set_latency(Duration::from_millis(2500));
    let down = telephony.delete(&org.rep, &path).await?;
    assert_eq!(
        (down.status, down.body["code"].as_str()),
        (503, Some("provider_unavailable")),
        "{}",
        down.text
    );
    telephony.twilio.set_latency(Duration::ZERO);
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    assert_eq!(call.body["recordings"][0]["deletedAt"], Value::Null);
    assert!(
        telephony
            .events_of::<PhoneRecordingDeleted>("sb.telephony.recording.deleted")
            .await?
            .is_empty()
    );
    // Twilio is back: the retry deletes it there (or finds it already gone, should the late
    // request have done it) and completes the deletion here.
    assert_eq!(telephony.delete(&org.rep, &path).await?.status, 204);
    assert_eq!(
        telephony
            .events_of::<PhoneRecordingDeleted>("sb.telephony.recording.deleted")
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn the_retention_pass_deletes_only_recordings_older_than_the_setting() -> Result {
    let telephony =
        TestTelephony::spawn_with(|c| c.recording_retention = Some(Duration::from_secs(3600)))
            .await?;
    let org = org(&telephony).await?;
    let (_, old, old_sid) = voicemail(&telephony, &org).await?;
    let (_, _, recent_sid) = voicemail(&telephony, &org).await?;
    {
        use sb_db::schema::telephony_recordings as r;
        let mut conn = telephony.db.conn().await?;
        diesel::update(r::table.filter(r::recording_sid.eq(&old_sid)))
            .set(r::created_at.eq(chrono::Utc::now() - chrono::Duration::hours(2)))
            .execute(&mut conn)
            .await?;
    }
    let state = telephony.state().await?;
    assert_eq!(followup_once(&state).await?.recordings_expired, 1);
    assert!(!telephony.twilio.has_recording(&old_sid));
    assert!(telephony.twilio.has_recording(&recent_sid));
    let events: Vec<PhoneRecordingDeleted> = telephony
        .events_of("sb.telephony.recording.deleted")
        .await?;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].recording_id,
        old["id"].as_str().unwrap_or_default()
    );
    assert_eq!(
        (
            events[0].reason.as_str(),
            events[0].deleted_by_user_id.as_str()
        ),
        ("retention", "")
    );
    assert_eq!(audit_rows(&telephony, "delete").await?, vec![(None, None)]);
    // Safe to run again.
    assert_eq!(followup_once(&state).await?.recordings_expired, 0);
    Ok(())
}

#[tokio::test]
async fn a_voicemails_transcription_is_kept_shown_and_announced_once() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = org(&telephony).await?;
    let (call_id, _, recording_sid) = voicemail(&telephony, &org).await?;
    let form = params(&[
        ("AccountSid", &telephony.twilio.account_sid),
        ("RecordingSid", &recording_sid),
        ("TranscriptionSid", &sb_testkit::twilio_sid("TR")),
        ("TranscriptionStatus", "completed"),
        (
            "TranscriptionText",
            "Hello, please call me back about the quote.",
        ),
    ]);
    // Unsigned: refused, nothing kept.
    let unsigned = telephony
        .webhook_signed("/webhook/voice/transcription", &form, None)
        .await?;
    assert_eq!(unsigned.status, 403);
    for _ in 0..2 {
        let answer = telephony
            .webhook("/webhook/voice/transcription", &form)
            .await?;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(answer.content_type.starts_with("text/xml"));
    }
    let call = telephony
        .get(&org.rep, &format!("/api/calls/{call_id}"))
        .await?;
    let view = &call.body["recordings"][0];
    assert_eq!(
        view["transcription"],
        "Hello, please call me back about the quote."
    );
    assert_eq!(view["transcriptionStatus"], "completed");
    let events: Vec<VoicemailTranscribed> = telephony
        .events_of("sb.telephony.voicemail.transcribed")
        .await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].recording_sid, recording_sid);
    assert_eq!(
        events[0].transcription,
        "Hello, please call me back about the quote."
    );
    assert_eq!(events[0].user_id, org.rep.id.to_string());

    let bad = params(&[
        ("RecordingSid", &recording_sid),
        ("TranscriptionStatus", "maybe"),
    ]);
    let answer = telephony
        .webhook("/webhook/voice/transcription", &bad)
        .await?;
    assert_eq!(answer.status, 400, "{}", answer.text);
    Ok(())
}
