//! The extractor public webhook routes take instead of a `Principal`: the request's
//! `Authorization` must be LiveKit's signature over the exact body, else 403 and nothing runs.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use livekit_protocol::WebhookEvent;
use sb_platform::Problem;
use sb_platform::error::StatusCode;

use crate::webhook::{MAX_WEBHOOK_BYTES, WebhookVerifier};

/// Counts refused webhooks; give it to the app (`web::Data<RejectedWebhooks>`) to count them in
/// the service's own metrics.
#[derive(Clone)]
pub struct RejectedWebhooks(pub prometheus::IntCounter);

/// A LiveKit webhook whose signature verified. Needs `web::Data<WebhookVerifier>` in the app.
pub struct SignedWebhook(pub WebhookEvent);

fn refused() -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "invalid_signature")
        .with_detail("the webhook signature is missing or does not match the body")
}

impl FromRequest for SignedWebhook {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let verifier = req
                .app_data::<web::Data<WebhookVerifier>>()
                .cloned()
                .ok_or_else(|| Problem::internal(std::io::Error::other("no WebhookVerifier")))?;
            let rejected = req.app_data::<web::Data<RejectedWebhooks>>().cloned();
            let refuse = |reason: &dyn std::fmt::Display| {
                if let Some(counter) = &rejected {
                    counter.0.inc();
                }
                tracing::warn!(reason = %reason, "LiveKit webhook refused");
                refused()
            };
            let body = web::Bytes::from_request(&req, &mut payload)
                .await
                .map_err(|e| refuse(&e))?;
            if body.len() > MAX_WEBHOOK_BYTES {
                return Err(refuse(&"body too large"));
            }
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            verifier
                .verify(authorization, &body)
                .map(SignedWebhook)
                .map_err(|e| refuse(&e))
        })
    }
}
