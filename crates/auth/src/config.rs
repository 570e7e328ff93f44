//! How tokens are verified: algorithm (pinned, never read from the token), key, issuer, audience.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use sb_platform::config::{ConfigError, Env, Environment};
use secrecy::{ExposeSecret, SecretString};

/// Secret used when `APP_ENV` is development and `JWT_SECRET` is unset, so `switchboard up` works
/// on a fresh clone. Refused in production.
pub const DEV_JWT_SECRET: &str = "switchboard-dev-secret-do-not-use-in-production";

/// The verification key. Secrets are redacted from `Debug`.
#[derive(Clone)]
pub enum KeyMaterial {
    /// HS256/384/512 shared secret.
    Secret(SecretString),
    /// RS*/PS*/ES*/EdDSA public key, PEM.
    PublicKeyPem(String),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Secret(_) => f.write_str("Secret([redacted])"),
            KeyMaterial::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub algorithm: Algorithm,
    pub key: KeyMaterial,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("JWT_SECRET must be set in production (the development default is refused)")]
    DevSecretInProduction,
    #[error("JWT_SECRET is too short: use at least 32 bytes for HS* algorithms")]
    WeakSecret,
    #[error("JWT_PUBLIC_KEY_PEM is not a valid {algorithm:?} public key: {reason}")]
    BadPublicKey {
        algorithm: Algorithm,
        reason: String,
    },
}

struct AlgorithmName(Algorithm);

impl FromStr for AlgorithmName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let algorithm = Algorithm::from_str(&s.to_ascii_uppercase())
            .map_err(|_| format!("unknown JWT algorithm {s:?}"))?;
        Ok(Self(algorithm))
    }
}

impl AuthConfig {
    pub const DEFAULT_ISSUER: &'static str = "switchboard-auth";
    pub const DEFAULT_AUDIENCE: &'static str = "switchboard";

    pub fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, AuthConfigError> {
        let AlgorithmName(algorithm) = env.or("JWT_ALGORITHM", AlgorithmName(Algorithm::HS256))?;
        let key = if is_hmac(algorithm) {
            let secret: Option<String> = env.optional("JWT_SECRET")?;
            match (secret, environment) {
                (Some(secret), Environment::Production) if secret == DEV_JWT_SECRET => {
                    return Err(AuthConfigError::DevSecretInProduction);
                }
                (Some(secret), _) if secret.len() < 32 => return Err(AuthConfigError::WeakSecret),
                (Some(secret), _) => KeyMaterial::Secret(secret.into()),
                (None, Environment::Development) => KeyMaterial::Secret(DEV_JWT_SECRET.into()),
                (None, Environment::Production) => {
                    return Err(ConfigError::Missing {
                        name: "JWT_SECRET",
                        hint: "the HS256 secret shared with the platform's auth service",
                    }
                    .into());
                }
            }
        } else {
            let pem: String = env.required(
                "JWT_PUBLIC_KEY_PEM",
                "the PEM public key of the platform's auth service",
            )?;
            // Deployments often store PEMs with literal \n in one line.
            KeyMaterial::PublicKeyPem(pem.replace("\\n", "\n"))
        };
        let config = Self {
            algorithm,
            key,
            issuer: env.or("JWT_ISSUER", Self::DEFAULT_ISSUER.to_owned())?,
            audience: env.or("JWT_AUDIENCE", Self::DEFAULT_AUDIENCE.to_owned())?,
            leeway: env.duration("JWT_LEEWAY", Duration::from_secs(30))?,
        };
        // Fail at start-up, not at the first request.
        crate::verify::decoding_key(&config)?;
        Ok(config)
    }

    /// HS256 with the given secret and default issuer/audience: dev tools and tests.
    pub fn hs256(secret: &str) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            key: KeyMaterial::Secret(secret.into()),
            issuer: Self::DEFAULT_ISSUER.to_owned(),
            audience: Self::DEFAULT_AUDIENCE.to_owned(),
            leeway: Duration::from_secs(30),
        }
    }

    pub(crate) fn secret_bytes(&self) -> Option<&[u8]> {
        match &self.key {
            KeyMaterial::Secret(secret) => Some(secret.expose_secret().as_bytes()),
            KeyMaterial::PublicKeyPem(_) => None,
        }
    }
}

pub(crate) fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_falls_back_to_the_dev_secret_production_refuses() {
        let none: [(&str, &str); 0] = [];
        let dev = AuthConfig::from_env(&Env::new(&none), Environment::Development).unwrap();
        assert_eq!(dev.secret_bytes(), Some(DEV_JWT_SECRET.as_bytes()));
        let err = AuthConfig::from_env(&Env::new(&none), Environment::Production).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let dev_secret = [("JWT_SECRET", DEV_JWT_SECRET)];
        assert!(matches!(
            AuthConfig::from_env(&Env::new(&dev_secret), Environment::Production),
            Err(AuthConfigError::DevSecretInProduction)
        ));
    }

    #[test]
    fn weak_secret_and_bad_key_fail_fast() {
        let weak = [("JWT_SECRET", "short")];
        assert!(matches!(
            AuthConfig::from_env(&Env::new(&weak), Environment::Production),
            Err(AuthConfigError::WeakSecret)
        ));
        let bad = [
            ("JWT_ALGORITHM", "RS256"),
            ("JWT_PUBLIC_KEY_PEM", "not a key"),
        ];
        let err = AuthConfig::from_env(&Env::new(&bad), Environment::Production).unwrap_err();
        assert!(matches!(err, AuthConfigError::BadPublicKey { .. }), "{err}");
        let missing = [("JWT_ALGORITHM", "ES256")];
        let err = AuthConfig::from_env(&Env::new(&missing), Environment::Production).unwrap_err();
        assert!(err.to_string().contains("JWT_PUBLIC_KEY_PEM"), "{err}");
        let unknown = [("JWT_ALGORITHM", "none")];
        let err = AuthConfig::from_env(&Env::new(&unknown), Environment::Production).unwrap_err();
        assert!(err.to_string().contains("JWT_ALGORITHM"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let config = AuthConfig::hs256("a-very-secret-value-that-is-long-enough");
        assert!(!format!("{config:?}").contains("a-very-secret"));
    }
}
