//! JSON request bodies: optional where the seeds make them optional, and a 400 that names the
//! field at fault (`from`, `ringTimeoutSeconds`) when they are malformed.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::TelephonyError;

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TelephonyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            TelephonyError::Invalid {
                field: "body",
                detail: inner.to_string(),
            }
        } else {
            TelephonyError::InvalidPath {
                field: path,
                detail: inner.to_string(),
            }
        }
    })
}

async fn read(req: HttpRequest, mut payload: Payload) -> Result<web::Bytes, TelephonyError> {
    web::Bytes::from_request(&req, &mut payload)
        .await
        .map_err(|error| {
            if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                TelephonyError::TooLarge
            } else {
                TelephonyError::invalid("body", error.to_string())
            }
        })
}

/// A JSON body that may be absent (empty), in which case `T::default()` is used.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = TelephonyError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let bytes = read(req, payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            parse(&bytes).map(Self)
        })
    }
}

/// A required JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = TelephonyError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let bytes = read(req, payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(TelephonyError::invalid("body", "a JSON body is required"));
            }
            parse(&bytes).map(Self)
        })
    }
}
