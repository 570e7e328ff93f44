//! The extractor of Twilio's webhooks: a handler that takes a [`TwilioRequest`] only runs for a
//! request whose `X-Twilio-Signature` matches, checked against `PUBLIC_BASE_URL` + the path and
//! query as received (never the Host header). Anything else is answered 403 before the handler
//! runs, so nothing is written; the refusal is logged and counted.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use sb_platform::{Code, Problem};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::state::AppState;
use sb_twilio::{Params, signature};

/// A verified webhook: its form parameters and the query of the URL Twilio requested.
pub struct TwilioRequest {
    pub params: Params,
    query: Vec<(String, String)>,
}

impl TwilioRequest {
    /// The `callId` the service put in a callback URL.
    pub fn call_id(&self) -> Option<Uuid> {
        self.query
            .iter()
            .find(|(name, _)| name == "callId")
            .and_then(|(_, value)| Uuid::parse_str(value).ok())
    }
}

fn refuse(state: Option<&AppState>, req: &HttpRequest, why: &str) -> actix_web::Error {
    if let Some(state) = state {
        state.metrics.webhook(req.path(), "rejected");
    }
    tracing::warn!(
        http.path = req.path(),
        reason = why,
        "Twilio webhook refused"
    );
    Problem::new(Code::InvalidSignature)
        .with_detail("the X-Twilio-Signature header is missing or does not match the request")
        .into()
}

impl FromRequest for TwilioRequest {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, mut payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().cloned();
            // Twilio posts forms, or JSON for a few callbacks; anything else is refused before
            // the body is read.
            let content_type = req
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase());
            if let Some(content_type) = &content_type {
                let essence = content_type.split(';').next().unwrap_or_default().trim();
                if essence != "application/x-www-form-urlencoded" && essence != "application/json" {
                    if let Some(state) = &state {
                        state.metrics.webhook(req.path(), "rejected");
                    }
                    return Err(Problem::new(Code::UnsupportedMediaType)
                        .with_detail("expected Content-Type: application/x-www-form-urlencoded")
                        .into());
                }
            }
            // A `Content-Length` above the limit is answered without reading the body, a
            // chunked body once the limit is passed: never parsed.
            let body = match web::Bytes::from_request(&req, &mut payload).await {
                Ok(body) => body,
                Err(error)
                    if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    if let Some(state) = &state {
                        state.metrics.webhook(req.path(), "rejected");
                    }
                    return Err(Problem::new(Code::PayloadTooLarge)
                        .with_detail(error.to_string())
                        .into());
                }
                Err(error) => return Err(error),
            };
            let Some(state) = state else {
                return Err(refuse(None, &req, "no service state"));
            };
            let Some(given) = req
                .headers()
                .get(signature::HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
            else {
                return Err(refuse(Some(&state), &req, "no signature"));
            };
            let path_and_query = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
            let url = state.public_url(&path_and_query);
            let token = state.config.twilio.auth_token.expose_secret();
            let json = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/json"));
            let (valid, params) = if json {
                (
                    signature::verify_json(token, given, &url, &body),
                    Params::default(),
                )
            } else {
                let params = Params::parse_form(&body);
                (signature::verify(token, given, &url, &params.0), params)
            };
            if !valid {
                return Err(refuse(Some(&state), &req, "signature mismatch"));
            }
            let query = url::form_urlencoded::parse(req.query_string().as_bytes())
                .into_owned()
                .collect();
            Ok(Self { params, query })
        })
    }
}
