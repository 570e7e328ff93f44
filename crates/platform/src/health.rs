//! Liveness and readiness: `/healthz` says the process is alive, `/readyz` that its
//! dependencies (Postgres, NATS, …) answer.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use futures_util::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};

use crate::Problem;

/// One dependency the service needs to serve traffic.
pub trait ReadinessProbe: Send + Sync {
    /// Short stable name shown in `/readyz` (`postgres`, `nats`).
    fn name(&self) -> &'static str;
    /// Resolves to `Err(reason)` when the dependency does not answer. Must not log secrets.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The probes of one service, each bounded by a timeout so `/readyz` answers promptly even
/// when a dependency hangs.
#[derive(Clone)]
pub struct Readiness {
    service: &'static str,
    probes: Arc<Vec<Arc<dyn ReadinessProbe>>>,
    timeout: Duration,
}

/// Outcome of one readiness round.
#[derive(Debug, Clone)]
pub struct ReadinessReport {
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(name, _)| *name)
            .collect()
    }

    fn checks_json(&self) -> Value {
        let mut map = Map::new();
        for (name, result) in &self.checks {
            let value = match result {
                Ok(()) => json!({"status": "ok"}),
                Err(reason) => json!({"status": "failed", "reason": reason}),
            };
            map.insert((*name).to_owned(), value);
        }
        Value::Object(map)
    }
}

impl Readiness {
    pub fn new(service: &'static str, probes: Vec<Arc<dyn ReadinessProbe>>) -> Self {
        Self {
            service,
            probes: Arc::new(probes),
            timeout: Duration::from_secs(2),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn report(&self) -> ReadinessReport {
        let checks = join_all(self.probes.iter().map(|probe| async move {
            let result = match tokio::time::timeout(self.timeout, probe.check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            };
            (probe.name(), result)
        }))
        .await;
        ReadinessReport { checks }
    }
}

/// `GET /healthz`
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive")))]
#[get("/healthz")]
pub async fn healthz(readiness: web::Data<Readiness>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "service": readiness.service}))
}

/// `GET /readyz`
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers"),
        (status = 503, description = "A dependency does not answer; `checks` says which", content_type = "application/problem+json")))]
#[get("/readyz")]
pub async fn readyz(readiness: web::Data<Readiness>) -> Result<HttpResponse, Problem> {
    let report = readiness.report().await;
    if report.is_ready() {
        return Ok(HttpResponse::Ok().json(json!({
            "status": "ready",
            "service": readiness.service,
            "checks": report.checks_json(),
        })));
    }
    let failed = report.failed().join(", ");
    tracing::warn!(failed = %failed, "not ready");
    Err(Problem::new(crate::Code::NotReady)
        .with_detail(format!("not ready: {failed} unreachable"))
        .with_extension("checks", report.checks_json()))
}
