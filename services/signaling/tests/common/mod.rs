//! The signaling service under test: real Postgres (own database) and NATS (own prefix), users
//! with tokens, appointments in the read model, and a raw Socket.IO websocket client.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_platform::config::{Environment, HttpConfig, NatsConfig};
use sb_signaling::SignalingConfig;
use sb_signaling::config::{IceConfig, SocketConfig};
use sb_testkit::{Result, TestApp, TestDb, TestNats, TestTokens, within};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub type User = sb_testkit::TestUser;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn config(db: &TestDb, nats: &TestNats, tokens: &TestTokens) -> SignalingConfig {
    SignalingConfig {
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
        ice: IceConfig {
            stun_urls: vec!["stun:stun.example.test:3478".to_owned()],
            turn_urls: vec!["turn:turn.example.test:3478?transport=udp".to_owned()],
            turn_secret: Some("signaling-test-turn-secret".to_owned().into()),
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
    }
}

pub struct TestSignaling {
    pub app: TestApp,
    pub db: TestDb,
    pub nats: TestNats,
    pub tokens: TestTokens,
    pub config: SignalingConfig,
}

impl TestSignaling {
    pub async fn spawn() -> Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut SignalingConfig)) -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let tokens = TestTokens::new();
        let mut config = config(&db, &nats, &tokens);
        adjust(&mut config);
        let app = TestApp::spawn(sb_signaling::build(config.clone()).await?);
        Ok(Self {
            app,
            db,
            nats,
            tokens,
            config,
        })
    }

    pub fn token(&self, user: &User) -> String {
        self.tokens.for_principal(&user.principal())
    }

    pub async fn post_empty(&self, user: &User, path: &str) -> Result<(u16, Value)> {
        self.app.post_empty(&self.token(user), path).await
    }

    pub async fn get_json(&self, user: &User, path: &str) -> Result<(u16, Value)> {
        self.app.get_json(&self.token(user), path).await
    }

    /// Inserts a remote appointment of `host` with `guest` into the read model.
    pub async fn appointment(&self, org: Uuid, host: Uuid, guest: Uuid) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let mut conn = self.db.conn().await?;
        upsert_appointment(
            &mut conn,
            &NewAppointment {
                id,
                org_id: org,
                host_user_id: host,
                guest_user_id: Some(guest),
                setter_user_id: None,
                team_id: None,
                lead: serde_json::json!({"name": "John Doe"}),
                scheduled_at: now,
                ends_at: Some(now + chrono::Duration::minutes(30)),
                kind: sb_db::models::AppointmentKind::Remote,
                status: sb_db::models::AppointmentStatus::Scheduled,
                version: 1,
            },
        )
        .await?;
        Ok(id)
    }

    /// A room for a new appointment between `host` and `guest`; returns its roomId.
    pub async fn room(&self, host: &User, guest: &User) -> Result<String> {
        let appointment = self.appointment(host.org, host.id, guest.id).await?;
        let (status, body) = self
            .post_empty(
                host,
                &format!("/video-call/room/appointment/{appointment}/create"),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
        Ok(body["roomId"].as_str().ok_or("no roomId")?.to_owned())
    }

    /// A websocket Socket.IO client connected to `/video-call` as `user`.
    pub async fn socket(&self, user: &User) -> Result<RawSocket> {
        self.socket_at(&self.app, user).await
    }

    /// Like [`Self::socket`], connected to another instance `app` of the service.
    pub async fn socket_at(&self, app: &TestApp, user: &User) -> Result<RawSocket> {
        let mut socket = Self::raw_socket_at(app).await?;
        socket
            .send(&format!(
                "40/video-call,{}",
                serde_json::json!({"token": self.token(user)})
            ))
            .await?;
        let connect = socket.recv().await?;
        if !connect.starts_with("40/video-call,{\"sid\"") {
            return Err(format!("CONNECT refused: {connect}").into());
        }
        Ok(socket)
    }

    /// A websocket Engine.IO session, not yet in any namespace.
    pub async fn raw_socket(&self) -> Result<RawSocket> {
        Self::raw_socket_at(&self.app).await
    }

    async fn raw_socket_at(app: &TestApp) -> Result<RawSocket> {
        let url = app
            .url("/socket.io/?EIO=4&transport=websocket")
            .replacen("http", "ws", 1);
        let (stream, _) = within(
            WAIT,
            "websocket connect",
            tokio_tungstenite::connect_async(url),
        )
        .await??;
        let mut socket = RawSocket { stream };
        let open = socket.recv().await?;
        if !open.starts_with('0') {
            return Err(format!("not an OPEN packet: {open}").into());
        }
        Ok(socket)
    }
}

pub struct RawSocket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawSocket {
    pub async fn send(&mut self, text: &str) -> Result {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn emit(&mut self, event: &str, payload: Value) -> Result {
        self.send(&format!(
            "42/video-call,{}",
            serde_json::json!([event, payload])
        ))
        .await
    }

    /// The next text frame; pings are answered and skipped.
    pub async fn recv(&mut self) -> Result<String> {
        loop {
            match within(WAIT, "a websocket frame", self.stream.next()).await? {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => self.send("3").await?,
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("websocket closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The next event: (name, first argument).
    pub async fn event(&mut self) -> Result<(String, Value)> {
        let text = self.recv().await?;
        let body = text
            .strip_prefix("42/video-call,")
            .ok_or_else(|| format!("not an event: {text}"))?;
        let mut items: Vec<Value> = serde_json::from_str(body)?;
        if items.is_empty() {
            return Err("empty event".into());
        }
        let name = items.remove(0).as_str().ok_or("no event name")?.to_owned();
        Ok((name, items.into_iter().next().unwrap_or(Value::Null)))
    }

    /// The next event, which must be `name`.
    pub async fn expect(&mut self, name: &str) -> Result<Value> {
        let (got, payload) = self.event().await?;
        if got != name {
            return Err(format!("expected {name}, got {got}: {payload}").into());
        }
        Ok(payload)
    }

    pub async fn close(mut self) -> Result {
        self.stream.close(None).await?;
        Ok(())
    }
}
