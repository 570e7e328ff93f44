//! The HTTP application every service builds: standard middleware, operational routes,
//! OpenAPI + Swagger UI, background tasks and graceful shutdown.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, web};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::HttpConfig;
use crate::error::{Code, Problem};
use crate::health::{self, Readiness};
use crate::metrics::{self, Metrics};
use crate::telemetry::{self, RequestSpan};

/// What a service hands to [`Application::build`] besides its routes.
pub struct ServiceSpec {
    /// Short name: metrics label, log field, NATS connection name (`video`, `telephony`, …).
    pub name: &'static str,
    pub http: HttpConfig,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Title, version and description of the service's OpenAPI document; paths are collected
    /// from the routes.
    pub openapi: utoipa::openapi::OpenApi,
}

/// A bound, not yet running service. Tests, `switchboard up` and production `main` all start
/// services through this type.
pub struct Application {
    name: &'static str,
    port: u16,
    metrics: Metrics,
    server: actix_web::dev::Server,
    stop: CancellationToken,
    background_stop: CancellationToken,
    background: Vec<(&'static str, JoinHandle<()>)>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds `spec.http.host:port` (port 0 picks a free one) and assembles the app: request id,
    /// tracing span, metrics + access log, JSON/path/query errors as problem+json, `/healthz`,
    /// `/readyz`, `/metrics`, `/openapi.json`, `/docs/` (`/docs` redirects there), and a
    /// problem+json 404 for the rest.
    pub fn build<F>(spec: ServiceSpec, configure: F) -> std::io::Result<Self>
    where
        F: Fn(&mut ServiceConfig<'_>) + Send + Clone + 'static,
    {
        let listener =
            TcpListener::bind((spec.http.host.as_str(), spec.http.port)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{} cannot listen on {}:{}: {e}",
                        spec.name, spec.http.host, spec.http.port
                    ),
                )
            })?;
        let port = listener.local_addr()?.port();
        let ServiceSpec {
            name,
            http,
            metrics,
            readiness,
            openapi,
        } = spec;
        let app_metrics = metrics.clone();
        let json_limit = http.json_limit_bytes;
        let trusted_proxies =
            web::Data::new(crate::client_ip::TrustedProxies(http.trusted_proxies));
        let server = HttpServer::new(move || {
            let (app, api) = App::new()
                .into_utoipa_app()
                .openapi(openapi.clone())
                .app_data(web::Data::new(metrics.clone()))
                .app_data(web::Data::new(readiness.clone()))
                .app_data(trusted_proxies.clone())
                .app_data(json_config(json_limit))
                .app_data(web::PayloadConfig::new(json_limit))
                .app_data(path_config())
                .app_data(query_config())
                .service(health::healthz)
                .service(health::readyz)
                .configure(configure.clone())
                .split_for_parts();
            app.route("/metrics", web::get().to(metrics::metrics_endpoint))
                .route("/docs", web::get().to(docs_redirect))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", api))
                .default_service(web::to(not_found))
                .wrap(from_fn(metrics::record))
                .wrap(TracingLogger::<RequestSpan>::new())
                .wrap(from_fn(telemetry::assign_request_id))
        })
        .workers(http.workers.max(1))
        .shutdown_timeout(http.shutdown_timeout.as_secs())
        // Signals are handled by the caller (see `run_until_signal`), so one process can run
        // several services and stop its background tasks in order.
        .disable_signals()
        .listen(listener)?
        .run();
        let stop = CancellationToken::new();
        Ok(Self {
            name,
            port,
            metrics: app_metrics,
            server,
            background_stop: CancellationToken::new(),
            stop,
            background: Vec::new(),
            shutdown_timeout: http.shutdown_timeout,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service's metrics, to register background tasks' metrics in the same registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Cancelling this token stops the service gracefully: no new connections, in-flight
    /// requests drain (up to `SHUTDOWN_TIMEOUT`), then background tasks stop.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task` until the service stops; it receives a token cancelled after HTTP has drained
    /// and must return promptly once it is.
    pub fn spawn_background<Fut>(
        &mut self,
        name: &'static str,
        task: impl FnOnce(CancellationToken) -> Fut,
    ) where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.background_stop.child_token()));
        self.background.push((name, handle));
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            name,
            server,
            stop,
            background_stop,
            background,
            shutdown_timeout,
            ..
        } = self;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        let result = tokio::select! {
            result = &mut server => result,
            () = stop.cancelled() => {
                tracing::info!(service = name, "stopping: draining in-flight requests");
                handle.stop(true).await;
                server.await
            }
        };
        background_stop.cancel();
        for (task, join) in background {
            match tokio::time::timeout(shutdown_timeout, join).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(service = name, task, %error, "background task failed")
                }
                Err(_) => {
                    tracing::warn!(service = name, task, "background task did not stop in time")
                }
            }
        }
        tracing::info!(service = name, "stopped");
        result.map_err(std::io::Error::other)?
    }

    /// Production entry: runs until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let stop = self.stop_token();
        tokio::spawn(async move {
            crate::shutdown::signal().await;
            stop.cancel();
        });
        self.run_until_stopped().await
    }
}

/// `/docs` → `/docs/`, where the Swagger UI is. The `Location` is relative (`docs/`) so the
/// redirect stays right behind a gateway that serves the service under a path prefix.
async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "docs/"))
        .finish()
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, Problem> {
    Err(Problem::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Services parse bodies and queries with `crate::request`; should a route take actix's
/// `web::Json` or `web::Query` all the same, it answers the same codes.
fn json_config(limit: usize) -> web::JsonConfig {
    use actix_web::error::JsonPayloadError;
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| {
            let problem = match &error {
                JsonPayloadError::ContentType => crate::request::not_json(),
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    Problem::new(Code::PayloadTooLarge)
                        .with_detail(format!("body is larger than {limit} bytes"))
                }
                other => crate::request::invalid_field("body", other),
            };
            problem.into()
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _req| {
        Problem::new(Code::InvalidPathParameter)
            .with_detail(error.to_string())
            .into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|error, _req| crate::request::invalid_field("query", error).into())
}

/// The OpenAPI document of a service: its title and description, and the `bearer` (JWT)
/// security scheme its authenticated routes name. Paths are collected from the routes.
pub fn openapi_document(title: &str, description: &str) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApiBuilder};
    OpenApiBuilder::new()
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .build(),
                    ),
                )
                .build(),
        ))
        .info(
            InfoBuilder::new()
                .title(title)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(description))
                .build(),
        )
        .build()
}
