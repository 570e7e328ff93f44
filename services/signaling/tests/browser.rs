//! The `/demo` page end to end: headless Chromium opens it twice with fake camera and
//! microphone, the pages connect through the service, and both decode the other's video.

mod common;

use common::{TestSignaling, User, visit};
use sb_auth::Role;
use sb_testkit::{Result, demo_in_chromium};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn two_demo_pages_get_a_real_p2p_call() -> Result {
    let signaling = TestSignaling::spawn_with(|config| {
        // no STUN server reachable from here: host candidates suffice on one machine
        config.ice.stun_urls.clear();
        config.ice.turn_urls.clear();
    })
    .await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let guest = User::new(org, Role::Member);
    let appointment = signaling.appointment(&visit(&host, &guest)).await?;
    let answer = demo_in_chromium(json!({
        "url": signaling.app.url(""),
        "appointment": appointment,
        "tokens": [signaling.token(&host), signaling.token(&guest)],
    }))
    .await?;
    let frames = answer["frames"].as_array().ok_or("no frames")?;
    assert!(
        frames.iter().all(|f| f.as_u64().is_some_and(|f| f > 10)),
        "{answer}"
    );
    let first_page = answer["events"][0].to_string();
    assert!(first_page.contains("user-joined"), "{answer}");
    assert!(first_page.contains("audio-toggled"), "{answer}");
    Ok(())
}
