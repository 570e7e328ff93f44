//! Calls (seed 001, steps 3, 5 and 6): click-to-call, history, details, quality.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::pagination::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::{self, access};
use crate::domain::followup::{FollowupKind, FollowupStatus};
use crate::domain::phone::E164;
use crate::domain::quality::Metrics;
use crate::domain::status::{CallStatus, Direction};
use crate::error::TelephonyError;
use crate::routes::JsonBody;
use crate::state::AppState;
use crate::store::calls::{self, Call, CallFilter};
use crate::store::followups;
use crate::store::recordings::{self, Recording};
use sb_platform::request::Query;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(initiate)
        .service(list_calls)
        .service(get_call)
        .service(get_quality)
        .service(post_quality)
        .service(play_recording)
        .service(delete_recording);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateBody {
    /// One of the caller's numbers (E.164), shown to the person called.
    #[schema(example = "+33123456789")]
    from: String,
    /// The number to call, in international form.
    #[schema(example = "+33987654321")]
    to: String,
    /// Record both parties on two channels (default: the number's setting).
    record: Option<bool>,
    /// The CRM appointment the call is for (shown in the call's events).
    appointment_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiateResponse {
    call_id: Uuid,
    /// Always `initiated`: the call exists, Twilio is ringing the caller's device.
    #[schema(example = "initiated")]
    status: String,
    /// Twilio's CallSid.
    sid: Option<String>,
}

/// `POST /api/calls/initiate`
#[utoipa::path(post, path = "/api/calls/initiate", tag = "calls",
    request_body = InitiateBody,
    responses(
        (status = 201, body = InitiateResponse, description = "Saved as INITIATED; Twilio rings the caller's app (or forward number), then dials `to` showing `from`"),
        (status = 400, description = "`invalid_phone_number` (field named) or a malformed body", content_type = "application/problem+json"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 403, description = "`number_not_owned`: `from` is not one of the caller's numbers", content_type = "application/problem+json"),
        (status = 409, description = "`no_device`: the number rings neither an app nor a forward number", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 422, description = "A refusal the caller can act on, with `field` and a detail saying what to do: `destination_blocked` (premium-rate range or an own number, before Twilio is asked), `invalid_destination` (21211, 21217), `destination_not_permitted` (21215, 21216), `caller_id_not_verified` (21210, 21212), `destination_unverified` (21219); Twilio's code in `twilioCode`", content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, with Retry-After", content_type = "application/problem+json"),
        (status = 502, description = "`provider_rejected`: another refusal of Twilio's, `twilioCode` says which", content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: Twilio did not answer, or stayed busy (429, 503) within `TWILIO_TIMEOUT`; the call is not failed", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/calls/initiate")]
async fn initiate(
    state: web::Data<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<InitiateBody>,
) -> Result<HttpResponse, TelephonyError> {
    let from = E164::parse(&body.from).map_err(|e| TelephonyError::phone("from", e))?;
    let to = E164::parse(&body.to).map_err(|e| TelephonyError::phone("to", e))?;
    let call = actions::calls::initiate(
        &state,
        &principal,
        actions::calls::Initiate {
            from,
            to,
            record: body.record,
            appointment_id: body.appointment_id,
        },
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/calls/{}", call.id)))
        .json(InitiateResponse {
            call_id: call.id,
            status: "initiated".to_owned(),
            sid: call.call_sid,
        }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    id: Uuid,
    /// Twilio's RecordingSid.
    sid: String,
    /// `VOICEMAIL` or `CALL` (a dual-channel recording of the conversation).
    kind: String,
    /// Twilio's status: in-progress, completed, absent, failed.
    status: String,
    /// Twilio's URL of the file: it needs the account's credentials, so clients play
    /// `mediaUrl` instead.
    url: Option<String>,
    /// Where to play it (an authenticated route streaming the MP3, with `Range`), once it is
    /// complete and until it is deleted.
    media_url: Option<String>,
    duration_seconds: Option<i32>,
    channels: Option<i32>,
    /// A voicemail's text, from Twilio's transcription (`transcriptionStatus`: completed or
    /// failed; absent until Twilio sends it).
    transcription: Option<String>,
    transcription_status: Option<String>,
    /// Set once deleted (here and at Twilio); nothing is left to play.
    deleted_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Recording> for RecordingView {
    fn from(r: Recording) -> Self {
        Self {
            id: r.id,
            sid: r.recording_sid,
            kind: r.kind.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            url: r.url,
            media_url: (r.deleted_at.is_none()
                && r.status == crate::domain::status::RecordingStatus::Completed)
                .then(|| format!("/api/calls/{}/recordings/{}/media", r.call_id, r.id)),
            duration_seconds: r.duration_seconds,
            channels: r.channels,
            transcription: r.transcription,
            transcription_status: r.transcription_status,
            deleted_at: r.deleted_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    id: Uuid,
    /// Twilio's CallSid (absent until Twilio confirms a call).
    sid: Option<String>,
    direction: Direction,
    status: CallStatus,
    from: String,
    to: String,
    /// The rep on the call.
    user_id: Option<Uuid>,
    team_id: Option<Uuid>,
    appointment_id: Option<Uuid>,
    initiated_at: Option<DateTime<Utc>>,
    ringing_at: Option<DateTime<Utc>>,
    /// When the call was answered (in-progress).
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// Twilio's duration of the call, seconds.
    duration_seconds: Option<i32>,
    /// Outcome of the `<Dial>`: completed, answered, busy, no-answer, failed, canceled.
    dial_status: Option<String>,
    /// How long the two parties were connected, seconds.
    talk_seconds: Option<i32>,
    /// The caller was offered voicemail.
    voicemail: bool,
    /// Recording was asked for this call (the request's `record`, else the number's
    /// `recordCalls`); it says nothing of whether a recording exists: the single call's view
    /// lists those in `recordings`.
    recorded: bool,
    /// Twilio's price (negative = charged), once Twilio has set it.
    price: Option<String>,
    price_unit: Option<String>,
    /// `KNOWN`, `PENDING` (the job asks Twilio until it sets one), `GAVE_UP`, or `NONE` (a call
    /// that was not charged). Only in a single call's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_status: Option<String>,
    /// The call's quality crossed a threshold.
    quality_degraded: bool,
    error_code: Option<i32>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recordings: Option<Vec<RecordingView>>,
}

impl From<Call> for CallView {
    fn from(call: Call) -> Self {
        Self {
            id: call.id,
            direction: call.direction,
            status: call.status,
            sid: call.call_sid,
            from: call.from_number,
            to: call.to_number,
            user_id: call.user_id,
            team_id: call.team_id,
            appointment_id: call.appointment_id,
            initiated_at: call.initiated_at,
            ringing_at: call.ringing_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            duration_seconds: call.duration_seconds,
            dial_status: call.dial_status,
            talk_seconds: call.talk_seconds,
            voicemail: call.voicemail,
            recorded: call.record,
            price: call.price,
            price_unit: call.price_unit,
            cost_status: None,
            quality_degraded: call.quality_degraded_at.is_some(),
            error_code: call.error_code,
            error_message: call.error_message,
            created_at: call.created_at,
            updated_at: call.updated_at,
            recordings: None,
        }
    }
}

/// `GET /api/calls`
#[utoipa::path(get, path = "/api/calls", tag = "calls",
    params(
        ("direction" = Option<Direction>, Query, description = "inbound or outbound"),
        ("status" = Option<CallStatus>, Query, description = "Our spelling or Twilio's (`in-progress`)"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Created at or after (RFC 3339 or YYYY-MM-DD)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Created before (RFC 3339 or YYYY-MM-DD)"),
        ("number" = Option<String>, Query, description = "Either party's number (E.164)"),
        ("userId" = Option<Uuid>, Query, description = "One rep's calls (within what the caller may see)"),
        ("orgId" = Option<Uuid>, Query, description = "ADMIN only: another org"),
        PageRequest),
    responses(
        (status = 200, body = Page<CallView>, description = "Calls the caller may see, newest first: reps their own, managers their teams', CEO and DIRECTOR the org's"),
        (status = 400, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/calls")]
async fn list_calls(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    page: PageRequest,
) -> Result<HttpResponse, TelephonyError> {
    let query = Query::parse(&req)?;
    let direction = query
        .get("direction")
        .map(|d| {
            d.parse::<Direction>()
                .map_err(|e| TelephonyError::invalid("direction", e))
        })
        .transpose()?;
    let status = query
        .get("status")
        .map(|s| {
            s.parse::<CallStatus>()
                .map_err(|e| TelephonyError::invalid("status", e))
        })
        .transpose()?;
    let from = query.time("from")?;
    let to = query.time("to")?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(TelephonyError::invalid("to", "must not be before from"));
    }
    let number = query
        .get("number")
        .map(|n| E164::parse(n).map_err(|e| TelephonyError::phone("number", e)))
        .transpose()?;
    let org = access::org_of(&principal, query.uuid("orgId")?)?;
    let filter = CallFilter {
        direction,
        status,
        from,
        to,
        number: number.map(E164::into_inner),
        user: query.uuid("userId")?,
    };
    let scope = access::scope(&principal, org);
    let mut conn = state.conn().await?;
    let (items, total) =
        calls::list(&mut conn, &scope, &filter, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(page.wrap(items, total).map(CallView::from)))
}

/// `GET /api/calls/{id}`
#[utoipa::path(get, path = "/api/calls/{id}", tag = "calls",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CallView, description = "The call with its recordings and voicemail"),
        (status = 403, description = "Same org, but neither the caller's call nor their teams'", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call (or another org's)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/calls/{id}")]
async fn get_call(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, TelephonyError> {
    let mut conn = state.conn().await?;
    let call = access::call(&mut conn, &principal, path.into_inner()).await?;
    let recordings = recordings::of_call(&mut conn, call.id).await?;
    let cost = followups::of_call(&mut conn, call.id)
        .await?
        .into_iter()
        .find(|f| f.kind == FollowupKind::Cost);
    let cost_status = match (&call.price, cost) {
        (Some(_), _) => "KNOWN",
        (None, Some(f)) if f.status == FollowupStatus::GaveUp => "GAVE_UP",
        (None, Some(_)) => "PENDING",
        (None, None) => "NONE",
    };
    let mut view = CallView::from(call);
    view.cost_status = Some(cost_status.to_owned());
    view.recordings = Some(recordings.into_iter().map(Into::into).collect());
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualityView {
    call_id: Uuid,
    /// Milliseconds.
    #[schema(example = 12.5)]
    jitter: Option<f64>,
    /// Milliseconds (round trip for the SDK, Twilio's edge latency for Insights).
    #[schema(example = 45.0)]
    latency: Option<f64>,
    /// Percent, 0–100.
    #[schema(example = 0.2)]
    packet_loss: Option<f64>,
    /// Mean opinion score, 1–5.
    #[schema(example = 4.2)]
    mos: Option<f64>,
    /// The MOS was estimated from latency, jitter and loss (E-model).
    mos_estimated: bool,
    #[schema(example = "opus")]
    codec: Option<String>,
    /// `insights` (Twilio Voice Insights' call summary), `sdk` (average of the app's samples),
    /// or absent while nothing is known.
    source: Option<String>,
    /// How many samples the app reported.
    samples: usize,
    /// A threshold was crossed (`sb.telephony.quality.degraded` was published).
    degraded: bool,
    measured_at: Option<DateTime<Utc>>,
}

impl QualityView {
    fn new(call_id: Uuid, summary: actions::quality::Summary) -> Self {
        Self {
            call_id,
            jitter: summary.metrics.jitter_ms,
            latency: summary.metrics.latency_ms,
            packet_loss: summary.metrics.packet_loss_percent,
            mos: summary.metrics.mos,
            mos_estimated: summary.metrics.mos_estimated,
            codec: summary.metrics.codec,
            source: summary.source.map(str::to_owned),
            samples: summary.samples,
            degraded: summary.degraded,
            measured_at: summary.measured_at,
        }
    }
}

/// `GET /api/calls/{id}/quality`
#[utoipa::path(get, path = "/api/calls/{id}/quality", tag = "calls",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = QualityView, description = "Jitter, latency, packet loss, MOS and codec of the call (nulls while nothing is known)"),
        (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/calls/{id}/quality")]
async fn get_quality(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, TelephonyError> {
    let id = path.into_inner();
    let summary = actions::quality::summary(&state, &principal, id).await?;
    Ok(HttpResponse::Ok().json(QualityView::new(id, summary)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QualitySample {
    /// Milliseconds.
    jitter: Option<f64>,
    /// Round-trip time, milliseconds.
    latency: Option<f64>,
    /// Percent, 0–100.
    packet_loss: Option<f64>,
    /// 1–5; estimated from the others when absent.
    mos: Option<f64>,
    codec: Option<String>,
    /// When the sample was taken (default: now).
    measured_at: Option<DateTime<Utc>>,
}

/// `POST /api/calls/{id}/quality`
#[utoipa::path(post, path = "/api/calls/{id}/quality", tag = "calls",
    params(("id" = Uuid, Path)),
    request_body = QualitySample,
    responses(
        (status = 201, body = QualityView, description = "Stored; the call's quality as it now stands"),
        (status = 400, description = "A metric out of range", content_type = "application/problem+json"),
        (status = 403, description = "Only the rep on the call reports its quality", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/calls/{id}/quality")]
async fn post_quality(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<QualitySample>,
) -> Result<HttpResponse, TelephonyError> {
    let id = path.into_inner();
    let metrics = Metrics {
        jitter_ms: body.jitter,
        latency_ms: body.latency,
        packet_loss_percent: body.packet_loss,
        mos: body.mos,
        mos_estimated: false,
        codec: body.codec,
    };
    let summary =
        actions::quality::report(&state, &principal, id, metrics, body.measured_at).await?;
    Ok(HttpResponse::Created().json(QualityView::new(id, summary)))
}

/// `GET /api/calls/{id}/recordings/{recordingId}/media`
#[utoipa::path(get, path = "/api/calls/{id}/recordings/{recordingId}/media", tag = "calls",
    params(
        ("id" = Uuid, Path),
        ("recordingId" = Uuid, Path),
        ("Range" = Option<String>, Header, description = "A byte range (`bytes=0-1023`), as players ask")),
    responses(
        (status = 200, content_type = "audio/mpeg", description = "The whole MP3, streamed from Twilio with the account's credentials (`Accept-Ranges: bytes`, `Content-Length`); one audit row per access"),
        (status = 206, content_type = "audio/mpeg", description = "The range asked (`Content-Range`)"),
        (status = 403, description = "Same org, but neither the caller's call nor their teams'", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call or recording (or another org's), or deleted", content_type = "application/problem+json"),
        (status = 409, description = "`recording_not_ready`: not complete (or failed)", content_type = "application/problem+json"),
        (status = 416, description = "The range is past the end"),
        (status = 503, description = "`provider_unavailable`: Twilio did not answer", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/calls/{id}/recordings/{recordingId}/media")]
async fn play_recording(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, TelephonyError> {
    let (call_id, recording_id) = path.into_inner();
    let range = req
        .headers()
        .get(actix_web::http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let media = actions::recordings::play(&state, &principal, call_id, recording_id, range).await?;
    let status = actix_web::http::StatusCode::from_u16(media.status)
        .map_err(|_| TelephonyError::ProviderUnavailable(format!("HTTP {}", media.status)))?;
    let mut response = HttpResponse::build(status);
    response
        .content_type(media.content_type.as_deref().unwrap_or("audio/mpeg"))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("Cache-Control", "private, no-store"));
    if let Some(content_range) = &media.content_range {
        response.insert_header(("Content-Range", content_range.as_str()));
    }
    if let Some(length) = media.content_length {
        response.no_chunking(length);
    }
    Ok(response.streaming(media.body))
}

/// `DELETE /api/calls/{id}/recordings/{recordingId}`
#[utoipa::path(delete, path = "/api/calls/{id}/recordings/{recordingId}", tag = "calls",
    params(("id" = Uuid, Path), ("recordingId" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted at Twilio and here (`sb.telephony.recording.deleted`, an audit row); deleting again answers 204 and changes nothing"),
        (status = 403, description = "Same org, but neither the caller's call nor their teams'", content_type = "application/problem+json"),
        (status = 404, description = "Unknown call or recording (or another org's)", content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: Twilio did not answer; nothing changed", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[delete("/api/calls/{id}/recordings/{recordingId}")]
async fn delete_recording(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, TelephonyError> {
    let (call_id, recording_id) = path.into_inner();
    actions::recordings::delete(&state, &principal, call_id, recording_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
