//! The org's Twilio numbers: who they belong to and where their calls ring.

use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::pagination::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions;
use crate::domain::phone::E164;
use crate::error::TelephonyError;
use crate::routes::OptionalJson;
use crate::state::AppState;
use crate::store::numbers::{NumberSettings, PhoneNumber};
use sb_platform::request::Query;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_numbers)
        .service(put_number)
        .service(get_number)
        .service(delete_number);
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NumberBody {
    /// The rep the number belongs to: `from` of their calls, rung on inbound calls.
    owner_user_id: Option<Uuid>,
    /// The owner's team (managers see the number's calls).
    team_id: Option<Uuid>,
    /// Ring the owner's app (`<Client>`, CallKit/Telecom pushes). Default true.
    ring_app: Option<bool>,
    /// Also ring this number (E.164), e.g. the rep's mobile.
    forward_to: Option<String>,
    /// Said before ringing (default: the language's "connecting" message).
    #[schema(max_length = 500)]
    greeting: Option<String>,
    /// Said before the voicemail beep.
    #[schema(max_length = 500)]
    voicemail_greeting: Option<String>,
    /// Language of `<Say>` (BCP 47). Default en-US.
    #[schema(example = "fr-FR")]
    language: Option<String>,
    /// Twilio voice of `<Say>` (`alice`, `Polly.Lea`…). Default alice.
    voice: Option<String>,
    /// How long the owner's devices ring before voicemail, 5–600 s. Default 30.
    ring_timeout_seconds: Option<i32>,
    /// Record outbound calls from this number (dual channel). Default false.
    record_calls: Option<bool>,
}

fn text(field: &'static str, value: Option<String>) -> Result<Option<String>, TelephonyError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > 500 || value.chars().any(char::is_control) {
        return Err(TelephonyError::invalid(
            field,
            "must be at most 500 characters, without control characters",
        ));
    }
    Ok(Some(value))
}

