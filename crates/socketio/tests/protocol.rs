//! Protocol tests: a raw Engine.IO / Socket.IO client over websocket and long-polling against a
//! server with a test namespace.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use sb_socketio::{
    Ack, Config, ConnectContext, ConnectError, DisconnectReason, Namespace, Socket, SocketData,
    SocketIo,
};
use sb_testkit::{Result, within};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// `/test`: `auth.token == "good"` connects; `echo` echoes (and acks), `join` joins a room, `say`
/// broadcasts to a room except the sender, `ask` asks the client for an ack and reports it.
#[derive(Clone, Default)]
struct TestNamespace {
    reasons: Arc<Mutex<Vec<&'static str>>>,
}

impl Namespace for TestNamespace {
    fn connect(
        &self,
        ctx: ConnectContext<'_>,
    ) -> BoxFuture<'static, Result<SocketData, ConnectError>> {
        let token = ctx
            .auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| ctx.handshake.query.get("token").cloned());
        Box::pin(async move {
            match token.as_deref() {
                Some("good") => Ok(Arc::new("user-1".to_owned()) as SocketData),
                _ => Err(ConnectError::new("unauthorized")),
            }
        })
    }

    fn event(
        &self,
        socket: Socket,
        event: String,
        args: Vec<Value>,
        ack: Option<Ack>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            match event.as_str() {
                "echo" => {
                    if let Some(ack) = ack {
                        ack.send(&args);
                    } else {
                        socket.emit("echo", &args);
                    }
                }
                "whoami" => {
                    let user = socket.data::<String>().cloned().unwrap_or_default();
                    socket.emit("whoami", &[json!(user)]);
                }
                "join" => {
                    if let Some(room) = args.first().and_then(Value::as_str) {
                        socket.join(room);
                        socket.emit("joined", &[json!(room)]);
                    }
                }
                "say" => {
                    if let (Some(room), Some(text)) =
                        (args.first().and_then(Value::as_str), args.get(1))
                    {
                        socket.broadcast_to(room, "said", std::slice::from_ref(text));
                    }
                }
                "ask" => {
                    // the session's reader waits for this handler: waiting on the client is spawned
                    tokio::spawn(async move {
                        let answer = socket
                            .emit_with_ack("question", &[json!("ready?")], WAIT)
                            .await;
                        let answer = answer.map_or_else(|e| json!(e.to_string()), |a| json!(a));
                        socket.emit("answer", &[answer]);
                    });
                }
                _ => {}
            }
        })
    }

    fn disconnect(&self, _socket: Socket, reason: DisconnectReason) -> BoxFuture<'static, ()> {
        let reasons = self.reasons.clone();
        Box::pin(async move {
            reasons.lock().map(|mut r| r.push(reason.as_str())).ok();
        })
    }
}

struct Server {
    port: u16,
    io: SocketIo,
    ns: TestNamespace,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    async fn start(config: Config) -> Result<Self> {
        Self::start_with(config, |_| async { Ok(()) }).await
    }

