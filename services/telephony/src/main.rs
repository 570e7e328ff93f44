//! `sb-telephony`: the telephony service on its own (production, or `cargo run -p sb-telephony`).

use sb_platform::config::LogConfig;
use sb_platform::{Env, ProcessEnv};
use sb_telephony::TelephonyConfig;

#[global_allocator]
static ALLOCATOR: sb_platform::Allocator = sb_platform::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    sb_platform::telemetry::init(&LogConfig::from_env(&env)?);
    let config = TelephonyConfig::from_env(&env)?;
    let app = sb_telephony::build(config).await?;
    tracing::info!(port = app.port(), "telephony service listening");
    app.run_until_signal().await?;
    Ok(())
}
