//! The OpenAPI document the service serves at `/openapi.json`, snapshot-tested: a route, field or
//! status code that changes shows up in review.

mod common;

use common::TestSignaling;
use sb_testkit::Result;

#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() -> Result {
    let signaling = TestSignaling::spawn().await?;
    let response = signaling.app.get("/openapi.json").send().await?;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await?;
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/video-call/room/appointment/{appointmentId}",
        "/video-call/room/appointment/{appointmentId}/create",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    let public = ["/healthz", "/readyz"];
    for (path, operations) in &paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            assert_eq!(
                operation.get("security").is_some(),
                !public.contains(&path.as_str()),
                "{method} {path}: authentication does not match the design"
            );
        }
    }
    insta::assert_json_snapshot!("signaling-openapi", document, {
        ".info.version" => "[version]",
    });
    Ok(())
}
