//! Bridges to official Node packages (`interop/livekit`: LiveKit's server SDK; `interop/twilio`:
//! Twilio's helper library; `interop/socketio`: socket.io-client and Chromium via playwright-core;
//! lockfiles committed): one JSON request on stdin, one JSON answer on stdout. Installs the npm
//! packages on first use (`npm ci`, which `.ci/run` also runs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// An npm package of `interop/` and the dependency whose presence says it is installed.
struct Bridge {
    dir: &'static str,
    marker: &'static str,
    what: &'static str,
}

const LIVEKIT: Bridge = Bridge {
    dir: "livekit",
    marker: "livekit-server-sdk",
    what: "LiveKit",
};

const TWILIO: Bridge = Bridge {
    dir: "twilio",
    marker: "twilio",
    what: "Twilio",
};

const SOCKETIO: Bridge = Bridge {
    dir: "socketio",
    marker: "playwright-core",
    what: "Socket.IO",
};

fn interop_dir(bridge: &Bridge) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop")
        .join(bridge.dir)
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `npm ci` once, if the package is not installed yet.
fn ensure_installed(bridge: &Bridge) -> crate::Result {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = interop_dir(bridge);
    if dir
        .join("node_modules")
        .join(bridge.marker)
        .join("package.json")
        .exists()
    {
        return Ok(());
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("npm is needed for the {} interop tests: {e}", bridge.what))?;
    if !status.success() {
        return Err(format!("npm ci in {} failed: {status}", dir.display()).into());
    }
    Ok(())
}

async fn run(
    bridge: &Bridge,
    script: &str,
    request: Value,
    limit: Duration,
) -> crate::Result<Value> {
    ensure_installed(bridge)?;
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(interop_dir(bridge))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let output = crate::within(limit, script, child.wait_with_output()).await??;
    let answer = serde_json::from_slice::<Value>(&output.stdout);
    match answer {
        Ok(answer) if output.status.success() => Ok(answer),
        Ok(answer) => Err(format!("node {script} failed: {answer}").into()),
        // Died before answering (its stderr, inherited, says why).
        Err(error) => {
            Err(format!("node {script} ({}) gave no answer: {error}", output.status).into())
        }
    }
}

/// Runs one operation of `interop/livekit/interop.mjs` (`verify-tokens`, `sign-webhook`,
/// `room-service`) with the official SDK and returns its answer.
pub async fn livekit_node(request: Value) -> crate::Result<Value> {
    run(&LIVEKIT, "interop.mjs", request, Duration::from_secs(60)).await
}

/// Runs one operation of `interop/twilio/interop.mjs` (`signatures`, `twiml`, `voice-token`,
/// `verify-token`) with Twilio's official helper library and returns its answer.
pub async fn twilio_node(request: Value) -> crate::Result<Value> {
    run(&TWILIO, "interop.mjs", request, Duration::from_secs(60)).await
}

/// Runs one operation of `interop/socketio/interop.mjs` (`call`: every seed 004 event between
/// two clients; `cluster`: a signal between clients on two instances) with the official
/// socket.io-client and returns its answer.
pub async fn socketio_node(request: Value) -> crate::Result<Value> {
    run(&SOCKETIO, "interop.mjs", request, Duration::from_secs(60)).await
}

/// Runs `interop/socketio/eventsource.mjs`: monitoring's live stream read by a real
/// `EventSource` in headless Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`).
pub async fn eventsource_in_chromium(request: Value) -> crate::Result<Value> {
    run(
        &SOCKETIO,
        "eventsource.mjs",
        request,
        Duration::from_secs(120),
    )
    .await
}

/// Runs `interop/socketio/e2e.mjs`: the signaling service's `/demo` page opened twice in
/// headless Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) with fake media.
pub async fn demo_in_chromium(request: Value) -> crate::Result<Value> {
    run(&SOCKETIO, "e2e.mjs", request, Duration::from_secs(120)).await
}
