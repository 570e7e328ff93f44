//! Appointment calls through the HTTP API: join, start, stop, read, list, errors and limits.

mod common;

use common::{TestAppointment, TestVideo, User};
use sb_auth::Role;
use sb_testkit::Result;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_host_joins_an_appointment_call_and_gets_a_livekit_token() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, closer.id);
    video.appointment(&appointment).await?;

    let (status, body) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", appointment.id),
            json!({"displayName": "  Ada Closer  "}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let room = format!("org_{org}_apt_{}", appointment.id);
    assert_eq!(body["roomName"], room);
    assert_eq!(body["livekitUrl"], video.livekit.url());
    assert_eq!(body["status"], "ONGOING");
    assert_eq!(body["recording"], false);
    assert_eq!(body["appointment"]["id"], appointment.id.to_string());
    assert_eq!(body["appointment"]["closer"]["id"], closer.id.to_string());
    assert_eq!(body["appointment"]["lead"]["name"], "Lead Person");
    assert_eq!(body["participant"]["displayName"], "Ada Closer");
    assert_eq!(body["participant"]["isHost"], true);
    assert_eq!(body["participant"]["active"], true);
    // The token is LiveKit's: verified with the fake server's key, host grants for this room.
    let token = body["token"].as_str().unwrap_or_default();
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(
        &video.livekit.api_key,
        &video.livekit.api_secret,
    )
    .verify(token)?;
    assert_eq!(claims.video.room, room);
    assert!(claims.video.room_join);
    assert_eq!(claims.sub, format!("u_{}", closer.id));
    assert_eq!(claims.name, "Ada Closer");
    // One room was created in LiveKit.
    assert_eq!(video.livekit.rooms().len(), 1);
    assert_eq!(video.livekit.rooms()[0].name, room);
    Ok(())
}
