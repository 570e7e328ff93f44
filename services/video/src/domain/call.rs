//! Calls: statuses, recording statuses, room names, participant identities and display names.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How long an appointment without an end time is assumed to last.
pub const DEFAULT_APPOINTMENT_LENGTH: chrono::Duration = chrono::Duration::hours(1);

/// The span around an appointment in which its call is joinable: guest links work in it, and
/// a completed call joined again in it resumes. It opens `open_before` the appointment and
/// closes `close_after` its end (`GUEST_LINK_OPEN_BEFORE`, `GUEST_LINK_CLOSE_AFTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

impl Window {
    pub fn around(
        scheduled_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
        open_before: chrono::Duration,
        close_after: chrono::Duration,
    ) -> Self {
        let end = ends_at.unwrap_or(scheduled_at + DEFAULT_APPOINTMENT_LENGTH);
        Self {
            opens: scheduled_at - open_before,
            closes: end + close_after,
        }
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.opens <= at && at < self.closes
    }
}

/// Whether a call in `status` joined at `at` goes on again: a COMPLETED call inside its
/// appointment's window does (the closer stepped out early, both sides dropped); FAILED and
/// CANCELLED calls, and any call outside the window, stay over.
pub fn resumes(status: CallStatus, window: &Window, at: DateTime<Utc>) -> bool {
    status == CallStatus::Completed && window.contains(at)
}

/// Seed 000's `CallStatus`.
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
pub enum CallStatus {
    Pending,
    Ongoing,
    Completed,
    Failed,
    Cancelled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 5] = [
        CallStatus::Pending,
        CallStatus::Ongoing,
        CallStatus::Completed,
        CallStatus::Failed,
        CallStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Pending => "PENDING",
            CallStatus::Ongoing => "ONGOING",
            CallStatus::Completed => "COMPLETED",
            CallStatus::Failed => "FAILED",
            CallStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether the call is over: a finished call is never reopened.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Failed | CallStatus::Cancelled
        )
    }
}

impl FromStr for CallStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("expected one of PENDING, ONGOING, COMPLETED, FAILED, CANCELLED, got {s:?}")
            })
    }
}

/// Where a call's recording stands, for the consent notice and the outcome.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordingStatus {
    None,
    Starting,
    Active,
    Stopping,
    Ready,
    Failed,
}

impl RecordingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingStatus::None => "NONE",
            RecordingStatus::Starting => "STARTING",
            RecordingStatus::Active => "ACTIVE",
            RecordingStatus::Stopping => "STOPPING",
            RecordingStatus::Ready => "READY",
            RecordingStatus::Failed => "FAILED",
        }
    }

    /// Participants must be told they are recorded while a recording starts or runs.
    pub fn is_recording(self) -> bool {
        matches!(self, RecordingStatus::Starting | RecordingStatus::Active)
    }
}

impl FromStr for RecordingStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RecordingStatus::None,
            RecordingStatus::Starting,
            RecordingStatus::Active,
            RecordingStatus::Stopping,
            RecordingStatus::Ready,
            RecordingStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| {
            format!("expected NONE, STARTING, ACTIVE, STOPPING, READY or FAILED, got {s:?}")
        })
    }
}

/// Status of one LiveKit egress, ranked so a late webhook never moves it backwards
/// (`video_recordings.status`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum EgressState {
    Starting,
    Active,
    Ending,
    Complete,
    Failed,
}

impl EgressState {
    pub fn as_str(self) -> &'static str {
        match self {
            EgressState::Starting => "STARTING",
            EgressState::Active => "ACTIVE",
            EgressState::Ending => "ENDING",
            EgressState::Complete => "COMPLETE",
            EgressState::Failed => "FAILED",
        }
    }

    /// From LiveKit's `EgressStatus`.
    pub fn from_livekit(status: i32) -> Self {
        use sb_livekit::protocol::EgressStatus as S;
        match S::try_from(status).unwrap_or(S::EgressStarting) {
            S::EgressStarting => EgressState::Starting,
            S::EgressActive => EgressState::Active,
            S::EgressEnding => EgressState::Ending,
            S::EgressComplete => EgressState::Complete,
            S::EgressFailed | S::EgressAborted | S::EgressLimitReached => EgressState::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, EgressState::Complete | EgressState::Failed)
    }

    /// Monotonic: the later of two reports wins; of two final ones, the first stays.
    pub fn advances_to(self, next: EgressState) -> bool {
        !self.is_final() && next > self
    }

    /// What the call shows for a recording in this state.
    pub fn call_recording_status(self) -> RecordingStatus {
        match self {
            EgressState::Starting => RecordingStatus::Starting,
            EgressState::Active => RecordingStatus::Active,
            EgressState::Ending => RecordingStatus::Stopping,
            EgressState::Complete => RecordingStatus::Ready,
            EgressState::Failed => RecordingStatus::Failed,
        }
    }
}

impl FromStr for EgressState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            EgressState::Starting,
            EgressState::Active,
            EgressState::Ending,
            EgressState::Complete,
            EgressState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("expected STARTING, ACTIVE, ENDING, COMPLETE or FAILED, got {s:?}"))
    }
}

sb_db::text_enum!(CallStatus, RecordingStatus, EgressState);

/// LiveKit room of an appointment call: `org_{orgId}_apt_{appointmentId}` (no personal data).
pub fn appointment_room(org: Uuid, appointment: Uuid) -> String {
    format!("org_{org}_apt_{appointment}")
}

