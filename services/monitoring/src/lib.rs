//! The monitoring service: sales reps publish their microphone to their own LiveKit room,
//! supervisors in scope listen live, then coach or barge in; presence, sessions and an
//! append-only audit live in Postgres, live changes reach supervisors over SSE (seed 002).

mod actions;
pub mod config;
mod consumers;
mod domain;
mod error;
mod jobs;
mod metrics;
mod routes;
mod state;
mod store;

use std::sync::Arc;

use sb_auth::JwtVerifier;
use sb_db::PostgresProbe;
use sb_events::consumer::ConsumerRunner;
use sb_events::outbox::Relay;
use sb_events::streams::ensure_streams;
use sb_events::{Domain, EventMetrics};
use sb_platform::health::ReadinessProbe;
use sb_platform::nats::NatsProbe;
use sb_platform::{Application, Metrics, Readiness, ServiceSpec};

pub use config::MonitoringConfig;
pub use error::MonitoringError;
pub use jobs::{ReconcileReport, reconcile_once};
pub use state::AppState;

/// Name of the service: metrics label, outbox source, consumer prefix.
pub const SERVICE: &str = "monitoring";

pub fn openapi() -> utoipa::openapi::OpenApi {
    sb_platform::server::openapi_document(
        "Switchboard monitoring",
        "Supervisors listen live to sales reps, then coach or barge in. Every route takes \
         `Authorization: Bearer <JWT>` except `POST /webhooks/livekit` (LiveKit's signature).",
    )
}

/// A state outside the HTTP app (jobs run by hand, tests).
pub async fn state_for_tests(config: MonitoringConfig) -> anyhow::Result<AppState> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::build_pool(&config.database)?;
    let nats = sb_platform::nats::connect(&config.nats, SERVICE).await?;
    AppState::new(Arc::new(config), pool, nats, &prometheus::Registry::new())
}

/// Builds the service: migrates when asked, connects to NATS, makes sure the streams it writes
/// and reads exist, and starts the relay, the call consumers and the reconciliation job.
pub async fn build(config: MonitoringConfig) -> anyhow::Result<Application> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::prepare(&config.database).await?;
    let client = sb_platform::nats::connect(&config.nats, SERVICE).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(
        &js,
        &config.namespace,
        &[
            Domain::Monitoring,
            Domain::Video,
            Domain::Telephony,
            Domain::Crm,
        ],
        &config.streams,
    )
    .await?;
    let metrics = Metrics::new(SERVICE)?;
    let event_metrics = EventMetrics::register(metrics.registry())?;
    let config = Arc::new(config);
    let state = AppState::new(
        config.clone(),
        pool.clone(),
        client.clone(),
        metrics.registry(),
    )?;
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
    // Live streams end when shutdown starts (the HTTP drain would otherwise wait for them).
    let stop = app.stop_token();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.cancel();
    });
    let relay = Relay::new(
        state.outbox.clone(),
        pool.clone(),
        config.database.clone(),
        js.clone(),
        config.namespace.clone(),
        event_metrics.clone(),
    );
    app.spawn_background("outbox-relay", move |stop| relay.run(stop));
    for consumer in [
        consumers::calls::video_consumer(),
        consumers::calls::telephony_consumer(),
        consumers::calls::supervision_consumer(),
    ] {
        let runner = ConsumerRunner::new(
            consumer,
            pool.clone(),
            js.clone(),
            config.namespace.clone(),
            consumers::calls::RepCalls {
                state: state.clone(),
            },
            event_metrics.clone(),
        );
        app.spawn_background("call-consumer", move |stop| runner.run(stop));
    }
    let runner = ConsumerRunner::new(
        consumers::users::users_consumer(),
        pool.clone(),
        js.clone(),
        config.namespace.clone(),
        consumers::users::Users {
            state: state.clone(),
        },
        event_metrics.clone(),
    );
    app.spawn_background("user-consumer", move |stop| runner.run(stop));
    let metrics = app.metrics().clone();
    app.spawn_background("reconcile", move |stop| jobs::run(state, metrics, stop));
    Ok(app)
}
