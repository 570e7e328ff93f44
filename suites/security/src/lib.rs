//! Bodies of the fuzz targets in `fuzz/`: each takes arbitrary bytes, drives one decoder that
//! faces the internet, and panics when a property breaks (not only when the decoder panics).
//!
//! They live here, not in `fuzz/`, so that `cargo test --workspace` runs every committed corpus
//! file through them on the stable toolchain (`tests/corpus.rs`), and a crash found by libFuzzer
//! stays a regression test after the fuzzing run is over.

use std::time::Duration;

use base64::Engine;
use livekit_api::access_token::AccessToken;
use sb_auth::{AuthConfig, GuestLinks, JwtVerifier};
use sb_livekit::{LiveKitConfig, MAX_WEBHOOK_BYTES, WebhookError, WebhookVerifier};
use sb_socketio::packet::{self, EnginePacket, Packet, PacketType};
use sb_twilio::twiml::{self, Bridge, Ring, Speech};
use sb_twilio::{Params, signature};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("twilio_form", twilio_form),
    ("livekit_webhook", livekit_webhook),
    ("socketio_packet", socketio_packet),
    ("jwt", jwt),
    ("twiml", twiml),
];

const TWILIO_AUTH_TOKEN: &str = "fuzz-twilio-auth-token-0123456789ab";
const LIVEKIT_KEY: &str = "fuzzkey";
const LIVEKIT_SECRET: &str = "fuzz-livekit-secret-0123456789abcdef";
const JWT_SECRET: &str = "fuzz-jwt-secret-0123456789abcdef0123";
const GUEST_SECRET: &str = "fuzz-guest-link-secret-0123456789abcd";

/// Splits `data` at its first `\n` (the whole input and nothing when there is none).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Twilio webhook: `<url>\n<X-Twilio-Signature>\n<form body>`. The form is parsed as the service
/// parses it; the given signature must never verify (it is not the token's), the signature
/// computed over the parsed parameters must verify, one altered character must not, and the
/// JSON variant must not panic on any URL or body.
pub fn twilio_form(data: &[u8]) {
    let (url, rest) = split_line(data);
    let (given, body) = split_line(rest);
    let url = String::from_utf8_lossy(url);
    let given = String::from_utf8_lossy(given);
    let params = Params::parse_form(body);
    let _ = params.get("CallSid");
    let _ = params.get("SequenceNumber").map(str::parse::<u64>);

    let good = signature::sign(TWILIO_AUTH_TOKEN, &url, &params.0);
    assert!(
        signature::verify(TWILIO_AUTH_TOKEN, &good, &url, &params.0),
        "the signature of {url:?} with {:?} does not verify",
        params.0
    );
    // Whatever the header says, checking it must not panic (only the token's owner can sign).
    let _ = signature::verify(TWILIO_AUTH_TOKEN, &given, &url, &params.0);
    let mut altered: Vec<char> = good.chars().collect();
    if let Some(first) = altered.first_mut() {
        *first = if *first == 'A' { 'B' } else { 'A' };
    }
    let altered: String = altered.into_iter().collect();
    assert!(
        !signature::verify(TWILIO_AUTH_TOKEN, &altered, &url, &params.0),
        "an altered signature verified for {url:?}"
    );
    let _ = signature::verify_json(TWILIO_AUTH_TOKEN, &given, &url, body);
    let json_url = format!(
        "{url}{}bodySHA256={}",
        if url.contains('?') { '&' } else { '?' },
        signature::body_sha256(body)
    );
    let _ = signature::verify_json(
        TWILIO_AUTH_TOKEN,
        &signature::sign(TWILIO_AUTH_TOKEN, &json_url, &[]),
        &json_url,
        body,
    );
}

fn livekit_verifier() -> WebhookVerifier {
    WebhookVerifier::new(&LiveKitConfig {
        url: "ws://localhost:7880".to_owned(),
        api_key: LIVEKIT_KEY.to_owned(),
        api_secret: LIVEKIT_SECRET.to_owned().into(),
        token_ttl: Duration::from_secs(600),
    })
}

/// The `Authorization` header LiveKit would send with `body`.
pub fn sign_livekit_webhook(body: &[u8]) -> Option<String> {
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    AccessToken::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&digest)
        .to_jwt()
        .ok()
}

