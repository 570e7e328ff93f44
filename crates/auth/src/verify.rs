//! Token verification with the algorithm pinned by configuration.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};

use crate::config::{AuthConfig, AuthConfigError, KeyMaterial};
use crate::principal::{Claims, Principal};

/// Tokens above this size are refused before any parsing: real platform tokens are < 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused. Every variant answers 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization: Bearer token")]
    Missing,
    #[error("Authorization header is not a Bearer token")]
    NotBearer,
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was not issued for this audience")]
    WrongAudience,
    #[error("token was not issued by the expected issuer")]
    WrongIssuer,
    #[error("token signature or algorithm is not accepted")]
    BadSignature,
    #[error("token is malformed")]
    Malformed,
}

impl AuthError {
    /// Stable problem code.
    pub fn code(&self) -> sb_platform::Code {
        use sb_platform::Code;
        match self {
            AuthError::Missing | AuthError::NotBearer => Code::MissingToken,
            AuthError::Expired => Code::TokenExpired,
            _ => Code::InvalidToken,
        }
    }
}

/// Verifies platform JWTs. Cheap to clone; build once at start-up.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

pub(crate) fn decoding_key(config: &AuthConfig) -> Result<DecodingKey, AuthConfigError> {
    use jsonwebtoken::AlgorithmFamily;
    let bad = |e: jsonwebtoken::errors::Error| AuthConfigError::BadPublicKey {
        algorithm: config.algorithm,
        reason: e.to_string(),
    };
    match &config.key {
        KeyMaterial::Secret(_) => Ok(DecodingKey::from_secret(
            config.secret_bytes().unwrap_or_default(),
        )),
        KeyMaterial::PublicKeyPem(pem) => match config.algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem.as_bytes()).map_err(bad),
            _ => Err(AuthConfigError::BadPublicKey {
                algorithm: config.algorithm,
                reason: "HMAC algorithms take JWT_SECRET, not a public key".to_owned(),
            }),
        },
    }
}

impl JwtVerifier {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let key = decoding_key(config)?;
        // One algorithm, from configuration: `alg: none` and HS/RS confusion fail here.
        let mut validation = Validation::new(config.algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Ok(Self { key, validation })
    }

    /// Verifies a raw token (without the `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_claims(token).map(Principal::from)
    }

    /// Verifies a raw token and returns all its claims (for callers that need `exp`, e.g. a
    /// stream that must end when the token does).
    pub fn verify_claims(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::MissingAlgorithm => AuthError::BadSignature,
                _ => AuthError::Malformed,
            },
        )?;
        Ok(data.claims)
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.verify_header_claims(header).map(Principal::from)
    }

    /// [`Self::verify_header`], returning all the token's claims.
    pub fn verify_header_claims(&self, header: Option<&str>) -> Result<Claims, AuthError> {
        let header = header.ok_or(AuthError::Missing)?.trim();
        if header.len() > MAX_TOKEN_BYTES + 7 {
            return Err(AuthError::TooLarge);
        }
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.verify_claims(token)
    }
}
