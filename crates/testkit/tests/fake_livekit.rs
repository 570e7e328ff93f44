//! The fake LiveKit closes idle rooms the way livekit-server's `Room.CloseIfEmpty` does: a room
//! nobody joined closes `empty_timeout` after its creation, a room everyone left closes
//! `departure_timeout` after the last one left, and a room with someone in it stays.

use std::time::{Duration, Instant};

use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use sb_testkit::{DEFAULT_DEPARTURE_TIMEOUT_SECS, DEFAULT_EMPTY_TIMEOUT_SECS, FakeLiveKit};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The fake looks for idle rooms every second; scheduling noise on a shared machine on top.
const SLACK: Duration = Duration::from_millis(2500);

fn open(livekit: &FakeLiveKit, room: &str) -> bool {
    livekit.rooms().iter().any(|r| r.name == room)
}

/// Waits until `room` is closed; returns how long that took from `since`.
async fn closed_after(
    livekit: &FakeLiveKit,
    room: &str,
    since: Instant,
    limit: Duration,
) -> Result<Duration> {
    while open(livekit, room) {
        if since.elapsed() > limit {
            return Err(format!("{room} still open after {:?}", since.elapsed()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(since.elapsed())
}

#[tokio::test]
async fn empty_rooms_close_after_their_timeout_and_occupied_ones_stay() -> Result {
    let livekit = FakeLiveKit::start().await?;
    let client = RoomClient::with_api_key(&livekit.url(), &livekit.api_key, &livekit.api_secret);
    let timeouts = |empty_timeout, departure_timeout| CreateRoomOptions {
        empty_timeout,
        departure_timeout,
        ..Default::default()
    };

    // Nobody joins: closed empty_timeout after creation.
    let created = Instant::now();
    client.create_room("never-joined", timeouts(1, 30)).await?;
    // Someone joins and leaves: the empty timeout no longer applies, the departure one does.
    client.create_room("left", timeouts(1, 3)).await?;
    livekit.join("left", "u_1", "One");
    // Someone stays: never closed.
    client.create_room("occupied", timeouts(1, 1)).await?;
    livekit.join("occupied", "u_2", "Two");
    // Zero timeouts mean the server's defaults.
    let defaults = client.create_room("defaults", timeouts(0, 0)).await?;
    assert_eq!(defaults.empty_timeout, DEFAULT_EMPTY_TIMEOUT_SECS);
    assert_eq!(defaults.departure_timeout, DEFAULT_DEPARTURE_TIMEOUT_SECS);

    let took = closed_after(
        &livekit,
        "never-joined",
        created,
        Duration::from_secs(1) + SLACK,
    )
    .await?;
    assert!(
        took >= Duration::from_secs(1),
        "closed before its empty timeout: {took:?}"
    );
    assert_eq!(livekit.closed_rooms(), vec!["never-joined".to_owned()]);

    // Past the empty timeout with someone in it: still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        open(&livekit, "left"),
        "a room with someone in it was closed"
    );
    livekit.leave("left", "u_1");
    let left = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        open(&livekit, "left"),
        "closed on its empty timeout although someone had joined (the departure timeout is 3 s)"
    );
    let took = closed_after(&livekit, "left", left, Duration::from_secs(3) + SLACK).await?;
    assert!(
        took >= Duration::from_secs(3),
        "closed before its departure timeout: {took:?}"
    );
    assert!(livekit.participants("left").is_empty());

    assert!(open(&livekit, "occupied"), "an occupied room was closed");
    assert!(
        open(&livekit, "defaults"),
        "a room closed long before the default timeout"
    );
    assert_eq!(
        livekit.closed_rooms(),
        vec!["never-joined".to_owned(), "left".to_owned()]
    );
    // A closed room is gone for the API too, and its name can be used again.
    let listed = client.list_rooms(vec!["left".to_owned()]).await?;
    assert!(listed.is_empty(), "{listed:?}");
    client.create_room("left", timeouts(30, 30)).await?;
    assert!(open(&livekit, "left"));
    livekit.stop().await;
    Ok(())
}
