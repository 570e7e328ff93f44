//! A fake LiveKit server for tests: the Twirp server API (`POST /twirp/livekit.RoomService/*`,
//! `/twirp/livekit.Egress/*`, protobuf or JSON bodies) with the Bearer JWT checked per method the
//! way the real server does (roomCreate, roomList, roomAdmin for the token's room, roomRecord), an
//! in-memory room/participant/egress state, a log of calls, and injectable errors and latency.
//! Tokens are verified with the LiveKit SDK's own verifier, not the adapter under test. Like the
//! server, it closes a room that stays empty past its timeout (see [`DEFAULT_EMPTY_TIMEOUT_SECS`]).
//!
//! Audio routing is modelled the way the SFU does it: a participant who may subscribe is
//! subscribed to every track published in its room (the client SDKs' auto-subscribe), whatever
//! joined or published first; `UpdateSubscriptions` adds or removes subscriptions, and
//! `UpdateParticipant` applies permission changes (no subscribe: every subscription dropped;
//! no publish or a source no longer allowed: the tracks are unpublished). Tests drive clients
//! with [`FakeLiveKit::connect`] (a participant token's grants) or [`FakeLiveKit::join`], and ask
//! [`FakeLiveKit::hears`] who hears whom.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use livekit_api::access_token::{AccessToken, Claims, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use sha2::{Digest, Sha256};

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub service: String,
    pub method: String,
    /// The room the request named, if any.
    pub room: String,
    pub json: bool,
}

/// The server's `room.empty_timeout` default: a room created with `empty_timeout: 0` that nobody
/// joins is closed this long after its creation (livekit-server `pkg/config`).
pub const DEFAULT_EMPTY_TIMEOUT_SECS: u32 = 300;
/// The server's `room.departure_timeout` default: a room everyone has left is closed this long
/// after the last participant left.
pub const DEFAULT_DEPARTURE_TIMEOUT_SECS: u32 = 20;
/// How often the server looks for idle rooms (livekit-server's `backgroundWorker` room ticker).
const IDLE_ROOM_CHECK: Duration = Duration::from_secs(1);

/// When a room was created and when people came and went, for closing it once idle.
struct Lifetime {
    created: Instant,
    first_joined: Option<Instant>,
    last_left: Option<Instant>,
}

impl Lifetime {
    fn new() -> Self {
        Self {
            created: Instant::now(),
            first_joined: None,
            last_left: None,
        }
    }
}

#[derive(Default)]
struct State {
    rooms: BTreeMap<String, proto::Room>,
    /// Per room in `rooms`.
    lifetimes: BTreeMap<String, Lifetime>,
    /// Rooms closed for being idle, oldest first (bounded: the last [`CLOSED_KEPT`]).
    closed: std::collections::VecDeque<String>,
    participants: BTreeMap<String, Vec<proto::ParticipantInfo>>,
    /// room → subscriber identity → track sids it receives.
    subscriptions: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    egress: Vec<proto::EgressInfo>,
    egress_requests: Vec<proto::RoomCompositeEgressRequest>,
    calls: Vec<RecordedCall>,
    /// method → (twirp code, remaining count)
    failures: BTreeMap<String, (String, usize)>,
    latency: Duration,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State>>,
    verifier: Arc<TokenVerifier>,
}

