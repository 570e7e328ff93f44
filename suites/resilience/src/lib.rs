//! The four services built from their libraries and pointed at given Postgres, NATS, LiveKit and
//! Twilio endpoints, the traffic the fault tests and the soak run send them, and the end-to-end
//! count of events in JetStream.

pub mod consistency;
pub mod events;
pub mod memory;
pub mod process;
pub mod socket;
pub mod traffic;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sb_platform::{Application, Env};
use sb_testkit::{FakeLiveKit, FakeTwilio, TEST_JWT_SECRET, TestApp, TestTokens};

/// The four services, by the name the `service` binary takes.
pub const SERVICES: [&str; 4] = ["video", "telephony", "signaling", "monitoring"];

/// Where Twilio believes telephony is: webhooks are signed over this URL.
pub const PUBLIC_BASE_URL: &str = "https://voice.example.test/telephony";

/// The environment a service of the stack runs with: the production code path
/// (`Config::from_env`), pointed at the given dependencies, on a free loopback port.
pub fn service_env(
    database_url: &str,
    nats_url: &str,
    livekit: &FakeLiveKit,
    twilio: &FakeTwilio,
) -> HashMap<String, String> {
    let pairs = [
        ("APP_ENV", "development".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("SHUTDOWN_TIMEOUT", "10s".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("DATABASE_POOL_SIZE", "8".to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT", "2s".to_owned()),
        ("DATABASE_CONNECT_TIMEOUT", "2s".to_owned()),
        ("NATS_URL", nats_url.to_owned()),
        ("JWT_SECRET", TEST_JWT_SECRET.to_owned()),
        ("LIVEKIT_URL", livekit.url()),
        ("LIVEKIT_API_KEY", livekit.api_key.clone()),
        ("LIVEKIT_API_SECRET", livekit.api_secret.clone()),
        ("LIVEKIT_TIMEOUT", "2s".to_owned()),
        ("TWILIO_API_BASE", twilio.url()),
        ("TWILIO_INSIGHTS_BASE", twilio.url()),
        ("TWILIO_ACCOUNT_SID", twilio.account_sid.clone()),
        ("TWILIO_AUTH_TOKEN", twilio.auth_token.clone()),
        ("TWILIO_TIMEOUT", "2s".to_owned()),
        ("TWILIO_INSIGHTS_ENABLED", "false".to_owned()),
        // The soak places many calls per user; the per-user limit is not what is measured.
        ("TELEPHONY_CALL_RATE_LIMIT", "100000".to_owned()),
        ("TELEPHONY_FOLLOWUP_INTERVAL", "1s".to_owned()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_owned()),
        (
            "GUEST_LINK_SECRET",
            "resilience-guest-link-secret-0123456789".to_owned(),
        ),
        ("VIDEO_RECONCILE_INTERVAL", "1s".to_owned()),
        ("SIGNALING_EVENTS_PER_SECOND", "1000".to_owned()),
        ("SIGNALING_EVENT_BURST", "1000".to_owned()),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Builds the named service from `env`, exactly as its `main` does.
pub async fn build_service(name: &str, env: &Env<'_>) -> anyhow::Result<Application> {
    match name {
        "video" => sb_video::build(sb_video::VideoConfig::from_env(env)?).await,
        "telephony" => sb_telephony::build(sb_telephony::TelephonyConfig::from_env(env)?).await,
        "signaling" => sb_signaling::build(sb_signaling::SignalingConfig::from_env(env)?).await,
        "monitoring" => sb_monitoring::build(sb_monitoring::MonitoringConfig::from_env(env)?).await,
        other => anyhow::bail!("unknown service {other:?}: one of {SERVICES:?}"),
    }
}

/// The four services running in this process, with the fakes they call.
pub struct Stack {
    pub video: TestApp,
    pub telephony: TestApp,
    pub signaling: TestApp,
    pub monitoring: TestApp,
    pub livekit: Arc<FakeLiveKit>,
    pub twilio: Arc<FakeTwilio>,
    pub tokens: TestTokens,
    pub database_url: String,
    pub env: HashMap<String, String>,
}

impl Stack {
    /// Starts the fakes and the four services on `database_url` (migrated) and `nats_url`;
    /// `adjust` may change the environment first.
    pub async fn start(
        database_url: &str,
        nats_url: &str,
        adjust: impl FnOnce(&mut HashMap<String, String>),
    ) -> anyhow::Result<Self> {
        sb_testkit::init();
        let livekit = FakeLiveKit::start()
            .await
            .map_err(anyhow::Error::from_boxed)?;
        let twilio = FakeTwilio::start()
            .await
            .map_err(anyhow::Error::from_boxed)?;
        let mut env = service_env(database_url, nats_url, &livekit, &twilio);
        adjust(&mut env);
        let source = Env::new(&env);
        let video = TestApp::spawn(build_service("video", &source).await?);
        let telephony = TestApp::spawn(build_service("telephony", &source).await?);
        let signaling = TestApp::spawn(build_service("signaling", &source).await?);
        let monitoring = TestApp::spawn(build_service("monitoring", &source).await?);
        Ok(Self {
            video,
            telephony,
            signaling,
            monitoring,
            livekit: Arc::new(livekit),
            twilio: Arc::new(twilio),
            tokens: TestTokens::new(),
            database_url: database_url.to_owned(),
            env,
        })
    }

    /// Every service, with its name.
    pub fn services(&self) -> [(&'static str, &TestApp); 4] {
        [
            ("video", &self.video),
            ("telephony", &self.telephony),
            ("signaling", &self.signaling),
            ("monitoring", &self.monitoring),
        ]
    }

    /// Stops the four services gracefully.
    pub async fn stop(self) -> anyhow::Result<()> {
        for app in [self.video, self.telephony, self.signaling, self.monitoring] {
            app.stop().await.map_err(anyhow::Error::from_boxed)?;
        }
        Ok(())
    }
}

/// A client with a per-request budget, for traffic that must never hang.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()?)
}

impl Stack {
    /// Traffic of a new org against this stack.
    pub async fn traffic(&self, request_timeout: Duration) -> anyhow::Result<traffic::Traffic> {
        traffic::Traffic::new(
            traffic::Endpoints::of(self),
            self.tokens.clone(),
            self.livekit.clone(),
            self.twilio.auth_token.clone(),
            &self.database_url,
            request_timeout,
        )
        .await
    }
}