/// Namespace of [`appointment_call_id`] (a UUID v5 namespace: any fixed UUID, never to change).
const APPOINTMENT_CALL_NAMESPACE: Uuid = Uuid::from_u128(0xa6367f1c3dd941a4be47ddba82d344d1);

/// The id of an appointment's call (an appointment has at most one): a UUID v5 of the
/// appointment's id. Derived rather than drawn, because concurrent first joins each ask LiveKit
/// for the room, with the call's id in its metadata, before one of them writes the call: they
/// must all name the same call.
pub fn appointment_call_id(appointment: Uuid) -> Uuid {
    Uuid::new_v5(&APPOINTMENT_CALL_NAMESPACE, appointment.as_bytes())
}

/// LiveKit room of an ad-hoc meeting: `org_{orgId}_mtg_{meetingId}`.
pub fn meeting_room(org: Uuid, meeting: Uuid) -> String {
    format!("org_{org}_mtg_{meeting}")
}

/// What a LiveKit room name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Appointment { org: Uuid, appointment: Uuid },
    Meeting { org: Uuid, meeting: Uuid },
}

impl RoomKind {
    pub fn parse(room: &str) -> Option<Self> {
        let rest = room.strip_prefix("org_")?;
        let (org, rest) = rest.split_at_checked(36)?;
        let org = Uuid::parse_str(org).ok()?;
        if let Some(id) = rest.strip_prefix("_apt_") {
            Some(RoomKind::Appointment {
                org,
                appointment: Uuid::parse_str(id).ok()?,
            })
        } else {
            Some(RoomKind::Meeting {
                org,
                meeting: Uuid::parse_str(rest.strip_prefix("_mtg_")?).ok()?,
            })
        }
    }
}

/// A participant's LiveKit identity: opaque, no personal data. `u_<userId>` for platform users,
/// `g_<guestId>` for lobby guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    User(Uuid),
    Guest(Uuid),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::User(id) => write!(f, "u_{id}"),
            Identity::Guest(id) => write!(f, "g_{id}"),
        }
    }
}

impl FromStr for Identity {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(id) = s.strip_prefix("u_") {
            Uuid::parse_str(id).map(Identity::User).map_err(|_| ())
        } else if let Some(id) = s.strip_prefix("g_") {
            Uuid::parse_str(id).map(Identity::Guest).map_err(|_| ())
        } else {
            Err(())
        }
    }
}

/// A display name: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err("must not be empty".to_owned());
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_appointment_call_id_is_the_same_for_its_appointment_and_no_other() {
        let appointment = uuid::Uuid::now_v7();
        assert_eq!(
            super::appointment_call_id(appointment),
            super::appointment_call_id(appointment)
        );
        assert_ne!(
            super::appointment_call_id(appointment),
            super::appointment_call_id(uuid::Uuid::now_v7())
        );
        assert_ne!(super::appointment_call_id(appointment), appointment);
    }

    use super::*;

    #[test]
    fn only_a_completed_call_inside_its_window_resumes() {
        let at = |minutes: i64| {
            DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap_or_default()
        };
        let window = Window::around(
            at(0),
            Some(at(45)),
            chrono::Duration::minutes(30),
            chrono::Duration::hours(2),
        );
        assert_eq!((window.opens, window.closes), (at(-30), at(165)));
        let untimed = Window::around(
            at(0),
            None,
            chrono::Duration::zero(),
            chrono::Duration::zero(),
        );
        assert_eq!(untimed.closes, at(60));
        assert!(resumes(CallStatus::Completed, &window, at(50)));
        assert!(resumes(CallStatus::Completed, &window, at(-30)));
        assert!(!resumes(CallStatus::Completed, &window, at(165)));
        assert!(!resumes(CallStatus::Completed, &window, at(-31)));
        for status in [CallStatus::Failed, CallStatus::Cancelled] {
            assert!(!resumes(status, &window, at(50)));
        }
    }

    #[test]
    fn room_names_round_trip_and_reject_strangers() {
        let (org, apt) = (Uuid::now_v7(), Uuid::now_v7());
        let room = appointment_room(org, apt);
        assert_eq!(
            RoomKind::parse(&room),
            Some(RoomKind::Appointment {
                org,
                appointment: apt
            })
        );
        let meeting = meeting_room(org, apt);
        assert_eq!(
            RoomKind::parse(&meeting),
            Some(RoomKind::Meeting { org, meeting: apt })
        );
        for bad in [
            "",
            "org_",
            "my-room",
            &format!("org_{org}_xyz_{apt}"),
            &format!("org_{org}_apt_nope"),
        ] {
            assert_eq!(RoomKind::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn identities_round_trip() {
        let id = Uuid::now_v7();
        for identity in [Identity::User(id), Identity::Guest(id)] {
            assert_eq!(identity.to_string().parse::<Identity>(), Ok(identity));
        }
        assert!("EG_abc".parse::<Identity>().is_err());
        assert!("u_not-a-uuid".parse::<Identity>().is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Ada  ").map(DisplayName::into_inner),
            Ok("Ada".to_owned())
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(101)).is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn egress_states_only_move_forward() {
        use EgressState::*;
        assert!(Starting.advances_to(Active));
        assert!(Active.advances_to(Complete));
        assert!(!Active.advances_to(Starting));
        assert!(!Complete.advances_to(Failed));
        assert!(!Failed.advances_to(Complete));
    }
}
