//! Environment-first configuration: typed readers that fail fast naming the variable at fault.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why configuration could not be read. The message always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing required environment variable {name}: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// A source of configuration values. Production reads the process environment; tests pass a map
/// so they never mutate the (process-global) environment.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Typed reader over a [`Source`]. Empty values count as unset, as most deploy tools cannot
/// express "unset" once a variable has been declared.
pub struct Env<'a> {
    source: &'a dyn Source,
}

impl<'a> Env<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Self { source }
    }

    fn raw(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A value that must be present.
    pub fn required<T>(&self, name: &'static str, hint: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name)? {
            Some(value) => Ok(value),
            None => Err(ConfigError::Missing { name, hint }),
        }
    }

    /// A value that may be absent.
    pub fn optional<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.raw(name)
            .map(|raw| {
                raw.parse::<T>().map_err(|e| ConfigError::Malformed {
                    name,
                    reason: format!("{e}"),
                })
            })
            .transpose()
    }

    /// A value with a default when absent.
    pub fn or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// The first of several names that is set (for documented aliases), else the default.
    pub fn first_of<T>(&self, names: &[&'static str], default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        for name in names {
            if let Some(value) = self.optional(name)? {
                return Ok(value);
            }
        }
        Ok(default)
    }

    /// A boolean: true/false, 1/0, yes/no, on/off.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Malformed {
                    name,
                    reason: format!("expected true or false, got {raw:?}"),
                }),
            },
        }
    }

    /// A duration written as whole milliseconds (`250`), or with a unit (`250ms`, `5s`, `2m`).
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => {
                parse_duration(&raw).map_err(|reason| ConfigError::Malformed { name, reason })
            }
        }
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("expected a duration such as 500ms, 5s, 2m, 6h or 90d, got {raw:?}")
    })?;
    match unit.trim() {
        "" | "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        "d" => Ok(Duration::from_secs(value.saturating_mul(86_400))),
        other => Err(format!(
            "unknown duration unit {other:?} in {raw:?} (use ms, s, m, h or d)"
        )),
    }
}

/// Where the service runs: decides log format and dev-only conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" | "test" => Ok(Self::Development),
            "prod" | "production" | "staging" => Ok(Self::Production),
            other => Err(format!("expected development or production, got {other:?}")),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected json or pretty, got {other:?}")),
        }
    }
}

/// Settings every service's HTTP side shares.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: String,
    /// `PORT` (Railway and most PaaS set it); 0 binds an ephemeral port (tests).
    pub port: u16,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_timeout: Duration,
    /// Largest JSON body accepted, in bytes.
    pub json_limit_bytes: usize,
    pub workers: usize,
    /// `TRUSTED_PROXY_COUNT`: how many proxies in front of the service append to
    /// `X-Forwarded-For` (0: the peer address is the client, the header is ignored).
    pub trusted_proxies: usize,
}

impl HttpConfig {
    pub fn from_env(env: &Env<'_>, default_port: u16) -> Result<Self, ConfigError> {
        Ok(Self {
            host: env.or("HOST", "0.0.0.0".to_owned())?,
            port: env.or("PORT", default_port)?,
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20))?,
            json_limit_bytes: env.or("HTTP_JSON_LIMIT_BYTES", 64 * 1024)?,
            workers: env.or("HTTP_WORKERS", default_workers())?,
            trusted_proxies: env.optional("TRUSTED_PROXY_COUNT")?.unwrap_or(0),
        })
    }

    /// Loopback on an ephemeral port, for tests.
    pub fn ephemeral() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            shutdown_timeout: Duration::from_secs(5),
            json_limit_bytes: 64 * 1024,
            workers: 1,
            trusted_proxies: 0,
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Logging settings: `APP_ENV` picks the default format (JSON in production, pretty in dev),
/// `LOG_FORMAT` overrides it, `RUST_LOG` (or `LOG_LEVEL`) filters.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub environment: Environment,
    pub format: LogFormat,
    pub filter: String,
}

