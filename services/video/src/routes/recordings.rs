//! A call's recordings: play one (a redirect to the file) and delete one.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, web};
use sb_auth::Principal;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::recording_files;
use crate::error::VideoError;
use crate::state::AppState;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(play_recording).service(delete_recording);
}

/// `GET /calls/{id}/recordings/{recordingId}/media`
#[utoipa::path(get, path = "/calls/{id}/recordings/{recordingId}/media", tag = "calls",
    params(
        ("id" = Uuid, Path),
        ("recordingId" = Uuid, Path),
        ("Range" = Option<String>, Header, description = "Kept in the audit row; the bucket answers it (206) once the client follows the redirect")),
    responses(
        (status = 307, description = "`Location` is a presigned URL of the MP4 in the recordings bucket, valid for 5 minutes; the bucket serves `Range` (206), `Content-Type: video/mp4` and `Content-Length`. One `recording_access_audit` row (action `play`, the `Range` asked) per answer. Ask again for a new URL once it has expired"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call or recording, another org's, deleted, or kept where this service cannot read it (no `RECORDING_S3_BUCKET`)", content_type = "application/problem+json"),
        (status = 409, description = "`recording_not_ready`: not finished (starting, active) or failed: no file to play", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/calls/{id}/recordings/{recordingId}/media")]
async fn play_recording(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
    req: HttpRequest,
) -> Result<HttpResponse, VideoError> {
    let (call_id, recording_id) = path.into_inner();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let url = recording_files::play(&state, &principal, call_id, recording_id, range).await?;
    Ok(HttpResponse::TemporaryRedirect()
        .insert_header((header::LOCATION, url.as_str()))
        // The URL is a credential for five minutes: not cached, not passed on as a referrer.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish())
}

/// `DELETE /calls/{id}/recordings/{recordingId}`
#[utoipa::path(delete, path = "/calls/{id}/recordings/{recordingId}", tag = "calls",
    params(("id" = Uuid, Path), ("recordingId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted: the file is gone from the bucket, the recording leaves the call's `recordings`, one audit row (action `delete`) and `sb.video.recording.deleted` (reason `user`). Deleting it again answers 204 and changes nothing"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 403, description = "Only the host or an org leader", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call or recording, another org's, or kept where this service cannot reach it (no `RECORDING_S3_BUCKET`)", content_type = "application/problem+json"),
        (status = 409, description = "`recording_not_ready`: still recording (no file yet: stop it first)", content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`: the recordings bucket is unreachable or refused; nothing changed, retry", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[delete("/calls/{id}/recordings/{recordingId}")]
async fn delete_recording(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, VideoError> {
    let (call_id, recording_id) = path.into_inner();
    recording_files::delete(&state, &principal, call_id, recording_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