/// LiveKit webhook: `<Authorization header>\n<body>`. An arbitrary header never verifies; the
/// same body correctly signed is either decoded or refused as an invalid event, never with a
/// panic, and the size limit holds.
pub fn livekit_webhook(data: &[u8]) {
    let verifier = livekit_verifier();
    let (header, body) = split_line(data);
    let header = String::from_utf8_lossy(header);
    assert!(
        verifier.verify(Some(&header), body).is_err(),
        "an unsigned webhook verified: {header:?}"
    );
    let Some(signed) = sign_livekit_webhook(body) else {
        return;
    };
    match verifier.verify(Some(&signed), body) {
        Ok(event) => {
            // A decoded event re-encodes (what the handlers then read).
            let _ = serde_json::to_string(&event);
        }
        Err(WebhookError::TooLarge) => assert!(body.len() > MAX_WEBHOOK_BYTES),
        Err(WebhookError::NotUtf8) => assert!(std::str::from_utf8(body).is_err()),
        Err(WebhookError::Invalid(_)) => {}
        Err(WebhookError::MissingSignature) => panic!("a signature was given"),
    }
    // A signature over other bytes never verifies these.
    let mut other = body.to_vec();
    other.push(b' ');
    if let Some(signed_other) = sign_livekit_webhook(&other) {
        assert!(
            verifier.verify(Some(&signed_other), body).is_err(),
            "a signature of other bytes verified"
        );
    }
}

/// Re-encodes a client packet as the server would write it (without the Engine.IO `4`).
fn reencode(packet: &Packet) -> String {
    let encoded = match packet {
        Packet::Connect { nsp, auth } => {
            packet::encode(PacketType::Connect, nsp, None, auth.as_ref())
        }
        Packet::Disconnect { nsp } => packet::encode(PacketType::Disconnect, nsp, None, None),
        Packet::Event {
            nsp,
            id,
            event,
            args,
        } => packet::encode_event(nsp, event, args, *id),
        Packet::Ack { nsp, id, args } => packet::encode(
            PacketType::Ack,
            nsp,
            Some(*id),
            Some(&Value::Array(args.clone())),
        ),
    };
    encoded.chars().skip(1).collect()
}

/// Equal, except that a JSON number f64 cannot represent exactly may come back one unit in the
/// last place away: serde_json (without its `float_roundtrip` feature) parses such literals
/// (`18446744555555073709551615`) with a fast algorithm that is not always correctly rounded, so
/// its shortest re-encoding can read back as the neighbouring f64 (the `socketio_packet`
/// target's finding, `fuzz/regressions/socketio_packet/`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn same_args(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y))
}

fn same_packet(a: &Packet, b: &Packet) -> bool {
    match (a, b) {
        (
            Packet::Event {
                nsp,
                id,
                event,
                args,
            },
            Packet::Event {
                nsp: n,
                id: i,
                event: e,
                args: r,
            },
        ) => nsp == n && id == i && event == e && same_args(args, r),
        (
            Packet::Ack { nsp, id, args },
            Packet::Ack {
                nsp: n,
                id: i,
                args: r,
            },
        ) => nsp == n && id == i && same_args(args, r),
        (Packet::Connect { nsp, auth }, Packet::Connect { nsp: n, auth: a2 }) => {
            nsp == n
                && match (auth, a2) {
                    (Some(x), Some(y)) => same_json(x, y),
                    (x, y) => x == y,
                }
        }
        _ => a == b,
    }
}

/// Engine.IO / Socket.IO: the input is a long-polling payload (packets separated by `\x1e`);
/// each Engine.IO packet is read, each message's Socket.IO packet is read, and every packet
/// that reads re-encodes to a packet that reads back the same.
pub fn socketio_packet(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for part in text.split(packet::SEPARATOR) {
        let Ok(engine) = EnginePacket::parse(part) else {
            continue;
        };
        let EnginePacket::Message(message) = engine else {
            continue;
        };
        if let Ok(packet) = Packet::parse(message) {
            let encoded = reencode(&packet);
            let again = match Packet::parse(&encoded) {
                Ok(again) => again,
                Err(error) => {
                    panic!("{message:?} re-encoded as {encoded:?} does not read: {error:?}")
                }
            };
            assert!(
                same_packet(&again, &packet),
                "{message:?} re-encoded as {encoded:?} reads differently: {again:?}"
            );
        }
    }
    let _ = Packet::parse(&text);
}

