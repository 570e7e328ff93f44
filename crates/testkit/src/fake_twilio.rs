//! A fake Twilio for tests: the REST API's Calls resource (`POST /2010-04-01/Accounts/{sid}/
//! Calls.json` form-encoded with PascalCase parameters, `GET …/Calls/{sid}.json`) and Voice
//! Insights' call summary (`GET /v1/Voice/{sid}/Summary`), on one server. It checks HTTP Basic
//! auth like Twilio (account sid and auth token; 20003 otherwise), answers realistic Call JSON
//! (`CA…` sids, RFC 2822 dates, string durations and prices), records every request, and can
//! refuse the next requests with Twilio's error codes (21211 invalid number, 20003 auth, 21219
//! unverified number, 20429 too many requests) or a 5xx, or answer slowly. Also signs webhooks
//! the way Twilio does ([`sign_twilio_webhook`]), implemented here independently of the service.
//!
//! Conferences: a call joins one when a test runs its TwiML's `<Dial><Conference>`
//! ([`FakeTwilio::run_twiml`]); the Participants API (`…/Conferences/{sid or name}/
//! Participants[/{CallSid or label}].json`: create, fetch, list, update `Muted`/`Coaching`/
//! `CallSidToCoach`, delete) adds, changes and removes legs, which ring until a test answers
//! them ([`FakeTwilio::answer`]). Conference events (`statusCallbackEvent`) and the call status
//! callbacks of added legs are posted, signed, to their callback URLs, in order, once a test said
//! where the public URL is served ([`FakeTwilio::deliver_to`]). [`FakeTwilio::hears`] answers who
//! hears whom by Twilio's rules: a muted participant is heard by nobody, a coaching one only by
//! the participant they coach, everyone else by everyone else in the conference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRequest {
    pub method: String,
    pub path: String,
    /// Form parameters, in order (repeated names kept).
    pub params: Vec<(String, String)>,
}

impl TwilioRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn params_named(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A call as the fake knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub status: String,
    pub duration: Option<u32>,
    pub price: Option<String>,
    pub price_unit: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

/// A conference participant as the fake knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeParticipant {
    pub call_sid: String,
    pub label: Option<String>,
    pub muted: bool,
    pub coaching: bool,
    pub call_sid_to_coach: Option<String>,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// `ringing` (added with the API, not answered yet) or `connected`.
    pub status: String,
    /// The call status callback of a leg added with the API.
    pub status_callback: Option<String>,
}

/// A conference as the fake knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConference {
    pub sid: String,
    pub name: String,
    /// `init` (nobody who starts it is in yet), `in-progress`, `completed`.
    pub status: String,
    pub status_callback: Option<String>,
    pub events: Vec<String>,
    pub participants: BTreeMap<String, FakeParticipant>,
    /// Everyone who was ever connected (call sids), in order.
    pub history: Vec<String>,
}

#[derive(Default)]
struct State {
    calls: BTreeMap<String, FakeCall>,
    conferences: BTreeMap<String, FakeConference>,
    /// Callbacks posted: (url as Twilio calls it, params).
    callbacks: Vec<(String, Vec<(String, String)>)>,
    /// Public base URL → where it is served (a gateway).
    routes: Vec<(String, String)>,
    /// Calls redirected with `POST …/Calls/{sid}.json Url=…`: (sid, url).
    redirects: Vec<(String, String)>,
    summaries: BTreeMap<String, Value>,
    /// Recording media by RecordingSid (served as `audio/mpeg`).
    recordings: BTreeMap<String, Vec<u8>>,
    requests: Vec<TwilioRequest>,
    /// Twilio error code (or 5xx status) of the next `remaining` create requests.
    failures: Vec<i64>,
    latency: Duration,
}

