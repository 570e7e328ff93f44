//! The telephony service's settings, read once from the environment at start-up.

use std::time::Duration;

use sb_auth::AuthConfig;
use sb_db::DatabaseConfig;
use sb_events::Namespace;
use sb_events::streams::StreamSettings;
use sb_platform::Env;
use sb_platform::config::{ConfigError, Environment, HttpConfig, LogConfig, NatsConfig};
use secrecy::SecretString;

use crate::domain::destination::DestinationPolicy;
use crate::domain::quality::Thresholds;

/// Port of the telephony service when `PORT` is not set (the seed's 3005; `switchboard up` too).
pub const DEFAULT_PORT: u16 = 3005;

/// Development stand-ins for the Twilio credentials, refused in production. With them the
/// service runs (webhooks signed with the dev token, e.g. by `switchboard telephony simulate`)
/// but Twilio itself refuses every REST call.
pub const DEV_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const DEV_AUTH_TOKEN: &str = "switchboard-dev-twilio-auth-token";
pub const DEV_API_KEY_SID: &str = "SK00000000000000000000000000000000";
pub const DEV_API_KEY_SECRET: &str = "switchboard-dev-twilio-api-key-secret";

#[derive(Debug, Clone)]
pub struct TelephonyConfig {
    pub environment: Environment,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub namespace: Namespace,
    pub streams: StreamSettings,
    pub auth: AuthConfig,
    pub twilio: TwilioConfig,
    /// The service's URL as Twilio reaches it (scheme, host, port, gateway prefix; no trailing
    /// slash): TwiML and callback URLs are built from it and webhook signatures checked against
    /// it, never against the Host header (TLS-terminating gateways change that).
    pub public_base_url: String,
    pub rate_limit: RateLimitConfig,
    /// The toll-fraud guard's blocked ranges (`TELEPHONY_BLOCKED_PREFIXES`).
    pub destinations: DestinationPolicy,
    /// Recordings and voicemails older than this are deleted (here and at Twilio) by the
    /// follow-up job; `None` keeps them (`TELEPHONY_RECORDING_RETENTION`).
    pub recording_retention: Option<Duration>,
    pub followup: FollowupConfig,
    pub quality: Thresholds,
}

#[derive(Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: SecretString,
    /// REST API root (`https://api.twilio.com`; the fake's address in tests).
    pub api_base: String,
    /// Voice Insights API root (`https://insights.twilio.com`).
    pub insights_base: String,
    /// The budget of one Twilio operation, resends of a busy Twilio included, before the
    /// request answers 503.
    pub timeout: Duration,
    pub voice: VoiceTokenConfig,
    /// Fetch Voice Insights call summaries (needs Voice Insights Advanced Features).
    pub insights_enabled: bool,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("api_base", &self.api_base)
            .field("insights_base", &self.insights_base)
            .field("timeout", &self.timeout)
            .field("voice", &self.voice)
            .field("insights_enabled", &self.insights_enabled)
            .finish()
    }
}

/// What the mobile apps' Voice SDK access tokens are made of.
#[derive(Clone)]
pub struct VoiceTokenConfig {
    /// API key (`SK…`) and secret the tokens are signed with; `None`: tokens are not available.
    pub api_key: Option<(String, SecretString)>,
    /// TwiML application (`AP…`) the app's outgoing calls go through.
    pub twiml_app_sid: Option<String>,
    /// Push credentials (`CR…`) for incoming-call pushes: CallKit (APNs) and Telecom (FCM).
    pub push_credential_apns: Option<String>,
    pub push_credential_fcm: Option<String>,
    pub ttl: Duration,
}

impl std::fmt::Debug for VoiceTokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceTokenConfig")
            .field("api_key", &self.api_key.as_ref().map(|(sid, _)| sid))
            .field("twiml_app_sid", &self.twiml_app_sid)
            .field("push_credential_apns", &self.push_credential_apns)
            .field("push_credential_fcm", &self.push_credential_fcm)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Calls a user may start per window, counted in Postgres so every replica shares the count.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub calls: u32,
    pub window: Duration,
}

