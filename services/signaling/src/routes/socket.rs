//! The `/video-call` namespace's event handlers: JWT at CONNECT, rooms, signals, call end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use sb_auth::{AuthError, GuestClaims, GuestLinkError, Principal};
use sb_db::models::Appointment;
use sb_platform::EventCode;
use sb_socketio::{
    Ack, ConnectContext, ConnectError, DisconnectReason, Namespace, Refusal, Socket, SocketData,
    SocketIo,
};
use serde_json::{Map, Value, json};

use crate::actions::{self, CLUSTER_TIMEOUT, Change, Ending};
use crate::domain::{self, RoomStatus, Side};
use crate::state::AppState;
use crate::store;

pub const NAMESPACE: &str = "/video-call";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who a socket is (from its token, never from payloads) and the rooms it joined.
struct Member {
    identity: Identity,
    /// The `userId` others see: the user's id, or a guest link's own id (stable per link).
    user_id: String,
    rooms: Mutex<HashMap<String, Side>>,
}

/// What a socket authenticated with.
enum Identity {
    /// A platform JWT.
    User(Principal),
    /// A signaling guest link: a lead without an account, for one appointment's room.
    Guest(GuestClaims),
}

impl Identity {
    /// Whether this identity may join the room of `appointment`, and as which side.
    fn side_in(&self, appointment: &Appointment) -> Option<Side> {
        match self {
            Self::User(principal) => actions::may_access(principal, appointment)
                .then(|| actions::side(principal.user_id.as_uuid(), appointment)),
            Self::Guest(link) => (link.call == appointment.id
                && link.org.as_uuid() == appointment.org_id)
                .then_some(Side::Patient),
        }
    }
}

#[derive(Clone)]
pub struct VideoCall {
    state: AppState,
    /// Leaves waiting out the reconnect grace: (room, user) → generation.
    pending: Arc<Mutex<HashMap<(String, String), u64>>>,
    generation: Arc<AtomicU64>,
    /// Sockets of this instance in each room, for `sb_signaling_active_rooms`.
    local_rooms: Arc<Mutex<HashMap<String, usize>>>,
}

impl VideoCall {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            pending: Arc::default(),
            generation: Arc::default(),
            local_rooms: Arc::default(),
        }
    }

    /// A socket of this instance entered a room.
    fn entered(&self, room: &str) {
        let mut rooms = lock(&self.local_rooms);
        let count = rooms.entry(room.to_owned()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.state.metrics.active_rooms.inc();
        }
    }

    /// A socket of this instance left a room.
    fn exited(&self, room: &str) {
        let mut rooms = lock(&self.local_rooms);
        if let Some(count) = rooms.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                rooms.remove(room);
                self.state.metrics.active_rooms.dec();
            }
        }
    }
}

fn member(socket: &Socket) -> Option<&Member> {
    socket.data::<Member>()
}

/// The bearer token of a CONNECT: `auth.token`, else the `token` query parameter (older
/// clients), else the `Authorization` header.
fn token(ctx: &ConnectContext<'_>) -> Option<String> {
    ctx.auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(|t| t.trim_start_matches("Bearer ").to_owned())
        .or_else(|| ctx.handshake.query.get("token").cloned())
        .or_else(|| {
            ctx.handshake
                .authorization
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
}

/// Why an event was refused: a stable `code` for programs, a `message` for people. Sent as the
/// `error` event (`{event, code, message}`) and, when the client asked for one, as the ack
/// (`{ok: false, code, error}`).
#[derive(Debug)]
struct EventError {
    code: EventCode,
    message: String,
}

impl EventError {
    fn new(code: EventCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The payload is not what the event needs.
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(EventCode::InvalidPayload, message)
    }

    /// The database is away: the client should retry (what a 503 is to HTTP).
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(EventCode::Unavailable, message)
    }
}

impl From<&'static str> for EventError {
    fn from(message: &'static str) -> Self {
        Self::invalid(message)
    }
}

type Outcome = Result<Value, EventError>;

