//! `switchboard token`

use std::time::Duration;

use sb_auth::{AuthConfig, OrgId, Principal, Role, TeamId, TokenMinter, UserId};
use sb_platform::config::{Environment, LogConfig};
use sb_platform::{Env, ProcessEnv};

/// Org and user of the dev stack's sample data, so tokens work without looking up ids.
pub const DEV_ORG: &str = "0190a000-0000-7000-8000-000000000001";
/// The CEO of the seeded org (see `switchboard seed`).
pub const DEV_USER: &str = "0190a000-0000-7000-8001-000000000101";

#[derive(clap::Args)]
pub struct Args {
    /// ADMIN, CEO, DIRECTOR, MANAGER, CLOSER, SETTER or MEMBER.
    #[arg(long)]
    role: Role,
    /// Org id (UUID).
    #[arg(long, default_value = DEV_ORG)]
    org: OrgId,
    /// User id (UUID), the token's subject.
    #[arg(long, default_value = DEV_USER)]
    user: UserId,
    /// Team id (UUID); repeat for several teams.
    #[arg(long = "team")]
    teams: Vec<TeamId>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    ttl_minutes: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    let environment = LogConfig::from_env(&env)?.environment;
    if environment == Environment::Production {
        anyhow::bail!(
            "switchboard token mints development tokens; it refuses to run with APP_ENV=production"
        );
    }
    let config = AuthConfig::from_env(&env, environment)?;
    let minter = TokenMinter::from_config(&config)?;
    let principal = Principal {
        user_id: args.user,
        org_id: args.org,
        role: args.role,
        teams: args.teams,
        name: args.name,
    };
    println!(
        "{}",
        minter.mint(
            &principal,
            Duration::from_secs(args.ttl_minutes.saturating_mul(60))
        )?
    );
    Ok(())
}
