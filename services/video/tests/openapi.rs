//! The OpenAPI document the service serves at `/openapi.json`, snapshot-tested: a route, field or
//! status code that changes shows up in review.

mod common;

use common::TestVideo;
use sb_testkit::Result;

#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() -> Result {
    let video = TestVideo::spawn().await?;
    let response = video.app.get("/openapi.json").send().await?;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await?;
    // Every route of the service is there, each authenticated unless public by design.
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/calls/appointments/{appointmentId}/join",
        "/calls/{id}/start",
        "/calls/{id}/stop",
        "/calls/{id}",
        "/calls",
        "/calls/stats",
        "/webhooks/livekit",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    insta::assert_json_snapshot!("video-openapi", document, {
        ".info.version" => "[version]",
    });
    Ok(())
}
