//! The `Event` trait: what every contract message knows about itself (type name, subject, org,
//! aggregate), and the envelope a consumer receives.

use std::fmt;

use crate::proto::*;
use crate::subject::Domain;

/// A subject `sb.<domain>.<entity>.<verb>` (or `crm.<entity>.<verb>`), built from typed parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subject {
    pub domain: Domain,
    pub entity: &'static str,
    pub verb: &'static str,
}

impl Subject {
    pub const fn new(domain: Domain, entity: &'static str, verb: &'static str) -> Self {
        Self {
            domain,
            entity,
            verb,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.domain.subject_root(),
            self.entity,
            self.verb
        )
    }
}

/// A contract message. Implemented for every message of `proto/switchboard/events/v1`.
pub trait Event: prost::Message + Default + Clone + Send + Sync + 'static {
    /// Fully-qualified protobuf name: the `Sb-Event-Type` header.
    const TYPE: &'static str;
    const SUBJECT: Subject;
    /// UUID of the tenant: the `Sb-Org-Id` header.
    fn org_id(&self) -> &str;
    /// The entity whose events stay in order (the call, the appointment, the session, the rep).
    fn aggregate_id(&self) -> &str;
}

macro_rules! events {
    ($($ty:ident: $domain:ident $entity:literal $verb:literal, org = |$e:ident| $org:expr, aggregate = |$a:ident| $agg:expr;)*) => {
        $(
            impl Event for $ty {
                const TYPE: &'static str = concat!("switchboard.events.v1.", stringify!($ty));
                const SUBJECT: Subject = Subject::new(Domain::$domain, $entity, $verb);
                fn org_id(&self) -> &str {
                    let $e = self;
                    $org
                }
                fn aggregate_id(&self) -> &str {
                    let $a = self;
                    $agg
                }
            }
        )*

        /// Every event type: (Sb-Event-Type, base subject).
        pub const ALL_EVENTS: &[(&str, Subject)] = &[$((<$ty as Event>::TYPE, <$ty as Event>::SUBJECT)),*];

        /// Decodes a payload of the named type to JSON (`switchboard events tail`); `None` for an
        /// unknown type.
        pub fn decode_json(event_type: &str, payload: &[u8]) -> Option<Result<serde_json::Value, String>> {
            $(
                if event_type == <$ty as Event>::TYPE {
                    return Some(
                        <$ty as prost::Message>::decode(payload)
                            .map_err(|e| e.to_string())
                            .and_then(|event| serde_json::to_value(&event).map_err(|e| e.to_string())),
                    );
                }
            )*
            None
        }
    };
}

fn appointment_org(appointment: Option<&Appointment>) -> &str {
    appointment.map_or("", |a| a.org_id.as_str())
}

fn appointment_id(appointment: Option<&Appointment>) -> &str {
    appointment.map_or("", |a| a.id.as_str())
}

fn user_org(user: Option<&User>) -> &str {
    user.map_or("", |u| u.org_id.as_str())
}

fn user_id(user: Option<&User>) -> &str {
    user.map_or("", |u| u.id.as_str())
}

