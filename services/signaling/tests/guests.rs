//! Leads without an account: a guest link minted by the appointment's host opens that
//! appointment's room, and only it, at CONNECT, with the protections of a JWT.

mod common;

use chrono::{Duration as Span, Utc};
use common::{GUEST_LINK_SECRET, Rooms, TestSignaling, User};
use sb_auth::{GuestLinks, LinkScope, OrgId, Role};
use sb_testkit::{Result, TestAppointment};
use serde_json::{Value, json};
use uuid::Uuid;

/// A remote appointment of `host` with a lead who has no account.
fn with_a_lead(host: &User) -> TestAppointment {
    TestAppointment::new(host.org, host.id).with_lead(json!({"name": "Jane Lead"}))
}

fn links_path(appointment: Uuid) -> String {
    format!("/video-call/room/appointment/{appointment}/guest-links")
}

async fn connect_error(signaling: &TestSignaling, token: &str) -> Result<Value> {
    let mut socket = signaling.raw_socket().await?;
    socket
        .send(&format!("40/video-call,{}", json!({"token": token})))
        .await?;
    let frame = socket.recv().await?;
    let body = frame
        .strip_prefix("44/video-call,")
        .ok_or_else(|| format!("not a connect_error: {frame}"))?;
    Ok(serde_json::from_str(body)?)
}

#[tokio::test]
async fn the_host_mints_a_link_and_the_lead_joins_the_appointments_room_with_it() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let appointment = signaling.appointment(&with_a_lead(&host)).await?;

    let (status, link) = signaling
        .post_empty(&host, &links_path(appointment))
        .await?;
    assert_eq!(status, 201, "{link}");
    let token = link["token"].as_str().ok_or("no token")?.to_owned();
    let room = link["roomId"].as_str().ok_or("no roomId")?.to_owned();
    let guest_id = link["userId"].as_str().ok_or("no userId")?.to_owned();
    assert_eq!(link["appointmentId"], json!(appointment));
    assert!(
        link["opensAt"].is_string() && link["expiresAt"].is_string(),
        "{link}"
    );

    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut lead = signaling.socket_with(&signaling.app, &token).await?;
    lead.emit("join-room", json!({"roomId": room, "userId": "forged"}))
        .await?;
    let joined = lead.expect("joined-room").await?;
    assert_eq!(joined["userId"], json!(guest_id), "{joined}");
    assert_eq!(joined["role"], "patient");
    assert_eq!(joined["status"], "InProgress");
    assert_eq!(
        practitioner.expect("user-joined").await?,
        json!({"roomId": room, "userId": guest_id, "role": "patient"})
    );
    // signals flow both ways
    lead.emit(
        "webrtc-signal",
        json!({"roomId": room, "signal": {"type": "offer", "sdp": "v=0\r\n"}}),
    )
    .await?;
    assert_eq!(
        practitioner.expect("webrtc-signal").await?["userId"],
        json!(guest_id)
    );

    // the identity is the link's: a reconnect with it is the same person (no leave, no join)
    lead.close().await?;
    let mut lead = signaling.socket_with(&signaling.app, &token).await?;
    lead.emit("join-room", json!({"roomId": room})).await?;
    assert_eq!(lead.expect("joined-room").await?["userId"], json!(guest_id));
    lead.emit("toggle-audio", json!({"roomId": room, "isEnabled": true}))
        .await?;
    assert_eq!(
        practitioner.expect("audio-toggled").await?["userId"],
        json!(guest_id)
    );

    // the link opens its appointment's room only: another room of the same host is not found
    let other = signaling.room(&host, &User::new(org, Role::Member)).await?;
    lead.emit("join-room", json!({"roomId": other})).await?;
    assert_eq!(
        lead.expect("error").await?,
        json!({"event": "join-room", "code": "not_found", "message": format!("room {other} not found")})
    );
    // and it is no platform token
    let (status, _) = signaling
        .app
        .send(
            signaling
                .app
                .get(&format!("/video-call/room/appointment/{appointment}")),
            Some(&token),
        )
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

#[tokio::test]
async fn only_the_host_or_an_admin_mints_links_and_only_within_the_window() -> Result {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use sb_db::schema::appointments;
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let appointment = signaling.appointment(&with_a_lead(&host)).await?;
    let path = links_path(appointment);

    let (status, body) = signaling
        .post_empty(&User::new(Uuid::now_v7(), Role::Admin), &path)
        .await?;
    assert_eq!(status, 201, "{body}");
    // may see the appointment, is not its host
    let (status, body) = signaling
        .post_empty(&User::new(org, Role::Ceo), &path)
        .await?;
    assert_eq!(
        (status, &body["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    // may not see it, or another organisation's
    for user in [
        User::new(org, Role::Closer),
        User::new(Uuid::now_v7(), Role::Ceo),
    ] {
        let (status, body) = signaling.post_empty(&user, &path).await?;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("not_found")),
            "{body}"
        );
    }

    // an appointment long over: a link would already be expired
    let past = signaling.appointment(&with_a_lead(&host)).await?;
    {
        let mut conn = signaling.db.conn().await?;
        let long_ago = Utc::now() - Span::hours(10);
        diesel::update(appointments::table.find(past))
            .set((
                appointments::scheduled_at.eq(long_ago),
                appointments::ends_at.eq(Some(long_ago + Span::minutes(30))),
            ))
            .execute(&mut conn)
            .await?;
    }
    let (status, body) = signaling.post_empty(&host, &links_path(past)).await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("appointment_window_over")),
        "{body}"
    );
    // a cancelled appointment
    let cancelled = TestAppointment {
        status: sb_db::models::AppointmentStatus::Cancelled,
        ..with_a_lead(&host)
    };
    let cancelled = signaling.appointment(&cancelled).await?;
    let (status, body) = signaling.post_empty(&host, &links_path(cancelled)).await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("appointment_cancelled")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_link_is_checked_like_a_jwt_at_connect() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let (org, appointment) = (OrgId::new_v7(), Uuid::now_v7());
    let now = Utc::now();
    let signaling_links =
        GuestLinks::scoped(GUEST_LINK_SECRET.to_owned().into(), LinkScope::SIGNALING);

    let (expired, _) =
        signaling_links.mint(org, appointment, now - Span::hours(3), now - Span::hours(2))?;
    let refusal = connect_error(&signaling, &expired).await?;
    assert_eq!(refusal["code"], "token_expired", "{refusal}");
    assert_eq!(refusal["data"]["code"], "token_expired", "{refusal}");

    let (later, _) =
        signaling_links.mint(org, appointment, now + Span::hours(2), now + Span::hours(3))?;
    let refusal = connect_error(&signaling, &later).await?;
    assert_eq!(
        refusal,
        json!({"message": "unauthorized: the guest link is not open yet", "code": "unauthorized", "data": {"code": "unauthorized"}})
    );

    // another key, or video's links under the same key: not a signaling link
    let forged = GuestLinks::scoped(
        "another-guest-link-secret-long-enough-xx".to_owned().into(),
        LinkScope::SIGNALING,
    );
    let video = GuestLinks::new(GUEST_LINK_SECRET.to_owned().into());
    for links in [forged, video] {
        let (token, _) =
            links.mint(org, appointment, now - Span::hours(1), now + Span::hours(1))?;
        let refusal = connect_error(&signaling, &token).await?;
        assert_eq!(refusal["code"], "unauthorized", "{refusal}");
        assert_eq!(refusal["message"], "unauthorized: invalid token");
    }
    Ok(())
}
