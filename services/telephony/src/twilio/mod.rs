//! The Twilio adapter: a small REST client over reqwest (Calls and Voice Insights, base URLs
//! configurable so tests use the fake in testkit), Twilio's error bodies as typed errors, the
//! webhook signature and Voice access tokens. The `twilio` crate cannot serve (no `<Dial>`, a
//! fixed base URL, mis-parsed `in-progress`/`no-answer`, signatures with a port or query
//! refused); see ARCHITECTURE.md, "Twilio".

pub mod signature;
pub mod token;

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::TwilioConfig;

/// Twilio's error codes the service treats specially.
pub mod codes {
    /// The `To` number is not a valid phone number.
    pub const INVALID_TO: i64 = 21211;
    /// Authentication failed (wrong account sid or token).
    pub const AUTHENTICATE: i64 = 20003;
    /// Trial accounts may only call verified numbers.
    pub const UNVERIFIED_TO: i64 = 21219;
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: i64 = 20429;
    /// The resource was not found.
    pub const NOT_FOUND: i64 = 20404;
}

#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error (its `code`, `message` and HTTP status).
    #[error("Twilio refused the request: {code} {message} (HTTP {status})")]
    Rejected {
        status: u16,
        code: i64,
        message: String,
    },
    /// No answer, a timeout, or a 5xx: the request may be retried.
    #[error("Twilio is unavailable: {0}")]
    Unavailable(String),
}

impl TwilioError {
    pub fn code(&self) -> Option<i64> {
        match self {
            TwilioError::Rejected { code, .. } => Some(*code),
            TwilioError::Unavailable(_) => None,
        }
    }
}

/// A call to create (`POST /2010-04-01/Accounts/{sid}/Calls.json`).
#[derive(Debug, Clone)]
pub struct NewCall {
    /// `+E164`, or `client:<identity>` to ring a Voice SDK app.
    pub to: String,
    pub from: String,
    /// TwiML Twilio fetches once `to` answers.
    pub url: String,
    pub status_callback: String,
    /// How long `to` rings, seconds.
    pub timeout_seconds: u32,
}

/// The fields of Twilio's Call resource the service reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CallResource {
    pub sid: String,
    pub status: String,
    /// Seconds, as a string; absent until the call ends.
    #[serde(default)]
    pub duration: Option<String>,
    /// Negative decimal string (`"-0.01750"`); filled some time after the call ends.
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub price_unit: Option<String>,
    /// RFC 2822 times.
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

/// The Twilio operations the service uses; `Arc<dyn TwilioApi>` in the state so tests could swap
/// the implementation (they use the real client against the fake server instead).
pub trait TwilioApi: Send + Sync {
    fn create_call<'a>(
        &'a self,
        call: &'a NewCall,
    ) -> BoxFuture<'a, Result<CallResource, TwilioError>>;
    fn fetch_call<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<CallResource, TwilioError>>;
    /// Voice Insights' call summary; `None` while there is none yet (404).
    fn call_summary<'a>(
        &'a self,
        sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, TwilioError>>;
}

/// The REST client.
pub struct TwilioClient {
    http: reqwest::Client,
    account_sid: String,
    auth_token: SecretString,
    api_base: String,
    insights_base: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioClient {
    pub fn new(config: &TwilioConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.timeout.min(Duration::from_secs(3)))
                .user_agent(concat!("switchboard-telephony/", env!("CARGO_PKG_VERSION")))
                .build()?,
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            api_base: config.api_base.clone(),
            insights_base: config.insights_base.clone(),
        })
    }

    fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls",
            self.api_base, self.account_sid
        )
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TwilioError> {
        let response = request
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|e| TwilioError::Unavailable(sb_platform::error::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_server_error() {
            return Err(TwilioError::Unavailable(format!("HTTP {status}")));
        }
        let text = response.text().await.unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        Err(TwilioError::Rejected {
            status: status.as_u16(),
            code: body.as_ref().and_then(|b| b.code).unwrap_or(0),
            message: body
                .and_then(|b| b.message)
                .unwrap_or_else(|| text.chars().take(200).collect()),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, TwilioError> {
        response
            .json()
            .await
            .map_err(|e| TwilioError::Unavailable(format!("unreadable answer: {e}")))
    }
}

impl TwilioApi for TwilioClient {
    fn create_call<'a>(
        &'a self,
        call: &'a NewCall,
    ) -> BoxFuture<'a, Result<CallResource, TwilioError>> {
        Box::pin(async move {
            let timeout = call.timeout_seconds.to_string();
            let form: Vec<(&str, &str)> = vec![
                ("To", call.to.as_str()),
                ("From", call.from.as_str()),
                ("Url", call.url.as_str()),
                ("Method", "POST"),
                ("StatusCallback", call.status_callback.as_str()),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
                ("Timeout", timeout.as_str()),
            ];
            let request = self
                .http
                .post(format!("{}.json", self.calls_url()))
                .form(&form);
            Self::json(self.send(request).await?).await
        })
    }

    fn fetch_call<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<CallResource, TwilioError>> {
        Box::pin(async move {
            let request = self.http.get(format!("{}/{sid}.json", self.calls_url()));
            Self::json(self.send(request).await?).await
        })
    }

    fn call_summary<'a>(
        &'a self,
        sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, TwilioError>> {
        Box::pin(async move {
            let request = self
                .http
                .get(format!("{}/v1/Voice/{sid}/Summary", self.insights_base))
                .query(&[("ProcessingState", "all")]);
            match self.send(request).await {
                Ok(response) => Self::json(response).await.map(Some),
                Err(TwilioError::Rejected { status: 404, .. }) => Ok(None),
                Err(error) => Err(error),
            }
        })
    }
}

/// The parameters of a webhook Twilio posted (form fields), in the order received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn parse_form(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }
}
