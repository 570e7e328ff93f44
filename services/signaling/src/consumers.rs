//! `crm.appointment.*` into the shared `appointments` read model (durable
//! `signaling-appointments`), creating the room of every remote appointment and ending the room
//! of a cancelled one.

use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::models::{AppointmentKind, AppointmentStatus};
use sb_events::EventEnvelope;
use sb_events::consumer::{Handler, HandlerError};
use sb_events::projector::AppointmentProjector;
use sb_events::proto::{AppointmentCancelled, AppointmentCreated, AppointmentUpdated};
use uuid::Uuid;

use crate::actions;
use crate::domain::RoomStatus;
use crate::store::{self, RoomChanges};

#[derive(Clone)]
pub struct SignalingAppointments {
    pub metrics: crate::SignalingMetrics,
}

fn appointment_id(event: &EventEnvelope) -> Result<Option<Uuid>, HandlerError> {
    let appointment = if event.is::<AppointmentCreated>() {
        event
            .decode::<AppointmentCreated>()
            .map_err(HandlerError::permanent)?
            .appointment
    } else if event.is::<AppointmentUpdated>() {
        event
            .decode::<AppointmentUpdated>()
            .map_err(HandlerError::permanent)?
            .appointment
    } else if event.is::<AppointmentCancelled>() {
        event
            .decode::<AppointmentCancelled>()
            .map_err(HandlerError::permanent)?
            .appointment
    } else {
        return Ok(None);
    };
    Ok(appointment.and_then(|a| Uuid::parse_str(&a.id).ok()))
}

impl Handler for SignalingAppointments {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            AppointmentProjector.handle(conn, event).await?;
            let Some(id) = appointment_id(event)? else {
                return Ok(());
            };
            // The read model decides, not this event: a newer version may have arrived first.
            let Some(appointment) = store::appointment(conn, id).await? else {
                return Ok(());
            };
            if appointment.status == AppointmentStatus::Cancelled {
                if let Some(room) = store::by_appointment(conn, id).await?
                    && room.status != RoomStatus::Ended
                {
                    let now = chrono::Utc::now();
                    store::update(
                        conn,
                        room.id,
                        &RoomChanges {
                            status: RoomStatus::Ended,
                            practitioner_joined: room.practitioner_joined,
                            patient_joined: room.patient_joined,
                            started_at: room.started_at,
                            ended_at: Some(now),
                            updated_at: now,
                        },
                    )
                    .await?;
                    let event = sb_events::proto::SignalingRoomStatusChanged {
                        room_id: room.room_id.clone(),
                        org_id: room.org_id.to_string(),
                        appointment_id: room.appointment_id.to_string(),
                        previous_status: room.status.proto() as i32,
                        status: RoomStatus::Ended.proto() as i32,
                        practitioner_joined: room.practitioner_joined,
                        patient_joined: room.patient_joined,
                        changed_at_unix_ms: now.timestamp_millis(),
                    };
                    sb_events::outbox::Outbox::new(crate::SERVICE)
                        .enqueue(conn, &event)
                        .await?;
                    self.metrics.transition(RoomStatus::Ended);
                }
                return Ok(());
            }
            if appointment.kind == AppointmentKind::Remote {
                let room = actions::ensure_room(conn, &appointment).await?;
                tracing::debug!(appointment.id = %id, room.id = %room.room_id, "room ready");
            }
            Ok(())
        }
        .boxed()
    }
}
