//! `switchboard`: run the whole dev stack in one process, apply migrations, mint dev tokens.

mod events;
mod migrate;
mod seed;
mod telephony;
mod token;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: real-time communication backend (video, telephony, signaling, monitoring)",
    long_about = "Switchboard: real-time communication backend (video, telephony, signaling, monitoring).\n\n\
        Configuration comes from the environment (see the README's configuration table); the defaults \
        point at PostgreSQL on 127.0.0.1:5432 (user postgres) and NATS on 127.0.0.1:4222.\n\n\
        First steps:\n  \
        switchboard up                          start everything on this machine\n  \
        switchboard token --role CEO            print a dev JWT to call the APIs with\n  \
        switchboard seed                        publish sample CRM appointments\n  \
        switchboard events tail                 watch events as they are published\n  \
        switchboard telephony simulate inbound  play a Twilio call into the telephony service\n  \
        switchboard migrate                     apply database migrations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process, each on its own port, against local Postgres and NATS.
    Up(up::Args),
    /// Apply pending database migrations (under an advisory lock: safe from several replicas).
    Migrate(migrate::Args),
    /// Print a development JWT signed with JWT_SECRET (or the dev default).
    Token(token::Args),
    /// Publish sample CRM appointment events (two orgs, teams, closers, setters).
    Seed(seed::Args),
    /// Watch the event streams.
    #[command(subcommand)]
    Events(events::Command),
    /// Telephony dev tools: `simulate inbound|status|dial|recording` posts signed Twilio webhooks.
    #[command(subcommand)]
    Telephony(telephony::Command),
}

#[global_allocator]
static ALLOCATOR: sb_platform::Allocator = sb_platform::Allocator;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sb_platform::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Seed(args) => seed::run(args).await,
            Command::Events(command) => events::run(command).await,
            Command::Telephony(command) => telephony::run(command).await,
        }
    })
}
