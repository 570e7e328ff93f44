//! Host controls over a call's participants: remove one from the room, mute one of their tracks.

use actix_web::{HttpResponse, post, web};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::lobby;
use crate::domain::call::Identity;
use crate::error::VideoError;
use crate::routes::JsonBody;
use crate::state::AppState;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(remove_participant).service(mute_participant);
}

fn identity(raw: &str) -> Result<Identity, VideoError> {
    raw.parse()
        .map_err(|()| VideoError::invalid("identity", "expected u_<userId> or g_<guestId>"))
}

/// LiveKit track sids look like `TR_AMkDY3WnrpqP`; anything else cannot name a track.
fn track_sid(raw: &str) -> Result<&str, VideoError> {
    let valid = raw.len() <= 64
        && raw.strip_prefix("TR_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if valid {
        Ok(raw)
    } else {
        Err(VideoError::invalid(
            "trackSid",
            "expected a LiveKit track sid (TR_…)",
        ))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovedResponse {
    identity: String,
    /// LiveKit disconnected them.
    removed: bool,
    /// A guest who was admitted or waiting is denied now (no new token); false for platform
    /// users and for a guest already denied.
    denied: bool,
}

/// `POST /calls/{id}/participants/{identity}/remove`
#[utoipa::path(post, path = "/calls/{id}/participants/{identity}/remove", tag = "calls",
    params(
        ("id" = Uuid, Path),
        ("identity" = String, Path, description = "LiveKit identity: u_<userId> or g_<guestId>")),
    responses(
        (status = 200, body = RemovedResponse, description = "Disconnected, denied (a guest who was admitted or waiting, so they cannot fetch a new token), or both"),
        (status = 400, description = "Malformed identity", content_type = "application/problem+json"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call, or nothing to do: the participant is not connected and is no guest to deny (`participant_not_found`)", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable: nothing changed", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/participants/{identity}/remove")]
async fn remove_participant(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, VideoError> {
    let (call_id, raw) = path.into_inner();
    let identity = identity(&raw)?;
    let removal = lobby::remove(&state, &principal, call_id, identity).await?;
    Ok(HttpResponse::Ok().json(RemovedResponse {
        identity: identity.to_string(),
        removed: removal.disconnected,
        denied: removal.denied,
    }))
}

fn muted_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuteBody {
    /// The published track to mute (`TR_…`, from the LiveKit client's participant list).
    track_sid: String,
    /// `false` unmutes (LiveKit servers may refuse remote unmuting by configuration).
    #[serde(default = "muted_by_default")]
    #[schema(default = true)]
    muted: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutedResponse {
    identity: String,
    track_sid: String,
    /// The track's state as LiveKit reports it after the change.
    muted: bool,
}

/// `POST /calls/{id}/participants/{identity}/mute`
#[utoipa::path(post, path = "/calls/{id}/participants/{identity}/mute", tag = "calls",
    params(
        ("id" = Uuid, Path),
        ("identity" = String, Path, description = "LiveKit identity: u_<userId> or g_<guestId>")),
    request_body = MuteBody,
    responses(
        (status = 200, body = MutedResponse),
        (status = 400, description = "Malformed identity or track sid", content_type = "application/problem+json"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call, or no such track of this participant (`track_not_found`)", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/participants/{identity}/mute")]
async fn mute_participant(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, String)>,
    JsonBody(body): JsonBody<MuteBody>,
) -> Result<HttpResponse, VideoError> {
    let (call_id, raw) = path.into_inner();
    let identity = identity(&raw)?;
    let sid = track_sid(&body.track_sid)?;
    let track = lobby::mute(&state, &principal, call_id, identity, sid, body.muted).await?;
    Ok(HttpResponse::Ok().json(MutedResponse {
        identity: identity.to_string(),
        track_sid: sid.to_owned(),
        muted: track.muted,
    }))
}
