//! The appointment projector: `crm.appointment.created|updated|cancelled` into the shared
//! `appointments` read model, keeping the highest version (an older event arriving late, or a
//! duplicate, changes nothing).

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::models::{self, NewAppointment, upsert_appointment};
use uuid::Uuid;

use crate::consumer::{ConsumerConfig, Handler, HandlerError};
use crate::event::EventEnvelope;
use crate::proto::{
    Appointment, AppointmentCancelled, AppointmentCreated, AppointmentKind, AppointmentStatus,
    AppointmentUpdated,
};
use crate::subject::Domain;

/// Consumer settings of a service's projector: durable `<service>-appointments`.
pub fn consumer_config(service: &'static str) -> ConsumerConfig {
    ConsumerConfig::new(service, "appointments", Domain::Crm, "crm.appointment.>")
}

#[derive(Debug, Default, Clone, Copy)]
pub struct AppointmentProjector;

impl Handler for AppointmentProjector {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let appointment = if event.is::<AppointmentCreated>() {
                event.decode::<AppointmentCreated>().map(|e| e.appointment)
            } else if event.is::<AppointmentUpdated>() {
                event.decode::<AppointmentUpdated>().map(|e| e.appointment)
            } else if event.is::<AppointmentCancelled>() {
                event.decode::<AppointmentCancelled>().map(|e| {
                    e.appointment.map(|mut a| {
                        a.status = AppointmentStatus::Cancelled as i32;
                        a
                    })
                })
            } else {
                // Another crm.appointment.* event this version does not know: nothing to project.
                tracing::debug!(event_type = %event.event_type, "ignoring unknown appointment event");
                return Ok(());
            }
            .map_err(HandlerError::permanent)?
            .ok_or_else(|| HandlerError::permanent("appointment event without an appointment"))?;
            let row = to_row(&appointment).map_err(HandlerError::permanent)?;
            let written = upsert_appointment(conn, &row).await?;
            tracing::debug!(appointment.id = %row.id, version = row.version, written, "projected appointment");
            Ok(())
        }
        .boxed()
    }
}

fn uuid(field: &str, value: &str) -> Result<Uuid, String> {
    Uuid::parse_str(value).map_err(|e| format!("{field} {value:?} is not a UUID: {e}"))
}

fn optional_uuid(field: &str, value: &str) -> Result<Option<Uuid>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        uuid(field, value).map(Some)
    }
}

fn time(field: &str, unix_ms: i64) -> Result<DateTime<Utc>, String> {
    Utc.timestamp_millis_opt(unix_ms)
        .single()
        .ok_or_else(|| format!("{field} {unix_ms} is out of range"))
}

/// The read-model row of a CRM appointment snapshot.
pub fn to_row(appointment: &Appointment) -> Result<NewAppointment, String> {
    let kind = match AppointmentKind::try_from(appointment.kind) {
        Ok(AppointmentKind::Remote) => models::AppointmentKind::Remote,
        Ok(AppointmentKind::Onsite) => models::AppointmentKind::Onsite,
        _ => {
            return Err(format!(
                "appointment kind {} is not remote or onsite",
                appointment.kind
            ));
        }
    };
    let status = match AppointmentStatus::try_from(appointment.status) {
        Ok(AppointmentStatus::Scheduled) => models::AppointmentStatus::Scheduled,
        Ok(AppointmentStatus::Confirmed) => models::AppointmentStatus::Confirmed,
        Ok(AppointmentStatus::Cancelled) => models::AppointmentStatus::Cancelled,
        Ok(AppointmentStatus::Completed) => models::AppointmentStatus::Completed,
        Ok(AppointmentStatus::NoShow) => models::AppointmentStatus::NoShow,
        _ => {
            return Err(format!(
                "appointment status {} is not known",
                appointment.status
            ));
        }
    };
    if appointment.version < 0 {
        return Err(format!("negative version {}", appointment.version));
    }
    let lead = appointment.lead.clone().unwrap_or_default();
    let mut lead_json = serde_json::Map::new();
    for (key, value) in [
        ("name", lead.name),
        ("phone", lead.phone),
        ("email", lead.email),
    ] {
        if !value.is_empty() {
            lead_json.insert(key.to_owned(), serde_json::Value::String(value));
        }
    }
    Ok(NewAppointment {
        id: uuid("id", &appointment.id)?,
        org_id: uuid("org_id", &appointment.org_id)?,
        host_user_id: uuid("host_user_id", &appointment.host_user_id)?,
        guest_user_id: optional_uuid("guest_user_id", &appointment.guest_user_id)?,
        setter_user_id: optional_uuid("setter_user_id", &appointment.setter_user_id)?,
        team_id: optional_uuid("team_id", &appointment.team_id)?,
        lead: serde_json::Value::Object(lead_json),
        scheduled_at: time("scheduled_at_unix_ms", appointment.scheduled_at_unix_ms)?,
        ends_at: if appointment.ends_at_unix_ms == 0 {
            None
        } else {
            Some(time("ends_at_unix_ms", appointment.ends_at_unix_ms)?)
        },
        kind,
        status,
        version: appointment.version,
    })
}