#[derive(Clone)]
struct Shared {
    account_sid: String,
    auth_token: String,
    state: Arc<Mutex<State>>,
    /// Callbacks to post, in order, by one task.
    outbox: tokio::sync::mpsc::UnboundedSender<(String, Vec<(String, String)>)>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct FakeTwilio {
    pub account_sid: String,
    pub auth_token: String,
    port: u16,
    shared: Shared,
    handle: actix_web::dev::ServerHandle,
}

fn hex32() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh Twilio-shaped sid: `prefix` and 32 hex digits.
pub fn twilio_sid(prefix: &str) -> String {
    format!("{prefix}{}", hex32())
}

/// Twilio's date format (RFC 2822).
fn twilio_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

impl FakeTwilio {
    pub async fn start() -> crate::Result<Self> {
        crate::init();
        let account_sid = twilio_sid("AC");
        let auth_token = hex32();
        let (outbox, queue) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared {
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            state: Arc::default(),
            outbox,
        };
        tokio::spawn(post_callbacks(shared.clone(), queue));
        let app_shared = shared.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(app_shared.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route(
                    "/2010-04-01/Accounts/{account}/Calls.json",
                    web::post().to(create_call),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Calls/{sid}.json",
                    web::get().to(fetch_call),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Recordings/{file}",
                    web::get().to(recording_media),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Recordings/{file}",
                    web::delete().to(delete_recording),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Calls/{sid}.json",
                    web::post().to(update_call),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants.json",
                    web::post().to(create_participant),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants.json",
                    web::get().to(list_participants),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{id}.json",
                    web::get().to(fetch_participant),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{id}.json",
                    web::post().to(update_participant),
                )
                .route(
                    "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{id}.json",
                    web::delete().to(delete_participant),
                )
                .route("/v1/Voice/{sid}/Summary", web::get().to(call_summary))
                .default_service(web::to(|| async {
                    error(
                        StatusCode::NOT_FOUND,
                        20404,
                        "The requested resource was not found",
                    )
                }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            account_sid,
            auth_token,
            port,
            shared,
            handle,
        })
    }

    /// `http://127.0.0.1:<port>`: the service's `TWILIO_API_BASE` and `TWILIO_INSIGHTS_BASE`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<TwilioRequest> {
        self.shared.state().requests.clone()
    }

    /// The calls created (or added), by sid.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.shared.state().calls.values().cloned().collect()
    }

    pub fn call(&self, sid: &str) -> Option<FakeCall> {
        self.shared.state().calls.get(sid).cloned()
    }

    /// Adds a call Twilio would know (an inbound one, say) with `status`.
    pub fn add_call(&self, sid: &str, from: &str, to: &str, status: &str) {
        self.shared.state().calls.insert(
            sid.to_owned(),
            FakeCall {
                sid: sid.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
                status: status.to_owned(),
                duration: None,
                price: None,
                price_unit: "USD".to_owned(),
                start_time: None,
                end_time: None,
            },
        );
    }

    /// The call ended as Twilio would report it: `status`, duration, and its times.
    pub fn end_call(&self, sid: &str, status: &str, duration: u32) {
        if let Some(call) = self.shared.state().calls.get_mut(sid) {
            let end = chrono::Utc::now();
            call.status = status.to_owned();
            call.duration = Some(duration);
            call.start_time = Some(twilio_date(
                end - chrono::Duration::seconds(i64::from(duration)),
            ));
            call.end_time = Some(twilio_date(end));
        }
    }

    /// Twilio prices the call (some time after it ended).
    pub fn set_price(&self, sid: &str, price: &str, unit: &str) {
        if let Some(call) = self.shared.state().calls.get_mut(sid) {
            call.price = Some(price.to_owned());
            call.price_unit = unit.to_owned();
        }
    }

    /// Voice Insights has a summary for the call.
    pub fn set_summary(&self, sid: &str, summary: Value) {
        self.shared
            .state()
            .summaries
            .insert(sid.to_owned(), summary);
    }

    /// Twilio keeps a recording's media: `GET …/Recordings/{sid}.mp3` serves `bytes` (with
    /// `Range`), `DELETE …/Recordings/{sid}.json` removes it.
    pub fn add_recording(&self, sid: &str, bytes: Vec<u8>) {
        self.shared.state().recordings.insert(sid.to_owned(), bytes);
    }

    /// Whether the fake still has recording `sid`.
    pub fn has_recording(&self, sid: &str) -> bool {
        self.shared.state().recordings.contains_key(sid)
    }

    /// The next `times` create requests are refused with Twilio error `code` (21211, 20003,
    /// 21219, 20429…), or fail with HTTP `code` when it is 500–599.
    pub fn fail_next_creates(&self, code: i64, times: usize) {
        self.shared
            .state()
            .failures
            .extend(std::iter::repeat_n(code, times));
    }

    /// Every request waits this long before being answered.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    /// Callbacks to URLs under `public_base` (as the service's `PUBLIC_BASE_URL`) are posted to
    /// `served_at` instead, signed over the public URL: the gateway in front of the service.
    pub fn deliver_to(&self, public_base: &str, served_at: &str) {
        self.shared.state().routes.push((
            public_base.to_owned(),
            served_at.trim_end_matches('/').to_owned(),
        ));
    }

    /// Calls redirected to other TwiML (`Url`), in order: (CallSid, URL).
    pub fn redirects(&self) -> Vec<(String, String)> {
        self.shared.state().redirects.clone()
    }

