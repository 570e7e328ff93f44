//! Token minting for development (`switchboard token`) and tests. Production tokens come from the
//! platform's auth service.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};

use crate::config::{AuthConfig, KeyMaterial, is_hmac};
use crate::ids::{OrgId, TeamId, UserId};
use crate::principal::{Claims, Principal, Role};

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("cannot mint with an asymmetric algorithm without its private key")]
    NoPrivateKey,
    #[error("invalid signing key: {0}")]
    Key(jsonwebtoken::errors::Error),
    #[error("cannot sign token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Signs platform-shaped tokens with the same issuer and audience the verifier expects.
#[derive(Clone)]
pub struct TokenMinter {
    header: Header,
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMinter")
            .field("alg", &self.header.alg)
            .finish_non_exhaustive()
    }
}

impl TokenMinter {
    /// A minter for HS* configs (the secret is shared).
    pub fn from_config(config: &AuthConfig) -> Result<Self, MintError> {
        match (&config.key, config.secret_bytes()) {
            (KeyMaterial::Secret(_), Some(secret)) if is_hmac(config.algorithm) => Ok(Self {
                header: Header::new(config.algorithm),
                key: EncodingKey::from_secret(secret),
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
            }),
            _ => Err(MintError::NoPrivateKey),
        }
    }

    /// A minter for asymmetric configs, given the private key PEM.
    pub fn with_private_key_pem(config: &AuthConfig, pem: &[u8]) -> Result<Self, MintError> {
        use jsonwebtoken::AlgorithmFamily;
        let key = match config.algorithm.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            _ => return Self::from_config(config),
        }
        .map_err(MintError::Key)?;
        Ok(Self {
            header: Header::new(config.algorithm),
            key,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Claims for `principal` valid from now for `ttl`.
    pub fn claims(&self, principal: &Principal, ttl: Duration) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: principal.user_id,
            org: principal.org_id,
            role: principal.role,
            teams: principal.teams.clone(),
            name: principal.name.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            nbf: now,
            iat: now,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, MintError> {
        jsonwebtoken::encode(&self.header, claims, &self.key).map_err(MintError::Sign)
    }

    pub fn mint(&self, principal: &Principal, ttl: Duration) -> Result<String, MintError> {
        self.sign(&self.claims(principal, ttl))
    }

    /// Shorthand for tests and the CLI.
    pub fn mint_for(
        &self,
        role: Role,
        org: OrgId,
        user: UserId,
        teams: &[TeamId],
        ttl: Duration,
    ) -> Result<String, MintError> {
        self.mint(
            &Principal {
                user_id: user,
                org_id: org,
                role,
                teams: teams.to_vec(),
                name: None,
            },
            ttl,
        )
    }
}
