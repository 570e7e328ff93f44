//! Joining, starting and stopping appointment calls.

use chrono::{SubsecRound as _, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::Principal;
use sb_db::models::{Appointment, AppointmentStatus};
use sb_events::outbox::{Outbox, Pending};
use sb_events::proto::VideoCallResumed;
use sb_livekit::{ParticipantToken, Preset, RoomOptions};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::config::Environment;
use uuid::Uuid;

use crate::actions::{access, lobby, presence, recording};
use crate::domain::call::{
    CallStatus, DisplayName, Identity, Window, appointment_call_id, appointment_room, resumes,
};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::calls::{self, Call, NewCall, NewParticipant, Participant};

/// Seconds LiveKit keeps an empty appointment room before closing it (its room_finished webhook
/// then completes the call if nobody's departure was reported).
const EMPTY_ROOM_TIMEOUT_SECS: u32 = 300;

pub struct Joined {
    pub call: Call,
    pub appointment: Appointment,
    pub participant: Participant,
    pub token: ParticipantToken,
}

fn room_options(call_id: Uuid) -> RoomOptions {
    RoomOptions {
        empty_timeout_secs: EMPTY_ROOM_TIMEOUT_SECS,
        max_participants: 0,
        metadata: serde_json::json!({ "callId": call_id }).to_string(),
    }
}

/// `POST /calls/appointments/{appointmentId}/join`.
pub async fn join(
    state: &AppState,
    principal: &Principal,
    appointment_id: Uuid,
    display_name: Option<DisplayName>,
) -> Result<Joined, VideoError> {
    let mut conn = state.conn().await?;
    let (appointment, existing) =
        access::appointment_with_call(&mut conn, principal, appointment_id).await?;
    if appointment.status == AppointmentStatus::Cancelled {
        return Err(VideoError::conflict(
            Code::AppointmentCancelled,
            "this appointment was cancelled",
        ));
    }
    let window = lobby::window(state, &appointment)?;
    if let Some(call) = existing.as_ref().filter(|call| !call.room_created) {
        ensure_room(state, &mut conn, call).await?;
    }

    let identity = Identity::User(principal.user_id.as_uuid()).to_string();
    let is_host = appointment.host_user_id == principal.user_id.as_uuid();
    let name = display_name
        .map(DisplayName::into_inner)
        .or_else(|| {
            principal
                .name
                .clone()
                .filter(|n| DisplayName::parse(n).is_ok())
        })
        .unwrap_or_else(|| if is_host { "Host" } else { "Participant" }.to_owned());
    let role = principal.role.as_str();
    let participant_in = |call: &Call| NewParticipant {
        id: Uuid::now_v7(),
        call_id: call.id,
        org_id: call.org_id,
        user_id: Some(principal.user_id.as_uuid()),
        identity: &identity,
        role,
        display_name: &name,
        is_host,
        is_guest: false,
    };
    let (call, participant) = match existing {
        Some(call) => join_existing(state, &mut conn, call, &window, &participant_in).await?,
        None => match first_join(state, &mut conn, &appointment, &participant_in).await? {
            Some(joined) => joined,
            None => {
                // Another first join inserted the call just before: join it as later joiners do.
                let call = calls::find_by_appointment(&mut conn, appointment.id)
                    .await?
                    .ok_or(VideoError::not_found("call"))?;
                join_existing(state, &mut conn, call, &window, &participant_in).await?
            }
        },
    };
    let preset = if is_host {
        Preset::Host
    } else {
        Preset::Participant
    };
    let token = state
        .tokens
        .issue(
            &call.room_name,
            &participant.identity,
            &participant.display_name,
            preset,
            None,
            None,
        )
        .map_err(VideoError::internal)?;
    Ok(Joined {
        call,
        appointment,
        participant,
        token,
    })
}

/// A join of a call that exists (also when this join's first join lost the race to insert it),
/// in one transaction: the call locked, resumed if it had ended within the appointment's window
/// (its room created again), the participant ensured present with an API session, the presence
/// announced.
async fn join_existing<'a>(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: Call,
    window: &Window,
    participant_in: impl Fn(&Call) -> NewParticipant<'a> + Sync,
) -> Result<(Call, Participant), VideoError> {
    let outbox = &state.outbox;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            // Microseconds, as Postgres keeps them: the times the join writes and announces are
            // the ones it later reads back.
            let now = Utc::now().trunc_subsecs(6);
            let mut call = calls::lock(conn, call.id).await?;
            let mut new_room = false;
            let status = call.status;
            if status.is_final() {
                if !resumes(status, window, now) {
                    return Err(VideoError::conflict(
                        Code::CallFinished,
                        format!("this call is {}", status.as_str()),
                    ));
                }
                call = resume(conn, outbox, &call, now).await?;
                // LiveKit closed the empty room: open it again while this transaction goes on.
                new_room = true;
            }
            // A new room is created in LiveKit while this transaction writes the participant:
            // the two round trips overlap, and the commit still waits for both.
            let room = async {
                if new_room {
                    Some(create_room(state, &call).await)
                } else {
                    None
                }
            };
            let joined = async {
                let participant = calls::ensure_participant(conn, &participant_in(&call)).await?;
                let identity = participant.identity.clone();
                if !calls::has_open_session(conn, call.id, &identity).await? {
                    let sid = format!("{}{}", calls::API_SESSION_PREFIX, Uuid::now_v7());
                    calls::record_session(conn, call.id, &sid, &identity, Some(Utc::now()), None)
                        .await?;
                }
                let refreshed =
                    presence::refresh_participants(conn, outbox, &call, &[participant], None)
                        .await?;
                let participant = refreshed
                    .participants
                    .into_iter()
                    .find(|p| p.identity == identity)
                    .ok_or(VideoError::not_found("participant"))?;
                Ok::<_, VideoError>((refreshed.call, participant))
            };
            let (room, joined) = tokio::join!(room, joined);
            let (mut call, participant) = joined?;
            match room {
                None | Some(Ok(())) => {}
                Some(Err(error)) if state.config.environment == Environment::Development => {
                    tracing::warn!(call.id = %call.id, error = %error, "LiveKit room not created; continuing (development: the server auto-creates rooms, the reconciliation job retries)");
                    calls::set_room_created(conn, call.id, false).await?;
                    call.room_created = false;
                }
                Some(Err(error)) => return Err(error.into()),
            }
            Ok((call, participant))
        }))
        .await
}

