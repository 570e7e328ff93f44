//! The OpenAPI document served at `/openapi.json`, snapshot-tested; every route but the probes
//! and LiveKit's signed webhook requires a JWT.

mod common;

use common::TestMonitoring;
use sb_testkit::Result;

#[tokio::test]
async fn the_openapi_document_matches_its_snapshot() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let document: serde_json::Value = monitoring
        .app
        .get("/openapi.json")
        .send()
        .await?
        .json()
        .await?;
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    let public = ["/healthz", "/readyz", "/webhooks/livekit"];
    assert!(paths.len() >= 15, "{}", paths.len());
    for (path, operations) in &paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            assert_eq!(
                operation.get("security").is_some(),
                !public.contains(&path.as_str()),
                "{method} {path}"
            );
        }
    }
    insta::assert_json_snapshot!("monitoring-openapi", document, {".info.version" => "[version]"});
    Ok(())
}
