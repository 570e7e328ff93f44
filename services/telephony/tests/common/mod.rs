//! The telephony service as `sb_testkit::TestService` runs it (its test configuration and
//! build), Twilio's webhooks as Twilio signs them, numbers, and the forms Twilio posts.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a part of the harness"
)]

use std::time::Duration;

use sb_telephony::TelephonyConfig;
use sb_telephony::config::{FollowupConfig, RateLimitConfig, TwilioConfig, VoiceTokenConfig};
use sb_telephony::domain::quality::Thresholds;
use sb_testkit::{Answer, Deps, Result, Service};
use serde_json::Value;

pub use sb_testkit::TestUser as User;

/// Where Twilio believes the service is: signatures are computed over this, never the address
/// the test actually connects to (as behind a TLS-terminating gateway with a path prefix).
pub const PUBLIC_BASE_URL: &str = "https://voice.example.test/telephony";

pub const API_KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
pub const API_KEY_SECRET: &str = "telephony-test-api-key-secret-0123456789";
pub const TWIML_APP_SID: &str = "AP0123456789abcdef0123456789abcdef";
pub const PUSH_APNS: &str = "CR0123456789abcdef0123456789abcd01";
pub const PUSH_FCM: &str = "CR0123456789abcdef0123456789abcd02";

pub type TestTelephony = sb_testkit::TestService<Telephony>;

pub struct Telephony;

impl Service for Telephony {
    type Config = TelephonyConfig;
    type State = sb_telephony::AppState;

    fn config(deps: &Deps<'_>) -> TelephonyConfig {
        sb_testkit::service_config!(
            deps,
            TelephonyConfig {
                twilio: TwilioConfig {
                    account_sid: deps.twilio.account_sid.clone(),
                    auth_token: deps.twilio.auth_token.clone().into(),
                    api_base: deps.twilio.url(),
                    insights_base: deps.twilio.url(),
                    timeout: Duration::from_secs(2),
                    voice: VoiceTokenConfig {
                        api_key: Some((API_KEY_SID.to_owned(), API_KEY_SECRET.to_owned().into())),
                        twiml_app_sid: Some(TWIML_APP_SID.to_owned()),
                        push_credential_apns: Some(PUSH_APNS.to_owned()),
                        push_credential_fcm: Some(PUSH_FCM.to_owned()),
                        ttl: Duration::from_secs(3600),
                    },
                    insights_enabled: true,
                },
                public_base_url: PUBLIC_BASE_URL.to_owned(),
                rate_limit: RateLimitConfig {
                    calls: 10,
                    window: Duration::from_secs(60),
                },
                destinations: Default::default(),
                recording_retention: None,
                followup: FollowupConfig {
                    // Tests run passes themselves with `followup_once`, with no wait between attempts.
                    interval: Duration::from_secs(3600),
                    first_delay: Duration::ZERO,
                    cost_give_up_after: Duration::from_secs(6 * 3600),
                    quality_give_up_after: Duration::from_secs(3600),
                    stale_after: Duration::from_secs(15 * 60),
                },
                quality: Thresholds::default(),
            }
        )
    }

    fn name(_: &TelephonyConfig) -> &str {
        "telephony"
    }

    async fn build(config: TelephonyConfig) -> Result<sb_platform::Application> {
        Ok(sb_telephony::build(config).await?)
    }

    async fn state(config: TelephonyConfig) -> Result<sb_telephony::AppState> {
        Ok(sb_telephony::state_for_tests(config)?)
    }
}

/// What telephony's tests do besides requests: Twilio's webhooks, numbers.
pub trait Telephone {
    /// Posts a webhook to `path_and_query` signed like Twilio signs it for the public URL.
    async fn webhook(&self, path_and_query: &str, form: &[(String, String)]) -> Result<Answer>;
    /// Posts a webhook with the given signature header (or none).
    async fn webhook_signed(
        &self,
        path_and_query: &str,
        form: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<Answer>;
    /// Assigns `e164` to its owner (the org leader `admin` does it), with `settings` on top of
    /// the defaults.
    async fn number(&self, admin: &User, e164: &str, settings: Value) -> Result<Value>;
}

impl Telephone for TestTelephony {
    async fn webhook(&self, path_and_query: &str, form: &[(String, String)]) -> Result<Answer> {
        self.twilio_webhook(PUBLIC_BASE_URL, path_and_query, form)
            .await
    }

    async fn webhook_signed(
        &self,
        path_and_query: &str,
        form: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<Answer> {
        self.app
            .twilio_webhook(path_and_query, form, signature)
            .await
    }

    async fn number(&self, admin: &User, e164: &str, settings: Value) -> Result<Value> {
        let answer = self
            .put(admin, &format!("/api/numbers/{e164}"), &settings)
            .await?;
        assert!(
            answer.status == 200 || answer.status == 201,
            "PUT number: {} {}",
            answer.status,
            answer.text
        );
        Ok(answer.body)
    }
}

/// The Voice SDK identity of a user (`<Client>`).
pub trait VoiceIdentity {
    fn identity(&self) -> String;
}

impl VoiceIdentity for User {
    fn identity(&self) -> String {
        format!("u_{}", self.id.simple())
    }
}

pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A fresh CallSid.
pub fn call_sid() -> String {
    sb_testkit::twilio_sid("CA")
}

/// The form of Twilio's request to a number's voice URL.
pub fn inbound_form(sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
    params(&[
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", from),
        ("Direction", "inbound"),
        ("From", from),
        ("FromCountry", "FR"),
        ("To", to),
        ("ToCountry", "FR"),
    ])
}
