//! `GET /api/voice/token`: Twilio Voice access tokens for the mobile apps (the seed's phase 2).

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::domain::phone;
use crate::error::TelephonyError;
use crate::state::AppState;
use sb_platform::request::Query;
use sb_twilio::token::{self, VoiceToken};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(voice_token);
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceTokenView {
    /// The access token to give the Voice SDK (`TwilioVoiceSDK.register`, `Voice.connect`).
    token: String,
    /// The identity incoming calls ring (`<Client>`): `u_<user id>`.
    identity: String,
    ttl_seconds: u64,
    expires_at: DateTime<Utc>,
}

/// `GET /api/voice/token`
#[utoipa::path(get, path = "/api/voice/token", tag = "voice",
    params(("platform" = Option<String>, Query, description = "`ios` (CallKit, APNs push credential) or `android` (Telecom, FCM push credential)")),
    responses(
        (status = 200, body = VoiceTokenView, description = "An access token with a voice grant: incoming calls allowed for the caller's identity, outgoing calls through the TwiML app"),
        (status = 400, description = "Unknown platform", content_type = "application/problem+json"),
        (status = 503, description = "`voice_tokens_unavailable`: no Twilio API key configured", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/voice/token")]
async fn voice_token(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, TelephonyError> {
    let voice = &state.config.twilio.voice;
    let push_credential = match Query::parse(&req)?.get("platform") {
        None => None,
        Some("ios") => voice.push_credential_apns.as_deref(),
        Some("android") => voice.push_credential_fcm.as_deref(),
        Some(_) => {
            return Err(TelephonyError::invalid(
                "platform",
                "expected ios or android",
            ));
        }
    };
    let (key_sid, key_secret) = voice
        .api_key
        .as_ref()
        .ok_or(TelephonyError::VoiceTokensUnavailable)?;
    let identity = phone::client_identity(principal.user_id.as_uuid());
    let now = Utc::now();
    let token = token::sign(&VoiceToken {
        account_sid: &state.config.twilio.account_sid,
        api_key_sid: key_sid,
        api_key_secret: key_secret,
        identity: &identity,
        twiml_app_sid: voice.twiml_app_sid.as_deref(),
        push_credential_sid: push_credential,
        ttl: voice.ttl,
        issued_at: now.timestamp(),
    })
    .map_err(TelephonyError::internal)?;
    let ttl = chrono::Duration::from_std(voice.ttl).unwrap_or(chrono::Duration::MAX);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(VoiceTokenView {
            token,
            identity,
            ttl_seconds: voice.ttl.as_secs(),
            expires_at: now + ttl,
        }))
}
