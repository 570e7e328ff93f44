//! Authentication and authorisation: JWT verification, the [`Principal`] extractor, roles, the
//! access policy, guest-link tokens, and token minting for development and tests.

mod config;
mod extractor;
mod guest;
mod ids;
mod mint;
pub mod policy;
mod principal;
mod verify;

pub use config::{AuthConfig, AuthConfigError, DEV_JWT_SECRET, KeyMaterial};
pub use guest::{GUEST_AUDIENCE, GuestClaims, GuestLinkError, GuestLinks, LinkScope};
pub use ids::{OrgId, TeamId, UserId};
pub use mint::{MintError, TokenMinter};
pub use principal::{Claims, Principal, Role};
pub use verify::{AuthError, JwtVerifier, MAX_TOKEN_BYTES};
