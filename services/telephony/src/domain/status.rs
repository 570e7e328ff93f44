//! Call statuses as Twilio reports them, ranked so that callbacks applied in any order end in the
//! same state: a late `ringing` never overwrites `completed`.

use std::fmt;
use std::str::FromStr;

use sb_events::proto::{CallDirection, PhoneCallStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A call's status. Stored and shown as `QUEUED`, `IN_PROGRESS`…; Twilio writes `queued`,
/// `in-progress`, `no-answer`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];

    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "QUEUED",
            CallStatus::Initiated => "INITIATED",
            CallStatus::Ringing => "RINGING",
            CallStatus::InProgress => "IN_PROGRESS",
            CallStatus::Completed => "COMPLETED",
            CallStatus::Busy => "BUSY",
            CallStatus::NoAnswer => "NO_ANSWER",
            CallStatus::Failed => "FAILED",
            CallStatus::Canceled => "CANCELED",
        }
    }

    /// Twilio's spelling (`CallStatus` parameter, Call resource `status`).
    pub fn twilio(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// Parses Twilio's spelling; `answered` (a StatusCallbackEvent name some proxies forward) is
    /// `in-progress`.
    pub fn from_twilio(raw: &str) -> Option<Self> {
        match raw {
            "answered" => Some(CallStatus::InProgress),
            _ => Self::ALL.into_iter().find(|s| s.twilio() == raw),
        }
    }

    /// Position in a call's life. Every terminal status shares the last rank: whichever Twilio
    /// reports first stays (ordered by SequenceNumber when two arrive).
    pub fn rank(self) -> u8 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Initiated => 1,
            CallStatus::Ringing => 2,
            CallStatus::InProgress => 3,
            CallStatus::Completed
            | CallStatus::Busy
            | CallStatus::NoAnswer
            | CallStatus::Failed
            | CallStatus::Canceled => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }

    pub fn to_proto(self) -> PhoneCallStatus {
        match self {
            CallStatus::Queued => PhoneCallStatus::Queued,
            CallStatus::Initiated => PhoneCallStatus::Initiated,
            CallStatus::Ringing => PhoneCallStatus::Ringing,
            CallStatus::InProgress => PhoneCallStatus::InProgress,
            CallStatus::Completed => PhoneCallStatus::Completed,
            CallStatus::Busy => PhoneCallStatus::Busy,
            CallStatus::NoAnswer => PhoneCallStatus::NoAnswer,
            CallStatus::Failed => PhoneCallStatus::Failed,
            CallStatus::Canceled => PhoneCallStatus::Canceled,
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallStatus {
    type Err = String;

    /// Accepts our spelling and Twilio's, any case (`IN_PROGRESS`, `in-progress`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == normalised)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?} (expected one of queued, initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled)"
                )
            })
    }
}

/// What one status report says: its status and Twilio's SequenceNumber, when sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub status: CallStatus,
    pub sequence: Option<i32>,
}

/// Whether `next` replaces the current status. Forward moves always do; between two terminal
/// statuses the higher SequenceNumber wins (the later report of Twilio's), so any order of the
/// same callbacks ends in the same status.
pub fn advances(current: Report, next: Report) -> bool {
    if next.status.rank() != current.status.rank() {
        return next.status.rank() > current.status.rank();
    }
    if next.status == current.status || !next.status.is_final() {
        return false;
    }
    match (current.sequence, next.sequence) {
        (Some(now), Some(new)) => new > now,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// Direction of a call, from the rep's point of view.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
        }
    }

    pub fn to_proto(self) -> CallDirection {
        match self {
            Direction::Inbound => CallDirection::Inbound,
            Direction::Outbound => CallDirection::Outbound,
        }
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "INBOUND" => Ok(Direction::Inbound),
            "OUTBOUND" => Ok(Direction::Outbound),
            _ => Err(format!(
                "unknown direction {s:?} (expected inbound or outbound)"
            )),
        }
    }
}

sb_db::text_enum!(CallStatus, Direction);

/// `DialCallStatus` of a `<Dial>` action request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStatus {
    Completed,
    Answered,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl DialStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "completed" => Some(DialStatus::Completed),
            "answered" => Some(DialStatus::Answered),
            "busy" => Some(DialStatus::Busy),
            "no-answer" => Some(DialStatus::NoAnswer),
            "failed" => Some(DialStatus::Failed),
            "canceled" => Some(DialStatus::Canceled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DialStatus::Completed => "completed",
            DialStatus::Answered => "answered",
            DialStatus::Busy => "busy",
            DialStatus::NoAnswer => "no-answer",
            DialStatus::Failed => "failed",
            DialStatus::Canceled => "canceled",
        }
    }

    /// Nobody picked up: the caller of an inbound call is offered voicemail.
    pub fn unanswered(self) -> bool {
        matches!(
            self,
            DialStatus::Busy | DialStatus::NoAnswer | DialStatus::Failed
        )
    }
}

