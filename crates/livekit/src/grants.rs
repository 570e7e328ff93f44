//! Grant presets. Every permission is written out: the SDK's defaults allow publishing (an unset
//! `can_publish` means yes), so nothing is left to them. A struct literal without
//! `..Default::default()` also makes a new SDK field a compile error here, not a silent default.

use livekit_api::access_token::VideoGrants;

/// Who a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// The appointment's host: camera, microphone, screen share, data.
    Host,
    /// A platform user invited to a call or meeting: camera, microphone, screen share, data.
    Participant,
    /// An external guest (guest link), admitted from the lobby: camera, microphone, data.
    Guest,
    /// A participant who joins by voice only: microphone and data.
    AudioOnlyParticipant,
    /// A webinar speaker: camera, microphone, screen share, data.
    WebinarSpeaker,
    /// A webinar attendee: watches and listens, publishes nothing.
    WebinarListener,
    /// A sales rep in their monitoring room: microphone only; hears a coaching supervisor.
    RepPublisher,
    /// A supervisor listening: subscribes only, invisible to the rep.
    SupervisorListen,
    /// A supervisor listening where the org tells reps they are listened to: subscribes only,
    /// visible in the participant list.
    SupervisorListenVisible,
    /// A paused monitoring session: hears nothing, says nothing, invisible.
    SupervisorPaused,
    /// A supervisor coaching: speaks to the rep, still invisible in the participant list.
    SupervisorCoach,
    /// A supervisor barging in: a visible participant with a microphone.
    SupervisorBarge,
    /// The egress recorder: subscribes, hidden, marked as recorder.
    Recorder,
}

const CAMERA: &str = "camera";
const MICROPHONE: &str = "microphone";
const SCREEN_SHARE: &str = "screen_share";
const SCREEN_SHARE_AUDIO: &str = "screen_share_audio";

impl Preset {
    pub const ALL: [Preset; 13] = [
        Preset::Host,
        Preset::Participant,
        Preset::Guest,
        Preset::AudioOnlyParticipant,
        Preset::WebinarSpeaker,
        Preset::WebinarListener,
        Preset::RepPublisher,
        Preset::SupervisorListen,
        Preset::SupervisorListenVisible,
        Preset::SupervisorPaused,
        Preset::SupervisorCoach,
        Preset::SupervisorBarge,
        Preset::Recorder,
    ];

    /// The grants of this preset for `room`.
    pub fn grants(self, room: &str) -> VideoGrants {
        let (publish, sources, data, hidden, recorder): (bool, &[&str], bool, bool, bool) =
            match self {
                Preset::Host | Preset::Participant | Preset::WebinarSpeaker => (
                    true,
                    &[CAMERA, MICROPHONE, SCREEN_SHARE, SCREEN_SHARE_AUDIO],
                    true,
                    false,
                    false,
                ),
                Preset::Guest => (true, &[CAMERA, MICROPHONE], true, false, false),
                Preset::AudioOnlyParticipant => (true, &[MICROPHONE], true, false, false),
                Preset::WebinarListener => (false, &[], false, false, false),
                Preset::RepPublisher => (true, &[MICROPHONE], false, false, false),
                Preset::SupervisorListen | Preset::SupervisorPaused => {
                    (false, &[], false, true, false)
                }
                Preset::SupervisorListenVisible => (false, &[], false, false, false),
                Preset::SupervisorCoach => (true, &[MICROPHONE], false, true, false),
                Preset::SupervisorBarge => (true, &[MICROPHONE], false, false, false),
                Preset::Recorder => (false, &[], false, true, true),
            };
        VideoGrants {
            room_create: false,
            room_list: false,
            room_record: false,
            room_admin: false,
            room_join: true,
            room: room.to_owned(),
            destination_room: String::new(),
            can_publish: Some(publish),
            can_subscribe: Some(self != Preset::SupervisorPaused),
            can_publish_data: Some(data),
            can_publish_sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            // Names and metadata are set by the backend, never by the participant.
            can_update_own_metadata: Some(false),
            ingress_admin: false,
            hidden,
            recorder,
            agent: false,
        }
    }

    /// Server-side grants for the backend's own API calls: administer and create rooms, record.
    pub fn server(room: &str) -> VideoGrants {
        VideoGrants {
            room_create: true,
            room_list: true,
            room_record: true,
            room_admin: true,
            room_join: false,
            room: room.to_owned(),
            destination_room: String::new(),
            can_publish: Some(false),
            can_subscribe: Some(false),
            can_publish_data: Some(false),
            can_publish_sources: Vec::new(),
            can_update_own_metadata: Some(false),
            ingress_admin: false,
            hidden: true,
            recorder: false,
            agent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_preset_leaves_publishing_to_the_sdk_default() {
        for preset in Preset::ALL {
            let grants = preset.grants("org_x_apt_y");
            assert!(grants.can_publish.is_some(), "{preset:?}");
            assert!(grants.can_subscribe.is_some(), "{preset:?}");
            assert!(grants.can_publish_data.is_some(), "{preset:?}");
            assert!(grants.can_update_own_metadata.is_some(), "{preset:?}");
            assert!(
                !grants.room_admin && !grants.room_create && !grants.room_list,
                "{preset:?}: no server powers"
            );
            assert!(grants.room_join);
            assert_eq!(grants.room, "org_x_apt_y");
            // Publishing is allowed exactly when sources are listed.
            assert_eq!(
                grants.can_publish == Some(true),
                !grants.can_publish_sources.is_empty(),
                "{preset:?}"
            );
        }
    }

    #[test]
    fn listeners_publish_nothing_and_supervisors_hide_until_they_barge() {
        let listen = Preset::SupervisorListen.grants("r");
        assert_eq!(
            (listen.can_publish, listen.can_publish_data, listen.hidden),
            (Some(false), Some(false), true)
        );
        let coach = Preset::SupervisorCoach.grants("r");
        assert_eq!((coach.can_publish, coach.hidden), (Some(true), true));
        assert_eq!(coach.can_publish_sources, vec!["microphone"]);
        let barge = Preset::SupervisorBarge.grants("r");
        assert_eq!((barge.can_publish, barge.hidden), (Some(true), false));
        let rep = Preset::RepPublisher.grants("r");
        assert_eq!(
            rep.can_publish_sources,
            vec!["microphone"],
            "the rep publishes the microphone only"
        );
        assert_eq!(rep.can_subscribe, Some(true), "the rep hears a coach");
        let webinar = Preset::WebinarListener.grants("r");
        assert_eq!(
            (webinar.can_publish, webinar.can_subscribe),
            (Some(false), Some(true))
        );
        let recorder = Preset::Recorder.grants("r");
        assert!(recorder.recorder && recorder.hidden);
        let guest = Preset::Guest.grants("r");
        assert!(
            !guest
                .can_publish_sources
                .contains(&"screen_share".to_owned())
        );
    }
}