    /// Every callback posted (URL as Twilio called it, parameters), in order.
    pub fn callbacks(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.shared.state().callbacks.clone()
    }

    /// Runs the `<Dial><Conference>` of `twiml` for call `call_sid` (a call Twilio knows, or one
    /// the test names): the call joins the named conference, created on first use, with the
    /// noun's attributes. Returns the conference SID; `None` when the TwiML has no conference.
    pub fn run_twiml(&self, call_sid: &str, twiml: &str) -> Option<String> {
        let document = roxmltree::Document::parse(twiml).ok()?;
        let node = document.descendants().find(|n| {
            n.has_tag_name("Conference") && n.parent().is_some_and(|p| p.has_tag_name("Dial"))
        })?;
        let name = node.text().unwrap_or_default().trim().to_owned();
        let flag =
            |attr: &str, default: bool| node.attribute(attr).map_or(default, |v| v == "true");
        let participant = FakeParticipant {
            call_sid: call_sid.to_owned(),
            label: node.attribute("participantLabel").map(str::to_owned),
            muted: flag("muted", false),
            coaching: flag("coaching", false),
            call_sid_to_coach: node.attribute("callSidToCoach").map(str::to_owned),
            start_conference_on_enter: flag("startConferenceOnEnter", true),
            end_conference_on_exit: flag("endConferenceOnExit", false),
            status: "connected".to_owned(),
            status_callback: None,
        };
        let callback = node.attribute("statusCallback").map(str::to_owned);
        let events: Vec<String> = node
            .attribute("statusCallbackEvent")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut posts = Vec::new();
        let sid = {
            let mut state = self.shared.state();
            let sid = conference_named(&mut state, &name);
            if let Some(conference) = state.conferences.get_mut(&sid) {
                if callback.is_some() {
                    conference.status_callback = callback;
                    conference.events = events;
                }
                connect(
                    &self.shared.account_sid,
                    conference,
                    participant,
                    &mut posts,
                );
            }
            sid
        };
        self.post_all(posts);
        Some(sid)
    }

    /// A leg added with the Participants API answers: it joins its conference.
    pub fn answer(&self, call_sid: &str) {
        let mut posts = Vec::new();
        {
            let mut state = self.shared.state();
            let account = self.shared.account_sid.clone();
            for conference in state.conferences.values_mut() {
                let Some(leg) = conference.participants.get(call_sid).cloned() else {
                    continue;
                };
                if leg.status != "ringing" {
                    continue;
                }
                if let Some(url) = &leg.status_callback {
                    posts.push((
                        url.clone(),
                        leg_status(&account, call_sid, "in-progress", None),
                    ));
                }
                conference.participants.remove(call_sid);
                connect(
                    &account,
                    conference,
                    FakeParticipant {
                        status: "connected".to_owned(),
                        ..leg
                    },
                    &mut posts,
                );
            }
            if let Some(call) = state.calls.get_mut(call_sid) {
                call.status = "in-progress".to_owned();
            }
        }
        self.post_all(posts);
    }

    /// A leg added with the Participants API does not answer (`no-answer`, `busy`, `failed`).
    pub fn fail_leg(&self, call_sid: &str, status: &str) {
        let mut posts = Vec::new();
        {
            let mut state = self.shared.state();
            let account = self.shared.account_sid.clone();
            for conference in state.conferences.values_mut() {
                if let Some(leg) = conference.participants.remove(call_sid)
                    && let Some(url) = &leg.status_callback
                {
                    posts.push((url.clone(), leg_status(&account, call_sid, status, None)));
                }
            }
            if let Some(call) = state.calls.get_mut(call_sid) {
                call.status = status.to_owned();
            }
        }
        self.post_all(posts);
    }

    /// Call `call_sid` hangs up: it leaves its conference (which ends when it was to end it on
    /// exit, taking everyone with it).
    pub fn hang_up(&self, call_sid: &str) {
        let mut posts = Vec::new();
        {
            let mut state = self.shared.state();
            let account = self.shared.account_sid.clone();
            for conference in state.conferences.values_mut() {
                if conference.participants.contains_key(call_sid) {
                    leave(&account, conference, call_sid, &mut posts);
                }
            }
            if let Some(call) = state.calls.get_mut(call_sid) {
                call.status = "completed".to_owned();
            }
        }
        self.post_all(posts);
    }

    pub fn conference(&self, sid: &str) -> Option<FakeConference> {
        self.shared.state().conferences.get(sid).cloned()
    }

