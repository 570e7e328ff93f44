//! The signaling service's socket and room metrics, read through `/metrics` as Prometheus does.

mod common;

use common::{Rooms, TestSignaling, User, WAIT};
use sb_auth::Role;
use sb_testkit::{Result, wait_until};
use serde_json::json;
use uuid::Uuid;

/// The value of the series `name` whose labels include every `labels` pair (0 when absent).
async fn metric(signaling: &TestSignaling, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let text = signaling.metrics().await?;
    let value = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok());
    Ok(value.unwrap_or(0.0))
}

const SERVICE: (&str, &str) = ("service", "signaling");
const NSP: (&str, &str) = ("namespace", "/video-call");

#[tokio::test]
async fn sockets_packets_rooms_and_rejections_are_counted() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let room = signaling.room(&host, &guest).await?;
    assert_eq!(
        metric(&signaling, "sb_socketio_connected_sockets", &[SERVICE, NSP]).await?,
        0.0
    );
    assert_eq!(
        metric(&signaling, "sb_signaling_active_rooms", &[SERVICE]).await?,
        0.0
    );

    let mut practitioner = signaling.socket(&host).await?;
    practitioner
        .emit("join-room", json!({"roomId": room}))
        .await?;
    practitioner.expect("joined-room").await?;
    let mut patient = signaling.socket(&guest).await?;
    patient.emit("join-room", json!({"roomId": room})).await?;
    patient.expect("joined-room").await?;
    practitioner.expect("user-joined").await?;
    assert_eq!(
        metric(&signaling, "sb_socketio_connected_sockets", &[SERVICE, NSP]).await?,
        2.0
    );
    assert_eq!(
        metric(&signaling, "sb_signaling_active_rooms", &[SERVICE]).await?,
        1.0
    );
    let in_progress = [SERVICE, ("status", "InProgress")];
    assert_eq!(
        metric(
            &signaling,
            "sb_signaling_room_transitions_total",
            &in_progress
        )
        .await?,
        1.0
    );
    // 2 CONNECT + 2 join-room at least came in; 2 CONNECT answers + 2 joined-room + 1 user-joined went out
    assert!(
        metric(
            &signaling,
            "sb_socketio_packets_total",
            &[SERVICE, ("direction", "in")]
        )
        .await?
            >= 4.0
    );
    assert!(
        metric(
            &signaling,
            "sb_socketio_packets_total",
            &[SERVICE, ("direction", "out")]
        )
        .await?
            >= 5.0
    );

    // an unreadable packet: told, counted, still connected
    patient.send("42/video-call,[\"webrtc-signal\",").await?;
    patient.expect("error").await?;
    assert_eq!(
        metric(
            &signaling,
            "sb_socketio_rejected_total",
            &[SERVICE, ("reason", "bad_packet")]
        )
        .await?,
        1.0
    );
    // a CONNECT with a bad token
    let mut stranger = signaling.raw_socket().await?;
    stranger
        .send("40/video-call,{\"token\":\"not.a.jwt\"}")
        .await?;
    stranger.recv().await?;
    assert_eq!(
        metric(
            &signaling,
            "sb_socketio_rejected_total",
            &[SERVICE, ("reason", "connect_error")]
        )
        .await?,
        1.0
    );
    // a frame over the 64 kB limit
    let mut big = signaling.socket(&host).await?;
    big.send(&format!("42/video-call,[\"x\",\"{}\"]", "a".repeat(70_000)))
        .await?;
    wait_until(WAIT, "payload_too_large counted", || async {
        metric(
            &signaling,
            "sb_socketio_rejected_total",
            &[SERVICE, ("reason", "payload_too_large")],
        )
        .await
        .unwrap_or(0.0)
            == 1.0
    })
    .await?;
    // a flood beyond the event budget (burst 200)
    let mut flood = signaling.socket(&host).await?;
    for _ in 0..260 {
        flood
            .emit(
                "toggle-audio",
                json!({"roomId": "nowhere", "isEnabled": true}),
            )
            .await?;
    }
    wait_until(WAIT, "rate_limit counted", || async {
        metric(
            &signaling,
            "sb_socketio_rejected_total",
            &[SERVICE, ("reason", "rate_limit")],
        )
        .await
        .unwrap_or(0.0)
            >= 1.0
            && metric(
                &signaling,
                "sb_socketio_disconnects_total",
                &[SERVICE, ("reason", "rate limited")],
            )
            .await
            .unwrap_or(0.0)
                == 1.0
    })
    .await?;

    // the patient leaves for good: one socket fewer, and the room is still active (practitioner)
    patient.close().await?;
    wait_until(WAIT, "the patient's disconnect counted", || async {
        metric(
            &signaling,
            "sb_socketio_disconnects_total",
            &[SERVICE, ("reason", "transport close")],
        )
        .await
        .unwrap_or(0.0)
            >= 1.0
    })
    .await?;
    practitioner.expect("user-left").await?;
    assert_eq!(
        metric(&signaling, "sb_signaling_active_rooms", &[SERVICE]).await?,
        1.0
    );
    practitioner
        .emit("end-call", json!({"roomId": room}))
        .await?;
    practitioner.expect("call-ended").await?;
    assert_eq!(
        metric(&signaling, "sb_signaling_active_rooms", &[SERVICE]).await?,
        0.0
    );
    assert_eq!(
        metric(
            &signaling,
            "sb_signaling_room_transitions_total",
            &[SERVICE, ("status", "Ended")]
        )
        .await?,
        1.0
    );
    drop((big, flood, stranger));
    Ok(())
}
