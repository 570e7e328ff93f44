//! LiveKit webhook verification: the `Authorization` header is a JWT signed with the API secret
//! whose `sha256` claim is the base64 SHA-256 of the raw body.

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol::WebhookEvent;

use crate::config::LiveKitConfig;

/// Largest webhook body accepted; LiveKit events are a few kilobytes.
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing Authorization header")]
    MissingSignature,
    #[error("webhook body is larger than {MAX_WEBHOOK_BYTES} bytes")]
    TooLarge,
    #[error("webhook body is not UTF-8")]
    NotUtf8,
    #[error("webhook signature is not valid: {0}")]
    Invalid(String),
}

pub struct WebhookVerifier {
    receiver: WebhookReceiver,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookVerifier")
    }
}

impl WebhookVerifier {
    pub fn new(config: &LiveKitConfig) -> Self {
        Self {
            receiver: WebhookReceiver::new(TokenVerifier::with_api_key(
                &config.api_key,
                config.secret(),
            )),
        }
    }

    /// Verifies the signature over the exact bytes received, then decodes the event. The
    /// header is used as sent: LiveKit puts the bare JWT there (no `Bearer`), but a `Bearer `
    /// prefix added by a proxy is tolerated.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookEvent, WebhookError> {
        let authorization = authorization
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or(WebhookError::MissingSignature)?;
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or(authorization);
        if body.len() > MAX_WEBHOOK_BYTES {
            return Err(WebhookError::TooLarge);
        }
        let body = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
        self.receiver
            .receive(body, token)
            .map_err(|e| WebhookError::Invalid(e.to_string()))
    }
}
