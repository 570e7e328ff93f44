//! Monitoring sessions: start, list, pause, resume, mode, token renewal, stop.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::{Principal, Role};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use sb_platform::request::{JsonBody, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::sessions::{self as actions, Connected, PhoneRoute, StartRequest, can_monitor};
use crate::domain::{Mode, SessionStatus, TargetChoice, TargetKind};
use crate::error::MonitoringError;
use crate::routes::client_ip;
use crate::state::AppState;
use crate::store::reps;
use crate::store::sessions::{self, Session, SessionFilter};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(start_session)
        .service(list_sessions)
        .service(get_session)
        .service(pause_session)
        .service(resume_session)
        .service(stop_session)
        .service(change_mode)
        .service(renew_token);
}

/// What a session supervises.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    kind: TargetKind,
    /// The video call (`video_call`) or telephony's phone call (`phone_call`); null for the
    /// side room.
    call_id: Option<Uuid>,
    /// The LiveKit room the supervisor joins; null for a phone call.
    room_name: Option<String>,
    /// `phone_call`: where Twilio rings the supervisor (`client:u_<32 hex>` or E.164).
    supervisor_address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    id: Uuid,
    rep_id: Uuid,
    supervisor_id: Uuid,
    supervisor_role: String,
    /// The LiveKit room (null for a phone call); the same as `target.roomName`.
    room_name: Option<String>,
    target: TargetView,
    status: SessionStatus,
    mode: Mode,
    started_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    stop_reason: Option<String>,
    token_expires_at: DateTime<Utc>,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        Self {
            status: s.status,
            mode: s.mode,
            id: s.id,
            rep_id: s.rep_id,
            supervisor_id: s.supervisor_id,
            supervisor_role: s.supervisor_role,
            target: TargetView {
                kind: s.target,
                call_id: s.call_id,
                room_name: s.room_name.clone(),
                supervisor_address: s.supervisor_address,
            },
            room_name: s.room_name,
            started_at: s.started_at,
            stopped_at: s.stopped_at,
            stop_reason: s.stop_reason,
            token_expires_at: s.token_expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionConnection {
    session: SessionView,
    /// The LiveKit connection details below are null for a phone call: Twilio rings the
    /// supervisor at `session.target.supervisorAddress`.
    server_url: Option<String>,
    /// Listen-only by default: subscribe, no publish, no data, hidden; short-lived — renew with
    /// `POST /monitoring/sessions/{id}/token` before `expiresAt` or the session stops.
    participant_token: Option<String>,
    room_name: Option<String>,
    participant_name: Option<String>,
    expires_at: DateTime<Utc>,
}

impl From<Connected> for SessionConnection {
    fn from(c: Connected) -> Self {
        let (server_url, participant_token, room_name, participant_name) = match c.token {
            Some(token) => (
                Some(token.server_url),
                Some(token.token),
                Some(token.room),
                Some(token.identity),
            ),
            None => (None, None, None, None),
        };
        Self {
            server_url,
            participant_token,
            room_name,
            participant_name,
            expires_at: c.expires_at,
            session: c.session.into(),
        }
    }
}

/// How Twilio reaches the supervisor when the target is a phone call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneBody {
    /// `app`: the supervisor's app (Voice SDK client `client:u_<32 hex>`); `number`: `number`.
    via: PhoneVia,
    /// E.164 (`+33123456789`), with `via: number` only.
    #[schema(max_length = 32)]
    number: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PhoneVia {
    App,
    Number,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    rep_id: Uuid,
    /// `auto` (default): the rep's live call (video room or phone conference) if any, else
    /// their side room; `call`: the live call or 409 `call_not_live`; `side_room`.
    #[serde(default)]
    target: TargetChoice,
    /// Phone calls only; the supervisor's app when absent.
    phone: Option<PhoneBody>,
}

/// `POST /monitoring/sessions`
#[utoipa::path(post, path = "/monitoring/sessions", tag = "supervisor",
    request_body = StartBody,
    responses(
        (status = 201, body = SessionConnection, description = "A new session"),
        (status = 200, body = SessionConnection, description = "This supervisor's open session on the rep, with a fresh token"),
        (status = 403, description = "Not a supervisor", content_type = "application/problem+json"),
        (status = 404, description = "Rep unknown or outside the caller's scope", content_type = "application/problem+json"),
        (status = 400, description = "`invalid_phone_number` or `invalid_field` naming `phone.number`", content_type = "application/problem+json"),
        (status = 409, description = "`rep_offline` (side room), `call_not_live` (`target: call`) or `too_many_supervisors`; every refusal is audited", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions")]
async fn start_session(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<HttpResponse, MonitoringError> {
    let phone = match body.phone {
        None
        | Some(PhoneBody {
            via: PhoneVia::App,
            number: None,
        }) => PhoneRoute::App,
        Some(PhoneBody {
            via: PhoneVia::Number,
            number: Some(number),
        }) => PhoneRoute::Number(number),
        Some(PhoneBody {
            via: PhoneVia::App, ..
        }) => {
            return Err(MonitoringError::invalid(
                "phone.number",
                "only with via: number",
            ));
        }
        Some(PhoneBody {
            via: PhoneVia::Number,
            number: None,
        }) => {
            return Err(MonitoringError::invalid(
                "phone.number",
                "required with via: number",
            ));
        }
    };
    let request = StartRequest {
        rep_id: body.rep_id,
        target: body.target,
        phone,
    };
    let (connected, created) =
        actions::start(&state, &principal, &request, client_ip(&req)).await?;
    let body = SessionConnection::from(connected);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// `GET /monitoring/sessions`
#[utoipa::path(get, path = "/monitoring/sessions", tag = "supervisor",
    params(
        ("status" = Option<SessionStatus>, Query),
        ("repId" = Option<Uuid>, Query),
        ("supervisorId" = Option<Uuid>, Query),
        ("from" = Option<DateTime<Utc>>, Query, description = "Started at or after"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Started before"),
        PageRequest),
    responses(
        (status = 200, body = Page<SessionView>, description = "Active sessions and history in the caller's scope, newest first"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json"),
        (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/sessions")]
async fn list_sessions(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, MonitoringError> {
    if !principal.role.is_supervisor() {
        return Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors list sessions",
        ));
    }
    let query = Query::parse(&req)?;
    let (from, to) = query.window()?;
    let page = PageRequest::from_query(&query)?;
    let org = principal.org_id.as_uuid();
    let mut conn = state.conn().await?;
    let leader = matches!(principal.role, Role::Admin | Role::Ceo | Role::Director);
    let visible_to = if leader {
        None
    } else {
        let reps = reps::of_org(&mut conn, org).await?;
        Some((
            principal.user_id.as_uuid(),
            reps.iter()
                .filter(|r| can_monitor(&principal, r))
                .map(|r| r.user_id)
                .collect(),
        ))
    };
    let filter = SessionFilter {
        org,
        status: query.value::<SessionStatus>("status")?,
        rep_id: query.uuid("repId")?,
        supervisor_id: query.uuid("supervisorId")?,
        from,
        to,
        visible_to,
    };
    let (items, total) = sessions::list(&mut conn, &filter, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(page.wrap(items, total).map(SessionView::from)))
}

/// `GET /monitoring/sessions/{id}`
#[utoipa::path(get, path = "/monitoring/sessions/{id}", tag = "supervisor",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 404, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/sessions/{id}")]
async fn get_session(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, MonitoringError> {
    if !principal.role.is_supervisor() {
        return Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors see sessions",
        ));
    }
    let mut conn = state.conn().await?;
    let session = sessions::find(&mut conn, path.into_inner())
        .await?
        .ok_or(MonitoringError::not_found("session"))?;
    actions::rep_in_scope(&mut conn, &principal, session.rep_id)
        .await
        .map_err(|_| MonitoringError::not_found("session"))?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// `POST /monitoring/sessions/{id}/pause`
#[utoipa::path(post, path = "/monitoring/sessions/{id}/pause", tag = "supervisor",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionView, description = "PAUSED: the supervisor hears nothing until resumed"),
        (status = 409, description = "Not ACTIVE", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable: nothing changed", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions/{id}/pause")]
async fn pause_session(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, MonitoringError> {
    let session =
        actions::set_paused(&state, &principal, path.into_inner(), true, client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// `POST /monitoring/sessions/{id}/resume`
#[utoipa::path(post, path = "/monitoring/sessions/{id}/resume", tag = "supervisor",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionView, description = "ACTIVE again, in its mode"),
        (status = 409, description = "Not PAUSED", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions/{id}/resume")]
async fn resume_session(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, MonitoringError> {
    let session = actions::set_paused(
        &state,
        &principal,
        path.into_inner(),
        false,
        client_ip(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// `POST /monitoring/sessions/{id}/stop`
#[utoipa::path(post, path = "/monitoring/sessions/{id}/stop", tag = "supervisor",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView, description = "STOPPED (idempotent); the supervisor is removed from the room")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions/{id}/stop")]
async fn stop_session(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, MonitoringError> {
    let session = actions::stop(&state, &principal, path.into_inner(), client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeBody {
    mode: Mode,
}

/// `POST /monitoring/sessions/{id}/mode`
///
/// What the supervisor's client does after each change: `listen` — keep the microphone off;
/// `coach` — publish the microphone (LiveKit now allows it; the supervisor stays hidden, and the
/// rep's app plays the supervisor to the rep only); `barge` — publish the microphone and show
/// the supervisor (now visible in the room). The permissions are applied to the connected
/// participant at once (RoomService UpdateParticipant), and the next renewed token carries them.
#[utoipa::path(post, path = "/monitoring/sessions/{id}/mode", tag = "supervisor",
    params(("id" = Uuid, Path)),
    request_body = ModeBody,
    responses(
        (status = 200, body = SessionView),
        (status = 403, description = "`mode_not_allowed` by the org's policy", content_type = "application/problem+json"),
        (status = 409, description = "`session_not_active`", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable: nothing changed", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions/{id}/mode")]
async fn change_mode(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<Uuid>,
    JsonBody(body): JsonBody<ModeBody>,
) -> Result<HttpResponse, MonitoringError> {
    let session = actions::set_mode(
        &state,
        &principal,
        path.into_inner(),
        body.mode,
        client_ip(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SessionView::from(session)))
}

/// `POST /monitoring/sessions/{id}/token`
#[utoipa::path(post, path = "/monitoring/sessions/{id}/token", tag = "supervisor",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionConnection, description = "A fresh token with the session's current grants"),
        (status = 409, description = "`session_stopped`", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/sessions/{id}/token")]
async fn renew_token(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, MonitoringError> {
    let connected = actions::renew(&state, &principal, path.into_inner(), client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(SessionConnection::from(connected)))
}
