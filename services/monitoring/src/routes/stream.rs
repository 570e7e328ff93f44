//! `GET /monitoring/stream`: Server-Sent Events of presence and session changes in the
//! supervisor's scope, instead of the seed's 10-second polling.
//!
//! Every replica sees every change: each stream reads the service's own events from the
//! JetStream stream (published through the outbox by whichever instance made the change), and an
//! event's `id:` is its sequence there, so after a reconnect any replica can replay what was
//! missed from `Last-Event-ID` (bounded; an explicit `reset` when that is too far back).
//! Browsers' `EventSource` cannot send an `Authorization` header: they first trade their JWT for
//! a short-lived, single-use ticket (`POST /monitoring/stream/tickets`) and open
//! `GET /monitoring/stream?ticket=…`, so the long-lived JWT never appears in a URL or a log.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::StreamExt;
use sb_auth::{JwtVerifier, OrgId, Principal, Role, TeamId, UserId};
use sb_events::{Domain, headers};
use sb_platform::request::Query;
use sb_platform::{ApiError, ApiErrorExt as _, Code, Problem};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::sessions::can_monitor;
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::reps;
use crate::store::stream_tickets::{self, Ticket};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(issue_ticket);
    cfg.service(live_stream);
}

/// Longest ticket accepted in the query (a real one is 43 characters).
const MAX_TICKET_CHARS: usize = 128;

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

fn frame(event: &str, id: u64, data: &Value) -> Bytes {
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

fn require_supervisor(principal: &Principal) -> Result<(), MonitoringError> {
    if principal.role.is_supervisor() {
        Ok(())
    } else {
        Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors follow reps live",
        ))
    }
}

/// The bearer token's principal and expiry (the stream ends with the token).
fn bearer(req: &HttpRequest) -> Result<(Principal, DateTime<Utc>), MonitoringError> {
    let verifier = req.app_data::<web::Data<JwtVerifier>>().ok_or_else(|| {
        MonitoringError::from(Problem::internal(std::io::Error::other(
            "JwtVerifier is not registered as app data",
        )))
    })?;
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let claims = verifier
        .verify_header_claims(header)
        .map_err(|e| MonitoringError::from(Problem::from(e)))?;
    let expires_at = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .unwrap_or_else(Utc::now);
    Ok((Principal::from(claims), expires_at))
}

fn hash(ticket: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(ticket.as_bytes()).to_vec()
}

fn new_ticket() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTicket {
    /// Opaque; good for one `GET /monitoring/stream?ticket=…` until `expiresAt`.
    ticket: String,
    expires_at: DateTime<Utc>,
    /// The stream's URL with the ticket, relative to the service.
    stream_url: String,
}

