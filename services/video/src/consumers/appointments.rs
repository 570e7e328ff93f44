//! `crm.appointment.*` into the shared `appointments` read model (durable `video-appointments`),
//! and a cancelled appointment cancels its call if nobody has joined yet.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::CacheBySql;
use sb_db::models::AppointmentStatus;
use sb_db::schema::{appointments, video_calls};
use sb_events::EventEnvelope;
use sb_events::consumer::{Handler, HandlerError};
use sb_events::projector::AppointmentProjector;
use sb_events::proto::AppointmentCancelled;
use uuid::Uuid;

use crate::domain::call::CallStatus;

#[derive(Debug, Default, Clone, Copy)]
pub struct VideoAppointments;

impl Handler for VideoAppointments {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            AppointmentProjector.handle(conn, event).await?;
            if !event.is::<AppointmentCancelled>() {
                return Ok(());
            }
            let id = event
                .decode::<AppointmentCancelled>()
                .map_err(HandlerError::permanent)?
                .appointment
                .and_then(|a| Uuid::parse_str(&a.id).ok())
                .ok_or_else(|| HandlerError::permanent("cancellation without an appointment id"))?;
            // The read model decides, not this event: a newer version may have rescheduled it.
            let status: Option<AppointmentStatus> = appointments::table
                .find(id)
                .select(appointments::status)
                .first(conn)
                .await
                .optional()?;
            if status != Some(AppointmentStatus::Cancelled) {
                return Ok(());
            }
            let cancelled = diesel::update(
                video_calls::table
                    .filter(video_calls::appointment_id.eq(id))
                    .filter(video_calls::status.eq(CallStatus::Pending)),
            )
            .set((
                video_calls::status.eq(CallStatus::Cancelled),
                video_calls::ended_at.eq(diesel::dsl::now),
                video_calls::end_reason.eq("appointment_cancelled"),
                video_calls::updated_at.eq(diesel::dsl::now),
            ))
            .cached()
            .execute(conn)
            .await?;
            tracing::debug!(appointment.id = %id, cancelled, "appointment cancelled");
            Ok(())
        }
        .boxed()
    }
}