    /// The conference named `name` (`call_<id>`).
    pub fn conference_named(&self, name: &str) -> Option<FakeConference> {
        self.shared
            .state()
            .conferences
            .values()
            .find(|c| c.name == name)
            .cloned()
    }

    /// The call sids `listener` hears in conference `conference` (connected participants only):
    /// nobody hears a muted participant; a coaching participant is heard only by the one they
    /// coach; everyone else is heard by everyone else.
    pub fn hears(&self, conference: &str, listener: &str) -> BTreeSet<String> {
        let state = self.shared.state();
        let Some(conference) = state.conferences.get(conference) else {
            return BTreeSet::new();
        };
        if conference.status != "in-progress"
            || conference
                .participants
                .get(listener)
                .is_none_or(|p| p.status != "connected")
        {
            return BTreeSet::new();
        }
        conference
            .participants
            .values()
            .filter(|p| p.status == "connected" && p.call_sid != listener && !p.muted)
            .filter(|p| !p.coaching || p.call_sid_to_coach.as_deref() == Some(listener))
            .map(|p| p.call_sid.clone())
            .collect()
    }

    fn post_all(&self, posts: Vec<(String, Vec<(String, String)>)>) {
        post_later(&self.shared, posts);
    }

    /// Signs a webhook to `url` with these form parameters, as Twilio does.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        sign_twilio_webhook(&self.auth_token, url, params)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Twilio's `X-Twilio-Signature` for a POST of `params` to `url`: base64 HMAC-SHA1, keyed with
/// the auth token, of the URL followed by each parameter's name and value, sorted by name
/// (Twilio's documented algorithm; an independent implementation to test the service's against).
pub fn sign_twilio_webhook(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    match Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    }))
}

/// Whether the request carries the account's Basic auth (Twilio answers 401 with code 20003
/// otherwise).
fn authenticated(req: &HttpRequest, shared: &Shared, account: &str) -> bool {
    let expected = format!("{}:{}", shared.account_sid, shared.auth_token);
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    given.as_deref() == Some(expected.as_str()) && account == shared.account_sid
}

fn unauthenticated() -> HttpResponse {
    error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
}

fn call_json(shared: &Shared, call: &FakeCall, created: &str) -> Value {
    let uri = format!(
        "/2010-04-01/Accounts/{}/Calls/{}.json",
        shared.account_sid, call.sid
    );
    json!({
        "account_sid": shared.account_sid,
        "annotation": null,
        "answered_by": null,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": created,
        "date_updated": created,
        "direction": "outbound-api",
        "duration": call.duration.map(|d| d.to_string()),
        "end_time": call.end_time,
        "forwarded_from": null,
        "from": call.from,
        "from_formatted": call.from,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": twilio_sid("PN"),
        "price": call.price,
        "price_unit": call.price_unit,
        "queue_time": "0",
        "sid": call.sid,
        "start_time": call.start_time,
        "status": call.status,
        "subresource_uris": {
            "notifications": uri.replace(".json", "/Notifications.json"),
            "recordings": uri.replace(".json", "/Recordings.json"),
        },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": null,
        "uri": uri,
    })
}

async fn pause(shared: &Shared) {
    let latency = shared.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

fn record(shared: &Shared, req: &HttpRequest, params: Vec<(String, String)>) {
    shared.state().requests.push(TwilioRequest {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        params,
    });
}

fn valid_destination(to: &str) -> bool {
    if let Some(identity) = to.strip_prefix("client:") {
        return !identity.is_empty();
    }
    to.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
    })
}

async fn create_call(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    record(&shared, &req, params.clone());
    if !authenticated(&req, &shared, &path) {
        return unauthenticated();
    }
    let injected = {
        let mut state = shared.state();
        (!state.failures.is_empty()).then(|| state.failures.remove(0))
    };
    if let Some(code) = injected {
        return match code {
            500..=599 => HttpResponse::build(
                StatusCode::from_u16(u16::try_from(code).unwrap_or(500))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .body("upstream error"),
            20003 => error(StatusCode::UNAUTHORIZED, code, "Authenticate"),
            20429 => error(StatusCode::TOO_MANY_REQUESTS, code, "Too Many Requests"),
            21211 => error(StatusCode::BAD_REQUEST, code, "Invalid 'To' Phone Number"),
            21219 => error(
                StatusCode::BAD_REQUEST,
                code,
                "The number is unverified. Trial accounts may only make calls to verified numbers.",
            ),
            _ => error(StatusCode::BAD_REQUEST, code, "Request refused"),
        };
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(to), Some(from)) = (get("To"), get("From")) else {
        return error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To' number is specified",
        );
    };
    if get("Url").is_none() && get("Twiml").is_none() && get("ApplicationSid").is_none() {
        return error(StatusCode::BAD_REQUEST, 21205, "Url parameter is required.");
    }
    if !valid_destination(&to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("Invalid 'To' Phone Number: {to}"),
        );
    }
    let call = FakeCall {
        sid: twilio_sid("CA"),
        from,
        to,
        status: "queued".to_owned(),
        duration: None,
        price: None,
        price_unit: "USD".to_owned(),
        start_time: None,
        end_time: None,
    };
    shared.state().calls.insert(call.sid.clone(), call.clone());
    HttpResponse::Created().json(call_json(&shared, &call, &twilio_date(chrono::Utc::now())))
}

