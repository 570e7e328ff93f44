//! Room changes that publish `sb.signaling.room.status_changed`: creation, presence, ending.

use chrono::Utc;
use diesel_async::AsyncConnection;
use sb_auth::policy::{AppointmentAccess, can_access_appointment};
use sb_auth::{OrgId, Principal, TeamId, UserId};
use sb_db::models::Appointment;
use sb_events::proto::SignalingRoomStatusChanged;
use uuid::Uuid;

use crate::domain::{RoomStatus, Side, new_room_id};
use crate::error::SignalingError;
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

/// What to change on a room.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Present(Side, bool),
    End,
}

/// Applies a change in one transaction with its event; returns the room after it, `None` when
/// the room does not exist.
pub async fn change(
    state: &AppState,
    room_id: &str,
    change: Change,
) -> Result<Option<Room>, SignalingError> {
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let room_id = room_id.to_owned();
    let (room, entered) = state
        .outbox
        .wake_on_commit(
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let Some(room) = store::lock_by_room_id(conn, &room_id).await? else {
                    return Ok((None, None));
                };
                let previous = room.status;
                if previous == RoomStatus::Ended {
                    return Ok((Some(room), None));
                }
                let (mut practitioner, mut patient) =
                    (room.practitioner_joined, room.patient_joined);
                let status = match change {
                    Change::Present(Side::Practitioner, present) => {
                        practitioner = present;
                        previous.after_presence(practitioner, patient)
                    }
                    Change::Present(Side::Patient, present) => {
                        patient = present;
                        previous.after_presence(practitioner, patient)
                    }
                    Change::Present(Side::Observer, _) => return Ok((Some(room), None)),
                    Change::End => RoomStatus::Ended,
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
                let entered = (status != previous).then_some(status);
                Ok((store::by_room_id(conn, &room.room_id).await?, entered))
            }),
        )
        .await?;
    if let Some(status) = entered {
        state.metrics.transition(status);
    }
    Ok(room)
}
