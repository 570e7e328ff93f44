//! Database settings from the environment.

use std::time::Duration;

use sb_platform::config::{ConfigError, Env};
use secrecy::{ExposeSecret, SecretString};

#[derive(Clone)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`; redacted from `Debug`.
    pub url: SecretString,
    pub max_connections: usize,
    /// Longest a request waits for a free connection before failing with 503.
    pub acquire_timeout: Duration,
    /// Longest a new connection may take to establish.
    pub connect_timeout: Duration,
    /// Apply pending migrations at start-up (under the advisory lock), instead of a separate
    /// `switchboard migrate` step.
    pub migrate_on_start: bool,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// The URL without its password, for logs and error messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() && url.set_password(Some("***")).is_err() {
                return "<database url>".to_owned();
            }
            url.to_string()
        }
        Err(_) => "<unparseable database url>".to_owned(),
    }
}

impl DatabaseConfig {
    pub const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/switchboard";

    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let url: String = env.or("DATABASE_URL", Self::DEFAULT_URL.to_owned())?;
        if url::Url::parse(&url)
            .map(|u| !matches!(u.scheme(), "postgres" | "postgresql"))
            .unwrap_or(true)
        {
            return Err(ConfigError::Malformed {
                name: "DATABASE_URL",
                reason: "expected postgres://user[:password]@host[:port]/database".to_owned(),
            });
        }
        Ok(Self {
            url: url.into(),
            max_connections: env.or("DATABASE_POOL_SIZE", 10)?,
            acquire_timeout: env.duration("DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(2))?,
            connect_timeout: env.duration("DATABASE_CONNECT_TIMEOUT", Duration::from_secs(5))?,
            migrate_on_start: env.flag("MIGRATE_ON_START", false)?,
        })
    }

    pub fn with_url(url: &str) -> Self {
        Self {
            url: url.to_owned().into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            migrate_on_start: false,
        }
    }

    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shows() {
        let config = DatabaseConfig::with_url("postgres://app:s3cret@db:5432/switchboard");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(
            config.redacted_url(),
            "postgres://app:***@db:5432/switchboard"
        );
    }

    #[test]
    fn non_postgres_url_is_refused_naming_the_variable() {
        let src = [("DATABASE_URL", "mysql://root@localhost/db")];
        let err = DatabaseConfig::from_env(&Env::new(&src)).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
    }
}
