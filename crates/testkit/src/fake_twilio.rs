//! A fake Twilio for tests: the REST API's Calls resource (`POST /2010-04-01/Accounts/{sid}/
//! Calls.json` form-encoded with PascalCase parameters, `GET …/Calls/{sid}.json`) and Voice
//! Insights' call summary (`GET /v1/Voice/{sid}/Summary`), on one server. It checks HTTP Basic
//! auth like Twilio (account sid and auth token; 20003 otherwise), answers realistic Call JSON
//! (`CA…` sids, RFC 2822 dates, string durations and prices), records every request, and can
//! refuse the next requests with Twilio's error codes (21211 invalid number, 20003 auth, 21219
//! unverified number, 20429 too many requests) or a 5xx, or answer slowly. Also signs webhooks
//! the way Twilio does ([`sign_twilio_webhook`]), implemented here independently of the service.

use std::collections::BTreeMap;
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

#[derive(Default)]
struct State {
    calls: BTreeMap<String, FakeCall>,
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
        let shared = Shared {
            account_sid: account_sid.clone(),
            auth_token: auth_token.clone(),
            state: Arc::default(),
        };
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
