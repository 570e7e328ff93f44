//! `GET|PUT /monitoring/settings`: the org's monitoring policy.

use actix_web::{HttpResponse, get, put, web};
use sb_auth::{Principal, Role};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::request::JsonBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::settings::{self, Settings};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_settings).service(put_settings);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsBody {
    /// Reps see the supervisor (and `GET /monitoring/rep/status` says so) while listened to.
    notify_rep: bool,
    allow_coach: bool,
    allow_barge: bool,
    /// 1–20.
    max_supervisors_per_rep: i32,
}

impl From<Settings> for SettingsBody {
    fn from(s: Settings) -> Self {
        Self {
            notify_rep: s.notify_rep,
            allow_coach: s.allow_coach,
            allow_barge: s.allow_barge,
            max_supervisors_per_rep: s.max_supervisors_per_rep,
        }
    }
}

fn require_leader(principal: &Principal) -> Result<(), MonitoringError> {
    if matches!(principal.role, Role::Admin | Role::Ceo | Role::Director) {
        Ok(())
    } else {
        Err(MonitoringError::forbidden(
            Code::Forbidden,
            "the monitoring policy is for CEO, DIRECTOR and ADMIN",
        ))
    }
}

/// `GET /monitoring/settings`
#[utoipa::path(get, path = "/monitoring/settings", tag = "settings",
    responses((status = 200, body = SettingsBody), (status = 403, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/settings")]
async fn get_settings(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, MonitoringError> {
    require_leader(&principal)?;
    let mut conn = state.conn().await?;
    let current = settings::of_org(&mut conn, principal.org_id.as_uuid()).await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(current)))
}

/// `PUT /monitoring/settings`
#[utoipa::path(put, path = "/monitoring/settings", tag = "settings",
    request_body = SettingsBody,
    responses((status = 200, body = SettingsBody), (status = 400, content_type = "application/problem+json"), (status = 403, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[put("/monitoring/settings")]
async fn put_settings(
    state: web::Data<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<HttpResponse, MonitoringError> {
    require_leader(&principal)?;
    if !(1..=20).contains(&body.max_supervisors_per_rep) {
        return Err(MonitoringError::invalid(
            "maxSupervisorsPerRep",
            "must be from 1 to 20",
        ));
    }
    let wanted = Settings {
        notify_rep: body.notify_rep,
        allow_coach: body.allow_coach,
        allow_barge: body.allow_barge,
        max_supervisors_per_rep: body.max_supervisors_per_rep,
    };
    let mut conn = state.conn().await?;
    let saved = settings::save(
        &mut conn,
        principal.org_id.as_uuid(),
        &wanted,
        principal.user_id.as_uuid(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(saved)))
}
