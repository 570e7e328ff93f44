//! A client's connection to one namespace: emit, acknowledgements, rooms, rate budget.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::packet::{self, PacketType};
use crate::server::{Handshake, Session, SocketIo, lock};

/// What a namespace's connect hook attaches to a socket (the authenticated user, typically).
pub type SocketData = Arc<dyn Any + Send + Sync>;

/// Why a socket left its namespace (the reference server's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    TransportClose,
    TransportError,
    PingTimeout,
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    /// The socket sent more events than its budget allows.
    RateLimited,
    /// The client read its packets too slowly and its queue filled up.
    SlowClient,
    /// The server is stopping (SIGTERM): clients reconnect, to another instance.
    ServerShuttingDown,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::RateLimited => "rate limited",
            Self::SlowClient => "slow client",
            Self::ServerShuttingDown => "server shutting down",
        }
    }
}

/// Why an acknowledgement did not come back.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("the client did not acknowledge in time")]
    Timeout,
    #[error("the socket is disconnected")]
    Disconnected,
}

/// A client's socket in one namespace. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

pub(crate) struct SocketInner {
    pub(crate) id: String,
    pub(crate) nsp: String,
    pub(crate) session: Arc<Session>,
    pub(crate) io: SocketIo,
    pub(crate) data: SocketData,
    pub(crate) rooms: Mutex<HashSet<String>>,
    bucket: Mutex<Bucket>,
    acks: Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>,
    next_ack: AtomicU64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("nsp", &self.inner.nsp)
            .finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn new(io: SocketIo, session: Arc<Session>, nsp: String, data: SocketData) -> Self {
        let burst = f64::from(io.config().event_burst);
        Self {
            inner: Arc::new(SocketInner {
                id: crate::server::new_id(),
                nsp,
                session,
                io,
                data,
                rooms: Mutex::new(HashSet::new()),
                bucket: Mutex::new(Bucket {
                    tokens: burst,
                    last: Instant::now(),
                }),
                acks: Mutex::new(HashMap::new()),
                next_ack: AtomicU64::new(0),
            }),
        }
    }

    /// The socket's id (the `sid` of its CONNECT answer).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The Engine.IO session the socket rides on.
    pub fn session_id(&self) -> &str {
        self.inner.session.sid()
    }

    pub fn namespace(&self) -> &str {
        &self.inner.nsp
    }

    /// The data the namespace's connect hook attached, if it is a `T`.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.data.downcast_ref::<T>()
    }

    pub fn handshake(&self) -> &Handshake {
        self.inner.session.handshake()
    }

    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// Whether the socket is still in its namespace.
    pub fn connected(&self) -> bool {
        self.inner
            .session
            .socket(&self.inner.nsp)
            .is_some_and(|s| s.id() == self.id())
    }

    /// Sends an event to this client; false when it is gone.
    pub fn emit(&self, event: &str, args: &[Value]) -> bool {
        let text = packet::encode_event(&self.inner.nsp, event, args, None);
        self.inner.io.send(&self.inner.session, text)
    }

    /// Sends an event and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: &[Value],
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.acks).insert(id, tx);
        let text = packet::encode_event(&self.inner.nsp, event, args, Some(id));
        if !self.inner.io.send(&self.inner.session, text) {
            lock(&self.inner.acks).remove(&id);
            return Err(AckError::Disconnected);
        }
        let answer = tokio::time::timeout(timeout, rx).await;
        lock(&self.inner.acks).remove(&id);
        match answer {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }

    pub(crate) fn on_ack(&self, id: u64, args: Vec<Value>) {
        if let Some(tx) = lock(&self.inner.acks).remove(&id) {
            // the waiter may have timed out meanwhile: nothing to tell
            let _ = tx.send(args);
        }
    }

    /// Takes one event from the budget; false when it is spent.
    pub(crate) fn take_token(&self) -> bool {
        let config = self.inner.io.config();
        let mut bucket = lock(&self.inner.bucket);
        let now = Instant::now();
        let refill =
            now.duration_since(bucket.last).as_secs_f64() * f64::from(config.events_per_second);
        bucket.tokens = (bucket.tokens + refill).min(f64::from(config.event_burst));
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Joins a room (on every instance of the cluster: broadcasts reach it wherever they start).
    pub fn join(&self, room: &str) {
        if lock(&self.inner.rooms).insert(room.to_owned()) {
            self.inner.io.add_to_room(self, room);
        }
    }

    pub fn leave(&self, room: &str) {
        if lock(&self.inner.rooms).remove(room) {
            self.inner.io.remove_from_room(self, room);
        }
    }

    /// The rooms the socket is in (its own id included).
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.inner.rooms).iter().cloned().collect()
    }

    /// Sends an event to every socket of `room` in this namespace except this one, on every
    /// instance.
    pub fn broadcast_to(&self, room: &str, event: &str, args: &[Value]) {
        self.inner
            .io
            .emit_to(&self.inner.nsp, &[room], &[self.id()], event, args);
    }

    /// Removes the socket from its namespace, telling the client (`io server disconnect`).
    pub fn disconnect(&self) {
        self.inner
            .io
            .disconnect_socket(self, DisconnectReason::ServerNamespaceDisconnect, true);
    }
}

/// The acknowledgement a client asked for with an event.
#[derive(Debug)]
pub struct Ack {
    pub(crate) socket: Socket,
    pub(crate) id: u64,
}

impl Ack {
    /// Answers the client's callback with these arguments.
    pub fn send(self, args: &[Value]) -> bool {
        let text = packet::encode(
            PacketType::Ack,
            &self.socket.inner.nsp,
            Some(self.id),
            Some(&Value::Array(args.to_vec())),
        );
        self.socket.inner.io.send(&self.socket.inner.session, text)
    }
}
