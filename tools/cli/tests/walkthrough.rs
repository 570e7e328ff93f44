//! README's walk-through, run as written: its shell blocks (between the `walkthrough` markers)
//! against `up` on free ports, each block's output checked. A README edit that breaks a command
//! fails here.
//!
//! `cargo run [-q] -p switchboard -- ARGS` in the blocks runs this test's `switchboard` binary
//! (a `cargo` shim first on PATH; any other cargo command fails the test). The blocks read the
//! services' ports from the `UP_*_PORT` variables `up` itself honours.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sb_testkit::{Result, TestDb, within};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The steps the walk-through must have, in order: `up` and `events` run in the background
/// (their own terminals), the others one after the other in one shell (the third terminal).
const STEPS: [&str; 6] = ["up", "events", "setup", "join", "telephony", "demo"];

fn readme() -> Result<String> {
    Ok(std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )?)
}

/// `(step name, shell code)` of each block between the markers, each announced by a
/// `<!-- step: NAME -->` line before its fence.
fn steps(readme: &str) -> Result<Vec<(String, String)>> {
    let section = readme
        .split("<!-- walkthrough:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .ok_or("README has no walkthrough:begin / walkthrough:end markers")?;
    let mut steps = Vec::new();
    let mut name: Option<String> = None;
    let mut code: Option<String> = None;
    for line in section.lines() {
        if let Some(body) = code.as_mut() {
            if line.trim_start().starts_with("```") {
                let step = name.take().ok_or("a shell block without a step marker")?;
                steps.push((step, std::mem::take(body)));
                code = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(rest) = line.trim().strip_prefix("<!-- step:") {
            name = Some(rest.trim_end_matches("-->").trim().to_owned());
        } else if line.trim_start().starts_with("```") {
            if !matches!(line.trim(), "```sh" | "```bash") {
                return Err(format!("walk-through blocks must be sh: {line}").into());
            }
            code = Some(String::new());
        }
    }
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    if names != STEPS {
        return Err(format!("walk-through steps are {names:?}, this test checks {STEPS:?}").into());
    }
    Ok(steps)
}

/// A `cargo` that runs this test's binary for `cargo run [-q] -p switchboard -- ARGS` and refuses
/// anything else, so the README's commands are run exactly as written.
fn cargo_shim(dir: &Path) -> Result<()> {
    let script = format!(
        r#"#!/usr/bin/env bash
# walkthrough test: `cargo run [-q] -p switchboard -- ARGS` is the switchboard binary built for the test.
refuse() {{ echo "walkthrough test: unsupported cargo invocation: cargo $ALL" >&2; exit 97; }}
ALL="$*"
[ "${{1:-}}" = run ] || refuse
shift
package=
while [ $# -gt 0 ]; do
  case "$1" in
    -q|--quiet) shift ;;
    -p|--package) package="${{2:-}}"; shift 2 ;;
    --) shift; [ "$package" = switchboard ] || refuse; exec "{BIN}" "$@" ;;
    *) refuse ;;
  esac
done
refuse
"#
    );
    let path = dir.join("cargo");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A free port below the ephemeral range (see cli.rs: `bind(0)` ports get reused by others).
fn free_port(handed: &mut Vec<u16>) -> Result<u16> {
    for _ in 0..200 {
        let candidate = 20_000 + u16::try_from(uuid::Uuid::new_v4().as_u128() % 12_000)?;
        if !handed.contains(&candidate)
            && std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok()
        {
            handed.push(candidate);
            return Ok(candidate);
        }
    }
    Err("no free port below the ephemeral range".into())
}

struct Walk {
    env: BTreeMap<String, String>,
    shim: PathBuf,
}

impl Walk {
    fn bash(&self, code: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("set -euo pipefail\n{code}"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.shim.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("PUBLIC_BASE_URL")
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("JWT_SECRET")
            .env_remove("APP_ENV")
            .env_remove("EVENTS_NAMESPACE")
            .envs(&self.env)
            .kill_on_drop(true)
            .process_group(0);
        command
    }
}

/// Sends each line a background step prints (stdout and stderr) to a channel.
fn lines_of(child: &mut Child) -> Result<mpsc::UnboundedReceiver<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    fn forward(stream: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    forward(child.stdout.take().ok_or("no stdout")?, tx.clone());
    forward(child.stderr.take().ok_or("no stderr")?, tx);
    Ok(rx)
}

/// Reads lines into `seen` until one contains `needle`.
async fn wait_for_line(
    rx: &mut mpsc::UnboundedReceiver<String>,
    seen: &mut String,
    needle: &str,
    limit: Duration,
) -> Result<()> {
    within(limit, needle, async {
        while let Some(line) = rx.recv().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return Ok(());
            }
        }
        Err(format!(
            "the step ended before printing {needle:?}:\n{seen}"
        ))
    })
    .await?
    .map_err(Into::into)
}