/// The job that follows calls up after they end: price, Voice Insights, lost callbacks.
#[derive(Debug, Clone, Copy)]
pub struct FollowupConfig {
    pub interval: Duration,
    /// First wait after a call ends; doubles per attempt (up to 30 minutes).
    pub first_delay: Duration,
    /// Twilio fills a call's price minutes after it ends; after this long the job stops asking.
    pub cost_give_up_after: Duration,
    /// Voice Insights completes a summary within 30 minutes; after this long the job stops.
    pub quality_give_up_after: Duration,
    /// A call still unfinished with no news for this long is fetched from Twilio (its status
    /// callbacks may have been lost: Twilio does not retry them).
    pub stale_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TelephonyConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] sb_auth::AuthConfigError),
    #[error("{0} must be set in production (the development value is refused)")]
    DevValueInProduction(&'static str),
    #[error("PUBLIC_BASE_URL must be an http(s) URL without query or fragment, got {0:?}")]
    PublicBaseUrl(String),
    #[error("TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET must be set together")]
    ApiKeyIncomplete,
    #[error("TELEPHONY_BLOCKED_PREFIXES: {0}")]
    BlockedPrefixes(String),
}

fn base_url(name: &'static str, raw: String) -> Result<String, ConfigError> {
    if !(raw.starts_with("http://") || raw.starts_with("https://")) {
        return Err(ConfigError::Malformed {
            name,
            reason: format!("expected an http:// or https:// URL, got {raw:?}"),
        });
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

impl TelephonyConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, TelephonyConfigError> {
        let environment = LogConfig::from_env(env)?.environment;
        let http = HttpConfig::from_env(env, DEFAULT_PORT)?;
        let public_base_url: Option<String> = env.optional("PUBLIC_BASE_URL")?;
        let public_base_url = match public_base_url {
            Some(url) => parse_public_base_url(&url)?,
            None if environment == Environment::Production => {
                return Err(ConfigError::Missing {
                    name: "PUBLIC_BASE_URL",
                    hint: "the https URL Twilio reaches this service at, e.g. https://api.example.com/telephony",
                }
                .into());
            }
            None => format!("http://127.0.0.1:{}", http.port),
        };
        let blocked_prefixes: Option<String> = env.optional("TELEPHONY_BLOCKED_PREFIXES")?;
        let destinations = match blocked_prefixes {
            Some(list) => {
                DestinationPolicy::parse(&list).map_err(TelephonyConfigError::BlockedPrefixes)?
            }
            None => DestinationPolicy::default(),
        };
        let retention: Option<String> = env.optional("TELEPHONY_RECORDING_RETENTION")?;
        let recording_retention = match retention {
            Some(_) => Some(env.duration("TELEPHONY_RECORDING_RETENTION", Duration::ZERO)?),
            None => None,
        };
        Ok(Self {
            environment,
            http,
            database: DatabaseConfig::from_env(env)?,
            nats: NatsConfig::from_env(env)?,
            namespace: Namespace::from_env(env)?,
            streams: StreamSettings::from_env(env)?,
            auth: AuthConfig::from_env(env, environment)?,
            twilio: TwilioConfig::from_env(env, environment)?,
            public_base_url,
            rate_limit: RateLimitConfig {
                calls: env.or("TELEPHONY_CALL_RATE_LIMIT", 10)?,
                window: env.duration("TELEPHONY_CALL_RATE_WINDOW", Duration::from_secs(60))?,
            },
            destinations,
            recording_retention,
            followup: FollowupConfig {
                interval: env.duration("TELEPHONY_FOLLOWUP_INTERVAL", Duration::from_secs(30))?,
                first_delay: env
                    .duration("TELEPHONY_FOLLOWUP_FIRST_DELAY", Duration::from_secs(30))?,
                cost_give_up_after: env.duration(
                    "TELEPHONY_COST_GIVE_UP_AFTER",
                    Duration::from_secs(6 * 3600),
                )?,
                quality_give_up_after: env
                    .duration("TELEPHONY_QUALITY_GIVE_UP_AFTER", Duration::from_secs(3600))?,
                stale_after: env
                    .duration("TELEPHONY_STALE_CALL_AFTER", Duration::from_secs(15 * 60))?,
            },
            quality: Thresholds {
                min_mos: env.or("TELEPHONY_QUALITY_MIN_MOS", 3.5)?,
                max_packet_loss_percent: env.or("TELEPHONY_QUALITY_MAX_PACKET_LOSS", 3.0)?,
                max_jitter_ms: env.or("TELEPHONY_QUALITY_MAX_JITTER_MS", 30.0)?,
            },
        })
    }
}

/// `PUBLIC_BASE_URL` without its trailing slash; refuses queries and fragments, which would end
/// up in the middle of every callback URL.
pub fn parse_public_base_url(raw: &str) -> Result<String, TelephonyConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let valid = url::Url::parse(trimmed).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.query().is_none()
            && url.fragment().is_none()
    });
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(TelephonyConfigError::PublicBaseUrl(raw.to_owned()))
    }
}

