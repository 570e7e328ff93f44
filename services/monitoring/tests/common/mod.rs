//! The monitoring service under test: real Postgres (own database) and NATS (own prefix), the
//! fake LiveKit server, and helpers for reps' webhooks.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::time::Duration;

use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_livekit::LiveKitConfig;
use sb_monitoring::MonitoringConfig;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_testkit::{FakeLiveKit, Result, TestApp, TestDb, TestNats, TestTokens, TestUser};
use serde_json::{Value, json};

pub type User = TestUser;

pub struct TestMonitoring {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub livekit: FakeLiveKit,
    pub tokens: TestTokens,
    pub config: MonitoringConfig,
}

impl TestMonitoring {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut MonitoringConfig)) -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let livekit = FakeLiveKit::start().await?;
        let tokens = TestTokens::new();
        let mut config = MonitoringConfig {
            environment: Environment::Production,
            http: HttpConfig::ephemeral(),
            database: db.config(),
            nats: NatsConfig {
                url: sb_testkit::nats_url(),
                connect_timeout: Duration::from_secs(5),
            },
            namespace: Namespace::prefixed(nats.prefix()),
            streams: StreamSettings::default(),
            auth: tokens.auth_config(),
            livekit: LiveKitConfig {
                url: livekit.url(),
                api_key: livekit.api_key.clone(),
                api_secret: livekit.api_secret.clone().into(),
                token_ttl: Duration::from_secs(600),
            },
            livekit_timeout: Duration::from_secs(2),
            rep_token_ttl: Duration::from_secs(15 * 60),
            supervisor_token_ttl: Duration::from_secs(5 * 60),
            // Tests run passes themselves with `reconcile_once`.
            reconcile_interval: Duration::from_secs(3600),
            reconcile_min_age: Duration::ZERO,
            stream_keepalive: Duration::from_secs(15),
        };
        adjust(&mut config);
        let app = TestApp::spawn(sb_monitoring::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            livekit,
            tokens,
            config,
        })
    }

    pub async fn state(&self) -> Result<sb_monitoring::AppState> {
        Ok(sb_monitoring::state_for_tests(self.config.clone()).await?)
    }

    pub fn token(&self, user: &User) -> String {
        self.tokens.for_principal(&user.principal())
    }

    pub async fn post_json(&self, user: &User, path: &str, body: Value) -> Result<(u16, Value)> {
        self.app.post_json(&self.token(user), path, &body).await
    }

    pub async fn post_empty(&self, user: &User, path: &str) -> Result<(u16, Value)> {
        self.app.post_empty(&self.token(user), path).await
    }

    pub async fn get_json(&self, user: &User, path: &str) -> Result<(u16, Value)> {
        self.app.get_json(&self.token(user), path).await
    }

    /// Posts a webhook body signed like the LiveKit server signs it.
    pub async fn webhook(&self, body: &Value) -> Result<(u16, Value)> {
        self.app.livekit_webhook(&self.livekit, body).await
    }

    /// The rep asks for their token (registering them), then LiveKit reports them connected
    /// with their microphone on: they are ONLINE. Returns the rep's room.
    pub async fn rep_online(&self, rep: &User) -> Result<String> {
        let (status, body) = self.post_empty(rep, "/monitoring/rep/session").await?;
        assert_eq!(status, 200, "{body}");
        let room = body["roomName"].as_str().unwrap_or_default().to_owned();
        let identity = format!("rep_{}", rep.id);
        self.livekit.join(&room, &identity, &rep.name);
        self.livekit.publish_audio(&room, &identity);
        let now = chrono::Utc::now().timestamp();
        let sid = format!("PA_{}", &rep.id.simple().to_string()[20..]);
        for event in [
            participant_event(
                "participant_joined",
                &format!("EV_j_{sid}"),
                &room,
                now,
                &sid,
                &identity,
            ),
            track_event(
                "track_published",
                &format!("EV_t_{sid}"),
                &room,
                now,
                &sid,
                &identity,
                &format!("TR_{sid}"),
            ),
        ] {
            let (status, answer) = self.webhook(&event).await?;
            assert_eq!(status, 200, "{answer}");
        }
        Ok(room)
    }
}

pub fn participant_event(
    kind: &str,
    id: &str,
    room: &str,
    at: i64,
    sid: &str,
    identity: &str,
) -> Value {
    json!({
        "event": kind, "id": id, "createdAt": at.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity, "joinedAt": at.to_string()},
    })
}

pub fn track_event(
    kind: &str,
    id: &str,
    room: &str,
    at: i64,
    sid: &str,
    identity: &str,
    track: &str,
) -> Value {
    json!({
        "event": kind, "id": id, "createdAt": at.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity},
        "track": {"sid": track, "type": "AUDIO", "source": "MICROPHONE"},
    })
}
