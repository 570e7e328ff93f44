//! Relay benchmark (not a test): N pairs of websocket clients exchange `webrtc-signal` messages
//! through this server and through a reference Node `socket.io` 4.8 server doing the same relay
//! (interop/socketio/reference-server.mjs), then 10,000 idle sockets are connected to each and
//! the servers' resident memory is read. Both servers run as child processes.
//!
//! `cargo run --release -p sb-socketio --example bench -- [pairs] [window] [seconds] [idle]
//! [--runs N] [--json] [--flush-each]`
//!
//! The relay phase runs `--runs` times per server (default 1) and the medians are printed. Beside
//! the rates it prints the CPU-seconds (user + system, from /proc) the server and the load
//! generator each spent per 100,000 relayed signals: when the generator uses most of the machine,
//! it is what caps the figure. `--json` adds one `BENCH_JSON {...}` line for the harness.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use sb_socketio::{
    Ack, Config, ConnectContext, ConnectError, Namespace, Socket, SocketData, SocketIo,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// As `sb_platform::Allocator`, which every service binary installs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            let Some(Value::Object(mut data)) = args.into_iter().next() else {
                return;
            };
            let Some(Value::String(room)) = data.remove("roomId") else {
                return;
            };
            match event.as_str() {
                "join-room" => {
                    socket.join(&room);
                    socket.emit("joined-room", &[json!({"roomId": room})]);
                }
                "webrtc-signal" => {
                    // the signal moves into the answer, as the reference passes it by reference
                    let signal = data.remove("signal").unwrap_or(Value::Null);
                    let out = json!({"roomId": room, "userId": socket.id(), "signal": signal});
                    socket.broadcast_to(&room, "webrtc-signal", &[out]);
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

    fn cpu_seconds(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| cpu_seconds(&pid.to_string()))
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

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU time of a process (all its threads), in seconds; `pid` may be `self`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the command name may hold spaces: fields are counted after its closing parenthesis
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 and 15 of proc(5); `rest` starts at field 3
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(user), Some(system)) => (user + system) / clock_ticks(),
        _ => 0.0,
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
/// records one-way latencies (both ends share the clock: one process). It reads every frame
/// already received before it writes its answers in one flush (one write instead of one per
/// frame) unless `flush_each`; both servers get exactly the same client.
async fn run_client(
    mut ws: Ws,
    room: String,
    window: usize,
    epoch: Instant,
    until: Instant,
    flush_each: bool,
) -> Result<Vec<u32>, Error> {
    for _ in 0..window {
        ws.feed(Message::text(signal(&room, epoch))).await?;
    }
    ws.flush().await?;
    let mut latencies = Vec::new();
    let stop = tokio::time::Instant::from_std(until + Duration::from_millis(500));
    loop {
        let first = tokio::select! {
            message = ws.next() => message,
            () = tokio::time::sleep_until(stop) => break,
        };
        let mut message = Some(first);
        let mut queued = 0;
        while let Some(received) = message {
            let reply = match received {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => Some(Message::text("3")),
                Some(Ok(Message::Text(t))) => sent_at(t.as_str()).and_then(|t| {
                    let now = epoch.elapsed().as_nanos();
                    (Instant::now() < until).then(|| {
                        latencies
                            .push(u32::try_from(now.saturating_sub(t) / 1000).unwrap_or(u32::MAX));
                        Message::text(signal(&room, epoch))
                    })
                }),
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e.into()),
                None => return Err("closed".into()),
            };
            if let Some(reply) = reply {
                if flush_each {
                    ws.send(reply).await?;
                } else {
                    ws.feed(reply).await?;
                    queued += 1;
                }
            }
            // what has already arrived, without waiting
            message = ws.next().now_or_never();
        }
        if queued > 0 {
            ws.flush().await?;
        }
    }
    Ok(latencies)
}

#[derive(Clone, Copy)]
struct Figures {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU-seconds the server spent per 100,000 relayed signals.
    server_cpu: f64,
    /// CPU-seconds the load generator (this process) spent per 100,000 relayed signals.
    generator_cpu: f64,
}