/// How many closed room names [`FakeLiveKit::closed_rooms`] remembers.
const CLOSED_KEPT: usize = 1024;

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// livekit-server's `Room.CloseIfEmpty`: a room with nobody in it closes `departure_timeout`
    /// after the last participant left when someone joined and left, otherwise `empty_timeout`
    /// after its creation.
    fn close_idle_rooms(&mut self, now: Instant) {
        let idle: Vec<String> = self
            .rooms
            .iter()
            .filter(|(name, _)| self.participants.get(*name).is_none_or(Vec::is_empty))
            .filter(|(name, room)| {
                let Some(lifetime) = self.lifetimes.get(*name) else {
                    return false;
                };
                let (since, timeout) = match (lifetime.first_joined, lifetime.last_left) {
                    (Some(_), Some(left)) => (left, room.departure_timeout),
                    _ => (lifetime.created, room.empty_timeout),
                };
                now.saturating_duration_since(since) >= Duration::from_secs(timeout.into())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in idle {
            self.rooms.remove(&name);
            self.lifetimes.remove(&name);
            self.participants.remove(&name);
            self.subscriptions.remove(&name);
            if self.closed.len() == CLOSED_KEPT {
                self.closed.pop_front();
            }
            self.closed.push_back(name);
        }
    }

    fn joined(&mut self, room: &str) {
        if let Some(lifetime) = self.lifetimes.get_mut(room) {
            lifetime.first_joined.get_or_insert_with(Instant::now);
        }
    }

    fn left(&mut self, room: &str) {
        if let Some(lifetime) = self.lifetimes.get_mut(room) {
            lifetime.last_left = Some(Instant::now());
        }
    }

    fn participant(&self, room: &str, identity: &str) -> Option<&proto::ParticipantInfo> {
        self.participants
            .get(room)?
            .iter()
            .find(|p| p.identity == identity)
    }

    fn may_subscribe(&self, room: &str, identity: &str) -> bool {
        self.participant(room, identity)
            .and_then(|p| p.permission.as_ref())
            .is_some_and(|p| p.can_subscribe)
    }

    /// (publisher identity, track) of every track published in `room`.
    fn tracks(&self, room: &str) -> Vec<(String, proto::TrackInfo)> {
        self.participants
            .get(room)
            .into_iter()
            .flatten()
            .flat_map(|p| p.tracks.iter().map(|t| (p.identity.clone(), t.clone())))
            .collect()
    }

    /// Auto-subscribe of a participant who (again) may subscribe: every track of the others.
    fn subscribe_to_all(&mut self, room: &str, identity: &str) {
        if !self.may_subscribe(room, identity) {
            return;
        }
        let sids: Vec<String> = self
            .tracks(room)
            .into_iter()
            .filter(|(publisher, _)| publisher != identity)
            .map(|(_, track)| track.sid)
            .collect();
        self.subscriptions
            .entry(room.to_owned())
            .or_default()
            .entry(identity.to_owned())
            .or_default()
            .extend(sids);
    }

    /// A new track reaches every other participant who may subscribe.
    fn published(&mut self, room: &str, publisher: &str, track_sid: &str) {
        let subscribers: Vec<String> = self
            .participants
            .get(room)
            .into_iter()
            .flatten()
            .filter(|p| p.identity != publisher)
            .filter(|p| p.permission.as_ref().is_some_and(|perm| perm.can_subscribe))
            .map(|p| p.identity.clone())
            .collect();
        let room_subscriptions = self.subscriptions.entry(room.to_owned()).or_default();
        for subscriber in subscribers {
            room_subscriptions
                .entry(subscriber)
                .or_default()
                .insert(track_sid.to_owned());
        }
    }

    /// Tracks gone: nobody receives them any more.
    fn unpublished(&mut self, room: &str, track_sids: &[String]) {
        if let Some(room_subscriptions) = self.subscriptions.get_mut(room) {
            for sids in room_subscriptions.values_mut() {
                sids.retain(|sid| !track_sids.contains(sid));
            }
        }
    }

    /// A participant leaves or is removed: its subscriptions and its tracks go with it.
    fn remove_participant(&mut self, room: &str, identity: &str) -> bool {
        let Some(list) = self.participants.get_mut(room) else {
            return false;
        };
        let gone: Vec<proto::ParticipantInfo> = list
            .iter()
            .filter(|p| p.identity == identity)
            .cloned()
            .collect();
        if gone.is_empty() {
            return false;
        }
        list.retain(|p| p.identity != identity);
        let sids: Vec<String> = gone
            .iter()
            .flat_map(|p| p.tracks.iter().map(|t| t.sid.clone()))
            .collect();
        self.unpublished(room, &sids);
        if let Some(room_subscriptions) = self.subscriptions.get_mut(room) {
            room_subscriptions.remove(identity);
        }
        self.left(room);
        true
    }

    /// `UpdateParticipant`'s permission, as the server applies it to a connected participant.
    fn set_permission(
        &mut self,
        room: &str,
        identity: &str,
        permission: proto::ParticipantPermission,
    ) {
        let Some(participant) = self
            .participants
            .get_mut(room)
            .and_then(|list| list.iter_mut().find(|p| p.identity == identity))
        else {
            return;
        };
        let could_subscribe = participant
            .permission
            .as_ref()
            .is_some_and(|p| p.can_subscribe);
        let allowed = |track: &proto::TrackInfo| {
            permission.can_publish
                && (permission.can_publish_sources.is_empty()
                    || permission.can_publish_sources.contains(&track.source))
        };
        let revoked: Vec<String> = participant
            .tracks
            .iter()
            .filter(|t| !allowed(t))
            .map(|t| t.sid.clone())
            .collect();
        participant.tracks.retain(|t| allowed(t));
        let can_subscribe = permission.can_subscribe;
        participant.permission = Some(permission);
        self.unpublished(room, &revoked);
        if !can_subscribe {
            if let Some(room_subscriptions) = self.subscriptions.get_mut(room) {
                room_subscriptions.remove(identity);
            }
        } else if !could_subscribe {
            self.subscribe_to_all(room, identity);
        }
    }

    fn add_participant(&mut self, room: &str, participant: proto::ParticipantInfo) {
        let identity = participant.identity.clone();
        self.participants
            .entry(room.to_owned())
            .or_default()
            .push(participant);
        self.joined(room);
        self.subscribe_to_all(room, &identity);
    }
}

/// The permission a participant token's grants give its holder when it connects (unset
/// booleans are allowed, as in the server's `ClaimGrants` defaults).
fn permission_of(grants: &livekit_api::access_token::VideoGrants) -> proto::ParticipantPermission {
    let source = |name: &str| match name {
        "camera" => Some(proto::TrackSource::Camera as i32),
        "microphone" => Some(proto::TrackSource::Microphone as i32),
        "screen_share" => Some(proto::TrackSource::ScreenShare as i32),
        "screen_share_audio" => Some(proto::TrackSource::ScreenShareAudio as i32),
        _ => None,
    };
    proto::ParticipantPermission {
        can_subscribe: grants.can_subscribe.unwrap_or(true),
        can_publish: grants.can_publish.unwrap_or(true),
        can_publish_data: grants.can_publish_data.unwrap_or(true),
        can_publish_sources: grants
            .can_publish_sources
            .iter()
            .filter_map(|s| source(s))
            .collect(),
        hidden: grants.hidden,
        can_update_metadata: grants.can_update_own_metadata.unwrap_or(false),
        ..Default::default()
    }
}

/// Closes idle rooms every [`IDLE_ROOM_CHECK`] until the fake is gone.
async fn close_idle_rooms(state: Weak<Mutex<State>>) {
    let mut ticks = tokio::time::interval(IDLE_ROOM_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        lock(&state).close_idle_rooms(Instant::now());
    }
}

pub struct FakeLiveKit {
    pub api_key: String,
    pub api_secret: String,
    port: u16,
    shared: Shared,
    handle: actix_web::dev::ServerHandle,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLiveKit {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

struct Twirp(StatusCode, &'static str, String);

fn twirp_error(Twirp(status, code, msg): Twirp) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "code": code, "msg": msg }))
}

