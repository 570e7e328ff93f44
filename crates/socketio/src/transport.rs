//! The HTTP endpoints: handshake, long-polling, websocket and the upgrade between them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use actix_ws::AggregatedMessage;
use futures_util::StreamExt;

use crate::packet::SEPARATOR;
use crate::server::{Handshake, Session, SocketIo};
use crate::socket::DisconnectReason;

/// Engine.IO's error codes (answered as `{"code", "message"}` with 400).
#[derive(Debug, Clone, Copy)]
enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadRequest = 3,
    UnsupportedVersion = 5,
}

impl EngineError {
    fn response(self) -> HttpResponse {
        let message = match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadRequest => "Bad request",
            Self::UnsupportedVersion => "Unsupported protocol version",
        };
        HttpResponse::BadRequest().json(serde_json::json!({"code": self as u8, "message": message}))
    }
}

impl SocketIo {
    /// Registers the transports at `config.path` (with and without the trailing slash).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.data());
        for (path, route) in self.routes() {
            cfg.route(&path, route);
        }
    }

    /// The server as actix app data (the transports' handlers read it), for route tables that
    /// are not a plain [`web::ServiceConfig`].
    pub fn data(&self) -> web::Data<SocketIo> {
        web::Data::new(self.clone())
    }

    /// The transports' routes: GET, POST and OPTIONS at `config.path`, with and without the
    /// trailing slash.
    pub fn routes(&self) -> Vec<(String, actix_web::Route)> {
        let path = self.config().path.trim_end_matches('/').to_owned();
        let mut routes = Vec::new();
        for path in [format!("{path}/"), path] {
            routes.push((path.clone(), web::get().to(get)));
            routes.push((path.clone(), web::post().to(post)));
            routes.push((
                path,
                web::method(actix_web::http::Method::OPTIONS).to(preflight),
            ));
        }
        routes
    }
}

/// A browser page of another origin called.
#[derive(Debug)]
struct ForeignOrigin;

impl ForeignOrigin {
    fn response(&self) -> HttpResponse {
        HttpResponse::Forbidden().json(serde_json::json!({"code": 4, "message": "Forbidden"}))
    }
}

/// The origin to echo back.
fn check_origin(req: &HttpRequest, io: &SocketIo) -> Result<Option<String>, ForeignOrigin> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return Ok(None);
    };
    let host = req.connection_info().host().to_owned();
    let same_host = origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host);
    if same_host || io.config().cors_origins.iter().any(|o| o == origin) {
        Ok(Some(origin.to_owned()))
    } else {
        Err(ForeignOrigin)
    }
}

fn with_cors(mut builder: HttpResponseBuilder, origin: Option<&str>) -> HttpResponseBuilder {
    if let Some(origin) = origin {
        builder
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::VARY, "Origin"));
    }
    builder
}

async fn preflight(req: HttpRequest, io: web::Data<SocketIo>) -> HttpResponse {
    match check_origin(&req, &io) {
        Ok(origin) => with_cors(HttpResponse::NoContent(), origin.as_deref())
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "content-type, authorization",
            ))
            .finish(),
        Err(forbidden) => forbidden.response(),
    }
}