async fn relay_load(
    server: &Child,
    pairs: usize,
    window: usize,
    seconds: u64,
    flush_each: bool,
) -> Result<Figures, Error> {
    let port = server.port;
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
    let (server_before, generator_before) = (server.cpu_seconds(), cpu_seconds("self"));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(ws, room)| tokio::spawn(run_client(ws, room, window, epoch, until, flush_each)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let server_cpu = server.cpu_seconds() - server_before;
    let generator_cpu = cpu_seconds("self") - generator_before;
    let relayed = all.len().max(1) as f64;
    let per_100k = |cpu: f64| cpu * 100_000.0 / relayed;
    all.sort_unstable();
    let pct = |p: f64| {
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(idx).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok(Figures {
        msgs_per_s: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_cpu: per_100k(server_cpu),
        generator_cpu: per_100k(generator_cpu),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The median of each figure over the runs.
fn medians(runs: &[Figures]) -> Figures {
    let of = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    Figures {
        msgs_per_s: of(|r| r.msgs_per_s),
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
        server_cpu: of(|r| r.server_cpu),
        generator_cpu: of(|r| r.generator_cpu),
    }
}

struct Report {
    figures: Figures,
    idle_sockets: usize,
    idle_rss_mb: f64,
}

impl Report {
    /// The harness's object, keys in its order (written out: serde_json's map may sort them).
    fn json(&self) -> String {
        let f = &self.figures;
        format!(
            "{{\"msgs_per_s\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"cpu_s_per_100k\":{:.3},\"idle_sockets\":{},\"idle_rss_mb\":{:.1}}}",
            f.msgs_per_s, f.p50_ms, f.p99_ms, f.server_cpu, self.idle_sockets, self.idle_rss_mb
        )
    }
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
    let json_out = args.iter().any(|a| a == "--json");
    // the first generator: one write per signal (its figures are in the README's history)
    let flush_each = args.iter().any(|a| a == "--flush-each");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut positional = Vec::new();
    let mut skip = false;
    for arg in args.iter().skip(1) {
        if skip {
            skip = false;
        } else if arg == "--runs" {
            skip = true;
        } else if !arg.starts_with("--") {
            positional.push(arg.clone());
        }
    }
    let arg = |i: usize, default: u64| {
        positional
            .get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (pairs, window, seconds, idle) = (
        arg(0, 50) as usize,
        arg(1, 4) as usize,
        arg(2, 10),
        arg(3, 10_000) as usize,
    );
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/socketio");

    // BENCH_SERVER_CPUS: both servers pinned to these CPUs (`taskset -c`), to compare them per
    // core with the generator pinned elsewhere (sb-bench runs this under `taskset -c 1` with
    // BENCH_SERVER_CPUS=0 BENCH_WORKERS=1); unset, they run where the scheduler puts them.
    let pinned = |program: &std::ffi::OsStr| match std::env::var("BENCH_SERVER_CPUS") {
        Ok(cpus) => {
            let mut command = tokio::process::Command::new("taskset");
            command.args(["-c", &cpus]).arg(program);
            command
        }
        Err(_) => tokio::process::Command::new(program),
    };
    let rust_port = free_port()?;
    let mut rust_cmd = pinned(std::env::current_exe()?.as_os_str());
    rust_cmd.args(["serve", &rust_port.to_string()]);
    let node_port = free_port()?;
    let mut node_cmd = pinned("node".as_ref());
    node_cmd
        .arg("reference-server.mjs")
        .arg(node_port.to_string())
        .current_dir(&interop);

    println!(
        "relay: {pairs} pairs, {window} signals in flight per client, {seconds} s, median of {runs} run(s); idle: {idle} sockets"
    );
    println!(
        "{:<24} {:>12} {:>9} {:>9} {:>14} {:>14} {:>14} {:>14}",
        "server",
        "signals/s",
        "p50 ms",
        "p99 ms",
        "server CPU s",
        "generator CPU s",
        "idle RSS MB",
        "base RSS MB"
    );
    let mut reports = Vec::new();
    for (name, command, port) in [
        ("sb-socketio (Rust)", rust_cmd, rust_port),
        ("socket.io 4.8.1 (Node)", node_cmd, node_port),
    ] {
        let server = Child::start(command, port).await?;
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(relay_load(&server, pairs, window, seconds, flush_each).await?);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let figures = medians(&all);
        let (base, loaded) = idle_memory(&server, idle).await?;
        println!(
            "{name:<24} {:>12.0} {:>9.2} {:>9.2} {:>14.3} {:>14.3} {:>14.1} {:>14.1}",
            figures.msgs_per_s,
            figures.p50_ms,
            figures.p99_ms,
            figures.server_cpu,
            figures.generator_cpu,
            loaded,
            base
        );
        reports.push(Report {
            figures,
            idle_sockets: idle,
            idle_rss_mb: loaded,
        });
    }
    println!("(CPU s: user + system CPU-seconds per 100,000 relayed signals)");
    if let (true, [ours, reference]) = (json_out, reports.as_slice()) {
        println!(
            "BENCH_JSON {{\"pairs\":{pairs},\"window\":{window},\"seconds\":{seconds},\"ours\":{},\"reference\":{}}}",
            ours.json(),
            reference.json()
        );
    }
    Ok(())
}
