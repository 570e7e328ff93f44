//! Interop with LiveKit's official Node server SDK (`interop/livekit`, lockfile committed): its
//! TokenVerifier reads exactly our presets' grants, webhooks it signs pass our verifier (a tampered
//! body does not), and its RoomServiceClient talks to the fake server like to the real one.
//! The npm packages are installed on first use (`npm ci`), and by `.ci/run`.

use sb_livekit::{LiveKitConfig, Preset, TokenIssuer, WebhookVerifier};
use sb_testkit::{FakeLiveKit, Result};
use serde_json::{Value, json};

async fn node(request: Value) -> Result<Value> {
    sb_testkit::livekit_node(request).await
}

fn config(key: &str, secret: &str) -> LiveKitConfig {
    let mut config = LiveKitConfig::dev("ws://127.0.0.1:7880");
    config.api_key = key.to_owned();
    config.api_secret = secret.to_owned().into();
    config
}

const KEY: &str = "APIinterop";
const SECRET: &str = "an-interop-secret-long-enough-for-hs256";

#[tokio::test]
async fn the_official_sdk_reads_exactly_the_grants_of_each_preset() -> Result {
    let issuer = TokenIssuer::new(config(KEY, SECRET));
    let mut tokens = serde_json::Map::new();
    for preset in Preset::ALL {
        let issued = issuer.issue("org_a_apt_b", "u_0190a000", "Ada", preset, None, None)?;
        tokens.insert(format!("{preset:?}"), Value::String(issued.token));
    }
    let answer = node(
        json!({ "op": "verify-tokens", "apiKey": KEY, "apiSecret": SECRET, "tokens": tokens }),
    )
    .await?;
    for preset in Preset::ALL {
        let seen = &answer[format!("{preset:?}")];
        assert_eq!(seen["ok"], true, "{preset:?}: {seen}");
        assert_eq!(seen["sub"], "u_0190a000");
        let expected = serde_json::to_value(preset.grants("org_a_apt_b"))?;
        assert_eq!(
            seen["video"], expected,
            "{preset:?}: the SDK read other grants than the preset's"
        );
    }
    // Spelled out for two presets, independently of our own serialization.
    assert_eq!(
        answer["SupervisorListen"]["video"],
        json!({"roomJoin": true, "room": "org_a_apt_b", "canPublish": false, "canSubscribe": true,
               "canPublishData": false, "canUpdateOwnMetadata": false, "hidden": true})
    );
    assert_eq!(
        answer["SupervisorPaused"]["video"],
        json!({"roomJoin": true, "room": "org_a_apt_b", "canPublish": false, "canSubscribe": false,
               "canPublishData": false, "canUpdateOwnMetadata": false, "hidden": true})
    );
    assert_eq!(
        answer["RepPublisher"]["video"],
        json!({"roomJoin": true, "room": "org_a_apt_b", "canPublish": true, "canSubscribe": true,
               "canPublishData": false, "canPublishSources": ["microphone"], "canUpdateOwnMetadata": false})
    );
    // And a token from another secret is refused by it.
    let other = TokenIssuer::new(config(KEY, "another-secret-long-enough-for-hs256-xx")).issue(
        "r",
        "u",
        "n",
        Preset::Guest,
        None,
        None,
    )?;
    let answer = node(json!({ "op": "verify-tokens", "apiKey": KEY, "apiSecret": SECRET, "tokens": { "forged": other.token } })).await?;
    assert_eq!(answer["forged"]["ok"], false);
    Ok(())
}

#[tokio::test]
async fn webhooks_signed_by_the_official_sdk_are_accepted_and_tampering_is_not() -> Result {
    let body = r#"{"event":"participant_left","id":"EV_node1","room":{"name":"org_a_apt_b"},"participant":{"identity":"u_0190a000"}}"#;
    let answer =
        node(json!({ "op": "sign-webhook", "apiKey": KEY, "apiSecret": SECRET, "body": body }))
            .await?;
    let authorization = answer["authorization"].as_str().ok_or("no authorization")?;
    let verifier = WebhookVerifier::new(&config(KEY, SECRET));
    let event = verifier.verify(Some(authorization), body.as_bytes())?;
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("participant_left", "EV_node1")
    );
    let tampered = body.replace("participant_left", "participant_joined");
    assert!(
        verifier
            .verify(Some(authorization), tampered.as_bytes())
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn the_official_room_service_client_talks_to_the_fake_server() -> Result {
    let fake = FakeLiveKit::start().await?;
    fake.join("sdk_room", "u_early", "Early");
    let answer = node(json!({
        "op": "room-service", "url": fake.url(), "apiKey": fake.api_key, "apiSecret": fake.api_secret, "room": "sdk_room",
    }))
    .await?;
    assert_eq!(answer["created"], "sdk_room", "{answer}");
    assert_eq!(answer["emptyTimeout"], 120, "{answer}");
    assert_eq!(answer["listed"], json!(["sdk_room"]));
    assert_eq!(answer["participants"], json!(["u_early"]));
    let calls = fake.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        ["CreateRoom", "ListRooms", "ListParticipants", "DeleteRoom"]
    );
    assert!(
        calls.iter().all(|c| c.json),
        "the Node SDK speaks Twirp with JSON bodies: {calls:?}"
    );
    Ok(())
}
