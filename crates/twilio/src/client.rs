//! Twilio's REST API (Calls and Voice Insights) over reqwest, with base URLs configurable so
//! tests use the fake in testkit, and Twilio's error bodies as typed errors.

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Twilio's error codes the service treats specially.
pub mod codes {
    /// The `To` number is not a valid phone number.
    pub const INVALID_TO: i64 = 21211;
    /// The `From` number is not a valid, SMS/voice-capable number of the account.
    pub const INVALID_FROM: i64 = 21212;
    /// The caller id (`From`) is not verified for the account.
    pub const CALLER_ID_NOT_VERIFIED: i64 = 21210;
    /// The account has no permission to call this country or region (geo permissions).
    pub const GEO_PERMISSION: i64 = 21215;
    /// The account may not call this number (blocked or premium destination).
    pub const NUMBER_NOT_ALLOWED: i64 = 21216;
    /// The number does not look like a valid phone number.
    pub const NOT_A_PHONE_NUMBER: i64 = 21217;
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
    /// HTTP 429 (code 20429) or 503: Twilio turned the request away before acting on it, so it
    /// may be sent again, even one that creates something.
    #[error("Twilio is busy: {0}")]
    Busy(String),
    /// No answer, a timeout, or another 5xx: the request may or may not have been acted on.
    #[error("Twilio is unavailable: {0}")]
    Unavailable(String),
}

impl TwilioError {
    pub fn code(&self) -> Option<i64> {
        match self {
            TwilioError::Rejected { code, .. } => Some(*code),
            TwilioError::Busy(_) | TwilioError::Unavailable(_) => None,
        }
    }

    /// Whether trying again later may succeed (Twilio busy or unreachable, not a refusal).
    pub fn is_transient(&self) -> bool {
        !matches!(self, TwilioError::Rejected { .. })
    }

