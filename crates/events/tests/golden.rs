//! Wire compatibility: every contract message has a binary fixture, encoded once and committed.
//! A change to a field number or type makes the fixture fail to decode into the expected value,
//! loudly. Regenerate deliberately with `UPDATE_GOLDEN=1 cargo test -p sb-events --test golden`
//! only when the break is intended (a new `v2` package, not an edit of `v1`).

use std::path::PathBuf;

use prost::Message;
use sb_events::proto::*;
use sb_events::{ALL_EVENTS, Event};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ORG: &str = "0190a000-0000-7000-8000-000000000001";
const APPOINTMENT: &str = "0190a000-0000-7000-8000-0000000000a1";
const CALL: &str = "0190a000-0000-7000-8000-0000000000c1";
const USER: &str = "0190a000-0000-7000-8000-0000000000aa";
const REP: &str = "0190a000-0000-7000-8000-0000000000bb";

fn appointment() -> Appointment {
    Appointment {
        id: APPOINTMENT.into(),
        org_id: ORG.into(),
        host_user_id: USER.into(),
        guest_user_id: "0190a000-0000-7000-8000-0000000000cc".into(),
        setter_user_id: REP.into(),
        team_id: "0190a000-0000-7000-8000-0000000000f1".into(),
        lead: Some(Lead {
            name: "Ada Lovelace".into(),
            phone: "+33612345678".into(),
            email: "ada@example.com".into(),
        }),
        scheduled_at_unix_ms: 1_795_000_000_000,
        ends_at_unix_ms: 1_795_001_800_000,
        kind: AppointmentKind::Remote as i32,
        status: AppointmentStatus::Confirmed as i32,
        version: 7,
    }
}

fn user() -> User {
    User {
        id: REP.into(),
        org_id: ORG.into(),
        role: UserRole::Closer as i32,
        team_ids: vec!["0190a000-0000-7000-8000-0000000000f1".into()],
        display_name: "Grace Hopper".into(),
        active: true,
        version: 3,
    }
}

/// Decodes fixture bytes and says whether they equal the sample.
type Check = Box<dyn Fn(&[u8]) -> Result<bool>>;