fn handshake(req: &HttpRequest, query: &HashMap<String, String>) -> Handshake {
    Handshake {
        query: query.clone(),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

fn text(builder: HttpResponseBuilder, body: String) -> HttpResponse {
    let mut builder = builder;
    builder.content_type("text/plain; charset=UTF-8").body(body)
}

async fn get(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<HashMap<String, String>>,
    io: web::Data<SocketIo>,
) -> HttpResponse {
    if query.get("EIO").map(String::as_str) != Some("4") {
        return EngineError::UnsupportedVersion.response();
    }
    let origin = match check_origin(&req, &io) {
        Ok(origin) => origin,
        Err(forbidden) => return forbidden.response(),
    };
    let sid = query.get("sid");
    match query.get("transport").map(String::as_str) {
        Some("polling") => match sid {
            None => {
                let session = io.new_session(handshake(&req, &query));
                let open = io.open_packet(&session, true);
                text(with_cors(HttpResponse::Ok(), origin.as_deref()), open)
            }
            Some(sid) => match io.session(sid) {
                Some(session) => poll(&io, &session, origin.as_deref()).await,
                None => EngineError::UnknownSid.response(),
            },
        },
        Some("websocket") => websocket(&req, body, &io, sid, &query),
        _ => EngineError::UnknownTransport.response(),
    }
}

/// Long-polling GET: waits for packets, answers them joined by the record separator.
async fn poll(io: &SocketIo, session: &Arc<Session>, origin: Option<&str>) -> HttpResponse {
    if session.upgraded.load(Ordering::SeqCst) {
        return EngineError::BadRequest.response();
    }
    let Ok(mut rx) = session.rx.try_lock() else {
        // a second concurrent GET breaks the protocol
        io.close_session(session, DisconnectReason::TransportError);
        return EngineError::BadRequest.response();
    };
    let wait = io.config().ping_interval + io.config().ping_timeout;
    let first = tokio::select! {
        biased;
        packet = rx.recv() => packet,
        () = session.closed.cancelled() => None,
        () = tokio::time::sleep(wait) => Some("6".to_owned()),
    };
    let mut packets: Vec<String> = Vec::new();
    let mut size = 0;
    if let Some(first) = first {
        size += first.len();
        packets.push(first);
    }
    while size < io.config().max_payload {
        match rx.try_recv() {
            Ok(packet) => {
                size += packet.len() + 1;
                packets.push(packet);
            }
            Err(_) => break,
        }
    }
    if session.closed.is_cancelled() {
        packets.push("1".to_owned());
    }
    let body = packets.join(&SEPARATOR.to_string());
    text(with_cors(HttpResponse::Ok(), origin), body)
}

/// Long-polling POST: the client's packets, joined by the record separator.
async fn post(
    req: HttpRequest,
    mut body: web::Payload,
    query: web::Query<HashMap<String, String>>,
    io: web::Data<SocketIo>,
) -> HttpResponse {
    if query.get("EIO").map(String::as_str) != Some("4") {
        return EngineError::UnsupportedVersion.response();
    }
    let origin = match check_origin(&req, &io) {
        Ok(origin) => origin,
        Err(forbidden) => return forbidden.response(),
    };
    if query.get("transport").map(String::as_str) != Some("polling") {
        return EngineError::UnknownTransport.response();
    }
    let Some(session) = query.get("sid").and_then(|sid| io.session(sid)) else {
        return EngineError::UnknownSid.response();
    };
    if session.upgraded.load(Ordering::SeqCst) {
        return EngineError::BadRequest.response();
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            io.close_session(&session, DisconnectReason::TransportError);
            return EngineError::BadRequest.response();
        };
        if bytes.len() + chunk.len() > io.config().max_payload {
            io.close_session(&session, DisconnectReason::TransportError);
            return HttpResponse::PayloadTooLarge().finish();
        }
        bytes.extend_from_slice(&chunk);
    }
    let Ok(payload) = std::str::from_utf8(&bytes) else {
        io.close_session(&session, DisconnectReason::TransportError);
        return EngineError::BadRequest.response();
    };
    for packet in payload.split(SEPARATOR) {
        io.on_engine_text(&session, packet).await;
    }
    text(
        with_cors(HttpResponse::Ok(), origin.as_deref()),
        "ok".to_owned(),
    )
}

fn websocket(
    req: &HttpRequest,
    body: web::Payload,
    io: &SocketIo,
    sid: Option<&String>,
    query: &HashMap<String, String>,
) -> HttpResponse {
    let upgrading = match sid {
        Some(sid) => match io.session(sid) {
            Some(session) if !session.upgraded.load(Ordering::SeqCst) => Some(session),
            Some(_) => return EngineError::BadRequest.response(),
            None => return EngineError::UnknownSid.response(),
        },
        None => None,
    };
    let (response, ws, stream) = match actix_ws::handle(req, body) {
        Ok(parts) => parts,
        Err(error) => return error.error_response(),
    };
    let max = io.config().max_payload;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let io = io.clone();
    match upgrading {
        Some(session) => {
            actix_web::rt::spawn(upgrade(io, session, ws, stream));
        }
        None => {
            let session = io.new_session(handshake(req, query));
            let open = io.open_packet(&session, false);
            actix_web::rt::spawn(async move {
                let mut ws = ws;
                if ws.text(open).await.is_err() {
                    io.close_session(&session, DisconnectReason::TransportClose);
                    return;
                }
                run(io, session, ws, stream).await;
            });
        }
    }
    response
}

type Stream = actix_ws::AggregatedMessageStream;

/// Upgrade of a polling session: `2probe`/`3probe`, then `5` from the client.
async fn upgrade(
    io: SocketIo,
    session: Arc<Session>,
    mut ws: actix_ws::Session,
    mut stream: Stream,
) {
    let timeout = io.config().ping_timeout;
    let probe = tokio::time::timeout(timeout, stream.next()).await;
    let probed = matches!(probe, Ok(Some(Ok(AggregatedMessage::Text(ref t)))) if &**t == "2probe");
    if !probed || ws.text("3probe").await.is_err() {
        let _ = ws.close(None).await;
        return;
    }
    // release the pending long-poll so the client can switch
    io.send(&session, "6".to_owned());
    let done = tokio::time::timeout(timeout, stream.next()).await;
    if !matches!(done, Ok(Some(Ok(AggregatedMessage::Text(ref t)))) if &**t == "5") {
        let _ = ws.close(None).await;
        return;
    }
    session.upgraded.store(true, Ordering::SeqCst);
    run(io, session, ws, stream).await;
}

/// Carries a session over a websocket until either side closes it.
async fn run(io: SocketIo, session: Arc<Session>, mut ws: actix_ws::Session, mut stream: Stream) {
    let writer_session = session.clone();
    let mut writer_ws = ws.clone();
    actix_web::rt::spawn(async move {
        let mut rx = writer_session.rx.lock().await;
        loop {
            tokio::select! {
                biased;
                packet = rx.recv() => match packet {
                    Some(packet) => {
                        if writer_ws.text(packet).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                () = writer_session.closed.cancelled() => {
                    // what was queued before the close (a DISCONNECT, an error event) still goes
                    while let Ok(packet) = rx.try_recv() {
                        if writer_ws.text(packet).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        let reason = writer_session
            .going_away
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| actix_ws::CloseReason {
                code: actix_ws::CloseCode::Away,
                description: Some(DisconnectReason::ServerShuttingDown.as_str().to_owned()),
            });
        let _ = writer_ws.close(reason).await;
    });
    loop {
        tokio::select! {
            () = session.closed.cancelled() => break,
            message = stream.next() => match message {
                Some(Ok(AggregatedMessage::Text(text))) => io.on_engine_text(&session, &text).await,
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    let _ = ws.pong(&bytes).await;
                }
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    tracing::debug!(socketio.sid = %session.sid(), "binary frame ignored: binary packets are not supported");
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) | None => {
                    io.close_session(&session, DisconnectReason::TransportClose);
                    break;
                }
                Some(Err(error)) => {
                    tracing::debug!(socketio.sid = %session.sid(), %error, "websocket error");
                    io.close_session(&session, DisconnectReason::TransportError);
                    break;
                }
            }
        }
    }
}