    async fn start_with<F, Fut>(config: Config, before: F) -> Result<Self>
    where
        F: FnOnce(SocketIo) -> Fut,
        Fut: std::future::Future<Output = Result>,
    {
        sb_testkit::init();
        let ns = TestNamespace::default();
        let io = SocketIo::builder(config)
            .namespace("/test", ns.clone())
            .build();
        before(io.clone()).await?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let app_io = io.clone();
        let server = actix_web::HttpServer::new(move || {
            let io = app_io.clone();
            actix_web::App::new().configure(move |cfg| io.configure(cfg))
        })
        .workers(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            port,
            io,
            ns,
            handle,
        })
    }

    fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/socket.io/?{query}", self.port)
    }

    async fn ws(&self, query: &str) -> Result<Ws> {
        let url = format!("ws://127.0.0.1:{}/socket.io/?{query}", self.port);
        let (stream, _) = within(
            WAIT,
            "websocket connect",
            tokio_tungstenite::connect_async(url),
        )
        .await??;
        Ok(Ws { stream })
    }

    /// A websocket session connected to `/test`.
    async fn connected(&self) -> Result<Ws> {
        let mut ws = self.ws("EIO=4&transport=websocket").await?;
        let open = ws.recv().await?;
        assert!(open.starts_with("0{"), "{open}");
        ws.send("40/test,{\"token\":\"good\"}").await?;
        let connect = ws.recv().await?;
        assert!(connect.starts_with("40/test,{\"sid\":"), "{connect}");
        Ok(ws)
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.ns
            .reasons
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    async fn send(&mut self, text: &str) -> Result {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    async fn send_binary(&mut self, bytes: &[u8]) -> Result {
        self.stream.send(Message::binary(bytes.to_vec())).await?;
        Ok(())
    }

    /// The next text frame; heartbeat pings are answered and skipped.
    async fn recv(&mut self) -> Result<String> {
        loop {
            let message = within(WAIT, "a websocket frame", self.stream.next()).await?;
            match message {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => self.send("3").await?,
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("websocket closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Waits for the server to close the connection, returning the text frames it sent before.
    async fn closed(&mut self) -> Result<Vec<String>> {
        let mut seen = Vec::new();
        loop {
            match within(WAIT, "the websocket to close", self.stream.next()).await? {
                Some(Ok(Message::Text(text))) => seen.push(text.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(seen),
                Some(Ok(_)) => {}
            }
        }
    }
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// The `sid` of an OPEN packet.
fn sid_of(open: &str) -> Result<String> {
    let body: Value = serde_json::from_str(open.strip_prefix('0').ok_or("not an OPEN packet")?)?;
    Ok(body["sid"].as_str().ok_or("no sid")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_announces_heartbeats_and_upgrade() -> Result {
    let server = Server::start(Config::default()).await?;
    let open = client()?
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await?
        .text()
        .await?;
    let body: Value = serde_json::from_str(open.strip_prefix('0').ok_or("not OPEN")?)?;
    assert_eq!(body["upgrades"], json!(["websocket"]));
    assert_eq!(body["pingInterval"], json!(25000));
    assert_eq!(body["pingTimeout"], json!(20000));
    assert_eq!(body["maxPayload"], json!(1_000_000));
    assert_eq!(server.io.session_count(), 1);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_get_engine_error_codes() -> Result {
    let server = Server::start(Config::default()).await?;
    let http = client()?;
    for (query, code) in [
        ("EIO=3&transport=polling", 5),
        ("transport=polling", 5),
        ("EIO=4&transport=carrier-pigeon", 0),
        ("EIO=4&transport=polling&sid=nope", 1),
    ] {
        let response = http.get(server.url(query)).send().await?;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await?;
        assert_eq!(body["code"], json!(code), "{query}");
    }
    let response = http
        .post(server.url("EIO=4&transport=polling&sid=nope"))
        .body("40")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert!(
        server
            .ws("EIO=4&transport=websocket&sid=nope")
            .await
            .is_err()
    );
    let response = http
        .get(server.url("EIO=4&transport=polling"))
        .header("Origin", "https://evil.example")
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connect_events_and_acks() -> Result {
    let server = Server::start(Config::default()).await?;
    let mut ws = server.connected().await?;
    ws.send("42/test,[\"whoami\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"whoami\",\"user-1\"]");
    ws.send("42/test,[\"echo\",{\"a\":1},\"é\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"echo\",{\"a\":1},\"é\"]");
    ws.send("42/test,17[\"echo\",\"x\",2]").await?;
    assert_eq!(ws.recv().await?, "43/test,17[\"x\",2]");
    // the server asks, the client acknowledges
    ws.send("42/test,[\"ask\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,0[\"question\",\"ready?\"]");
    ws.send("43/test,0[\"yes\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"answer\",[\"yes\"]]");
    // namespace disconnect from the client
    ws.send("41/test,").await?;
    sb_testkit::wait_until(WAIT, "the disconnect hook", || {
        let reasons = server.reasons();
        async move { reasons == ["client namespace disconnect"] }
    })
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_get_connect_error() -> Result {
    let server = Server::start(Config::default()).await?;
    let mut ws = server.ws("EIO=4&transport=websocket").await?;
    ws.recv().await?;
    ws.send("40/nope,").await?;
    assert_eq!(
        ws.recv().await?,
        "44/nope,{\"message\":\"Invalid namespace\"}"
    );
    ws.send("40/test,{\"token\":\"bad\"}").await?;
    assert_eq!(ws.recv().await?, "44/test,{\"message\":\"unauthorized\"}");
    ws.send("40/test,").await?;
    assert_eq!(ws.recv().await?, "44/test,{\"message\":\"unauthorized\"}");
    // events before a successful CONNECT reach nobody
    ws.send("42/test,[\"echo\",1]").await?;
    // the `token` query parameter works for clients that cannot send `auth`
    let mut old = server.ws("EIO=4&transport=websocket&token=good").await?;
    old.recv().await?;
    old.send("40/test,").await?;
    assert!(old.recv().await?.starts_with("40/test,{\"sid\""));
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_the_room_except_the_sender() -> Result {
    let server = Server::start(Config::default()).await?;
    let mut a = server.connected().await?;
    let mut b = server.connected().await?;
    let mut c = server.connected().await?;
    let mut outsider = server.connected().await?;
    for ws in [&mut a, &mut b, &mut c] {
        ws.send("42/test,[\"join\",\"r1\"]").await?;
        assert_eq!(ws.recv().await?, "42/test,[\"joined\",\"r1\"]");
    }
    a.send("42/test,[\"say\",\"r1\",{\"hi\":true}]").await?;
    assert_eq!(b.recv().await?, "42/test,[\"said\",{\"hi\":true}]");
    assert_eq!(c.recv().await?, "42/test,[\"said\",{\"hi\":true}]");
    // the sender and the outsider got nothing: their next packet is the echo they ask for
    for ws in [&mut a, &mut outsider] {
        ws.send("42/test,[\"echo\",\"next\"]").await?;
        assert_eq!(ws.recv().await?, "42/test,[\"echo\",\"next\"]");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_then_upgrade_to_websocket() -> Result {
    let server = Server::start(Config::default()).await?;
    let http = client()?;
    let open = http
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await?
        .text()
        .await?;
    let sid = sid_of(&open)?;
    let poll_url = server.url(&format!("EIO=4&transport=polling&sid={sid}"));
    let ok = http
        .post(&poll_url)
        .body("40/test,{\"token\":\"good\"}")
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(ok, "ok");
    let connect = http.get(&poll_url).send().await?.text().await?;
    assert!(connect.starts_with("40/test,{\"sid\""), "{connect}");
    // two packets in one POST, both answers in one GET
    http.post(&poll_url)
        .body("42/test,[\"echo\",1]\u{1e}42/test,[\"echo\",2]")
        .send()
        .await?;
    let mut answers = String::new();
    while answers.matches("echo").count() < 2 {
        let body = http.get(&poll_url).send().await?.text().await?;
        if !answers.is_empty() {
            answers.push('\u{1e}');
        }
        answers.push_str(&body);
    }
    assert_eq!(answers, "42/test,[\"echo\",1]\u{1e}42/test,[\"echo\",2]");

    // a pending long-poll while the client probes the websocket
    let pending = tokio::spawn({
        let http = http.clone();
        let poll_url = poll_url.clone();
        async move { http.get(&poll_url).send().await?.text().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = server
        .ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await?;
    ws.send("2probe").await?;
    assert_eq!(ws.recv().await?, "3probe");
    let released = within(WAIT, "the pending poll", pending).await???;
    assert_eq!(released, "6");
    ws.send("5").await?;
    ws.send("42/test,[\"echo\",\"over ws\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"echo\",\"over ws\"]");
    // polling is over for this session
    assert_eq!(http.get(&poll_url).send().await?.status(), 400);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_live_clients_and_drops_silent_ones() -> Result {
    let config = Config {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(1000),
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let mut ws = server.ws("EIO=4&transport=websocket").await?;
    let open = ws.recv().await?;
    assert!(open.contains("\"pingInterval\":200"), "{open}");
    ws.send("40/test,{\"token\":\"good\"}").await?;
    ws.recv().await?;
    // `recv` answers pings: after several intervals the socket still works
    tokio::time::sleep(Duration::from_millis(700)).await;
    ws.send("42/test,[\"echo\",\"alive\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"echo\",\"alive\"]");
    // now stay silent: the server closes the session
    let frames = ws.closed().await?;
    assert!(frames.iter().all(|f| f == "2"), "{frames:?}");
    sb_testkit::wait_until(WAIT, "the disconnect hook", || {
        let reasons = server.reasons();
        async move { reasons == ["ping timeout"] }
    })
    .await?;
    assert_eq!(server.io.session_count(), 0);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_close_the_session() -> Result {
    let config = Config {
        max_payload: 1000,
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let mut ws = server.connected().await?;
    let big = format!("42/test,[\"echo\",\"{}\"]", "x".repeat(2000));
    ws.send(&big).await?;
    ws.closed().await?;
    sb_testkit::wait_until(WAIT, "the disconnect hook", || {
        let reasons = server.reasons();
        async move { reasons == ["transport error"] }
    })
    .await?;

    let http = client()?;
    let open = http
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await?
        .text()
        .await?;
    let poll_url = server.url(&format!("EIO=4&transport=polling&sid={}", sid_of(&open)?));
    let response = http.post(&poll_url).body(big).send().await?;
    assert_eq!(response.status(), 413);
    assert_eq!(http.get(&poll_url).send().await?.status(), 400);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_packets_get_an_error_event_and_the_socket_stays() -> Result {
    let server = Server::start(Config::default()).await?;
    let mut ws = server.connected().await?;
    ws.send("42/test,[\"echo\",").await?;
    let error = ws.recv().await?;
    assert!(
        error.starts_with("42/test,[\"error\",{\"message\":\"invalid packet: invalid JSON"),
        "{error}"
    );
    ws.send("42/test,{\"not\":\"an array\"}").await?;
    assert_eq!(
        ws.recv().await?,
        "42/test,[\"error\",{\"message\":\"invalid packet: invalid payload for this packet type\"}]"
    );
    ws.send("42/test,[\"echo\",\"still here\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"echo\",\"still here\"]");
    server.stop().await;
    Ok(())
}

/// Binary packets (one answer for the packet, its attachments skipped), lone binary frames and
/// unknown packet types are answered on the socket instead of being dropped; it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_unknown_packets_get_an_error_event_and_the_socket_stays() -> Result {
    let server = Server::start(Config::default()).await?;
    let mut ws = server.connected().await?;
    let binary = "42/test,[\"error\",{\"message\":\"binary packets are not supported\"}]";
    ws.send(
        "452-/test,[\"echo\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
    )
    .await?;
    ws.send_binary(&[1]).await?;
    ws.send_binary(&[2]).await?;
    assert_eq!(ws.recv().await?, binary);
    ws.send_binary(&[3]).await?;
    assert_eq!(ws.recv().await?, binary);
    ws.send("48/test,[\"echo\"]").await?;
    assert_eq!(
        ws.recv().await?,
        "42/test,[\"error\",{\"message\":\"unknown packet type\"}]"
    );
    // a packet naming no namespace the session joined is answered on the one it did join
    ws.send("49").await?;
    assert_eq!(
        ws.recv().await?,
        "42/test,[\"error\",{\"message\":\"unknown packet type\"}]"
    );
    ws.send("42/test,[\"echo\",\"still here\"]").await?;
    assert_eq!(ws.recv().await?, "42/test,[\"echo\",\"still here\"]");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_budget_is_told_and_disconnected() -> Result {
    let config = Config {
        events_per_second: 5,
        event_burst: 5,
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let mut flooder = server.connected().await?;
    let mut other = server.connected().await?;
    for i in 0..20 {
        flooder.send(&format!("42/test,[\"echo\",{i}]")).await?;
    }
    let frames = flooder.closed().await?;
    let echoes = frames.iter().filter(|f| f.contains("\"echo\"")).count();
    assert!((5..20).contains(&echoes), "{frames:?}");
    let tail: Vec<&str> = frames
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "42/test,[\"error\",{\"message\":\"rate limit exceeded\"}]",
            "41/test,"
        ]
    );
    // the disconnect hook runs after the frames are written: the client can see them first
    sb_testkit::wait_until(WAIT, "the disconnect hook", || {
        let reasons = server.reasons();
        async move { reasons.contains(&"rate limited") }
    })
    .await?;
    // the other socket is untouched
    other.send("42/test,[\"echo\",\"fine\"]").await?;
    assert_eq!(other.recv().await?, "42/test,[\"echo\",\"fine\"]");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_adapter_relays_broadcasts_between_instances() -> Result {
    let nats = sb_testkit::TestNats::new().await?;
    let subject = nats.subject("socketio.test");
    let url = sb_testkit::nats_url();
    let attach = |io: SocketIo| {
        let subject = subject.clone();
        let url = url.clone();
        async move {
            // each instance has its own connection, as in production
            let client = async_nats::connect(url).await?;
            io.attach_nats(client, subject).await?;
            Ok(())
        }
    };
    let one = Server::start_with(Config::default(), attach).await?;
    let two = Server::start_with(Config::default(), attach).await?;
    let mut a = one.connected().await?;
    let mut b = two.connected().await?;
    for ws in [&mut a, &mut b] {
        ws.send("42/test,[\"join\",\"r\"]").await?;
        ws.recv().await?;
    }
    a.send("42/test,[\"say\",\"r\",\"from one\"]").await?;
    assert_eq!(b.recv().await?, "42/test,[\"said\",\"from one\"]");
    b.send("42/test,[\"say\",\"r\",\"from two\"]").await?;
    assert_eq!(a.recv().await?, "42/test,[\"said\",\"from two\"]");
    // the sender is still excepted across the cluster
    a.send("42/test,[\"echo\",\"next\"]").await?;
    assert_eq!(a.recv().await?, "42/test,[\"echo\",\"next\"]");
    one.stop().await;
    two.stop().await;
    Ok(())
}