/// One fully populated value of every message, keyed by its `Sb-Event-Type`.
fn samples() -> Vec<(&'static str, Vec<u8>, Check)> {
    macro_rules! sample {
        ($ty:ty, $value:expr) => {{
            let value: $ty = $value;
            let encoded = value.encode_to_vec();
            let check: Box<dyn Fn(&[u8]) -> Result<bool>> =
                Box::new(move |bytes| Ok(<$ty>::decode(bytes)? == value));
            (<$ty as Event>::TYPE, encoded, check)
        }};
    }
    vec![
        sample!(UserCreated, UserCreated { user: Some(user()) }),
        sample!(
            UserUpdated,
            UserUpdated {
                user: Some(User {
                    role: UserRole::Setter as i32,
                    version: 4,
                    ..user()
                })
            }
        ),
        sample!(
            UserDeactivated,
            UserDeactivated {
                user: Some(User {
                    active: false,
                    version: 5,
                    ..user()
                })
            }
        ),
        sample!(
            AppointmentCreated,
            AppointmentCreated {
                appointment: Some(appointment())
            }
        ),
        sample!(
            AppointmentUpdated,
            AppointmentUpdated {
                appointment: Some(Appointment {
                    version: 8,
                    ..appointment()
                })
            }
        ),
        sample!(
            AppointmentCancelled,
            AppointmentCancelled {
                appointment: Some(Appointment {
                    status: AppointmentStatus::Cancelled as i32,
                    version: 9,
                    ..appointment()
                }),
                reason: "lead asked to reschedule".into(),
            }
        ),
        sample!(
            VideoCallStarted,
            VideoCallStarted {
                call_id: CALL.into(),
                org_id: ORG.into(),
                appointment_id: APPOINTMENT.into(),
                room_name: format!("org_{ORG}_apt_{APPOINTMENT}"),
                started_at_unix_ms: 1_795_000_010_000,
            }
        ),
        sample!(
            VideoCallCompleted,
            VideoCallCompleted {
                call_id: CALL.into(),
                org_id: ORG.into(),
                appointment_id: APPOINTMENT.into(),
                room_name: format!("org_{ORG}_apt_{APPOINTMENT}"),
                started_at_unix_ms: 1_795_000_010_000,
                ended_at_unix_ms: 1_795_001_210_000,
                duration_seconds: 1200,
                participant_count: 3,
            }
        ),
        sample!(
            VideoRecordingDeleted,
            VideoRecordingDeleted {
                recording_id: "0190a000-0000-7000-8000-0000000000e1".into(),
                call_id: CALL.into(),
                org_id: ORG.into(),
                deleted_by_user_id: USER.into(),
                reason: "user".into(),
                deleted_at_unix_ms: 1_795_002_000_000,
            }
        ),
        sample!(
            VoicemailTranscribed,
            VoicemailTranscribed {
                voicemail_id: "0190a000-0000-7000-8000-0000000000e2".into(),
                call_id: CALL.into(),
                org_id: ORG.into(),
                user_id: REP.into(),
                recording_sid: "RE0123456789abcdef0123456789abcdef".into(),
                transcription: "Hello, please call me back about the quote.".into(),
                status: "completed".into(),
                transcribed_at_unix_ms: 1_795_002_100_000,
            }
        ),
        sample!(
            PhoneRecordingDeleted,
            PhoneRecordingDeleted {
                recording_id: "0190a000-0000-7000-8000-0000000000e2".into(),
                call_id: CALL.into(),
                org_id: ORG.into(),
                recording_sid: "RE0123456789abcdef0123456789abcdef".into(),
                kind: "VOICEMAIL".into(),
                deleted_by_user_id: String::new(),
                reason: "retention".into(),
                deleted_at_unix_ms: 1_795_002_200_000,
            }
        ),
        sample!(
            VideoCallResumed,
            VideoCallResumed {
                call_id: CALL.into(),
                org_id: ORG.into(),
                appointment_id: APPOINTMENT.into(),
                room_name: format!("org_{ORG}_apt_{APPOINTMENT}"),
                resumed_at_unix_ms: 1_795_001_500_000,
                resumed_count: 1,
                earlier_segments_seconds: 1200,
            }
        ),
        sample!(
            VideoParticipantJoined,
            VideoParticipantJoined {
                call_id: CALL.into(),
                org_id: ORG.into(),
                room_name: "org_x_apt_y".into(),
                user_id: USER.into(),
                identity: "u_0190a000".into(),
                role: "host".into(),
                joined_at_unix_ms: 1_795_000_010_000,
            }
        ),
        sample!(
            VideoParticipantLeft,
            VideoParticipantLeft {
                call_id: CALL.into(),
                org_id: ORG.into(),
                room_name: "org_x_apt_y".into(),
                user_id: USER.into(),
                identity: "u_0190a000".into(),
                left_at_unix_ms: 1_795_001_210_000,
            }
        ),
        sample!(
            VideoRecordingReady,
            VideoRecordingReady {
                recording_id: "0190a000-0000-7000-8000-0000000000e1".into(),
                call_id: CALL.into(),
                org_id: ORG.into(),
                appointment_id: APPOINTMENT.into(),
                egress_id: "EG_abc123".into(),
                location: "s3://recordings/org/call.mp4".into(),
                duration_seconds: 1190,
                size_bytes: 52_428_800,
            }
        ),
        sample!(
            PhoneCallIncoming,
            PhoneCallIncoming {
                call_id: CALL.into(),
                org_id: ORG.into(),
                call_sid: "CA0123456789abcdef0123456789abcdef".into(),
                from_number: "+33612345678".into(),
                to_number: "+33198765432".into(),
                user_id: REP.into(),
                received_at_unix_ms: 1_795_000_020_000,
            }
        ),
        sample!(
            PhoneCallStatusChanged,
            PhoneCallStatusChanged {
                call_id: CALL.into(),
                org_id: ORG.into(),
                call_sid: "CA0123456789abcdef0123456789abcdef".into(),
                user_id: REP.into(),
                direction: CallDirection::Outbound as i32,
                previous_status: PhoneCallStatus::Ringing as i32,
                status: PhoneCallStatus::InProgress as i32,
                changed_at_unix_ms: 1_795_000_025_000,
            }
        ),
        sample!(
            PhoneCallCompleted,
            PhoneCallCompleted {
                call_id: CALL.into(),
                org_id: ORG.into(),
                call_sid: "CA0123456789abcdef0123456789abcdef".into(),
                user_id: REP.into(),
                direction: CallDirection::Inbound as i32,
                status: PhoneCallStatus::Completed as i32,
                duration_seconds: 312,
                started_at_unix_ms: 1_795_000_025_000,
                ended_at_unix_ms: 1_795_000_337_000,
                appointment_id: APPOINTMENT.into(),
                // Fields added after the fixture was made: empty, so the bytes are unchanged.
                price: String::new(),
                price_unit: String::new(),
            }
        ),
        sample!(
            VoicemailReceived,
            VoicemailReceived {
                voicemail_id: "0190a000-0000-7000-8000-0000000000d1".into(),
                call_id: CALL.into(),
                org_id: ORG.into(),
                user_id: REP.into(),
                from_number: "+33612345678".into(),
                recording_sid: "RE0123456789abcdef0123456789abcdef".into(),
                duration_seconds: 42,
                received_at_unix_ms: 1_795_000_400_000,
            }
        ),
        sample!(
            CallQualityDegraded,
            CallQualityDegraded {
                call_id: CALL.into(),
                org_id: ORG.into(),
                call_sid: "CA0123456789abcdef0123456789abcdef".into(),
                user_id: REP.into(),
                mos: 2.9,
                rtt_ms: 412.5,
                jitter_ms: 38.25,
                packet_loss_percent: 4.5,
                measured_at_unix_ms: 1_795_000_100_000,
            }
        ),
        sample!(
            PhoneSupervisionFailed,
            PhoneSupervisionFailed {
                session_id: "0190a000-0000-7000-8000-0000000000e9".into(),
                org_id: ORG.into(),
                call_id: CALL.into(),
                supervisor_user_id: "0190a000-0000-7000-8000-0000000000e8".into(),
                rep_user_id: REP.into(),
                reason: "call_not_live".into(),
                twilio_code: 0,
                stage: "started".into(),
                failed_at_unix_ms: 1_795_000_200_000,
            }
        ),
        sample!(
            SignalingRoomStatusChanged,
            SignalingRoomStatusChanged {
                room_id: "room_0190a000".into(),
                org_id: ORG.into(),
                appointment_id: APPOINTMENT.into(),
                previous_status: SignalingRoomStatus::Waiting as i32,
                status: SignalingRoomStatus::InProgress as i32,
                practitioner_joined: true,
                patient_joined: true,
                changed_at_unix_ms: 1_795_000_030_000,
            }
        ),
        sample!(
            MonitoringSessionStarted,
            MonitoringSessionStarted {
                session_id: "0190a000-0000-7000-8000-0000000000e9".into(),
                org_id: ORG.into(),
                supervisor_user_id: USER.into(),
                rep_user_id: REP.into(),
                mode: MonitoringMode::Listen as i32,
                started_at_unix_ms: 1_795_000_040_000,
                target: Some(MonitoringSessionTarget {
                    kind: MonitoringTarget::PhoneCall as i32,
                    call_id: "0190a000-0000-7000-8000-0000000000c1".into(),
                    room_name: String::new(),
                    supervisor_address: "client:u_0190a0000000700080000000000000a1".into(),
                }),
            }
        ),
        sample!(
            MonitoringSessionModeChanged,
            MonitoringSessionModeChanged {
                session_id: "0190a000-0000-7000-8000-0000000000e9".into(),
                org_id: ORG.into(),
                supervisor_user_id: USER.into(),
                rep_user_id: REP.into(),
                previous_mode: MonitoringMode::Listen as i32,
                mode: MonitoringMode::Barge as i32,
                changed_at_unix_ms: 1_795_000_050_000,
                target: Some(MonitoringSessionTarget {
                    kind: MonitoringTarget::PhoneCall as i32,
                    call_id: "0190a000-0000-7000-8000-0000000000c1".into(),
                    room_name: String::new(),
                    supervisor_address: "client:u_0190a0000000700080000000000000a1".into(),
                }),
            }
        ),
        sample!(
            MonitoringSessionStopped,
            MonitoringSessionStopped {
                session_id: "0190a000-0000-7000-8000-0000000000e9".into(),
                org_id: ORG.into(),
                supervisor_user_id: USER.into(),
                rep_user_id: REP.into(),
                started_at_unix_ms: 1_795_000_040_000,
                stopped_at_unix_ms: 1_795_000_640_000,
                duration_seconds: 600,
                target: Some(MonitoringSessionTarget {
                    kind: MonitoringTarget::PhoneCall as i32,
                    call_id: "0190a000-0000-7000-8000-0000000000c1".into(),
                    room_name: String::new(),
                    supervisor_address: "client:u_0190a0000000700080000000000000a1".into(),
                }),
            }
        ),
        sample!(
            RepPresenceChanged,
            RepPresenceChanged {
                org_id: ORG.into(),
                rep_user_id: REP.into(),
                previous_status: RepStatus::Online as i32,
                status: RepStatus::Listened as i32,
                listened_by: vec![USER.into()],
                changed_at_unix_ms: 1_795_000_040_000,
            }
        ),
    ]
}

