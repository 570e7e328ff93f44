//! Each service built in-process the way its `main` builds it (`Config::from_env`, through
//! `sb_resilience::service_env` / `build_service`), in the production environment, on a Postgres
//! database of its own, a NATS prefix of its own and fake providers: a config field a service adds
//! needs no line here.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_platform::Env;
use sb_testkit::{
    FakeLiveKit, FakeTwilio, Result, TestApp, TestDb, TestNats, TestTokens, TestUser,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Where Twilio believes the telephony service is (signatures are computed over it).
pub const PUBLIC_BASE_URL: &str = sb_resilience::PUBLIC_BASE_URL;

const GUEST_LINK_SECRET: &str = "security-test-guest-link-secret-0123456789";

pub struct Service {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub tokens: TestTokens,
    pub livekit: Option<FakeLiveKit>,
    pub twilio: Option<FakeTwilio>,
    pub guest_secret: Option<secrecy::SecretString>,
}

/// Starts `name` with the resilience stack's environment in production, on its own database and
/// NATS prefix, with `settings` on top; the fakes it does not call are stopped.
async fn start(name: &str, settings: &[(&str, &str)]) -> Result<Service> {
    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let livekit = FakeLiveKit::start().await?;
    let twilio = FakeTwilio::start().await?;
    let tokens = TestTokens::new();
    let mut env = sb_resilience::service_env(&db.url(), &sb_testkit::nats_url(), &livekit, &twilio);
    for (key, value) in [
        ("APP_ENV", "production"),
        ("EVENTS_NAMESPACE", nats.prefix()),
        ("HTTP_WORKERS", "1"),
        ("HTTP_JSON_LIMIT_BYTES", "65536"),
        ("SHUTDOWN_TIMEOUT", "5s"),
        ("LIVEKIT_TOKEN_TTL", "600s"),
    ]
    .into_iter()
    .chain(settings.iter().copied())
    {
        env.insert(key.to_owned(), value.to_owned());
    }
    let app = sb_resilience::build_service(name, &Env::new(&env))
        .await
        .map_err(|e| -> sb_testkit::Error { e.into() })?;
    let uses_livekit = matches!(name, "video" | "monitoring");
    let (livekit, twilio) = if uses_livekit {
        twilio.stop().await;
        (Some(livekit), None)
    } else {
        livekit.stop().await;
        (None, (name == "telephony").then_some(twilio))
    };
    Ok(Service {
        app: TestApp::spawn(app),
        db,
        nats,
        tokens,
        livekit,
        twilio,
        guest_secret: (name == "video").then(|| GUEST_LINK_SECRET.to_owned().into()),
    })
}

pub async fn video() -> Result<Service> {
    start(
        "video",
        &[
            ("GUEST_LINK_SECRET", GUEST_LINK_SECRET),
            ("GUEST_LINK_BASE_URL", "https://app.example.test/call/guest"),
            ("GUEST_LINK_OPEN_BEFORE", "30m"),
            ("GUEST_LINK_CLOSE_AFTER", "120m"),
            ("RECORDING_STUCK_AFTER", "15m"),
            ("VIDEO_RECONCILE_INTERVAL", "60m"),
            ("VIDEO_EMPTY_ROOM_GRACE", "0s"),
        ],
    )
    .await
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
                kind: sb_db::models::AppointmentKind::Remote,
                status: sb_db::models::AppointmentStatus::Scheduled,
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
