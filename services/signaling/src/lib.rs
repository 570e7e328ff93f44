//! The signaling service: Socket.IO-compatible WebRTC signaling per appointment (seed 004), on
//! the `/video-call` namespace, with rooms created from CRM appointments.

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
use sb_events::outbox::{Outbox, Relay};
use sb_events::projector;
use sb_events::streams::ensure_streams;
use sb_events::{Domain, EventMetrics};
use sb_platform::health::ReadinessProbe;
use sb_platform::nats::NatsProbe;
use sb_platform::{Application, Metrics, Readiness, ServiceSpec};
use sb_socketio::SocketIo;

pub use config::SignalingConfig;
pub use error::SignalingError;
pub use jobs::cleanup_once;
pub use metrics::SignalingMetrics;
pub use routes::socket::NAMESPACE;
pub use state::AppState;

/// Name of the service: metrics label, outbox source, consumer prefix.
pub const SERVICE: &str = "signaling";

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
                .title("Switchboard signaling")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "WebRTC signaling rooms per appointment. Socket.IO (v4 clients) on \
                     `/socket.io/`, namespace `/video-call`, JWT in the CONNECT `auth.token`.",
                ))
                .build(),
        )
        .build()
}

/// The Socket.IO server with the `/video-call` namespace, from the service's settings.
pub fn socket_server(state: &AppState) -> SocketIo {
    let socket = &state.config.socket;
    let config = sb_socketio::Config {
        ping_interval: socket.ping_interval,
        ping_timeout: socket.ping_timeout,
        max_payload: socket.max_payload,
        events_per_second: socket.events_per_second,
        event_burst: socket.event_burst,
        cors_origins: socket.cors_origins.clone(),
        ..sb_socketio::Config::default()
    };
    let video_call = routes::socket::VideoCall::new(state.clone());
    let answers = video_call.clone();
    SocketIo::builder(config)
        .namespace(NAMESPACE, video_call)
        .on_cluster_request(move |io, request| answers.answer(io, &request))
        .build()
}

/// Builds the service: migrates when asked, connects to NATS, makes sure the streams exist,
/// joins the Socket.IO cluster over NATS, and starts the outbox relay, the appointment consumer
/// and the cleanup job. Binds `config.http` (port 0 in tests).
pub async fn build(config: SignalingConfig) -> anyhow::Result<Application> {
    sb_platform::install_crypto_provider();
    let pool = sb_db::prepare(&config.database).await?;
    let client = sb_platform::nats::connect(&config.nats, SERVICE).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(
        &js,
        &config.namespace,
        &[Domain::Signaling, Domain::Crm],
        &config.streams,
    )
    .await?;

    let metrics = Metrics::new(SERVICE)?;
    let event_metrics = EventMetrics::register(metrics.registry())?;
    let signaling_metrics = SignalingMetrics::register(metrics.registry())?;
    let outbox = Outbox::new(SERVICE);
    let config = Arc::new(config);
    let verifier = Arc::new(JwtVerifier::new(&config.auth)?);
    let state = AppState {
        pool: pool.clone(),
        outbox: outbox.clone(),
        verifier: verifier.clone(),
        config: config.clone(),
        metrics: signaling_metrics.clone(),
        guest_links: AppState::guest_links(&config),
    };
    let io = socket_server(&state);
    io.register_metrics(metrics.registry(), SERVICE)?;
    // Live traffic between instances stays outside `sb.>`: a subject under `sb.signaling.>` is
    // captured by the SB_SIGNALING stream, which would store every relayed signal as an event.
    let cluster_subject = config.namespace.subject("live.signaling.socketio");
    io.attach_nats(client.clone(), cluster_subject).await?;

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
    let verifier_data = actix_web::web::Data::from(verifier);
    let sockets = io.clone();
    let cluster = io.clone();
    let mut app = Application::build(spec, move |cfg| {
        cfg.app_data(verifier_data.clone());
        cfg.app_data(data.clone());
        cfg.app_data(io.data());
        for (path, route) in io.routes() {
            cfg.route(&path, route);
        }
        for (path, route) in routes::demo::routes() {
            cfg.route(path, route);
        }
        routes::config(cfg);
    })?;
    // Open websockets would hold the HTTP drain until SHUTDOWN_TIMEOUT and then be cut without a
    // word: on stop, every client is told why and reconnects (to another instance).
    let stopping = app.stop_token();
    tokio::spawn(async move {
        stopping.cancelled().await;
        let closed = sockets.close_all();
        tracing::info!(
            sessions = closed,
            "socket.io sessions closed: server shutting down"
        );
    });

    let relay = Relay::new(
        outbox,
        pool.clone(),
        config.database.clone(),
        js.clone(),
        config.namespace.clone(),
        event_metrics.clone(),
    );
    app.spawn_background("outbox-relay", move |stop| relay.run(stop));
    let consumer = ConsumerRunner::new(
        projector::consumer_config(SERVICE),
        pool.clone(),
        js,
        config.namespace.clone(),
        consumers::SignalingAppointments {
            metrics: signaling_metrics,
            io: cluster.clone(),
            pool,
        },
        event_metrics,
    );
    app.spawn_background("appointment-consumer", move |stop| consumer.run(stop));
    let metrics = app.metrics().clone();
    app.spawn_background("room-cleanup", move |stop| {
        jobs::run(state, cluster, metrics, stop)
    });
    Ok(app)
}