impl TwilioConfig {
    fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, TelephonyConfigError> {
        let production = environment == Environment::Production;
        let account_sid: String = env.or("TWILIO_ACCOUNT_SID", DEV_ACCOUNT_SID.to_owned())?;
        let auth_token: String = env.or("TWILIO_AUTH_TOKEN", DEV_AUTH_TOKEN.to_owned())?;
        if production && account_sid == DEV_ACCOUNT_SID {
            return Err(TelephonyConfigError::DevValueInProduction(
                "TWILIO_ACCOUNT_SID",
            ));
        }
        if production && auth_token == DEV_AUTH_TOKEN {
            return Err(TelephonyConfigError::DevValueInProduction(
                "TWILIO_AUTH_TOKEN",
            ));
        }
        let key_sid: Option<String> = env.optional("TWILIO_API_KEY_SID")?;
        let key_secret: Option<String> = env.optional("TWILIO_API_KEY_SECRET")?;
        let api_key = match (key_sid, key_secret) {
            (Some(sid), Some(secret)) => Some((sid, secret.into())),
            (None, None) if !production => Some((
                DEV_API_KEY_SID.to_owned(),
                DEV_API_KEY_SECRET.to_owned().into(),
            )),
            (None, None) => None,
            _ => return Err(TelephonyConfigError::ApiKeyIncomplete),
        };
        Ok(Self {
            account_sid,
            auth_token: auth_token.into(),
            api_base: base_url(
                "TWILIO_API_BASE",
                env.or("TWILIO_API_BASE", "https://api.twilio.com".to_owned())?,
            )?,
            insights_base: base_url(
                "TWILIO_INSIGHTS_BASE",
                env.or(
                    "TWILIO_INSIGHTS_BASE",
                    "https://insights.twilio.com".to_owned(),
                )?,
            )?,
            timeout: env.duration("TWILIO_TIMEOUT", Duration::from_secs(5))?,
            voice: VoiceTokenConfig {
                api_key,
                twiml_app_sid: env.optional("TWILIO_TWIML_APP_SID")?,
                push_credential_apns: env.optional("TWILIO_PUSH_CREDENTIAL_SID_APNS")?,
                push_credential_fcm: env.optional("TWILIO_PUSH_CREDENTIAL_SID_FCM")?,
                ttl: env.duration("TWILIO_VOICE_TOKEN_TTL", Duration::from_secs(3600))?,
            },
            insights_enabled: env.flag("TWILIO_INSIGHTS_ENABLED", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_dev_credentials_and_needs_a_public_url() {
        let src = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-production-secret-that-is-long-enough"),
        ];
        let err = TelephonyConfig::from_env(&Env::new(&src)).unwrap_err();
        assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{err}");
        let src = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-production-secret-that-is-long-enough"),
            ("PUBLIC_BASE_URL", "https://api.example.com/telephony/"),
        ];
        let err = TelephonyConfig::from_env(&Env::new(&src)).unwrap_err();
        assert!(err.to_string().contains("TWILIO_ACCOUNT_SID"), "{err}");
    }

    #[test]
    fn development_defaults_follow_the_port() {
        let src = [("PORT", "4005")];
        let config = TelephonyConfig::from_env(&Env::new(&src)).unwrap();
        assert_eq!(config.public_base_url, "http://127.0.0.1:4005");
        assert_eq!(config.rate_limit.calls, 10);
        assert_eq!(config.quality.min_mos, 3.5);
        assert!(config.twilio.voice.api_key.is_some());
        assert!(!format!("{config:?}").contains(DEV_AUTH_TOKEN));
    }

    #[test]
    fn public_base_urls_are_checked() {
        assert_eq!(
            parse_public_base_url("https://api.example.com/telephony/").unwrap(),
            "https://api.example.com/telephony"
        );
        assert!(parse_public_base_url("api.example.com").is_err());
        assert!(parse_public_base_url("https://x.test/?a=1").is_err());
    }
}