/// Opens a new segment of a completed call and announces it (`sb.video.call.resumed`).
async fn resume(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    at: chrono::DateTime<Utc>,
) -> Result<Call, VideoError> {
    let call = calls::resume(conn, call.id, at).await?;
    outbox
        .enqueue(
            conn,
            &VideoCallResumed {
                call_id: call.id.to_string(),
                org_id: call.org_id.to_string(),
                appointment_id: call.appointment_id.to_string(),
                room_name: call.room_name.clone(),
                resumed_at_unix_ms: at.timestamp_millis(),
                resumed_count: u32::try_from(call.resumed_count).unwrap_or(0),
                earlier_segments_seconds: i64::from(call.earlier_segments_seconds),
            },
        )
        .await?;
    tracing::info!(call.id = %call.id, resumed_count = call.resumed_count, "call resumed");
    Ok(call)
}

/// The appointment's first join, while it has no call: the LiveKit room is created, then the
/// call (ONGOING since now), the participant present since now, its API session,
/// `participant_joined` and `call_started` are written as ONE statement, without a transaction
/// (`calls::insert_first_join`: a first join costs two Postgres round trips, the read before
/// included). Nothing is written when LiveKit fails (503), except in development, where LiveKit
/// auto-creates rooms on join: the call is then written without its room and the reconciliation
/// job creates it. `None` when another first join inserted the call first (the statement wrote
/// nothing); the room it asked for is that call's room, named after the appointment. A room
/// created for a statement that then failed stays empty, and LiveKit closes it after
/// `EMPTY_ROOM_TIMEOUT_SECS`.
async fn first_join<'a>(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    appointment: &Appointment,
    participant_in: impl Fn(&Call) -> NewParticipant<'a> + Sync,
) -> Result<Option<(Call, Participant)>, VideoError> {
    // Microseconds, as Postgres keeps them: the times the join writes and announces are the
    // ones it later reads back.
    let now = Utc::now().trunc_subsecs(6);
    let room = appointment_room(appointment.org_id, appointment.id);
    let mut new_call = NewCall {
        id: appointment_call_id(appointment.id),
        org_id: appointment.org_id,
        appointment_id: appointment.id,
        room_name: &room,
        room_created: true,
    };
    match create_room(state, &Call::started(&new_call, now)).await {
        Ok(()) => {}
        Err(error) if state.config.environment == Environment::Development => {
            tracing::warn!(call.id = %new_call.id, error = %error, "LiveKit room not created; continuing (development: the server auto-creates rooms, the reconciliation job retries)");
            new_call.room_created = false;
        }
        Err(error) => return Err(error.into()),
    }
    // The call and the participant as the statement writes them: the events announce them.
    let call = Call::started(&new_call, now);
    let participant = participant_in(&call);
    let present = Participant {
        id: participant.id,
        user_id: participant.user_id,
        identity: participant.identity.to_owned(),
        role: participant.role.to_owned(),
        display_name: participant.display_name.to_owned(),
        is_host: participant.is_host,
        is_guest: participant.is_guest,
        active: true,
        joined_at: Some(now),
        left_at: None,
        total_seconds: 0,
    };
    let outbox = &state.outbox;
    let events = outbox.stage(
        &[
            Pending::new(&presence::joined(&call, &present, present.joined_at)),
            Pending::new(&presence::started(&call, call.started_at)),
        ],
        None,
    );
    let sid = format!("{}{}", calls::API_SESSION_PREFIX, Uuid::now_v7());
    let written = outbox
        .wake_on_commit(async {
            let written =
                calls::insert_first_join(conn, &new_call, &participant, now, &sid, &events).await?;
            if written.is_some() {
                // Inside `wake_on_commit`: the relay is woken in memory once the statement is
                // done, no NOTIFY.
                outbox.wake_after_commit(conn).await?;
            }
            Ok::<_, VideoError>(written)
        })
        .await?;
    Ok(written.map(|participant| (call, participant)))
}

