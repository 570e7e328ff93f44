//! `GET /monitoring/audit`: who listened to whom, when, in which mode, from where.

use actix_web::{HttpRequest, HttpResponse, get, web};
use sb_auth::{Principal, Role};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use sb_platform::request::Query;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, AuditFilter};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_audit);
}

/// `GET /monitoring/audit`
#[utoipa::path(get, path = "/monitoring/audit", tag = "audit",
    params(
        ("repId" = Option<uuid::Uuid>, Query),
        ("actorId" = Option<uuid::Uuid>, Query),
        ("sessionId" = Option<uuid::Uuid>, Query),
        ("from" = Option<chrono::DateTime<chrono::Utc>>, Query),
        ("to" = Option<chrono::DateTime<chrono::Utc>>, Query),
        PageRequest),
    responses(
        (status = 200, body = Page<AuditEntry>, description = "Newest first; append-only"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json"),
        (status = 403, description = "Only CEO, DIRECTOR, ADMIN", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/audit")]
async fn list_audit(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, MonitoringError> {
    if !matches!(principal.role, Role::Admin | Role::Ceo | Role::Director) {
        return Err(MonitoringError::forbidden(
            Code::Forbidden,
            "the monitoring audit is for CEO, DIRECTOR and ADMIN",
        ));
    }
    let query = Query::parse(&req)?;
    let (from, to) = query.window()?;
    let page = PageRequest::from_query(&query)?;
    let filter = AuditFilter {
        org: principal.org_id.as_uuid(),
        rep_id: query.uuid("repId")?,
        actor_id: query.uuid("actorId")?,
        session_id: query.uuid("sessionId")?,
        from,
        to,
    };
    let mut conn = state.conn().await?;
    let (entries, total) = audit::list(&mut conn, &filter, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(page.wrap(entries, total)))
}