    /// Whether sending the same request again cannot act twice: Twilio said it did not act.
    pub fn is_safe_to_resend(&self) -> bool {
        matches!(self, TwilioError::Busy(_))
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

/// A participant to add to a conference (Participants API): a customer or rep being rung, or a
/// supervisor joining (`muted` to listen; `coaching` + `call_sid_to_coach` to coach).
#[derive(Debug, Clone, Default)]
pub struct NewParticipant {
    pub from: String,
    /// An E.164 number or `client:<identity>`.
    pub to: String,
    /// Our name for the leg (`customer`, `rep`, `supervisor_<session>`): Twilio lets it stand
    /// for the CallSid, so asking again finds the leg already added.
    pub label: String,
    pub muted: bool,
    pub coaching: bool,
    pub call_sid_to_coach: Option<String>,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub early_media: bool,
    pub timeout_seconds: u32,
    /// The participant's call status callback (initiated, ringing, answered, completed).
    pub status_callback: String,
}

/// What a supervisor's leg changes to (`POST …/Participants/{CallSid}.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantChanges {
    pub muted: bool,
    pub coaching: bool,
    pub call_sid_to_coach: Option<String>,
}

/// A conference participant as Twilio answers it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ParticipantResource {
    pub call_sid: String,
    #[serde(default)]
    pub conference_sid: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub muted: bool,
    #[serde(default)]
    pub coaching: bool,
    #[serde(default)]
    pub call_sid_to_coach: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A change to a live call (`POST …/Calls/{sid}.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// Run the TwiML at this URL instead (`Url`, POST).
    Redirect(String),
    /// Hang up (`Status=completed`).
    Hangup,
}

/// A recording's media as Twilio serves it: the status (200, or 206 for a range), the headers a
/// player needs, and the bytes as they arrive.
pub struct Media {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    pub body: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, TwilioError>>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .field("content_range", &self.content_range)
            .finish_non_exhaustive()
    }
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
    /// A recording's MP3 with the account's credentials, `range` passed on as the `Range`
    /// header; `None` when Twilio has no such recording (404).
    fn recording_media<'a>(
        &'a self,
        sid: &'a str,
        range: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Media>, TwilioError>>;
    /// Deletes a recording at Twilio; one already gone counts as deleted.
    fn delete_recording<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), TwilioError>>;
    /// Redirects or hangs up a live call.
    fn update_call<'a>(
        &'a self,
        sid: &'a str,
        update: &'a CallUpdate,
    ) -> BoxFuture<'a, Result<CallResource, TwilioError>>;
    /// Adds a participant to `conference` (its SID, or its friendly name: Twilio then creates
    /// the conference when it does not exist yet).
    fn create_participant<'a>(
        &'a self,
        conference: &'a str,
        participant: &'a NewParticipant,
    ) -> BoxFuture<'a, Result<ParticipantResource, TwilioError>>;
    /// The participant `call` (its CallSid or label) of conference `conference_sid`; `None`
    /// when Twilio has none.
    fn fetch_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
    ) -> BoxFuture<'a, Result<Option<ParticipantResource>, TwilioError>>;
    fn update_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
        changes: &'a ParticipantChanges,
    ) -> BoxFuture<'a, Result<ParticipantResource, TwilioError>>;
    /// Removes the participant (hangs up its leg); one already gone is not an error.
    fn remove_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
    ) -> BoxFuture<'a, Result<(), TwilioError>>;
}

/// Where and as whom the client calls Twilio.
#[derive(Clone)]
pub struct Account {
    pub account_sid: String,
    pub auth_token: SecretString,
    /// REST API root (`https://api.twilio.com`; the fake's address in tests).
    pub api_base: String,
    /// Voice Insights API root (`https://insights.twilio.com`).
    pub insights_base: String,
    /// Longest wait for one API call.
    pub timeout: Duration,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("api_base", &self.api_base)
            .field("insights_base", &self.insights_base)
            .field("timeout", &self.timeout)
            .finish()
    }
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
    pub fn new(account: Account) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(account.timeout)
                .connect_timeout(account.timeout.min(Duration::from_secs(3)))
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
                .build()?,
            account_sid: account.account_sid,
            auth_token: account.auth_token,
            api_base: account.api_base,
            insights_base: account.insights_base,
        })
    }

    /// A recording's resource, without extension (`.mp3` the media, `.json` the resource).
    fn recording_url(&self, sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Recordings/{sid}",
            self.api_base, self.account_sid
        )
    }

    fn participants_url(&self, conference: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Conferences/{}/Participants",
            self.api_base,
            self.account_sid,
            url_segment(conference)
        )
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
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(TwilioError::Busy(format!("HTTP {status}")));
        }
        if status.is_server_error() {
            return Err(TwilioError::Unavailable(format!("HTTP {status}")));
        }
        let text = response.text().await.unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let code = body.as_ref().and_then(|b| b.code).unwrap_or(0);
        let message = body
            .and_then(|b| b.message)
            .unwrap_or_else(|| text.chars().take(200).collect());
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || code == codes::TOO_MANY_REQUESTS {
            return Err(TwilioError::Busy(format!("{code} {message}")));
        }
        Err(TwilioError::Rejected {
            status: status.as_u16(),
            code,
            message,
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

    fn recording_media<'a>(
        &'a self,
        sid: &'a str,
        range: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Media>, TwilioError>> {
        Box::pin(async move {
            let mut request = self.http.get(format!("{}.mp3", self.recording_url(sid)));
            if let Some(range) = range {
                request = request.header(reqwest::header::RANGE, range);
            }
            let response = match self.send(request).await {
                Ok(response) => response,
                Err(TwilioError::Rejected { status: 404, .. }) => return Ok(None),
                // A range past the end is the player's mistake, passed on as such.
                Err(TwilioError::Rejected { status: 416, .. }) => {
                    return Ok(Some(Media {
                        status: 416,
                        content_type: None,
                        content_length: Some(0),
                        content_range: None,
                        body: Box::pin(futures_util::stream::empty()),
                    }));
                }
                Err(error) => return Err(error),
            };
            let header = |name: reqwest::header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header(reqwest::header::CONTENT_TYPE);
            let content_range = header(reqwest::header::CONTENT_RANGE);
            let content_length = response.content_length();
            let status = response.status().as_u16();
            let body = futures_util::stream::unfold(Some(response), |response| async move {
                let mut response = response?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(TwilioError::Unavailable(sb_platform::error::error_chain(
                            &e,
                        ))),
                        None,
                    )),
                }
            });
            Ok(Some(Media {
                status,
                content_type,
                content_length,
                content_range,
                body: Box::pin(body),
            }))
        })
    }

    fn delete_recording<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), TwilioError>> {
        Box::pin(async move {
            let request = self
                .http
                .delete(format!("{}.json", self.recording_url(sid)));
            match self.send(request).await {
                Ok(_) | Err(TwilioError::Rejected { status: 404, .. }) => Ok(()),
                Err(error) => Err(error),
            }
        })
    }

    fn update_call<'a>(
        &'a self,
        sid: &'a str,
        update: &'a CallUpdate,
    ) -> BoxFuture<'a, Result<CallResource, TwilioError>> {
        Box::pin(async move {
            let form: Vec<(&str, &str)> = match update {
                CallUpdate::Redirect(url) => vec![("Url", url.as_str()), ("Method", "POST")],
                CallUpdate::Hangup => vec![("Status", "completed")],
            };
            let request = self
                .http
                .post(format!("{}/{}.json", self.calls_url(), url_segment(sid)))
                .form(&form);
            Self::json(self.send(request).await?).await
        })
    }

    fn create_participant<'a>(
        &'a self,
        conference: &'a str,
        participant: &'a NewParticipant,
    ) -> BoxFuture<'a, Result<ParticipantResource, TwilioError>> {
        Box::pin(async move {
            let flag = |b: bool| if b { "true" } else { "false" };
            let timeout = participant.timeout_seconds.to_string();
            let mut form: Vec<(&str, &str)> = vec![
                ("From", participant.from.as_str()),
                ("To", participant.to.as_str()),
                ("Label", participant.label.as_str()),
                ("Muted", flag(participant.muted)),
                ("Beep", "false"),
                (
                    "StartConferenceOnEnter",
                    flag(participant.start_conference_on_enter),
                ),
                (
                    "EndConferenceOnExit",
                    flag(participant.end_conference_on_exit),
                ),
                ("EarlyMedia", flag(participant.early_media)),
                ("Timeout", timeout.as_str()),
                ("StatusCallback", participant.status_callback.as_str()),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
            ];
            if participant.coaching {
                form.push(("Coaching", "true"));
            }
            if let Some(sid) = &participant.call_sid_to_coach {
                form.push(("CallSidToCoach", sid.as_str()));
            }
            let request = self
                .http
                .post(format!("{}.json", self.participants_url(conference)))
                .form(&form);
            Self::json(self.send(request).await?).await
        })
    }

    fn fetch_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
    ) -> BoxFuture<'a, Result<Option<ParticipantResource>, TwilioError>> {
        Box::pin(async move {
            let request = self.http.get(format!(
                "{}/{}.json",
                self.participants_url(conference_sid),
                url_segment(call)
            ));
            match self.send(request).await {
                Ok(response) => Self::json(response).await.map(Some),
                Err(TwilioError::Rejected { status: 404, .. }) => Ok(None),
                Err(error) => Err(error),
            }
        })
    }

    fn update_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
        changes: &'a ParticipantChanges,
    ) -> BoxFuture<'a, Result<ParticipantResource, TwilioError>> {
        Box::pin(async move {
            let flag = |b: bool| if b { "true" } else { "false" };
            let mut form: Vec<(&str, &str)> = vec![
                ("Muted", flag(changes.muted)),
                ("Coaching", flag(changes.coaching)),
            ];
            if let Some(sid) = &changes.call_sid_to_coach {
                form.push(("CallSidToCoach", sid.as_str()));
            }
            let request = self
                .http
                .post(format!(
                    "{}/{}.json",
                    self.participants_url(conference_sid),
                    url_segment(call)
                ))
                .form(&form);
            Self::json(self.send(request).await?).await
        })
    }

    fn remove_participant<'a>(
        &'a self,
        conference_sid: &'a str,
        call: &'a str,
    ) -> BoxFuture<'a, Result<(), TwilioError>> {
        Box::pin(async move {
            let request = self.http.delete(format!(
                "{}/{}.json",
                self.participants_url(conference_sid),
                url_segment(call)
            ));
            match self.send(request).await {
                Ok(_) | Err(TwilioError::Rejected { status: 404, .. }) => Ok(()),
                Err(error) => Err(error),
            }
        })
    }
}

/// A path segment of a Twilio URL: names and labels we choose are `[A-Za-z0-9_]`, anything
/// else is percent-encoded so it cannot reach another resource.
fn url_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
