//! The signaling service's settings, read once from the environment at start-up.

use std::time::Duration;

use sb_auth::AuthConfig;
use sb_db::DatabaseConfig;
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_platform::Env;
use sb_platform::config::{ConfigError, Environment, HttpConfig, LogConfig, NatsConfig};
use secrecy::SecretString;

/// Port of the signaling service when `PORT` is not set (the seed's clients use 3000).
pub const DEFAULT_PORT: u16 = 3000;

#[derive(Debug, Clone)]
pub struct SignalingConfig {
    pub environment: Environment,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub namespace: Namespace,
    pub streams: StreamSettings,
    pub auth: AuthConfig,
    pub ice: IceConfig,
    pub socket: SocketConfig,
    /// A participant whose connection drops comes back within this without the peer seeing
    /// `user-left`/`user-joined`.
    pub reconnect_grace: Duration,
    /// How often rooms of past appointments are ended.
    pub cleanup_interval: Duration,
    /// A room is ended this long after its appointment's end (or start, without an end).
    pub cleanup_after: Duration,
    /// The appointment's window (guest links, resume) and the guest-link key.
    pub guest_links: GuestLinkConfig,
}

/// The appointment's window and guest links: the platform's guest-link key and window (the
/// variables video reads too; the links' own audience keeps the two services' links apart).
#[derive(Debug, Clone)]
pub struct GuestLinkConfig {
    /// `None`: this deployment has no key, guest links are off (the window still applies).
    pub secret: Option<SecretString>,
    /// The window opens this long before the appointment (and a guest link with it)…
    pub open_before: Duration,
    /// …and closes this long after its end: an Ended room resumes until then.
    pub close_after: Duration,
}

/// STUN and TURN servers handed to clients in `joined-room`.
#[derive(Clone)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`; no TURN entry is handed out without it.
    pub turn_secret: Option<SecretString>,
    pub turn_ttl: Duration,
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("turn_ttl", &self.turn_ttl)
            .finish()
    }
}

/// Socket.IO limits.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub max_payload: usize,
    pub events_per_second: u32,
    pub event_burst: u32,
    /// Browser origins allowed besides the service's own; never `*`.
    pub cors_origins: Vec<String>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalingConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] sb_auth::AuthConfigError),
    #[error("CORS_ORIGINS must list origins, not `*`")]
    WildcardOrigin,
    #[error("GUEST_LINK_SECRET must be at least 32 characters")]
    GuestLinkSecretTooShort,
}

/// Signs guest links in development when `GUEST_LINK_SECRET` is unset.
const DEV_GUEST_LINK_SECRET: &str = "switchboard-dev-guest-link-secret";

impl GuestLinkConfig {
    /// In production, guest links need `GUEST_LINK_SECRET`: without it they are off (the
    /// service still starts); in development a fixed key stands in.
    fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, SignalingConfigError> {
        let secret: Option<String> = env.optional("GUEST_LINK_SECRET")?;
        let secret = match (secret, environment) {
            (Some(secret), _) if secret.len() >= 32 => Some(secret),
            (Some(_), _) => return Err(SignalingConfigError::GuestLinkSecretTooShort),
            (None, Environment::Production) => None,
            (None, Environment::Development) => Some(DEV_GUEST_LINK_SECRET.to_owned()),
        };
        Ok(Self {
            secret: secret.map(SecretString::from),
            open_before: env.duration("GUEST_LINK_OPEN_BEFORE", Duration::from_secs(30 * 60))?,
            close_after: env.duration("GUEST_LINK_CLOSE_AFTER", Duration::from_secs(2 * 3600))?,
        })
    }
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SignalingConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SignalingConfigError> {
        let environment = LogConfig::from_env(env)?.environment;
        let cors_origins = list(&env.or("CORS_ORIGINS", String::new())?);
        if cors_origins.iter().any(|o| o == "*") {
            return Err(SignalingConfigError::WildcardOrigin);
        }
        let turn_secret: Option<String> = env.optional("TURN_SHARED_SECRET")?;
        Ok(Self {
            environment,
            http: HttpConfig::from_env(env, DEFAULT_PORT)?,
            database: DatabaseConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
            namespace: Namespace::from_env(env)?,
            streams: StreamSettings::from_env(env)?,
            auth: AuthConfig::from_env(env, environment)?,
            ice: IceConfig {
                stun_urls: list(&env.or("STUN_URLS", "stun:stun.l.google.com:19302".to_owned())?),
                turn_urls: list(&env.or("TURN_URLS", String::new())?),
                turn_secret: turn_secret.map(SecretString::from),
                turn_ttl: env.duration("TURN_CREDENTIAL_TTL", Duration::from_secs(6 * 3600))?,
            },
            socket: SocketConfig {
                max_payload: env.or("SIGNALING_MAX_PAYLOAD", 64 * 1024)?,
                events_per_second: env.or("SIGNALING_EVENTS_PER_SECOND", 50)?,
                event_burst: env.or("SIGNALING_EVENT_BURST", 200)?,
                cors_origins,
                ping_interval: env.duration("SIGNALING_PING_INTERVAL", Duration::from_secs(25))?,
                ping_timeout: env.duration("SIGNALING_PING_TIMEOUT", Duration::from_secs(20))?,
            },
            reconnect_grace: env.duration("SIGNALING_RECONNECT_GRACE", Duration::from_secs(10))?,
            cleanup_interval: env
                .duration("SIGNALING_CLEANUP_INTERVAL", Duration::from_secs(300))?,
            cleanup_after: env
                .duration("SIGNALING_CLEANUP_AFTER", Duration::from_secs(4 * 3600))?,
            guest_links: GuestLinkConfig::from_env(env, environment)?,
        })
    }
}