impl NumberBody {
    fn settings(self) -> Result<NumberSettings, TelephonyError> {
        let forward_to = self
            .forward_to
            .filter(|f| !f.trim().is_empty())
            .map(|f| E164::parse(&f).map_err(|e| TelephonyError::phone("forwardTo", e)))
            .transpose()?;
        let language = self.language.unwrap_or_else(|| "en-US".to_owned());
        let mut parts = language.split('-');
        let primary_ok = parts.next().is_some_and(|p| {
            (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_lowercase())
        });
        let rest_ok = parts
            .all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if !(primary_ok && rest_ok) {
            return Err(TelephonyError::invalid(
                "language",
                "expected a BCP 47 tag such as fr-FR",
            ));
        }
        let voice = self.voice.unwrap_or_else(|| "alice".to_owned());
        if voice.is_empty()
            || voice.len() > 64
            || !voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(TelephonyError::invalid(
                "voice",
                "expected a Twilio voice name such as alice or Polly.Lea",
            ));
        }
        let ring_timeout_seconds = self.ring_timeout_seconds.unwrap_or(30);
        if !(5..=600).contains(&ring_timeout_seconds) {
            return Err(TelephonyError::invalid(
                "ringTimeoutSeconds",
                "must be from 5 to 600",
            ));
        }
        Ok(NumberSettings {
            owner_user_id: self.owner_user_id,
            team_id: self.team_id,
            ring_app: self.ring_app.unwrap_or(true),
            forward_to: forward_to.map(E164::into_inner),
            greeting: text("greeting", self.greeting)?,
            voicemail_greeting: text("voicemailGreeting", self.voicemail_greeting)?,
            language,
            voice,
            ring_timeout_seconds,
            record_calls: self.record_calls.unwrap_or(false),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberView {
    id: Uuid,
    org_id: Uuid,
    #[schema(example = "+33123456789")]
    e164: String,
    owner_user_id: Option<Uuid>,
    team_id: Option<Uuid>,
    ring_app: bool,
    forward_to: Option<String>,
    greeting: Option<String>,
    voicemail_greeting: Option<String>,
    language: String,
    voice: String,
    ring_timeout_seconds: i32,
    record_calls: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PhoneNumber> for NumberView {
    fn from(n: PhoneNumber) -> Self {
        Self {
            id: n.id,
            org_id: n.org_id,
            e164: n.e164,
            owner_user_id: n.owner_user_id,
            team_id: n.team_id,
            ring_app: n.ring_app,
            forward_to: n.forward_to,
            greeting: n.greeting,
            voicemail_greeting: n.voicemail_greeting,
            language: n.language,
            voice: n.voice,
            ring_timeout_seconds: n.ring_timeout_seconds,
            record_calls: n.record_calls,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

fn number_path(raw: &str) -> Result<E164, TelephonyError> {
    E164::parse(raw).map_err(|e| TelephonyError::phone("e164", e))
}

/// `GET /api/numbers`
#[utoipa::path(get, path = "/api/numbers", tag = "numbers",
    params(("orgId" = Option<Uuid>, Query, description = "ADMIN only: another org"), PageRequest),
    responses(
        (status = 200, body = Page<NumberView>, description = "CEO, DIRECTOR, ADMIN: the org's numbers; everyone else: their own (the `from` they may call with); by number"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/numbers")]
async fn list_numbers(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    page: PageRequest,
) -> Result<HttpResponse, TelephonyError> {
    let org = Query::parse(&req)?.uuid("orgId")?;
    let numbers = actions::numbers::list(&state, &principal, org, page).await?;
    Ok(HttpResponse::Ok().json(numbers.map(NumberView::from)))
}

/// `PUT /api/numbers/{e164}`
#[utoipa::path(put, path = "/api/numbers/{e164}", tag = "numbers",
    params(("e164" = String, Path, description = "The Twilio number, E.164 (`+33123456789`, or `%2B33123456789`)"),
        ("orgId" = Option<Uuid>, Query, description = "ADMIN only: the org the number belongs to")),
    request_body(content = Option<NumberBody>, description = "Every setting; absent ones take their defaults"),
    responses(
        (status = 200, body = NumberView, description = "Replaced"),
        (status = 201, body = NumberView, description = "Created"),
        (status = 400, description = "`invalid_phone_number` or an invalid setting", content_type = "application/problem+json"),
        (status = 403, description = "Only CEO, DIRECTOR, ADMIN", content_type = "application/problem+json"),
        (status = 409, description = "`number_taken`: another org has this number", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[put("/api/numbers/{e164}")]
async fn put_number(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    OptionalJson(body): OptionalJson<NumberBody>,
) -> Result<HttpResponse, TelephonyError> {
    let e164 = number_path(&path)?;
    let org = Query::parse(&req)?.uuid("orgId")?;
    let (number, created) =
        actions::numbers::put(&state, &principal, org, &e164, body.settings()?).await?;
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(NumberView::from(number)))
}

/// `GET /api/numbers/{e164}`
#[utoipa::path(get, path = "/api/numbers/{e164}", tag = "numbers",
    params(("e164" = String, Path), ("orgId" = Option<Uuid>, Query, description = "ADMIN only")),
    responses(
        (status = 200, body = NumberView),
        (status = 403, description = "Neither an org leader nor the number's owner", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/numbers/{e164}")]
async fn get_number(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, TelephonyError> {
    let e164 = number_path(&path)?;
    let org = Query::parse(&req)?.uuid("orgId")?;
    let number = actions::numbers::get(&state, &principal, org, &e164).await?;
    Ok(HttpResponse::Ok().json(NumberView::from(number)))
}

/// `DELETE /api/numbers/{e164}`
#[utoipa::path(delete, path = "/api/numbers/{e164}", tag = "numbers",
    params(("e164" = String, Path), ("orgId" = Option<Uuid>, Query, description = "ADMIN only")),
    responses(
        (status = 204, description = "Removed; its calls keep their history"),
        (status = 403, description = "Only CEO, DIRECTOR, ADMIN", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[delete("/api/numbers/{e164}")]
async fn delete_number(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, TelephonyError> {
    let e164 = number_path(&path)?;
    let org = Query::parse(&req)?.uuid("orgId")?;
    actions::numbers::delete(&state, &principal, org, &e164).await?;
    Ok(HttpResponse::NoContent().finish())
}