async fn fetch_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, sid) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let call = shared.state().calls.get(&sid).cloned();
    match call {
        Some(call) => {
            HttpResponse::Ok().json(call_json(&shared, &call, &twilio_date(chrono::Utc::now())))
        }
        None => error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /Calls/{sid}.json was not found"),
        ),
    }
}

/// The byte range `header` asks of `len` bytes (`bytes=a-b`, `bytes=a-`, `bytes=-n`), `None`
/// when it cannot be satisfied.
fn byte_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: usize = suffix.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (start, "") => (start.parse().ok()?, len.checked_sub(1)?),
        (start, end) => (
            start.parse().ok()?,
            end.parse::<usize>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && end < len).then_some((start, end))
}

async fn recording_media(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, file) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let media = file
        .strip_suffix(".mp3")
        .and_then(|sid| shared.state().recordings.get(sid).cloned());
    let Some(bytes) = media else {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /Recordings/{file} was not found"),
        );
    };
    let range = req.headers().get("range").and_then(|v| v.to_str().ok());
    match range {
        None => HttpResponse::Ok()
            .content_type("audio/mpeg")
            .insert_header(("Accept-Ranges", "bytes"))
            .body(bytes),
        Some(range) => match byte_range(range, bytes.len()) {
            Some((start, end)) => HttpResponse::PartialContent()
                .content_type("audio/mpeg")
                .insert_header(("Accept-Ranges", "bytes"))
                .insert_header((
                    "Content-Range",
                    format!("bytes {start}-{end}/{}", bytes.len()),
                ))
                .body(bytes[start..=end].to_vec()),
            None => HttpResponse::RangeNotSatisfiable()
                .insert_header(("Content-Range", format!("bytes */{}", bytes.len())))
                .finish(),
        },
    }
}

async fn delete_recording(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, file) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let removed = file
        .strip_suffix(".json")
        .and_then(|sid| shared.state().recordings.remove(sid));
    match removed {
        Some(_) => HttpResponse::NoContent().finish(),
        None => error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /Recordings/{file} was not found"),
        ),
    }
}

async fn call_summary(
    req: HttpRequest,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let account = shared.account_sid.clone();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let sid = path.into_inner();
    let summary = shared.state().summaries.get(&sid).cloned();
    match summary {
        Some(summary) => HttpResponse::Ok().json(summary),
        None => error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /Voice/{sid}/Summary was not found"),
        ),
    }
}

type Posts = Vec<(String, Vec<(String, String)>)>;

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The SID of the live conference named `name`, created (`init`) when there is none.
fn conference_named(state: &mut State, name: &str) -> String {
    if let Some(known) = state
        .conferences
        .values()
        .find(|c| c.name == name && c.status != "completed")
    {
        return known.sid.clone();
    }
    let sid = twilio_sid("CF");
    state.conferences.insert(
        sid.clone(),
        FakeConference {
            sid: sid.clone(),
            name: name.to_owned(),
            status: "init".to_owned(),
            status_callback: None,
            events: Vec::new(),
            participants: BTreeMap::new(),
            history: Vec::new(),
        },
    );
    sid
}

/// The parameters of a conference event (and of a participant's, with `participant`).
fn conference_params(
    account: &str,
    conference: &FakeConference,
    event: &str,
    participant: Option<&FakeParticipant>,
) -> Vec<(String, String)> {
    let sequence = conference.history.len().to_string();
    let mut params = pairs(&[
        ("AccountSid", account),
        ("ConferenceSid", &conference.sid),
        ("FriendlyName", &conference.name),
        ("StatusCallbackEvent", event),
        ("SequenceNumber", &sequence),
        ("Timestamp", &twilio_date(chrono::Utc::now())),
    ]);
    if let Some(p) = participant {
        let flag = |b: bool| if b { "true" } else { "false" };
        params.extend(pairs(&[
            ("CallSid", &p.call_sid),
            ("Muted", flag(p.muted)),
            ("Hold", "false"),
            ("Coaching", flag(p.coaching)),
            ("EndConferenceOnExit", flag(p.end_conference_on_exit)),
            ("StartConferenceOnEnter", flag(p.start_conference_on_enter)),
        ]));
        if let Some(label) = &p.label {
            params.push(("ParticipantLabel".to_owned(), label.clone()));
        }
        if let Some(coached) = &p.call_sid_to_coach {
            params.push(("CallSidToCoach".to_owned(), coached.clone()));
        }
    }
    params
}

