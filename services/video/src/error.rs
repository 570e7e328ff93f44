//! The video service's errors: the shared ones, plus what only video answers (LiveKit, guest
//! links, things LiveKit does not know).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_livekit::LiveKitError;
use sb_platform::{ApiError, Code, Problem};

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Something LiveKit does not know (a participant not connected, a track not published):
    /// 404 with a `code` saying what, since the call itself exists.
    #[error("{code}: {detail}")]
    Absent { code: Code, detail: String },
    /// A guest link that is invalid, expired or not yet open: 401.
    #[error("guest link refused ({code})")]
    GuestLink { code: Code, detail: String },
    /// LiveKit unreachable (503) or refusing (502).
    #[error("LiveKit: {0}")]
    LiveKit(#[source] LiveKitError),
    /// A recording with no file to play or delete yet (still starting or running).
    #[error("recording not ready: {0}")]
    RecordingNotReady(String),
    /// The recordings bucket unreachable or refusing: nothing changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

sb_platform::wraps_api_error!(VideoError);

impl From<LiveKitError> for VideoError {
    fn from(error: LiveKitError) -> Self {
        Self::LiveKit(error)
    }
}

impl VideoError {
    fn problem(&self) -> Problem {
        match self {
            Self::Api(error) => error.problem(),
            Self::Absent { code, detail } => Problem::new(*code)
                .with_status(StatusCode::NOT_FOUND)
                .with_detail(detail.clone()),
            Self::GuestLink { code, detail } => Problem::new(*code)
                .with_status(StatusCode::UNAUTHORIZED)
                .with_detail(detail.clone()),
            Self::LiveKit(error) => error.problem(),
            Self::RecordingNotReady(detail) => {
                Problem::new(Code::RecordingNotReady).with_detail(detail.clone())
            }
            // Nothing changed: the client may retry.
            Self::Storage(error) => {
                Problem::unavailable(Code::StorageUnavailable, error.to_string())
            }
        }
    }
}

impl ResponseError for VideoError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.problem().error_response()
    }
}
