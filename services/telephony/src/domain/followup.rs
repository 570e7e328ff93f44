//! What the follow-up job still has to learn about an ended call, and where each stands.

use std::str::FromStr;

/// What is followed up (`telephony_followups.kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum FollowupKind {
    /// The price of a completed call.
    Cost,
    /// The Voice Insights call summary.
    Quality,
}

impl FollowupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowupKind::Cost => "COST",
            FollowupKind::Quality => "QUALITY",
        }
    }
}

impl FromStr for FollowupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [FollowupKind::Cost, FollowupKind::Quality]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("expected COST or QUALITY, got {s:?}"))
    }
}

/// Where a follow-up stands (`telephony_followups.status`): PENDING or PARTIAL with a next
/// attempt, DONE or GAVE_UP with none.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum FollowupStatus {
    Pending,
    /// A partial Voice Insights summary is stored; the complete one is asked for again.
    Partial,
    Done,
    GaveUp,
}

impl FollowupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowupStatus::Pending => "PENDING",
            FollowupStatus::Partial => "PARTIAL",
            FollowupStatus::Done => "DONE",
            FollowupStatus::GaveUp => "GAVE_UP",
        }
    }
}

impl FromStr for FollowupStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            FollowupStatus::Pending,
            FollowupStatus::Partial,
            FollowupStatus::Done,
            FollowupStatus::GaveUp,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("expected PENDING, PARTIAL, DONE or GAVE_UP, got {s:?}"))
    }
}

sb_db::text_enum!(FollowupKind, FollowupStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for kind in [FollowupKind::Cost, FollowupKind::Quality] {
            assert_eq!(kind.as_str().parse::<FollowupKind>(), Ok(kind));
        }
        for status in [
            FollowupStatus::Pending,
            FollowupStatus::Partial,
            FollowupStatus::Done,
            FollowupStatus::GaveUp,
        ] {
            assert_eq!(status.as_str().parse::<FollowupStatus>(), Ok(status));
        }
        assert!("pending".parse::<FollowupStatus>().is_err());
    }
}
