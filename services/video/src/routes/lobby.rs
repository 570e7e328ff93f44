//! Guest links and the lobby: the host mints links, external guests wait, the host decides.
//!
//! A guest has no account: the guest-link token authenticates `POST /calls/guest/join` and
//! `GET /calls/guest/{guestId}`. The guest page polls the latter (every few seconds) until the
//! host decides; polling works through every proxy and needs no connection state on a replica.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::lobby::{self, Admission};
use crate::domain::call::DisplayName;
use crate::domain::lobby::{Decision, DeviceSecret, LobbyStatus};
use crate::error::VideoError;
use crate::routes::JsonBody;
use crate::state::AppState;
use crate::store::lobby::LobbyGuest;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    // The `/calls/guest/...` routes come before every `/calls/{id}/...` route, which would
    // otherwise take "guest" for a call id and answer 400.
    cfg.service(join_lobby)
        .service(poll_guest)
        .service(mint_guest_link)
        .service(list_lobby)
        .service(admit_guest)
        .service(deny_guest);
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
fn query_value(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn with_token(base: &str, token: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}token={}", query_value(token))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestLinkResponse {
    /// The page to send the guest: the frontend's guest page with the token appended.
    url: String,
    /// The guest-link token itself (for clients that build their own link).
    token: String,
    /// The link opens this long before the appointment…
    opens_at: DateTime<Utc>,
    /// …and closes this long after its end.
    expires_at: DateTime<Utc>,
}

