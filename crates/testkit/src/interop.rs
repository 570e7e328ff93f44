//! Bridges to the providers' official Node SDKs (`interop/livekit`, `interop/twilio`, lockfiles
//! committed): one JSON request on stdin, one JSON answer on stdout. Installs the npm packages on
//! first use (`npm ci`, which `.ci/run` also runs).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// An npm package of `interop/` and the SDK whose presence says it is installed.
struct Bridge {
    dir: &'static str,
    sdk: &'static str,
    what: &'static str,
}

const LIVEKIT: Bridge = Bridge {
    dir: "livekit",
    sdk: "livekit-server-sdk",
    what: "LiveKit",
};

const TWILIO: Bridge = Bridge {
    dir: "twilio",
    sdk: "twilio",
    what: "Twilio",
};

fn interop_dir(bridge: &Bridge) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop")
        .join(bridge.dir)
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `npm ci` once, if the SDK is not installed yet.
fn ensure_installed(bridge: &Bridge) -> crate::Result {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = interop_dir(bridge);
    if dir
        .join("node_modules")
        .join(bridge.sdk)
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

async fn run(bridge: &Bridge, request: Value) -> crate::Result<Value> {
    ensure_installed(bridge)?;
    let mut child = tokio::process::Command::new("node")
        .arg("interop.mjs")
        .current_dir(interop_dir(bridge))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let output = crate::within(
        std::time::Duration::from_secs(60),
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

/// Runs one operation of `interop/livekit/interop.mjs` (`verify-tokens`, `sign-webhook`,
/// `room-service`) with the official SDK and returns its answer.
pub async fn livekit_node(request: Value) -> crate::Result<Value> {
    run(&LIVEKIT, request).await
}

/// Runs one operation of `interop/twilio/interop.mjs` (`signatures`, `twiml`, `voice-token`,
/// `verify-token`) with Twilio's official helper library and returns its answer.
pub async fn twilio_node(request: Value) -> crate::Result<Value> {
    run(&TWILIO, request).await
}
