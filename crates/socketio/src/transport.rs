//! The HTTP endpoints: handshake, long-polling, websocket and the upgrade between them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_http::ws::{Codec, Message, ProtocolError};
use actix_web::body::BodyStream;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use actix_ws::AggregatedMessage;
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio_util::codec::Encoder;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::metrics::Rejection;
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
        () = tokio::time::sleep(wait) => Some(ByteString::from_static("6")),
    };
    // the packets joined by the record separator, copied once into the body
    let mut body = String::new();
    let mut joined = 0;
    let mut push = |body: &mut String, packet: &str| {
        if joined > 0 {
            body.push(SEPARATOR);
        }
        joined += 1;
        body.push_str(packet);
    };
    // what the payload limit counts: the packets and a separator after the first
    let mut size = 0;
    if let Some(first) = first {
        size += first.len();
        push(&mut body, &first);
    }
    while size < io.config().max_payload {
        match rx.try_recv() {
            Ok(packet) => {
                size += packet.len() + 1;
                push(&mut body, &packet);
            }
            Err(_) => break,
        }
    }
    if session.closed.is_cancelled() {
        push(&mut body, "1");
    }
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
            io.count_rejected(Rejection::PayloadTooLarge);
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
    // actix-ws does the handshake and reads frames; frames out are written by `Outbound`
    let (response, _, stream) = match actix_ws::handle(req, body) {
        Ok(parts) => parts,
        Err(error) => return error.error_response(),
    };
    let max = io.config().max_payload;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let io = io.clone();
    let (control, control_rx) = mpsc::unbounded_channel();
    let session = match upgrading {
        Some(session) => {
            actix_web::rt::spawn(upgrade(io, session.clone(), control, stream));
            session
        }
        None => {
            let session = io.new_session(handshake(req, query));
            let _ = control.send(Out::Frame(Message::Text(
                io.open_packet(&session, false).into(),
            )));
            actix_web::rt::spawn(run(io, session.clone(), control, stream));
            session
        }
    };
    let outbound = Outbound {
        session: session.clone(),
        rx: None,
        control: control_rx,
        closed: Box::pin(session.closed.clone().cancelled_owned()),
        codec: Codec::new(),
        buf: BytesMut::new(),
        done: false,
    };
    response
        .set_body(BodyStream::new(outbound))
        .map_into_boxed_body()
}

type Stream = actix_ws::AggregatedMessageStream;

/// What the session's reader tells its websocket writer.
enum Out {
    /// A frame to send before the session's packets (OPEN, probe, pong, close).
    Frame(Message),
    /// The session's packet queue, once the transport owns it.
    Attach(OwnedMutexGuard<mpsc::Receiver<ByteString>>),
}

/// The outbound side of a websocket, polled by actix as the response body: every packet queued
/// since the last poll is framed into one buffer, so one wake-up is one write, with no task or
/// channel between the session's queue and the socket.
struct Outbound {
    session: Arc<Session>,
    rx: Option<OwnedMutexGuard<mpsc::Receiver<ByteString>>>,
    control: mpsc::UnboundedReceiver<Out>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
}

/// Bytes framed in one poll at most before actix gets them (it polls again at once).
const WRITE_BATCH: usize = 256 * 1024;

impl futures_util::Stream for Outbound {
    type Item = Result<Bytes, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut closing = false;
        while let Poll::Ready(out) = this.control.poll_recv(cx) {
            match out {
                Some(Out::Frame(message)) => {
                    closing = matches!(message, Message::Close(_));
                    this.codec.encode(message, &mut this.buf)?;
                    if closing {
                        break;
                    }
                }
                Some(Out::Attach(rx)) => this.rx = Some(rx),
                // the reader is gone; the close frame, if any, came before
                None => {
                    closing = this.rx.is_none();
                    break;
                }
            }
        }
        if !closing && let Some(rx) = this.rx.as_mut() {
            // checked first: what was queued before the close (a DISCONNECT, an error) still goes
            let cancelled = this.closed.as_mut().poll(cx).is_ready();
            let mut drained = false;
            while this.buf.len() < WRITE_BATCH {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(packet)) => {
                        this.codec.encode(Message::Text(packet), &mut this.buf)?;
                    }
                    Poll::Ready(None) | Poll::Pending => {
                        drained = true;
                        break;
                    }
                }
            }
            if cancelled && drained {
                // a stopping server says so (1001), as the reference server does
                let reason =
                    this.session
                        .going_away
                        .load(Ordering::SeqCst)
                        .then(|| actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Away,
                            description: Some(
                                DisconnectReason::ServerShuttingDown.as_str().to_owned(),
                            ),
                        });
                this.codec.encode(Message::Close(reason), &mut this.buf)?;
                closing = true;
            }
        }
        if closing {
            this.done = true;
        }
        if !this.buf.is_empty() {
            return Poll::Ready(Some(Ok(this.buf.split().freeze())));
        }
        if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Upgrade of a polling session: `2probe`/`3probe`, then `5` from the client.