fn id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl FakeLiveKit {
    pub async fn start() -> crate::Result<Self> {
        crate::init();
        let api_key = "APIfake".to_owned();
        let api_secret = format!("fake-secret-{}", uuid::Uuid::new_v4().simple());
        let shared = Shared {
            state: Arc::default(),
            verifier: Arc::new(TokenVerifier::with_api_key(&api_key, &api_secret)),
        };
        let app_shared = shared.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(app_shared.clone()))
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .route("/twirp/livekit.{service}/{method}", web::post().to(handle))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let sweeper = tokio::spawn(close_idle_rooms(Arc::downgrade(&shared.state)));
        Ok(Self {
            api_key,
            api_secret,
            port,
            shared,
            handle,
            sweeper,
        })
    }

    /// `http://127.0.0.1:<port>`: give it to the adapter as `LIVEKIT_URL`.
    /// The service configuration that points at this server, with its credentials.
    pub fn config(&self) -> sb_livekit::LiveKitConfig {
        sb_livekit::LiveKitConfig {
            url: self.url(),
            api_key: self.api_key.clone(),
            api_secret: self.api_secret.clone().into(),
            token_ttl: std::time::Duration::from_secs(600),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.state().calls.clone()
    }

    pub fn rooms(&self) -> Vec<proto::Room> {
        self.shared.state().rooms.values().cloned().collect()
    }

    /// Rooms the fake closed for staying empty past their timeout, oldest first (the last 1,024).
    pub fn closed_rooms(&self) -> Vec<String> {
        self.shared.state().closed.iter().cloned().collect()
    }

    /// A participant connects to `room` with every permission (the fake has no media path; tests
    /// drive presence).
    pub fn join(&self, room: &str, identity: &str, name: &str) {
        self.join_with(
            room,
            identity,
            name,
            proto::ParticipantPermission {
                can_subscribe: true,
                can_publish: true,
                can_publish_data: true,
                ..Default::default()
            },
        );
    }

    /// A participant connects to `room` with `permission`, auto-subscribing if it may.
    pub fn join_with(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        permission: proto::ParticipantPermission,
    ) {
        let participant = proto::ParticipantInfo {
            sid: id("PA"),
            identity: identity.to_owned(),
            name: name.to_owned(),
            state: proto::participant_info::State::Active as i32,
            joined_at: chrono_now(),
            is_publisher: false,
            permission: Some(permission),
            ..Default::default()
        };
        self.shared.state().add_participant(room, participant);
    }

    /// A client connects with a participant token, as the SDK would: the token is verified
    /// (this server's key and secret, not expired, `roomJoin`) and its grants become the
    /// participant's permission. Returns (room, identity).
    pub fn connect(&self, token: &str) -> crate::Result<(String, String)> {
        let claims = self.shared.verifier.verify(token)?;
        if !claims.video.room_join || claims.video.room.is_empty() {
            return Err("the token does not grant roomJoin to a room".into());
        }
        let room = claims.video.room.clone();
        self.join_with(
            &room,
            &claims.sub,
            &claims.name,
            permission_of(&claims.video),
        );
        Ok((room, claims.sub))
    }

    /// `identity` (already in `room`) publishes a microphone track; returns its sid, or `None`
    /// when it is not there or its permission does not allow the microphone (the server
    /// refuses the publication).
    pub fn publish_audio(&self, room: &str, identity: &str) -> Option<String> {
        let mut state = self.shared.state();
        let participant = state
            .participants
            .get_mut(room)?
            .iter_mut()
            .find(|p| p.identity == identity)?;
        let microphone = proto::TrackSource::Microphone as i32;
        let permitted = participant.permission.as_ref().is_some_and(|p| {
            p.can_publish
                && (p.can_publish_sources.is_empty() || p.can_publish_sources.contains(&microphone))
        });
        if !permitted {
            return None;
        }
        let sid = id("TR");
        participant.tracks.push(proto::TrackInfo {
            sid: sid.clone(),
            r#type: proto::TrackType::Audio as i32,
            source: microphone,
            ..Default::default()
        });
        participant.is_publisher = true;
        state.published(room, identity, &sid);
        Some(sid)
    }

    /// A participant disconnects from `room`.
    pub fn leave(&self, room: &str, identity: &str) {
        self.shared.state().remove_participant(room, identity);
    }

    /// The identities whose (unmuted) audio `listener` receives in `room`.
    pub fn hears(&self, room: &str, listener: &str) -> BTreeSet<String> {
        let state = self.shared.state();
        let Some(subscribed) = state
            .subscriptions
            .get(room)
            .and_then(|subs| subs.get(listener))
        else {
            return BTreeSet::new();
        };
        state
            .tracks(room)
            .into_iter()
            .filter(|(_, track)| {
                track.r#type == proto::TrackType::Audio as i32
                    && !track.muted
                    && subscribed.contains(&track.sid)
            })
            .map(|(publisher, _)| publisher)
            .collect()
    }

    /// The permission LiveKit holds for a connected participant.
    pub fn permission(&self, room: &str, identity: &str) -> Option<proto::ParticipantPermission> {
        self.shared
            .state()
            .participant(room, identity)
            .and_then(|p| p.permission.clone())
    }

    /// Every egress the fake knows, in start order.
    pub fn egress(&self) -> Vec<proto::EgressInfo> {
        self.shared.state().egress.clone()
    }

    /// The room composite requests received (outputs, layout), in order.
    pub fn egress_requests(&self) -> Vec<proto::RoomCompositeEgressRequest> {
        self.shared.state().egress_requests.clone()
    }

    /// Sets an egress's status, as the egress service would while it runs or fails.
    pub fn set_egress_status(&self, egress_id: &str, status: proto::EgressStatus, error: &str) {
        if let Some(info) = self
            .shared
            .state()
            .egress
            .iter_mut()
            .find(|e| e.egress_id == egress_id)
        {
            info.status = status as i32;
            info.error = error.to_owned();
        }
    }

    pub fn participants(&self, room: &str) -> Vec<proto::ParticipantInfo> {
        self.shared
            .state()
            .participants
            .get(room)
            .cloned()
            .unwrap_or_default()
    }

    /// The next `times` calls of `method` (e.g. `CreateRoom`) fail with Twirp `code`.
    pub fn fail(&self, method: &str, code: &'static str, times: usize) {
        self.shared
            .state()
            .failures
            .insert(method.to_owned(), (code.to_owned(), times));
    }

    /// Every request waits this long before being answered.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    /// Signs a webhook body the way the LiveKit server does: an `Authorization` header (no
    /// `Bearer`) holding a JWT whose `sha256` claim is the base64 SHA-256 of the body.
    pub fn sign_webhook(&self, body: &str) -> crate::Result<String> {
        sign_webhook(&self.api_key, &self.api_secret, body)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

pub fn sign_webhook(api_key: &str, api_secret: &str, body: &str) -> crate::Result<String> {
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    Ok(AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&digest)
        .to_jwt()?)
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    json: bool,
    body: &[u8],
) -> Result<M, Twirp> {
    let malformed = |e: String| Twirp(StatusCode::BAD_REQUEST, "malformed", e);
    if json {
        serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))
    } else {
        M::decode(body).map_err(|e| malformed(e.to_string()))
    }
}

