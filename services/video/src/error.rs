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
            // No code for "not ready" is listed for video yet (`recording_not_ready` is
            // telephony's): there is no media at this address yet, so 404 until it is.
            Self::RecordingNotReady(detail) => Problem::not_found(detail.clone()),
            // No code for an unavailable bucket is listed for video (`provider_unavailable` is
            // telephony's): an opaque 500 with the cause logged, nothing changed.
            Self::Storage(error) => Problem::internal(error.to_string()),
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
