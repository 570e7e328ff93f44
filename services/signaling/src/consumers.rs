//! `crm.appointment.*` into the shared `appointments` read model (durable
//! `signaling-appointments`), creating the room of every remote appointment and ending the room
//! of a cancelled one.

use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::models::{AppointmentKind, AppointmentStatus};
use sb_events::EventEnvelope;
use sb_events::consumer::{Handler, HandlerError};
use sb_events::outbox::Outbox;
use sb_events::projector::AppointmentProjector;
use sb_events::proto::{AppointmentCancelled, AppointmentCreated, AppointmentUpdated};
use sb_socketio::SocketIo;
use uuid::Uuid;

use crate::actions::{self, Change, Ending};
use crate::domain::RoomStatus;
use crate::store;

#[derive(Clone)]
pub struct SignalingAppointments {
    pub metrics: crate::SignalingMetrics,
    /// To hang up a cancelled appointment's room on every instance.
    pub io: SocketIo,
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
                // Ended in this event's transaction, and every member on every instance is told
                // `call-ended` before it commits (see `actions::apply`).
                if let Some(room) = store::lock_by_appointment(conn, id).await?
                    && room.status != RoomStatus::Ended
                {
                    actions::apply(
                        conn,
                        &Outbox::new(crate::SERVICE),
                        &self.metrics,
                        &self.io,
                        room,
                        &Change::End(Ending::Cancelled),
                    )
                    .await?;
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
