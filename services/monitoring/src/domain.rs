//! Monitoring rules, free of I/O: rooms and identities, modes, statuses, and presence derived
//! from LiveKit's facts whatever order they arrived in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sb_events::proto;
use sb_livekit::Preset;
use uuid::Uuid;

/// The rep's own LiveKit room: `monitor_{orgId}_{repId}` (no personal data).
pub fn rep_room(org: Uuid, rep: Uuid) -> String {
    format!("monitor_{org}_{rep}")
}

/// Whether a LiveKit room is a monitoring room.
pub fn is_rep_room(room: &str) -> bool {
    room.starts_with("monitor_")
}

/// LiveKit identities in a rep's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Rep(Uuid),
    Supervisor(Uuid),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Rep(id) => write!(f, "rep_{id}"),
            Identity::Supervisor(id) => write!(f, "sup_{id}"),
        }
    }
}

impl FromStr for Identity {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(id) = s.strip_prefix("rep_") {
            Uuid::parse_str(id).map(Identity::Rep).map_err(|_| ())
        } else if let Some(id) = s.strip_prefix("sup_") {
            Uuid::parse_str(id)
                .map(Identity::Supervisor)
                .map_err(|_| ())
        } else {
            Err(())
        }
    }
}

/// What a supervisor does in the rep's room.
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
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Hears the rep; nobody hears the supervisor.
    Listen,
    /// Speaks to the rep only (the rep's app plays it to the rep, never to the customer).
    Coach,
    /// Joins the conversation as a visible, publishing participant.
    Barge,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Listen => "listen",
            Mode::Coach => "coach",
            Mode::Barge => "barge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Mode::Listen, Mode::Coach, Mode::Barge]
            .into_iter()
            .find(|m| m.as_str() == s)
    }

    /// The grants of a supervisor in this mode; `notify_rep` makes a listener visible.
    pub fn preset(self, notify_rep: bool) -> Preset {
        match (self, notify_rep) {
            (Mode::Listen, false) => Preset::SupervisorListen,
            (Mode::Listen, true) => Preset::SupervisorListenVisible,
            (Mode::Coach, _) => Preset::SupervisorCoach,
            (Mode::Barge, _) => Preset::SupervisorBarge,
        }
    }

    pub fn proto(self) -> proto::MonitoringMode {
        match self {
            Mode::Listen => proto::MonitoringMode::Listen,
            Mode::Coach => proto::MonitoringMode::Coach,
            Mode::Barge => proto::MonitoringMode::Barge,
        }
    }
}

/// What a session supervises: the rep's side room (seed 002), or the rep's real conversation.
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
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// `monitor_<org>_<rep>`: the rep's microphone only.
    SideRoom,
    /// The LiveKit room of the appointment or meeting call the rep is in.
    VideoCall,
    /// Telephony's Twilio conference of the rep's phone call.
    PhoneCall,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::SideRoom => "side_room",
            TargetKind::VideoCall => "video_call",
            TargetKind::PhoneCall => "phone_call",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TargetKind::SideRoom,
            TargetKind::VideoCall,
            TargetKind::PhoneCall,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn proto(self) -> proto::MonitoringTarget {
        match self {
            TargetKind::SideRoom => proto::MonitoringTarget::SideRoom,
            TargetKind::VideoCall => proto::MonitoringTarget::VideoCall,
            TargetKind::PhoneCall => proto::MonitoringTarget::PhoneCall,
        }
    }

    /// Whether the supervisor is in a LiveKit room (and needs a token for it).
    pub fn in_livekit(self) -> bool {
        self != TargetKind::PhoneCall
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .ok_or_else(|| format!("expected side_room, video_call or phone_call, got {s:?}"))
    }
}

/// What the client asks to supervise: wherever the rep is (`auto`), their live call, or their
/// side room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetChoice {
    /// The rep's live call if they are on one, their side room otherwise.
    #[default]
    Auto,
    /// The rep's live call; `call_not_live` when there is none.
    Call,
    /// The rep's side room, even during a call.
    SideRoom,
}

