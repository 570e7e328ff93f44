//! The video service under test: real Postgres (own database) and NATS (own prefix), the fake
//! LiveKit server, and helpers to create appointments and tokens.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::time::Duration;

use chrono::{DateTime, Utc};
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_livekit::LiveKitConfig;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_testkit::{FakeLiveKit, Result, TestApp, TestDb, TestNats, TestTokens};
use sb_video::VideoConfig;
use sb_video::config::{GuestLinkConfig, ReconcileConfig, RecordingConfig};
use serde_json::Value;
use uuid::Uuid;

pub struct TestVideo {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub livekit: FakeLiveKit,
    pub tokens: TestTokens,
    pub config: VideoConfig,
}

pub fn config(
    db: &TestDb,
    nats: &TestNats,
    livekit: &FakeLiveKit,
    tokens: &TestTokens,
) -> VideoConfig {
    VideoConfig {
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
        guest_links: GuestLinkConfig {
            secret: "video-test-guest-link-secret-0123456789".to_owned().into(),
            base_url: "https://app.example.test/call/guest".to_owned(),
            open_before: Duration::from_secs(30 * 60),
            close_after: Duration::from_secs(2 * 3600),
        },
        recording: RecordingConfig {
            s3: None,
            prefix: "recordings".to_owned(),
            stuck_after: Duration::from_secs(15 * 60),
        },
        reconcile: ReconcileConfig {
            // Tests run passes themselves with `reconcile_once`.
            interval: Duration::from_secs(3600),
            empty_grace: Duration::ZERO,
        },
    }
}

impl TestVideo {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with `adjust` applied to the test configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut VideoConfig)) -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let livekit = FakeLiveKit::start().await?;
        let tokens = TestTokens::new();
        let mut config = config(&db, &nats, &livekit, &tokens);
        adjust(&mut config);
        let app = TestApp::spawn(sb_video::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            livekit,
            tokens,
            config,
        })
    }

    /// The service's state for calling actions and jobs directly (its own pool).
    pub async fn state(&self) -> Result<sb_video::AppState> {
        Ok(sb_video::state_for_tests(self.config.clone())?)
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

    /// Inserts an appointment into the read model, as the projector would.
    pub async fn appointment(&self, appointment: &TestAppointment) -> Result<()> {
        let mut conn = self.db.conn().await?;
        upsert_appointment(&mut conn, &appointment.row()).await?;
        Ok(())
    }
}

/// A user as a JWT describes them.
pub type User = sb_testkit::TestUser;

#[derive(Debug, Clone)]
pub struct TestAppointment {
    pub id: Uuid,
    pub org: Uuid,
    pub host: Uuid,
    pub guest: Option<Uuid>,
    pub setter: Option<Uuid>,
    pub team: Option<Uuid>,
    pub scheduled_at: DateTime<Utc>,
    pub status: sb_db::models::AppointmentStatus,
}

impl TestAppointment {
    /// A remote appointment of `host` in `org`, starting now.
    pub fn new(org: Uuid, host: Uuid) -> Self {
        Self {
            id: Uuid::now_v7(),
            org,
            host,
            guest: None,
            setter: None,
            team: None,
            scheduled_at: Utc::now(),
            status: sb_db::models::AppointmentStatus::Scheduled,
        }
    }

    pub fn row(&self) -> NewAppointment {
        NewAppointment {
            id: self.id,
            org_id: self.org,
            host_user_id: self.host,
            guest_user_id: self.guest,
            setter_user_id: self.setter,
            team_id: self.team,
            lead: serde_json::json!({"name": "Lead Person", "phone": "+33612345678", "email": "lead@example.test"}),
            scheduled_at: self.scheduled_at,
            ends_at: Some(self.scheduled_at + chrono::Duration::minutes(45)),
            kind: sb_db::models::AppointmentKind::Remote,
            status: self.status,
            version: 1,
        }
    }
}
