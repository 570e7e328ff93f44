//! `GET /monitoring/stream`: Server-Sent Events of presence and session changes in the
//! supervisor's scope, instead of the seed's 10-second polling. Every replica sees every change:
//! the stream subscribes to the service's own events on NATS (published through the outbox), so
//! it works whichever instance made the change.

use sb_platform::ApiError;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use futures_util::StreamExt;
use sb_auth::{Principal, Role};
use sb_events::headers;
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::sessions::can_monitor;
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::reps;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(live_stream);
}

/// Counts open streams while alive.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The event as clients want it: camelCase keys, statuses and modes by name.
fn client_json(value: Value) -> Value {
    use sb_events::proto::{MonitoringMode, RepStatus};
    let Value::Object(map) = value else {
        return value;
    };
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        let value = match (
            key.as_str(),
            value.as_i64().and_then(|n| i32::try_from(n).ok()),
        ) {
            ("status" | "previous_status", Some(n)) => RepStatus::try_from(n).map_or(value, |s| {
                Value::from(s.as_str_name().trim_start_matches("REP_STATUS_"))
            }),
            ("mode" | "previous_mode", Some(n)) => MonitoringMode::try_from(n).map_or(value, |m| {
                Value::from(
                    m.as_str_name()
                        .trim_start_matches("MONITORING_MODE_")
                        .to_lowercase(),
                )
            }),
            _ => value,
        };
        let mut camel = String::with_capacity(key.len());
        let mut upper = false;
        for c in key.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                camel.extend(c.to_uppercase());
                upper = false;
            } else {
                camel.push(c);
            }
        }
        out.insert(camel, value);
    }
    Value::Object(out)
}

fn frame(event: &str, id: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\nid: {id}\ndata: {data}\n\n"))
}

/// Whether `principal` may see a change about `rep` of `org`.
async fn visible(state: &AppState, principal: &Principal, org: &str, rep: Option<Uuid>) -> bool {
    if principal.role != Role::Admin && org != principal.org_id.to_string() {
        return false;
    }
    if matches!(principal.role, Role::Admin | Role::Ceo | Role::Director) {
        return org == principal.org_id.to_string();
    }
    let Some(rep) = rep else { return false };
    let Ok(mut conn) = state.conn().await else {
        return false;
    };
    matches!(reps::find(&mut conn, rep).await, Ok(Some(r)) if can_monitor(principal, &r))
}

/// `GET /monitoring/stream`
#[utoipa::path(get, path = "/monitoring/stream", tag = "supervisor",
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "`event: ready` once subscribed, then `rep.presence_changed`, `session.started`, `session.mode_changed`, `session.stopped`, each with the event as camelCase JSON (`repUserId`, `status: ONLINE`, `mode: coach`…); a comment every MONITORING_STREAM_KEEPALIVE"),
        (status = 403, description = "Not a supervisor", content_type = "application/problem+json"),
        (status = 503, description = "NATS unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/stream")]
async fn live_stream(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, MonitoringError> {
    if !principal.role.is_supervisor() {
        return Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors follow reps live",
        ));
    }
    let subject = state.namespace.subject("sb.monitoring.>");
    let mut subscriber =
        state.nats.subscribe(subject).await.map_err(|e| {
            MonitoringError::from(ApiError::DatabaseUnavailable(format!("NATS: {e}")))
        })?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let state = state.into_inner();
    let keepalive = state.config.stream_keepalive;
    state.metrics.live_streams.inc();
    let open = Open(state.metrics.live_streams.clone());
    tokio::spawn(async move {
        let _open = open;
        if tx
            .send(frame("ready", "0", &serde_json::json!({})))
            .await
            .is_err()
        {
            return;
        }
        let mut ticker = tokio::time::interval(keepalive.max(Duration::from_millis(100)));
        ticker.tick().await;
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                _ = ticker.tick() => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(message) = message else { return };
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            let event_type = header(headers::EVENT_TYPE);
            let Some(Ok(json)) = sb_events::decode_json(&event_type, &message.payload) else {
                continue;
            };
            let rep = json["rep_user_id"]
                .as_str()
                .and_then(|r| Uuid::parse_str(r).ok());
            if !visible(&state, &principal, &header(headers::ORG_ID), rep).await {
                continue;
            }
            let name = state
                .namespace
                .strip(message.subject.as_str())
                .trim_start_matches("sb.monitoring.")
                .to_owned();
            let data = client_json(json);
            if tx
                .send(frame(&name, &header(headers::MSG_ID), &data))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|item| item.map(Ok::<_, actix_web::Error>))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