/// JWT: the platform verifier (header form and bare token) and the guest-link verifier on
/// arbitrary text. Without the keys nothing verifies, and every refusal maps to a stable code.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(verifier) = JwtVerifier::new(&AuthConfig::hs256(JWT_SECRET)) else {
        return;
    };
    match verifier.verify(&text) {
        Ok(principal) => panic!("a token verified without the key: {principal:?}"),
        Err(error) => assert!(
            matches!(
                error.code().as_str(),
                "invalid_token" | "token_expired" | "missing_token"
            ),
            "unexpected code {}",
            error.code()
        ),
    }
    let header = format!("Bearer {text}");
    assert!(verifier.verify_header(Some(&header)).is_err());
    assert!(verifier.verify_header(Some(&text)).is_err());
    let links = GuestLinks::new(GUEST_SECRET.to_owned().into());
    assert!(
        links.verify_link(&text).is_err(),
        "a guest link verified without the key"
    );
}

/// Every character XML 1.0 can carry (`Char` production); the others cannot appear in TwiML,
/// escaped or not.
fn xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// What an XML parser reads back from text written with `text`: only XML characters, then line
/// ends normalised to `\n`.
fn as_read_back(text: &str) -> String {
    let kept: String = text.chars().filter(|c| xml_char(*c)).collect();
    kept.replace("\r\n", "\n").replace('\r', "\n")
}

fn say_texts(xml: &str) -> Vec<String> {
    let document = match roxmltree::Document::parse(xml) {
        Ok(document) => document,
        Err(error) => panic!("TwiML is not well-formed XML ({error}): {xml:?}"),
    };
    document
        .descendants()
        .filter(|node| node.has_tag_name("Say"))
        .map(|node| node.text().unwrap_or_default().to_owned())
        .collect()
}

/// TwiML from user-provided strings: `<greeting>\n<voice>\n<language>\n<number>`. Every document
/// must be well-formed XML whose `<Say>` reads back exactly the greeting (escaped, not
/// interpreted), with every other user string kept inside its attribute or noun.
pub fn twiml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.splitn(4, '\n');
    let greeting = fields.next().unwrap_or_default();
    let voice = fields.next().unwrap_or("Polly.Joanna");
    let language = fields.next().unwrap_or("en-US");
    let number = fields.next().unwrap_or("+15005550006");
    let speech = Speech {
        voice: voice.to_owned(),
        language: language.to_owned(),
    };
    let expected = as_read_back(greeting);
    let documents = [
        twiml::inbound(
            &speech,
            greeting,
            &Ring {
                client: Some(format!("u_{number}")),
                forward_to: Some(number.to_owned()),
                timeout_seconds: 20,
                action: "https://voice.example.test/webhook/voice/completed?x=1&y=2".to_owned(),
            },
        ),
        twiml::voicemail(
            &speech,
            greeting,
            "https://voice.example.test/webhook/voice/recording",
            "https://voice.example.test/webhook/voice/transcription",
        ),
        twiml::say_and_hang_up(&speech, greeting),
    ];
    for xml in &documents {
        let says = say_texts(xml);
        assert_eq!(says.len(), 1, "one <Say> expected in {xml:?}");
        assert_eq!(says[0], expected, "the greeting changed in {xml:?}");
        let document = roxmltree::Document::parse(xml).ok();
        if let Some(say) = document
            .as_ref()
            .and_then(|d| d.descendants().find(|n| n.has_tag_name("Say")))
        {
            assert_eq!(
                say.attribute("voice").map(as_attribute),
                Some(as_attribute(&as_read_back(voice)))
            );
            assert_eq!(
                say.attribute("language").map(as_attribute),
                Some(as_attribute(&as_read_back(language)))
            );
        }
    }
    // Every call is bridged through its conference: the conference's name is read back as written.
    let bridged = twiml::bridge(
        None,
        &Bridge {
            name: greeting.to_owned(),
            label: number.to_owned(),
            starts: false,
            action: "https://voice.example.test/webhook/voice/completed".to_owned(),
            status_callback: "https://voice.example.test/webhook/voice/conference?callId=1&a=2"
                .to_owned(),
            recording_callback: Some(
                "https://voice.example.test/webhook/voice/recording?callId=1".to_owned(),
            ),
        },
    );
    let document = match roxmltree::Document::parse(&bridged) {
        Ok(document) => document,
        Err(error) => panic!("conference TwiML is not well-formed XML ({error}): {bridged:?}"),
    };
    let conferences: Vec<String> = document
        .descendants()
        .filter(|n| n.has_tag_name("Conference"))
        .map(|n| n.text().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        conferences,
        vec![expected],
        "the conference's name changed in {bridged:?}"
    );
}

/// Attribute values are read back with whitespace characters as spaces (XML attribute-value
/// normalisation).
fn as_attribute(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}