impl LogConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let environment = env.or("APP_ENV", Environment::Development)?;
        let default_format = match environment {
            Environment::Production => LogFormat::Json,
            Environment::Development => LogFormat::Pretty,
        };
        Ok(Self {
            environment,
            format: env.or("LOG_FORMAT", default_format)?,
            filter: env.first_of(&["RUST_LOG", "LOG_LEVEL"], "info".to_owned())?,
        })
    }
}

/// NATS connection settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    pub connect_timeout: Duration,
}

impl NatsConfig {
    pub const DEFAULT_URL: &'static str = "nats://127.0.0.1:4222";

    /// The URL with any password or token replaced, for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url_credentials(&self.url)
    }

    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.or("NATS_URL", Self::DEFAULT_URL.to_owned())?,
            connect_timeout: env.duration("NATS_CONNECT_TIMEOUT", Duration::from_secs(5))?,
        })
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`; a bare token (`nats://token@host`) is
/// hidden too, in each URL of a comma-separated list (NATS seed servers). Unparseable input is
/// hidden whole.
pub fn redact_url_credentials(raw: &str) -> String {
    raw.split(',')
        .map(|url| redact_one_url(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<url>".to_owned();
    };
    match rest.rsplit_once('@') {
        None => raw.to_owned(),
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_of_a_list_has_its_credentials_hidden() {
        assert_eq!(
            redact_url_credentials("nats://app:s3cret@nats-0:4222,nats://tok3n@nats-1:4222"),
            "nats://app:***@nats-0:4222,nats://***@nats-1:4222"
        );
        assert_eq!(
            redact_url_credentials("postgres://u:pw@db/x"),
            "postgres://u:***@db/x"
        );
    }

    #[test]
    fn missing_required_names_the_variable() {
        let src: [(&str, &str); 0] = [];
        let err = Env::new(&src)
            .required::<String>("JWT_SECRET", "set it to the platform's HS256 secret")
            .unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn malformed_names_the_variable_and_value() {
        let src = [("PORT", "eighty")];
        let err = HttpConfig::from_env(&Env::new(&src), 3000).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Malformed {
                name: "PORT",
                reason: "invalid digit found in string".to_owned()
            }
        );
    }

    #[test]
    fn port_is_honoured_and_defaults_apply() {
        let src = [("PORT", "8123")];
        assert_eq!(
            HttpConfig::from_env(&Env::new(&src), 3000).unwrap().port,
            8123
        );
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            HttpConfig::from_env(&Env::new(&none), 3000).unwrap().port,
            3000
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let src = [("PORT", "  ")];
        assert_eq!(
            HttpConfig::from_env(&Env::new(&src), 3001).unwrap().port,
            3001
        );
    }

    #[test]
    fn durations_and_flags_parse() {
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("soon").is_err());
        let src = [("MIGRATE_ON_START", "yes"), ("BAD", "maybe")];
        let env = Env::new(&src);
        assert!(env.flag("MIGRATE_ON_START", false).unwrap());
        assert!(env.flag("BAD", false).is_err());
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_url_credentials("nats://app:s3cret@nats:4222"),
            "nats://app:***@nats:4222"
        );
        assert_eq!(
            redact_url_credentials("nats://tok3n@nats:4222"),
            "nats://***@nats:4222"
        );
        assert_eq!(
            redact_url_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }

    #[test]
    fn production_logs_json_by_default() {
        let src = [("APP_ENV", "production")];
        assert_eq!(
            LogConfig::from_env(&Env::new(&src)).unwrap().format,
            LogFormat::Json
        );
        let src = [("APP_ENV", "production"), ("LOG_FORMAT", "pretty")];
        assert_eq!(
            LogConfig::from_env(&Env::new(&src)).unwrap().format,
            LogFormat::Pretty
        );
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            LogConfig::from_env(&Env::new(&none)).unwrap().format,
            LogFormat::Pretty
        );
    }
}
