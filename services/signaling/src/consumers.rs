//! `crm.appointment.*` into the shared `appointments` read model (durable
//! `signaling-appointments`), creating the room of every remote appointment and ending the room
//! of a cancelled one.

use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::DbPool;
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
    pub pool: DbPool,
}

impl SignalingAppointments {
    /// Hangs up the room (see [`actions::hang_up`]) once this event's transaction has committed
    /// it Ended: the read waits on the room's lock, which the transaction holds until then. A
    /// rollback leaves the room as it was, and the event is delivered again. (The process dying
    /// between the commit and the question loses the notice: members on other instances then
    /// stay in the Ended room until they leave; a join still answers `call_ended`.)
    fn hang_up_after_commit(&self, room_id: String, ending: Ending) {
        let (io, pool) = (self.io.clone(), self.pool.clone());
        tokio::spawn(async move {
            let settled = match pool.get().await {
                Ok(mut conn) => store::settled_status(&mut conn, &room_id).await,
                Err(error) => {
                    tracing::error!(%error, room.id = %room_id, "cancelled room not hung up");
                    return;
                }
            };
            match settled {
                Ok(Some(RoomStatus::Ended)) => actions::hang_up(&io, &room_id, &ending).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, room.id = %room_id, "cancelled room not hung up");
                }
            }
        });
    }
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
                if let Some(room) = store::lock_by_appointment(conn, id).await?
                    && room.status != RoomStatus::Ended
                {
                    let applied = actions::apply(
                        conn,
                        &Outbox::new(crate::SERVICE),
                        &self.metrics,
                        room,
                        &Change::End(Ending::Cancelled),
                    )
                    .await?;
                    if let Some(ending) = applied.hang_up {
                        self.hang_up_after_commit(applied.room.room_id, ending);
                    }
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
