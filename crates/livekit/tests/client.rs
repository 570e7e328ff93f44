//! The adapter against the fake LiveKit server: the Twirp calls the SDK makes, with the grants the
//! server checks.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use sb_livekit::protocol as proto;
use sb_livekit::{
    LiveKitApi, LiveKitClient, LiveKitConfig, LiveKitError, Preset, RoomOptions, WebhookVerifier,
};
use sb_testkit::{FakeLiveKit, Result};

fn config(fake: &FakeLiveKit) -> LiveKitConfig {
    let mut config = LiveKitConfig::dev(&fake.url().replace("http://", "ws://"));
    config.api_key = fake.api_key.clone();
    config.api_secret = fake.api_secret.clone().into();
    config
}

#[tokio::test]
async fn rooms_participants_and_recordings_round_trip() -> Result {
    sb_platform::install_crypto_provider();
    let fake = FakeLiveKit::start().await?;
    let client = LiveKitClient::new(&config(&fake));
    let room = client
        .create_room(
            "org_a_apt_b",
            RoomOptions {
                empty_timeout_secs: 300,
                max_participants: 10,
                metadata: String::new(),
            },
        )
        .await?;
    assert_eq!(
        (
            room.name.as_str(),
            room.empty_timeout,
            room.max_participants
        ),
        ("org_a_apt_b", 300, 10)
    );
    assert!(room.sid.starts_with("RM_"));
    // Creating again returns the same room (LiveKit's CreateRoom is idempotent).
    assert_eq!(
        client
            .create_room("org_a_apt_b", RoomOptions::default())
            .await?
            .sid,
        room.sid
    );

    fake.join("org_a_apt_b", "u_host", "Host");
    fake.join("org_a_apt_b", "g_guest", "Guest");
    let participants = client.list_participants("org_a_apt_b").await?;
    assert_eq!(
        participants
            .iter()
            .map(|p| p.identity.as_str())
            .collect::<Vec<_>>(),
        ["u_host", "g_guest"]
    );

    let updated = client
        .set_permissions("org_a_apt_b", "g_guest", Preset::WebinarListener)
        .await?;
    let permission = updated.permission.ok_or("no permission")?;
    assert!(!permission.can_publish && permission.can_subscribe && !permission.can_publish_data);
    let stored = fake.participants("org_a_apt_b");
    assert_eq!(
        stored[1].permission.as_ref().map(|p| p.can_publish),
        Some(false),
        "the server saw the change"
    );

    client.remove_participant("org_a_apt_b", "g_guest").await?;
    assert_eq!(fake.participants("org_a_apt_b").len(), 1);
    let missing = client
        .remove_participant("org_a_apt_b", "nobody")
        .await
        .err()
        .ok_or("expected not_found")?;
    assert!(missing.is_not_found(), "{missing}");

    let egress = client
        .start_recording(
            "org_a_apt_b",
            sb_livekit::protocol::EncodedFileOutput {
                filepath: "recordings/org_a_apt_b.mp4".to_owned(),
                ..Default::default()
            },
        )
        .await?;
    assert!(egress.egress_id.starts_with("EG_"));
    assert_eq!(client.list_egress("org_a_apt_b").await?.len(), 1);
    let stopped = client.stop_egress(&egress.egress_id).await?;
    assert_eq!(stopped.status, proto::EgressStatus::EgressEnding as i32);

    client.delete_room("org_a_apt_b").await?;
    assert!(fake.rooms().is_empty());
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        [
            "CreateRoom",
            "CreateRoom",
            "ListParticipants",
            "UpdateParticipant",
            "RemoveParticipant",
            "RemoveParticipant",
            "StartRoomCompositeEgress",
            "ListEgress",
            "StopEgress",
            "DeleteRoom"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_and_missing_grants_are_refused_like_the_server_does() -> Result {
    sb_platform::install_crypto_provider();
    let fake = FakeLiveKit::start().await?;
    let mut wrong = config(&fake);
    wrong.api_secret = "not-the-fake-secret-at-all".to_owned().into();
    let error = LiveKitClient::new(&wrong)
        .create_room("r", RoomOptions::default())
        .await
        .err()
        .ok_or("expected a refusal")?;
    assert!(
        matches!(&error, LiveKitError::Refused { code, .. } if code == "unauthenticated"),
        "{error}"
    );

    // A participant token (roomJoin only) cannot create rooms.
    let participant = AccessToken::with_api_key(&fake.api_key, &fake.api_secret)
        .with_identity("u_x")
        .with_grants(Preset::Participant.grants("r"))
        .to_jwt()?;
    let http = reqwest::Client::new();
    let response = http
        .post(format!(
            "{}/twirp/livekit.RoomService/CreateRoom",
            fake.url()
        ))
        .bearer_auth(participant)
        .header("content-type", "application/json")
        .body(r#"{"name":"r"}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<serde_json::Value>().await?["code"],
        "permission_denied"
    );

    // roomAdmin for another room does not reach this one.
    let other_room = AccessToken::with_api_key(&fake.api_key, &fake.api_secret)
        .with_grants(VideoGrants {
            room_admin: true,
            room: "other".to_owned(),
            ..Default::default()
        })
        .to_jwt()?;
    let response = http
        .post(format!(
            "{}/twirp/livekit.RoomService/ListParticipants",
            fake.url()
        ))
        .bearer_auth(other_room)
        .header("content-type", "application/json")
        .body(r#"{"room":"r"}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    Ok(())
}

#[tokio::test]
async fn json_bodies_work_and_injected_failures_and_latency_surface() -> Result {
    sb_platform::install_crypto_provider();
    let fake = FakeLiveKit::start().await?;
    let admin = AccessToken::with_api_key(&fake.api_key, &fake.api_secret)
        .with_grants(VideoGrants {
            room_create: true,
            ..Default::default()
        })
        .to_jwt()?;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/twirp/livekit.RoomService/CreateRoom",
            fake.url()
        ))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(r#"{"name":"json_room","emptyTimeout":60}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let room: serde_json::Value = response.json().await?;
    assert_eq!(room["name"], "json_room");
    assert_eq!(room["emptyTimeout"], 60);
    assert!(fake.calls()[0].json);

    let client = LiveKitClient::new(&config(&fake));
    fake.fail("CreateRoom", "unavailable", 1);
    let error = client
        .create_room("r", RoomOptions::default())
        .await
        .err()
        .ok_or("expected the injected failure")?;
    assert!(
        matches!(&error, LiveKitError::Refused { code, .. } if code == "unavailable"),
        "{error}"
    );
    assert!(
        client
            .create_room("r", RoomOptions::default())
            .await
            .is_ok(),
        "only the next call fails"
    );

    fake.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    client.list_participants("r").await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    Ok(())
}

#[tokio::test]
async fn the_fakes_webhook_signature_is_what_the_verifier_accepts() -> Result {
    let fake = FakeLiveKit::start().await?;
    let body = r#"{"event":"room_finished","id":"EV_1","room":{"name":"org_a_apt_b"}}"#;
    let event = WebhookVerifier::new(&config(&fake))
        .verify(Some(&fake.sign_webhook(body)?), body.as_bytes())?;
    assert_eq!(event.event, "room_finished");
    Ok(())
}
