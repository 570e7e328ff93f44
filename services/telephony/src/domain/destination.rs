//! Which numbers a rep may call (the toll-fraud guard), and what Twilio's refusals of a call
//! mean for the person who placed it.

use sb_platform::Code;
use sb_twilio::codes;

use crate::domain::phone::E164;

/// Premium-rate and international premium ranges refused by default (`TELEPHONY_BLOCKED_PREFIXES`):
/// North American 900/976 numbers, UK 070 personal and 09 premium numbers, French 089, Spanish
/// 803/806/807/905, Italian 899, German 0900 and 0137, satellite and international networks
/// (+870, +881–+883) and the international premium rate service (+979). Toll fraud dials these
/// because each minute pays the number's owner.
pub const DEFAULT_BLOCKED_PREFIXES: &[&str] = &[
    "+1900", "+1976", "+4470", "+449", "+3389", "+34803", "+34806", "+34807", "+34905", "+39899",
    "+49900", "+49137", "+870", "+881", "+882", "+883", "+979",
];

/// Destinations refused before anything reaches Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    blocked_prefixes: Vec<String>,
}

impl Default for DestinationPolicy {
    fn default() -> Self {
        Self {
            blocked_prefixes: DEFAULT_BLOCKED_PREFIXES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        }
    }
}

impl DestinationPolicy {
    /// A comma-separated list of `+digits` prefixes; `none` (or nothing) turns the prefix check
    /// off.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut blocked_prefixes = Vec::new();
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(Self { blocked_prefixes });
        }
        for prefix in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let digits = prefix.strip_prefix('+').unwrap_or_default();
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("{prefix:?} is not a +digits prefix"));
            }
            blocked_prefixes.push(prefix.to_owned());
        }
        Ok(Self { blocked_prefixes })
    }

    /// The blocked prefix `to` falls under, if any.
    pub fn blocked_prefix(&self, to: &E164) -> Option<&str> {
        self.blocked_prefixes
            .iter()
            .map(String::as_str)
            .find(|prefix| to.as_str().starts_with(prefix))
    }
}

/// A refusal of Twilio's the caller can act on: our code, the request field at fault, and what
/// to tell them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionableRefusal {
    pub code: Code,
    pub field: &'static str,
    pub detail: &'static str,
}

/// What Twilio's error `code` tells the person placing the call, when it tells them something
/// they can fix; `None` for refusals only an operator can (credentials, account state).
pub fn actionable(code: i64) -> Option<ActionableRefusal> {
    let (code, field, detail) = match code {
        codes::INVALID_TO | codes::NOT_A_PHONE_NUMBER => (
            Code::InvalidDestination,
            "to",
            "this is not a phone number Twilio can call: check the number",
        ),
        codes::GEO_PERMISSION | codes::NUMBER_NOT_ALLOWED => (
            Code::DestinationNotPermitted,
            "to",
            "the Twilio account may not call this country or number: an administrator can allow \
             it in the Twilio console (Voice geographic permissions)",
        ),
        codes::CALLER_ID_NOT_VERIFIED | codes::INVALID_FROM => (
            Code::CallerIdNotVerified,
            "from",
            "Twilio does not accept this number as the caller id: it must be a number of the \
             Twilio account or a verified caller id",
        ),
        codes::UNVERIFIED_TO => (
            Code::DestinationUnverified,
            "to",
            "a trial Twilio account calls verified numbers only: verify this number in the \
             Twilio console or upgrade the account",
        ),
        _ => return None,
    };
    Some(ActionableRefusal {
        code,
        field,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(raw: &str) -> E164 {
        E164::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn premium_ranges_are_blocked_by_default_and_ordinary_numbers_are_not() {
        let policy = DestinationPolicy::default();
        assert_eq!(
            policy.blocked_prefix(&number("+1 900 555 0199")),
            Some("+1900")
        );
        assert_eq!(
            policy.blocked_prefix(&number("+44 909 879 0000")),
            Some("+449")
        );
        assert_eq!(
            policy.blocked_prefix(&number("+33 8 92 68 01 01")),
            Some("+3389")
        );
        assert_eq!(policy.blocked_prefix(&number("+33 6 12 34 56 78")), None);
        assert_eq!(policy.blocked_prefix(&number("+1 415 555 2671")), None);
        assert_eq!(policy.blocked_prefix(&number("+44 20 7946 0958")), None);
    }

    #[test]
    fn the_list_is_configurable_and_checked() {
        let policy = DestinationPolicy::parse(" +336, +1415 ").unwrap_or_default();
        assert_eq!(
            policy.blocked_prefix(&number("+33 6 12 34 56 78")),
            Some("+336")
        );
        assert_eq!(policy.blocked_prefix(&number("+1 900 555 0199")), None);
        for off in ["", "none", " NONE "] {
            let off = DestinationPolicy::parse(off).unwrap_or_default();
            assert_eq!(off.blocked_prefix(&number("+1 900 555 0199")), None);
        }
        for bad in ["336", "+", "+33a", "+1234567890123456"] {
            assert!(DestinationPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_the_caller_can_fix_have_their_own_codes() {
        for (twilio, code, field) in [
            (21211, Code::InvalidDestination, "to"),
            (21217, Code::InvalidDestination, "to"),
            (21215, Code::DestinationNotPermitted, "to"),
            (21216, Code::DestinationNotPermitted, "to"),
            (21210, Code::CallerIdNotVerified, "from"),
            (21212, Code::CallerIdNotVerified, "from"),
            (21219, Code::DestinationUnverified, "to"),
        ] {
            let refusal = actionable(twilio).unwrap_or_else(|| panic!("{twilio}"));
            assert_eq!((refusal.code, refusal.field), (code, field), "{twilio}");
        }
        assert_eq!(actionable(codes::AUTHENTICATE), None);
        assert_eq!(actionable(0), None);
    }
}