/// Posts conference event `event` when the conference asked for it (`start`, `join`…).
fn announce(
    account: &str,
    conference: &FakeConference,
    event: &str,
    wanted: &str,
    participant: Option<&FakeParticipant>,
    posts: &mut Posts,
) {
    if let Some(url) = &conference.status_callback
        && conference.events.iter().any(|e| e == wanted)
    {
        posts.push((
            url.clone(),
            conference_params(account, conference, event, participant),
        ));
    }
}

/// A call status callback of a leg added with the API.
fn leg_status(
    account: &str,
    call_sid: &str,
    status: &str,
    duration: Option<u32>,
) -> Vec<(String, String)> {
    let mut params = pairs(&[
        ("AccountSid", account),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("Timestamp", &twilio_date(chrono::Utc::now())),
    ]);
    if let Some(duration) = duration {
        params.push(("CallDuration".to_owned(), duration.to_string()));
    }
    params
}

/// `participant` is in: the conference starts when it is the first to start it.
fn connect(
    account: &str,
    conference: &mut FakeConference,
    participant: FakeParticipant,
    posts: &mut Posts,
) {
    conference.history.push(participant.call_sid.clone());
    let starts = participant.start_conference_on_enter;
    conference
        .participants
        .insert(participant.call_sid.clone(), participant.clone());
    if conference.status == "init" && starts {
        conference.status = "in-progress".to_owned();
        announce(
            account,
            conference,
            "conference-start",
            "start",
            None,
            posts,
        );
    }
    announce(
        account,
        conference,
        "participant-join",
        "join",
        Some(&participant),
        posts,
    );
}

/// `call_sid` leaves; the conference ends when it was to end it on exit, or nobody is left.
fn leave(account: &str, conference: &mut FakeConference, call_sid: &str, posts: &mut Posts) {
    let Some(leg) = conference.participants.remove(call_sid) else {
        return;
    };
    if leg.status == "connected" {
        announce(
            account,
            conference,
            "participant-leave",
            "leave",
            Some(&leg),
            posts,
        );
    }
    if let Some(url) = &leg.status_callback {
        let status = if leg.status == "connected" {
            "completed"
        } else {
            "canceled"
        };
        posts.push((url.clone(), leg_status(account, call_sid, status, Some(1))));
    }
    let connected = conference
        .participants
        .values()
        .any(|p| p.status == "connected");
    // A leg that never answered leaving (cancelled, removed while ringing) ends nothing.
    if leg.status == "connected"
        && conference.status != "completed"
        && (leg.end_conference_on_exit || !connected)
    {
        let others: Vec<String> = conference.participants.keys().cloned().collect();
        for other in others {
            leave(account, conference, &other, posts);
        }
        if conference.status != "completed" {
            conference.status = "completed".to_owned();
            announce(account, conference, "conference-end", "end", None, posts);
        }
    }
}

fn post_later(shared: &Shared, posts: Posts) {
    for post in posts {
        // The receiving task lives as long as the fake; a send after it stopped is moot.
        let _ = shared.outbox.send(post);
    }
}

/// Posts callbacks one at a time, in order, signed over the URL Twilio was given.
async fn post_callbacks(
    shared: Shared,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<(String, String)>)>,
) {
    let client = reqwest::Client::new();
    while let Some((url, params)) = queue.recv().await {
        let target = {
            let mut state = shared.state();
            state.callbacks.push((url.clone(), params.clone()));
            state.routes.iter().find_map(|(public, served)| {
                url.strip_prefix(public.as_str())
                    .map(|rest| format!("{served}{rest}"))
            })
        };
        let Some(target) = target else {
            continue;
        };
        let signature = sign_twilio_webhook(&shared.auth_token, &url, &params);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let sent = client
            .post(&target)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, url = %target, "fake Twilio: callback not delivered");
        }
    }
}

