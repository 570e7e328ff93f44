//! The four services built in-process (real Postgres database per test, NATS prefix, fake
//! LiveKit and Twilio), and the tenant-isolation engine that reads a service's OpenAPI document
//! and attacks every route it lists.

#![expect(dead_code, reason = "each test binary uses a part of the harness")]

pub mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sb_testkit::{Result, TestApp};
use serde_json::Value;

/// Who sends a request: a bearer JWT, or a guest's link (`?token=`) with the device secret
/// its lobby place was given (`Guest-Device-Secret`).
#[derive(Debug, Clone)]
pub enum Credential {
    Bearer(String),
    GuestLink {
        token: String,
        device_secret: String,
    },
}

/// The three callers of one route: the owner of the objects (org A, allowed), the leader of
/// another org, and a user of org A without the role or relation the route needs.
#[derive(Debug, Clone)]
pub struct Callers {
    pub owner: Credential,
    pub other_org: Credential,
    pub same_org_without_role: Credential,
}

/// What a route answers another org's caller when that is not 404, and why (shown in the test
/// output and the README).
#[derive(Debug, Clone)]
pub struct AttackerBodies {
    pub other_org: Value,
    pub same_org_without_role: Value,
}

#[derive(Debug, Clone)]
pub struct Exception {
    pub status: u16,
    pub code: &'static str,
    pub why: &'static str,
}

/// Real objects of org A, created through the API, named by the path parameters that address
/// them.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    /// Path parameter name (as in the OpenAPI document) → a real object of org A.
    pub ids: BTreeMap<String, String>,
    /// `METHOD /path/{template}` → the body the owner sends (the same body is sent by the
    /// attackers, so a 400 cannot hide a missing check). Routes not listed send no body.
    pub bodies: BTreeMap<String, Value>,
    /// Bodies the attackers send instead of `bodies[route]`, when the owner's body holds more of
    /// org A's than the route's object (the owner's own phone number, say): the attackers name A's
    /// object with what is theirs, so the answer is about A's object.
    pub attacker_bodies: BTreeMap<String, AttackerBodies>,
    /// Callers of routes that take a bearer token.
    pub bearer: Option<Callers>,
    /// `METHOD /path` → callers of a public route (no bearer security in the document).
    pub public: BTreeMap<String, Callers>,
    /// `METHOD /path` → the owner of that route when it is not `bearer.owner` (a rep's own
    /// action on a call their leader also sees).
    pub owners: BTreeMap<String, Credential>,
    /// `METHOD /path` → the documented answer to another org when it is not 404.
    pub other_org_exceptions: BTreeMap<String, Exception>,
    /// Strings that identify org A's objects: no list may show them to org B.
    pub secrets: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub path_params: Vec<String>,
    pub query_params: Vec<String>,
    /// Properties of the JSON body that name objects (`repId`, `appointmentId`, `user_id`, or
    /// declared `format: uuid`): such a route is attacked with org A's ids in its body.
    pub body_ids: Vec<String>,
    pub bearer: bool,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Every operation of the document, in its order.
pub fn routes(document: &Value) -> Vec<Route> {
    let mut routes = Vec::new();
    let Some(paths) = document["paths"].as_object() else {
        return routes;
    };
    for (path, operations) in paths {
        let Some(operations) = operations.as_object() else {
            continue;
        };
        for (method, operation) in operations {
            let params = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let named = |location: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == location)
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            };
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            routes.push(Route {
                method: method.to_uppercase(),
                path: path.clone(),
                path_params: named("path"),
                query_params: named("query"),
                body_ids: body_ids(document, operation),
                bearer,
            });
        }
    }
    routes
}

/// The properties of an operation's JSON request body that name objects.
fn body_ids(document: &Value, operation: &Value) -> Vec<String> {
    let mut schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        schema = &document["components"]["schemas"][name];
    }
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, property)| {
            name.ends_with("Id") || name.ends_with("_id") || property["format"] == "uuid"
        })
        .map(|(name, _)| name.clone())
        .collect()
}

