//! Each service built in-process as its own tests build it (production environment, real
//! Postgres database of its own, NATS prefix of its own, fake providers).

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_livekit::LiveKitConfig;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_testkit::{
    FakeLiveKit, FakeTwilio, Result, TestApp, TestDb, TestNats, TestTokens, TestUser,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Where Twilio believes the telephony service is (signatures are computed over it).
pub const PUBLIC_BASE_URL: &str = "https://voice.example.test/telephony";

pub struct Service {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub tokens: TestTokens,
    pub livekit: Option<FakeLiveKit>,
    pub twilio: Option<FakeTwilio>,
    pub guest_secret: Option<secrecy::SecretString>,
}

fn nats_config() -> NatsConfig {
    NatsConfig {
        url: sb_testkit::nats_url(),
        connect_timeout: Duration::from_secs(5),
    }
}

fn livekit_config(livekit: &FakeLiveKit) -> LiveKitConfig {
    LiveKitConfig {
        url: livekit.url(),
        api_key: livekit.api_key.clone(),
        api_secret: livekit.api_secret.clone().into(),
        token_ttl: Duration::from_secs(600),
    }
}

pub async fn video() -> Result<Service> {
    use sb_video::config::{GuestLinkConfig, ReconcileConfig, RecordingConfig};
    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let livekit = FakeLiveKit::start().await?;
    let tokens = TestTokens::new();
    let guest_secret: secrecy::SecretString = "security-test-guest-link-secret-0123456789"
        .to_owned()
        .into();
    let config = sb_video::VideoConfig {
        environment: Environment::Production,
        http: HttpConfig::ephemeral(),
        database: db.config(),
        nats: nats_config(),
        namespace: Namespace::prefixed(nats.prefix()),
        streams: StreamSettings::default(),
        auth: tokens.auth_config(),
        livekit: livekit_config(&livekit),
        livekit_timeout: Duration::from_secs(2),
        guest_links: GuestLinkConfig {
            secret: guest_secret.clone(),
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
            interval: Duration::from_secs(3600),
            empty_grace: Duration::ZERO,
        },
    };
    let app = TestApp::spawn(sb_video::build(config).await?);
    Ok(Service {
        app,
        db,
        nats,
        tokens,
        livekit: Some(livekit),
        twilio: None,
        guest_secret: Some(guest_secret),
    })
}

pub async fn monitoring() -> Result<Service> {
    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let livekit = FakeLiveKit::start().await?;
    let tokens = TestTokens::new();
    let config = sb_monitoring::MonitoringConfig {
        environment: Environment::Production,
        http: HttpConfig::ephemeral(),
        database: db.config(),
        nats: nats_config(),
        namespace: Namespace::prefixed(nats.prefix()),
        streams: StreamSettings::default(),
        auth: tokens.auth_config(),
        livekit: livekit_config(&livekit),
        livekit_timeout: Duration::from_secs(2),
        rep_token_ttl: Duration::from_secs(15 * 60),
        supervisor_token_ttl: Duration::from_secs(5 * 60),
        reconcile_interval: Duration::from_secs(3600),
        reconcile_min_age: Duration::ZERO,
        stream_keepalive: Duration::from_secs(15),
    };
    let app = TestApp::spawn(sb_monitoring::build(config).await?);
    Ok(Service {
        app,
        db,
        nats,
        tokens,
        livekit: Some(livekit),
        twilio: None,
        guest_secret: None,
    })
}

pub async fn telephony() -> Result<Service> {
    use sb_telephony::config::{FollowupConfig, RateLimitConfig, TwilioConfig, VoiceTokenConfig};
    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let twilio = FakeTwilio::start().await?;
    let tokens = TestTokens::new();
    let config = sb_telephony::TelephonyConfig {
        environment: Environment::Production,
        http: HttpConfig::ephemeral(),
        database: db.config(),
        nats: nats_config(),
        namespace: Namespace::prefixed(nats.prefix()),
        streams: StreamSettings::default(),
        auth: tokens.auth_config(),
        twilio: TwilioConfig {
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone().into(),
            api_base: twilio.url(),
            insights_base: twilio.url(),
            timeout: Duration::from_secs(2),
            voice: VoiceTokenConfig {
                api_key: Some((
                    "SK0123456789abcdef0123456789abcdef".to_owned(),
                    "security-test-api-key-secret-0123456789".to_owned().into(),
                )),
                twiml_app_sid: Some("AP0123456789abcdef0123456789abcdef".to_owned()),
                push_credential_apns: None,
                push_credential_fcm: None,
                ttl: Duration::from_secs(3600),
            },
            insights_enabled: true,
        },
        public_base_url: PUBLIC_BASE_URL.to_owned(),
        rate_limit: RateLimitConfig {
            calls: 1000,
            window: Duration::from_secs(60),
        },
        followup: FollowupConfig {
            interval: Duration::from_secs(3600),
            first_delay: Duration::ZERO,
            cost_give_up_after: Duration::from_secs(6 * 3600),
            quality_give_up_after: Duration::from_secs(3600),
            stale_after: Duration::from_secs(15 * 60),
        },
        quality: sb_telephony::domain::quality::Thresholds::default(),
    };
    let app = TestApp::spawn(sb_telephony::build(config).await?);
    Ok(Service {
        app,
        db,
        nats,
        tokens,
        livekit: None,
        twilio: Some(twilio),
        guest_secret: None,
    })
}

pub async fn signaling() -> Result<Service> {
    use sb_signaling::config::{IceConfig, SocketConfig};
    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let tokens = TestTokens::new();
    let config = sb_signaling::SignalingConfig {
        environment: Environment::Production,
        http: HttpConfig::ephemeral(),
        database: db.config(),
        nats: nats_config(),
        namespace: Namespace::prefixed(nats.prefix()),
        streams: StreamSettings::default(),
        auth: tokens.auth_config(),
        ice: IceConfig {
            stun_urls: vec!["stun:stun.example.test:3478".to_owned()],
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
        },
        socket: SocketConfig {
            max_payload: 64 * 1024,
            events_per_second: 50,
            event_burst: 200,
            cors_origins: Vec::new(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
        },
        reconnect_grace: Duration::from_millis(1500),
        cleanup_interval: Duration::from_secs(3600),
        cleanup_after: Duration::from_secs(4 * 3600),
    };
    let app = TestApp::spawn(sb_signaling::build(config).await?);
    Ok(Service {
        app,
        db,
        nats,
        tokens,
        livekit: None,
        twilio: None,
        guest_secret: None,
    })
}

impl Service {
    pub fn token(&self, user: &TestUser) -> String {
        self.tokens.for_principal(&user.principal())
    }

    pub async fn call(
        &self,
        user: &TestUser,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.app.send(request, None).await
    }

    /// A remote appointment of `host` (and `guest`, `team`) in the read model, as the CRM
    /// projector writes it.
    pub async fn appointment(
        &self,
        org: Uuid,
        host: Uuid,
        guest: Option<Uuid>,
        team: Option<Uuid>,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let mut conn = self.db.conn().await?;
        upsert_appointment(
            &mut conn,
            &NewAppointment {
                id,
                org_id: org,
                host_user_id: host,
                guest_user_id: guest,
                setter_user_id: None,
                team_id: team,
                lead: json!({"name": "Lead Person", "phone": "+33612345678", "email": "lead@example.test"}),
                scheduled_at: now,
                ends_at: Some(now + chrono::Duration::minutes(45)),
                kind: "remote".to_owned(),
                status: "scheduled".to_owned(),
                version: 1,
            },
        )
        .await?;
        Ok(id)
    }

    /// Rows of `table` (to show that refused requests wrote nothing).
    pub async fn count(&self, table: &str) -> Result<i64> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db.conn().await?;
        let row: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut conn)
            .await?;
        Ok(row.n)
    }

    /// Row counts of every table of the database except the migrations' own, by name.
    pub async fn all_counts(&self) -> Result<Vec<(String, i64)>> {
        #[derive(QueryableByName)]
        struct Table {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let tables: Vec<Table> = {
            let mut conn = self.db.conn().await?;
            diesel::sql_query(
                "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' \
                 AND tablename <> '__diesel_schema_migrations' ORDER BY tablename",
            )
            .load(&mut conn)
            .await?
        };
        let mut counts = Vec::new();
        for table in tables {
            let n = self.count(&format!("\"{}\"", table.name)).await?;
            counts.push((table.name, n));
        }
        Ok(counts)
    }
}
