//! The telephony service: Twilio Voice calls (seed 001). Click-to-call, inbound calls answered
//! with TwiML (greeting, ringing the owner's app and/or forward number, voicemail), status and
//! recording callbacks applied monotonically, call history scoped by role, price and quality
//! followed up after each call, and Voice access tokens for the mobile apps.

mod actions;
pub mod config;
mod consumers;
pub mod domain;
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

pub use config::TelephonyConfig;
pub use error::TelephonyError;
pub use jobs::followup::{FollowupReport, followup_once};
pub use state::AppState;

/// Name of the service: metrics label, outbox source.
pub const SERVICE: &str = "telephony";

/// Builds the state of a service that is not serving HTTP: jobs run by hand, tests.
pub fn state_for_tests(config: TelephonyConfig) -> anyhow::Result<AppState> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::build_pool(&config.database)?;
    let registry = prometheus::Registry::new();
    AppState::new(Arc::new(config), pool, &registry)
}

/// The service's OpenAPI document (paths are collected from the routes).
pub fn openapi() -> utoipa::openapi::OpenApi {
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
                .title("Switchboard telephony")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Phone calls on Twilio Voice: click-to-call, inbound calls answered with TwiML, \
                     call history, recordings and voicemail, cost and quality, and Voice access \
                     tokens for the mobile apps. Every `/api` route takes `Authorization: Bearer \
                     <JWT>`; the `/webhook/voice…` routes are Twilio's, authenticated by \
                     `X-Twilio-Signature` only, and answer TwiML (`text/xml`).",
                ))
                .build(),
        )
        .build()
}

/// Builds the service from its configuration: migrates when asked, connects to NATS, makes sure
/// its stream exists, and starts the outbox relay and the follow-up job as background tasks.
/// Binds `config.http` (port 0 in tests).
pub async fn build(config: TelephonyConfig) -> anyhow::Result<Application> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::prepare(&config.database).await?;
    let client = sb_platform::nats::connect(&config.nats, SERVICE).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(
        &js,
        &config.namespace,
        // Monitoring's stream too: supervision sessions are consumed from it.
        &[Domain::Telephony, Domain::Monitoring],
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
    let mut app = Application::build(spec, move |cfg| {
        cfg.app_data(verifier.clone());
        cfg.app_data(data.clone());
        routes::config(cfg);
    })?;

    let supervision = ConsumerRunner::new(
        consumers::supervision::consumer(),
        pool.clone(),
        js.clone(),
        config.namespace.clone(),
        consumers::supervision::Supervision {
            state: state.clone(),
        },
        event_metrics.clone(),
    );
    app.spawn_background("supervision", move |stop| supervision.run(stop));
    let relay = Relay::new(
        state.outbox.clone(),
        pool,
        config.database.clone(),
        js,
        config.namespace.clone(),
        event_metrics,
    );
    app.spawn_background("outbox-relay", move |stop| relay.run(stop));
    let metrics = app.metrics().clone();
    app.spawn_background("followup", move |stop| {
        jobs::followup::run(state, metrics, stop)
    });
    Ok(app)
}
