//! Ad-hoc meetings (seed 003): room names, call types, modes, member roles, presence and grants.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use sb_livekit::Preset;
use uuid::Uuid;

/// The name clients give a meeting and use in paths: 1–64 of `[A-Za-z0-9_-]`, unique per org.
/// The alphabet keeps it safe in a path and in the invite link without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("may only contain letters, digits, '_' and '-'".to_owned());
        }
        // ASCII only from here, so bytes are characters.
        if raw.len() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomName {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The link the frontend shows to invite someone (seed 003's `/meeting/invite?room=`).
pub fn invite_link(room: &str) -> String {
    format!("/meeting/invite?room={room}")
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        concat!("expected one of", $(" ", $text),+, ", got {:?}"),
                        other
                    )),
                }
            }
        }

        sb_db::text_enum!($name);
    };
}

text_enum!(
    /// Seed 003's `call_type`: what participants may publish.
    #[derive(Default)]
    CallType {
        Audio => "audio",
        #[default]
        Video => "video",
    }
);

text_enum!(
    /// A meeting where everyone speaks, or a webinar where only the host and speakers do.
    #[derive(Default)]
    Mode {
        #[default]
        Meeting => "meeting",
        Webinar => "webinar",
    }
);

text_enum!(
    /// Whether a meeting can still be joined; only its creator ends it.
    MeetingStatus { Open => "open", Ended => "ended" }
);

text_enum!(
    /// What a member is in a meeting (`video_meeting_members.role`).
    MemberRole {
        Host => "host",
        Participant => "participant",
        Speaker => "speaker",
        Listener => "listener",
    }
);

/// The grants a member's LiveKit token carries.
///
/// A webinar listener only watches and listens, whatever the call type: giving listeners the
/// audio preset in an audio webinar would let every attendee speak, which is what a webinar
/// exists to prevent. Otherwise an audio call publishes the microphone only, for everyone.
pub fn preset(call_type: CallType, mode: Mode, role: MemberRole) -> Preset {
    match (mode, role, call_type) {
        (Mode::Webinar, MemberRole::Listener | MemberRole::Participant, _) => {
            Preset::WebinarListener
        }
        (_, _, CallType::Audio) => Preset::AudioOnlyParticipant,
        (Mode::Webinar, MemberRole::Host | MemberRole::Speaker, CallType::Video) => {
            Preset::WebinarSpeaker
        }
        (Mode::Meeting, MemberRole::Host, CallType::Video) => Preset::Host,
        (Mode::Meeting, _, CallType::Video) => Preset::Participant,
    }
}

/// Most invitees a meeting takes (the creator comes on top).
pub const MAX_INVITEES: usize = 50;

/// A request field that does not make a valid meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub detail: String,
}

fn refused(field: &'static str, detail: impl Into<String>) -> Refused {
    Refused {
        field,
        detail: detail.into(),
    }
}

/// Who a new meeting's members are and as what: the creator hosts; in a meeting invitees are
/// participants; in a webinar the speakers speak (they need not also be listed as participants)
/// and the other invitees listen. Duplicates collapse; the creator listed as an invitee stays host.
pub fn members(
    creator: Uuid,
    mode: Mode,
    participants: &[Uuid],
    speakers: &[Uuid],
) -> Result<Vec<(Uuid, MemberRole)>, Refused> {
    if mode == Mode::Meeting && !speakers.is_empty() {
        return Err(refused("speakers", "speakers are only for webinars"));
    }
    let mut members = vec![(creator, MemberRole::Host)];
    let invitee_role = match mode {
        Mode::Meeting => MemberRole::Participant,
        Mode::Webinar => MemberRole::Listener,
    };
    for &speaker in speakers {
        if !members.iter().any(|(id, _)| *id == speaker) {
            members.push((speaker, MemberRole::Speaker));
        }
    }
    for &participant in participants {
        if !members.iter().any(|(id, _)| *id == participant) {
            members.push((participant, invitee_role));
        }
    }
    if members.len() - 1 > MAX_INVITEES {
        let field = if speakers.is_empty() {
            "participants"
        } else {
            "participants and speakers"
        };
        return Err(refused(
            field,
            format!("at most {MAX_INVITEES} distinct users may be invited"),
        ));
    }
    Ok(members)
}

