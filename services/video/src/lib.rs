//! The video service: video calls tied to CRM appointments (seed 000) and ad-hoc meetings
//! (seed 003) on LiveKit, with lobby and guest links, recordings, statistics and webhooks.

mod actions;
pub mod config;
mod consumers;
mod domain;
mod error;
mod jobs;
mod metrics;
mod routes;
mod state;
mod storage;
mod store;

use std::sync::Arc;

use sb_auth::JwtVerifier;
use sb_db::PostgresProbe;
use sb_events::consumer::ConsumerRunner;
use sb_events::outbox::Relay;
use sb_events::projector;
use sb_events::streams::ensure_streams;
use sb_events::{Domain, EventMetrics};
use sb_platform::health::ReadinessProbe;
use sb_platform::nats::NatsProbe;
use sb_platform::{Application, Metrics, Readiness, ServiceSpec};

pub use config::VideoConfig;
pub use error::VideoError;
pub use jobs::reconcile::{ReconcileReport, delete_expired_recordings, reconcile_once};
pub use state::AppState;

/// Builds the state of a service that is not serving HTTP: jobs run by hand, tests.
pub fn state_for_tests(config: VideoConfig) -> anyhow::Result<AppState> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::build_pool(&config.database)?;
    let registry = prometheus::Registry::new();
    AppState::new(Arc::new(config), pool, &registry)
}

/// Name of the service: metrics label, outbox source, consumer prefix.
pub const SERVICE: &str = "video";

/// The service's OpenAPI document (paths are collected from the routes).
pub fn openapi() -> utoipa::openapi::OpenApi {
    sb_platform::server::openapi_document(
        "Switchboard video",
        "Video calls tied to CRM appointments and ad-hoc meetings on LiveKit. Every route takes \
         `Authorization: Bearer <JWT>` except `POST /webhooks/livekit` (LiveKit's signature) and \
         the guest routes (a guest-link token).",
    )
}

/// Builds the service from its configuration: migrates when asked, connects to NATS, makes sure
/// the streams exist, and starts the outbox relay, the appointment projector and the
/// reconciliation job as background tasks. Binds `config.http` (port 0 in tests).
pub async fn build(config: VideoConfig) -> anyhow::Result<Application> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::prepare(&config.database).await?;
    let client = sb_platform::nats::connect(&config.nats, SERVICE).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(
        &js,
        &config.namespace,
        &[Domain::Video, Domain::Crm],
        &config.streams,
    )
    .await?;

    let metrics = Metrics::new(SERVICE)?;
    let event_metrics = EventMetrics::register(metrics.registry())?;
    let config = Arc::new(config);
    let state = AppState::new(config.clone(), pool.clone(), metrics.registry())?;
    let verifier = actix_web::web::Data::new(JwtVerifier::new(&config.auth)?);
    let probes: Vec<Arc<dyn ReadinessProbe>> = vec![
        Arc::new(PostgresProbe::new(pool.clone())),
        Arc::new(NatsProbe::new(client)),
    ];
    let spec = ServiceSpec {
        name: SERVICE,
        http: config.http.clone(),
        metrics,
        readiness: Readiness::new(SERVICE, probes),
        openapi: openapi(),
    };
    let data = actix_web::web::Data::new(state.clone());
    let webhooks = actix_web::web::Data::from(state.webhooks.clone());
    let rejected = actix_web::web::Data::new(state.metrics.rejected_webhooks());
    let mut app = Application::build(spec, move |cfg| {
        cfg.app_data(verifier.clone());
        cfg.app_data(data.clone());
        cfg.app_data(webhooks.clone());
        cfg.app_data(rejected.clone());
        routes::config(cfg);
    })?;

    let relay = Relay::new(
        state.outbox.clone(),
        pool.clone(),
        config.database.clone(),
        js.clone(),
        config.namespace.clone(),
        event_metrics.clone(),
    );
    app.spawn_background("outbox-relay", move |stop| relay.run(stop));
    let projector = ConsumerRunner::new(
        projector::consumer_config(SERVICE),
        pool,
        js,
        config.namespace.clone(),
        consumers::appointments::VideoAppointments,
        event_metrics,
    );
    app.spawn_background("appointment-projector", move |stop| projector.run(stop));
    let metrics = app.metrics().clone();
    app.spawn_background("reconcile", move |stop| {
        jobs::reconcile::run(state, metrics, stop)
    });
    Ok(app)
}