/// Asks LiveKit for the call's room (within `LIVEKIT_TIMEOUT`).
async fn create_room(state: &AppState, call: &Call) -> Result<(), sb_livekit::LiveKitError> {
    state
        .livekit_call(
            "create_room",
            state
                .livekit
                .create_room(&call.room_name, room_options(call.id)),
        )
        .await
        .map(drop)
}

/// Creates a call's LiveKit room that could not be created before (development, or a job).
pub async fn ensure_room(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: &Call,
) -> Result<(), VideoError> {
    match create_room(state, call).await {
        Ok(()) => {
            calls::set_room_created(conn, call.id, true).await?;
            Ok(())
        }
        Err(error) if state.config.environment == Environment::Development => {
            tracing::warn!(call.id = %call.id, error = %error, "LiveKit room still not created");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /calls/{id}/start`: the call is under way (PENDING → ONGOING); optionally records it.
pub async fn start(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    start_recording: bool,
) -> Result<Call, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    let status = call.status;
    if status.is_final() {
        return Err(VideoError::conflict(
            Code::CallFinished,
            format!("this call is {}", status.as_str()),
        ));
    }
    if start_recording {
        access::require_host(principal, &appointment)?;
    }
    if status == CallStatus::Pending {
        let outbox = &state.outbox;
        state
            .outbox
            .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
                let call = calls::lock(conn, call_id).await?;
                let now = Utc::now();
                if calls::mark_ongoing(conn, call.id, now).await? {
                    presence::announce_started(conn, outbox, &call, Some(now)).await?;
                }
                Ok(())
            }))
            .await?;
    }
    if start_recording {
        recording::start(state, &mut conn, call_id).await?;
    }
    calls::find(&mut conn, call_id)
        .await?
        .ok_or(VideoError::not_found("call"))
}

/// `POST /calls/{id}/stop`: the caller leaves; the last one out completes the call.
pub async fn stop(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    reason: Option<String>,
) -> Result<Call, VideoError> {
    let mut conn = state.conn().await?;
    let (call, _) = access::call(&mut conn, principal, call_id).await?;
    let identity = Identity::User(principal.user_id.as_uuid()).to_string();
    let outbox = &state.outbox;
    let reason = reason.as_deref();
    let completed = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let identity = &identity;
            let call = calls::lock(conn, call.id).await?;
            let Some(participant) = calls::find_participant(conn, call.id, identity).await? else {
                return Err(VideoError::conflict(
                    Code::NotInCall,
                    "you have not joined this call",
                ));
            };
            if !participant.active {
                return Ok(false);
            }
            calls::close_open_sessions(conn, call.id, Some(identity), Utc::now(), "stop").await?;
            let refreshed = presence::refresh_participants(
                conn,
                outbox,
                &call,
                &[participant],
                Some(reason.unwrap_or("left")),
            )
            .await?;
            Ok(refreshed.completed)
        }))
        .await?;
    if completed {
        recording::stop_for_call(state, &mut conn, call_id).await;
    }
    calls::find(&mut conn, call_id)
        .await?
        .ok_or(VideoError::not_found("call"))
}
