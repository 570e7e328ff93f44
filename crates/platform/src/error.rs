//! RFC 9457 `application/problem+json` errors with a stable, machine-readable `code`, and
//! [`ApiError`], the errors every service shares.

use std::borrow::Cow;
use std::fmt;

pub use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value};

pub use crate::codes::{Code, EventCode};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. `code` is the stable identifier clients switch on; `detail` is for humans.
///
/// Server errors keep their cause for the log but never show it to the client.
pub struct Problem {
    status: StatusCode,
    code: Code,
    detail: Option<String>,
    extensions: Map<String, Value>,
    retry_after_secs: Option<u64>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Problem {
    /// An answer with `code`, at the code's usual status.
    pub fn new(code: Code) -> Self {
        Self {
            status: code.status(),
            code,
            detail: None,
            extensions: Map::new(),
            retry_after_secs: None,
            cause: None,
        }
    }

    /// For a code answered at more than one status (see [`Code::statuses`]).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        debug_assert!(
            self.code.statuses().contains(&status),
            "{} is not listed with status {status} in codes.rs",
            self.code
        );
        self.status = status;
        self
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden).with_detail(detail)
    }

    /// Not found. Also the answer for another tenant's object: never reveal that it exists.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Code::NotFound).with_detail(detail)
    }

    /// A dependency (database, NATS, provider) is unreachable; the client may retry.
    pub fn unavailable(
        code: Code,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(code)
            .with_detail("a dependency is temporarily unavailable, retry shortly")
            .with_retry_after(1)
            .with_cause(cause)
    }

    /// An unexpected failure: the client sees an opaque 500, the cause goes to the log once.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(Code::Internal).with_cause(cause)
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

    /// A copy without the cause: everything the client sees.
    pub fn without_cause(&self) -> Self {
        Self {
            status: self.status,
            code: self.code,
            detail: self.detail.clone(),
            extensions: self.extensions.clone(),
            retry_after_secs: self.retry_after_secs,
            cause: None,
        }
    }

    pub fn code(&self) -> Code {
        self.code
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
            Value::String(format!("urn:switchboard:problem:{}", self.code.as_str())),
        );
        body.insert("title".into(), Value::String(title));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("code".into(), Value::String(self.code.as_str().to_owned()));
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
            .field("code", &self.code.as_str())
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

/// The errors every service shares. A service's own error adds only its provider and domain
/// variants, wrapping this one transparently (see [`wraps_api_error!`](crate::wraps_api_error)).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, another tenant's, or outside the caller's scope: all 404 so ids cannot be probed.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Authenticated but not allowed; `code` says why ([`Code::Forbidden`] unless more precise).
    #[error("forbidden ({code}): {detail}")]
    Forbidden { code: Code, detail: String },
    /// A request value is malformed; `field` is its name on the wire (`participants[2]`).
    #[error("invalid {field}: {detail}")]
    Invalid {
        field: Cow<'static, str>,
        detail: String,
    },
    /// Valid, but in conflict with the object's state (stopping a finished call): 409.
    #[error("{code}: {detail}")]
    Conflict { code: Code, detail: String },
    /// No connection from the pool (or a dependency the database stands for): 503, retry.
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    /// A failed query: 503 when it failed because the connection was lost (an outage, not a
    /// bug), else an opaque 500.
    #[error("database error: {}", error_chain(.cause.as_ref()))]
    Database {
        lost: bool,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An answer already built: a parser's refusal, a provider's mapping.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// An unexpected failure: an opaque 500, its cause logged once by the request middleware.
    #[error("{}", error_chain(.0.as_ref()))]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// What the client is answered (the cause stays with the error, for the log).
    pub fn problem(&self) -> Problem {
        match self {
            Self::Problem(problem) => problem.without_cause(),
            Self::NotFound(what) => Problem::not_found(format!("{what} not found")),
            Self::Forbidden { code, detail } => Problem::new(*code)
                .with_status(StatusCode::FORBIDDEN)
                .with_detail(detail.clone()),
            Self::Invalid { field, detail } => crate::request::invalid_field(field, detail),
            Self::Conflict { code, detail } => Problem::new(*code)
                .with_status(StatusCode::CONFLICT)
                .with_detail(detail.clone()),
            Self::DatabaseUnavailable(_) | Self::Database { lost: true, .. } => {
                database_unavailable()
            }
            Self::Database { lost: false, .. } | Self::Internal(_) => Problem::new(Code::Internal),
        }
    }
}

fn database_unavailable() -> Problem {
    Problem::new(Code::DatabaseUnavailable)
        .with_detail("the database is temporarily unavailable, retry shortly")
        .with_retry_after(1)
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(Box::new(problem))
    }
}

/// The request middleware (`metrics::record`) logs a server error's Display, cause included, once.
impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Problem(problem) => problem.status(),
            other => other.problem().status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Problem(problem) => problem.error_response(),
            other => other.problem().error_response(),
        }
    }
}

/// Shorthands for the shared errors, on [`ApiError`] and on every service error that wraps it:
/// `VideoError::not_found("call")`, `MonitoringError::conflict(Code::SessionStopped, "…")`.
pub trait ApiErrorExt: From<ApiError> {
    fn not_found(what: &'static str) -> Self {
        ApiError::NotFound(what).into()
    }

