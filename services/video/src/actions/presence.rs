//! Recomputing a call's presence and status from what is known, inside the caller's
//! transaction (the call row locked), and announcing the transitions.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use sb_events::outbox::Outbox;
use sb_events::proto::{
    VideoCallCompleted, VideoCallStarted, VideoParticipantJoined, VideoParticipantLeft,
};

use crate::domain::call::{CallStatus, Identity};
use crate::domain::presence::{self, seconds_between};
use crate::error::VideoError;
use crate::store::calls::{self, Call, Participant};

/// What a refresh changed, and the call and its participants as they now stand (the call still
/// locked by the caller's transaction).
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub completed: bool,
    pub call: Call,
    pub participants: Vec<Participant>,
}

fn ms(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or(0, |t| t.timestamp_millis())
}

fn user_id(identity: &str) -> String {
    match identity.parse::<Identity>() {
        Ok(Identity::User(id)) => id.to_string(),
        _ => String::new(),
    }
}

/// `sb.video.call.started` of `call`.
pub fn started(call: &Call, at: Option<DateTime<Utc>>) -> VideoCallStarted {
    VideoCallStarted {
        call_id: call.id.to_string(),
        org_id: call.org_id.to_string(),
        appointment_id: call.appointment_id.to_string(),
        room_name: call.room_name.clone(),
        started_at_unix_ms: ms(at),
    }
}

/// `sb.video.participant.joined` of `participant`.
pub fn joined(
    call: &Call,
    participant: &Participant,
    at: Option<DateTime<Utc>>,
) -> VideoParticipantJoined {
    VideoParticipantJoined {
        call_id: call.id.to_string(),
        org_id: call.org_id.to_string(),
        room_name: call.room_name.clone(),
        user_id: user_id(&participant.identity),
        identity: participant.identity.clone(),
        role: participant.role.clone(),
        joined_at_unix_ms: ms(at),
    }
}

/// Announces that a call started.
pub async fn announce_started(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    at: Option<DateTime<Utc>>,
) -> Result<(), VideoError> {
    outbox.enqueue(conn, &started(call, at)).await?;
    Ok(())
}

/// Announces a participant's change of presence.
pub async fn announce_presence(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    participant: &Participant,
    active: bool,
    at: Option<DateTime<Utc>>,
) -> Result<(), VideoError> {
    if active {
        outbox.enqueue(conn, &joined(call, participant, at)).await?;
    } else {
        outbox
            .enqueue(
                conn,
                &VideoParticipantLeft {
                    call_id: call.id.to_string(),
                    org_id: call.org_id.to_string(),
                    room_name: call.room_name.clone(),
                    user_id: user_id(&participant.identity),
                    identity: participant.identity.clone(),
                    left_at_unix_ms: ms(at),
                },
            )
            .await?;
    }
    Ok(())
}

/// Recomputes the presence of `identities` from their LiveKit sessions (those with none keep
/// what the API set), then the call's status and times. Must run with the call locked.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    identities: &[&str],
    end_reason: Option<&str>,
) -> Result<Refreshed, VideoError> {
    let mut participants = Vec::with_capacity(identities.len());
    for identity in identities {
        if let Some(participant) = calls::find_participant(conn, call.id, identity).await? {
            participants.push(participant);
        }
    }
    refresh_participants(conn, outbox, call, &participants, end_reason).await
}

/// [`refresh`] for participants the caller has just read or written in this transaction.
pub async fn refresh_participants(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    participants: &[Participant],
    end_reason: Option<&str>,
) -> Result<Refreshed, VideoError> {
    for participant in participants {
        let sessions = calls::sessions(conn, call.id, &participant.identity).await?;
        if sessions.is_empty() {
            continue;
        }
        let now = presence::presence(&sessions, call.segment_started_at);
        let before = (
            participant.active,
            participant.joined_at,
            participant.left_at,
            participant.total_seconds,
        );
        if before != (now.active, now.joined_at, now.left_at, now.total_seconds) {
            calls::write_presence(conn, participant.id, &now).await?;
        }
        if participant.active != now.active {
            let at = if now.active {
                now.joined_at
            } else {
                now.left_at
            };
            announce_presence(conn, outbox, call, participant, now.active, at).await?;
        }
    }
    settle(conn, outbox, call, end_reason).await
}

/// Moves the call's status and times to what its participants say: ONGOING once someone is
/// in, COMPLETED once everyone left or LiveKit finished the room (never reopened), and the
/// times of a finished call follow late facts.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    end_reason: Option<&str>,
) -> Result<Refreshed, VideoError> {
    // Re-read: the caller may have changed it in this transaction.
    let call = calls::lock(conn, call.id).await?;
    let participants = calls::participants(conn, call.id).await?;
    let attendance: Vec<_> = participants.iter().map(Participant::attendance).collect();
    let status = call.status;
    let first_join = presence::start_time(&attendance);
    let started_at = match (call.started_at, first_join) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (mut started, mut completed) = (false, false);
    let (new_status, ended_at) = if status.is_final() {
        let ended = if status == CallStatus::Completed {
            presence::end_time(&attendance, call.room_finished_at).or(call.ended_at)
        } else {
            call.ended_at
        };
        (status, ended)
    } else if let Some(end) = presence::call_end(&attendance, call.room_finished_at) {
        completed = true;
        (CallStatus::Completed, Some(end))
    } else if status == CallStatus::Pending && attendance.iter().any(|a| a.active) {
        started = true;
        (CallStatus::Ongoing, None)
    } else {
        (status, None)
    };
    // A resumed call's duration is its earlier segments plus the current one, gaps excluded.
    let segment_start = call.segment_started_at.or(started_at);
    let duration = match (segment_start, ended_at) {
        (Some(start), Some(end)) => Some(
            i32::try_from(seconds_between(start, end))
                .unwrap_or(i32::MAX)
                .saturating_add(call.earlier_segments_seconds),
        ),
        _ => None,
    };
    let mut call = call;
    if (new_status, started_at, ended_at, duration)
        != (
            status,
            call.started_at,
            call.ended_at,
            call.duration_seconds,
        )
    {
        let changed_status = (new_status != status).then_some(new_status);
        call = calls::update_times(
            conn,
            call.id,
            changed_status,
            started_at,
            ended_at,
            duration,
        )
        .await?;
    }
    if started {
        announce_started(conn, outbox, &call, started_at).await?;
    }
    if completed {
        if let Some(reason) = end_reason {
            calls::set_end_reason(conn, call.id, reason).await?;
            call.end_reason.get_or_insert_with(|| reason.to_owned());
        }
        let joined = u32::try_from(attendance.iter().filter(|a| a.joined_at.is_some()).count())
            .unwrap_or(u32::MAX);
        outbox
            .enqueue(
                conn,
                &VideoCallCompleted {
                    call_id: call.id.to_string(),
                    org_id: call.org_id.to_string(),
                    appointment_id: call.appointment_id.to_string(),
                    room_name: call.room_name.clone(),
                    started_at_unix_ms: ms(started_at),
                    ended_at_unix_ms: ms(ended_at),
                    duration_seconds: duration.map_or(0, i64::from),
                    participant_count: joined,
                },
            )
            .await?;
    }
    Ok(Refreshed {
        completed,
        call,
        participants,
    })
}
