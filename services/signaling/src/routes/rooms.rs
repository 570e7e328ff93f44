//! The REST room routes: read an appointment's room, create it by hand.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_db::models::Appointment;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions;
use crate::error::SignalingError;
use crate::state::AppState;
use crate::store::{self, Room};
use sb_platform::ApiErrorExt as _;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_room)
        .service(create_room)
        .service(mint_guest_link);
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonView {
    id: Option<Uuid>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    id: Uuid,
    scheduled_date: DateTime<Utc>,
    /// The guest: names come from the CRM lead.
    patient: PersonView,
    /// The host: the CRM shares user ids, not names, so the names are those of the
    /// practitioner's token, once they have joined the room.
    practitioner: PersonView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    id: Uuid,
    room_id: String,
    appointment_id: Uuid,
    /// `Waiting`, `InProgress` or `Ended`.
    status: String,
    practitioner_joined: bool,
    patient_joined: bool,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    appointment: AppointmentView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRoom {
    room_id: String,
}

/// A full name as first and last name: the first word, then the rest.
fn first_and_last(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => match name.split_once(' ') {
            Some((first, last)) => (Some(first.to_owned()), Some(last.trim().to_owned())),
            None => (Some(name.to_owned()), None),
        },
        None => (None, None),
    }
}

fn view(room: Room, appointment: &Appointment) -> RoomView {
    let lead = appointment.lead();
    let (first_name, last_name) = first_and_last(lead.name.as_deref());
    let (practitioner_first, practitioner_last) = first_and_last(room.practitioner_name.as_deref());
    RoomView {
        id: room.id,
        room_id: room.room_id,
        appointment_id: room.appointment_id,
        status: room.status.as_str().to_owned(),
        practitioner_joined: room.practitioner_joined,
        patient_joined: room.patient_joined,
        started_at: room.started_at,
        ended_at: room.ended_at,
        appointment: AppointmentView {
            id: appointment.id,
            scheduled_date: appointment.scheduled_at,
            patient: PersonView {
                id: appointment.guest_user_id,
                first_name,
                last_name,
            },
            practitioner: PersonView {
                id: Some(appointment.host_user_id),
                first_name: practitioner_first,
                last_name: practitioner_last,
            },
        },
    }
}

/// The appointment if the caller may see it; 404 otherwise so ids cannot be probed.
async fn visible_appointment(
    conn: &mut sb_db::diesel_async::AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<Appointment, SignalingError> {
    match store::appointment(conn, id).await? {
        Some(appointment) if actions::may_access(principal, &appointment) => Ok(appointment),
        _ => Err(SignalingError::not_found("appointment")),
    }
}

#[utoipa::path(get, path = "/video-call/room/appointment/{appointmentId}", tag = "video-call",
    params(("appointmentId" = Uuid, Path, description = "CRM appointment id")),
    responses(
        (status = 200, body = RoomView),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 404, description = "No room, or an appointment the caller cannot see", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/video-call/room/appointment/{appointmentId}")]
async fn get_room(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<web::Json<RoomView>, SignalingError> {
    let mut conn = state.conn().await?;
    let appointment = visible_appointment(&mut conn, &principal, path.into_inner()).await?;
    let room = store::by_appointment(&mut conn, appointment.id)
        .await?
        .ok_or(SignalingError::not_found("room"))?;
    Ok(web::Json(view(room, &appointment)))
}

#[utoipa::path(post, path = "/video-call/room/appointment/{appointmentId}/create", tag = "video-call",
    params(("appointmentId" = Uuid, Path, description = "CRM appointment id")),
    responses(
        (status = 200, body = CreatedRoom, description = "The room (created, or the existing one)"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 404, description = "An appointment the caller cannot see", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/video-call/room/appointment/{appointmentId}/create")]
async fn create_room(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<web::Json<CreatedRoom>, SignalingError> {
    let mut conn = state.conn().await?;
    let appointment = visible_appointment(&mut conn, &principal, path.into_inner()).await?;
    let room = actions::ensure_room(&mut conn, &appointment).await?;
    Ok(web::Json(CreatedRoom {
        room_id: room.room_id,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestLinkView {
    /// The guest-link token: the lead connects with it as `auth: {token}`, like a JWT.
    token: String,
    /// The one room the link may join.
    room_id: String,
    appointment_id: Uuid,
    /// The link's identity in the room (`userId`), the same on every connection.
    user_id: Uuid,
    /// The link opens this long before the appointment (`GUEST_LINK_OPEN_BEFORE`)…
    opens_at: DateTime<Utc>,
    /// …and closes this long after its end (`GUEST_LINK_CLOSE_AFTER`).
    expires_at: DateTime<Utc>,
}

#[utoipa::path(post, path = "/video-call/room/appointment/{appointmentId}/guest-links", tag = "video-call",
    params(("appointmentId" = Uuid, Path, description = "CRM appointment id")),
    responses(
        (status = 201, body = GuestLinkView, description = "A signed link for a lead without an account: joins this appointment's room only, within the appointment's window"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 403, description = "Only the appointment's host (or ADMIN) mints links (`forbidden`)", content_type = "application/problem+json"),
        (status = 404, description = "An appointment the caller cannot see, or guest links are off on this deployment", content_type = "application/problem+json"),
        (status = 409, description = "The appointment is cancelled (`appointment_cancelled`), its window has closed (`appointment_window_over`) or is empty (`appointment_window_empty`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/video-call/room/appointment/{appointmentId}/guest-links")]
async fn mint_guest_link(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, SignalingError> {
    let mut conn = state.conn().await?;
    let appointment = visible_appointment(&mut conn, &principal, path.into_inner()).await?;
    let (token, claims, room) =
        actions::mint_guest_link(&state, &mut conn, &principal, &appointment).await?;
    let at = |seconds| {
        DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| SignalingError::internal("a guest link's time is out of range"))
    };
    Ok(HttpResponse::Created().json(GuestLinkView {
        token,
        room_id: room.room_id,
        appointment_id: appointment.id,
        user_id: claims.sub,
        opens_at: at(claims.nbf)?,
        expires_at: at(claims.exp)?,
    }))
}
