//! Guest-link tokens: what an external guest (a lead without an account) presents to join one
//! call's lobby (video) or one appointment's signaling room. Signed with the guest-link key
//! (never the platform's JWT secret), scoped to one call or appointment and valid only around the
//! appointment. Each service has its own issuer and audience ([`LinkScope`]), so a link minted by
//! one never opens the other, even under the same key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::OrgId;

pub const GUEST_AUDIENCE: &str = "switchboard-guest";
const GUEST_ISSUER: &str = "switchboard-video";

/// Who issues a kind of guest link and who accepts it (`iss`, `aud`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkScope {
    pub issuer: &'static str,
    pub audience: &'static str,
}

impl LinkScope {
    /// Video's lobby links (`aud = switchboard-guest`); `claims.call` is the call.
    pub const VIDEO: Self = Self {
        issuer: GUEST_ISSUER,
        audience: GUEST_AUDIENCE,
    };
    /// Signaling's links (`aud = switchboard-signaling-guest`); `claims.call` is the appointment
    /// whose room the link opens.
    pub const SIGNALING: Self = Self {
        issuer: "switchboard-signaling",
        audience: "switchboard-signaling-guest",
    };
}

/// The claims of a guest link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestClaims {
    /// A fresh id per link: the guest's lobby identity, and what a revocation names.
    pub sub: Uuid,
    pub org: OrgId,
    /// The one call this link opens (for signaling's links: the one appointment).
    pub call: Uuid,
    pub iss: String,
    pub aud: String,
    pub nbf: i64,
    pub exp: i64,
    pub iat: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestLinkError {
    #[error("the guest link has expired")]
    Expired,
    #[error("the guest link is not valid yet")]
    NotYetValid,
    #[error("the guest link is for another call")]
    WrongCall,
    #[error("the guest link is not valid")]
    Invalid,
    #[error("the guest link's window is empty")]
    EmptyWindow,
    #[error("cannot sign the guest link")]
    Signing,
}

/// Mints and checks guest links with the guest-link key (`GUEST_LINK_SECRET`), for one scope.
#[derive(Clone)]
pub struct GuestLinks {
    secret: SecretString,
    scope: LinkScope,
}

impl std::fmt::Debug for GuestLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestLinks([redacted])")
    }
}

impl GuestLinks {
    /// Video's guest links ([`LinkScope::VIDEO`]).
    pub fn new(secret: SecretString) -> Self {
        Self::scoped(secret, LinkScope::VIDEO)
    }

    /// Guest links of `scope`: minted with its issuer and audience, and only those accepted.
    pub fn scoped(secret: SecretString, scope: LinkScope) -> Self {
        Self { secret, scope }
    }

