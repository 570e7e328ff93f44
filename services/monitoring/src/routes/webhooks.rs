//! `POST /webhooks/livekit`: public, authenticated by LiveKit's signature only. Point the LiveKit
//! server's webhook list at this service as well as at the video service.

use actix_web::{HttpResponse, post, web};
use sb_livekit::SignedWebhook;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::actions::webhook;
use crate::error::MonitoringError;
use crate::state::AppState;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(livekit_webhook);
}

/// `POST /webhooks/livekit`
#[utoipa::path(post, path = "/webhooks/livekit", tag = "webhooks",
    request_body(content = String, content_type = "application/webhook+json",
        description = "A LiveKit WebhookEvent; `Authorization` holds a JWT whose `sha256` claim is the base64 SHA-256 of this body"),
    responses(
        (status = 200, description = "Applied, a duplicate, or ignored (`outcome` says which)"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json")))]
#[post("/webhooks/livekit")]
async fn livekit_webhook(
    state: web::Data<AppState>,
    SignedWebhook(event): SignedWebhook,
) -> Result<HttpResponse, MonitoringError> {
    match webhook::apply(&state, &event).await {
        Ok(outcome) => {
            state.metrics.webhook(&event.event, outcome.as_str());
            Ok(HttpResponse::Ok()
                .json(serde_json::json!({"outcome": outcome.as_str(), "event": event.event})))
        }
        Err(error) => {
            state.metrics.webhook(&event.event, "failed");
            Err(error)
        }
    }
}
