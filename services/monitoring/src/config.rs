//! The monitoring service's settings, read once from the environment at start-up.

use std::time::Duration;

use sb_auth::AuthConfig;
use sb_db::DatabaseConfig;
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_livekit::LiveKitConfig;
use sb_platform::Env;
use sb_platform::config::{ConfigError, Environment, HttpConfig, LogConfig, NatsConfig};

/// Port of the monitoring service when `PORT` is not set (`switchboard up` uses it too).
pub const DEFAULT_PORT: u16 = 3002;

#[derive(Debug, Clone)]
pub struct MonitoringConfig {
    pub environment: Environment,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub namespace: Namespace,
    pub streams: StreamSettings,
    pub auth: AuthConfig,
    pub livekit: LiveKitConfig,
    pub livekit_timeout: Duration,
    /// Lifetime of a rep's token (the seed's 15 minutes); the rep's app renews it.
    pub rep_token_ttl: Duration,
    /// Lifetime of a supervisor's listen token; the session stops unless renewed in time.
    pub supervisor_token_ttl: Duration,
    pub reconcile_interval: Duration,
    /// Connections younger than this are not closed by the job (its LiveKit list may predate them).
    pub reconcile_min_age: Duration,
    /// Comment sent on idle live streams so proxies keep them open.
    pub stream_keepalive: Duration,
    /// How long a stream ticket may wait to be redeemed.
    pub stream_ticket_ttl: Duration,
    /// Most events replayed after `Last-Event-ID`; further behind, the client gets `reset`.
    pub stream_replay_max: u64,
    /// Oldest event replayed after `Last-Event-ID`; older, the client gets `reset`.
    pub stream_replay_window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitoringConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] sb_auth::AuthConfigError),
    #[error(transparent)]
    LiveKit(#[from] sb_livekit::LiveKitConfigError),
}

impl MonitoringConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, MonitoringConfigError> {
        let environment = LogConfig::from_env(env)?.environment;
        Ok(Self {
            environment,
            http: HttpConfig::from_env(env, DEFAULT_PORT)?,
            database: DatabaseConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
            namespace: Namespace::from_env(env)?,
            streams: StreamSettings::from_env(env)?,
            auth: AuthConfig::from_env(env, environment)?,
            livekit: LiveKitConfig::from_env(env, environment)?,
            livekit_timeout: env.duration("LIVEKIT_TIMEOUT", Duration::from_secs(5))?,
            rep_token_ttl: env
                .duration("MONITORING_REP_TOKEN_TTL", Duration::from_secs(15 * 60))?,
            supervisor_token_ttl: env.duration(
                "MONITORING_SUPERVISOR_TOKEN_TTL",
                Duration::from_secs(5 * 60),
            )?,
            reconcile_interval: env
                .duration("MONITORING_RECONCILE_INTERVAL", Duration::from_secs(30))?,
            reconcile_min_age: env
                .duration("MONITORING_RECONCILE_MIN_AGE", Duration::from_secs(30))?,
            stream_keepalive: env
                .duration("MONITORING_STREAM_KEEPALIVE", Duration::from_secs(15))?,
            stream_ticket_ttl: env
                .duration("MONITORING_STREAM_TICKET_TTL", Duration::from_secs(30))?,
            stream_replay_max: env
                .optional("MONITORING_STREAM_REPLAY_MAX")?
                .unwrap_or(1000),
            stream_replay_window: env.duration(
                "MONITORING_STREAM_REPLAY_WINDOW",
                Duration::from_secs(10 * 60),
            )?,
        })
    }
}
