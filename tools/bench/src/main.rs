//! `sb-bench`: run the performance scenarios and print/write the table. Build with `--release`.

use clap::{Parser, Subcommand};
use sb_bench::report::{self, Machine, Row};
use sb_bench::scenarios;

#[derive(Parser)]
#[command(
    name = "sb-bench",
    about = "Switchboard's performance harness: each scenario beside its peer and its limit",
    long_about = "Switchboard's performance harness: each scenario beside its peer and its limit.\n\n\
        Needs PostgreSQL and NATS (JetStream) as for the tests (TEST_DATABASE_URL / TEST_NATS_URL, or \
        DATABASE_URL / NATS_URL, or the local defaults), /usr/bin/pgbench, and Node 20 with npm for the \
        reference servers. `all` writes the table into docs/performance.md; a single scenario only prints."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Runs of each scenario; figures are medians with [min–max].
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,
    /// Print the table only (do not write docs/performance.md).
    #[arg(long, global = true)]
    no_write: bool,
    /// join, telephony: only make Postgres log the statements of a few requests with their
    /// durations (server log), to re-derive the pgbench scripts in tools/bench/sql/ from what
    /// the services run.
    #[arg(long, global = true)]
    log_sql: bool,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Every scenario, then write the table into docs/performance.md.
    All,
    /// 1. Joining an appointment call, beside pgbench running the same SQL.
    Join,
    /// 2. Signed Twilio status callbacks, beside pgbench and a Node Express reference.
    Telephony,
    /// 3. Signaling relay, beside Node socket.io (crates/socketio/examples/bench.rs).
    Signaling,
    /// 4. Outbox commit → JetStream ack, beside raw async-nats publishing.
    Outbox,
    /// 5. Cold start to ready and idle RSS of each service's release binary.
    ColdStart,
}

#[global_allocator]
static ALLOCATOR: sb_platform::Allocator = sb_platform::Allocator;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sb_platform::install_crypto_provider();
    let runs = cli.runs.max(1);
    // The load generator's threads: `sb_bench::cpu` tells them from the in-process service's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("sb-load")
        .enable_all()
        .build()?;
    let machine = Machine::detect();
    println!("Machine: {}", machine.describe());
    let rows: Vec<Row> = runtime.block_on(async {
        let mut rows = Vec::new();
        let all = cli.scenario == Scenario::All;
        if all || cli.scenario == Scenario::Join {
            eprintln!("1. join…");
            rows.extend(scenarios::join::run(runs, cli.log_sql).await);
        }
        if all || cli.scenario == Scenario::Telephony {
            eprintln!("2. telephony status callbacks…");
            rows.extend(scenarios::telephony::run(runs, cli.log_sql).await);
        }
        if all || cli.scenario == Scenario::Signaling {
            eprintln!("3. signaling relay…");
            rows.extend(scenarios::signaling::run(runs).await);
        }
        if all || cli.scenario == Scenario::Outbox {
            eprintln!("4. outbox…");
            rows.extend(scenarios::outbox::run(runs).await);
        }
        if all || cli.scenario == Scenario::ColdStart {
            eprintln!("5. cold start…");
            rows.extend(scenarios::cold_start::run(runs).await);
        }
        rows
    });
    let command = match cli.scenario {
        Scenario::All => format!("cargo run --release -p sb-bench -- all --runs {runs}"),
        _ => format!("cargo run --release -p sb-bench -- <scenario> --runs {runs}"),
    };
    let block = report::render_block(&machine, runs, &command, &rows);
    println!();
    println!("{block}");
    if cli.scenario == Scenario::All && !cli.no_write {
        let path = sb_bench::workspace_root()?.join(report::DOCUMENT);
        let page = std::fs::read_to_string(&path)?;
        std::fs::write(&path, report::rewrite_between_markers(&page, &block)?)?;
        eprintln!("wrote the table into {}", report::DOCUMENT);
    }
    Ok(())
}
