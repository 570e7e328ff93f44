//! Twilio Voice access tokens for the mobile apps' Voice SDK: an HS256 JWT signed with an API
//! key secret, `cty: twilio-fpa;v=1`, issued by the API key for the account, carrying the user's
//! identity and a voice grant (incoming calls allowed, outgoing calls through the TwiML app,
//! the push credential that turns incoming calls into CallKit/Telecom pushes).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Incoming {
    allow: bool,
}

#[derive(Debug, Serialize)]
struct Outgoing {
    application_sid: String,
}

#[derive(Debug, Serialize)]
struct VoiceGrant {
    incoming: Incoming,
    #[serde(skip_serializing_if = "Option::is_none")]
    outgoing: Option<Outgoing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_credential_sid: Option<String>,
}

#[derive(Debug, Serialize)]
struct Grants {
    identity: String,
    voice: VoiceGrant,
}

#[derive(Debug, Serialize)]
struct Claims {
    jti: String,
    iss: String,
    sub: String,
    iat: i64,
    exp: i64,
    grants: Grants,
}

/// What one token is made of.
#[derive(Debug, Clone)]
pub struct VoiceToken<'a> {
    pub account_sid: &'a str,
    pub api_key_sid: &'a str,
    pub api_key_secret: &'a SecretString,
    pub identity: &'a str,
    pub twiml_app_sid: Option<&'a str>,
    pub push_credential_sid: Option<&'a str>,
    pub ttl: Duration,
    /// Seconds since the Unix epoch.
    pub issued_at: i64,
}

/// Signs the token.
pub fn sign(token: &VoiceToken<'_>) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".to_owned());
    header.cty = Some("twilio-fpa;v=1".to_owned());
    let ttl = i64::try_from(token.ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        // The key and the second of issue, as the official libraries make it.
        jti: format!("{}-{}", token.api_key_sid, token.issued_at),
        iss: token.api_key_sid.to_owned(),
        sub: token.account_sid.to_owned(),
        iat: token.issued_at,
        exp: token.issued_at.saturating_add(ttl),
        grants: Grants {
            identity: token.identity.to_owned(),
            voice: VoiceGrant {
                incoming: Incoming { allow: true },
                outgoing: token.twiml_app_sid.map(|sid| Outgoing {
                    application_sid: sid.to_owned(),
                }),
                push_credential_sid: token.push_credential_sid.map(str::to_owned),
            },
        },
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(token.api_key_secret.expose_secret().as_bytes()),
    )
}
