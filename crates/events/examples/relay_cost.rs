//! What the relay costs Postgres per event, with its claim from a cursor and coalesced wake-ups
//! (`--mode new`, the defaults) or as before them (`--mode old`: every claim from the smallest id,
//! a batch per wake-up, the table's default autovacuum settings).
//!
//! ```sh
//! cargo run -p sb-events --example relay_cost -- --mode old|new [--transactions 20000] [--producers 8]
//! ```
//!
//! Producers commit `--transactions` transactions of 2 events each through
//! `Outbox::wake_on_commit` (as the services do), the relay running; the example reads the
//! Postgres backends' CPU (utime + stime from `/proc/<pid>/stat`, the relay's connections apart
//! from the producers') and the database's commits from `pg_stat_database`. Needs the local
//! Postgres and NATS, like the tests.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use sb_db::DatabaseConfig;
use sb_events::outbox::{Outbox, Pending, Relay, RelayConfig};
use sb_events::proto::{VideoCallStarted, VideoParticipantJoined};
use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, EventMetrics, Namespace};
use sb_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    application_name: String,
}

#[derive(QueryableByName)]
struct Commits {
    #[diesel(sql_type = BigInt)]
    commits: i64,
}

/// utime + stime of `pid` in clock ticks (100 per second on Linux).
fn ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name and state.
    field(11) + field(12)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mode = arg("--mode").unwrap_or_else(|| "new".to_owned());
    let transactions: usize = arg("--transactions").map_or(Ok(20_000), |v| v.parse())?;
    let producers: usize = arg("--producers").map_or(Ok(8), |v| v.parse())?;
    // A day's worth of published rows (the retention) and the dead index entries of the last
    // rows published before autovacuum came by: what a claim from the smallest id walks.
    let prefill: i64 = arg("--published").map_or(Ok(200_000), |v| v.parse())?;
    let dead: i64 = arg("--dead").map_or(Ok(30_000), |v| v.parse())?;
    let old = mode == "old";

    let db = TestDb::new().await?;
    let nats = TestNats::new().await?;
    let ns = Namespace::prefixed(nats.prefix());
    let js = nats.jetstream();
    ensure_streams(&js, &ns, &Domain::ALL, &StreamSettings::default()).await?;
    let mut conn = db.conn().await?;
    if old {
        diesel::sql_query(
            "ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, \
             autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor, \
             autovacuum_vacuum_insert_threshold, autovacuum_analyze_scale_factor, \
             autovacuum_analyze_threshold, autovacuum_vacuum_cost_delay)",
        )
        .execute(&mut conn)
        .await?;
    }
    // v7-like ids from an hour ago, below every id the run takes.
    let fill = "INSERT INTO outbox (id, source, subject, payload, published_at) \
                SELECT (lpad(to_hex((extract(epoch FROM now() - interval '1 hour') * 1000)::bigint), 12, '0') \
                || '7000' || lpad(to_hex(n), 16, '0'))::uuid, 'video', 'sb.video.call.started', '\\x00', \
                CASE WHEN $2 THEN now() END FROM generate_series($1, $1 + $3 - 1) AS n";
    for (from, count, published) in [(0, prefill, true), (prefill, dead, false)] {
        diesel::sql_query(fill)
            .bind::<BigInt, _>(from)
            .bind::<diesel::sql_types::Bool, _>(published)
            .bind::<BigInt, _>(count)
            .execute(&mut conn)
            .await?;
    }
    diesel::sql_query("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        .execute(&mut conn)
        .await?;
    let relay_url = format!("{}?application_name=sb_relay", db.url());
    let relay_pool = sb_db::build_pool(&DatabaseConfig::with_url(&relay_url))?;
    let config = if old {
        RelayConfig {
            rescan_interval: Duration::ZERO,
            coalesce: Duration::ZERO,
            ..RelayConfig::default()
        }
    } else {
        RelayConfig::default()
    };
    let outbox = Outbox::new("video");
    let relay = Relay::new(
        outbox.clone(),
        relay_pool,
        db.config(),
        js.clone(),
        ns.clone(),
        EventMetrics::standalone()?,
    )
    .with_config(config);
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    // Open the producers' connections first: they are the backends measured.
    let mut warm = Vec::new();
    for _ in 0..producers {
        warm.push(db.conn().await?);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let backends: Vec<Backend> = diesel::sql_query(
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()",
    )
    .load(&mut conn)
    .await?;
    eprintln!(
        "backends: {:?}",
        backends
            .iter()
            .map(|b| (b.pid, b.application_name.as_str()))
            .collect::<Vec<_>>()
    );
    let commits = || {
        diesel::sql_query(
            "SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()",
        )
    };
    let before_commits: Commits = commits().get_result(&mut conn).await?;
    let cpu = |relay: bool| -> u64 {
        backends
            .iter()
            .filter(|b| b.application_name.starts_with("sb_relay") == relay)
            .map(|b| ticks(b.pid))
            .sum()
    };
    let (relay_before, producers_before) = (cpu(true), cpu(false));
    let started = Instant::now();
    let per_producer = transactions / producers;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let pool = db.pool();
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_producer {
                let mut conn = pool.get().await?;
                let call = format!("call-{p}-{n}");
                let org = "0190a000-0000-7000-8000-000000000001".to_owned();
                let events = [
                    Pending::new(&VideoParticipantJoined {
                        call_id: call.clone(),
                        org_id: org.clone(),
                        ..VideoParticipantJoined::default()
                    }),
                    Pending::new(&VideoCallStarted {
                        call_id: call,
                        org_id: org,
                        ..VideoCallStarted::default()
                    }),
                ];
                outbox
                    .wake_on_commit(conn.transaction::<_, diesel::result::Error, _>(async |c| {
                        outbox.enqueue_many(c, &events, None).await
                    }))
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let produced = started.elapsed();
    while sb_events::outbox::pending(&mut conn, "video").await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    // Backends report their commits to pg_stat_database when idle for a while (10 s at most).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (relay_after, producers_after) = (cpu(true), cpu(false));
    let after_commits: Commits = commits().get_result(&mut conn).await?;
    stop.cancel();
    relay_task.await?;
    let tx = (per_producer * producers) as f64;
    let events = tx * 2.0;
    // The two reads of pg_stat_database and the pending counts commit too: a few dozen.
    let relay_commits = (after_commits.commits - before_commits.commits) as f64 - tx;
    let ms = |t: u64| t as f64 * 10.0;
    println!(
        "mode={mode} transactions={tx} events={events} produced_in={:.2}s drained_in={:.2}s \
         relay_backend_cpu_ms={:.0} ({:.1} us/event) producer_backends_cpu_ms={:.0} ({:.1} us/tx) \
         other_commits={relay_commits:.0} ({:.3} per producer tx)",
        produced.as_secs_f64(),
        drained.as_secs_f64(),
        ms(relay_after - relay_before),
        ms(relay_after - relay_before) * 1000.0 / events,
        ms(producers_after - producers_before),
        ms(producers_after - producers_before) * 1000.0 / tx,
        relay_commits / tx,
    );
    Ok(())
}
