//! The server: Engine.IO sessions, namespace dispatch, heartbeats, rooms and broadcasts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytestring::ByteString;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::{Rejection, ServerMetrics};
use crate::packet::{self, EnginePacket, Packet, PacketType, ParseError};
use crate::socket::{Ack, DisconnectReason, Socket, SocketData};

/// Locks a mutex; a panic elsewhere while holding it leaves plain data that is still usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What the client sent when it opened its session.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// Query parameters of the first request (`token` for clients that cannot send `auth`).
    pub query: HashMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// What a namespace's connect hook is given.
#[derive(Debug)]
pub struct ConnectContext<'a> {
    /// The CONNECT packet's `auth` payload.
    pub auth: Option<Value>,
    pub handshake: &'a Handshake,
}

/// A refused CONNECT: the client's `connect_error` gets this message, and the code if any.
#[derive(Debug, Clone)]
pub struct ConnectError {
    pub message: String,
    /// A stable code for programs: sent as `code` beside `message`, and as `data.code`, where
    /// the official JavaScript client exposes it (`err.data.code`; it keeps only `message` and
    /// `data` of the packet).
    pub code: Option<String>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
        }
    }

    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The CONNECT_ERROR packet's payload.
    fn payload(&self) -> Value {
        match &self.code {
            None => json!({"message": self.message}),
            Some(code) => json!({"message": self.message, "code": code, "data": {"code": code}}),
        }
    }
}

/// Client input the server refused before any namespace handler saw it. The socket is told with
/// an `error` event whose payload its namespace chooses ([`Namespace::refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// More events than the socket's budget allows: it is disconnected after the notice.
    RateLimited,
    /// A binary packet (BINARY_EVENT, BINARY_ACK, or a binary frame): this server speaks text
    /// packets only. The socket stays.
    Binary,
    /// A packet type the protocol does not have, or one a client never sends. The socket stays.
    UnknownType,
    /// A packet whose header is readable and whose body is not. The socket stays.
    Invalid(ParseError),
}

impl Refusal {
    /// The notice's `message`, for people.
    pub fn message(&self) -> String {
        match self {
            Self::RateLimited => "rate limit exceeded".to_owned(),
            Self::Binary => "binary packets are not supported".to_owned(),
            Self::UnknownType => "unknown packet type".to_owned(),
            Self::Invalid(error) => format!("invalid packet: {error}"),
        }
    }
}

/// The behaviour of one namespace.
pub trait Namespace: Send + Sync + 'static {
    /// Accepts (with the data to attach) or refuses a CONNECT.
    fn connect(
        &self,
        ctx: ConnectContext<'_>,
    ) -> BoxFuture<'static, Result<SocketData, ConnectError>>;

    /// Runs once the client has its CONNECT answer.
    fn connected(&self, _socket: Socket) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// Handles one event. Events of a session are handled one after the other in the order they
    /// were sent (signals must not overtake each other), so the session's next packet waits for
    /// this future: spawn whatever waits on the client (`emit_with_ack`).
    fn event(
        &self,
        socket: Socket,
        event: String,
        args: Vec<Value>,
        ack: Option<Ack>,
    ) -> BoxFuture<'static, ()>;

    /// Runs after the socket has left the namespace and all its rooms.
    fn disconnect(&self, _socket: Socket, _reason: DisconnectReason) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// The payload of the `error` event that tells a socket of this namespace why its input was
    /// refused (`{message}` unless the namespace adds to it, e.g. a stable code).
    fn refused(&self, refusal: &Refusal) -> Value {
        json!({"message": refusal.message()})
    }
}

