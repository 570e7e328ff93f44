//! Interop with Twilio's official Node helper library (`twilio` on npm, `interop/twilio`): the
//! webhook signature check agrees with `getExpectedTwilioSignature` / `validateRequest` /
//! `validateRequestWithBody` on 1,000 generated cases, both ways; every TwiML answer equals, as
//! XML, what `twilio.twiml.VoiceResponse` makes for the same verbs; the voice token matches an
//! `AccessToken` with a `VoiceGrant`.

mod common;

use std::collections::BTreeMap;

use base64::Engine;
use common::{
    PUBLIC_BASE_URL, Telephone, TestTelephony, User, VoiceIdentity, call_sid, inbound_form, params,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use sb_auth::Role;
use sb_testkit::{Result, twilio_node};
use sb_twilio::signature;
use sb_twilio::twiml::{VOICEMAIL_MAX_SECONDS, prompts};
use serde_json::{Value, json};
use uuid::Uuid;

const CASES: usize = 1000;

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

/// Text with the characters that trip signature checks: unicode (accents, CJK, emoji outside
/// the BMP, characters between the surrogates and U+FFFF), spaces, `+`, `&`, `=`, empty.
fn text(rng: &mut StdRng) -> String {
    let pieces = [
        "",
        "a",
        "Z",
        "0",
        "42",
        " ",
        "+",
        "&",
        "=",
        "%",
        "é",
        "ß",
        "日本",
        "😀",
        "🎉x",
        "\u{FF5E}",
        "\u{E000}",
        "Ω",
        "+33123456789",
        "CA0123456789abcdef",
        "hello world",
        "a+b",
        "x&y=z",
        "\"'<>",
    ];
    let n = rng.random_range(0..4);
    (0..n).map(|_| pick(rng, &pieces)).collect()
}

fn name(rng: &mut StdRng) -> String {
    let names = [
        "CallSid",
        "From",
        "To",
        "Digits",
        "CallStatus",
        "Caller",
        "a",
        "A",
        "b",
        "_",
        "10",
        "9",
        "ÄÖ",
        "Ωmega",
        "😀key",
        "\u{FF5E}k",
        "\u{E000}k",
        "key with space",
        "",
        "x+y",
        "bodySHA256",
    ];
    pick(rng, &names).to_owned()
}

struct Case {
    token: String,
    url: String,
    sign_url: String,
    params: Vec<(String, String)>,
    json: Option<String>,
}

fn url_of(rng: &mut StdRng, json_body: Option<&str>) -> (String, String) {
    let https = rng.random_bool(0.6);
    let scheme = if https { "https" } else { "http" };
    let host = pick(
        rng,
        &[
            "example.com",
            "voice.example.test",
            "127.0.0.1",
            "[::1]",
            "xn--bcher-kva.example",
            "api.twilio-test.io",
        ],
    );
    let user = if rng.random_bool(0.05) {
        "user:secret@"
    } else {
        ""
    };
    let default_port = if https { ":443" } else { ":80" };
    let port = match rng.random_range(0..10) {
        0..=4 => "",
        5 | 6 => default_port,
        7 => ":8443",
        8 => ":3005",
        _ => ":8080",
    };
    let segments = [
        "webhook",
        "voice",
        "status",
        "%C3%A9t%C3%A9",
        "é",
        "日本",
        "a+b",
        "a%20b",
        "~x",
        "😀",
        "telephony",
    ];
    let path: String = (0..rng.random_range(0..4))
        .map(|_| format!("/{}", pick(rng, &segments)))
        .collect();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let mut query: Vec<String> = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let key = pick(rng, &["callId", "a", "a", "foo", "bar", "é", "empty", "q"]);
        let value = pick(
            rng,
            &[
                "1",
                "2",
                "",
                "x%20y",
                "%C3%A9",
                "é",
                "a+b",
                "😀",
                "0190a000-0000-7000",
            ],
        );
        query.push(format!("{key}={value}"));
    }
    if let Some(body) = json_body {
        let hash = if rng.random_bool(0.9) {
            signature::body_sha256(body.as_bytes())
        } else {
            signature::body_sha256(b"another body")
        };
        query.push(format!("bodySHA256={hash}"));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let url = format!("{scheme}://{user}{host}{port}{path}{query}");
    // What Twilio signed: the URL itself, or it with/without the default port (both accepted),
    // or with another port (refused).
    let base = format!("{scheme}://{user}{host}");
    let sign_url = match rng.random_range(0..10) {
        0..=6 => url.clone(),
        7 => format!("{base}{path}{query}"),
        8 => format!("{base}{default_port}{path}{query}"),
        _ => format!("{base}:9999{path}{query}"),
    };
    (url, sign_url)
}

fn generate(rng: &mut StdRng) -> Case {
    let token = Uuid::new_v4().simple().to_string();
    let json = rng.random_bool(0.15).then(|| {
        json!({"event": text(rng), "n": rng.random_range(0..1000), "nested": {"k": text(rng)}})
            .to_string()
    });
    let (url, sign_url) = url_of(rng, json.as_deref());
    let mut params = Vec::new();
    if json.is_none() {
        for _ in 0..rng.random_range(0..9) {
            let key = name(rng);
            params.push((key.clone(), text(rng)));
            // Repeated names, sometimes with a repeated value.
            if rng.random_bool(0.2) {
                let value = if rng.random_bool(0.3) {
                    params.last().map(|(_, v)| v.clone()).unwrap_or_default()
                } else {
                    text(rng)
                };
                params.push((key, value));
            }
        }
    }
    Case {
        token,
        url,
        sign_url,
        params,
        json,
    }
}

/// Form parameters as the Node library receives them from a body parser: a string per name, an
/// array for repeated names.
fn params_object(params: &[(String, String)]) -> Value {
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in params {
        grouped.entry(name).or_default().push(value);
    }
    Value::Object(
        grouped
            .into_iter()
            .map(|(name, values)| {
                let value = if values.len() == 1 {
                    json!(values[0])
                } else {
                    json!(values)
                };
                (name.to_owned(), value)
            })
            .collect(),
    )
}

fn tamper(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

#[tokio::test]
async fn signatures_agree_with_the_official_library_both_ways_on_1000_cases() -> Result {
    let seed: u64 = std::env::var("INTEROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..CASES).map(|_| generate(&mut rng)).collect();
    let mut requests = Vec::new();
    let mut candidates_of = Vec::new();
    for case in &cases {
        let ours = signature::sign(&case.token, &case.sign_url, &case.params);
        let candidates = vec![
            ours.clone(),
            tamper(&ours),
            signature::sign("another-token", &case.sign_url, &case.params),
            String::new(),
        ];
        requests.push(json!({
            "authToken": case.token,
            "url": case.url,
            "signUrl": case.sign_url,
            "params": params_object(&case.params),
            "json": case.json.is_some(),
            "body": case.json,
            "candidates": candidates,
        }));
        candidates_of.push(candidates);
    }
    let answers = twilio_node(json!({"op": "signatures", "cases": requests})).await?;
    let answers = answers.as_array().ok_or("an array of answers")?;
    assert_eq!(answers.len(), CASES);
    let (mut accepted, mut refused, mut json_cases, mut repeated) = (0, 0, 0, 0);
    for ((case, candidates), answer) in cases.iter().zip(&candidates_of).zip(answers) {
        let context = || {
            format!(
                "seed {seed}: {} signed as {} with {:?} / {:?}",
                case.url, case.sign_url, case.params, case.json
            )
        };
        assert!(answer.get("error").is_none(), "{}: {answer}", context());
        // The same signature computed both sides…
        assert_eq!(
            answer["expected"].as_str(),
            Some(candidates[0].as_str()),
            "{}",
            context()
        );
        // …and every candidate judged alike: the library's signature by our check, ours by the
        // library's, and refusals of tampered, foreign and empty ones.
        for (index, candidate) in candidates.iter().enumerate() {
            let theirs = answer["valid"][index].as_bool().ok_or("a verdict")?;
            let ours = match &case.json {
                Some(body) => {
                    signature::verify_json(&case.token, candidate, &case.url, body.as_bytes())
                }
                None => signature::verify(&case.token, candidate, &case.url, &case.params),
            };
            assert_eq!(ours, theirs, "candidate {index}: {}", context());
            if index == 0 {
                if ours {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            } else {
                assert!(!ours, "candidate {index} accepted: {}", context());
            }
        }
        json_cases += usize::from(case.json.is_some());
        let mut names: Vec<&String> = case.params.iter().map(|(n, _)| n).collect();
        let total = names.len();
        names.sort();
        names.dedup();
        repeated += usize::from(names.len() < total);
    }
    println!(
        "seed {seed}: {accepted} accepted and {refused} refused by both, {json_cases} JSON bodies, {repeated} with repeated names"
    );
    assert!(
        accepted > 700 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
    assert!(json_cases > 50 && repeated > 50);
    Ok(())
}

/// A TwiML document as comparable data: element name, attributes, text, children (whitespace
/// between elements and the attributes' order do not matter).
#[derive(Debug, PartialEq, Eq)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    text: String,
    children: Vec<Element>,
}

fn element(node: roxmltree::Node<'_, '_>) -> Element {
    Element {
        name: node.tag_name().name().to_owned(),
        attributes: node
            .attributes()
            .map(|a| (a.name().to_owned(), a.value().to_owned()))
            .collect(),
        text: node
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .collect::<String>()
            .trim()
            .to_owned(),
        children: node
            .children()
            .filter(|c| c.is_element())
            .map(element)
            .collect(),
    }
}

fn normalised(xml: &str) -> Result<Element> {
    let document = roxmltree::Document::parse(xml)?;
    Ok(element(document.root_element()))
}

/// The conference that bridges call `id` (`call_<id without dashes>`).
fn conference_of(id: &str) -> Result<String> {
    Ok(format!("call_{}", Uuid::parse_str(id)?.simple()))
}

fn conference_url(id: &str) -> Result<String> {
    Ok(format!(
        "{PUBLIC_BASE_URL}/webhook/voice/conference?callId={}",
        Uuid::parse_str(id)?
    ))
}

#[tokio::test]
async fn every_twiml_answer_matches_the_official_voice_response() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer);
    let number = "+33123456789";
    let forward = "+33612345678";
    let caller = "+447911123456";
    telephony
        .number(&ceo, number, json!({"ownerUserId": rep.id, "forwardTo": forward, "language": "fr-FR", "greeting": "Bonjour & bienvenue <chez nous>", "recordCalls": true, "ringTimeoutSeconds": 25}))
        .await?;
    let completed_url = format!("{PUBLIC_BASE_URL}/webhook/voice/completed");
    let recording_url = format!("{PUBLIC_BASE_URL}/webhook/voice/recording");
    let transcription_url = format!("{PUBLIC_BASE_URL}/webhook/voice/transcription");
    let fr = json!({"voice": "alice", "language": "fr-FR"});
    let en = json!({"voice": "alice", "language": "en-US"});
    let mut documents: Vec<(&str, String, Value)> = Vec::new();

    let sid = call_sid();
    let inbound = telephony
        .webhook("/webhook/voice", &inbound_form(&sid, caller, number))
        .await?;
    let calls = telephony.get(&ceo, "/api/calls").await?;
    let inbound_call = calls.body["items"][0]["id"]
        .as_str()
        .ok_or("the inbound call")?
        .to_owned();
    documents.push(("inbound", inbound.text, json!([
        {"verb": "say", "attrs": fr, "text": "Bonjour & bienvenue <chez nous>"},
        {"verb": "dial", "attrs": {"action": completed_url, "method": "POST"},
         "nouns": [{"noun": "conference", "text": conference_of(&inbound_call)?, "attrs": {
             "beep": "false", "startConferenceOnEnter": false, "endConferenceOnExit": true, "waitUrl": "",
             "participantLabel": "customer", "statusCallback": conference_url(&inbound_call)?,
             "statusCallbackMethod": "POST", "statusCallbackEvent": "start end join leave mute"}}]},
    ])));
    let voicemail = telephony
        .webhook(
            "/webhook/voice/completed",
            &params(&[("CallSid", &sid), ("DialCallStatus", "no-answer")]),
        )
        .await?;
    documents.push(("voicemail", voicemail.text, json!([
        {"verb": "say", "attrs": fr, "text": prompts("fr-FR").voicemail},
        {"verb": "record", "attrs": {"action": recording_url, "method": "POST", "maxLength": VOICEMAIL_MAX_SECONDS,
                                     "transcribe": true, "transcribeCallback": transcription_url}},
    ])));
    let recorded = telephony
        .webhook(
            "/webhook/voice/recording",
            &params(&[
                ("CallSid", &sid),
                ("RecordingSid", &sb_testkit::twilio_sid("RE")),
                ("RecordingUrl", "https://api.twilio.com/r"),
                ("RecordingDuration", "4"),
            ]),
        )
        .await?;
    documents.push((
        "after the voicemail",
        recorded.text,
        json!([{"verb": "hangup"}]),
    ));
    let other = call_sid();
    telephony
        .webhook("/webhook/voice", &inbound_form(&other, caller, number))
        .await?;
    let answered = telephony
        .webhook(
            "/webhook/voice/completed",
            &params(&[
                ("CallSid", &other),
                ("DialCallStatus", "completed"),
                ("DialCallDuration", "40"),
            ]),
        )
        .await?;
    documents.push(("answered", answered.text, json!([{"verb": "hangup"}])));
    let unknown = telephony
        .webhook(
            "/webhook/voice",
            &inbound_form(&call_sid(), caller, "+33199887766"),
        )
        .await?;
    documents.push((
        "unknown number",
        unknown.text,
        json!([
            {"verb": "say", "attrs": en, "text": prompts("en").not_in_service},
            {"verb": "hangup"},
        ]),
    ));
    let started = telephony
        .post(
            &rep,
            "/api/calls/initiate",
            &json!({"from": number, "to": caller}),
        )
        .await?;
    let (call_id, call) = (
        started.body["callId"].as_str().unwrap_or_default(),
        started.body["sid"].as_str().unwrap_or_default(),
    );
    let outbound = telephony
        .webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &params(&[("CallSid", call), ("CallStatus", "in-progress")]),
        )
        .await?;
    documents.push(("outbound", outbound.text, json!([
        {"verb": "dial", "attrs": {"action": completed_url, "method": "POST"},
         "nouns": [{"noun": "conference", "text": conference_of(call_id)?, "attrs": {
             "beep": "false", "startConferenceOnEnter": true, "endConferenceOnExit": true, "waitUrl": "",
             "participantLabel": "rep", "statusCallback": conference_url(call_id)?,
             "statusCallbackMethod": "POST", "statusCallbackEvent": "start end join leave mute",
             "record": "record-from-start", "recordingStatusCallback": format!("{recording_url}?callId={call_id}"),
             "recordingStatusCallbackMethod": "POST"}}]},
    ])));
    let status = telephony
        .webhook(
            &format!("/webhook/voice/status?callId={call_id}"),
            &params(&[("CallSid", call), ("CallStatus", "ringing")]),
        )
        .await?;
    documents.push(("status callback", status.text, json!([])));

    let theirs = twilio_node(json!({"op": "twiml", "documents": documents.iter().map(|(_, _, verbs)| verbs).collect::<Vec<_>>()})).await?;
    let theirs = theirs.as_array().ok_or("an array of documents")?;
    assert_eq!(theirs.len(), documents.len());
    for ((what, ours, _), theirs) in documents.iter().zip(theirs) {
        let theirs = theirs.as_str().ok_or("a document")?;
        assert!(
            ours.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{what}: {ours}"
        );
        assert_eq!(
            normalised(ours)?,
            normalised(theirs)?,
            "{what}:\nours   {ours}\ntheirs {theirs}"
        );
    }
    Ok(())
}

fn decode_part(token: &str, index: usize) -> Result<Value> {
    let part = token.split('.').nth(index).ok_or("a JWT part")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::test]
async fn the_voice_token_matches_the_official_access_token() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let rep = User::new(Uuid::now_v7(), Role::Closer);
    let ours = telephony.get(&rep, "/api/voice/token?platform=ios").await?;
    assert_eq!(ours.status, 200, "{}", ours.text);
    let ours = ours.body["token"].as_str().unwrap_or_default().to_owned();
    let theirs = twilio_node(json!({
        "op": "voice-token",
        "accountSid": telephony.twilio.account_sid,
        "keySid": common::API_KEY_SID,
        "secret": common::API_KEY_SECRET,
        "identity": rep.identity(),
        "ttl": 3600,
        "outgoingApplicationSid": common::TWIML_APP_SID,
        "pushCredentialSid": common::PUSH_APNS,
    }))
    .await?;
    let theirs = theirs["token"].as_str().unwrap_or_default().to_owned();

    let (our_header, their_header) = (decode_part(&ours, 0)?, decode_part(&theirs, 0)?);
    assert_eq!(our_header, their_header, "headers");
    let (our_claims, their_claims) = (decode_part(&ours, 1)?, decode_part(&theirs, 1)?);
    assert_eq!(our_claims["grants"], their_claims["grants"], "grants");
    for claim in ["iss", "sub"] {
        assert_eq!(our_claims[claim], their_claims[claim], "{claim}");
    }
    for claims in [&our_claims, &their_claims] {
        let iat = claims["iat"].as_i64().ok_or("iat")?;
        assert_eq!(claims["exp"].as_i64(), Some(iat + 3600));
        assert_eq!(claims["jti"], format!("{}-{iat}", common::API_KEY_SID));
    }
    let keys = |claims: &Value| {
        claims
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
    };
    assert_eq!(
        keys(&our_claims).map(|mut k| {
            k.sort();
            k
        }),
        keys(&their_claims).map(|mut k| {
            k.sort();
            k
        })
    );

    // Each side accepts the other's signature.
    let verified =
        twilio_node(json!({"op": "verify-token", "token": ours, "secret": common::API_KEY_SECRET}))
            .await?;
    assert_eq!(verified["ok"], true, "{verified}");
    let wrong =
        twilio_node(json!({"op": "verify-token", "token": ours, "secret": "not-the-secret"}))
            .await?;
    assert_eq!(wrong["ok"], false);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(
        &theirs,
        &jsonwebtoken::DecodingKey::from_secret(common::API_KEY_SECRET.as_bytes()),
        &validation,
    )?;
    Ok(())
}

#[tokio::test]
async fn webhooks_signed_by_the_official_library_are_accepted_by_the_service() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    telephony
        .number(
            &ceo,
            "+33123456789",
            json!({"ownerUserId": User::new(org, Role::Closer).id}),
        )
        .await?;
    let form = inbound_form(&call_sid(), "+447911123456", "+33123456789");
    let url = format!("{PUBLIC_BASE_URL}/webhook/voice");
    let signed = twilio_node(json!({"op": "signatures", "cases": [{
        "authToken": telephony.twilio.auth_token, "url": url, "params": params_object(&form), "json": false, "candidates": [],
    }]}))
    .await?;
    let signature = signed[0]["expected"]
        .as_str()
        .ok_or("a signature")?
        .to_owned();
    let accepted = telephony
        .webhook_signed("/webhook/voice", &form, Some(&signature))
        .await?;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let mut tampered = form.clone();
    tampered[5].1 = "+15005550006".to_owned();
    let refused = telephony
        .webhook_signed("/webhook/voice", &tampered, Some(&signature))
        .await?;
    assert_eq!(refused.status, 403);
    Ok(())
}
