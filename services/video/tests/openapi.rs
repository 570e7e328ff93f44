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
        "/calls/{id}/guest-links",
        "/calls/guest/join",
        "/calls/{id}/lobby",
        "/calls/{id}/participants/{identity}/remove",
        "/api/livekit/rooms",
        "/api/livekit/rooms/{room_name}/join",
        "/api/livekit/token",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    // Public by design: probes, LiveKit's signed webhooks, and the guest routes (a guest link).
    let public = [
        "/healthz",
        "/readyz",
        "/webhooks/livekit",
        "/calls/guest/join",
        "/calls/guest/{guestId}",
    ];
    for (path, operations) in &paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            assert_eq!(
                operation.get("security").is_some(),
                !public.contains(&path.as_str()),
                "{method} {path}: authentication does not match the design"
            );
        }
    }
    insta::assert_json_snapshot!("video-openapi", document, {
        ".info.version" => "[version]",
    });
    Ok(())
}

/// `/docs` redirects (permanently, relative so a path-prefix gateway keeps working) to `/docs/`,
/// where the Swagger UI is.
#[tokio::test]
async fn docs_redirects_to_the_swagger_ui() -> Result {
    let video = TestVideo::spawn().await?;
    let redirect = video.app.get_unfollowed("/docs").await?;
    assert_eq!(redirect.status, 308, "{}", redirect.text);
    assert_eq!(redirect.location.as_deref(), Some("docs/"));
    for path in ["/docs", "/docs/"] {
        let response = video.app.get(path).send().await?;
        assert_eq!(response.url().path(), "/docs/", "{path}");
        assert_eq!(response.status(), 200, "{path}");
        let page = response.text().await?;
        assert!(page.contains("swagger-ui"), "{path}: {page}");
    }
    Ok(())
}
