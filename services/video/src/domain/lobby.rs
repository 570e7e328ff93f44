//! The lobby where external guests wait for the host: statuses, decisions and their limits.

use std::str::FromStr;

/// Most guests waiting in one call's lobby: a leaked link cannot flood the host's screen.
pub const MAX_WAITING_GUESTS: i64 = 20;

/// Most lobby places one link opens (a link forwarded to a colleague or two is fine; a link
/// posted publicly stops here).
pub const MAX_GUESTS_PER_LINK: i64 = 5;

/// What binds a lobby place to the device that took it: 32 random bytes handed to that device
/// once (base64url) and kept only as their SHA-256. A guest link proves an invitation; this
/// proves being the invited guest who was let in, so a forwarded link cannot take their place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSecret(String);

impl DeviceSecret {
    pub fn generate() -> Self {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What the device sends back: its own text, compared through the digest.
    pub fn presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn sha256(&self) -> Vec<u8> {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.0.as_bytes()).to_vec()
    }

    /// Whether this is the secret whose digest a lobby row keeps.
    pub fn matches(&self, stored: &[u8]) -> bool {
        self.sha256() == stored
    }
}

/// Where a guest stands. `WAITING` until the host decides; a decision is final, except that
/// removing an admitted guest from the call denies them afterwards.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LobbyStatus {
    Waiting,
    Admitted,
    Denied,
}

impl LobbyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LobbyStatus::Waiting => "WAITING",
            LobbyStatus::Admitted => "ADMITTED",
            LobbyStatus::Denied => "DENIED",
        }
    }
}

impl FromStr for LobbyStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            LobbyStatus::Waiting,
            LobbyStatus::Admitted,
            LobbyStatus::Denied,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("expected WAITING, ADMITTED or DENIED, got {s:?}"))
    }
}

sb_db::text_enum!(LobbyStatus);

/// What the host decides about a waiting guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    Deny,
}

impl Decision {
    pub fn status(self) -> LobbyStatus {
        match self {
            Decision::Admit => LobbyStatus::Admitted,
            Decision::Deny => LobbyStatus::Denied,
        }
    }
}

/// What a decision does to a guest in `current` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest was waiting: record the decision.
    Apply(LobbyStatus),
    /// The same decision was already made (a retried click): nothing to do.
    Unchanged,
    /// The opposite decision was already made: refuse rather than flip it silently.
    AlreadyDecided(LobbyStatus),
}

pub fn decide(current: LobbyStatus, decision: Decision) -> Outcome {
    let wanted = decision.status();
    match current {
        LobbyStatus::Waiting => Outcome::Apply(wanted),
        done if done == wanted => Outcome::Unchanged,
        done => Outcome::AlreadyDecided(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_made_once_and_repeating_it_is_harmless() {
        use LobbyStatus::*;
        assert_eq!(decide(Waiting, Decision::Admit), Outcome::Apply(Admitted));
        assert_eq!(decide(Waiting, Decision::Deny), Outcome::Apply(Denied));
        assert_eq!(decide(Admitted, Decision::Admit), Outcome::Unchanged);
        assert_eq!(decide(Denied, Decision::Deny), Outcome::Unchanged);
        assert_eq!(
            decide(Admitted, Decision::Deny),
            Outcome::AlreadyDecided(Admitted)
        );
        assert_eq!(
            decide(Denied, Decision::Admit),
            Outcome::AlreadyDecided(Denied)
        );
    }

    #[test]
    fn a_device_secret_matches_only_its_own_digest() {
        let secret = DeviceSecret::generate();
        assert_eq!(
            secret.expose().len(),
            43,
            "32 bytes in base64url without padding"
        );
        let stored = secret.sha256();
        assert!(DeviceSecret::presented(secret.expose()).matches(&stored));
        assert!(!DeviceSecret::generate().matches(&stored));
        assert!(!DeviceSecret::presented("").matches(&stored));
        assert_ne!(
            stored,
            secret.expose().as_bytes(),
            "only the digest is kept"
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            LobbyStatus::Waiting,
            LobbyStatus::Admitted,
            LobbyStatus::Denied,
        ] {
            assert_eq!(status.as_str().parse::<LobbyStatus>(), Ok(status));
        }
        assert!("waiting".parse::<LobbyStatus>().is_err());
    }
}
