//! `/readyz` with the real probes: Postgres and NATS reachable, then each one down in turn.

use std::sync::Arc;
use std::time::Duration;

use sb_db::{DatabaseConfig, PostgresProbe};
use sb_platform::config::{HttpConfig, NatsConfig};
use sb_platform::nats::NatsProbe;
use sb_platform::{Application, Metrics, Readiness, ReadinessProbe, ServiceSpec};
use sb_testkit::{NatsServer, Result, TestApp, TestDb, wait_until};
use serde_json::Value;

fn app(pool: sb_db::DbPool, nats: async_nats::Client) -> Result<TestApp> {
    let probes: Vec<Arc<dyn ReadinessProbe>> = vec![
        Arc::new(PostgresProbe::new(pool)),
        Arc::new(NatsProbe::new(nats)),
    ];
    let spec = ServiceSpec {
        name: "readiness-test",
        http: HttpConfig::ephemeral(),
        metrics: Metrics::new("readiness-test")?,
        readiness: Readiness::new("readiness-test", probes),
        openapi: utoipa::openapi::OpenApiBuilder::new().build(),
    };
    Ok(TestApp::spawn(Application::build(spec, |_| {})?))
}

async fn readyz(app: &TestApp) -> Result<(u16, Value)> {
    let response = app.get("/readyz").send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn ready_with_real_postgres_and_nats_and_not_when_nats_stops() -> Result {
    let db = TestDb::new().await?;
    let mut nats_server = NatsServer::start().await?;
    let config = NatsConfig {
        url: nats_server.url(),
        connect_timeout: Duration::from_secs(2),
    };
    let client = sb_platform::nats::connect(&config, "readiness-test").await?;
    let app = app(db.pool(), client)?;

    let (status, body) = readyz(&app).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["nats"]["status"], "ok");

    nats_server.stop().await?;
    wait_until(Duration::from_secs(10), "readyz to report NATS down", || async {
        matches!(readyz(&app).await, Ok((503, ref body)) if body["checks"]["nats"]["status"] == "failed")
    })
    .await?;
    let (_, body) = readyz(&app).await?;
    assert_eq!(
        body["checks"]["postgres"]["status"], "ok",
        "only NATS is reported: {body}"
    );
    assert_eq!(
        app.get("/healthz").send().await?.status(),
        200,
        "still alive"
    );

    nats_server.resume().await?;
    wait_until(
        Duration::from_secs(15),
        "readyz to recover after NATS returns",
        || async { matches!(readyz(&app).await, Ok((200, _))) },
    )
    .await?;
    app.stop().await
}

#[tokio::test]
async fn not_ready_when_postgres_is_unreachable() -> Result {
    let nats = sb_testkit::TestNats::new().await?;
    // Nothing listens on port 1: connection refused, promptly.
    let pool = sb_db::build_pool(&DatabaseConfig::with_url(
        "postgres://postgres:secret-pw@127.0.0.1:1/switchboard",
    ))?;
    let app = app(pool, nats.client.clone())?;
    let (status, body) = readyz(&app).await?;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["postgres"]["status"], "failed");
    assert_eq!(body["checks"]["nats"]["status"], "ok");
    assert!(!body.to_string().contains("secret-pw"), "{body}");
    Ok(())
}

#[tokio::test]
async fn nats_connect_failure_names_the_url_and_how_to_start_it() -> Result {
    let config = NatsConfig {
        url: "nats://127.0.0.1:1".to_owned(),
        connect_timeout: Duration::from_millis(500),
    };
    let error = sb_platform::nats::connect(&config, "test")
        .await
        .err()
        .ok_or("expected an error")?;
    let message = error.to_string();
    assert!(
        message.contains("nats://127.0.0.1:1") && message.contains("nats-server"),
        "{message}"
    );
    Ok(())
}
