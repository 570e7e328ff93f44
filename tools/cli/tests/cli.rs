//! The `switchboard` binary as a newcomer runs it: `up` on a database that does not exist yet,
//! `token`, and `migrate` from two processes at once.

use std::process::Stdio;
use std::time::Duration;

use sb_testkit::{Result, TestDb, TestTokens, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A free port below Linux's ephemeral range (32768–60999): a port the kernel hands out for
/// `bind(0)` could be handed to another test's service between this check and `up` binding it
/// (seen in CI with five services per `up`), while ports down here are only ever chosen by name.
fn free_port() -> Result<u16> {
    // Tests of this binary run in parallel: never hand the same port twice.
    static HANDED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed = HANDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..200 {
        let candidate = 20_000 + u16::try_from(uuid::Uuid::new_v4().as_u128() % 12_000)?;
        if handed.contains(&candidate) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            handed.push(candidate);
            return Ok(candidate);
        }
    }
    Err("no free port below the ephemeral range".into())
}

#[tokio::test]
async fn up_creates_the_database_serves_health_and_stops_on_ctrl_c() -> Result {
    up_stops_on("-INT").await
}

#[tokio::test]
async fn up_stops_gracefully_on_sigterm() -> Result {
    up_stops_on("-TERM").await
}

async fn up_stops_on(signal: &str) -> Result {
    sb_testkit::init();
    // `up` creates this database itself; the guard drops it however the test ends.
    let database = TestDb::reserved()?;
    let port = free_port()?;
    let video_port = free_port()?;
    let monitoring_port = free_port()?;
    let telephony_port = free_port()?;
    let signaling_port = free_port()?;
    let mut child = Command::new(BIN)
        .arg("up")
        .env("DATABASE_URL", database.url())
        .env("NATS_URL", sb_testkit::nats_url())
        .env("UP_PORT", port.to_string())
        .env("UP_VIDEO_PORT", video_port.to_string())
        .env("UP_SIGNALING_PORT", signaling_port.to_string())
        .env("UP_MONITORING_PORT", monitoring_port.to_string())
        .env("UP_TELEPHONY_PORT", telephony_port.to_string())
        .env_remove("PUBLIC_BASE_URL")
        .env_remove("TWILIO_AUTH_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    within(Duration::from_secs(60), "up to print its table", async {
        while let Some(line) = lines.next_line().await? {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    let base = format!("http://127.0.0.1:{port}");
    assert!(printed.contains(&base), "{printed}");
    assert!(printed.contains(&format!("{base}/docs/")), "{printed}");
    assert!(printed.contains(&format!("{base}/metrics")), "{printed}");
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))?.count();
    let applied = format!("created, {migrations} migration(s) applied");
    assert!(printed.contains(&applied), "{printed}");
    let video = format!("http://127.0.0.1:{video_port}");
    assert!(
        printed.contains(&format!("video        {video}")),
        "{printed}"
    );
    let telephony = format!("http://127.0.0.1:{telephony_port}");
    assert!(
        printed.contains(&format!("telephony    {telephony}")),
        "{printed}"
    );
    // A dev token per role of the seeded org, accepted by the services' verifier.
    let verifier = sb_auth::JwtVerifier::new(&sb_auth::AuthConfig::hs256(sb_auth::DEV_JWT_SECRET))?;
    let roles: Vec<sb_auth::Role> = printed
        .lines()
        .filter_map(|line| line.trim().split_once(' ').map(|(_, token)| token.trim()))
        .filter_map(|token| verifier.verify(token).ok())
        .map(|principal| principal.role)
        .collect();
    assert_eq!(roles.len(), 7, "one token per role: {printed}");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let health = client.get(format!("{base}/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let index: serde_json::Value = client.get(format!("{base}/")).send().await?.json().await?;
    let listed = |name: &str| {
        index["services"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["name"] == name))
            .map(|s| s["url"].clone())
            .unwrap_or_default()
    };
    assert_eq!(listed("video"), video, "{index}");
    let ready: serde_json::Value = client
        .get(format!("{video}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let monitoring = format!("http://127.0.0.1:{monitoring_port}");
    assert_eq!(listed("monitoring"), monitoring, "{index}");
    let ready: serde_json::Value = client
        .get(format!("{monitoring}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(listed("telephony"), telephony, "{index}");
    let signaling = format!("http://127.0.0.1:{signaling_port}");
    assert_eq!(listed("signaling"), signaling, "{index}");
    assert!(printed.contains(&format!("{signaling}/demo")), "{printed}");
    let ready: serde_json::Value = client
        .get(format!("{signaling}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    let ready: serde_json::Value = client
        .get(format!("{telephony}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    // The dev tool plays a call into it, signed for the URL `up` gave it: a number no org has
    // gets the polite message.
    let simulated = Command::new(BIN)
        .args([
            "telephony",
            "simulate",
            "inbound",
            "--from",
            "+447911123456",
            "--to",
            "+33123456789",
        ])
        .env("PUBLIC_BASE_URL", &telephony)
        .env_remove("TWILIO_AUTH_TOKEN")
        .output()
        .await?;
    let said = String::from_utf8_lossy(&simulated.stdout);
    assert!(
        simulated.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    assert!(said.contains("200 OK text/xml"), "{said}");
    assert!(said.contains("<Hangup"), "{said}");
    let refused = Command::new(BIN)
        .args([
            "telephony",
            "simulate",
            "status",
            "--call-sid",
            "CA0123456789abcdef0123456789abcdef",
            "--status",
            "ringing",
        ])
        .env("PUBLIC_BASE_URL", &telephony)
        .env("TWILIO_AUTH_TOKEN", "not-the-services-token")
        .output()
        .await?;
    assert!(!refused.status.success(), "a wrong token is refused");
    assert!(String::from_utf8_lossy(&refused.stdout).contains("403"));

    let pid = child.id().ok_or("no pid")?;
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    let exit = within(
        Duration::from_secs(20),
        "up to stop after the signal",
        child.wait(),
    )
    .await??;
    assert!(exit.success(), "{exit:?}");
    Ok(())
}

#[tokio::test]
async fn up_says_which_dependency_is_missing() -> Result {
    sb_testkit::init();
    let output = Command::new(BIN)
        .arg("up")
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/switchboard",
        )
        .env("UP_PORT", free_port()?.to_string())
        .env("UP_VIDEO_PORT", free_port()?.to_string())
        .env("UP_SIGNALING_PORT", free_port()?.to_string())
        .env("UP_MONITORING_PORT", free_port()?.to_string())
        .env("UP_TELEPHONY_PORT", free_port()?.to_string())
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("PostgreSQL is not reachable at postgres://postgres@127.0.0.1:1/switchboard"),
        "{stderr}"
    );
    assert!(stderr.contains("pg_ctlcluster 15 main start"), "{stderr}");

    let db = TestDb::new().await?;
    let output = Command::new(BIN)
        .arg("up")
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("NATS_CONNECT_TIMEOUT", "500ms")
        .env("UP_PORT", free_port()?.to_string())
        .env("UP_VIDEO_PORT", free_port()?.to_string())
        .env("UP_SIGNALING_PORT", free_port()?.to_string())
        .env("UP_MONITORING_PORT", free_port()?.to_string())
        .env("UP_TELEPHONY_PORT", free_port()?.to_string())
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NATS is not reachable at nats://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("nats-server"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn token_prints_a_jwt_the_services_accept() -> Result {
    let team = "0190a000-0000-7000-8000-0000000000f1";
    let output = Command::new(BIN)
        .args([
            "token", "--role", "manager", "--team", team, "--name", "Grace",
        ])
        .env("JWT_SECRET", sb_testkit::TEST_JWT_SECRET)
        .env_remove("APP_ENV")
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)?;
    let principal = TestTokens::new().verifier().verify(token.trim())?;
    assert_eq!(principal.role, sb_auth::Role::Manager);
    assert_eq!(principal.teams.len(), 1);
    assert_eq!(principal.teams[0].to_string(), team);
    assert_eq!(principal.name.as_deref(), Some("Grace"));

    let refused = Command::new(BIN)
        .args(["token", "--role", "ROOT"])
        .output()
        .await?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown role"));
    let production = Command::new(BIN)
        .args(["token", "--role", "CEO"])
        .env("APP_ENV", "production")
        .env("JWT_SECRET", sb_testkit::TEST_JWT_SECRET)
        .output()
        .await?;
    assert!(
        !production.status.success(),
        "dev tokens are refused in production"
    );
    Ok(())
}

#[tokio::test]
async fn migrate_from_two_processes_at_once_both_succeed() -> Result {
    let db = TestDb::empty().await?;
    let run = || {
        Command::new(BIN)
            .arg("migrate")
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "warn")
            .output()
    };
    let (a, b) = tokio::join!(run(), run());
    let (a, b) = (a?, b?);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let outputs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert_eq!(
        outputs.matches("applied 20261121000000").count(),
        1,
        "{outputs}"
    );
    assert_eq!(outputs.matches("up to date").count(), 1, "{outputs}");
    let check = Command::new(BIN)
        .args(["migrate", "--check"])
        .env("DATABASE_URL", db.url())
        .output()
        .await?;
    assert!(check.status.success());
    Ok(())
}

#[tokio::test]
async fn help_explains_the_first_steps() -> Result {
    let output = Command::new(BIN).arg("--help").output().await?;
    let help = String::from_utf8(output.stdout)?;
    for needle in ["up", "migrate", "token", "PostgreSQL", "NATS"] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
    Ok(())
}
