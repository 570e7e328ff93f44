//! LiveKit settings from the environment; defaults match `livekit-server --dev`.

use std::time::Duration;

use sb_platform::config::{ConfigError, Env, Environment};
use secrecy::{ExposeSecret, SecretString};

/// `livekit-server --dev` credentials: accepted in development only.
pub const DEV_API_KEY: &str = "devkey";
pub const DEV_API_SECRET: &str = "secret";

#[derive(Clone)]
pub struct LiveKitConfig {
    /// What clients connect to (`ws://` or `wss://`).
    pub url: String,
    pub api_key: String,
    pub api_secret: SecretString,
    /// Lifetime of participant tokens unless a caller asks otherwise.
    pub token_ttl: Duration,
}

impl std::fmt::Debug for LiveKitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveKitConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set in production (the dev credentials are refused)"
    )]
    DevCredentialsInProduction,
}

impl LiveKitConfig {
    pub const DEFAULT_URL: &'static str = "ws://localhost:7880";

    /// `LIVEKIT_URL` (or `LIVEKIT_API_URL`, the name seed 000 uses), `LIVEKIT_API_KEY`,
    /// `LIVEKIT_API_SECRET`, `LIVEKIT_TOKEN_TTL` (default 10 minutes: short, renewed by clients).
    pub fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, LiveKitConfigError> {
        let url: String = env.first_of(
            &["LIVEKIT_URL", "LIVEKIT_API_URL"],
            Self::DEFAULT_URL.to_owned(),
        )?;
        if !["ws://", "wss://", "http://", "https://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::Malformed {
                name: "LIVEKIT_URL",
                reason: format!("expected ws://, wss://, http:// or https://, got {url:?}"),
            }
            .into());
        }
        let api_key: String = env.or("LIVEKIT_API_KEY", DEV_API_KEY.to_owned())?;
        let api_secret: String = env.or("LIVEKIT_API_SECRET", DEV_API_SECRET.to_owned())?;
        if environment == Environment::Production
            && (api_key == DEV_API_KEY || api_secret == DEV_API_SECRET)
        {
            return Err(LiveKitConfigError::DevCredentialsInProduction);
        }
        Ok(Self {
            url,
            api_key,
            api_secret: api_secret.into(),
            token_ttl: env.duration("LIVEKIT_TOKEN_TTL", Duration::from_secs(600))?,
        })
    }

    /// The dev server's settings.
    pub fn dev(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            api_key: DEV_API_KEY.to_owned(),
            api_secret: DEV_API_SECRET.to_owned().into(),
            token_ttl: Duration::from_secs(600),
        }
    }

    /// The HTTP base of the server API (Twirp): `ws` becomes `http`, `wss` becomes `https`.
    pub fn api_url(&self) -> String {
        if let Some(rest) = self.url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = self.url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            self.url.clone()
        }
    }

    pub(crate) fn secret(&self) -> &str {
        self.api_secret.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_and_the_seed_000_alias() {
        let none: [(&str, &str); 0] = [];
        let dev = LiveKitConfig::from_env(&Env::new(&none), Environment::Development).unwrap();
        assert_eq!(
            (dev.url.as_str(), dev.api_key.as_str()),
            ("ws://localhost:7880", "devkey")
        );
        assert_eq!(dev.api_url(), "http://localhost:7880");
        let alias = [("LIVEKIT_API_URL", "wss://lk.example.com")];
        let config = LiveKitConfig::from_env(&Env::new(&alias), Environment::Development).unwrap();
        assert_eq!(config.api_url(), "https://lk.example.com");
    }

    #[test]
    fn production_refuses_dev_credentials_and_hides_the_secret() {
        let none: [(&str, &str); 0] = [];
        assert!(matches!(
            LiveKitConfig::from_env(&Env::new(&none), Environment::Production),
            Err(LiveKitConfigError::DevCredentialsInProduction)
        ));
        let real = [
            ("LIVEKIT_API_KEY", "APIabc"),
            ("LIVEKIT_API_SECRET", "very-secret-value"),
        ];
        let config = LiveKitConfig::from_env(&Env::new(&real), Environment::Production).unwrap();
        assert!(!format!("{config:?}").contains("very-secret-value"));
        let bad = [("LIVEKIT_URL", "localhost:7880")];
        let err = LiveKitConfig::from_env(&Env::new(&bad), Environment::Development).unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_URL"), "{err}");
    }
}