/// Whether a member is in the room, and their last join and departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presence {
    pub in_room: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

/// Who reports a join or a departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The member, through the API, as it happens: always the latest word about them.
    Api,
    /// A LiveKit webhook: delivered in any order, and stamped (`created_at`) in whole seconds.
    Webhook,
}

/// Whether `other` is certainly later than a webhook stamped `at`. The stamp is truncated to the
/// second, so the event happened somewhere in `[at, at + 1s)`: only a time at or beyond the end
/// of that second is certainly later (an API join 600 ms into the second is not).
fn certainly_after(other: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    other.is_some_and(|other| other >= at + Duration::seconds(1))
}

impl Presence {
    /// The member joined at `at`; `None` when that changes nothing, or when a webhook's join is
    /// older than a departure already known.
    pub fn joined(self, at: DateTime<Utc>, source: Source) -> Option<Self> {
        if source == Source::Webhook && certainly_after(self.left_at, at) {
            return None;
        }
        let next = Self {
            in_room: true,
            joined_at: Some(self.joined_at.map_or(at, |j| j.max(at))),
            left_at: self.left_at,
        };
        (next != self).then_some(next)
    }

    /// The member left at `at`; `None` when that changes nothing, or when a webhook's departure
    /// is older than a join already known (they came back since).
    pub fn left(self, at: DateTime<Utc>, source: Source) -> Option<Self> {
        if source == Source::Webhook && certainly_after(self.joined_at, at) {
            return None;
        }
        let next = Self {
            in_room: false,
            joined_at: self.joined_at,
            left_at: Some(self.left_at.map_or(at, |l| l.max(at))),
        };
        (next != self).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_short_and_url_safe() {
        for good in ["a", "team-meeting", "call_1-2", &"x".repeat(64)] {
            assert!(RoomName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", " ", "a b", "é", "a/b", "a?b", &"x".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(invite_link("team-1"), "/meeting/invite?room=team-1");
    }

    #[test]
    fn enums_round_trip_through_their_text() {
        for t in [CallType::Audio, CallType::Video] {
            assert_eq!(t.as_str().parse::<CallType>(), Ok(t));
        }
        for m in [Mode::Meeting, Mode::Webinar] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        for r in [
            MemberRole::Host,
            MemberRole::Participant,
            MemberRole::Speaker,
            MemberRole::Listener,
        ] {
            assert_eq!(r.as_str().parse::<MemberRole>(), Ok(r));
        }
        for s in [MeetingStatus::Open, MeetingStatus::Ended] {
            assert_eq!(s.as_str().parse::<MeetingStatus>(), Ok(s));
        }
        assert!("VIDEO".parse::<CallType>().is_err());
        assert_eq!(CallType::default(), CallType::Video);
        assert_eq!(Mode::default(), Mode::Meeting);
    }

    #[test]
    fn presets_follow_call_type_mode_and_role() {
        use CallType::*;
        use MemberRole::*;
        assert_eq!(preset(Video, Mode::Meeting, Host), Preset::Host);
        assert_eq!(
            preset(Video, Mode::Meeting, Participant),
            Preset::Participant
        );
        for role in [Host, Participant] {
            assert_eq!(
                preset(Audio, Mode::Meeting, role),
                Preset::AudioOnlyParticipant
            );
        }
        assert_eq!(preset(Video, Mode::Webinar, Host), Preset::WebinarSpeaker);
        assert_eq!(
            preset(Video, Mode::Webinar, Speaker),
            Preset::WebinarSpeaker
        );
        assert_eq!(
            preset(Video, Mode::Webinar, Listener),
            Preset::WebinarListener
        );
        assert_eq!(
            preset(Audio, Mode::Webinar, Speaker),
            Preset::AudioOnlyParticipant
        );
        assert_eq!(
            preset(Audio, Mode::Webinar, Listener),
            Preset::WebinarListener,
            "an audio webinar's listeners still publish nothing"
        );
    }

    #[test]
    fn members_make_the_creator_host_and_collapse_duplicates() -> Result<(), Refused> {
        let (me, a, b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            members(me, Mode::Meeting, &[a, me, a, b], &[])?,
            vec![
                (me, MemberRole::Host),
                (a, MemberRole::Participant),
                (b, MemberRole::Participant)
            ]
        );
        assert_eq!(
            members(me, Mode::Webinar, &[a, b], &[b, me])?,
            vec![
                (me, MemberRole::Host),
                (b, MemberRole::Speaker),
                (a, MemberRole::Listener)
            ]
        );
        assert_eq!(
            members(me, Mode::Meeting, &[a], &[b]).map_err(|r| r.field),
            Err("speakers")
        );
        Ok(())
    }

    #[test]
    fn at_most_fifty_distinct_invitees() {
        let me = Uuid::now_v7();
        let mut invited: Vec<Uuid> = (0..MAX_INVITEES).map(|_| Uuid::now_v7()).collect();
        invited.push(invited[0]);
        invited.push(me);
        assert!(members(me, Mode::Meeting, &invited, &[]).is_ok());
        invited.push(Uuid::now_v7());
        assert_eq!(
            members(me, Mode::Meeting, &invited, &[]).map_err(|r| r.field),
            Err("participants")
        );
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn presence_only_moves_forward_whatever_the_order() {
        use Source::Webhook;
        let out = Presence::default();
        let joined = out.joined(at(10), Webhook).unwrap_or_default();
        assert_eq!(
            joined,
            Presence {
                in_room: true,
                joined_at: Some(at(10)),
                left_at: None
            }
        );
        assert_eq!(
            joined.joined(at(10), Webhook),
            None,
            "a replay changes nothing"
        );
        assert_eq!(
            joined.left(at(5), Webhook),
            None,
            "an older departure is stale"
        );
        let left = joined.left(at(20), Webhook).unwrap_or_default();
        assert!(!left.in_room);
        assert_eq!(left.left_at, Some(at(20)));
        assert_eq!(
            left.joined(at(15), Webhook),
            None,
            "an older arrival is stale"
        );
        // Out of order: the departure first, then its own (older) arrival.
        let left_first = out.left(at(20), Webhook).unwrap_or_default();
        assert_eq!(left_first.joined(at(10), Webhook), None);
    }

    #[test]
    fn webhook_seconds_do_not_lose_to_the_api_clock_within_the_same_second() {
        let api_join = at(30) + Duration::milliseconds(600);
        let inside = Presence::default()
            .joined(api_join, Source::Api)
            .unwrap_or_default();
        // LiveKit stamps the departure :30 although it happened after :30.600.
        let out = inside.left(at(30), Source::Webhook).unwrap_or_default();
        assert!(!out.in_room);
        assert_eq!(out.joined_at, Some(api_join));
        // But a departure a whole second before the join is stale.
        assert_eq!(inside.left(at(29), Source::Webhook), None);
    }

    #[test]
    fn the_api_speaks_for_now_even_against_a_webhook_clock_ahead() {
        // LiveKit's clock runs ahead: the room closed "at :40" as seen from here at :39.5.
        let closed = Presence {
            in_room: false,
            joined_at: Some(at(10)),
            left_at: Some(at(40)),
        };
        let back = closed
            .joined(at(39) + Duration::milliseconds(500), Source::Api)
            .unwrap_or_default();
        assert!(back.in_room, "the member is joining right now");
        let out = back
            .left(at(39) + Duration::milliseconds(900), Source::Api)
            .unwrap_or_default();
        assert!(!out.in_room);
    }
}
