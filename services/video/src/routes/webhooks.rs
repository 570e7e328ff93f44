//! `POST /webhooks/livekit`: public, authenticated by LiveKit's signature only.

use actix_web::{HttpResponse, post, web};
use sb_livekit::SignedWebhook;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::actions::webhook;
use crate::error::VideoError;
use crate::state::AppState;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(livekit_webhook);
}

/// `POST /webhooks/livekit`
#[utoipa::path(post, path = "/webhooks/livekit", tag = "webhooks",
    request_body(content = String, content_type = "application/webhook+json",
        description = "A LiveKit WebhookEvent, signed: `Authorization` holds a JWT whose `sha256` claim is the base64 SHA-256 of this body"),
    responses(
        (status = 200, description = "Applied, a duplicate, or ignored (`outcome` says which)"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable: LiveKit retries", content_type = "application/problem+json")))]
#[post("/webhooks/livekit")]
async fn livekit_webhook(
    state: web::Data<AppState>,
    SignedWebhook(event): SignedWebhook,
) -> Result<HttpResponse, VideoError> {
    let outcome = match webhook::apply(&state, &event).await {
        Ok(outcome) => outcome,
        Err(error) => {
            state.metrics.webhook(&event.event, "failed");
            return Err(error);
        }
    };
    state.metrics.webhook(&event.event, outcome.as_str());
    tracing::info!(event = %event.event, webhook.id = %event.id, outcome = outcome.as_str(), "LiveKit webhook");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "outcome": outcome.as_str(),
        "event": event.event,
    })))
}
