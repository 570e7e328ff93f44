//! `switchboard migrate`

use sb_db::DatabaseConfig;
use sb_platform::{Env, ProcessEnv};

#[derive(clap::Args)]
pub struct Args {
    /// List pending migrations and exit non-zero if there are any, without applying them.
    #[arg(long)]
    check: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = DatabaseConfig::from_env(&Env::new(&ProcessEnv))?;
    if args.check {
        let pending = sb_db::migrate::pending(&config).await?;
        if pending.is_empty() {
            println!("{}: up to date", config.redacted_url());
            return Ok(());
        }
        for name in &pending {
            println!("pending: {name}");
        }
        anyhow::bail!("{} pending migration(s)", pending.len());
    }
    let applied = sb_db::migrate::run_pending(&config).await?;
    if applied.is_empty() {
        println!("{}: up to date", config.redacted_url());
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
}