async fn interrupt(child: &mut Child, what: &str) -> Result<()> {
    if let Some(pid) = child.id().filter(|pid| *pid > 1) {
        // The whole process group (bash and the command it runs; `process_group(0)` made the
        // child its leader). The `--` matters: procps `kill -INT -12345` reads `-12345` as an
        // option and signalled process group 3 here, which held the shared Postgres and NATS.
        let status = Command::new("kill")
            .args(["-s", "INT", "--", &format!("-{pid}")])
            .status()
            .await?;
        assert!(status.success(), "kill -s INT -- -{pid}: {status}");
    }
    within(Duration::from_secs(20), what, child.wait()).await??;
    Ok(())
}

/// The text of `step` in the third terminal's output (between the markers the test prints).
fn section<'a>(output: &'a str, step: &str) -> &'a str {
    let start = format!("::walkthrough {step}::\n");
    output
        .split(&start)
        .nth(1)
        .map(|rest| rest.split("::walkthrough ").next().unwrap_or(rest))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() -> Result {
    sb_testkit::init();
    let steps = steps(&readme()?)?;
    let database = TestDb::reserved()?;
    let shim = std::env::temp_dir().join(format!("sb-walkthrough-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&shim)?;
    cargo_shim(&shim)?;
    let mut handed = Vec::new();
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".to_owned(), database.url().to_owned());
    env.insert("NATS_URL".to_owned(), sb_testkit::nats_url());
    // Its own subjects and streams on the shared NATS.
    let namespace = format!("wt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    env.insert("EVENTS_NAMESPACE".to_owned(), namespace);
    env.insert("RUST_LOG".to_owned(), "warn".to_owned());
    for var in [
        "UP_PORT",
        "UP_VIDEO_PORT",
        "UP_SIGNALING_PORT",
        "UP_MONITORING_PORT",
        "UP_TELEPHONY_PORT",
    ] {
        env.insert(var.to_owned(), free_port(&mut handed)?.to_string());
    }
    let walk = Walk {
        env: env.clone(),
        shim: shim.clone(),
    };
    let result = run(&walk, &steps, &env).await;
    std::fs::remove_dir_all(&shim)?;
    result
}

async fn run(walk: &Walk, steps: &[(String, String)], env: &BTreeMap<String, String>) -> Result {
    let port = |var: &str| env.get(var).cloned().unwrap_or_default();

    // Terminal 1: up --seed, ready once it prints its last line.
    let mut up = walk
        .bash(&steps[0].1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut up_lines = lines_of(&mut up)?;
    let mut up_output = String::new();
    wait_for_line(
        &mut up_lines,
        &mut up_output,
        "Ctrl-C stops everything",
        Duration::from_secs(90),
    )
    .await?;
    assert!(
        up_output.contains("sample appointments projected"),
        "{up_output}"
    );
    assert!(
        up_output.contains(&format!("http://127.0.0.1:{}", port("UP_VIDEO_PORT"))),
        "{up_output}"
    );

    // Terminal 2: events tail, listening once it says so.
    let mut events = walk
        .bash(&steps[1].1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut event_lines = lines_of(&mut events)?;
    let mut events_output = String::new();
    wait_for_line(
        &mut event_lines,
        &mut events_output,
        "watching",
        Duration::from_secs(30),
    )
    .await?;

    // Terminal 3: the remaining blocks in one shell, so variables carry from one to the next.
    let mut script = String::new();
    for (name, code) in &steps[2..] {
        script.push_str(&format!("echo '::walkthrough {name}::'\n{code}\n"));
    }
    script.push_str("echo '::walkthrough end::'\n");
    let output = within(
        Duration::from_secs(120),
        "the walk-through's commands",
        walk.bash(&script).stdin(Stdio::null()).output(),
    )
    .await??;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "a walk-through command failed:\n{printed}"
    );

    let join = section(&printed, "join");
    assert!(join.contains("HTTP 200"), "{join}");
    let body: serde_json::Value = serde_json::from_str(
        join.lines()
            .find(|l| l.starts_with('{'))
            .ok_or("the join printed no JSON")?,
    )?;
    assert_eq!(body["status"], "ONGOING", "{body}");
    assert!(
        body["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["appointment"]["id"], "0190a000-0000-7000-8003-000000000101",
        "{body}"
    );

    let telephony = section(&printed, "telephony");
    assert!(
        telephony.contains("HTTP 201") || telephony.contains("HTTP 200"),
        "{telephony}"
    );
    let inbound = telephony
        .split("/webhook/voice/completed →")
        .next()
        .unwrap_or_default();
    assert!(inbound.contains("200 OK text/xml"), "{telephony}");
    assert!(inbound.contains("<Dial"), "{telephony}");
    assert!(
        inbound.contains("<Client>u_0190a000000070008001000000000104</Client>"),
        "{telephony}"
    );
    let dial = telephony
        .split("/webhook/voice/completed →")
        .nth(1)
        .ok_or_else(|| format!("no <Dial> action was posted:\n{telephony}"))?;
    assert!(dial.contains("<Record"), "voicemail is offered: {dial}");

    let demo = section(&printed, "demo");
    assert!(demo.contains("demo page: HTTP 200 text/html"), "{demo}");
    // Both links open the page, and both people may enter the appointment's room, which
    // signaling creates from the seeded CRM event (asynchronously: polled).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let verifier = sb_auth::JwtVerifier::new(&sb_auth::AuthConfig::hs256(sb_auth::DEV_JWT_SECRET))?;
    for who in ["closer:", "guest:"] {
        let link = demo
            .lines()
            .find_map(|l| l.strip_prefix(who))
            .map(str::trim)
            .ok_or_else(|| format!("no {who} link: {demo}"))?;
        let page = client.get(link).send().await?;
        assert_eq!(page.status(), 200, "{link}");
        assert!(page.text().await?.contains("socket.io"), "{link}");
        let url = reqwest::Url::parse(link)?;
        let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        let token = query.get("token").ok_or("no token in the link")?;
        let appointment = query
            .get("appointment")
            .ok_or("no appointment in the link")?;
        verifier.verify(token)?;
        let room = format!(
            "http://127.0.0.1:{}/video-call/room/appointment/{appointment}",
            port("UP_SIGNALING_PORT")
        );
        within(Duration::from_secs(15), "the appointment's room", async {
            loop {
                let status = client.get(&room).bearer_auth(token).send().await?.status();
                if status == 200 {
                    return Ok::<_, reqwest::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await??;
    }

    // Its idle keep-alive connections would hold up the services' graceful shutdown.
    drop(client);

    // Terminal 2 saw the call start and the phone ring.
    for subject in ["sb.video.call.started", "sb.telephony.call.incoming"] {
        wait_for_line(
            &mut event_lines,
            &mut events_output,
            &format!("\"subject\":\"{subject}\""),
            Duration::from_secs(15),
        )
        .await?;
    }

    interrupt(&mut events, "events tail to stop on Ctrl-C").await?;
    interrupt(&mut up, "up to stop on Ctrl-C").await?;
    Ok(())
}
