//! Room changes that publish `sb.signaling.room.status_changed`: creation, presence, ending.

/// How long a cluster question waits for the other instances (a dead one is forgotten after
/// three heartbeats; until then it costs this much).
pub const CLUSTER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::policy::{AppointmentAccess, can_access_appointment};
use sb_auth::{GuestClaims, GuestLinkError, OrgId, Principal, Role, TeamId, UserId};
use sb_db::models::{Appointment, AppointmentStatus};
use sb_events::outbox::Outbox;
use sb_events::proto::SignalingRoomStatusChanged;
use sb_platform::{ApiErrorExt as _, Code};
use sb_socketio::SocketIo;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::GuestLinkConfig;
use crate::domain::{RoomStatus, Side, new_room_id};
use crate::error::SignalingError;
use crate::metrics::SignalingMetrics;
use crate::state::AppState;
use crate::store::{self, NewRoom, Room, RoomChanges};

pub fn access(appointment: &Appointment) -> AppointmentAccess {
    AppointmentAccess {
        org_id: OrgId::from(appointment.org_id),
        team_id: appointment.team_id.map(TeamId::from),
        host_user_id: UserId::from(appointment.host_user_id),
        guest_user_id: appointment.guest_user_id.map(UserId::from),
        setter_user_id: appointment.setter_user_id.map(UserId::from),
    }
}

pub fn may_access(principal: &Principal, appointment: &Appointment) -> bool {
    can_access_appointment(principal, &access(appointment))
}

pub fn side(user: Uuid, appointment: &Appointment) -> Side {
    if user == appointment.host_user_id {
        Side::Practitioner
    } else if appointment.guest_user_id == Some(user) {
        Side::Patient
    } else {
        Side::Observer
    }
}

/// The appointment's room, created when it has none (idempotent).
pub async fn ensure_room(
    conn: &mut sb_db::diesel_async::AsyncPgConnection,
    appointment: &Appointment,
) -> Result<Room, diesel::result::Error> {
    if let Some(room) = store::by_appointment(conn, appointment.id).await? {
        return Ok(room);
    }
    let room_id = new_room_id();
    store::create(
        conn,
        &NewRoom {
            id: Uuid::now_v7(),
            org_id: appointment.org_id,
            room_id: &room_id,
            appointment_id: appointment.id,
        },
    )
    .await
}

/// How long an appointment without an end time lasts, for its guest-link window.
const DEFAULT_APPOINTMENT_LENGTH: chrono::Duration = chrono::Duration::hours(1);

/// The appointment's window: from `open_before` its start to `close_after` its end.
pub fn window(
    config: &GuestLinkConfig,
    appointment: &Appointment,
) -> Result<(DateTime<Utc>, DateTime<Utc>), SignalingError> {
    let span = |d| chrono::Duration::from_std(d).map_err(SignalingError::internal);
    let end = appointment
        .ends_at
        .unwrap_or(appointment.scheduled_at + DEFAULT_APPOINTMENT_LENGTH);
    Ok((
        appointment.scheduled_at - span(config.open_before)?,
        end + span(config.close_after)?,
    ))
}

