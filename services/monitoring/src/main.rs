//! `sb-monitoring`: the monitoring service on its own (production, or `cargo run -p sb-monitoring`).

use sb_monitoring::MonitoringConfig;
use sb_platform::config::LogConfig;
use sb_platform::{Env, ProcessEnv};

#[global_allocator]
static ALLOCATOR: sb_platform::Allocator = sb_platform::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    sb_platform::telemetry::init(&LogConfig::from_env(&env)?);
    let config = MonitoringConfig::from_env(&env)?;
    let app = sb_monitoring::build(config).await?;
    tracing::info!(port = app.port(), "monitoring service listening");
    app.run_until_signal().await?;
    Ok(())
}