impl Namespace for VideoCall {
    fn connect(
        &self,
        ctx: ConnectContext<'_>,
    ) -> BoxFuture<'static, Result<SocketData, ConnectError>> {
        let verdict = match token(&ctx) {
            None => Err(ConnectError::new("unauthorized: no token")
                .with_code(EventCode::Unauthorized.as_str())),
            Some(token) => self.authenticate(&token).map(|(identity, user_id)| {
                Arc::new(Member {
                    identity,
                    user_id,
                    rooms: Mutex::new(HashMap::new()),
                }) as SocketData
            }),
        };
        Box::pin(async move { verdict })
    }

    fn event(
        &self,
        socket: Socket,
        event: String,
        args: Vec<Value>,
        ack: Option<Ack>,
    ) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            let payload = args.into_iter().next();
            match this.dispatch(&socket, &event, payload).await {
                Ok(reply) => {
                    if let Some(ack) = ack {
                        ack.send(&[reply]);
                    }
                }
                Err(EventError { code, message }) => {
                    socket.emit(
                        "error",
                        &[json!({"event": event, "code": code.as_str(), "message": message})],
                    );
                    if let Some(ack) = ack {
                        ack.send(&[json!({"ok": false, "code": code.as_str(), "error": message})]);
                    }
                }
            }
        })
    }

    /// Refused input says why with a stable code, like a refused event.
    fn refused(&self, refusal: &Refusal) -> Value {
        let code = match refusal {
            Refusal::RateLimited => EventCode::RateLimited,
            Refusal::Binary | Refusal::UnknownType => EventCode::UnsupportedPacket,
            Refusal::Invalid(_) => EventCode::InvalidPacket,
        };
        json!({"code": code.as_str(), "message": refusal.message()})
    }

    fn disconnect(&self, socket: Socket, _reason: DisconnectReason) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            let rooms: Vec<String> = member(&socket)
                .map(|m| lock(&m.rooms).keys().cloned().collect())
                .unwrap_or_default();
            for room in rooms {
                this.leave(&socket, &room, false).await;
            }
        })
    }
}

impl VideoCall {
    /// A platform JWT, else a signaling guest link; an expiry of either says `token_expired`.
    fn authenticate(&self, token: &str) -> Result<(Identity, String), ConnectError> {
        let jwt = match self.state.verifier.verify(token) {
            Ok(principal) => {
                let user_id = principal.user_id.as_uuid().to_string();
                return Ok((Identity::User(principal), user_id));
            }
            Err(error) => error,
        };
        let link = match self
            .state
            .guest_links
            .as_ref()
            .map(|l| l.verify_link(token))
        {
            Some(Ok(claims)) => {
                let user_id = claims.sub.to_string();
                return Ok((Identity::Guest(claims), user_id));
            }
            Some(Err(error)) => Some(error),
            None => None,
        };
        if jwt == AuthError::Expired || link == Some(GuestLinkError::Expired) {
            return Err(ConnectError::new("unauthorized: token expired")
                .with_code(EventCode::TokenExpired.as_str()));
        }
        let message = if link == Some(GuestLinkError::NotYetValid) {
            "unauthorized: the guest link is not open yet"
        } else {
            "unauthorized: invalid token"
        };
        Err(ConnectError::new(message).with_code(EventCode::Unauthorized.as_str()))
    }

