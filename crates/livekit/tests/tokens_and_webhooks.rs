//! Tokens and webhooks on the wire: what the LiveKit server reads and sends.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use livekit_api::access_token::{AccessToken, TokenVerifier};
use sb_livekit::{LiveKitConfig, Preset, TokenIssuer, WebhookError, WebhookVerifier};
use serde_json::Value;
use sha2::{Digest, Sha256};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config() -> LiveKitConfig {
    let mut config = LiveKitConfig::dev("ws://127.0.0.1:7880");
    config.api_key = "APItest".to_owned();
    config.api_secret = "a-livekit-secret-of-reasonable-length".to_owned().into();
    config
}

fn payload(token: &str) -> Result<Value> {
    let part = token.split('.').nth(1).ok_or("not a JWT")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part)?)?)
}

#[test]
fn every_preset_mints_a_token_the_server_accepts_with_explicit_permissions() -> Result {
    let issuer = TokenIssuer::new(config());
    let verifier = TokenVerifier::with_api_key("APItest", "a-livekit-secret-of-reasonable-length");
    for preset in Preset::ALL {
        let issued = issuer.issue(
            "org_a_apt_b",
            "u_0190a000",
            "Ada",
            preset,
            Some(Duration::from_secs(900)),
            Some(r#"{"role":"x"}"#),
        )?;
        assert_eq!(issued.server_url, "ws://127.0.0.1:7880");
        let claims = verifier.verify(&issued.token)?;
        assert_eq!(claims.sub, "u_0190a000", "{preset:?}");
        assert_eq!(claims.name, "Ada");
        assert_eq!(
            claims.iss, "APItest",
            "the API key is the issuer, as the server expects"
        );
        assert_eq!(claims.video.room, "org_a_apt_b");
        assert_eq!(
            claims.video.can_publish,
            preset.grants("x").can_publish,
            "{preset:?}"
        );
        assert_eq!(
            claims.exp - claims.nbf,
            900,
            "{preset:?}: the requested lifetime"
        );

        // What the server parses: camelCase, HS256, the explicit booleans present in the JSON.
        let json = payload(&issued.token)?;
        let video = &json["video"];
        assert_eq!(
            video["canPublish"],
            Value::Bool(preset.grants("x").can_publish == Some(true)),
            "{preset:?}: {json}"
        );
        assert_eq!(
            video["canSubscribe"],
            Value::Bool(preset != Preset::SupervisorPaused),
            "{preset:?}: only a paused supervisor hears nothing"
        );
        assert!(
            video["canPublishData"].is_boolean(),
            "{preset:?}: canPublishData must be explicit: {json}"
        );
        assert_eq!(
            video["canUpdateOwnMetadata"],
            Value::Bool(false),
            "{preset:?}"
        );
        assert_eq!(video["roomJoin"], Value::Bool(true));
        assert!(
            video
                .get("roomAdmin")
                .is_none_or(|v| v == &Value::Bool(false)),
            "{preset:?}"
        );
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(issued.token.split('.').next().unwrap_or(""))?,
        )?;
        assert_eq!(header["alg"], "HS256");
    }
    Ok(())
}

#[test]
fn a_token_from_another_secret_is_refused() -> Result {
    let issued = TokenIssuer::new(config()).issue("r", "u", "n", Preset::Guest, None, None)?;
    let wrong = TokenVerifier::with_api_key("APItest", "another-secret-of-reasonable-length-x");
    assert!(wrong.verify(&issued.token).is_err());
    Ok(())
}

fn signed(body: &str, secret: &str) -> Result<String> {
    let digest = STANDARD.encode(Sha256::digest(body.as_bytes()));
    Ok(AccessToken::with_api_key("APItest", secret)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&digest)
        .to_jwt()?)
}

const PARTICIPANT_JOINED: &str = r#"{"event":"participant_joined","id":"EV_3wJSNLGSqNWL","createdAt":"1795000000","room":{"sid":"RM_x","name":"org_a_apt_b"},"participant":{"sid":"PA_y","identity":"u_0190a000","state":"ACTIVE","name":"Ada"}}"#;

#[test]
fn webhooks_signed_like_the_server_verify_and_decode() -> Result {
    let verifier = WebhookVerifier::new(&config());
    let authorization = signed(PARTICIPANT_JOINED, "a-livekit-secret-of-reasonable-length")?;
    // LiveKit sends the bare JWT; a proxy's `Bearer ` prefix is tolerated.
    for header in [authorization.clone(), format!("Bearer {authorization}")] {
        let event = verifier.verify(Some(&header), PARTICIPANT_JOINED.as_bytes())?;
        assert_eq!(event.event, "participant_joined");
        assert_eq!(event.id, "EV_3wJSNLGSqNWL");
        assert_eq!(
            event.room.as_ref().map(|r| r.name.as_str()),
            Some("org_a_apt_b")
        );
        assert_eq!(
            event.participant.as_ref().map(|p| p.identity.as_str()),
            Some("u_0190a000")
        );
    }
    Ok(())
}

#[test]
fn forged_tampered_or_oversized_webhooks_are_refused() -> Result {
    let verifier = WebhookVerifier::new(&config());
    let good = signed(PARTICIPANT_JOINED, "a-livekit-secret-of-reasonable-length")?;
    let tampered = PARTICIPANT_JOINED.replace("u_0190a000", "u_attacker");
    assert!(matches!(
        verifier.verify(Some(&good), tampered.as_bytes()),
        Err(WebhookError::Invalid(_))
    ));
    let forged = signed(PARTICIPANT_JOINED, "guessed-secret-of-reasonable-length-xx")?;
    assert!(matches!(
        verifier.verify(Some(&forged), PARTICIPANT_JOINED.as_bytes()),
        Err(WebhookError::Invalid(_))
    ));
    assert!(matches!(
        verifier.verify(None, PARTICIPANT_JOINED.as_bytes()),
        Err(WebhookError::MissingSignature)
    ));
    assert!(matches!(
        verifier.verify(Some("garbage"), PARTICIPANT_JOINED.as_bytes()),
        Err(WebhookError::Invalid(_))
    ));
    let huge = "x".repeat(100 * 1024);
    let huge_signed = signed(&huge, "a-livekit-secret-of-reasonable-length")?;
    assert!(matches!(
        verifier.verify(Some(&huge_signed), huge.as_bytes()),
        Err(WebhookError::TooLarge)
    ));
    Ok(())
}
