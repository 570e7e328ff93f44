//! The telephony service's errors and how each answers: `application/problem+json` with a stable
//! code (TwiML answers are only for Twilio's successful requests; on a 5xx Twilio uses the
//! number's fallback URL).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sb_platform::{ApiError, Code, Problem};

use sb_twilio::TwilioError;

use crate::domain::destination;

/// The shared errors, plus what only telephony answers: phone numbers, rate limits, Twilio.
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `from` is not one of the caller's numbers.
    #[error("the number is not assigned to the caller")]
    NumberNotOwned,
    #[error("invalid phone number in {field}: {detail}")]
    InvalidPhoneNumber { field: &'static str, detail: String },
    #[error("too many calls started; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A refusal the caller can act on: Twilio's (with its code) or the toll-fraud guard's.
    #[error("call refused ({code}): {detail}")]
    CallRefused {
        code: Code,
        field: &'static str,
        detail: String,
        twilio_code: Option<i64>,
    },
    /// Any other refusal of Twilio's, with its code.
    #[error("Twilio refused the request: {code} {message}")]
    ProviderRejected { code: i64, message: String },
    #[error("Twilio is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("voice access tokens are not configured (TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET)")]
    VoiceTokensUnavailable,
}

sb_platform::wraps_api_error!(TelephonyError);

impl TelephonyError {
    pub fn phone(field: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidPhoneNumber {
            field,
            detail: detail.into(),
        }
    }

    fn problem(&self) -> Problem {
        match self {
            Self::Api(error) => error.problem(),
            Self::NumberNotOwned => Problem::new(Code::NumberNotOwned)
                .with_detail("`from` is not one of your numbers")
                .with_extension("field", "from"),
            Self::InvalidPhoneNumber { field, detail } => Problem::new(Code::InvalidPhoneNumber)
                .with_detail(format!("{field} {detail}"))
                .with_extension("field", *field),
            Self::RateLimited { retry_after_secs } => Problem::new(Code::RateLimited)
                .with_detail("too many calls started in a short time, retry shortly")
                .with_retry_after(*retry_after_secs),
            Self::CallRefused {
                code,
                field,
                detail,
                twilio_code,
            } => {
                let problem = Problem::new(*code)
                    .with_detail(detail.clone())
                    .with_extension("field", *field);
                match twilio_code {
                    Some(twilio) => problem.with_extension("twilioCode", *twilio),
                    None => problem,
                }
            }
            Self::ProviderRejected { code, message } => Problem::new(Code::ProviderRejected)
                .with_detail(format!("Twilio refused the call: {message}"))
                .with_extension("twilioCode", *code),
            Self::ProviderUnavailable(_) => Problem::new(Code::ProviderUnavailable)
                .with_detail("Twilio is temporarily unreachable, retry shortly")
                .with_retry_after(2),
            Self::VoiceTokensUnavailable => Problem::new(Code::VoiceTokensUnavailable)
                .with_detail("this deployment has no Twilio API key for voice tokens"),
        }
    }
}

impl From<TwilioError> for TelephonyError {
    fn from(error: TwilioError) -> Self {
        match error {
            TwilioError::Unavailable(cause) | TwilioError::Busy(cause) => {
                Self::ProviderUnavailable(cause)
            }
            TwilioError::Rejected { code, message, .. } => match destination::actionable(code) {
                Some(refusal) => Self::CallRefused {
                    code: refusal.code,
                    field: refusal.field,
                    detail: refusal.detail.to_owned(),
                    twilio_code: Some(code),
                },
                None => Self::ProviderRejected { code, message },
            },
        }
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
