//! The OpenAPI document the service serves at `/openapi.json`, snapshot-tested: a route, field or
//! status code that changes shows up in review.

mod common;

use common::TestTelephony;
use sb_testkit::Result;

#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() -> Result {
    let telephony = TestTelephony::spawn().await?;
    let response = telephony.app.get("/openapi.json").send().await?;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await?;
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/api/calls/initiate",
        "/api/calls",
        "/api/calls/{id}",
        "/api/calls/{id}/quality",
        "/api/numbers",
        "/api/numbers/{e164}",
        "/api/voice/token",
        "/webhook/voice",
        "/webhook/voice/completed",
        "/webhook/voice/outbound",
        "/webhook/voice/status",
        "/webhook/voice/recording",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    // Every /api route is authenticated; the webhooks are Twilio's (signature only).
    for (path, item) in &paths {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let secured = operation.get("security").is_some();
            assert_eq!(secured, path.starts_with("/api/"), "{method} {path}");
        }
    }
    insta::assert_json_snapshot!("telephony-openapi", document, {
        ".info.version" => "[version]",
    });
    Ok(())
}
