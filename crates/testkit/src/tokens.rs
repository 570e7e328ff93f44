//! Tokens for tests, signed like the platform's auth service signs them.

use std::time::Duration;

use sb_auth::{AuthConfig, JwtVerifier, OrgId, Principal, Role, TeamId, TokenMinter, UserId};

/// HS256 secret used by every test app.
pub const TEST_JWT_SECRET: &str = "switchboard-test-secret-0123456789abcdef";

/// Mints test tokens and builds the matching verifier.
#[derive(Clone, Debug)]
pub struct TestTokens {
    config: AuthConfig,
    minter: TokenMinter,
}

impl Default for TestTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl TestTokens {
    pub fn new() -> Self {
        let config = AuthConfig::hs256(TEST_JWT_SECRET);
        let minter = match TokenMinter::from_config(&config) {
            Ok(minter) => minter,
            Err(error) => panic!("HS256 test minter: {error}"),
        };
        Self { config, minter }
    }

    pub fn auth_config(&self) -> AuthConfig {
        self.config.clone()
    }

    pub fn verifier(&self) -> JwtVerifier {
        match JwtVerifier::new(&self.config) {
            Ok(verifier) => verifier,
            Err(error) => panic!("HS256 test verifier: {error}"),
        }
    }

    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// A one-hour token for `principal`.
    pub fn for_principal(&self, principal: &Principal) -> String {
        match self.minter.mint(principal, Duration::from_secs(3600)) {
            Ok(token) => token,
            Err(error) => panic!("minting a test token: {error}"),
        }
    }

    /// A one-hour token for a user of `org` with `role` in `teams`.
    pub fn token(&self, role: Role, org: OrgId, user: UserId, teams: &[TeamId]) -> String {
        self.for_principal(&Principal {
            user_id: user,
            org_id: org,
            role,
            teams: teams.to_vec(),
            name: Some(format!("Test {role}")),
        })
    }
}