fn encode<M: Message + serde::Serialize>(json: bool, message: &M) -> HttpResponse {
    if json {
        HttpResponse::Ok()
            .content_type("application/json")
            .json(message)
    } else {
        HttpResponse::Ok()
            .content_type("application/protobuf")
            .body(message.encode_to_vec())
    }
}

fn require(allowed: bool, grant: &str) -> Result<(), Twirp> {
    if allowed {
        Ok(())
    } else {
        Err(Twirp(
            StatusCode::FORBIDDEN,
            "permission_denied",
            format!("token lacks the {grant} grant"),
        ))
    }
}

fn room_admin(claims: &Claims, room: &str) -> Result<(), Twirp> {
    require(
        claims.video.room_admin && (claims.video.room.is_empty() || claims.video.room == room),
        "roomAdmin for this room",
    )
}

async fn handle(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (service, method) = path.into_inner();
    let latency = shared.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    match answer(&req, &service, &method, &body, json, &shared) {
        Ok(response) => response,
        Err(error) => twirp_error(error),
    }
}

fn answer(
    req: &HttpRequest,
    service: &str,
    method: &str,
    body: &[u8],
    json: bool,
    shared: &Shared,
) -> Result<HttpResponse, Twirp> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Twirp(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing Bearer token".to_owned(),
            )
        })?;
    let claims = shared
        .verifier
        .verify(token)
        .map_err(|e| Twirp(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()))?;
    let mut state = shared.state();
    if let Some((code, remaining)) = state.failures.get_mut(method)
        && *remaining > 0
    {
        *remaining -= 1;
        let code: &'static str = match code.as_str() {
            "not_found" => "not_found",
            "unavailable" => "unavailable",
            "resource_exhausted" => "resource_exhausted",
            _ => "internal",
        };
        let status = match code {
            "not_found" => StatusCode::NOT_FOUND,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return Err(Twirp(status, code, "injected failure".to_owned()));
    }
    let record = |room: &str, state: &mut State| {
        state.calls.push(RecordedCall {
            service: service.to_owned(),
            method: method.to_owned(),
            room: room.to_owned(),
            json,
        });
    };
    let not_found = |what: &str| {
        Twirp(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    };
    match (service, method) {
        ("RoomService", "CreateRoom") => {
            let request: proto::CreateRoomRequest = decode(json, body)?;
            record(&request.name, &mut state);
            require(claims.video.room_create, "roomCreate")?;
            if !state.rooms.contains_key(&request.name) {
                state
                    .lifetimes
                    .insert(request.name.clone(), Lifetime::new());
                // Someone already in the room (tests drive presence before or after creation).
                if state
                    .participants
                    .get(&request.name)
                    .is_some_and(|list| !list.is_empty())
                {
                    state.joined(&request.name);
                }
            }
            let room = state
                .rooms
                .entry(request.name.clone())
                .or_insert_with(|| proto::Room {
                    sid: id("RM"),
                    name: request.name.clone(),
                    // Zero means the server's default, as in livekit-server's NewRoom.
                    empty_timeout: match request.empty_timeout {
                        0 => DEFAULT_EMPTY_TIMEOUT_SECS,
                        secs => secs,
                    },
                    departure_timeout: match request.departure_timeout {
                        0 => DEFAULT_DEPARTURE_TIMEOUT_SECS,
                        secs => secs,
                    },
                    max_participants: request.max_participants,
                    metadata: request.metadata.clone(),
                    creation_time: chrono_now(),
                    ..Default::default()
                });
            Ok(encode(json, &room.clone()))
        }
        ("RoomService", "ListRooms") => {
            let request: proto::ListRoomsRequest = decode(json, body)?;
            record("", &mut state);
            require(claims.video.room_list, "roomList")?;
            let rooms = state
                .rooms
                .values()
                .filter(|r| request.names.is_empty() || request.names.contains(&r.name))
                .cloned()
                .collect();
            Ok(encode(json, &proto::ListRoomsResponse { rooms }))
        }
        ("RoomService", "DeleteRoom") => {
            let request: proto::DeleteRoomRequest = decode(json, body)?;
            record(&request.room, &mut state);
            require(claims.video.room_create, "roomCreate")?;
            state
                .rooms
                .remove(&request.room)
                .ok_or_else(|| not_found("room"))?;
            state.participants.remove(&request.room);
            state.subscriptions.remove(&request.room);
            state.lifetimes.remove(&request.room);
            Ok(encode(json, &proto::DeleteRoomResponse {}))
        }
        ("RoomService", "ListParticipants") => {
            let request: proto::ListParticipantsRequest = decode(json, body)?;
            record(&request.room, &mut state);
            room_admin(&claims, &request.room)?;
            let participants = state
                .participants
                .get(&request.room)
                .cloned()
                .unwrap_or_default();
            Ok(encode(
                json,
                &proto::ListParticipantsResponse { participants },
            ))
        }
        ("RoomService", "RemoveParticipant") => {
            let request: proto::RoomParticipantIdentity = decode(json, body)?;
            record(&request.room, &mut state);
            room_admin(&claims, &request.room)?;
            if !state.remove_participant(&request.room, &request.identity) {
                return Err(not_found("participant"));
            }
            Ok(encode(json, &proto::RemoveParticipantResponse {}))
        }
        ("RoomService", "MutePublishedTrack") => {
            let request: proto::MuteRoomTrackRequest = decode(json, body)?;
            record(&request.room, &mut state);
            room_admin(&claims, &request.room)?;
            let track = state
                .participants
                .get_mut(&request.room)
                .and_then(|list| list.iter_mut().find(|p| p.identity == request.identity))
                .and_then(|p| p.tracks.iter_mut().find(|t| t.sid == request.track_sid))
                .ok_or_else(|| not_found("track"))?;
            track.muted = request.muted;
            Ok(encode(
                json,
                &proto::MuteRoomTrackResponse {
                    track: Some(track.clone()),
                },
            ))
        }
        ("RoomService", "UpdateParticipant") => {
            let request: proto::UpdateParticipantRequest = decode(json, body)?;
            record(&request.room, &mut state);
            room_admin(&claims, &request.room)?;
            if state
                .participant(&request.room, &request.identity)
                .is_none()
            {
                return Err(not_found("participant"));
            }
            if let Some(permission) = request.permission {
                state.set_permission(&request.room, &request.identity, permission);
            }
            let participant = state
                .participants
                .get_mut(&request.room)
                .and_then(|list| list.iter_mut().find(|p| p.identity == request.identity))
                .ok_or_else(|| not_found("participant"))?;
            if !request.metadata.is_empty() {
                participant.metadata = request.metadata;
            }
            Ok(encode(json, &participant.clone()))
        }
        ("RoomService", "UpdateSubscriptions") => {
            let request: proto::UpdateSubscriptionsRequest = decode(json, body)?;
            record(&request.room, &mut state);
            room_admin(&claims, &request.room)?;
            if state
                .participant(&request.room, &request.identity)
                .is_none()
            {
                return Err(not_found("participant"));
            }
            let mut sids = request.track_sids.clone();
            sids.extend(
                request
                    .participant_tracks
                    .iter()
                    .flat_map(|p| p.track_sids.iter().cloned()),
            );
            // Only tracks of other participants in the room exist for this subscriber.
            let existing: BTreeSet<String> = state
                .tracks(&request.room)
                .into_iter()
                .filter(|(publisher, _)| *publisher != request.identity)
                .map(|(_, track)| track.sid)
                .collect();
            let may_subscribe = state.may_subscribe(&request.room, &request.identity);
            let subscribed = state
                .subscriptions
                .entry(request.room.clone())
                .or_default()
                .entry(request.identity.clone())
                .or_default();
            for sid in sids.into_iter().filter(|sid| existing.contains(sid)) {
                if !request.subscribe {
                    subscribed.remove(&sid);
                } else if may_subscribe {
                    subscribed.insert(sid);
                }
            }
            Ok(encode(json, &proto::UpdateSubscriptionsResponse {}))
        }
        ("Egress", "StartRoomCompositeEgress") => {
            let request: proto::RoomCompositeEgressRequest = decode(json, body)?;
            record(&request.room_name, &mut state);
            require(claims.video.room_record, "roomRecord")?;
            let info = proto::EgressInfo {
                egress_id: id("EG"),
                room_name: request.room_name.clone(),
                status: proto::EgressStatus::EgressStarting as i32,
                started_at: chrono_now() * 1_000_000_000,
                ..Default::default()
            };
            state.egress.push(info.clone());
            state.egress_requests.push(request);
            Ok(encode(json, &info))
        }
        ("Egress", "ListEgress") => {
            let request: proto::ListEgressRequest = decode(json, body)?;
            record(&request.room_name, &mut state);
            require(claims.video.room_record, "roomRecord")?;
            let items = state
                .egress
                .iter()
                .filter(|e| request.room_name.is_empty() || e.room_name == request.room_name)
                .cloned()
                .collect();
            Ok(encode(
                json,
                &proto::ListEgressResponse {
                    items,
                    ..Default::default()
                },
            ))
        }
        ("Egress", "StopEgress") => {
            let request: proto::StopEgressRequest = decode(json, body)?;
            record("", &mut state);
            require(claims.video.room_record, "roomRecord")?;
            let info = state
                .egress
                .iter_mut()
                .find(|e| e.egress_id == request.egress_id)
                .ok_or_else(|| not_found("egress"))?;
            // Like the server: only a starting or active egress can be stopped.
            if info.status > proto::EgressStatus::EgressActive as i32 {
                return Err(Twirp(
                    StatusCode::PRECONDITION_FAILED,
                    "failed_precondition",
                    format!("egress {} cannot be stopped in its state", info.egress_id),
                ));
            }
            info.status = proto::EgressStatus::EgressEnding as i32;
            Ok(encode(json, &info.clone()))
        }
        _ => Err(Twirp(
            StatusCode::NOT_FOUND,
            "bad_route",
            format!("no method {service}/{method}"),
        )),
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}