async fn upgrade(
    io: SocketIo,
    session: Arc<Session>,
    control: mpsc::UnboundedSender<Out>,
    mut stream: Stream,
) {
    let timeout = io.config().ping_timeout;
    let probe = tokio::time::timeout(timeout, stream.next()).await;
    let probed = matches!(probe, Ok(Some(Ok(AggregatedMessage::Text(ref t)))) if &**t == "2probe");
    if !probed
        || control
            .send(Out::Frame(Message::Text("3probe".into())))
            .is_err()
    {
        let _ = control.send(Out::Frame(Message::Close(None)));
        return;
    }
    // release the pending long-poll so the client can switch
    io.send(&session, ByteString::from_static("6"));
    let done = tokio::time::timeout(timeout, stream.next()).await;
    if !matches!(done, Ok(Some(Ok(AggregatedMessage::Text(ref t)))) if &**t == "5") {
        let _ = control.send(Out::Frame(Message::Close(None)));
        return;
    }
    session.upgraded.store(true, Ordering::SeqCst);
    run(io, session, control, stream).await;
}

/// Carries a session over a websocket until either side closes it.
async fn run(
    io: SocketIo,
    session: Arc<Session>,
    control: mpsc::UnboundedSender<Out>,
    mut stream: Stream,
) {
    // the queue is free once a pending long-poll has answered
    let rx = tokio::select! {
        rx = session.rx.clone().lock_owned() => rx,
        () = session.closed.cancelled() => {
            let _ = control.send(Out::Frame(Message::Close(None)));
            return;
        }
    };
    if control.send(Out::Attach(rx)).is_err() {
        io.close_session(&session, DisconnectReason::TransportClose);
        return;
    }
    loop {
        tokio::select! {
            () = session.closed.cancelled() => break,
            message = stream.next() => match message {
                Some(Ok(AggregatedMessage::Text(text))) => io.on_engine_text(&session, &text).await,
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    let _ = control.send(Out::Frame(Message::Pong(bytes)));
                }
                Some(Ok(AggregatedMessage::Binary(_))) => io.on_binary(&session),
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) | None => {
                    io.close_session(&session, DisconnectReason::TransportClose);
                    break;
                }
                Some(Err(error)) => {
                    if is_too_large(&error) {
                        io.count_rejected(Rejection::PayloadTooLarge);
                    }
                    tracing::debug!(socketio.sid = %session.sid(), %error, "websocket error");
                    let reason = if peer_gone(&error) {
                        DisconnectReason::TransportClose
                    } else {
                        DisconnectReason::TransportError
                    };
                    io.close_session(&session, reason);
                    break;
                }
            }
        }
    }
}

/// The client's connection ended (a close frame can be lost in the same read as the end of the
/// stream): a close, as the reference server reports it, not a transport error.
fn peer_gone(error: &ProtocolError) -> bool {
    let ProtocolError::Io(io) = error else {
        return false;
    };
    matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
    ) || io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<actix_http::error::PayloadError>())
        .is_some_and(|e| matches!(e, actix_http::error::PayloadError::Incomplete(_)))
}

/// A frame, or a message of continuation frames, over `max_payload`.
fn is_too_large(error: &actix_ws::ProtocolError) -> bool {
    match error {
        actix_ws::ProtocolError::Overflow => true,
        // how actix-ws reports a message of continuations over its limit
        actix_ws::ProtocolError::Io(io) => io.to_string().contains("maximum continuation size"),
        _ => false,
    }
}
