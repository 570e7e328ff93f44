//! Bridges to official Node packages (`interop/livekit`: LiveKit's server SDK; `interop/socketio`:
//! socket.io-client; lockfiles committed): one JSON request on stdin, one JSON answer on stdout.
//! Installs the npm packages on first use (`npm ci`, which `.ci/run` also runs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

fn interop_dir() -> PathBuf {
    package_dir("livekit")
}

fn package_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop")
        .join(name)
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `npm ci` once, if the SDK is not installed yet.
fn ensure_installed() -> crate::Result {
    ensure_package_installed(&interop_dir(), "livekit-server-sdk")
}

/// `npm ci` in `dir` once, if `marker` is not installed there yet.
fn ensure_package_installed(dir: &Path, marker: &str) -> crate::Result {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir
        .join("node_modules")
        .join(marker)
        .join("package.json")
        .exists()
    {
        return Ok(());
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("npm is needed for the interop tests: {e}"))?;
    if !status.success() {
        return Err(format!("npm ci in {} failed: {status}", dir.display()).into());
    }
    Ok(())
}

/// Runs one operation of `interop/socketio/interop.mjs` (`call`: every seed 004 event between
/// two clients; `cluster`: a signal between clients on two instances) with the official
/// socket.io-client and returns its answer.
pub async fn socketio_node(request: Value) -> crate::Result<Value> {
    socketio_script("interop.mjs", request, std::time::Duration::from_secs(60)).await
}

/// Runs `interop/socketio/e2e.mjs`: the signaling service's `/demo` page opened twice in
/// headless Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) with fake media.
pub async fn demo_in_chromium(request: Value) -> crate::Result<Value> {
    socketio_script("e2e.mjs", request, std::time::Duration::from_secs(120)).await
}

async fn socketio_script(
    script: &str,
    request: Value,
    limit: std::time::Duration,
) -> crate::Result<Value> {
    let dir = package_dir("socketio");
    ensure_package_installed(&dir, "playwright-core")?;
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let output = crate::within(limit, script, child.wait_with_output()).await??;
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    if !output.status.success() {
        return Err(format!("node failed: {answer}").into());
    }
    Ok(answer)
}

/// Runs one operation of `interop/livekit/interop.mjs` (`verify-tokens`, `sign-webhook`,
/// `room-service`) with the official SDK and returns its answer.
pub async fn livekit_node(request: Value) -> crate::Result<Value> {
    ensure_installed()?;
    let mut child = tokio::process::Command::new("node")
        .arg("interop.mjs")
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let output = crate::within(
        std::time::Duration::from_secs(30),
        "the Node SDK",
        child.wait_with_output(),
    )
    .await??;
    let answer: Value = serde_json::from_slice(&output.stdout)?;
    if !output.status.success() {
        return Err(format!("node failed: {answer}").into());
    }
    Ok(answer)
}
