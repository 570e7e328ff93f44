//! Relay benchmark (not a test): N pairs of websocket clients exchange `webrtc-signal` messages
//! through this server and through a reference Node `socket.io` 4.8 server doing the same relay
//! (interop/socketio/reference-server.mjs), then 10,000 idle sockets are connected to each and
//! the servers' resident memory is read. Both servers run as child processes.
//!
//! `cargo run --release -p sb-socketio --example bench -- [pairs] [window] [seconds] [idle]`

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use sb_socketio::{
    Ack, Config, ConnectContext, ConnectError, Namespace, Socket, SocketData, SocketIo,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The same relay as the reference server.
struct Relay;

impl Namespace for Relay {
    fn connect(
        &self,
        _ctx: ConnectContext<'_>,
    ) -> BoxFuture<'static, Result<SocketData, ConnectError>> {
        Box::pin(async { Ok(Arc::new(()) as SocketData) })
    }

    fn event(
        &self,
        socket: Socket,
        event: String,
        args: Vec<Value>,
        _ack: Option<Ack>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Some(data) = args.into_iter().next() else {
                return;
            };
            let Some(room) = data.get("roomId").and_then(Value::as_str) else {
                return;
            };
            match event.as_str() {
                "join-room" => {
                    socket.join(room);
                    socket.emit("joined-room", &[json!({"roomId": room})]);
                }
                "webrtc-signal" => {
                    let out = json!({"roomId": room, "userId": socket.id(), "signal": data.get("signal")});
                    socket.broadcast_to(room, "webrtc-signal", &[out]);
                }
                _ => {}
            }
        })
    }
}