/// One client's Engine.IO session, whichever transport carries it.
pub(crate) struct Session {
    sid: String,
    /// Encoded Engine.IO packets: a broadcast's packet is encoded once and shared by its
    /// recipients' queues (a `ByteString` clone is a reference count, and it is the type of
    /// actix's websocket text frame, so it is not copied on the way there either).
    tx: mpsc::Sender<ByteString>,
    pub(crate) rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ByteString>>>,
    pub(crate) upgraded: AtomicBool,
    pub(crate) closed: CancellationToken,
    closing: AtomicBool,
    /// Set when the server closes the session because it is stopping: the websocket's close
    /// frame then says so (1001 Going Away).
    pub(crate) going_away: AtomicBool,
    pub(crate) pong: Notify,
    /// Binary attachments still expected after a refused binary packet: they are skipped, the
    /// packet was already answered.
    attachments: std::sync::atomic::AtomicUsize,
    sockets: Mutex<HashMap<String, Socket>>,
    handshake: Handshake,
}

impl Session {
    pub(crate) fn sid(&self) -> &str {
        &self.sid
    }

    pub(crate) fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    pub(crate) fn socket(&self, nsp: &str) -> Option<Socket> {
        lock(&self.sockets).get(nsp).cloned()
    }
}

/// A Socket.IO server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// Tells this instance's broadcasts apart from the cluster's.
    uid: String,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    rooms: Mutex<Rooms>,
    cluster: OnceLock<Cluster>,
    metrics: OnceLock<ServerMetrics>,
    cluster_handler: Option<ClusterHandler>,
}

/// Answers the cluster's questions on one instance (see [`SocketIo::gather`]).
pub type ClusterHandler = Arc<dyn Fn(&SocketIo, Value) -> Value + Send + Sync>;

impl Rooms {
    fn room(&self, nsp: &str, room: &str) -> Option<&HashMap<String, Socket>> {
        self.members.get(nsp)?.get(room)
    }