/// `POST /monitoring/stream/tickets`
#[utoipa::path(post, path = "/monitoring/stream/tickets", tag = "supervisor",
    responses(
        (status = 201, body = StreamTicket, description = "A single-use ticket for `new EventSource(streamUrl)`, valid MONITORING_STREAM_TICKET_TTL (30 s); the stream it opens carries the caller's scope and ends when the caller's token expires"),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", content_type = "application/problem+json"),
        (status = 403, description = "Not a supervisor", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/monitoring/stream/tickets")]
async fn issue_ticket(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, MonitoringError> {
    require_supervisor(&principal)?;
    let (_, token_expires_at) = bearer(&req)?;
    let ticket = new_ticket();
    let ttl = chrono::Duration::from_std(state.config.stream_ticket_ttl)
        .unwrap_or_else(|_| chrono::Duration::seconds(30));
    // A ticket never outlives the token it was traded for.
    let expires_at = (Utc::now() + ttl).min(token_expires_at);
    let row = Ticket {
        ticket_hash: hash(&ticket),
        user_id: principal.user_id.as_uuid(),
        org_id: principal.org_id.as_uuid(),
        role: principal.role.to_string(),
        teams: principal.teams.iter().map(|t| Some(t.as_uuid())).collect(),
        token_expires_at,
        expires_at,
    };
    let mut conn = state.conn().await?;
    stream_tickets::issue(&mut conn, &row).await?;
    Ok(HttpResponse::Created().json(StreamTicket {
        stream_url: format!("/monitoring/stream?ticket={ticket}"),
        ticket,
        expires_at,
    }))
}

/// The caller of `GET /monitoring/stream`: a ticket's principal, or the bearer token's.
async fn caller(
    state: &AppState,
    req: &HttpRequest,
    query: &Query,
) -> Result<(Principal, DateTime<Utc>), MonitoringError> {
    let Some(ticket) = query.get("ticket") else {
        return bearer(req);
    };
    let invalid = || {
        MonitoringError::from(Problem::new(Code::StreamTicketInvalid).with_detail(
            "unknown, used or expired stream ticket: ask POST /monitoring/stream/tickets for a new one",
        ))
    };
    if ticket.len() > MAX_TICKET_CHARS {
        return Err(invalid());
    }
    let mut conn = state.conn().await?;
    let row = stream_tickets::redeem(&mut conn, &hash(ticket))
        .await?
        .ok_or_else(invalid)?;
    let now = Utc::now();
    if row.expires_at <= now {
        return Err(invalid());
    }
    if row.token_expires_at <= now {
        return Err(MonitoringError::from(Problem::new(Code::TokenExpired)));
    }
    let role = row.role.parse::<Role>().map_err(|_| {
        MonitoringError::from(Problem::internal(std::io::Error::other(format!(
            "ticket with unknown role {}",
            row.role
        ))))
    })?;
    let principal = Principal {
        user_id: UserId::from(row.user_id),
        org_id: OrgId::from(row.org_id),
        role,
        teams: row.teams.into_iter().flatten().map(TeamId::from).collect(),
        name: None,
    };
    Ok((principal, row.token_expires_at))
}

/// Where a stream starts reading the service's events, and whether the client must refetch.
struct Start {
    /// First stream sequence to deliver.
    sequence: u64,
    /// Why what the client missed cannot be replayed (`Last-Event-ID` too old or unknown).
    reset: Option<&'static str>,
}

/// The client's last event id: the `Last-Event-ID` header `EventSource` sends on its own
/// reconnects, else `lastEventId` in the query (a new `EventSource` cannot set the header).
fn last_event_id(req: &HttpRequest, query: &Query) -> Result<Option<u64>, MonitoringError> {
    if let Some(value) = req.headers().get("last-event-id") {
        let text = value.to_str().unwrap_or("").trim();
        return text.parse::<u64>().map(Some).map_err(|_| {
            MonitoringError::invalid("Last-Event-ID", "expected an event id from this stream")
        });
    }
    Ok(query.value::<u64>("lastEventId")?)
}

/// Decides where to start: right after the newest event, or after `last` when it is recent
/// enough (within MONITORING_STREAM_REPLAY_MAX events and MONITORING_STREAM_REPLAY_WINDOW).
async fn start(
    state: &AppState,
    stream: &jetstream::stream::Stream,
    last: Option<u64>,
) -> Result<Start, MonitoringError> {
    let info = stream.get_info().await.map_err(unavailable)?;
    let newest = info.state.last_sequence;
    let fresh = |reason| Start {
        sequence: newest + 1,
        reset: Some(reason),
    };
    let Some(last) = last else {
        return Ok(Start {
            sequence: newest + 1,
            reset: None,
        });
    };
    if last == newest {
        return Ok(Start {
            sequence: last + 1,
            reset: None,
        });
    }
    if last > newest {
        return Ok(fresh("unknown_event_id"));
    }
    if newest - last > state.config.stream_replay_max || last + 1 < info.state.first_sequence {
        return Ok(fresh("too_far_behind"));
    }
    // The oldest event to replay must be within the window; its id (UUID v7) says when it
    // was made, whatever the replica's clock.
    let oldest = match stream.get_raw_message(last + 1).await {
        Ok(message) => message
            .headers
            .get(headers::MSG_ID)
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
            .and_then(|id| id.get_timestamp())
            .and_then(|ts| {
                let (secs, nanos) = ts.to_unix();
                Utc.timestamp_opt(i64::try_from(secs).ok()?, nanos).single()
            }),
        Err(_) => None,
    };
    let window = chrono::Duration::from_std(state.config.stream_replay_window)
        .unwrap_or_else(|_| chrono::Duration::minutes(10));
    match oldest {
        Some(at) if at >= Utc::now() - window => Ok(Start {
            sequence: last + 1,
            reset: None,
        }),
        _ => Ok(fresh("too_old")),
    }
}

fn unavailable(error: impl std::fmt::Display) -> MonitoringError {
    MonitoringError::from(ApiError::DatabaseUnavailable(format!("NATS: {error}")))
}

/// `GET /monitoring/stream`
#[utoipa::path(get, path = "/monitoring/stream", tag = "supervisor",
    params(
        ("ticket" = Option<String>, Query, description = "A ticket from POST /monitoring/stream/tickets, for browsers (EventSource sends no Authorization header); single-use"),
        ("lastEventId" = Option<u64>, Query, description = "Resume after this event id when opening a new EventSource (the Last-Event-ID header, sent by EventSource on its own reconnects, takes precedence)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay what came after this event id (bounded)")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "`event: reset` first when what was missed since Last-Event-ID cannot be replayed (refetch GET /monitoring/reps), then `event: ready`, then the missed events and live ones: `rep.presence_changed`, `session.started`, `session.mode_changed`, `session.stopped`, each with an `id:` and the event as camelCase JSON (`repUserId`, `status: ONLINE`, `mode: coach`…); a comment every MONITORING_STREAM_KEEPALIVE; `event: expired` and the end when the token behind the stream expires; the end when the service shuts down"),
        (status = 400, description = "`invalid_field`: Last-Event-ID or lastEventId is not an event id", content_type = "application/problem+json"),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`, `stream_ticket_invalid`", content_type = "application/problem+json"),
        (status = 403, description = "Not a supervisor", content_type = "application/problem+json"),
        (status = 503, description = "NATS unavailable", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/monitoring/stream")]
async fn live_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, MonitoringError> {
    let query = Query::parse(&req)?;
    let (principal, expires_at) = caller(&state, &req, &query).await?;
    require_supervisor(&principal)?;
    let last = last_event_id(&req, &query)?;
    let js = jetstream::new(state.nats.clone());
    let stream = js
        .get_stream(state.namespace.stream(Domain::Monitoring))
        .await
        .map_err(unavailable)?;
    let start = start(&state, &stream, last).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: state.namespace.subject("sb.monitoring.>"),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.sequence,
            },
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut messages = consumer.messages().await.map_err(unavailable)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let state = state.into_inner();
    let keepalive = state.config.stream_keepalive;
    let shutdown = state.shutdown.clone();
    state.metrics.live_streams.inc();
    let open = Open(state.metrics.live_streams.clone());
    let until_expiry = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::spawn(async move {
        let _open = open;
        let position = start.sequence.saturating_sub(1);
        if let Some(reason) = start.reset
            && tx
                .send(frame(
                    "reset",
                    position,
                    &serde_json::json!({ "reason": reason }),
                ))
                .await
                .is_err()
        {
            return;
        }
        if tx
            .send(frame("ready", position, &serde_json::json!({})))
            .await
            .is_err()
        {
            return;
        }
        let expiry = tokio::time::sleep(until_expiry);
        tokio::pin!(expiry);
        let mut ticker = tokio::time::interval(keepalive.max(Duration::from_millis(100)));
        ticker.tick().await;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = shutdown.cancelled() => return,
                () = &mut expiry => {
                    let _ = tx.send(frame("expired", position, &serde_json::json!({}))).await;
                    return;
                }
                _ = ticker.tick() => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = tx.closed() => return,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // The ordered consumer recreates itself on gaps; an error here means NATS is
                    // gone: end the stream, the client reconnects with Last-Event-ID.
                    tracing::warn!(%error, "live stream lost its NATS consumer");
                    return;
                }
                None => return,
            };
            let Ok(sequence) = message.info().map(|i| i.stream_sequence) else {
                continue;
            };
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
            if tx.send(frame(&name, sequence, &data)).await.is_err() {
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
