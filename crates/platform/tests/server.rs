//! The platform's HTTP application, started on port 0 and driven over real HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_platform::config::HttpConfig;
use sb_platform::request::{JsonBody, OptionalJson};
use sb_platform::{Application, Metrics, Problem, Readiness, ReadinessProbe, ServiceSpec};
use serde_json::Value;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A dependency whose health the test controls.
struct Switch {
    name: &'static str,
    up: Arc<AtomicBool>,
}

impl ReadinessProbe for Switch {
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        let up = self.up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused".to_owned())
            }
        }
        .boxed()
    }
}

/// A dependency that never answers.
struct Hangs;

impl ReadinessProbe for Hangs {
    fn name(&self) -> &'static str {
        "hangs"
    }
    fn check(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        std::future::pending().boxed()
    }
}

#[derive(serde::Deserialize, Default)]
struct Body {
    #[expect(dead_code, reason = "only its presence in the JSON matters")]
    name: String,
}

#[derive(serde::Deserialize)]
struct Raw {
    #[expect(dead_code, reason = "only whether it parses matters")]
    n: u32,
}

struct Harness {
    base: String,
    client: reqwest::Client,
    postgres: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background_stopped: Arc<AtomicBool>,
}

fn start(probes_hang: bool) -> Result<Harness> {
    sb_platform::install_crypto_provider();
    let postgres = Arc::new(AtomicBool::new(true));
    let mut probes: Vec<Arc<dyn ReadinessProbe>> = vec![
        Arc::new(Switch {
            name: "postgres",
            up: postgres.clone(),
        }),
        Arc::new(Switch {
            name: "nats",
            up: Arc::new(AtomicBool::new(true)),
        }),
    ];
    if probes_hang {
        probes.push(Arc::new(Hangs));
    }
    let mut http = HttpConfig::ephemeral();
    http.json_limit_bytes = 1024;
    let spec = ServiceSpec {
        name: "test",
        http,
        metrics: Metrics::new("test")?,
        readiness: Readiness::new("test", probes).with_timeout(Duration::from_millis(300)),
        openapi: utoipa::openapi::OpenApiBuilder::new().build(),
    };
    let mut app = Application::build(spec, |cfg| {
        cfg.route(
            "/things/{id}",
            web::get()
                .to(|id: web::Path<u32>| async move { HttpResponse::Ok().body(id.to_string()) }),
        );
        cfg.route(
            "/things",
            web::post().to(|_: JsonBody<Body>| async { HttpResponse::Created().finish() }),
        );
        cfg.route(
            "/raw",
            web::post().to(|_: web::Json<Body>| async { HttpResponse::Created().finish() }),
        );
        cfg.route(
            "/raw",
            web::get().to(|_: web::Query<Raw>| async { HttpResponse::Ok().finish() }),
        );
        cfg.route(
            "/things/optional",
            web::post().to(|_: OptionalJson<Body>| async { HttpResponse::Created().finish() }),
        );
        cfg.route(
            "/boom",
            web::get().to(|| async {
                Err::<HttpResponse, _>(Problem::internal(std::io::Error::other(
                    "db password=hunter2 refused",
                )))
            }),
        );
        cfg.route(
            "/slow",
            web::get().to(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                HttpResponse::Ok().body("done")
            }),
        );
    })?;
    let background_stopped = Arc::new(AtomicBool::new(false));
    let flag = background_stopped.clone();
    app.spawn_background("ticker", move |stop| async move {
        stop.cancelled().await;
        flag.store(true, Ordering::SeqCst);
    });
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_token();
    let task = tokio::spawn(app.run_until_stopped());
    Ok(Harness {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        postgres,
        stop,
        task,
        background_stopped,
    })
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[tokio::test]
async fn healthz_is_alive_and_readyz_names_the_failed_dependency() -> Result {
    let h = start(false)?;
    let health = h.client.get(h.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await?["status"], "ok");

    let ready = h.client.get(h.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 200);

    h.postgres.store(false, Ordering::SeqCst);
    let ready = h.client.get(h.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let body: Value = ready.json().await?;
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["checks"]["postgres"]["status"], "failed");
    assert_eq!(body["checks"]["nats"]["status"], "ok");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("postgres"),
        "{body}"
    );
    // Liveness does not depend on dependencies: Kubernetes must not restart us for Postgres.
    assert_eq!(h.client.get(h.url("/healthz")).send().await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn readyz_answers_promptly_when_a_dependency_hangs() -> Result {
    let h = start(true)?;
    let started = std::time::Instant::now();
    let ready = h.client.get(h.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await?;
    assert_eq!(body["checks"]["hangs"]["status"], "failed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn metrics_are_labelled_by_route_pattern_not_raw_path() -> Result {
    let h = start(false)?;
    for id in [1, 2, 3] {
        assert_eq!(
            h.client
                .get(h.url(&format!("/things/{id}")))
                .send()
                .await?
                .status(),
            200
        );
    }
    h.client.get(h.url("/no/such/path/12345")).send().await?;
    let text = h.client.get(h.url("/metrics")).send().await?.text().await?;
    assert!(
        text.contains(r#"sb_http_requests_total{method="GET",route="/things/{id}",service="test",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(!text.contains("12345"), "raw paths must not become labels");
    assert!(
        text.contains("sb_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    Ok(())
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() -> Result {
    let h = start(false)?;
    let echoed = h
        .client
        .get(h.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await?;
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let generated = h.client.get(h.url("/healthz")).send().await?;
    let id = generated.headers()["x-request-id"].to_str()?;
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // A hostile id (too long, odd characters) is replaced, not echoed.
    let hostile = "x".repeat(500);
    let replaced = h
        .client
        .get(h.url("/healthz"))
        .header("x-request-id", hostile.as_str())
        .send()
        .await?;
    assert_ne!(replaced.headers()["x-request-id"], hostile.as_str());
    Ok(())
}

#[tokio::test]
async fn bad_input_answers_problem_json_with_stable_codes() -> Result {
    let h = start(false)?;
    let cases = [
        (h.client.get(h.url("/nowhere")), 404, "not_found"),
        (
            h.client.get(h.url("/things/not-a-number")),
            400,
            "invalid_path_parameter",
        ),
        (
            h.client
                .post(h.url("/things"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid_field",
        ),
        (
            h.client
                .post(h.url("/things"))
                .header("content-type", "application/json")
                .body("{}"),
            400,
            "invalid_field",
        ),
        (
            h.client
                .post(h.url("/things"))
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            h.client
                .post(h.url("/things"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"name":"{}"}}"#, "a".repeat(4096))),
            413,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await?;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        let body: Value = response.json().await?;
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status);
    }
    Ok(())
}

#[tokio::test]
async fn json_routes_take_only_json_bodies() -> Result {
    let h = start(false)?;
    let post = |path: &str, content_type: Option<&str>, body: &'static str| {
        let request = h.client.post(h.url(path)).body(body);
        match content_type {
            Some(value) => request.header("content-type", value),
            None => request,
        }
    };
    let name = r#"{"name":"a"}"#;
    let cases = [
        (post("/things", Some("application/json"), name), 201),
        (
            post("/things", Some("application/json; charset=utf-8"), name),
            201,
        ),
        (post("/things", Some("Application/JSON"), name), 201),
        (
            post("/things", Some("application/merge-patch+json"), name),
            201,
        ),
        (post("/things", Some("text/plain"), name), 415),
        (
            post(
                "/things",
                Some("application/x-www-form-urlencoded"),
                "name=a",
            ),
            415,
        ),
        (
            post("/things", Some("multipart/form-data; boundary=x"), name),
            415,
        ),
        (post("/things", Some("application/jsonx"), name), 415),
        (post("/things", None, name), 415),
        (post("/things/optional", None, ""), 201),
        (post("/things/optional", Some("application/json"), ""), 201),
        (
            post("/things/optional", Some("application/json"), name),
            201,
        ),
        (post("/things/optional", None, name), 415),
        (post("/things/optional", Some("text/plain"), name), 415),
        (
            post(
                "/things/optional",
                Some("application/x-www-form-urlencoded"),
                "",
            ),
            415,
        ),
    ];
    for (i, (request, status)) in cases.into_iter().enumerate() {
        let response = request.send().await?;
        assert_eq!(response.status(), status, "case {i}");
        if status == 415 {
            let body: Value = response.json().await?;
            assert_eq!(body["code"], "unsupported_media_type", "case {i}: {body}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_field_is_named() -> Result {
    let h = start(false)?;
    let response = h
        .client
        .post(h.url("/things"))
        .header("content-type", "application/json")
        .body(r#"{"name":3}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "invalid_field", "{body}");
    assert_eq!(body["field"], "name", "{body}");
    Ok(())
}

#[tokio::test]
async fn actix_extractors_answer_the_same_codes() -> Result {
    let h = start(false)?;
    for (request, status, code) in [
        (
            h.client
                .post(h.url("/raw"))
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            h.client
                .post(h.url("/raw"))
                .header("content-type", "application/json")
                .body("{}"),
            400,
            "invalid_field",
        ),
        (h.client.get(h.url("/raw?n=x")), 400, "invalid_field"),
    ] {
        let response = request.send().await?;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        let body: Value = response.json().await?;
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status);
    }
    Ok(())
}

#[tokio::test]
async fn server_errors_are_opaque() -> Result {
    let h = start(false)?;
    let response = h.client.get(h.url("/boom")).send().await?;
    assert_eq!(response.status(), 500);
    let body = response.text().await?;
    assert!(!body.contains("hunter2"), "{body}");
    assert!(body.contains(r#""code":"internal""#), "{body}");
    Ok(())
}

#[tokio::test]
async fn stopping_drains_in_flight_requests_then_background_tasks() -> Result {
    let h = start(false)?;
    let slow = tokio::spawn(h.client.get(h.url("/slow")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.stop.cancel();
    let response = tokio::time::timeout(Duration::from_secs(5), slow).await???;
    assert_eq!(response.status(), 200, "the in-flight request finished");
    assert_eq!(response.text().await?, "done");
    let health = h.url("/healthz");
    tokio::time::timeout(Duration::from_secs(5), h.task).await???;
    assert!(
        h.background_stopped.load(Ordering::SeqCst),
        "background task was told to stop"
    );
    assert!(
        h.client.get(health).send().await.is_err(),
        "no longer accepting"
    );
    Ok(())
}
