//! The telephony service's errors and how each answers: `application/problem+json` with a stable
//! code (TwiML answers are only for Twilio's successful requests; on a 5xx Twilio uses the
//! number's fallback URL).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_platform::Problem;
use sb_platform::error::error_chain;

use sb_twilio::{TwilioError, codes};

#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    /// Missing, or another org's: both answer 404 so ids cannot be probed across tenants.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// `from` is not one of the caller's numbers.
    #[error("the number is not assigned to the caller")]
    NumberNotOwned,
    #[error("invalid phone number in {field}: {detail}")]
    InvalidPhoneNumber { field: &'static str, detail: String },
    /// A request field is malformed; `field` is its JSON name.
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// Like `Invalid`, for a field found by its path in the body.
    #[error("invalid {field}: {detail}")]
    InvalidPath { field: String, detail: String },
    #[error("request body too large")]
    TooLarge,
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("too many calls started; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Twilio says the destination cannot be called (21211).
    #[error("Twilio refused the destination: {0}")]
    InvalidDestination(String),
    /// Any other refusal of Twilio's, with its code.
    #[error("Twilio refused the request: {code} {message}")]
    ProviderRejected { code: i64, message: String },
    #[error("Twilio is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("voice access tokens are not configured (TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET)")]
    VoiceTokensUnavailable,
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("{}", error_chain(.0.as_ref()))]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl TelephonyError {
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    pub fn phone(field: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidPhoneNumber {
            field,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
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
            Self::Forbidden(detail) => Problem::forbidden(detail.clone()),
            Self::NumberNotOwned => Problem::new(StatusCode::FORBIDDEN, "number_not_owned")
                .with_detail("`from` is not one of your numbers")
                .with_extension("field", "from"),
            Self::InvalidPhoneNumber { field, detail } => {
                Problem::bad_request("invalid_phone_number", format!("{field} {detail}"))
                    .with_extension("field", *field)
            }
            Self::Invalid { field, detail } => {
                Problem::bad_request("invalid_field", format!("{field}: {detail}"))
                    .with_extension("field", *field)
            }
            Self::InvalidPath { field, detail } => {
                Problem::bad_request("invalid_field", format!("{field}: {detail}"))
                    .with_extension("field", field.clone())
            }
            Self::TooLarge => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                .with_detail("the request body is too large"),
            Self::Conflict { code, detail } => Problem::conflict(*code, detail.clone()),
            Self::RateLimited { retry_after_secs } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
                    .with_detail("too many calls started in a short time, retry shortly")
                    .with_retry_after(*retry_after_secs)
            }
            Self::InvalidDestination(message) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_destination")
                    .with_detail(format!("Twilio cannot call this number: {message}"))
                    .with_extension("field", "to")
                    .with_extension("twilioCode", codes::INVALID_TO)
            }
            Self::ProviderRejected { code, message } => {
                let problem = Problem::new(StatusCode::BAD_GATEWAY, "provider_rejected")
                    .with_detail(format!("Twilio refused the call: {message}"))
                    .with_extension("twilioCode", *code);
                if *code == codes::TOO_MANY_REQUESTS {
                    problem.with_retry_after(2)
                } else {
                    problem
                }
            }
            Self::ProviderUnavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable")
                    .with_detail("Twilio is temporarily unreachable, retry shortly")
                    .with_retry_after(2)
            }
            Self::VoiceTokensUnavailable => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "voice_tokens_unavailable")
                    .with_detail("this deployment has no Twilio API key for voice tokens")
            }
            Self::DatabaseUnavailable(_) => database_unavailable(),
            // A query cut by a lost connection is an outage, not a bug: 503 like the pool's.
            Self::Database(error) if sb_db::connection_lost(error) => database_unavailable(),
            Self::Database(_) | Self::Internal(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl From<TwilioError> for TelephonyError {
    fn from(error: TwilioError) -> Self {
        match error {
            TwilioError::Unavailable(cause) => Self::ProviderUnavailable(cause),
            TwilioError::Rejected { code, message, .. } if code == codes::INVALID_TO => {
                Self::InvalidDestination(message)
            }
            TwilioError::Rejected { code, message, .. } => Self::ProviderRejected { code, message },
        }
    }
}

impl From<sb_db::diesel_async::pooled_connection::deadpool::PoolError> for TelephonyError {
    fn from(error: sb_db::diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::DatabaseUnavailable(error.to_string())
    }
}

impl ResponseError for TelephonyError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.problem().error_response()
    }
}

fn database_unavailable() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        .with_detail("the database is temporarily unavailable, retry shortly")
        .with_retry_after(1)
}
