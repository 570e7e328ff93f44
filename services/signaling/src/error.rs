//! The signaling service's errors and how each answers: `application/problem+json` with a code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_platform::Problem;
use sb_platform::error::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// Missing, or not the caller's to see: both answer 404 so ids cannot be probed.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// A request the platform's parsers refused.
    #[error("{0}")]
    Request(Box<Problem>),
    #[error("{}", error_chain(.0.as_ref()))]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl SignalingError {
    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not_found")
                .with_detail(format!("{what} not found")),
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

impl From<Problem> for SignalingError {
    fn from(problem: Problem) -> Self {
        Self::Request(Box::new(problem))
    }
}

impl From<sb_db::diesel_async::pooled_connection::deadpool::PoolError> for SignalingError {
    fn from(error: sb_db::diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::DatabaseUnavailable(error.to_string())
    }
}

impl ResponseError for SignalingError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Request(problem) => problem.status(),
            other => other.problem().status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, Self::Database(_) | Self::Internal(_)) {
            tracing::error!(error = %self, "request failed");
        }
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
