//! Prometheus registry per service, the HTTP metrics middleware and the access log.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Label used for requests that matched no route: keeps cardinality bounded whatever clients send.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A service's metrics. Each service owns one registry, so `switchboard up` (several services
/// in one process) still exposes each service's metrics on its own port.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    service: &'static str,
    registry: Registry,
    http_requests_total: IntCounterVec,
    http_request_duration_seconds: HistogramVec,
    job_passes_total: IntCounterVec,
    job_pass_duration_seconds: HistogramVec,
}

impl Metrics {
    pub fn new(service: &'static str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "sb_http_requests_total",
                "HTTP requests answered, by route pattern.",
            ),
            &["service", "route", "method", "status"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sb_http_request_duration_seconds",
                "Time from request head to response head, by route pattern.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["service", "route", "method"],
        )?;
        let job_passes_total = IntCounterVec::new(
            Opts::new(
                "sb_job_pass_total",
                "Periodic job passes run, by job, pass and outcome (ok, failed).",
            ),
            &["job", "pass", "outcome"],
        )?;
        let job_pass_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sb_job_pass_duration_seconds",
                "Time one periodic job pass took, by job and pass.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["job", "pass"],
        )?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(job_passes_total.clone()))?;
        registry.register(Box::new(job_pass_duration_seconds.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                registry,
                http_requests_total,
                http_request_duration_seconds,
                job_passes_total,
                job_pass_duration_seconds,
            }),
        })
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// The registry, for a service's own metrics (declared in one place per service).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// One periodic job pass (see `jobs::Job`).
    pub(crate) fn job_pass(&self, job: &str, pass: &str, outcome: &str, seconds: f64) {
        self.inner
            .job_passes_total
            .with_label_values(&[job, pass, outcome])
            .inc();
        self.inner
            .job_pass_duration_seconds
            .with_label_values(&[job, pass])
            .observe(seconds);
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let service = self.inner.service;
        self.inner
            .http_requests_total
            .with_label_values(&[service, route, method, &status.to_string()])
            .inc();
        self.inner
            .http_request_duration_seconds
            .with_label_values(&[service, route, method])
            .observe(seconds);
    }
}

/// Probe and scrape routes are logged at debug: Kubernetes calls them every few seconds.
fn is_operational(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// Middleware: counts and times every request by route pattern and writes one access-log line
/// (inside the request span, so it carries the request id). Server errors log their cause here,
/// once. At debug, a `request started` line marks each request the service took, with its id:
/// a request that never got one was turned away before it ran (a connection closed at shutdown),
/// one that got it and no `request completed` was cut.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = req.app_data::<actix_web::web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    if tracing::enabled!(tracing::Level::DEBUG) {
        let request_id = req
            .extensions()
            .get::<crate::telemetry::RequestId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        tracing::debug!(%request_id, "request started");
    }
    let started = Instant::now();
    let result = next.call(req).await;
    let elapsed = started.elapsed();
    // Asked once the router has matched the request, the pattern is read off the matched
    // resource; asked before, it would be matched against the route table a second time.
    let route = match &result {
        Ok(response) => response.request().match_pattern(),
        Err(_) => None,
    }
    .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    tracing::Span::current().record("http.route", route.as_str());
    let (status, error) = match &result {
        Ok(response) => (response.status(), response.response().error()),
        Err(error) => (error.as_response_error().status_code(), Some(error)),
    };
    if let Some(metrics) = metrics {
        metrics.observe(&route, &method, status.as_u16(), elapsed.as_secs_f64());
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let cause = || {
        error
            .map(|e| match e.as_error::<crate::Problem>() {
                Some(problem) => problem.to_string(),
                None => e.to_string(),
            })
            .unwrap_or_default()
    };
    if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        // A dependency is down: expected during outages, and probes repeat it every few seconds.
        tracing::warn!(http.status = status.as_u16(), duration_ms, error = %cause(), "request refused: dependency unavailable");
    } else if status.is_server_error() {
        tracing::error!(http.status = status.as_u16(), duration_ms, error = %cause(), "request failed");
    } else if is_operational(&route) {
        tracing::debug!(
            http.status = status.as_u16(),
            duration_ms,
            "request completed"
        );
    } else {
        tracing::info!(
            http.status = status.as_u16(),
            duration_ms,
            "request completed"
        );
    }
    result
}

/// `GET /metrics`
pub async fn metrics_endpoint(
    metrics: actix_web::web::Data<Metrics>,
) -> Result<HttpResponse, crate::Problem> {
    let text = metrics.render().map_err(crate::Problem::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};
    use serde_json::Value;
    use tracing_actix_web::TracingLogger;
    use tracing_subscriber::fmt::MakeWriter;

    use super::{Metrics, record};
    use crate::telemetry::{RequestSpan, assign_request_id};

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The middlewares in the order the server stacks them, at debug, in production's JSON: a
    /// request is logged as started with its id, then completed with its route pattern (recorded
    /// after routing) and the same id; the metrics are labelled by the same pattern.
    #[actix_web::test]
    async fn each_request_is_logged_started_then_completed_with_its_route_and_id() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(captured.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let metrics = Metrics::new("test").expect("metrics");
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(metrics.clone()))
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route("/things/{id}", web::get().to(HttpResponse::Ok))
                .wrap(from_fn(record))
                .wrap(TracingLogger::<RequestSpan>::new())
                .wrap(from_fn(assign_request_id)),
        )
        .await;
        let request = test::TestRequest::get()
            .uri("/things/42")
            .insert_header(("X-Request-Id", "req-42"))
            .to_request();
        assert!(
            test::call_service(&app, request)
                .await
                .status()
                .is_success()
        );

        let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        let messages: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
        assert_eq!(messages, ["request started", "request completed"], "{text}");
        assert_eq!(lines[0]["request_id"], "req-42", "{text}");
        assert_eq!(lines[1]["span"]["request_id"], "req-42", "{text}");
        assert_eq!(lines[1]["span"]["http.route"], "/things/{id}", "{text}");
        let rendered = metrics.render().expect("render");
        assert!(rendered.contains(r#"route="/things/{id}""#), "{rendered}");
    }
}
