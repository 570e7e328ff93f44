//! Phone numbers (E.164, parsed and validated with libphonenumber's metadata, never a regex) and
//! the Voice SDK identities of users: telephony places and answers calls with them, monitoring
//! rings supervisors into a call's conference with them.

use std::fmt;

use phonenumber::Mode;
use uuid::Uuid;

/// A valid phone number in E.164 form (`+33123456789`). Built only by [`E164::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses an international number (`+33 1 23 45 67 89`, `+1 (415) 555-2671`…) and checks it
    /// is a valid number of its country, then normalises it to E.164.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if !trimmed.starts_with('+') {
            return Err(
                "must be in international form, starting with + and the country code".to_owned(),
            );
        }
        if trimmed.chars().count() > 32 {
            return Err("is too long for a phone number".to_owned());
        }
        let number = phonenumber::parse(None, trimmed)
            .map_err(|e| format!("is not a phone number ({e})"))?;
        if !phonenumber::is_valid(&number) {
            return Err("is not a valid phone number for its country".to_owned());
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number (or any caller id) for logs: the country code and the last three digits only.
pub fn redact(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

/// The identity a user's app registers with the Twilio Voice SDK, and `<Client>` rings:
/// `u_<user id without dashes>` (letters, digits and `_`; no personal data).
pub fn client_identity(user: Uuid) -> String {
    format!("u_{}", user.simple())
}

/// The user behind a `client:u_…` caller (a call placed from the app) or identity.
pub fn user_of_client(raw: &str) -> Option<Uuid> {
    let identity = raw.strip_prefix("client:").unwrap_or(raw);
    let hex = identity.strip_prefix("u_")?;
    if hex.len() != 32 {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_validated_and_normalised_to_e164() {
        for (raw, e164) in [
            ("+33123456789", "+33123456789"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+1 (415) 555-2671", "+14155552671"),
            (" +447911123456 ", "+447911123456"),
        ] {
            assert_eq!(
                E164::parse(raw).map(E164::into_inner),
                Ok(e164.to_owned()),
                "{raw}"
            );
        }
        for bad in [
            "",
            "0123456789",
            "+",
            "+33",
            "+331234",
            "+999123456789",
            "+33 1 23 45 67 89 00 11",
            "not a number",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn redaction_keeps_only_the_ends() {
        assert_eq!(redact("+33123456789"), "+33******789");
        assert_eq!(redact("+1234"), "*****");
    }

    #[test]
    fn client_identities_round_trip() {
        let user = Uuid::now_v7();
        let identity = client_identity(user);
        assert!(
            identity
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        );
        assert_eq!(user_of_client(&identity), Some(user));
        assert_eq!(user_of_client(&format!("client:{identity}")), Some(user));
        assert_eq!(user_of_client("client:alice"), None);
        assert_eq!(user_of_client("+33123456789"), None);
    }
}
