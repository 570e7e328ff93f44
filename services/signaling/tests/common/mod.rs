//! The signaling service as `sb_testkit::TestService` runs it (its test configuration and
//! build), rooms for appointments, and a raw Socket.IO websocket client.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a part of the harness"
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sb_signaling::SignalingConfig;
use sb_signaling::config::{GuestLinkConfig, IceConfig, SocketConfig};
use sb_testkit::{Deps, Result, Service, TestApp, TestAppointment, within};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub use sb_testkit::TestUser as User;

pub const WAIT: Duration = Duration::from_secs(10);

/// The guest-link key of the service under test.
pub const GUEST_LINK_SECRET: &str = "signaling-test-guest-link-secret-0123456789";

pub type TestSignaling = sb_testkit::TestService<Signaling>;

pub struct Signaling;

impl Service for Signaling {
    type Config = SignalingConfig;
    type State = ();

    fn config(deps: &Deps<'_>) -> SignalingConfig {
        sb_testkit::service_config!(
            deps,
            SignalingConfig {
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
                guest_links: GuestLinkConfig {
                    secret: Some(GUEST_LINK_SECRET.to_owned().into()),
                    open_before: Duration::from_secs(30 * 60),
                    close_after: Duration::from_secs(2 * 3600),
                },
            }
        )
    }

    fn name(_: &SignalingConfig) -> &str {
        sb_signaling::SERVICE
    }

    async fn build(config: SignalingConfig) -> Result<sb_platform::Application> {
        Ok(sb_signaling::build(config).await?)
    }

    async fn state(_: SignalingConfig) -> Result<()> {
        Ok(())
    }
}

/// A remote appointment of `host` with `guest`, for the lead John Doe.
pub fn visit(host: &User, guest: &User) -> TestAppointment {
    TestAppointment::new(host.org, host.id)
        .with_guest(guest.id)
        .with_lead(serde_json::json!({"name": "John Doe"}))
}

/// Rooms and sockets of the signaling service under test.
pub trait Rooms {
    /// A room for a new appointment between `host` and `guest`; returns its roomId.
    async fn room(&self, host: &User, guest: &User) -> Result<String>;
    /// A websocket Socket.IO client connected to `/video-call` as `user`.
    async fn socket(&self, user: &User) -> Result<RawSocket>;
    /// Like [`Rooms::socket`], connected to another instance `app` of the service.
    async fn socket_at(&self, app: &TestApp, user: &User) -> Result<RawSocket>;
    /// A websocket Engine.IO session, not yet in any namespace.
    async fn raw_socket(&self) -> Result<RawSocket>;
    /// A websocket Socket.IO client connected to `/video-call` with `token` (a guest link).
    async fn socket_with(&self, app: &TestApp, token: &str) -> Result<RawSocket>;
}

impl Rooms for TestSignaling {
    async fn room(&self, host: &User, guest: &User) -> Result<String> {
        let appointment = self.appointment(&visit(host, guest)).await?;
        let (status, body) = self
            .post_empty(
                host,
                &format!("/video-call/room/appointment/{appointment}/create"),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
        Ok(body["roomId"].as_str().ok_or("no roomId")?.to_owned())
    }

    async fn socket(&self, user: &User) -> Result<RawSocket> {
        self.socket_at(&self.app, user).await
    }

    async fn socket_at(&self, app: &TestApp, user: &User) -> Result<RawSocket> {
        self.socket_with(app, &self.token(user)).await
    }

    async fn socket_with(&self, app: &TestApp, token: &str) -> Result<RawSocket> {
        let mut socket = RawSocket::open(app).await?;
        socket
            .send(&format!(
                "40/video-call,{}",
                serde_json::json!({"token": token})
            ))
            .await?;
        let connect = socket.recv().await?;
        if !connect.starts_with("40/video-call,{\"sid\"") {
            return Err(format!("CONNECT refused: {connect}").into());
        }
        Ok(socket)
    }

    async fn raw_socket(&self) -> Result<RawSocket> {
        RawSocket::open(&self.app).await
    }
}

pub struct RawSocket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawSocket {
    async fn open(app: &TestApp) -> Result<Self> {
        let url = app
            .url("/socket.io/?EIO=4&transport=websocket")
            .replacen("http", "ws", 1);
        let (stream, _) = within(
            WAIT,
            "websocket connect",
            tokio_tungstenite::connect_async(url),
        )
        .await??;
        let mut socket = Self { stream };
        let open = socket.recv().await?;
        if !open.starts_with('0') {
            return Err(format!("not an OPEN packet: {open}").into());
        }
        Ok(socket)
    }

    pub async fn send(&mut self, text: &str) -> Result {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    /// A binary websocket frame (what a Socket.IO binary packet's attachments travel as).
    pub async fn send_binary(&mut self, bytes: &[u8]) -> Result {
        self.stream.send(Message::binary(bytes.to_vec())).await?;
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