impl TargetChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetChoice::Auto => "auto",
            TargetChoice::Call => "call",
            TargetChoice::SideRoom => "side_room",
        }
    }
}

/// The kind of call a rep is on, as `monitoring_rep_calls.kind` spells it.
pub const VIDEO_CALL: &str = "video";
pub const PHONE_CALL: &str = "phone";

/// Picks what a session supervises from what the client asked and the rep's live call
/// (kind, id, LiveKit room of a video call). `None`: the client asked for a call and the rep is
/// on none that can be joined.
pub fn pick_target(
    choice: TargetChoice,
    call: Option<(&str, Uuid, Option<&str>)>,
) -> Option<(TargetKind, Option<Uuid>, Option<String>)> {
    let live = match call {
        Some((VIDEO_CALL, id, Some(room))) => {
            Some((TargetKind::VideoCall, Some(id), Some(room.to_owned())))
        }
        Some((PHONE_CALL, id, _)) => Some((TargetKind::PhoneCall, Some(id), None)),
        // A video call whose room is unknown (a fact recorded before rooms were kept) cannot
        // be joined.
        _ => None,
    };
    match choice {
        TargetChoice::SideRoom => Some((TargetKind::SideRoom, None, None)),
        TargetChoice::Call => live,
        TargetChoice::Auto => Some(live.unwrap_or((TargetKind::SideRoom, None, None))),
    }
}

/// A rep's LiveKit identity in a video call's room, as the video service mints it
/// (`u_<userId>`): the only participant a coaching supervisor is heard by.
pub fn call_identity(rep: Uuid) -> String {
    format!("u_{rep}")
}

/// The Voice SDK client of a supervisor's app, as telephony rings it: `client:u_<user id
/// without dashes>` (docs/api/telephony.md).
pub fn voice_client(user: Uuid) -> String {
    format!("client:{}", sb_platform::phone::client_identity(user))
}

/// Seed 002's session statuses.
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
pub enum SessionStatus {
    Active,
    Paused,
    Stopped,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "ACTIVE",
            SessionStatus::Paused => "PAUSED",
            SessionStatus::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            SessionStatus::Active,
            SessionStatus::Paused,
            SessionStatus::Stopped,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| format!("expected listen, coach or barge, got {s:?}"))
    }
}

impl FromStr for RepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .ok_or_else(|| format!("expected OFFLINE, ONLINE, LISTENED or ON_CALL, got {s:?}"))
    }
}

sb_db::text_enum!(Mode, SessionStatus, RepStatus, TargetKind);

impl FromStr for SessionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(&s.to_ascii_uppercase())
            .ok_or_else(|| format!("expected ACTIVE, PAUSED or STOPPED, got {s:?}"))
    }
}

/// A rep's status as supervisors see it.
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
pub enum RepStatus {
    Offline,
    /// Connected and publishing their microphone.
    Online,
    /// Online and listened to by at least one supervisor.
    Listened,
    /// On a phone or video call.
    OnCall,
}

impl RepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RepStatus::Offline => "OFFLINE",
            RepStatus::Online => "ONLINE",
            RepStatus::Listened => "LISTENED",
            RepStatus::OnCall => "ON_CALL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RepStatus::Offline,
            RepStatus::Online,
            RepStatus::Listened,
            RepStatus::OnCall,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Listened beats on-call beats online: the supervisor page shows the most telling one,
    /// and the view carries each fact separately.
    pub fn derive(publishing: bool, listened: bool, on_call: bool) -> Self {
        if publishing && listened {
            RepStatus::Listened
        } else if on_call {
            RepStatus::OnCall
        } else if publishing {
            RepStatus::Online
        } else {
            RepStatus::Offline
        }
    }

    pub fn proto(self) -> proto::RepStatus {
        match self {
            RepStatus::Offline => proto::RepStatus::Offline,
            RepStatus::Online => proto::RepStatus::Online,
            RepStatus::Listened => proto::RepStatus::Listened,
            RepStatus::OnCall => proto::RepStatus::OnCall,
        }
    }
}

/// A connection of the rep to their room, as LiveKit reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub sid: String,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

