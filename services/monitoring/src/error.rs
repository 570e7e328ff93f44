//! The monitoring service's errors and how each answers: problem+json with a stable code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_livekit::LiveKitError;
use sb_platform::Problem;
use sb_platform::error::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    /// Missing, another org's, or outside the caller's scope: all 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("forbidden ({code}): {detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    /// LiveKit unreachable (503) or refusing (502).
    #[error("LiveKit: {0}")]
    LiveKit(#[source] LiveKitError),
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("{0}")]
    Request(Box<Problem>),
    #[error("{}", error_chain(.0.as_ref()))]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl MonitoringError {
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }

    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not_found")
                .with_detail(format!("{what} not found")),
            Self::Forbidden { code, detail } => {
                Problem::new(StatusCode::FORBIDDEN, *code).with_detail(detail.clone())
            }
            Self::Invalid { field, detail } => sb_platform::request::invalid_field(field, detail),
            Self::Conflict { code, detail } => Problem::conflict(*code, detail.clone()),
            Self::LiveKit(error) => error.problem(),
            Self::DatabaseUnavailable(_) => database_unavailable(),
            // A query cut by a lost connection is an outage, not a bug: 503 like the pool's.
            Self::Database(error) if sb_db::connection_lost(error) => database_unavailable(),
            Self::Request(problem) => Problem::new(problem.status(), problem.code().to_owned()),
            Self::Database(_) | Self::Internal(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl From<Problem> for MonitoringError {
    fn from(problem: Problem) -> Self {
        Self::Request(Box::new(problem))
    }
}

impl From<LiveKitError> for MonitoringError {
    fn from(error: LiveKitError) -> Self {
        Self::LiveKit(error)
    }
}

impl From<sb_db::diesel_async::pooled_connection::deadpool::PoolError> for MonitoringError {
    fn from(error: sb_db::diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::DatabaseUnavailable(error.to_string())
    }
}

impl ResponseError for MonitoringError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Request(problem) => problem.status(),
            other => other.problem().status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Request(problem) => problem.error_response(),
            other => other.problem().error_response(),
        }
    }
}

fn database_unavailable() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        .with_detail("the database is temporarily unavailable, retry shortly")
        .with_retry_after(1)
}
