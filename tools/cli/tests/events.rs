//! `switchboard seed` and `switchboard events tail` against the real NATS and Postgres.

use std::process::Stdio;
use std::time::Duration;

use sb_events::consumer::ConsumerRunner;
use sb_events::projector::{AppointmentProjector, consumer_config};
use sb_events::{Domain, EventMetrics, Namespace};
use sb_testkit::{Result, TestDb, TestNats, run_until, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test]
async fn seed_publishes_appointments_the_projector_turns_into_rows() -> Result {
    let nats = TestNats::new().await?;
    let db = TestDb::new().await?;
    let output = Command::new(BIN)
        .arg("seed")
        .env("NATS_URL", sb_testkit::nats_url())
        .env("EVENTS_NAMESPACE", nats.prefix())
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout)?;
    // The 17 users of the two sample organisations, then 20 appointment events.
    assert!(printed.contains("Published 37 CRM events"), "{printed}");
    assert!(
        printed.contains("CLOSER") && printed.contains("0190a000-0000-7000-8000-000000000001"),
        "{printed}"
    );

    let ns = Namespace::prefixed(nats.prefix());
    let metrics = EventMetrics::standalone()?;
    let runner = ConsumerRunner::new(
        consumer_config("test"),
        db.pool(),
        nats.jetstream(),
        ns.clone(),
        AppointmentProjector,
        metrics.clone(),
    );
    run_until(
        Duration::from_secs(15),
        "the seed to be projected",
        |stop| runner.run(stop),
        || async {
            metrics
                .consumer_messages_total
                .with_label_values(&["test-appointments", "applied"])
                .get()
                == 20
        },
    )
    .await?;

    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use sb_db::schema::appointments::dsl as a;
    let mut conn = db.conn().await?;
    let rows: Vec<(uuid::Uuid, String, String)> = a::appointments
        .select((a::org_id, a::kind, a::status))
        .load(&mut conn)
        .await?;
    assert_eq!(rows.len(), 12, "six appointments in each of two orgs");
    let orgs: std::collections::HashSet<_> = rows.iter().map(|r| r.0).collect();
    assert_eq!(orgs.len(), 2);
    for (kind, status) in [
        ("remote", "confirmed"),
        ("onsite", "confirmed"),
        ("remote", "cancelled"),
        ("remote", "completed"),
        ("onsite", "scheduled"),
    ] {
        assert!(
            rows.iter().any(|r| r.1 == kind && r.2 == status),
            "no {kind} {status} appointment: {rows:?}"
        );
    }
    // Seeding again converges: newer versions, same rows.
    let again = Command::new(BIN)
        .arg("seed")
        .env("EVENTS_NAMESPACE", nats.prefix())
        .output()
        .await?;
    assert!(again.status.success());
    let stream = nats
        .jetstream()
        .get_stream(ns.stream(Domain::Crm))
        .await?
        .cached_info()
        .state
        .messages;
    assert!(stream >= 20, "{stream}");
    Ok(())
}

#[tokio::test]
async fn events_tail_prints_decoded_events() -> Result {
    let nats = TestNats::new().await?;
    let mut child = Command::new(BIN)
        .args(["events", "tail", "crm.appointment.>", "--count", "3"])
        .env("EVENTS_NAMESPACE", nats.prefix())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut stderr = BufReader::new(stderr).lines();
    within(Duration::from_secs(20), "tail to start watching", async {
        while let Some(line) = stderr.next_line().await? {
            if line.contains("watching") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    let seed = Command::new(BIN)
        .arg("seed")
        .env("EVENTS_NAMESPACE", nats.prefix())
        .output()
        .await?;
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let output = within(
        Duration::from_secs(20),
        "tail to print three events",
        child.wait_with_output(),
    )
    .await??;
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3);
    let first = &lines[0];
    assert_eq!(first["subject"], "crm.appointment.created");
    assert_eq!(first["type"], "switchboard.events.v1.AppointmentCreated");
    assert_eq!(first["org"], "0190a000-0000-7000-8000-000000000001");
    assert_eq!(
        first["event"]["appointment"]["org_id"],
        "0190a000-0000-7000-8000-000000000001"
    );
    assert!(
        first["event"]["appointment"]["lead"]["name"].is_string(),
        "{first}"
    );
    Ok(())
}
