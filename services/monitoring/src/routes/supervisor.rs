//! The supervisor's view of the reps in their scope.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::sessions::can_monitor;
use crate::domain::{RepStatus, SessionStatus};
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::reps::{self, Rep};
use crate::store::sessions;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_reps);
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnCall {
    /// `phone` or `video`.
    kind: String,
    call_id: Uuid,
    since: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepView {
    user_id: Uuid,
    name: String,
    role: String,
    teams: Vec<Uuid>,
    status: RepStatus,
    /// Connected with the microphone on.
    online: bool,
    /// Supervisors listening now.
    listened_by: Vec<Uuid>,
    on_call: Option<OnCall>,
    status_changed_at: DateTime<Utc>,
}

pub async fn view(
    conn: &mut diesel_async::AsyncPgConnection,
    rep: Rep,
) -> Result<RepView, MonitoringError> {
    let listened_by = sessions::open_of_rep(conn, rep.user_id)
        .await?
        .into_iter()
        .filter(|s| s.status == SessionStatus::Active)
        .map(|s| s.supervisor_id)
        .collect();
    let on_call = reps::current_call(conn, rep.user_id)
        .await?
        .map(|(kind, call_id, since)| OnCall {
            kind,
            call_id,
            since,
        });
    Ok(RepView {
        teams: rep.team_ids(),
        status: rep.status,
        online: rep.publishing,
        user_id: rep.user_id,
        name: rep.name,
        role: rep.role,
        listened_by,
        on_call,
        status_changed_at: rep.status_changed_at,
    })
}

/// `GET /monitoring/reps`
#[utoipa::path(get, path = "/monitoring/reps", tag = "supervisor",
    params(PageRequest),
    responses(
        (status = 200, body = Page<RepView>, description = "The roster: every rep the caller may monitor (from the CRM's users, and reps who asked for a token), offline ones too, by name, with their status (live changes: GET /monitoring/stream)"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json"),
        (status = 403, description = "Not a supervisor", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/reps")]
async fn list_reps(
    state: web::Data<AppState>,
    principal: Principal,
    page: PageRequest,
) -> Result<HttpResponse, MonitoringError> {
    if !principal.role.is_supervisor() {
        return Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors (ADMIN, CEO, DIRECTOR, MANAGER) see reps",
        ));
    }
    let mut conn = state.conn().await?;
    // Who may be monitored is decided by the access policy (roles, teams), not SQL: the org's
    // reps are filtered here and cut into a page, and only that page's views are built.
    let monitorable: Vec<_> = reps::roster_of_org(&mut conn, principal.org_id.as_uuid())
        .await?
        .into_iter()
        .filter(|rep| can_monitor(&principal, rep))
        .collect();
    let page = page.slice(monitorable);
    let mut views = Vec::with_capacity(page.items.len());
    for rep in page.items {
        views.push(view(&mut conn, rep).await?);
    }
    Ok(HttpResponse::Ok().json(Page {
        items: views,
        page: page.page,
        page_size: page.page_size,
        total: page.total,
    }))
}