    /// A link for `call` usable from `open` until `close` (e.g. 15 minutes before the appointment
    /// until its end).
    pub fn mint(
        &self,
        org: OrgId,
        call: Uuid,
        open: DateTime<Utc>,
        close: DateTime<Utc>,
    ) -> Result<(String, GuestClaims), GuestLinkError> {
        if close <= open {
            return Err(GuestLinkError::EmptyWindow);
        }
        let claims = GuestClaims {
            sub: Uuid::now_v7(),
            org,
            call,
            iss: self.scope.issuer.to_owned(),
            aud: self.scope.audience.to_owned(),
            nbf: open.timestamp(),
            exp: close.timestamp(),
            iat: Utc::now().timestamp(),
        };
        let key = EncodingKey::from_secret(self.secret.expose_secret().as_bytes());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|_| GuestLinkError::Signing)?;
        Ok((token, claims))
    }

    /// Checks a link presented for `call`: signature, audience, issuer, window, and scope.
    pub fn verify(&self, token: &str, call: Uuid) -> Result<GuestClaims, GuestLinkError> {
        let claims = self.verify_link(token)?;
        if claims.call != call {
            return Err(GuestLinkError::WrongCall);
        }
        Ok(claims)
    }

    /// Checks a link presented on its own (the guest join route has no call in its path):
    /// signature, audience, issuer and window. The caller must then look the call up within
    /// `claims.org` and refuse the link if that call does not exist.
    pub fn verify_link(&self, token: &str) -> Result<GuestClaims, GuestLinkError> {
        if token.len() > crate::MAX_TOKEN_BYTES {
            return Err(GuestLinkError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[self.scope.audience]);
        validation.set_issuer(&[self.scope.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = Duration::from_secs(30).as_secs();
        let key = DecodingKey::from_secret(self.secret.expose_secret().as_bytes());
        let claims = jsonwebtoken::decode::<GuestClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => GuestLinkError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => GuestLinkError::NotYetValid,
                _ => GuestLinkError::Invalid,
            })?
            .claims;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Span;

    fn links() -> GuestLinks {
        GuestLinks::new("a-video-guest-link-secret-long-enough".to_owned().into())
    }

    #[test]
    fn a_link_opens_its_call_within_its_window_only() {
        let (org, call) = (OrgId::new_v7(), Uuid::now_v7());
        let now = Utc::now();
        let (token, minted) = links()
            .mint(org, call, now - Span::minutes(15), now + Span::hours(1))
            .unwrap();
        let claims = links().verify(&token, call).unwrap();
        assert_eq!(
            (claims.org, claims.call, claims.sub),
            (org, call, minted.sub)
        );
        assert_eq!(
            links().verify(&token, Uuid::now_v7()),
            Err(GuestLinkError::WrongCall)
        );

        let (later, _) = links()
            .mint(org, call, now + Span::hours(2), now + Span::hours(3))
            .unwrap();
        assert_eq!(
            links().verify(&later, call),
            Err(GuestLinkError::NotYetValid)
        );
        let (past, _) = links()
            .mint(org, call, now - Span::hours(3), now - Span::hours(2))
            .unwrap();
        assert_eq!(links().verify(&past, call), Err(GuestLinkError::Expired));
        assert_eq!(
            links().mint(org, call, now, now).unwrap_err(),
            GuestLinkError::EmptyWindow
        );
    }

    #[test]
    fn a_scope_accepts_only_its_own_links() {
        let secret = || "a-video-guest-link-secret-long-enough".to_owned().into();
        let signaling = GuestLinks::scoped(secret(), LinkScope::SIGNALING);
        let (org, appointment) = (OrgId::new_v7(), Uuid::now_v7());
        let now = Utc::now();
        let (link, minted) = signaling
            .mint(
                org,
                appointment,
                now - Span::minutes(1),
                now + Span::hours(1),
            )
            .unwrap();
        assert_eq!(minted.aud, "switchboard-signaling-guest");
        assert_eq!(
            signaling.verify(&link, appointment).unwrap().sub,
            minted.sub
        );
        // same key, other scope: refused both ways
        assert_eq!(
            links().verify(&link, appointment),
            Err(GuestLinkError::Invalid)
        );
        let (video, _) = links()
            .mint(
                org,
                appointment,
                now - Span::minutes(1),
                now + Span::hours(1),
            )
            .unwrap();
        assert_eq!(
            signaling.verify(&video, appointment),
            Err(GuestLinkError::Invalid)
        );
    }

    #[test]
    fn platform_tokens_and_other_keys_do_not_open_a_call() {
        let call = Uuid::now_v7();
        let now = Utc::now();
        let other = GuestLinks::new("another-guest-link-secret-long-enough-x".to_owned().into());
        let (forged, _) = other
            .mint(
                OrgId::new_v7(),
                call,
                now - Span::minutes(1),
                now + Span::hours(1),
            )
            .unwrap();
        assert_eq!(links().verify(&forged, call), Err(GuestLinkError::Invalid));

        // A platform JWT signed with the same secret is still refused: wrong audience and issuer.
        let config = crate::AuthConfig::hs256("a-video-guest-link-secret-long-enough");
        let minter = crate::TokenMinter::from_config(&config).unwrap();
        let platform = minter
            .mint_for(
                crate::Role::Admin,
                OrgId::new_v7(),
                crate::UserId::new_v7(),
                &[],
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(
            links().verify(&platform, call),
            Err(GuestLinkError::Invalid)
        );
        // And a guest link is not a platform token.
        let (guest, _) = links()
            .mint(
                OrgId::new_v7(),
                call,
                now - Span::minutes(1),
                now + Span::hours(1),
            )
            .unwrap();
        assert!(
            crate::JwtVerifier::new(&config)
                .unwrap()
                .verify(&guest)
                .is_err()
        );
        assert_eq!(
            links().verify("garbage", call),
            Err(GuestLinkError::Invalid)
        );
        assert_eq!(
            links().verify(&"x".repeat(20_000), call),
            Err(GuestLinkError::Invalid)
        );
    }
}
