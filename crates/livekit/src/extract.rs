//! The extractor public webhook routes take instead of a `Principal`: the request's
//! `Authorization` must be LiveKit's signature over the exact body, else 403 and nothing runs.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use livekit_protocol::WebhookEvent;
use sb_platform::error::StatusCode;
use sb_platform::{Code, Problem};

use crate::webhook::{MAX_WEBHOOK_BYTES, WebhookVerifier};

/// Counts refused webhooks; give it to the app (`web::Data<RejectedWebhooks>`) to count them in
/// the service's own metrics.
#[derive(Clone)]
pub struct RejectedWebhooks(pub prometheus::IntCounter);

/// A LiveKit webhook whose signature verified. Needs `web::Data<WebhookVerifier>` in the app.
pub struct SignedWebhook(pub WebhookEvent);

fn refused() -> Problem {
    Problem::new(Code::InvalidSignature)
        .with_detail("the webhook signature is missing or does not match the body")
}

fn too_large() -> Problem {
    Problem::new(Code::PayloadTooLarge).with_detail(format!(
        "a webhook body is at most {MAX_WEBHOOK_BYTES} bytes"
    ))
}

fn unsupported_media_type() -> Problem {
    Problem::new(Code::UnsupportedMediaType)
        .with_detail("expected Content-Type: application/webhook+json")
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
            let count = |reason: &dyn std::fmt::Display| {
                if let Some(counter) = &rejected {
                    counter.0.inc();
                }
                tracing::warn!(reason = %reason, "LiveKit webhook refused");
            };
            let refuse = |reason: &dyn std::fmt::Display| {
                count(reason);
                refused()
            };
            // Checked before the body is read: LiveKit sends `application/webhook+json`; a body
            // declared as something else (a form, text) is not a LiveKit event.
            if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
                let essence = content_type
                    .to_str()
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if essence != "application/webhook+json" && essence != "application/json" {
                    count(&"wrong content type");
                    return Err(unsupported_media_type());
                }
            }
            // An oversized body is refused before it is parsed: a `Content-Length` above the
            // limit is answered without reading the body, a chunked one once the limit is
            // passed.
            let body = match web::Bytes::from_request(&req, &mut payload).await {
                Ok(body) => body,
                Err(error)
                    if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    count(&error);
                    return Err(too_large());
                }
                Err(error) => return Err(refuse(&error)),
            };
            if body.len() > MAX_WEBHOOK_BYTES {
                count(&"body too large");
                return Err(too_large());
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
