//! Appointment calls (seed 000): join, start, stop, read, list, statistics.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_db::models::Appointment;
use sb_platform::ApiErrorExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::{self, access};
use crate::domain::call::{CallStatus, DisplayName, RecordingStatus};
use crate::domain::stats::{self, CallSample, CallStats};
use crate::error::VideoError;
use crate::routes::OptionalJson;
use crate::state::AppState;
use crate::store::calls::{self, Call, CallFilter, Participant};
use crate::store::recordings::{self, Recording};
use sb_platform::Problem;
use sb_platform::pagination::{Page, PageRequest};
use sb_platform::request::Query;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    // `/calls/stats` before `/calls/{id}`, which would otherwise take "stats" as an id.
    cfg.service(call_stats)
        .service(join_appointment_call)
        .service(list_calls)
        .service(get_call)
        .service(start_call)
        .service(stop_call);
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinBody {
    /// Shown to the other participants; trimmed, 1–100 characters. Defaults to the name in
    /// the caller's JWT.
    #[schema(max_length = 100)]
    display_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadView {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    id: Uuid,
    lead: LeadView,
    /// The appointment's host (the closer).
    closer: UserRef,
    scheduled_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    status: String,
}

impl From<&Appointment> for AppointmentView {
    fn from(a: &Appointment) -> Self {
        let lead = a.lead();
        Self {
            id: a.id,
            lead: LeadView {
                name: lead.name,
                phone: lead.phone,
                email: lead.email,
            },
            closer: UserRef { id: a.host_user_id },
            scheduled_at: a.scheduled_at,
            ends_at: a.ends_at,
            status: a.status.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantView {
    id: Uuid,
    user_id: Option<Uuid>,
    identity: String,
    role: String,
    display_name: String,
    is_host: bool,
    is_guest: bool,
    /// Connected now (as far as the API and LiveKit's webhooks say).
    active: bool,
    joined_at: Option<DateTime<Utc>>,
    left_at: Option<DateTime<Utc>>,
    total_seconds: i32,
}

impl From<Participant> for ParticipantView {
    fn from(p: Participant) -> Self {
        Self {
            id: p.id,
            user_id: p.user_id,
            identity: p.identity,
            role: p.role,
            display_name: p.display_name,
            is_host: p.is_host,
            is_guest: p.is_guest,
            active: p.active,
            joined_at: p.joined_at,
            left_at: p.left_at,
            total_seconds: p.total_seconds,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    id: Uuid,
    egress_id: String,
    status: String,
    /// The file LiveKit was asked to write.
    filepath: String,
    location: Option<String>,
    duration_seconds: Option<i64>,
    size_bytes: Option<i64>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

impl From<Recording> for RecordingView {
    fn from(r: Recording) -> Self {
        Self {
            id: r.id,
            egress_id: r.egress_id,
            status: r.status.as_str().to_owned(),
            filepath: r.filepath,
            location: r.location,
            duration_seconds: r.duration_seconds,
            size_bytes: r.size_bytes,
            error: r.error,
            started_at: r.started_at,
            ended_at: r.ended_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    id: Uuid,
    appointment_id: Uuid,
    status: CallStatus,
    room_name: String,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// Once ended: the seconds of all its segments (a resumed call does not count the gaps).
    duration_seconds: Option<i32>,
    end_reason: Option<String>,
    /// How many times the call was joined again after it had completed (within its
    /// appointment's window).
    resumed_count: i32,
    /// True while the call is being recorded: clients show a consent notice.
    recording: bool,
    recording_status: RecordingStatus,
    recording_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    recording_data: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appointment: Option<AppointmentView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<ParticipantView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recordings: Option<Vec<RecordingView>>,
}

impl CallView {
    fn summary(call: Call) -> Result<Self, VideoError> {
        let recording_status = call.recording_status;
        Ok(Self {
            id: call.id,
            appointment_id: call.appointment_id,
            status: call.status,
            room_name: call.room_name,
            started_at: call.started_at,
            ended_at: call.ended_at,
            duration_seconds: call.duration_seconds,
            end_reason: call.end_reason,
            resumed_count: call.resumed_count,
            recording: recording_status.is_recording(),
            recording_status,
            recording_url: call.recording_url,
            recording_data: call.recording_data,
            created_at: call.created_at,
            appointment: None,
            participants: None,
            recordings: None,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    call_id: Uuid,
    room_name: String,
    /// LiveKit access token for this participant (short-lived).
    token: String,
    livekit_url: String,
    /// Whether the call is being recorded: show the consent notice.
    recording: bool,
    status: CallStatus,
    appointment: AppointmentView,
    participant: ParticipantView,
}

/// `POST /calls/appointments/{appointmentId}/join`
#[utoipa::path(post, path = "/calls/appointments/{appointmentId}/join", tag = "calls",
    params(("appointmentId" = Uuid, Path, description = "CRM appointment id")),
    request_body(content = Option<JoinBody>, description = "Optional"),
    responses(
        (status = 200, body = JoinResponse, description = "The call (created on first join) and a LiveKit token"),
        (status = 400, description = "Malformed body", content_type = "application/problem+json"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 403, description = "The role does not open this appointment", content_type = "application/problem+json"),
        (status = 404, description = "Unknown appointment (or another org's)", content_type = "application/problem+json"),
        (status = 409, description = "Appointment cancelled (`appointment_cancelled`), or the call is over and cannot resume: failed, cancelled, or outside the appointment's window (`call_finished`); a completed call joined inside the window resumes (200)", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/appointments/{appointmentId}/join")]
async fn join_appointment_call(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    OptionalJson(body): OptionalJson<JoinBody>,
) -> Result<HttpResponse, VideoError> {
    let display_name = body
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| VideoError::invalid("displayName", e))?;
    let joined = actions::calls::join(&state, &principal, path.into_inner(), display_name).await?;
    let status = joined.call.status;
    Ok(HttpResponse::Ok().json(JoinResponse {
        call_id: joined.call.id,
        room_name: joined.call.room_name.clone(),
        token: joined.token.token,
        livekit_url: joined.token.server_url,
        recording: joined.call.recording_status.is_recording(),
        status,
        appointment: AppointmentView::from(&joined.appointment),
        participant: joined.participant.into(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    /// Start recording the call (host or org leaders only).
    #[serde(default)]
    start_recording: bool,
}

/// `POST /calls/{id}/start`
#[utoipa::path(post, path = "/calls/{id}/start", tag = "calls",
    params(("id" = Uuid, Path)),
    request_body(content = Option<StartBody>, description = "Optional"),
    responses(
        (status = 200, body = CallView),
        (status = 403, description = "Recording needs the host or an org leader", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "The call is over", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 502, description = "LiveKit refused the recording (the call shows FAILED)", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/start")]
async fn start_call(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    OptionalJson(body): OptionalJson<StartBody>,
) -> Result<HttpResponse, VideoError> {
    let call =
        actions::calls::start(&state, &principal, path.into_inner(), body.start_recording).await?;
    Ok(HttpResponse::Ok().json(CallView::summary(call)?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopBody {
    /// Why the caller left (kept as the end reason when they were the last one), ≤ 200 chars.
    #[schema(max_length = 200)]
    reason: Option<String>,
}

/// `POST /calls/{id}/stop`
#[utoipa::path(post, path = "/calls/{id}/stop", tag = "calls",
    params(("id" = Uuid, Path)),
    request_body(content = Option<StopBody>, description = "Optional"),
    responses(
        (status = 200, body = CallView, description = "The caller left; the last one out completes the call"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "The caller never joined", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/calls/{id}/stop")]
async fn stop_call(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
    OptionalJson(body): OptionalJson<StopBody>,
) -> Result<HttpResponse, VideoError> {
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 200) {
        return Err(VideoError::invalid(
            "reason",
            "must be at most 200 characters",
        ));
    }
    let call = actions::calls::stop(&state, &principal, path.into_inner(), reason).await?;
    Ok(HttpResponse::Ok().json(CallView::summary(call)?))
}

/// `GET /calls/{id}`
#[utoipa::path(get, path = "/calls/{id}", tag = "calls",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CallView, description = "The call with its appointment, participants and recordings"),
        (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/calls/{id}")]
async fn get_call(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, &principal, path.into_inner()).await?;
    let participants = calls::participants(&mut conn, call.id).await?;
    let recordings = recordings::of_call(&mut conn, call.id).await?;
    let mut view = CallView::summary(call)?;
    view.appointment = Some(AppointmentView::from(&appointment));
    view.participants = Some(participants.into_iter().map(Into::into).collect());
    view.recordings = Some(recordings.into_iter().map(Into::into).collect());
    Ok(HttpResponse::Ok().json(view))
}

fn filter_and_org(query: &Query) -> Result<(CallFilter, Option<Uuid>), Problem> {
    let status = query.value::<CallStatus>("status")?;
    let (from, to) = query.window()?;
    Ok((CallFilter { status, from, to }, query.uuid("orgId")?))
}

/// `GET /calls`
#[utoipa::path(get, path = "/calls", tag = "calls",
    params(
        ("status" = Option<CallStatus>, Query),
        ("from" = Option<DateTime<Utc>>, Query, description = "Created at or after (RFC 3339)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Created before (RFC 3339)"),
        ("orgId" = Option<Uuid>, Query, description = "ADMIN: only this org (default: every org); ignored for other roles"),
        PageRequest),
    responses(
        (status = 200, body = Page<CallView>, description = "Calls the caller may see, newest first"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/calls")]
async fn list_calls(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, VideoError> {
    let query = Query::parse(&req)?;
    let (filter, org) = filter_and_org(&query)?;
    let page = PageRequest::from_query(&query)?;
    let scope = access::scope(&principal, org);
    let mut conn = state.conn().await?;
    let (items, total) =
        calls::list(&mut conn, &scope, &filter, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(page.wrap(items, total).try_map(CallView::summary)?))
}

/// `GET /calls/stats`
#[utoipa::path(get, path = "/calls/stats", tag = "calls",
    params(
        ("from" = Option<DateTime<Utc>>, Query, description = "Calls created at or after (RFC 3339)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Calls created before (RFC 3339)"),
        ("status" = Option<CallStatus>, Query),
        ("orgId" = Option<Uuid>, Query, description = "ADMIN: only this org (default: every org); ignored for other roles")),
    responses(
        (status = 200, body = CallStats, description = "Statistics of the calls the caller may see"),
        (status = 400, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/calls/stats")]
async fn call_stats(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, VideoError> {
    let query = Query::parse(&req)?;
    let (filter, org) = filter_and_org(&query)?;
    let scope = access::scope(&principal, org);
    let mut conn = state.conn().await?;
    let samples: Vec<CallSample> = calls::stats_rows(&mut conn, &scope, &filter)
        .await?
        .into_iter()
        .map(
            |(status, duration_seconds, recording_status, participants)| CallSample {
                status,
                duration_seconds,
                recorded: recording_status != RecordingStatus::None,
                participants,
            },
        )
        .collect();
    Ok(HttpResponse::Ok().json(stats::compute(&samples)))
}
