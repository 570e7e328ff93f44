//! RFC 9457 `application/problem+json` errors with a stable, machine-readable `code`.

use std::borrow::Cow;
use std::fmt;

pub use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. `code` is the stable identifier clients switch on; `detail` is for humans.
///
/// Server errors keep their cause for the log but never show it to the client.
pub struct Problem {
    status: StatusCode,
    code: Cow<'static, str>,
    detail: Option<String>,
    extensions: Map<String, Value>,
    retry_after_secs: Option<u64>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code: code.into(),
            detail: None,
            extensions: Map::new(),
            retry_after_secs: None,
            cause: None,
        }
    }

    pub fn bad_request(code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code).with_detail(detail)
    }

    pub fn unauthorized(code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code).with_detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden").with_detail(detail)
    }

    /// Not found. Also the answer for another tenant's object: never reveal that it exists.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found").with_detail(detail)
    }

    pub fn conflict(code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code).with_detail(detail)
    }

    /// A dependency (database, NATS, provider) is unreachable; the client may retry.
    pub fn unavailable(
        code: impl Into<Cow<'static, str>>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code)
            .with_detail("a dependency is temporarily unavailable, retry shortly")
            .with_retry_after(1)
            .with_cause(cause)
    }

    /// An unexpected failure: the client sees an opaque 500, the cause goes to the log once.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal").with_cause(cause)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member (RFC 9457 §3.2), e.g. which readiness checks failed.
    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.cause = Some(cause.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// The underlying cause, for logging. Never sent to the client.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync)> {
        self.cause.as_deref()
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Value {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("urn:switchboard:problem:{}", self.code)),
        );
        body.insert("title".into(), Value::String(title));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("code".into(), Value::String(self.code.to_string()));
        // A server error's detail could carry internals: only client errors show theirs.
        if let Some(detail) = self.detail.as_ref().filter(|_| {
            !self.status.is_server_error() || self.status == StatusCode::SERVICE_UNAVAILABLE
        }) {
            body.insert("detail".into(), Value::String(detail.clone()));
        }
        for (key, value) in &self.extensions {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("detail", &self.detail)
            .field(
                "cause",
                &self.cause.as_ref().map(|c| error_chain(c.as_ref())),
            )
            .finish()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, " (cause: {})", error_chain(cause.as_ref()))?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// An error and its sources on one line, outermost first.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(seconds) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.body(self.body().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_opaque_to_clients_but_keep_their_cause() {
        let problem = Problem::internal(std::io::Error::other("db password=hunter2 rejected"))
            .with_detail("should not leak");
        let body = problem.body().to_string();
        assert!(!body.contains("hunter2"), "{body}");
        assert!(!body.contains("should not leak"), "{body}");
        assert!(
            problem.to_string().contains("hunter2"),
            "cause kept for the log"
        );
        assert_eq!(problem.body()["code"], "internal");
        assert_eq!(problem.body()["status"], 500);
    }

    #[test]
    fn client_errors_carry_code_detail_and_extensions() {
        let problem = Problem::bad_request("invalid_phone_number", "to must be E.164")
            .with_extension("field", "to");
        let body = problem.body();
        assert_eq!(body["code"], "invalid_phone_number");
        assert_eq!(body["detail"], "to must be E.164");
        assert_eq!(body["field"], "to");
        assert_eq!(body["type"], "urn:switchboard:problem:invalid_phone_number");
        let response = problem.error_response();
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            PROBLEM_JSON
        );
    }

    #[test]
    fn extensions_cannot_overwrite_standard_members() {
        let body = Problem::forbidden("no")
            .with_extension("status", 200)
            .body();
        assert_eq!(body["status"], 403);
    }
}