pub async fn openapi(app: &TestApp) -> Result<Value> {
    let response = app.get("/openapi.json").send().await?;
    assert_eq!(response.status().as_u16(), 200, "GET /openapi.json");
    Ok(response.json().await?)
}

/// Sends `method path` with `credential` and `body`; answers the status and the body text. A
/// streaming answer is read for at most `read_for`.
pub async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    credential: &Credential,
    body: Option<&Value>,
    read_for: Duration,
) -> Result<(u16, String)> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = app.client.request(method, app.url(path));
    match credential {
        Credential::Bearer(token) => request = request.bearer_auth(token),
        Credential::GuestLink {
            token,
            device_secret,
        } => {
            request = request
                .query(&[("token", token)])
                .header("Guest-Device-Secret", device_secret)
        }
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + read_for;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.extend_from_slice(&chunk),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(error)) => return Err(error.into()),
        }
    }
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

fn expand(route: &Route, fixture: &Fixture) -> std::result::Result<String, String> {
    let mut path = route.path.clone();
    for name in &route.path_params {
        let Some(value) = fixture.ids.get(name) else {
            return Err(format!(
                "{}: path parameter `{name}` has no fixture: create a real object of org A in \
                 this service's fixture (suites/security/tests/isolation.rs) and add its id \
                 under \"{name}\"",
                route.key()
            ));
        };
        path = path.replace(&format!("{{{name}}}"), value);
    }
    Ok(path)
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Attacks every route of `document` that has a path parameter, each against a fresh fixture
/// (`fixture()` creates real objects of org A), and checks every list route with org B's
/// leader. Returns the problems found (empty when isolated) and a log of what was checked.
pub async fn check_isolation<F, Fut>(
    service: &str,
    app: &TestApp,
    fixture: F,
) -> Result<(Vec<String>, Vec<String>)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Fixture>>,
{
    let document = openapi(app).await?;
    let all = routes(&document);
    let mut problems = Vec::new();
    let mut log = Vec::new();
    let quick = Duration::from_millis(0);
    // Routes that name objects in their path, or only in their body (with org A's ids there).
    let attacked = all.iter().filter(|r| {
        !r.path_params.is_empty() || (r.bearer && !r.body_ids.is_empty() && r.method != "GET")
    });
    for route in attacked {
        let fixture = fixture().await?;
        let key = route.key();
        let path = match expand(route, &fixture) {
            Ok(path) => path,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if route.path_params.is_empty() && !fixture.bodies.contains_key(&key) {
            problems.push(format!(
                "{key}: its body names objects ({}) and has no fixture: add a body naming org \
                 A's objects to `bodies` in {service}'s fixture",
                route.body_ids.join(", ")
            ));
            continue;
        }
        let callers = if route.bearer {
            fixture.bearer.clone()
        } else {
            fixture.public.get(&key).cloned()
        };
        let Some(callers) = callers else {
            problems.push(format!(
                "{key}: a public route with a path parameter and no callers: add its \
                 credentials to `public` in {service}'s fixture"
            ));
            continue;
        };
        // Routes with a body get a valid one, so a 400 cannot come before the access check.
        let empty = Value::Object(serde_json::Map::new());
        let body = fixture
            .bodies
            .get(&key)
            .or((route.method == "POST" || route.method == "PUT").then_some(&empty));
        let attacker = fixture.attacker_bodies.get(&key);
        let (status, answer) = send(
            app,
            &route.method,
            &path,
            &callers.other_org,
            attacker.map(|b| &b.other_org).or(body),
            quick,
        )
        .await?;
        match fixture.other_org_exceptions.get(&key) {
            Some(exception) if status != exception.status || code_of(&answer) != exception.code => {
                problems.push(format!(
                    "{key}: another org got {status} {answer}, documented {} {} ({})",
                    exception.status, exception.code, exception.why
                ));
            }
            Some(_) => {}
            None if status != 404 => {
                problems.push(format!(
                    "{key}: another org got {status}, not 404: {answer}"
                ));
            }
            None => {}
        }
        let (role_status, role_answer) = send(
            app,
            &route.method,
            &path,
            &callers.same_org_without_role,
            attacker.map(|b| &b.same_org_without_role).or(body),
            quick,
        )
        .await?;
        if role_status != 403 && role_status != 404 {
            problems.push(format!(
                "{key}: a user of the org without the role got {role_status}, not 403/404: {role_answer}"
            ));
        }
        // The owner last: after the attacks the object must still be there and reachable.
        let owner = fixture.owners.get(&key).unwrap_or(&callers.owner);
        let (owner_status, owner_answer) =
            send(app, &route.method, &path, owner, body, quick).await?;
        // A route that refuses everyone (401/403 to the owner too) proves nothing about
        // isolation: the owner must get through.
        if matches!(owner_status, 401 | 403 | 404) || owner_status >= 500 {
            problems.push(format!(
                "{key}: the owner got {owner_status} (the fixture is not real, an attack \
                 destroyed it, or the route refuses everyone): {owner_answer}"
            ));
        }
        log.push(format!(
            "{service} {key}: other org {status}, same org without role {role_status}, owner {owner_status}"
        ));
    }

    // Routes without ids: org B's leader lists everything they may, with every query
    // parameter that names one of A's objects set to it; nothing of A's may show.
    let fixture = fixture().await?;
    let (Some(callers), false) = (fixture.bearer.clone(), fixture.secrets.is_empty()) else {
        problems.push(format!(
            "{service}: the fixture has no callers or no secrets"
        ));
        return Ok((problems, log));
    };
    let mut owner_saw = 0;
    let mut lists = 0;
    for route in all
        .iter()
        .filter(|r| r.path_params.is_empty() && r.method == "GET" && r.bearer)
    {
        lists += 1;
        let query: Vec<(String, String)> = route
            .query_params
            .iter()
            .filter_map(|name| fixture.ids.get(name).map(|v| (name.clone(), v.clone())))
            .collect();
        // Plain, then with each query parameter that names one of A's objects set to it,
        // then with all of them.
        let encode = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
                .collect::<Vec<_>>()
                .join("&")
        };
        let mut paths = vec![route.path.clone()];
        for pair in &query {
            paths.push(format!(
                "{}?{}",
                route.path,
                encode(std::slice::from_ref(pair))
            ));
        }
        if query.len() > 1 {
            paths.push(format!("{}?{}", route.path, encode(&query)));
        }
        let read_for = Duration::from_millis(300);
        let mut statuses = Vec::new();
        for path in &paths {
            let (status, answer) =
                send(app, "GET", path, &callers.other_org, None, read_for).await?;
            statuses.push(status);
            // Error answers may echo the query (a 400 naming the value): only data answers
            // can leak.
            let leaked: Vec<&String> = fixture
                .secrets
                .iter()
                .filter(|s| (200..300).contains(&status) && answer.contains(s.as_str()))
                .collect();
            if !leaked.is_empty() {
                problems.push(format!(
                    "GET {path}: org B sees org A's {leaked:?}: {answer}"
                ));
            }
            if status >= 500 {
                problems.push(format!("GET {path}: org B got {status}: {answer}"));
            }
        }
        let status = format!("{statuses:?} (plain, each of A's ids, all: {query:?})");
        let (owner_status, owner_answer) =
            send(app, "GET", &route.path, &callers.owner, None, read_for).await?;
        let shown = fixture
            .secrets
            .iter()
            .filter(|s| owner_answer.contains(s.as_str()))
            .count();
        if shown > 0 {
            owner_saw += 1;
        }
        log.push(format!(
            "{service} {} (list): org B {status} saw none of A's {} objects; owner {owner_status} saw {shown}",
            route.key(),
            fixture.secrets.len()
        ));
    }
    if lists > 0 && owner_saw == 0 {
        problems.push(format!(
            "{service}: no list showed the owner their own objects, so the list check proves nothing"
        ));
    }
    Ok((problems, log))
}