    fn remove(&mut self, nsp: &str, room: &str, socket: &str) {
        let Some(rooms) = self.members.get_mut(nsp) else {
            return;
        };
        if let Some(members) = rooms.get_mut(room) {
            members.remove(socket);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

#[derive(Default)]
struct Rooms {
    /// namespace → room → socket id → socket (looked up by `&str`: no key is allocated to find
    /// a room; the members' sockets are at hand, not looked up again, while the lock is held)
    members: HashMap<String, HashMap<String, HashMap<String, Socket>>>,
    /// socket id → socket, for this instance's sockets
    sockets: HashMap<String, Socket>,
}

/// Builds a [`SocketIo`] with its namespaces.
pub struct Builder {
    config: Config,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    cluster_handler: Option<ClusterHandler>,
}

impl Builder {
    pub fn namespace(mut self, path: &str, handler: impl Namespace) -> Self {
        self.namespaces.insert(path.to_owned(), Arc::new(handler));
        self
    }

    /// How this instance answers [`SocketIo::gather`] requests (from any instance, itself
    /// included). It runs on the cluster's task: keep it short and non-blocking.
    pub fn on_cluster_request(
        mut self,
        handler: impl Fn(&SocketIo, Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.cluster_handler = Some(Arc::new(handler));
        self
    }

    pub fn build(self) -> SocketIo {
        SocketIo {
            inner: Arc::new(Inner {
                config: self.config,
                uid: new_id(),
                namespaces: self.namespaces,
                sessions: Mutex::new(HashMap::new()),
                rooms: Mutex::new(Rooms::default()),
                cluster: OnceLock::new(),
                metrics: OnceLock::new(),
                cluster_handler: self.cluster_handler,
            }),
        }
    }
}

impl SocketIo {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            namespaces: HashMap::new(),
            cluster_handler: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Registers the server's metrics (`sb_socketio_*`, labelled `service`) in a service's
    /// registry; the server counts nothing before.
    pub fn register_metrics(
        &self,
        registry: &prometheus::Registry,
        service: &str,
    ) -> Result<(), prometheus::Error> {
        let metrics = ServerMetrics::register(
            registry,
            service,
            self.inner.namespaces.keys().map(String::as_str),
        )?;
        // a second registration in the same registry already failed above as a duplicate
        let _ = self.inner.metrics.set(metrics);
        Ok(())
    }

    pub(crate) fn metrics(&self) -> Option<&ServerMetrics> {
        self.inner.metrics.get()
    }

    pub(crate) fn count_rejected(&self, rejection: Rejection) {
        if let Some(metrics) = self.metrics() {
            metrics.rejected(rejection);
        }
    }

    /// Open Engine.IO sessions on this instance.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// This instance's sockets in a room of a namespace.
    pub fn local_sockets(&self, nsp: &str, room: &str) -> Vec<Socket> {
        lock(&self.inner.rooms)
            .room(nsp, room)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends an event to the sockets of a namespace in any of `rooms` (all of its sockets when
    /// `rooms` is empty) except those in `except`, on every instance of the cluster.
    pub fn emit_to(&self, nsp: &str, rooms: &[&str], except: &[&str], event: &str, args: &[Value]) {
        // exact-sized (a shrink in place): the packet moves into a lone recipient's frame without
        // a second allocation, and a clone for more recipients shares it
        let text = ByteString::from(packet::encode_event(nsp, event, args, None).into_boxed_str());
        if let Some(cluster) = self.inner.cluster.get() {
            cluster.publish(&self.inner.uid, nsp, rooms, except, &text);
        }
        self.deliver_local(nsp, rooms, except, text);
    }

    /// Emits to the sockets of `rooms` on this instance only. For a cluster question's answer
    /// that must deliver an event and then act on the same sockets, in that order, on every
    /// instance: [`Self::emit_to`] would relay the event on another subject, which another
    /// instance may handle after the question.
    pub fn emit_local(&self, nsp: &str, rooms: &[&str], event: &str, args: &[Value]) {
        let text = packet::encode_event(nsp, event, args, None);
        self.deliver_local(nsp, rooms, &[], text.into_boxed_str().into());
    }

    pub(crate) fn uid(&self) -> &str {
        &self.inner.uid
    }

    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    /// This instance's answer to a cluster question (`null` without a handler).
    pub(crate) fn answer_locally(&self, request: Value) -> Value {
        match &self.inner.cluster_handler {
            Some(handler) => handler(self, request),
            None => Value::Null,
        }
    }

    pub(crate) fn set_cluster(&self, cluster: Cluster) -> bool {
        self.inner.cluster.set(cluster).is_ok()
    }

    /// Queues one encoded packet for the sessions of `rooms` (of the namespace when empty). The
    /// rooms' lock is held only to collect the recipients, not while their queues are written.
    pub(crate) fn deliver_local<S: AsRef<str>>(
        &self,
        nsp: &str,
        rooms: &[S],
        except: &[S],
        text: ByteString,
    ) {
        let excluded = |id: &str| except.iter().any(|e| e.as_ref() == id);
        let targets: Vec<Arc<Session>> = {
            let state = lock(&self.inner.rooms);
            let mut sessions: Vec<Arc<Session>> = Vec::new();
            if let [room] = rooms {
                // a session has one socket per namespace: a room's members are distinct sessions
                if let Some(members) = state.room(nsp, room.as_ref()) {
                    sessions.reserve(members.len());
                    for (id, socket) in members {
                        if !excluded(id) {
                            sessions.push(socket.inner.session.clone());
                        }
                    }
                }
            } else if rooms.is_empty() {
                for (id, socket) in &state.sockets {
                    if socket.namespace() == nsp && !excluded(id) {
                        sessions.push(socket.inner.session.clone());
                    }
                }
            } else {
                // a socket in several of the rooms gets the packet once
                let mut seen: HashSet<*const Session> = HashSet::new();
                for room in rooms {
                    for (id, socket) in state.room(nsp, room.as_ref()).into_iter().flatten() {
                        if !excluded(id) && seen.insert(Arc::as_ptr(&socket.inner.session)) {
                            sessions.push(socket.inner.session.clone());
                        }
                    }
                }
            }
            sessions
        };
        // the last recipient takes the packet itself (a relay's one peer: no clone at all)
        if let Some((last, others)) = targets.split_last() {
            for session in others {
                self.send(session, text.clone());
            }
            self.send(last, text);
        }
    }

    pub(crate) fn add_to_room(&self, socket: &Socket, room: &str) {
        let mut rooms = lock(&self.inner.rooms);
        let namespace = match rooms.members.get_mut(socket.namespace()) {
            Some(namespace) => namespace,
            None => rooms
                .members
                .entry(socket.namespace().to_owned())
                .or_default(),
        };
        namespace
            .entry(room.to_owned())
            .or_default()
            .insert(socket.id().to_owned(), socket.clone());
    }

    pub(crate) fn remove_from_room(&self, socket: &Socket, room: &str) {
        lock(&self.inner.rooms).remove(socket.namespace(), room, socket.id());
    }

    /// Queues an Engine.IO packet for a session; a client whose queue is full is dropped.
    pub(crate) fn send(&self, session: &Arc<Session>, text: impl Into<ByteString>) -> bool {
        match session.tx.try_send(text.into()) {
            Ok(()) => {
                if let Some(metrics) = self.metrics() {
                    metrics.packets_out(1);
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(socketio.sid = %session.sid, "client too slow, closing its session");
                self.close_session(session, DisconnectReason::SlowClient);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub(crate) fn session(&self, sid: &str) -> Option<Arc<Session>> {
        lock(&self.inner.sessions).get(sid).cloned()
    }

    /// Opens a session and starts its heartbeat.
    pub(crate) fn new_session(&self, handshake: Handshake) -> Arc<Session> {
        let (tx, rx) = mpsc::channel(self.inner.config.outbound_buffer.max(8));
        let session = Arc::new(Session {
            sid: new_id(),
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            upgraded: AtomicBool::new(false),
            closed: CancellationToken::new(),
            going_away: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            pong: Notify::new(),
            attachments: std::sync::atomic::AtomicUsize::new(0),
            sockets: Mutex::new(HashMap::new()),
            handshake,
        });
        lock(&self.inner.sessions).insert(session.sid.clone(), session.clone());
        tokio::spawn(heartbeat(self.clone(), session.clone()));
        session
    }

    /// The Engine.IO OPEN packet of a session.
    pub(crate) fn open_packet(&self, session: &Session, upgrades: bool) -> String {
        let config = &self.inner.config;
        let upgrades: &[&str] = if upgrades { &["websocket"] } else { &[] };
        format!(
            "0{}",
            json!({
                "sid": session.sid,
                "upgrades": upgrades,
                "pingInterval": config.ping_interval.as_millis(),
                "pingTimeout": config.ping_timeout.as_millis(),
                "maxPayload": config.max_payload,
            })
        )
    }

    /// Graceful shutdown: every session of this instance gets an Engine.IO CLOSE packet and a
    /// websocket close frame 1001 `server shutting down`, so clients see why and reconnect (to
    /// another instance) instead of waiting for a ping timeout; the namespaces' disconnect
    /// handlers run with [`DisconnectReason::ServerShuttingDown`]. Returns how many were open.
    pub fn close_all(&self) -> usize {
        let sessions: Vec<Arc<Session>> = lock(&self.inner.sessions).values().cloned().collect();
        for session in &sessions {
            session.going_away.store(true, Ordering::SeqCst);
            // Engine.IO CLOSE: the client reports `transport close` and reconnects.
            self.send(session, ByteString::from_static("1"));
            self.close_session(session, DisconnectReason::ServerShuttingDown);
        }
        sessions.len()
    }

    /// Ends a session: its sockets leave their namespaces, its transport closes.
    pub(crate) fn close_session(&self, session: &Arc<Session>, reason: DisconnectReason) {
        if session.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.inner.sessions).remove(&session.sid);
        let sockets: Vec<Socket> = lock(&session.sockets).drain().map(|(_, s)| s).collect();
        for socket in sockets {
            self.forget_socket(&socket, reason);
        }
        session.closed.cancel();
    }

    /// Removes a socket from its namespace; `notify` tells the client with a DISCONNECT packet.
    pub(crate) fn disconnect_socket(
        &self,
        socket: &Socket,
        reason: DisconnectReason,
        notify: bool,
    ) {
        let session = &socket.inner.session;
        let removed = {
            let mut sockets = lock(&session.sockets);
            match sockets.get(socket.namespace()) {
                Some(s) if s.id() == socket.id() => sockets.remove(socket.namespace()).is_some(),
                _ => false,
            }
        };
        if !removed {
            return;
        }
        if notify {
            self.send(
                session,
                packet::encode(PacketType::Disconnect, socket.namespace(), None, None),
            );
        }
        self.forget_socket(socket, reason);
        // the server let the client go: a session left with no namespace has no use
        if notify && lock(&session.sockets).is_empty() {
            self.close_session(session, reason);
        }
    }

    fn forget_socket(&self, socket: &Socket, reason: DisconnectReason) {
        {
            let mut rooms = lock(&self.inner.rooms);
            rooms.sockets.remove(socket.id());
            for room in lock(&socket.inner.rooms).iter() {
                rooms.remove(socket.namespace(), room, socket.id());
            }
        }
        if let Some(metrics) = self.metrics() {
            metrics.connected(socket.namespace(), -1);
            metrics.disconnect(reason);
        }
        if let Some(handler) = self.inner.namespaces.get(socket.namespace()) {
            tokio::spawn(handler.disconnect(socket.clone(), reason));
        }
    }

    /// Handles one Engine.IO packet from a client.
    pub(crate) async fn on_engine_text(&self, session: &Arc<Session>, text: &str) {
        if let Some(metrics) = self.metrics() {
            metrics.packet_in();
        }
        match EnginePacket::parse(text) {
            Ok(EnginePacket::Ping(data)) => {
                self.send(session, format!("3{data}"));
            }
            Ok(EnginePacket::Pong(_)) => session.pong.notify_one(),
            Ok(EnginePacket::Message(message)) => self.on_message(session, message).await,
            Ok(EnginePacket::Close) => {
                self.close_session(session, DisconnectReason::TransportClose)
            }
            Ok(EnginePacket::Upgrade | EnginePacket::Noop) => {}
            Ok(EnginePacket::Binary) => self.on_binary(session),
            Err(_) => {
                self.count_rejected(Rejection::BadPacket);
                self.close_session(session, DisconnectReason::TransportError);
            }
        }
    }

    async fn on_message(&self, session: &Arc<Session>, message: &str) {
        match Packet::parse(message) {
            Err(bad) => {
                self.count_rejected(Rejection::BadPacket);
                let refusal = match bad.error {
                    ParseError::Binary => {
                        let expected = packet::binary_attachments(message).unwrap_or(0);
                        session.attachments.store(expected, Ordering::SeqCst);
                        Refusal::Binary
                    }
                    ParseError::UnknownType => Refusal::UnknownType,
                    error => Refusal::Invalid(error),
                };
                let nsp = bad.nsp.as_deref().unwrap_or("/");
                self.refuse(session, Some(nsp), &refusal);
            }
            Ok(Packet::Connect { nsp, auth }) => self.on_connect(session, nsp, auth).await,
            Ok(Packet::Disconnect { nsp }) => {
                if let Some(socket) = session.socket(&nsp) {
                    self.disconnect_socket(
                        &socket,
                        DisconnectReason::ClientNamespaceDisconnect,
                        false,
                    );
                }
            }
            Ok(Packet::Event {
                nsp,
                id,
                event,
                args,
            }) => {
                let Some(socket) = session.socket(&nsp) else {
                    return;
                };
                if !socket.take_token() {
                    self.count_rejected(Rejection::RateLimit);
                    self.tell_refused(&socket, &Refusal::RateLimited);
                    self.disconnect_socket(&socket, DisconnectReason::RateLimited, true);
                    return;
                }
                let Some(handler) = self.inner.namespaces.get(&nsp).cloned() else {
                    return;
                };
                let ack = id.map(|id| Ack {
                    socket: socket.clone(),
                    id,
                });
                handler.event(socket, event, args, ack).await;
            }
            Ok(Packet::Ack { nsp, id, args }) => {
                if let Some(socket) = session.socket(&nsp) {
                    socket.on_ack(id, args);
                }
            }
        }
    }

    /// A binary frame (or `b` packet): an attachment of a binary packet already refused is
    /// skipped; any other is refused.
    pub(crate) fn on_binary(&self, session: &Arc<Session>) {
        let skipped = session
            .attachments
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !skipped {
            self.count_rejected(Rejection::BadPacket);
            self.refuse(session, None, &Refusal::Binary);
        }
    }

    /// Tells the session's socket in `nsp` why its input was refused; every socket of the
    /// session when it has none there (or no namespace is known), since a client ignores
    /// packets of a namespace it has not joined. Logged when the session has no socket at all.
    fn refuse(&self, session: &Arc<Session>, nsp: Option<&str>, refusal: &Refusal) {
        let targets: Vec<Socket> = match nsp.and_then(|nsp| session.socket(nsp)) {
            Some(socket) => vec![socket],
            None => lock(&session.sockets).values().cloned().collect(),
        };
        if targets.is_empty() {
            tracing::debug!(socketio.sid = %session.sid, refusal = %refusal.message(), "refused packet before any namespace");
        }
        for socket in &targets {
            self.tell_refused(socket, refusal);
        }
    }

    fn tell_refused(&self, socket: &Socket, refusal: &Refusal) {
        let notice = match self.inner.namespaces.get(socket.namespace()) {
            Some(handler) => handler.refused(refusal),
            None => json!({"message": refusal.message()}),
        };
        socket.emit("error", &[notice]);
    }

    async fn on_connect(&self, session: &Arc<Session>, nsp: String, auth: Option<Value>) {
        let Some(handler) = self.inner.namespaces.get(&nsp).cloned() else {
            self.count_rejected(Rejection::ConnectError);
            self.send(
                session,
                packet::encode(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    Some(&json!({"message": "Invalid namespace"})),
                ),
            );
            return;
        };
        if session.socket(&nsp).is_some() {
            return;
        }
        let verdict = handler
            .connect(ConnectContext {
                auth,
                handshake: &session.handshake,
            })
            .await;
        match verdict {
            Ok(data) => {
                if session.closed.is_cancelled() {
                    return;
                }
                let socket = Socket::new(self.clone(), session.clone(), nsp.clone(), data);
                lock(&session.sockets).insert(nsp.clone(), socket.clone());
                lock(&self.inner.rooms)
                    .sockets
                    .insert(socket.id().to_owned(), socket.clone());
                socket.join(socket.id());
                if let Some(metrics) = self.metrics() {
                    metrics.connected(&nsp, 1);
                }
                self.send(
                    session,
                    packet::encode(
                        PacketType::Connect,
                        &nsp,
                        None,
                        Some(&json!({"sid": socket.id()})),
                    ),
                );
                handler.connected(socket).await;
            }
            Err(refusal) => {
                self.count_rejected(Rejection::ConnectError);
                self.send(
                    session,
                    packet::encode(
                        PacketType::ConnectError,
                        &nsp,
                        None,
                        Some(&refusal.payload()),
                    ),
                );
            }
        }
    }
}

/// Pings every `ping_interval` and closes the session when a pong is late; closes a session
/// that joined no namespace within `connect_timeout`.
async fn heartbeat(io: SocketIo, session: Arc<Session>) {
    let config = io.config().clone();
    let connect_deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut connect_checked = false;
    loop {
        let next_ping = tokio::time::sleep(config.ping_interval);
        let connect_check = tokio::time::sleep_until(connect_deadline);
        tokio::select! {
            () = session.closed.cancelled() => return,
            () = next_ping => {}
            () = connect_check, if !connect_checked => {
                connect_checked = true;
                if lock(&session.sockets).is_empty() {
                    io.close_session(&session, DisconnectReason::TransportClose);
                    return;
                }
                continue;
            }
        }
        if !io.send(&session, ByteString::from_static("2")) {
            return;
        }
        tokio::select! {
            () = session.closed.cancelled() => return,
            () = session.pong.notified() => {}
            () = tokio::time::sleep(config.ping_timeout) => {
                io.close_session(&session, DisconnectReason::PingTimeout);
                return;
            }
        }
    }
}
