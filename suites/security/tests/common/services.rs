//! Each service built in-process the way its `main` builds it (`Config::from_env`, through
//! `sb_resilience::service_env` / `build_service`), in the production environment, as an
//! `sb_testkit::TestService` (own database, NATS prefix, fake providers): a config field a
//! service adds needs no line here.

use std::collections::HashMap;

use sb_platform::Env;
use sb_testkit::{Deps, Result};

/// Where Twilio believes the telephony service is (signatures are computed over it).
pub const PUBLIC_BASE_URL: &str = sb_resilience::PUBLIC_BASE_URL;

const GUEST_LINK_SECRET: &str = "security-test-guest-link-secret-0123456789";

pub type Service = sb_testkit::TestService<Production>;

/// A service of the production stack, chosen by name, configured by its environment.
pub struct Production;

#[derive(Clone)]
pub struct ProductionEnv {
    pub name: &'static str,
    pub env: HashMap<String, String>,
}

impl sb_testkit::Service for Production {
    type Config = ProductionEnv;
    type State = ();

    /// The resilience stack's environment in production, on this test's database and prefix;
    /// [`start`] names the service and adds its settings.
    fn config(deps: &Deps<'_>) -> ProductionEnv {
        let mut env = sb_resilience::service_env(
            &deps.db.url(),
            &sb_testkit::nats_url(),
            deps.livekit,
            deps.twilio,
        );
        for (key, value) in [
            ("APP_ENV", "production"),
            ("EVENTS_NAMESPACE", deps.nats.prefix()),
            ("HTTP_WORKERS", "1"),
            ("HTTP_JSON_LIMIT_BYTES", "65536"),
            ("SHUTDOWN_TIMEOUT", "5s"),
            ("LIVEKIT_TOKEN_TTL", "600s"),
        ] {
            env.insert(key.to_owned(), value.to_owned());
        }
        ProductionEnv { name: "", env }
    }

    fn name(config: &ProductionEnv) -> &str {
        config.name
    }

    async fn build(config: ProductionEnv) -> Result<sb_platform::Application> {
        sb_resilience::build_service(config.name, &Env::new(&config.env))
            .await
            .map_err(Into::into)
    }

    async fn state(_: ProductionEnv) -> Result<()> {
        Ok(())
    }
}

/// Starts `name` with `settings` on top of the production environment.
async fn start(name: &'static str, settings: &[(&str, &str)]) -> Result<Service> {
    Service::spawn_with(|config| {
        config.name = name;
        for (key, value) in settings {
            config.env.insert((*key).to_owned(), (*value).to_owned());
        }
    })
    .await
}

const VIDEO_SETTINGS: [(&str, &str); 7] = [
    ("GUEST_LINK_SECRET", GUEST_LINK_SECRET),
    ("GUEST_LINK_BASE_URL", "https://app.example.test/call/guest"),
    ("GUEST_LINK_OPEN_BEFORE", "30m"),
    ("GUEST_LINK_CLOSE_AFTER", "120m"),
    ("RECORDING_STUCK_AFTER", "15m"),
    ("VIDEO_RECONCILE_INTERVAL", "60m"),
    ("VIDEO_EMPTY_ROOM_GRACE", "0s"),
];

pub async fn video() -> Result<Service> {
    start("video", &VIDEO_SETTINGS).await
}

/// Video with its recordings in `bucket` of the S3-compatible server at `endpoint` (a
/// `sb_testkit::Moto`), so recording routes have files to serve and delete.
pub async fn video_recording_to(endpoint: &str, bucket: &str) -> Result<Service> {
    let mut settings = VIDEO_SETTINGS.to_vec();
    settings.extend([
        ("RECORDING_S3_BUCKET", bucket),
        ("RECORDING_S3_ENDPOINT", endpoint),
        ("RECORDING_S3_REGION", sb_testkit::MOTO_REGION),
        ("RECORDING_S3_ACCESS_KEY", sb_testkit::MOTO_ACCESS_KEY),
        ("RECORDING_S3_SECRET_KEY", sb_testkit::MOTO_SECRET_KEY),
        ("RECORDING_S3_FORCE_PATH_STYLE", "true"),
    ]);
    start("video", &settings).await
}

pub async fn monitoring() -> Result<Service> {
    start(
        "monitoring",
        &[
            ("MONITORING_REP_TOKEN_TTL", "15m"),
            ("MONITORING_SUPERVISOR_TOKEN_TTL", "5m"),
            ("MONITORING_RECONCILE_INTERVAL", "60m"),
            ("MONITORING_RECONCILE_MIN_AGE", "0s"),
            ("MONITORING_STREAM_KEEPALIVE", "15s"),
        ],
    )
    .await
}

pub async fn telephony() -> Result<Service> {
    start(
        "telephony",
        &[
            ("TWILIO_API_KEY_SID", "SK0123456789abcdef0123456789abcdef"),
            (
                "TWILIO_API_KEY_SECRET",
                "security-test-api-key-secret-0123456789",
            ),
            ("TWILIO_TWIML_APP_SID", "AP0123456789abcdef0123456789abcdef"),
            ("TWILIO_VOICE_TOKEN_TTL", "60m"),
            ("TWILIO_INSIGHTS_ENABLED", "true"),
            ("TELEPHONY_CALL_RATE_LIMIT", "1000"),
            ("TELEPHONY_CALL_RATE_WINDOW", "60s"),
            ("TELEPHONY_FOLLOWUP_INTERVAL", "60m"),
            ("TELEPHONY_FOLLOWUP_FIRST_DELAY", "0s"),
            ("TELEPHONY_COST_GIVE_UP_AFTER", "360m"),
            ("TELEPHONY_QUALITY_GIVE_UP_AFTER", "60m"),
            ("TELEPHONY_STALE_CALL_AFTER", "15m"),
        ],
    )
    .await
}

pub async fn signaling() -> Result<Service> {
    start(
        "signaling",
        &[
            ("STUN_URLS", "stun:stun.example.test:3478"),
            ("SIGNALING_MAX_PAYLOAD", "65536"),
            ("SIGNALING_EVENTS_PER_SECOND", "50"),
            ("SIGNALING_EVENT_BURST", "200"),
            ("SIGNALING_PING_INTERVAL", "25s"),
            ("SIGNALING_PING_TIMEOUT", "20s"),
            ("SIGNALING_RECONNECT_GRACE", "1500ms"),
            ("SIGNALING_CLEANUP_INTERVAL", "60m"),
            ("SIGNALING_CLEANUP_AFTER", "240m"),
        ],
    )
    .await
}
