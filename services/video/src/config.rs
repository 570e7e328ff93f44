//! The video service's settings, read once from the environment at start-up.

use std::time::Duration;

use sb_auth::AuthConfig;
use sb_db::DatabaseConfig;
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_livekit::LiveKitConfig;
use sb_platform::Env;
use sb_platform::config::{ConfigError, Environment, HttpConfig, LogConfig, NatsConfig};
use secrecy::SecretString;

/// Port of the video service when `PORT` is not set (`switchboard up` uses it too).
pub const DEFAULT_PORT: u16 = 3001;

/// Signs guest links in development when `GUEST_LINK_SECRET` is unset; refused in production.
const DEV_GUEST_LINK_SECRET: &str = "switchboard-dev-guest-link-secret";

#[derive(Debug, Clone)]
pub struct VideoConfig {
    pub environment: Environment,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub namespace: Namespace,
    pub streams: StreamSettings,
    pub auth: AuthConfig,
    pub livekit: LiveKitConfig,
    /// Longest wait for one LiveKit server API call before the request answers 503.
    pub livekit_timeout: Duration,
    pub guest_links: GuestLinkConfig,
    pub recording: RecordingConfig,
    pub reconcile: ReconcileConfig,
}

#[derive(Clone)]
pub struct GuestLinkConfig {
    pub secret: SecretString,
    /// Page of the frontend that opens a guest link; the token is appended as `?token=`.
    pub base_url: String,
    /// How long before the appointment a link opens, and how long after its end it closes.
    pub open_before: Duration,
    pub close_after: Duration,
}

impl std::fmt::Debug for GuestLinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLinkConfig")
            .field("secret", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("open_before", &self.open_before)
            .field("close_after", &self.close_after)
            .finish()
    }
}

/// Where LiveKit egress writes recordings: an S3-compatible bucket, or (unset) the egress
/// service's own default storage.
#[derive(Clone)]
pub struct RecordingConfig {
    pub s3: Option<S3Config>,
    /// Key prefix of recording files: `<prefix>/<orgId>/<callId>/<time>.mp4`.
    pub prefix: String,
    /// A recording still starting or active this long after its call ended is marked FAILED.
    pub stuck_after: Duration,
}

impl std::fmt::Debug for RecordingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingConfig")
            .field(
                "s3",
                &self
                    .s3
                    .as_ref()
                    .map(|s| (&s.bucket, &s.region, &s.endpoint, &s.retention)),
            )
            .field("prefix", &self.prefix)
            .field("stuck_after", &self.stuck_after)
            .finish()
    }
}

#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Custom endpoint for S3-compatible stores (MinIO, R2, Scaleway…); empty for AWS.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: SecretString,
    pub force_path_style: bool,
    /// Finished recordings in the bucket older than this are deleted (file and row) by the
    /// reconciliation job; `None` keeps them (`VIDEO_RECORDING_RETENTION`). It belongs to the
    /// bucket: files egress keeps elsewhere are not this service's to delete.
    pub retention: Option<Duration>,
}

/// The periodic job that repairs what lost or late webhooks left behind.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub interval: Duration,
    /// An ongoing call whose LiveKit room has been empty this long is completed.
    pub empty_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] sb_auth::AuthConfigError),
    #[error(transparent)]
    LiveKit(#[from] sb_livekit::LiveKitConfigError),
    #[error("GUEST_LINK_SECRET must be set in production (at least 32 characters)")]
    GuestLinkSecretMissing,
    #[error("RECORDING_S3_{0} must be set when RECORDING_S3_BUCKET is")]
    S3Incomplete(&'static str),
    #[error(
        "VIDEO_RECORDING_RETENTION deletes recordings from RECORDING_S3_BUCKET, which is not set"
    )]
    RetentionWithoutBucket,
}

impl VideoConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, VideoConfigError> {
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
            guest_links: GuestLinkConfig::from_env(env, environment)?,
            recording: RecordingConfig::from_env(env)?,
            reconcile: ReconcileConfig {
                interval: env.duration("VIDEO_RECONCILE_INTERVAL", Duration::from_secs(60))?,
                empty_grace: env.duration("VIDEO_EMPTY_ROOM_GRACE", Duration::from_secs(120))?,
            },
        })
    }
}

impl GuestLinkConfig {
    fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, VideoConfigError> {
        let secret: Option<String> = env.optional("GUEST_LINK_SECRET")?;
        let secret = match (secret, environment) {
            (Some(secret), _) if secret.len() >= 32 => secret,
            (Some(_), Environment::Production) | (None, Environment::Production) => {
                return Err(VideoConfigError::GuestLinkSecretMissing);
            }
            (_, Environment::Development) => DEV_GUEST_LINK_SECRET.to_owned(),
        };
        Ok(Self {
            secret: secret.into(),
            base_url: env.or(
                "GUEST_LINK_BASE_URL",
                "http://localhost:3000/call/guest".to_owned(),
            )?,
            open_before: env.duration("GUEST_LINK_OPEN_BEFORE", Duration::from_secs(30 * 60))?,
            close_after: env.duration("GUEST_LINK_CLOSE_AFTER", Duration::from_secs(2 * 3600))?,
        })
    }
}

impl RecordingConfig {
    fn from_env(env: &Env<'_>) -> Result<Self, VideoConfigError> {
        let bucket: Option<String> = env.optional("RECORDING_S3_BUCKET")?;
        let retention: Option<String> = env.optional("VIDEO_RECORDING_RETENTION")?;
        let retention = match retention {
            Some(_) => Some(env.duration("VIDEO_RECORDING_RETENTION", Duration::ZERO)?),
            None => None,
        };
        let s3 = match bucket {
            None if retention.is_some() => return Err(VideoConfigError::RetentionWithoutBucket),
            None => None,
            Some(bucket) => {
                let access_key: Option<String> = env.optional("RECORDING_S3_ACCESS_KEY")?;
                let secret_key: Option<String> = env.optional("RECORDING_S3_SECRET_KEY")?;
                Some(S3Config {
                    bucket,
                    region: env.or("RECORDING_S3_REGION", "us-east-1".to_owned())?,
                    endpoint: env.or("RECORDING_S3_ENDPOINT", String::new())?,
                    access_key: access_key.ok_or(VideoConfigError::S3Incomplete("ACCESS_KEY"))?,
                    secret_key: secret_key
                        .ok_or(VideoConfigError::S3Incomplete("SECRET_KEY"))?
                        .into(),
                    force_path_style: env.flag("RECORDING_S3_FORCE_PATH_STYLE", false)?,
                    retention,
                })
            }
        };
        Ok(Self {
            s3,
            prefix: env.or("RECORDING_S3_PREFIX", "recordings".to_owned())?,
            stuck_after: env.duration("RECORDING_STUCK_AFTER", Duration::from_secs(15 * 60))?,
        })
    }
}