    /// Refused with `code` (403): [`Code::Forbidden`], or a more precise one.
    fn forbidden(code: Code, detail: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            detail: detail.into(),
        }
        .into()
    }

    fn invalid(field: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
        .into()
    }

    fn conflict(code: Code, detail: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            detail: detail.into(),
        }
        .into()
    }

    fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into()).into()
    }
}

impl<T: From<ApiError>> ApiErrorExt for T {}

/// The database's errors as API errors: diesel's and the pool's (feature `db`, which sb-db turns
/// on; it lives here rather than in sb-db because sb-db depends on this crate).
#[cfg(feature = "db")]
pub mod db {
    pub use deadpool::managed::PoolError;
    pub use diesel::result::Error as DieselError;

    use super::ApiError;

    /// Whether a query failed because the connection to Postgres was lost (a restart, a failover, a
    /// network cut) rather than because of the query: callers answer 503, not 500. Without a
    /// SQLSTATE diesel-async reports `UnableToSendCommand`; a server shutting down sends 57P01
    /// (`terminating connection due to administrator command`).
    pub fn connection_lost(error: &DieselError) -> bool {
        use diesel::result::DatabaseErrorKind;
        match error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => true,
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                let message = info.message();
                message.starts_with("terminating connection")
                    || message.starts_with("the database system is")
            }
            _ => false,
        }
    }

    impl From<DieselError> for ApiError {
        fn from(error: DieselError) -> Self {
            Self::Database {
                lost: connection_lost(&error),
                cause: Box::new(error),
            }
        }
    }

    impl<E: std::fmt::Display> From<PoolError<E>> for ApiError {
        fn from(error: PoolError<E>) -> Self {
            Self::DatabaseUnavailable(error.to_string())
        }
    }
}

/// For a service error with an `Api(ApiError)` variant: lets `?` convert what `ApiError` converts
/// from (a [`Problem`], a diesel error, a pool error) straight into it.
#[cfg(feature = "db")]
#[macro_export]
macro_rules! wraps_api_error {
    ($error:ty) => {
        impl ::core::convert::From<$crate::Problem> for $error {
            fn from(problem: $crate::Problem) -> Self {
                Self::Api(problem.into())
            }
        }

        impl ::core::convert::From<$crate::error::db::DieselError> for $error {
            fn from(error: $crate::error::db::DieselError) -> Self {
                Self::Api(error.into())
            }
        }

        impl<E: ::core::fmt::Display> ::core::convert::From<$crate::error::db::PoolError<E>>
            for $error
        {
            fn from(error: $crate::error::db::PoolError<E>) -> Self {
                Self::Api(error.into())
            }
        }
    };
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
        let problem = Problem::new(Code::InvalidPhoneNumber)
            .with_detail("to must be E.164")
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

    #[test]
    fn api_errors_answer_their_code_and_keep_500s_opaque() {
        let cases: [(ApiError, u16, &str); 5] = [
            (ApiError::NotFound("call"), 404, "not_found"),
            (
                ApiError::Conflict {
                    code: Code::CallFinished,
                    detail: "over".into(),
                },
                409,
                "call_finished",
            ),
            (
                ApiError::Forbidden {
                    code: Code::NotYourSession,
                    detail: "no".into(),
                },
                403,
                "not_your_session",
            ),
            (
                ApiError::DatabaseUnavailable("pool timed out".into()),
                503,
                "database_unavailable",
            ),
            (
                ApiError::Internal("password=hunter2".into()),
                500,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status_code().as_u16(), status, "{error}");
            let body = error.problem().body();
            assert_eq!(body["code"], code);
            assert!(!body.to_string().contains("hunter2"), "{body}");
        }
        let invalid = ApiError::Invalid {
            field: "participants[2]".into(),
            detail: "not a UUID".into(),
        }
        .problem()
        .body();
        assert_eq!(invalid["code"], "invalid_field");
        assert_eq!(invalid["field"], "participants[2]");
    }

    #[test]
    fn a_ready_made_problem_answers_itself_whole() {
        let error = ApiError::from(
            Problem::new(Code::InvalidPhoneNumber)
                .with_detail("to must be E.164")
                .with_extension("field", "to")
                .with_retry_after(3),
        );
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers().get("retry-after").unwrap(), "3");
        let body = error.problem().body();
        assert_eq!(body["field"], "to");
        assert_eq!(body["detail"], "to must be E.164");
    }

    #[cfg(feature = "db")]
    #[test]
    fn a_lost_connection_is_503_and_a_failed_query_an_opaque_500() {
        use diesel::result::{DatabaseErrorKind, Error};
        let lost = ApiError::from(Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("connection closed".to_owned()),
        ));
        assert_eq!(lost.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(lost.problem().body()["code"], "database_unavailable");
        let failed = ApiError::from(Error::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            Box::new("secret_column violates check".to_owned()),
        ));
        assert_eq!(failed.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !failed
                .problem()
                .body()
                .to_string()
                .contains("secret_column")
        );
        assert!(
            failed.to_string().contains("secret_column"),
            "kept for the log"
        );
    }
}