/// `POST /calls/{id}/guest-links`
#[utoipa::path(post, path = "/calls/{id}/guest-links", tag = "lobby",
    params(("id" = Uuid, Path)),
    responses(
        (status = 201, body = GuestLinkResponse, description = "A signed link for one external guest, valid around the appointment"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call (or another org's)", content_type = "application/problem+json"),
        (status = 409, description = "The call is over", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/guest-links")]
async fn mint_guest_link(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, VideoError> {
    let (token, claims) = lobby::mint_link(&state, &principal, path.into_inner()).await?;
    let at = |seconds| {
        DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| VideoError::internal("a guest link's time is out of range"))
    };
    Ok(HttpResponse::Created().json(GuestLinkResponse {
        url: with_token(&state.config.guest_links.base_url, &token),
        opens_at: at(claims.nbf)?,
        expires_at: at(claims.exp)?,
        token,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestJoinBody {
    /// The guest-link token (the `token` query parameter of the link).
    token: String,
    /// Shown to the host in the lobby and, once admitted, in the call; trimmed, 1–100
    /// characters.
    #[schema(max_length = 100)]
    display_name: Option<String>,
    /// The `deviceSecret` this device's first join answered: with it, a reloaded page gets its
    /// place back; without it, the link brings a new guest the host decides about.
    #[schema(max_length = 100)]
    device_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestJoinResponse {
    guest_id: Uuid,
    status: LobbyStatus,
    /// Poll this (every few seconds), with the `Guest-Device-Secret` header, until the status
    /// is `ADMITTED` or `DENIED`.
    poll_url: String,
    /// Only when this join opened the place: keep it on this device (it is not shown again)
    /// and send it as `deviceSecret` when joining again and as the `Guest-Device-Secret`
    /// header when polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    device_secret: Option<String>,
}

/// The header a guest's device proves its lobby place with.
const DEVICE_SECRET_HEADER: &str = "Guest-Device-Secret";

/// Longest device secret accepted (ours are 43 characters).
const MAX_DEVICE_SECRET_LEN: usize = 100;

fn device_secret(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<DeviceSecret>, VideoError> {
    match text {
        None => Ok(None),
        Some(text) if text.is_empty() || text.len() > MAX_DEVICE_SECRET_LEN => Err(
            VideoError::invalid(field, format!("1 to {MAX_DEVICE_SECRET_LEN} characters")),
        ),
        Some(text) => Ok(Some(DeviceSecret::presented(text))),
    }
}

/// `POST /calls/guest/join`
#[utoipa::path(post, path = "/calls/guest/join", tag = "lobby",
    request_body = GuestJoinBody,
    responses(
        (status = 202, body = GuestJoinResponse, description = "The guest waits in the lobby: the device that presents its `deviceSecret` gets its place back, anyone else with the link is a new guest"),
        (status = 400, description = "Malformed body or display name", content_type = "application/problem+json"),
        (status = 401, description = "Guest link invalid (`guest_link_invalid`), expired (`guest_link_expired`) or not open yet (`guest_link_not_yet_valid`)", content_type = "application/problem+json"),
        (status = 404, description = "The link's call does not exist", content_type = "application/problem+json"),
        (status = 409, description = "The call is over (`call_finished`), too many guests wait or the link has brought five already (`lobby_full`)", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")))]
#[post("/calls/guest/join")]
async fn join_lobby(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<GuestJoinBody>,
) -> Result<HttpResponse, VideoError> {
    let display_name = DisplayName::parse(body.display_name.as_deref().unwrap_or_default())
        .map_err(|e| VideoError::invalid("displayName", e))?;
    let presented = device_secret("deviceSecret", body.device_secret.as_deref())?;
    let place = lobby::join(&state, &body.token, &display_name, presented.as_ref()).await?;
    Ok(HttpResponse::Accepted().json(GuestJoinResponse {
        guest_id: place.guest.id,
        status: place.guest.status,
        poll_url: with_token(&format!("/calls/guest/{}", place.guest.id), &body.token),
        device_secret: place.device_secret.map(|secret| secret.expose().to_owned()),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuestStatusResponse {
    guest_id: Uuid,
    status: LobbyStatus,
    /// When admitted: a LiveKit token (guest grants: camera, microphone, data; no screen
    /// share), fresh at each poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    livekit_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_name: Option<String>,
    /// When admitted: whether the call is being recorded, for the consent notice.
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<bool>,
}

/// The `token` query parameter; a missing one is a refused link, not a malformed request.
fn link_token(req: &HttpRequest) -> Result<String, VideoError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|params| {
            params
                .into_inner()
                .into_iter()
                .find_map(|(key, value)| (key == "token").then_some(value))
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| VideoError::GuestLink {
            code: Code::GuestLinkInvalid,
            detail: "the guest-link token is missing (`?token=`)".to_owned(),
        })
}

/// `GET /calls/guest/{guestId}`
#[utoipa::path(get, path = "/calls/guest/{guestId}", tag = "lobby",
    params(
        ("guestId" = Uuid, Path),
        ("token" = String, Query, description = "The guest-link token that created this lobby place"),
        ("Guest-Device-Secret" = String, Header, description = "The `deviceSecret` the join that opened this place answered")),
    responses(
        (status = 200, body = GuestStatusResponse, description = "Still waiting, denied, or admitted with what to connect with"),
        (status = 401, description = "Guest link missing, invalid, expired or not open yet", content_type = "application/problem+json"),
        (status = 404, description = "No such guest for this link and device", content_type = "application/problem+json"),
        (status = 409, description = "The call is over", content_type = "application/problem+json")))]
#[get("/calls/guest/{guestId}")]
async fn poll_guest(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, VideoError> {
    let token = link_token(&req)?;
    let header = req
        .headers()
        .get(DEVICE_SECRET_HEADER)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| VideoError::invalid(DEVICE_SECRET_HEADER, "not visible ASCII"))
        })
        .transpose()?;
    let presented = device_secret(DEVICE_SECRET_HEADER, header)?;
    let (guest, admission) =
        lobby::poll(&state, &token, path.into_inner(), presented.as_ref()).await?;
    let mut response = GuestStatusResponse {
        guest_id: guest.id,
        status: guest.status,
        token: None,
        livekit_url: None,
        room_name: None,
        recording: None,
    };
    if let Some(Admission { token, recording }) = admission {
        response.token = Some(token.token);
        response.livekit_url = Some(token.server_url);
        response.room_name = Some(token.room);
        response.recording = Some(recording);
    }
    Ok(HttpResponse::Ok().json(response))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LobbyGuestView {
    id: Uuid,
    display_name: String,
    status: LobbyStatus,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    /// The user who admitted or denied the guest (or removed them from the call).
    decided_by: Option<Uuid>,
}

impl TryFrom<LobbyGuest> for LobbyGuestView {
    type Error = VideoError;
    fn try_from(guest: LobbyGuest) -> Result<Self, VideoError> {
        Ok(Self {
            status: guest.status,
            id: guest.id,
            display_name: guest.display_name,
            created_at: guest.created_at,
            decided_at: guest.decided_at,
            decided_by: guest.decided_by,
        })
    }
}

/// `GET /calls/{id}/lobby`
#[utoipa::path(get, path = "/calls/{id}/lobby", tag = "lobby",
    params(("id" = Uuid, Path), PageRequest),
    responses(
        (status = 200, body = Page<LobbyGuestView>, description = "The call's guests, waiting or decided, oldest first"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/calls/{id}/lobby")]
async fn list_lobby(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    page: PageRequest,
) -> Result<HttpResponse, VideoError> {
    // A call's lobby is small (one appointment's guests): it is cut into pages in memory.
    let guests = lobby::list(&state, &principal, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page.slice(guests).try_map(LobbyGuestView::try_from)?))
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    (call_id, guest_id): (Uuid, Uuid),
    decision: Decision,
) -> Result<HttpResponse, VideoError> {
    let guest = lobby::decide(state, principal, call_id, guest_id, decision).await?;
    Ok(HttpResponse::Ok().json(LobbyGuestView::try_from(guest)?))
}

/// `POST /calls/{id}/lobby/{guestId}/admit`
#[utoipa::path(post, path = "/calls/{id}/lobby/{guestId}/admit", tag = "lobby",
    params(("id" = Uuid, Path), ("guestId" = Uuid, Path)),
    responses(
        (status = 200, body = LobbyGuestView, description = "Admitted (again: admitting twice is harmless); the guest's next poll gets a LiveKit token"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already denied (`already_decided`), call over, or the guest's link expired", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/lobby/{guestId}/admit")]
async fn admit_guest(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, VideoError> {
    decide(&state, &principal, path.into_inner(), Decision::Admit).await
}

/// `POST /calls/{id}/lobby/{guestId}/deny`
#[utoipa::path(post, path = "/calls/{id}/lobby/{guestId}/deny", tag = "lobby",
    params(("id" = Uuid, Path), ("guestId" = Uuid, Path)),
    responses(
        (status = 200, body = LobbyGuestView, description = "Denied (again: denying twice is harmless); the guest never gets a token"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already admitted (`already_decided`): remove the participant instead", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/lobby/{guestId}/deny")]
async fn deny_guest(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, VideoError> {
    decide(&state, &principal, path.into_inner(), Decision::Deny).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_percent_encoded_into_links() {
        assert_eq!(
            with_token("https://app.test/call/guest", "a.b-c_d~e"),
            "https://app.test/call/guest?token=a.b-c_d~e"
        );
        assert_eq!(
            with_token("https://app.test/g?lang=fr", "a+b/c=d é"),
            "https://app.test/g?lang=fr&token=a%2Bb%2Fc%3Dd%20%C3%A9"
        );
    }
}