/// A guest link for the appointment's room (created if it has none yet), minted by its host or
/// an ADMIN, valid over the appointment's window.
pub async fn mint_guest_link(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    appointment: &Appointment,
) -> Result<(String, GuestClaims, Room), SignalingError> {
    if principal.role != Role::Admin && principal.user_id.as_uuid() != appointment.host_user_id {
        return Err(SignalingError::forbidden(
            Code::Forbidden,
            "only the appointment's host mints its guest links",
        ));
    }
    let Some(links) = &state.guest_links else {
        // no key on this deployment: as if the route did not exist
        return Err(SignalingError::not_found("guest links"));
    };
    if appointment.status == AppointmentStatus::Cancelled {
        return Err(SignalingError::conflict(
            Code::AppointmentCancelled,
            "the appointment was cancelled",
        ));
    }
    let (open, close) = window(&state.config.guest_links, appointment)?;
    if close <= Utc::now() {
        return Err(SignalingError::conflict(
            Code::AppointmentWindowOver,
            format!("guest links for this appointment closed at {close}"),
        ));
    }
    let (token, claims) = links
        .mint(OrgId::from(appointment.org_id), appointment.id, open, close)
        .map_err(|error| match error {
            GuestLinkError::EmptyWindow => SignalingError::conflict(
                Code::AppointmentWindowEmpty,
                "the appointment ends before a guest link for it would open",
            ),
            other => SignalingError::internal(other),
        })?;
    let room = ensure_room(conn, appointment).await?;
    Ok((token, claims, room))
}

/// Why a room ended: what its members are told in `call-ended`.
#[derive(Debug, Clone)]
pub enum Ending {
    /// A member sent `end-call`: the notice names them (`{roomId, userId}`, the seed's shape).
    Call { user: String },
    /// The CRM cancelled the appointment.
    Cancelled,
    /// The cleanup job: the appointment is long over.
    Over,
    /// Both sides left and stayed away past the reconnect grace.
    Empty,
}

impl Ending {
    /// The `call-ended` payload.
    pub fn notice(&self, room_id: &str) -> Value {
        match self {
            Self::Call { user } => json!({"roomId": room_id, "userId": user}),
            Self::Cancelled => json!({"roomId": room_id, "reason": "cancelled"}),
            Self::Over => json!({"roomId": room_id, "reason": "over"}),
            Self::Empty => json!({"roomId": room_id, "reason": "empty"}),
        }
    }
}

/// What to change on a room.
#[derive(Debug, Clone)]
pub enum Change {
    Present(Side, bool),
    End(Ending),
    /// An Ended room back to Waiting (see [`resumable`]); nothing when it is not Ended.
    Resume,
}

/// Whether an Ended room of `appointment` may be joined again at `now`: the appointment is not
/// cancelled and `now` is within its window (see [`window`]).
pub fn resumable(
    config: &GuestLinkConfig,
    appointment: &Appointment,
    now: DateTime<Utc>,
) -> Result<bool, SignalingError> {
    let (open, close) = window(config, appointment)?;
    Ok(appointment.status != AppointmentStatus::Cancelled && open <= now && now < close)
}

/// The cluster question that ends a room's call: every instance tells its sockets in the room
/// `call-ended`, then takes them out of it, in that order (see `VideoCall::answer`). One
/// question rather than a broadcast and a removal: two messages on two subjects have no order
/// between them, and a peer on another instance could be removed before it heard the notice.
pub async fn hang_up(io: &SocketIo, room_id: &str, ending: &Ending) {
    io.gather(
        json!({"op": "end", "room": room_id, "call-ended": ending.notice(room_id)}),
        CLUSTER_TIMEOUT,
    )
    .await;
}

/// What [`apply`] did.
pub struct Applied {
    /// The room after the change.
    pub room: Room,
    /// The room's call to hang up once the transaction has committed (see [`hang_up`]): the
    /// members hear `call-ended` only when the room already reads Ended, and a join racing the
    /// ending waits on the room's lock, then reads Ended (or was in the room when it was hung
    /// up).
    pub hang_up: Option<Ending>,
}

