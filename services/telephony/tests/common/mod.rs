//! The telephony service under test: real Postgres (own database) and NATS (own prefix), the fake
//! Twilio, tokens, and helpers to post webhooks signed like Twilio's and to read the outbox.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::{OrgId, Principal, Role, TeamId, UserId};
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_telephony::TelephonyConfig;
use sb_telephony::config::{FollowupConfig, RateLimitConfig, TwilioConfig, VoiceTokenConfig};
use sb_telephony::domain::quality::Thresholds;
use sb_testkit::{FakeTwilio, Result, TestApp, TestDb, TestNats, TestTokens};
use serde_json::Value;
use uuid::Uuid;

/// Where Twilio believes the service is: signatures are computed over this, never the address
/// the test actually connects to (as behind a TLS-terminating gateway with a path prefix).
pub const PUBLIC_BASE_URL: &str = "https://voice.example.test/telephony";

pub const API_KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
pub const API_KEY_SECRET: &str = "telephony-test-api-key-secret-0123456789";
pub const TWIML_APP_SID: &str = "AP0123456789abcdef0123456789abcdef";
pub const PUSH_APNS: &str = "CR0123456789abcdef0123456789abcd01";
pub const PUSH_FCM: &str = "CR0123456789abcdef0123456789abcd02";

pub struct TestTelephony {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub twilio: FakeTwilio,
    pub tokens: TestTokens,
    pub config: TelephonyConfig,
}

pub fn config(
    db: &TestDb,
    nats: &TestNats,
    twilio: &FakeTwilio,
    tokens: &TestTokens,
) -> TelephonyConfig {
    TelephonyConfig {
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
        twilio: TwilioConfig {
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone().into(),
            api_base: twilio.url(),
            insights_base: twilio.url(),
            timeout: Duration::from_secs(2),
            voice: VoiceTokenConfig {
                api_key: Some((API_KEY_SID.to_owned(), API_KEY_SECRET.to_owned().into())),
                twiml_app_sid: Some(TWIML_APP_SID.to_owned()),
                push_credential_apns: Some(PUSH_APNS.to_owned()),
                push_credential_fcm: Some(PUSH_FCM.to_owned()),
                ttl: Duration::from_secs(3600),
            },
            insights_enabled: true,
        },
        public_base_url: PUBLIC_BASE_URL.to_owned(),
        rate_limit: RateLimitConfig {
            calls: 10,
            window: Duration::from_secs(60),
        },
        followup: FollowupConfig {
            // Tests run passes themselves with `followup_once`, with no wait between attempts.
            interval: Duration::from_secs(3600),
            first_delay: Duration::ZERO,
            cost_give_up_after: Duration::from_secs(6 * 3600),
            quality_give_up_after: Duration::from_secs(3600),
            stale_after: Duration::from_secs(15 * 60),
        },
        quality: Thresholds::default(),
    }
}

/// A response: status, content type and body (JSON when it parses, else the text).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
    pub retry_after: Option<String>,
}

async fn answer(response: reqwest::Response) -> Result<Answer> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let text = response.text().await?;
    Ok(Answer {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text.clone())),
        text,
        retry_after,
    })
}

pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl TestTelephony {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with `adjust` applied to the test configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut TelephonyConfig)) -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let twilio = FakeTwilio::start().await?;
        let tokens = TestTokens::new();
        let mut config = config(&db, &nats, &twilio, &tokens);
        adjust(&mut config);
        let app = TestApp::spawn(sb_telephony::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            twilio,
            tokens,
            config,
        })
    }

    /// The service's state for running the job directly (its own pool).
    pub fn state(&self) -> Result<sb_telephony::AppState> {
        Ok(sb_telephony::state_for_tests(self.config.clone())?)
    }

    pub fn token(&self, user: &User) -> String {
        self.tokens.for_principal(&user.principal())
    }

    pub async fn get(&self, user: &User, path: &str) -> Result<Answer> {
        answer(
            self.app
                .get(path)
                .bearer_auth(self.token(user))
                .send()
                .await?,
        )
        .await
    }

    pub async fn post(&self, user: &User, path: &str, body: &Value) -> Result<Answer> {
        answer(
            self.app
                .post(path)
                .bearer_auth(self.token(user))
                .json(body)
                .send()
                .await?,
        )
        .await
    }

    pub async fn put(&self, user: &User, path: &str, body: &Value) -> Result<Answer> {
        answer(
            self.app
                .client
                .put(self.app.url(path))
                .bearer_auth(self.token(user))
                .json(body)
                .send()
                .await?,
        )
        .await
    }

    pub async fn delete(&self, user: &User, path: &str) -> Result<Answer> {
        answer(
            self.app
                .client
                .delete(self.app.url(path))
                .bearer_auth(self.token(user))
                .send()
                .await?,
        )
        .await
    }

    /// Posts a webhook to `path_and_query` signed like Twilio signs it for the public URL.
    pub async fn webhook(&self, path_and_query: &str, form: &[(String, String)]) -> Result<Answer> {
        let signature = self
            .twilio
            .sign(&format!("{PUBLIC_BASE_URL}{path_and_query}"), form);
        self.webhook_signed(path_and_query, form, Some(&signature))
            .await
    }

    /// Posts a webhook with the given signature header (or none).
    pub async fn webhook_signed(
        &self,
        path_and_query: &str,
        form: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<Answer> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .app
            .post(path_and_query)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("I-Twilio-Idempotency-Token", Uuid::new_v4().to_string())
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        answer(request.send().await?).await
    }

    /// Assigns `e164` to `owner` (the org leader `admin` does it), with `settings` on top of the
    /// defaults.
    pub async fn number(&self, admin: &User, e164: &str, settings: Value) -> Result<Value> {
        let answer = self
            .put(admin, &format!("/api/numbers/{e164}"), &settings)
            .await?;
        assert!(
            answer.status == 200 || answer.status == 201,
            "PUT number: {} {}",
            answer.status,
            answer.text
        );
        Ok(answer.body)
    }

    /// The events the service wrote to its outbox, oldest first: (subject, payload).
    pub async fn events(&self) -> Result<Vec<(String, Vec<u8>)>> {
        use sb_db::schema::outbox;
        let mut conn = self.db.conn().await?;
        Ok(outbox::table
            .filter(outbox::source.eq("telephony"))
            .order(outbox::id.asc())
            .select((outbox::subject, outbox::payload))
            .load(&mut conn)
            .await?)
    }

    /// The events of one subject, decoded.
    pub async fn events_of<E: prost::Message + Default>(&self, subject: &str) -> Result<Vec<E>> {
        let mut decoded = Vec::new();
        for (s, payload) in self.events().await? {
            if s == subject {
                decoded.push(E::decode(payload.as_slice())?);
            }
        }
        Ok(decoded)
    }

    /// How many rows `table` has (to show that refused webhooks wrote nothing).
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

    pub async fn metrics(&self) -> Result<String> {
        Ok(self.app.get("/metrics").send().await?.text().await?)
    }
}

/// A user as a JWT describes them.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub org: Uuid,
    pub role: Role,
    pub teams: Vec<Uuid>,
}

impl User {
    pub fn new(org: Uuid, role: Role) -> Self {
        Self {
            id: Uuid::now_v7(),
            org,
            role,
            teams: Vec::new(),
        }
    }

    pub fn in_team(mut self, team: Uuid) -> Self {
        self.teams.push(team);
        self
    }

    /// The Voice SDK identity of the user (`<Client>`).
    pub fn identity(&self) -> String {
        format!("u_{}", self.id.simple())
    }

    pub fn principal(&self) -> Principal {
        Principal {
            user_id: UserId::from(self.id),
            org_id: OrgId::from(self.org),
            role: self.role,
            teams: self.teams.iter().copied().map(TeamId::from).collect(),
            name: Some(format!("{} user", self.role.as_str())),
        }
    }
}

/// A fresh CallSid.
pub fn call_sid() -> String {
    sb_testkit::twilio_sid("CA")
}

/// The form of Twilio's request to a number's voice URL.
pub fn inbound_form(sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
    params(&[
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", from),
        ("Direction", "inbound"),
        ("From", from),
        ("FromCountry", "FR"),
        ("To", to),
        ("ToCountry", "FR"),
    ])
}