fn participant_json(account: &str, conference: &FakeConference, p: &FakeParticipant) -> Value {
    let now = twilio_date(chrono::Utc::now());
    json!({
        "account_sid": account,
        "call_sid": p.call_sid,
        "call_sid_to_coach": p.call_sid_to_coach,
        "coaching": p.coaching,
        "conference_sid": conference.sid,
        "date_created": now,
        "date_updated": now,
        "end_conference_on_exit": p.end_conference_on_exit,
        "hold": false,
        "label": p.label,
        "muted": p.muted,
        "start_conference_on_enter": p.start_conference_on_enter,
        "status": p.status,
        "uri": format!(
            "/2010-04-01/Accounts/{account}/Conferences/{}/Participants/{}.json",
            conference.sid, p.call_sid
        ),
    })
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn conference_not_found(conference: &str) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource /Conferences/{conference} was not found"),
    )
}

/// The participant `id` (CallSid or label) of conference `conference`.
fn find_leg<'a>(conference: &'a FakeConference, id: &str) -> Option<&'a FakeParticipant> {
    conference.participants.get(id).or_else(|| {
        conference
            .participants
            .values()
            .find(|p| p.label.as_deref() == Some(id))
    })
}

/// Twilio refuses coaching without a participant of the conference to coach.
fn coach_target_ok(conference: &FakeConference, coaching: bool, target: Option<&str>) -> bool {
    !coaching
        || target.is_some_and(|sid| {
            conference
                .participants
                .get(sid)
                .is_some_and(|p| p.status == "connected")
        })
}

async fn create_participant(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    let params = form(&body);
    record(&shared, &req, params.clone());
    let (account, conference) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let injected = {
        let mut state = shared.state();
        (!state.failures.is_empty()).then(|| state.failures.remove(0))
    };
    if let Some(code) = injected {
        return match code {
            500..=599 => HttpResponse::build(
                StatusCode::from_u16(u16::try_from(code).unwrap_or(500))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .body("upstream error"),
            20429 => error(StatusCode::TOO_MANY_REQUESTS, code, "Too Many Requests"),
            _ => error(StatusCode::BAD_REQUEST, code, "Request refused"),
        };
    }
    let (Some(to), Some(from)) = (param(&params, "To"), param(&params, "From")) else {
        return error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To' number is specified",
        );
    };
    if !valid_destination(to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("Invalid 'To' Phone Number: {to}"),
        );
    }
    let flag = |name: &str, default: bool| param(&params, name).map_or(default, |v| v == "true");
    let mut state = shared.state();
    let sid = if conference.starts_with("CF") {
        match state.conferences.get(&conference) {
            Some(known) if known.status != "completed" => conference.clone(),
            _ => return conference_not_found(&conference),
        }
    } else {
        conference_named(&mut state, &conference)
    };
    let call_sid = twilio_sid("CA");
    state.calls.insert(
        call_sid.clone(),
        FakeCall {
            sid: call_sid.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            status: "ringing".to_owned(),
            duration: None,
            price: None,
            price_unit: "USD".to_owned(),
            start_time: None,
            end_time: None,
        },
    );
    let Some(conference) = state.conferences.get_mut(&sid) else {
        return conference_not_found(&sid);
    };
    let coaching = flag("Coaching", false);
    let coached = param(&params, "CallSidToCoach").map(str::to_owned);
    if !coach_target_ok(conference, coaching, coached.as_deref()) {
        return error(
            StatusCode::BAD_REQUEST,
            20001,
            "CallSidToCoach must name a participant of the conference when Coaching is true",
        );
    }
    let leg = FakeParticipant {
        call_sid: call_sid.clone(),
        label: param(&params, "Label").map(str::to_owned),
        muted: flag("Muted", false),
        coaching,
        call_sid_to_coach: coached,
        start_conference_on_enter: flag("StartConferenceOnEnter", true),
        end_conference_on_exit: flag("EndConferenceOnExit", false),
        status: "ringing".to_owned(),
        status_callback: param(&params, "StatusCallback").map(str::to_owned),
    };
    conference.participants.insert(call_sid, leg.clone());
    let account = shared.account_sid.clone();
    HttpResponse::Created().json(participant_json(&account, conference, &leg))
}

async fn list_participants(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, conference) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let state = shared.state();
    let Some(conference) = state.conferences.get(&conference) else {
        return conference_not_found(&conference);
    };
    let participants: Vec<Value> = conference
        .participants
        .values()
        .map(|p| participant_json(&shared.account_sid, conference, p))
        .collect();
    HttpResponse::Ok().json(json!({
        "participants": participants,
        "page": 0,
        "page_size": 50,
    }))
}