fn serve(port: u16) -> std::io::Result<()> {
    let config = Config {
        max_payload: 64 * 1024,
        // the benchmark measures the relay, not the limiter
        events_per_second: 1_000_000,
        event_burst: 1_000_000,
        ..Config::default()
    };
    let io = SocketIo::builder(config)
        .namespace("/video-call", Relay)
        .build();
    actix_web::rt::System::new().block_on(async move {
        let server = actix_web::HttpServer::new(move || {
            let io = io.clone();
            actix_web::App::new().configure(move |cfg| io.configure(cfg))
        })
        // BENCH_WORKERS: actix workers of the Rust server (default 2, one per core here)
        .workers(
            std::env::var("BENCH_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(2),
        )
        .backlog(4096)
        .bind(("127.0.0.1", port))?
        .run();
        println!("listening");
        server.await
    })
}

struct Child {
    child: tokio::process::Child,
    port: u16,
}

impl Child {
    async fn start(mut command: tokio::process::Command, port: u16) -> Result<Self, Error> {
        let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await??;
        if line.as_deref() != Some("listening") {
            return Err(format!("server said {line:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Self { child, port })
    }

    fn rss_mb(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> Result<String, Error> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(Message::text("3")).await?,
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("closed".into()),
        }
    }
}

/// A websocket client connected to `/video-call`, in `room` when given.
async fn client(port: u16, room: Option<&str>) -> Result<Ws, Error> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    next_text(&mut ws).await?;
    ws.send(Message::text("40/video-call,")).await?;
    let connect = next_text(&mut ws).await?;
    if !connect.starts_with("40/video-call,") {
        return Err(format!("refused: {connect}").into());
    }
    if let Some(room) = room {
        ws.send(Message::text(format!(
            "42/video-call,[\"join-room\",{{\"roomId\":\"{room}\"}}]"
        )))
        .await?;
        let joined = next_text(&mut ws).await?;
        if !joined.contains("joined-room") {
            return Err(format!("not joined: {joined}").into());
        }
    }
    Ok(ws)
}

fn signal(room: &str, epoch: Instant) -> String {
    let t = epoch.elapsed().as_nanos();
    format!(
        "42/video-call,[\"webrtc-signal\",{{\"roomId\":\"{room}\",\"signal\":{{\"type\":\"candidate\",\"candidate\":\"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host\",\"sdpMid\":\"0\",\"t\":{t}}}}}]"
    )
}

fn sent_at(text: &str) -> Option<u128> {
    let start = text.find("\"t\":")? + 4;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One client of a pair: keeps `window` signals in flight, sends one more per signal received,
/// records one-way latencies (both ends share the clock: one process).
async fn run_client(
    mut ws: Ws,
    room: String,
    window: usize,
    epoch: Instant,
    until: Instant,
) -> Result<Vec<u32>, Error> {
    for _ in 0..window {
        ws.send(Message::text(signal(&room, epoch))).await?;
    }
    let mut latencies = Vec::new();
    let stop = tokio::time::Instant::from_std(until + Duration::from_millis(500));
    loop {
        let text = tokio::select! {
            text = next_text(&mut ws) => text?,
            () = tokio::time::sleep_until(stop) => break,
        };
        if let Some(t) = sent_at(&text) {
            let now = epoch.elapsed().as_nanos();
            if Instant::now() < until {
                latencies.push(u32::try_from((now.saturating_sub(t)) / 1000).unwrap_or(u32::MAX));
                ws.send(Message::text(signal(&room, epoch))).await?;
            }
        }
    }
    Ok(latencies)
}

struct Figures {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn relay_load(
    port: u16,
    pairs: usize,
    window: usize,
    seconds: u64,
) -> Result<Figures, Error> {
    let epoch = Instant::now();
    let mut clients = Vec::new();
    for pair in 0..pairs {
        let room = format!("room_bench_{pair}");
        let a = client(port, Some(&room)).await?;
        let b = client(port, Some(&room)).await?;
        clients.push((a, room.clone()));
        clients.push((b, room));
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(ws, room)| tokio::spawn(run_client(ws, room, window, epoch, until)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(idx).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok(Figures {
        msgs_per_s: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

async fn idle_memory(server: &Child, count: usize) -> Result<(f64, f64), Error> {
    let before = server.rss_mb();
    let mut sockets = Vec::with_capacity(count);
    let mut pending = futures_util::stream::iter((0..count).map(|_| client(server.port, None)))
        .buffer_unordered(100);
    while let Some(ws) = pending.next().await {
        sockets.push(ws?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_mb();
    drop(sockets);
    Ok((before, after))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let port = args
            .get(2)
            .and_then(|p| p.parse().ok())
            .ok_or("serve <port>")?;
        return Ok(serve(port)?);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

async fn bench(args: Vec<String>) -> Result<(), Error> {
    let arg = |i: usize, default: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (pairs, window, seconds, idle) = (
        arg(1, 50) as usize,
        arg(2, 4) as usize,
        arg(3, 10),
        arg(4, 10_000) as usize,
    );
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/socketio");

    let rust_port = free_port()?;
    let mut rust_cmd = tokio::process::Command::new(std::env::current_exe()?);
    rust_cmd.args(["serve", &rust_port.to_string()]);
    let node_port = free_port()?;
    let mut node_cmd = tokio::process::Command::new("node");
    node_cmd
        .arg("reference-server.mjs")
        .arg(node_port.to_string())
        .current_dir(&interop);

    println!(
        "relay: {pairs} pairs, {window} signals in flight per client, {seconds} s; idle: {idle} sockets"
    );
    println!(
        "{:<24} {:>12} {:>9} {:>9} {:>14} {:>14}",
        "server", "signals/s", "p50 ms", "p99 ms", "idle RSS MB", "base RSS MB"
    );
    for (name, command, port) in [
        ("sb-socketio (Rust)", rust_cmd, rust_port),
        ("socket.io 4.8.1 (Node)", node_cmd, node_port),
    ] {
        let server = Child::start(command, port).await?;
        let figures = relay_load(port, pairs, window, seconds).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (base, loaded) = idle_memory(&server, idle).await?;
        println!(
            "{name:<24} {:>12.0} {:>9.2} {:>9.2} {:>14.1} {:>14.1}",
            figures.msgs_per_s, figures.p50_ms, figures.p99_ms, loaded, base
        );
    }
    Ok(())
}
