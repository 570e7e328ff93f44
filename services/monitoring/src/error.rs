//! The monitoring service's errors: the shared ones, plus LiveKit's.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_livekit::LiveKitError;
use sb_platform::{ApiError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// LiveKit unreachable (503) or refusing (502).
    #[error("LiveKit: {0}")]
    LiveKit(#[source] LiveKitError),
}

sb_platform::wraps_api_error!(MonitoringError);

impl From<LiveKitError> for MonitoringError {
    fn from(error: LiveKitError) -> Self {
        Self::LiveKit(error)
    }
}

impl MonitoringError {
    fn problem(&self) -> Problem {
        match self {
            Self::Api(error) => error.problem(),
            Self::LiveKit(error) => error.problem(),
        }
    }
}

impl ResponseError for MonitoringError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.problem().error_response()
    }
}
