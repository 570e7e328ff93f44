//! One service under test, in the manner of zero2prod's `TestApp`: started on port 0 over its
//! own database, NATS prefix and fake providers, with requests sent as a given user.
//!
//! A service's tests describe only what is theirs (an implementation of [`Service`]: its
//! configuration over these dependencies, how it is built); everything else is here.

use std::future::Future;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::Method;
use sb_platform::Application;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Answer, FakeLiveKit, FakeTwilio, Result, TestApp, TestAppointment, TestDb, TestNats,
    TestTokens, TestUser,
};

/// What a service's tests say about it; the rest of [`TestService`] is the same for all.
pub trait Service {
    /// What it is built from: its `Config`, or the environment its `main` reads.
    type Config: Clone + Send + 'static;
    /// What tests run actions and jobs on directly (`()` where there is none).
    type State;
    /// The test configuration over this test's own dependencies.
    fn config(deps: &Deps<'_>) -> Self::Config;
    /// Its name: the outbox `source` of its events.
    fn name(config: &Self::Config) -> &str;
    fn build(config: Self::Config) -> impl Future<Output = Result<Application>>;
    fn state(config: Self::Config) -> impl Future<Output = Result<Self::State>>;
}

/// The dependencies a test configuration points at.
pub struct Deps<'a> {
    pub db: &'a TestDb,
    pub nats: &'a TestNats,
    pub livekit: &'a FakeLiveKit,
    pub twilio: &'a FakeTwilio,
    pub tokens: &'a TestTokens,
}

/// A running service `S` and everything it was started over. Both fakes run for every service
/// (one idle worker each), so a test reaches either without asking.
pub struct TestService<S: Service> {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub livekit: FakeLiveKit,
    pub twilio: FakeTwilio,
    pub tokens: TestTokens,
    pub config: S::Config,
}

impl<S: Service> TestService<S> {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with `adjust` applied to its test configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut S::Config)) -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let livekit = FakeLiveKit::start().await?;
        let twilio = FakeTwilio::start().await?;
        let tokens = TestTokens::new();
        let mut config = S::config(&Deps {
            db: &db,
            nats: &nats,
            livekit: &livekit,
            twilio: &twilio,
            tokens: &tokens,
        });
        adjust(&mut config);
        let app = TestApp::spawn(S::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            livekit,
            twilio,
            tokens,
            config,
        })
    }

    /// Stops the service and starts it again over the same database, NATS prefix and fakes.
    pub async fn restart(self) -> Result<Self> {
        let Self {
            app,
            db,
            nats,
            livekit,
            twilio,
            tokens,
            config,
        } = self;
        app.stop().await?;
        let app = TestApp::spawn(S::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            livekit,
            twilio,
            tokens,
            config,
        })
    }

    /// The service's state for calling actions and jobs directly (its own pool).
    pub async fn state(&self) -> Result<S::State> {
        S::state(self.config.clone()).await
    }

    pub fn token(&self, user: &TestUser) -> String {
        self.tokens.for_principal(&user.principal())
    }

    /// `method path` as `user`, with `body` as JSON if any.
    pub async fn request(
        &self,
        user: &TestUser,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.app.answer(request, Some(&self.token(user))).await
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> Result<Answer> {
        self.request(user, Method::GET, path, None).await
    }

    pub async fn post(&self, user: &TestUser, path: &str, body: &Value) -> Result<Answer> {
        self.request(user, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, user: &TestUser, path: &str, body: &Value) -> Result<Answer> {
        self.request(user, Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, user: &TestUser, path: &str) -> Result<Answer> {
        self.request(user, Method::DELETE, path, None).await
    }

    /// `method path` (a method name) as `user`: the status and the body.
    pub async fn call(
        &self,
        user: &TestUser,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method = Method::from_bytes(method.as_bytes())?;
        Ok(self
            .request(user, method, path, body.as_ref())
            .await?
            .pair())
    }

    pub async fn post_json(
        &self,
        user: &TestUser,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value)> {
        Ok(self.post(user, path, &body).await?.pair())
    }

    pub async fn post_empty(&self, user: &TestUser, path: &str) -> Result<(u16, Value)> {
        Ok(self.request(user, Method::POST, path, None).await?.pair())
    }

    pub async fn get_json(&self, user: &TestUser, path: &str) -> Result<(u16, Value)> {
        Ok(self.get(user, path).await?.pair())
    }

    /// Posts a webhook body signed like the LiveKit server signs it.
    pub async fn livekit_webhook(&self, body: &Value) -> Result<(u16, Value)> {
        self.app.livekit_webhook(&self.livekit, body).await
    }

    /// Posts a Twilio webhook to `path_and_query`, signed like Twilio signs it for
    /// `public_base_url` (where Twilio believes the service is, never the address the test
    /// connects to).
    pub async fn twilio_webhook(
        &self,
        public_base_url: &str,
        path_and_query: &str,
        form: &[(String, String)],
    ) -> Result<Answer> {
        let signature = self
            .twilio
            .sign(&format!("{public_base_url}{path_and_query}"), form);
        self.app
            .twilio_webhook(path_and_query, form, Some(&signature))
            .await
    }

    /// Inserts `appointment` into the read model, as the CRM projector would; returns its id.
    pub async fn appointment(&self, appointment: &TestAppointment) -> Result<Uuid> {
        appointment.insert(&self.db).await
    }

    /// The events the service wrote to its outbox, oldest first: (subject, payload).
    pub async fn events(&self) -> Result<Vec<(String, Vec<u8>)>> {
        use sb_db::schema::outbox;
        let mut conn = self.db.conn().await?;
        Ok(outbox::table
            .filter(outbox::source.eq(S::name(&self.config)))
            .order(outbox::id.asc())
            .select((outbox::subject, outbox::payload))
            .load(&mut conn)
            .await?)
    }

    /// The subjects of the service's outbox events, oldest first.
    pub async fn event_subjects(&self) -> Result<Vec<String>> {
        Ok(self.events().await?.into_iter().map(|(s, _)| s).collect())
    }

    /// The service's outbox events of one subject, decoded.
    pub async fn events_of<E: prost::Message + Default>(&self, subject: &str) -> Result<Vec<E>> {
        let mut decoded = Vec::new();
        for (s, payload) in self.events().await? {
            if s == subject {
                decoded.push(E::decode(payload.as_slice())?);
            }
        }
        Ok(decoded)
    }

    /// How many rows `table` has (to show that refused requests wrote nothing).
    pub async fn count(&self, table: &str) -> Result<i64> {
        self.db.count(table).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        self.app.metrics().await
    }
}

/// A service's `Config` literal with the fields every service has filled in for `deps`
/// (production environment, port 0, this test's database, NATS prefix and token secret),
/// followed by the service's own fields.
#[macro_export]
macro_rules! service_config {
    ($deps:expr, $config:ident { $($own:tt)* }) => {{
        let deps: &$crate::Deps<'_> = $deps;
        $config {
            environment: $crate::__private::Environment::Production,
            http: $crate::__private::HttpConfig::ephemeral(),
            database: deps.db.config(),
            nats: $crate::nats_config(),
            namespace: deps.nats.namespace(),
            streams: $crate::__private::StreamSettings::default(),
            auth: deps.tokens.auth_config(),
            $($own)*
        }
    }};
}