/// Applies `change` to `room`, locked by the caller's transaction, with its event and its
/// transition counted.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    metrics: &SignalingMetrics,
    room: Room,
    change: &Change,
) -> Result<Applied, diesel::result::Error> {
    let unchanged = |room| Applied {
        room,
        hang_up: None,
    };
    let previous = room.status;
    if let Change::Resume = change {
        if previous != RoomStatus::Ended {
            return Ok(unchanged(room));
        }
        let now = Utc::now();
        store::reopen(conn, room.id, now).await?;
        let event = SignalingRoomStatusChanged {
            room_id: room.room_id.clone(),
            org_id: room.org_id.to_string(),
            appointment_id: room.appointment_id.to_string(),
            previous_status: previous.proto() as i32,
            status: RoomStatus::Waiting.proto() as i32,
            practitioner_joined: false,
            patient_joined: false,
            changed_at_unix_ms: now.timestamp_millis(),
        };
        outbox.enqueue(conn, &event).await?;
        metrics.transition(RoomStatus::Waiting);
        let room = Room {
            status: RoomStatus::Waiting,
            practitioner_joined: false,
            patient_joined: false,
            ended_at: None,
            ..room
        };
        return Ok(Applied {
            room,
            hang_up: None,
        });
    }
    if previous == RoomStatus::Ended {
        // hung up again: whoever is still in the room (an instance that missed the first
        // question) hears it now
        let hang_up = match change {
            Change::End(ending) => Some(ending.clone()),
            _ => None,
        };
        return Ok(Applied {
            hang_up,
            ..unchanged(room)
        });
    }
    let (mut practitioner, mut patient) = (room.practitioner_joined, room.patient_joined);
    let (status, ending) = match change {
        Change::Present(Side::Practitioner, present) => {
            practitioner = *present;
            (
                previous.after_presence(practitioner, patient),
                Ending::Empty,
            )
        }
        Change::Present(Side::Patient, present) => {
            patient = *present;
            (
                previous.after_presence(practitioner, patient),
                Ending::Empty,
            )
        }
        Change::Present(Side::Observer, _) | Change::Resume => return Ok(unchanged(room)),
        Change::End(ending) => (RoomStatus::Ended, ending.clone()),
    };
    let now = Utc::now();
    let changes = RoomChanges {
        status,
        practitioner_joined: practitioner,
        patient_joined: patient,
        started_at: room
            .started_at
            .or((status == RoomStatus::InProgress).then_some(now)),
        ended_at: room
            .ended_at
            .or((status == RoomStatus::Ended).then_some(now)),
        updated_at: now,
    };
    store::update(conn, room.id, &changes).await?;
    if status != previous {
        let event = SignalingRoomStatusChanged {
            room_id: room.room_id.clone(),
            org_id: room.org_id.to_string(),
            appointment_id: room.appointment_id.to_string(),
            previous_status: previous.proto() as i32,
            status: status.proto() as i32,
            practitioner_joined: practitioner,
            patient_joined: patient,
            changed_at_unix_ms: now.timestamp_millis(),
        };
        outbox.enqueue(conn, &event).await?;
    }
    if status != previous {
        // counted before the members hear of it (a rollback after this is rare and retried)
        metrics.transition(status);
    }
    let room = Room {
        status,
        practitioner_joined: practitioner,
        patient_joined: patient,
        started_at: changes.started_at,
        ended_at: changes.ended_at,
        ..room
    };
    Ok(Applied {
        room,
        hang_up: (status == RoomStatus::Ended).then_some(ending),
    })
}

/// Applies a change in one transaction with its event; returns the room after it, `None` when
/// the room does not exist.
pub async fn change(
    state: &AppState,
    io: &SocketIo,
    room_id: &str,
    change: Change,
) -> Result<Option<Room>, SignalingError> {
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let room_id = room_id.to_owned();
    let applied = state
        .outbox
        .wake_on_commit(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(room) = store::lock_by_room_id(conn, &room_id).await? else {
                    return Ok(None);
                };
                apply(conn, outbox, &state.metrics, room, &change)
                    .await
                    .map(Some)
            }),
        )
        .await?;
    let Some(Applied {
        room,
        hang_up: ending,
        ..
    }) = applied
    else {
        return Ok(None);
    };
    if let Some(ending) = ending {
        hang_up(io, &room.room_id, &ending).await;
    }
    let room = Some(room);
    Ok(room)
}
