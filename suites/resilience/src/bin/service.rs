//! Runs one service of the stack, named on the command line, from the process environment, until
//! SIGTERM: the fault tests start it as a real process to send it signals.

use sb_platform::config::LogConfig;
use sb_platform::{Env, ProcessEnv};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let name = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: service <{}>", sb_resilience::SERVICES.join("|")))?;
    let env = Env::new(&ProcessEnv);
    sb_platform::telemetry::init(&LogConfig::from_env(&env)?);
    let app = sb_resilience::build_service(&name, &env).await?;
    // The parent reads the port from this line.
    println!("listening on {}", app.port());
    app.run_until_signal().await?;
    println!("stopped");
    Ok(())
}