/// A microphone track the rep published on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub sid: String,
    pub published_at: Option<DateTime<Utc>>,
    pub unpublished_at: Option<DateTime<Utc>>,
}

/// Publishing: some connection has not left and carries a microphone track that was published
/// and not unpublished. A function of the facts, so their arrival order does not matter.
pub fn publishing(connections: &[Connection], tracks: &[Track]) -> bool {
    connections.iter().filter(|c| c.left_at.is_none()).any(|c| {
        tracks
            .iter()
            .any(|t| t.sid == c.sid && t.published_at.is_some() && t.unpublished_at.is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip() {
        let id = Uuid::now_v7();
        for identity in [Identity::Rep(id), Identity::Supervisor(id)] {
            assert_eq!(identity.to_string().parse::<Identity>(), Ok(identity));
        }
        assert!("u_x".parse::<Identity>().is_err());
    }

    #[test]
    fn status_precedence() {
        assert_eq!(RepStatus::derive(false, false, false), RepStatus::Offline);
        assert_eq!(RepStatus::derive(true, false, false), RepStatus::Online);
        assert_eq!(RepStatus::derive(true, false, true), RepStatus::OnCall);
        assert_eq!(RepStatus::derive(true, true, true), RepStatus::Listened);
        assert_eq!(RepStatus::derive(false, true, true), RepStatus::OnCall);
        assert_eq!(RepStatus::derive(false, true, false), RepStatus::Offline);
    }

    #[test]
    fn publishing_needs_an_open_connection_with_a_live_microphone() {
        let t = Utc::now();
        let open = Connection {
            sid: "PA_1".into(),
            joined_at: None,
            left_at: None,
        };
        let closed = Connection {
            sid: "PA_1".into(),
            joined_at: None,
            left_at: Some(t),
        };
        let live = Track {
            sid: "PA_1".into(),
            published_at: Some(t),
            unpublished_at: None,
        };
        let gone = Track {
            sid: "PA_1".into(),
            published_at: Some(t),
            unpublished_at: Some(t),
        };
        let other = Track {
            sid: "PA_2".into(),
            published_at: Some(t),
            unpublished_at: None,
        };
        assert!(publishing(
            std::slice::from_ref(&open),
            std::slice::from_ref(&live)
        ));
        assert!(!publishing(&[closed], &[live]));
        assert!(!publishing(std::slice::from_ref(&open), &[gone]));
        assert!(!publishing(&[open], &[other]));
    }

    #[test]
    fn targets_follow_the_choice_and_the_live_call() {
        let call = Uuid::now_v7();
        let video = Some((VIDEO_CALL, call, Some("org_x_apt_y")));
        let phone = Some((PHONE_CALL, call, None));
        assert_eq!(
            pick_target(TargetChoice::Auto, video),
            Some((
                TargetKind::VideoCall,
                Some(call),
                Some("org_x_apt_y".to_owned())
            ))
        );
        assert_eq!(
            pick_target(TargetChoice::Auto, phone),
            Some((TargetKind::PhoneCall, Some(call), None))
        );
        assert_eq!(
            pick_target(TargetChoice::Auto, None),
            Some((TargetKind::SideRoom, None, None))
        );
        assert_eq!(
            pick_target(TargetChoice::SideRoom, video),
            Some((TargetKind::SideRoom, None, None))
        );
        assert_eq!(pick_target(TargetChoice::Call, None), None);
        assert_eq!(
            pick_target(TargetChoice::Call, Some((VIDEO_CALL, call, None))),
            None
        );
        let user = Uuid::now_v7();
        assert_eq!(voice_client(user), format!("client:u_{}", user.simple()));
        assert_eq!(voice_client(user).len(), "client:u_".len() + 32);
    }

    #[test]
    fn modes_map_to_presets() {
        assert_eq!(Mode::Listen.preset(false), Preset::SupervisorListen);
        assert_eq!(Mode::Listen.preset(true), Preset::SupervisorListenVisible);
        assert_eq!(Mode::Coach.preset(false), Preset::SupervisorCoach);
        assert_eq!(Mode::Barge.preset(true), Preset::SupervisorBarge);
    }
}
