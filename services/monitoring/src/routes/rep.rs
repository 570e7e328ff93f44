//! The rep's side: a token to publish their microphone in their own room, and their status.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::{Principal, Role};
use sb_livekit::{Preset, RoomOptions};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::domain::{Identity, RepStatus, rep_room};
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::{reps, settings};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(rep_session).service(rep_status);
}

fn require_rep(principal: &Principal) -> Result<(), MonitoringError> {
    if matches!(principal.role, Role::Closer | Role::Setter) {
        Ok(())
    } else {
        Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only sales reps (CLOSER, SETTER) publish to a monitoring room",
        ))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepConnection {
    server_url: String,
    /// LiveKit token: publish the microphone only, subscribe (to hear a coach).
    participant_token: String,
    room_name: String,
    /// LiveKit identity (`rep_<userId>`), the seed's `participantName`.
    participant_name: String,
    display_name: String,
    /// Ask again before this time (the same call renews it).
    expires_at: DateTime<Utc>,
}

/// `POST /monitoring/rep/session`
#[utoipa::path(post, path = "/monitoring/rep/session", tag = "rep",
    responses(
        (status = 200, body = RepConnection, description = "Connect to LiveKit with it and publish the microphone"),
        (status = 403, description = "Not a CLOSER or SETTER", content_type = "application/problem+json"),
        (status = 503, description = "LiveKit unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/rep/session")]
async fn rep_session(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, MonitoringError> {
    require_rep(&principal)?;
    let org = principal.org_id.as_uuid();
    let me = principal.user_id.as_uuid();
    let room = rep_room(org, me);
    let name = principal
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().chars().take(100).collect::<String>())
        .unwrap_or_else(|| "Rep".to_owned());
    // The room first: if LiveKit is down the rep gets a 503 and retries, nothing is stored.
    state
        .livekit_call(
            "create_room",
            state.livekit.create_room(
                &room,
                RoomOptions {
                    empty_timeout_secs: 600,
                    max_participants: 0,
                    metadata: String::new(),
                },
            ),
        )
        .await?;
    let mut conn = state.conn().await?;
    reps::upsert(
        &mut conn,
        &reps::NewRep {
            user_id: me,
            org_id: org,
            role: principal.role.as_str(),
            teams: principal.teams.iter().map(|t| Some(t.as_uuid())).collect(),
            name: &name,
            room_name: &room,
        },
    )
    .await?;
    let identity = Identity::Rep(me).to_string();
    let ttl = state.config.rep_token_ttl;
    let token = state
        .tokens
        .issue(
            &room,
            &identity,
            &name,
            Preset::RepPublisher,
            Some(ttl),
            None,
        )
        .map_err(MonitoringError::internal)?;
    Ok(HttpResponse::Ok().json(RepConnection {
        server_url: token.server_url,
        participant_token: token.token,
        room_name: room,
        participant_name: identity,
        display_name: name,
        expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnStatus {
    status: RepStatus,
    /// Whether a supervisor is listening: only when the org tells reps (`notifyRep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    listened: Option<bool>,
}

/// `GET /monitoring/rep/status`
#[utoipa::path(get, path = "/monitoring/rep/status", tag = "rep",
    responses((status = 200, body = OwnStatus), (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/rep/status")]
async fn rep_status(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, MonitoringError> {
    require_rep(&principal)?;
    let mut conn = state.conn().await?;
    let me = principal.user_id.as_uuid();
    let status = reps::find(&mut conn, me)
        .await?
        .map_or(RepStatus::Offline, |r| r.status);
    let notify = settings::of_org(&mut conn, principal.org_id.as_uuid())
        .await?
        .notify_rep;
    // Discreet supervision: a rep who is not told never learns it from here either.
    let shown = match (status, notify) {
        (RepStatus::Listened, false) if reps::current_call(&mut conn, me).await?.is_some() => {
            RepStatus::OnCall
        }
        (RepStatus::Listened, false) => RepStatus::Online,
        (status, _) => status,
    };
    Ok(HttpResponse::Ok().json(OwnStatus {
        status: shown,
        listened: notify.then_some(status == RepStatus::Listened),
    }))
}