    async fn dispatch(&self, socket: &Socket, event: &str, payload: Option<Value>) -> Outcome {
        let Some(Value::Object(mut payload)) = payload else {
            return Err(EventError::invalid("the payload must be an object"));
        };
        let Some(room) = payload
            .get("roomId")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Err(EventError::invalid("roomId must be a string"));
        };
        let me = member(socket).ok_or(EventError::new(
            EventCode::Unauthorized,
            "not authenticated",
        ))?;
        if event == "join-room" {
            return self.join(socket, me, &room).await;
        }
        let joined = lock(&me.rooms).contains_key(&room);
        if !joined {
            return Err(EventError::new(
                EventCode::NotInRoom,
                format!("not in room {room}"),
            ));
        }
        let base = |extra: Vec<(&str, Value)>| {
            let mut out = Map::new();
            out.insert("roomId".to_owned(), json!(room));
            out.insert("userId".to_owned(), json!(me.user_id));
            for (key, value) in extra {
                out.insert(key.to_owned(), value);
            }
            Value::Object(out)
        };
        match event {
            "leave-room" => {
                self.leave(socket, &room, true).await;
            }
            "webrtc-signal" => {
                // moved, not copied: a signal can be a whole SDP
                let signal = payload
                    .remove("signal")
                    .filter(|s| !s.is_null())
                    .ok_or("signal is required")?;
                match payload.get("to") {
                    None | Some(Value::Null) => {
                        socket.broadcast_to(
                            &room,
                            "webrtc-signal",
                            &[base(vec![("signal", signal)])],
                        );
                    }
                    Some(Value::String(to)) => {
                        let out = base(vec![("signal", signal), ("to", json!(to))]);
                        socket.io().emit_to(
                            NAMESPACE,
                            &[&format!("{room}:{to}")],
                            &[socket.id()],
                            "webrtc-signal",
                            &[out],
                        );
                    }
                    Some(_) => return Err(EventError::invalid("to must be a user id")),
                }
            }
            "screen-share-start" => {
                socket.broadcast_to(&room, "screen-share-started", &[base(vec![])])
            }
            "screen-share-stop" => {
                socket.broadcast_to(&room, "screen-share-stopped", &[base(vec![])])
            }
            "toggle-video" | "toggle-audio" => {
                let enabled = payload
                    .get("isEnabled")
                    .and_then(Value::as_bool)
                    .ok_or("isEnabled must be a boolean")?;
                let name = if event == "toggle-video" {
                    "video-toggled"
                } else {
                    "audio-toggled"
                };
                socket.broadcast_to(&room, name, &[base(vec![("isEnabled", json!(enabled))])]);
            }
            "end-call" => {
                // every instance tells its sockets in the room, then takes them out of it
                // (`actions::hang_up`), once the room reads Ended
                actions::change(
                    &self.state,
                    socket.io(),
                    &room,
                    Change::End(Ending::Call {
                        user: me.user_id.clone(),
                    }),
                )
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot end the room");
                    EventError::unavailable("the call could not be ended, retry")
                })?;
            }
            other => {
                return Err(EventError::new(
                    EventCode::UnknownEvent,
                    format!("unknown event {other}"),
                ));
            }
        }
        Ok(json!({"ok": true}))
    }

    async fn join(&self, socket: &Socket, me: &Member, room_id: &str) -> Outcome {
        let unavailable = |e: crate::error::SignalingError| {
            tracing::error!(error = %e, "join-room failed");
            EventError::unavailable("the room is unavailable, retry")
        };
        let mut conn = self.state.conn().await.map_err(unavailable)?;
        let room = store::by_room_id(&mut conn, room_id)
            .await
            .map_err(|e| unavailable(e.into()))?
            .ok_or_else(|| {
                EventError::new(EventCode::NotFound, format!("room {room_id} not found"))
            })?;
        // A room the caller may not see (a guest link: any room but its appointment's) answers
        // as a room that does not exist, as the REST routes do: its existence is not revealed.
        let not_found =
            || EventError::new(EventCode::NotFound, format!("room {room_id} not found"));
        let appointment = store::appointment(&mut conn, room.appointment_id)
            .await
            .map_err(|e| unavailable(e.into()))?
            .ok_or_else(not_found)?;
        let side = me.identity.side_in(&appointment).ok_or_else(not_found)?;
        drop(conn);
        if room.status == RoomStatus::Ended {
            // within the appointment's window (and not cancelled) the call resumes
            let now = chrono::Utc::now();
            if !actions::resumable(&self.state.config.guest_links, &appointment, now)
                .map_err(unavailable)?
            {
                return Err(EventError::new(EventCode::CallEnded, "the call has ended"));
            }
            actions::change(&self.state, socket.io(), room_id, Change::Resume)
                .await
                .map_err(unavailable)?;
        }
        let mut status = match room.status {
            RoomStatus::Ended => RoomStatus::Waiting,
            status => status,
        };
        let already = lock(&me.rooms).insert(room_id.to_owned(), side).is_some();
        if !already {
            self.entered(room_id);
        }
        socket.join(room_id);
        socket.join(&format!("{room_id}:{}", me.user_id));
        // An ending in flight holds the room's lock until it commits, and tells the room's
        // members after that: this read waits for it. Ended by then: this socket may not have
        // been in the room when the members were told, and may not stay. Not Ended: the ending
        // commits after this read, so it finds this socket in the room and tells it.
        let settled = match self.state.conn().await {
            Ok(mut conn) => store::settled_status(&mut conn, room_id)
                .await
                .map_err(|e| unavailable(e.into())),
            Err(e) => Err(unavailable(e)),
        };
        if !matches!(
            settled,
            Ok(Some(RoomStatus::Waiting | RoomStatus::InProgress))
        ) {
            if lock(&me.rooms).remove(room_id).is_some() {
                self.exited(room_id);
            }
            socket.leave(room_id);
            socket.leave(&format!("{room_id}:{}", me.user_id));
            settled?;
            return Err(EventError::new(EventCode::CallEnded, "the call has ended"));
        }
        if side == Side::Practitioner
            && let Identity::User(principal) = &me.identity
            && let Some(name) = principal
                .name
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty() && name.chars().count() <= 200)
        {
            // room views show the practitioner's name (the CRM shares only their id)
            let named = match self.state.conn().await {
                Ok(mut conn) => store::set_practitioner_name(&mut conn, room_id, name)
                    .await
                    .map_err(|e| unavailable(e.into())),
                Err(e) => Err(unavailable(e)),
            };
            named?;
        }
        // every instance reports its members of the room, whether this user has another socket
        // there, and whether it was waiting out this user's reconnect grace (which it cancels)
        let answers = socket
            .io()
            .gather(
                json!({"op": "join", "room": room_id, "user": me.user_id, "socket": socket.id()}),
                CLUSTER_TIMEOUT,
            )
            .await;
        let mut members: Vec<Value> = Vec::new();
        let (mut present_elsewhere, mut returning) = (false, false);
        for answer in &answers {
            present_elsewhere |= answer["present"].as_bool().unwrap_or(false);
            // back within the reconnect grace: the peer never saw this user leave
            returning |= answer["returning"].as_bool().unwrap_or(false);
            for entry in answer["members"].as_array().into_iter().flatten() {
                if !members.contains(entry) {
                    members.push(entry.clone());
                }
            }
        }
        let announce = !already && !returning && !present_elsewhere;
        if announce
            && let Some(updated) = actions::change(
                &self.state,
                socket.io(),
                room_id,
                Change::Present(side, true),
            )
            .await
            .map_err(unavailable)?
        {
            status = updated.status;
        }
        let ice = domain::ice_servers(&self.state.config.ice, &me.user_id, SystemTime::now());
        let joined = json!({
            "roomId": room_id,
            "userId": me.user_id,
            "role": side.as_str(),
            "status": status.as_str(),
            "appointmentId": room.appointment_id,
            "members": members,
            "iceServers": ice,
        });
        // The joiner hears `joined-room` before the others hear `user-joined`: their offer,
        // sent on `user-joined`, must not reach a joiner that has not set up its peer yet.
        socket.emit("joined-room", std::slice::from_ref(&joined));
        if announce {
            socket.broadcast_to(
                room_id,
                "user-joined",
                &[json!({"roomId": room_id, "userId": me.user_id, "role": side.as_str()})],
            );
        }
        // Every acknowledgement says `ok`; join-room's also carries what `joined-room` said.
        let mut ack = joined;
        if let Some(fields) = ack.as_object_mut() {
            fields.insert("ok".to_owned(), Value::Bool(true));
        }
        Ok(ack)
    }

    /// Leaves a room: at once when asked, after the reconnect grace when the connection dropped.
    async fn leave(&self, socket: &Socket, room_id: &str, explicit: bool) {
        let Some(me) = member(socket) else { return };
        let Some(side) = lock(&me.rooms).remove(room_id) else {
            return;
        };
        self.exited(room_id);
        socket.leave(room_id);
        socket.leave(&format!("{room_id}:{}", me.user_id));
        let user = me.user_id.clone();
        if self.present_anywhere(socket.io(), room_id, &user).await {
            return;
        }
        if explicit {
            self.announce_left(socket, room_id, &user, side).await;
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let key = (room_id.to_owned(), user.clone());
        lock(&self.pending).insert(key.clone(), generation);
        let this = self.clone();
        let socket = socket.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(this.state.config.reconnect_grace).await;
            let expired = {
                let mut pending = lock(&this.pending);
                if pending.get(&key) == Some(&generation) {
                    pending.remove(&key);
                    true
                } else {
                    false
                }
            };
            // still (or again) connected through another instance: not a leave
            if expired && !this.present_anywhere(socket.io(), &room_id, &user).await {
                this.announce_left(&socket, &room_id, &user, side).await;
            }
        });
    }

    /// Whether `user` has a socket in the room on any instance.
    async fn present_anywhere(&self, io: &SocketIo, room_id: &str, user: &str) -> bool {
        io.gather(
            json!({"op": "present", "room": room_id, "user": user}),
            CLUSTER_TIMEOUT,
        )
        .await
        .iter()
        .any(|answer| answer["present"].as_bool().unwrap_or(false))
    }

    /// This instance's answer to a cluster question (see [`SocketIo::gather`]): `join` (members,
    /// the user's presence through another socket, a reconnect grace cancelled), `present`, `end`.
    pub fn answer(&self, io: &SocketIo, request: &Value) -> Value {
        let (Some(op), Some(room)) = (request["op"].as_str(), request["room"].as_str()) else {
            return Value::Null;
        };
        let user = request["user"].as_str().unwrap_or_default();
        let joiner = request["socket"].as_str().unwrap_or_default();
        let peers = io.local_sockets(NAMESPACE, room);
        match op {
            "join" | "present" => {
                let mut members: Vec<Value> = Vec::new();
                let mut present = false;
                for peer in &peers {
                    let Some(m) = member(peer) else { continue };
                    if peer.id() != joiner && m.user_id == user {
                        present = true;
                    }
                    let role = lock(&m.rooms).get(room).map_or("observer", |s| s.as_str());
                    let entry = json!({"userId": m.user_id, "role": role});
                    if !members.contains(&entry) {
                        members.push(entry);
                    }
                }
                if op == "present" {
                    return json!({"present": present});
                }
                let returning = lock(&self.pending)
                    .remove(&(room.to_owned(), user.to_owned()))
                    .is_some();
                json!({"members": members, "present": present, "returning": returning})
            }
            "end" => {
                if let Some(notice) = request.get("call-ended") {
                    io.emit_local(
                        NAMESPACE,
                        &[room],
                        "call-ended",
                        std::slice::from_ref(notice),
                    );
                }
                for peer in peers {
                    if let Some(m) = member(&peer) {
                        if lock(&m.rooms).remove(room).is_some() {
                            self.exited(room);
                        }
                        peer.leave(room);
                        peer.leave(&format!("{room}:{}", m.user_id));
                    }
                }
                Value::Null
            }
            _ => Value::Null,
        }
    }

    async fn announce_left(&self, socket: &Socket, room_id: &str, user: &str, side: Side) {
        socket.io().emit_to(
            NAMESPACE,
            &[room_id],
            &[socket.id()],
            "user-left",
            &[json!({"roomId": room_id, "userId": user})],
        );
        if let Err(error) = actions::change(
            &self.state,
            socket.io(),
            room_id,
            Change::Present(side, false),
        )
        .await
        {
            tracing::error!(%error, room.id = room_id, "presence not recorded");
        }
    }
}