fn fixture(event_type: &str) -> PathBuf {
    let name = event_type.rsplit('.').next().unwrap_or(event_type);
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.bin"))
}

#[test]
fn every_message_decodes_from_its_golden_fixture() -> Result {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (event_type, encoded, check) in samples() {
        let path = fixture(event_type);
        if update {
            std::fs::write(&path, &encoded)?;
            continue;
        }
        let golden = std::fs::read(&path)
            .map_err(|e| format!("{}: {e} (new message? add its fixture)", path.display()))?;
        assert!(
            check(&golden)?,
            "{event_type}: the golden fixture no longer decodes to the same value"
        );
        assert_eq!(golden, encoded, "{event_type}: encoding changed");
    }
    Ok(())
}

#[test]
fn every_event_type_has_a_sample() {
    let sampled: Vec<&str> = samples().iter().map(|(t, _, _)| *t).collect();
    for (event_type, _) in ALL_EVENTS {
        assert!(
            sampled.contains(event_type),
            "{event_type} has no golden sample"
        );
    }
    assert_eq!(sampled.len(), ALL_EVENTS.len());
}

#[test]
fn a_changed_field_number_is_caught() -> Result {
    // What the fixture guards against: the same bytes read with a different layout.
    let golden = std::fs::read(fixture(<VideoCallStarted as Event>::TYPE))?;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Renumbered {
        #[prost(string, tag = "2")]
        call_id: String,
    }
    let misread = Renumbered::decode(golden.as_slice())?;
    assert_ne!(misread.call_id, CALL);
    Ok(())
}