events! {
    UserCreated: Crm "user" "created", org = |e| user_org(e.user.as_ref()), aggregate = |e| user_id(e.user.as_ref());
    UserUpdated: Crm "user" "updated", org = |e| user_org(e.user.as_ref()), aggregate = |e| user_id(e.user.as_ref());
    UserDeactivated: Crm "user" "deactivated", org = |e| user_org(e.user.as_ref()), aggregate = |e| user_id(e.user.as_ref());
    AppointmentCreated: Crm "appointment" "created", org = |e| appointment_org(e.appointment.as_ref()), aggregate = |e| appointment_id(e.appointment.as_ref());
    AppointmentUpdated: Crm "appointment" "updated", org = |e| appointment_org(e.appointment.as_ref()), aggregate = |e| appointment_id(e.appointment.as_ref());
    AppointmentCancelled: Crm "appointment" "cancelled", org = |e| appointment_org(e.appointment.as_ref()), aggregate = |e| appointment_id(e.appointment.as_ref());
    VideoCallStarted: Video "call" "started", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoCallCompleted: Video "call" "completed", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoCallResumed: Video "call" "resumed", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoParticipantJoined: Video "participant" "joined", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoParticipantLeft: Video "participant" "left", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoRecordingReady: Video "recording" "ready", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VideoRecordingDeleted: Video "recording" "deleted", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    PhoneCallIncoming: Telephony "call" "incoming", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    PhoneCallStatusChanged: Telephony "call" "status_changed", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    PhoneCallCompleted: Telephony "call" "completed", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VoicemailReceived: Telephony "voicemail" "received", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    VoicemailTranscribed: Telephony "voicemail" "transcribed", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    PhoneRecordingDeleted: Telephony "recording" "deleted", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    CallQualityDegraded: Telephony "quality" "degraded", org = |e| &e.org_id, aggregate = |e| &e.call_id;
    PhoneSupervisionFailed: Telephony "supervision" "failed", org = |e| &e.org_id, aggregate = |e| &e.session_id;
    SignalingRoomStatusChanged: Signaling "room" "status_changed", org = |e| &e.org_id, aggregate = |e| &e.room_id;
    MonitoringSessionStarted: Monitoring "session" "started", org = |e| &e.org_id, aggregate = |e| &e.session_id;
    MonitoringSessionModeChanged: Monitoring "session" "mode_changed", org = |e| &e.org_id, aggregate = |e| &e.session_id;
    MonitoringSessionStopped: Monitoring "session" "stopped", org = |e| &e.org_id, aggregate = |e| &e.session_id;
    RepPresenceChanged: Monitoring "rep" "presence_changed", org = |e| &e.org_id, aggregate = |e| &e.rep_user_id;
}

/// A message as a consumer receives it: metadata from the headers, the payload still encoded.
#[derive(Debug, Clone)]
pub struct EventEnvelope {
    pub id: uuid::Uuid,
    /// `Sb-Event-Type`.
    pub event_type: String,
    /// Base subject (namespace removed).
    pub subject: String,
    pub org_id: String,
    pub traceparent: Option<String>,
    pub payload: bytes::Bytes,
    /// How many times JetStream has delivered it (1 on first delivery).
    pub delivered: i64,
}

impl EventEnvelope {
    /// Decodes the payload as `E`, checking the type header first.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                found: self.event_type.clone(),
            });
        }
        E::decode(self.payload.as_ref()).map_err(DecodeError::Protobuf)
    }

    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected event type {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("payload is not valid protobuf: {0}")]
    Protobuf(prost::DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_naming_scheme() {
        assert_eq!(
            VideoCallStarted::SUBJECT.to_string(),
            "sb.video.call.started"
        );
        assert_eq!(
            AppointmentCancelled::SUBJECT.to_string(),
            "crm.appointment.cancelled"
        );
        assert_eq!(
            RepPresenceChanged::SUBJECT.to_string(),
            "sb.monitoring.rep.presence_changed"
        );
        assert_eq!(
            PhoneCallStatusChanged::TYPE,
            "switchboard.events.v1.PhoneCallStatusChanged"
        );
        for (ty, subject) in ALL_EVENTS {
            let text = subject.to_string();
            assert!(
                text.starts_with("sb.") || text.starts_with("crm."),
                "{ty}: {text}"
            );
            assert_eq!(
                text.split('.').count(),
                if text.starts_with("crm.") { 3 } else { 4 },
                "{text}"
            );
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{text}"
            );
        }
    }

    #[test]
    fn every_subject_named_in_the_architecture_exists() {
        let names: Vec<String> = ALL_EVENTS.iter().map(|(_, s)| s.to_string()).collect();
        for expected in [
            "sb.video.call.started",
            "sb.video.call.completed",
            "sb.video.recording.ready",
            "sb.telephony.call.incoming",
            "sb.telephony.call.status_changed",
            "sb.telephony.call.completed",
            "sb.telephony.voicemail.received",
            "sb.telephony.quality.degraded",
            "sb.signaling.room.status_changed",
            "sb.monitoring.session.started",
            "sb.monitoring.session.mode_changed",
            "sb.monitoring.session.stopped",
            "sb.monitoring.rep.presence_changed",
            "crm.appointment.created",
            "crm.appointment.updated",
            "crm.appointment.cancelled",
            "crm.user.created",
            "crm.user.updated",
            "crm.user.deactivated",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} has no event type"
            );
        }
    }
}