/// Status of a Twilio recording (`RecordingStatus`), ranked like call statuses; stored in
/// Twilio's spelling (`telephony_recordings.status`).
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
pub enum RecordingStatus {
    InProgress,
    Completed,
    Absent,
    Failed,
}

impl RecordingStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "in-progress" => Some(RecordingStatus::InProgress),
            "completed" => Some(RecordingStatus::Completed),
            "absent" => Some(RecordingStatus::Absent),
            "failed" => Some(RecordingStatus::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::InProgress => "in-progress",
            RecordingStatus::Completed => "completed",
            RecordingStatus::Absent => "absent",
            RecordingStatus::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RecordingStatus::InProgress)
    }
}

impl FromStr for RecordingStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .ok_or_else(|| format!("expected in-progress, completed, absent or failed, got {s:?}"))
    }
}

/// What a recording is (`telephony_recordings.kind`).
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
pub enum RecordingKind {
    /// A dual-channel recording of the conversation.
    Call,
    /// A message left on the number's voicemail.
    Voicemail,
}

impl RecordingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingKind::Call => "CALL",
            RecordingKind::Voicemail => "VOICEMAIL",
        }
    }
}

impl FromStr for RecordingKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [RecordingKind::Call, RecordingKind::Voicemail]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("expected CALL or VOICEMAIL, got {s:?}"))
    }
}

sb_db::text_enum!(RecordingStatus, RecordingKind);

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: CallStatus, sequence: Option<i32>) -> Report {
        Report { status, sequence }
    }

    #[test]
    fn twilio_spellings_round_trip_including_hyphens() {
        for status in CallStatus::ALL {
            assert_eq!(CallStatus::from_twilio(status.twilio()), Some(status));
            assert_eq!(status.as_str().parse::<CallStatus>(), Ok(status));
            assert_eq!(status.twilio().parse::<CallStatus>(), Ok(status));
        }
        assert_eq!(
            CallStatus::from_twilio("in-progress"),
            Some(CallStatus::InProgress)
        );
        assert_eq!(
            CallStatus::from_twilio("no-answer"),
            Some(CallStatus::NoAnswer)
        );
        assert_eq!(CallStatus::from_twilio("in_progress"), None);
        assert!("sideways".parse::<CallStatus>().is_err());
    }

    #[test]
    fn statuses_only_move_forward_and_terminal_ones_absorb() {
        use CallStatus::*;
        assert!(advances(report(Initiated, None), report(Ringing, Some(1))));
        assert!(advances(
            report(Ringing, Some(1)),
            report(Completed, Some(3))
        ));
        assert!(!advances(
            report(Completed, Some(3)),
            report(Ringing, Some(1))
        ));
        assert!(!advances(
            report(Completed, Some(3)),
            report(InProgress, Some(2))
        ));
        assert!(!advances(
            report(Ringing, Some(1)),
            report(Ringing, Some(1))
        ));
        // Two terminal reports: the later one of Twilio's wins whichever arrives first.
        assert!(advances(
            report(NoAnswer, Some(2)),
            report(Canceled, Some(3))
        ));
        assert!(!advances(
            report(Canceled, Some(3)),
            report(NoAnswer, Some(2))
        ));
        assert!(!advances(report(Completed, None), report(Busy, None)));
    }

    #[test]
    fn every_order_of_the_same_reports_ends_in_the_same_status() {
        use CallStatus::*;
        let reports = [
            report(Queued, Some(0)),
            report(Initiated, Some(1)),
            report(Ringing, Some(2)),
            report(InProgress, Some(3)),
            report(Completed, Some(4)),
        ];
        // All 120 permutations.
        let mut indices: Vec<usize> = (0..reports.len()).collect();
        let mut permutations = Vec::new();
        permute(&mut indices, 0, &mut permutations);
        for order in permutations {
            let mut current = report(Initiated, None);
            for i in order {
                if advances(current, reports[i]) {
                    current = reports[i];
                }
            }
            assert_eq!(current.status, Completed);
        }
    }

    fn permute(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
        if k == items.len() {
            out.push(items.clone());
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permute(items, k + 1, out);
            items.swap(k, i);
        }
    }
}
