//! Access tokens for LiveKit participants, signed with the API key and secret.

use std::time::Duration;

use livekit_api::access_token::AccessToken;

use crate::config::LiveKitConfig;
use crate::grants::Preset;

#[derive(Debug, thiserror::Error)]
#[error("cannot sign a LiveKit token: {0}")]
pub struct TokenError(String);

/// A token and what a client needs to connect with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantToken {
    pub token: String,
    pub server_url: String,
    pub room: String,
    pub identity: String,
}

/// Signs participant tokens. Identities must carry no personal data (an opaque id, not an email).
#[derive(Clone, Debug)]
pub struct TokenIssuer {
    config: LiveKitConfig,
}

impl TokenIssuer {
    pub fn new(config: LiveKitConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &LiveKitConfig {
        &self.config
    }

    /// A token for `identity` (display `name`) in `room` with `preset`'s grants, valid for `ttl`
    /// (the configured default when `None`).
    pub fn issue(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        preset: Preset,
        ttl: Option<Duration>,
        metadata: Option<&str>,
    ) -> Result<ParticipantToken, TokenError> {
        let mut token = AccessToken::with_api_key(&self.config.api_key, self.config.secret())
            .with_identity(identity)
            .with_name(name)
            .with_ttl(ttl.unwrap_or(self.config.token_ttl))
            .with_grants(preset.grants(room));
        if let Some(metadata) = metadata {
            token = token.with_metadata(metadata);
        }
        let token = token.to_jwt().map_err(|e| TokenError(e.to_string()))?;
        Ok(ParticipantToken {
            token,
            server_url: self.config.url.clone(),
            room: room.to_owned(),
            identity: identity.to_owned(),
        })
    }

    /// A short-lived token for the backend's own server API calls about `room`.
    pub fn server_token(&self, room: &str) -> Result<String, TokenError> {
        AccessToken::with_api_key(&self.config.api_key, self.config.secret())
            .with_ttl(Duration::from_secs(60))
            .with_grants(Preset::server(room))
            .to_jwt()
            .map_err(|e| TokenError(e.to_string()))
    }
}