async fn fetch_participant(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, conference, id) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let state = shared.state();
    let Some(conference) = state.conferences.get(&conference) else {
        return conference_not_found(&conference);
    };
    match find_leg(conference, &id) {
        Some(p) => HttpResponse::Ok().json(participant_json(&shared.account_sid, conference, p)),
        None => error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /Participants/{id} was not found"),
        ),
    }
}

async fn update_participant(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    let params = form(&body);
    record(&shared, &req, params.clone());
    let (account, conference, id) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let mut posts = Vec::new();
    let answer = {
        let mut state = shared.state();
        let Some(conference) = state.conferences.get_mut(&conference) else {
            return conference_not_found(&conference);
        };
        let Some(mut leg) = find_leg(conference, &id).cloned() else {
            return error(
                StatusCode::NOT_FOUND,
                20404,
                &format!("The requested resource /Participants/{id} was not found"),
            );
        };
        let was_muted = leg.muted;
        if let Some(muted) = param(&params, "Muted") {
            leg.muted = muted == "true";
        }
        if let Some(coaching) = param(&params, "Coaching") {
            leg.coaching = coaching == "true";
        }
        if let Some(coached) = param(&params, "CallSidToCoach") {
            leg.call_sid_to_coach = Some(coached.to_owned());
        }
        if !leg.coaching {
            leg.call_sid_to_coach = None;
        }
        if !coach_target_ok(conference, leg.coaching, leg.call_sid_to_coach.as_deref()) {
            return error(
                StatusCode::BAD_REQUEST,
                20001,
                "CallSidToCoach must name a participant of the conference when Coaching is true",
            );
        }
        conference
            .participants
            .insert(leg.call_sid.clone(), leg.clone());
        if was_muted != leg.muted && leg.status == "connected" {
            let event = if leg.muted {
                "participant-mute"
            } else {
                "participant-unmute"
            };
            announce(
                &shared.account_sid,
                conference,
                event,
                "mute",
                Some(&leg),
                &mut posts,
            );
        }
        participant_json(&shared.account_sid, conference, &leg)
    };
    post_later(&shared, posts);
    HttpResponse::Ok().json(answer)
}

async fn delete_participant(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    record(&shared, &req, Vec::new());
    let (account, conference, id) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let mut posts = Vec::new();
    {
        let mut state = shared.state();
        let Some(conference) = state.conferences.get_mut(&conference) else {
            return conference_not_found(&conference);
        };
        let Some(sid) = find_leg(conference, &id).map(|p| p.call_sid.clone()) else {
            return error(
                StatusCode::NOT_FOUND,
                20404,
                &format!("The requested resource /Participants/{id} was not found"),
            );
        };
        leave(&shared.account_sid, conference, &sid, &mut posts);
        if let Some(call) = state.calls.get_mut(&sid) {
            call.status = "completed".to_owned();
        }
    }
    post_later(&shared, posts);
    HttpResponse::NoContent().finish()
}

/// `POST …/Calls/{sid}.json`: `Status=completed` hangs the call up, `Url` redirects it (it
/// leaves any conference either way).
async fn update_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    pause(&shared).await;
    let params = form(&body);
    record(&shared, &req, params.clone());
    let (account, sid) = path.into_inner();
    if !authenticated(&req, &shared, &account) {
        return unauthenticated();
    }
    let mut posts = Vec::new();
    let answer = {
        let mut state = shared.state();
        if !state.calls.contains_key(&sid)
            && !state
                .conferences
                .values()
                .any(|c| c.participants.contains_key(&sid))
        {
            return error(
                StatusCode::NOT_FOUND,
                20404,
                &format!("The requested resource /Calls/{sid}.json was not found"),
            );
        }
        let account = shared.account_sid.clone();
        for conference in state.conferences.values_mut() {
            if conference.participants.contains_key(&sid) {
                leave(&account, conference, &sid, &mut posts);
            }
        }
        if let Some(url) = param(&params, "Url") {
            state.redirects.push((sid.clone(), url.to_owned()));
        } else if param(&params, "Status") == Some("completed")
            && let Some(call) = state.calls.get_mut(&sid)
        {
            call.status = "completed".to_owned();
        }
        let call = state.calls.get(&sid).cloned().unwrap_or(FakeCall {
            sid: sid.clone(),
            from: String::new(),
            to: String::new(),
            status: "in-progress".to_owned(),
            duration: None,
            price: None,
            price_unit: "USD".to_owned(),
            start_time: None,
            end_time: None,
        });
        call_json(&shared, &call, &twilio_date(chrono::Utc::now()))
    };
    post_later(&shared, posts);
    HttpResponse::Ok().json(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_as_http_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=9-1", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    #[test]
    fn signs_twilios_published_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            sign_twilio_webhook(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
