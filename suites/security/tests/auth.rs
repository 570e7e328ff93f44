//! Authentication attacks end to end, on every bearer route of every service as its OpenAPI
//! document lists them (so a route that forgot the `Principal` extractor fails here): expired,
//! not yet valid, wrong audience, wrong issuer, `alg: none`, another key, an RS256 token where
//! HS256 is pinned, and a guest link presented as a platform token. Then a guest link used on
//! another call, and reps on every supervisor route.
//!
//! The verifier itself is attacked in depth in `crates/auth/tests/attacks.rs` (HS/RS confusion
//! with the public key, tampered payloads, clock skew, each algorithm); this file proves every
//! service and route is wired to it.

mod common;

use base64::Engine;
use chrono::Utc;
use common::services::{self, Service};
use common::{Credential, routes, send};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sb_auth::{GuestLinks, OrgId, Role};
use sb_testkit::{Result, TEST_JWT_SECRET, TestAppointment, TestUser};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

fn claims(user: &TestUser) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "sub": user.id, "org": user.org, "role": user.role.as_str(), "teams": [],
        "iss": "switchboard-auth", "aud": "switchboard",
        "iat": now, "nbf": now - 60, "exp": now + 3600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn hs256(claims: &Value, secret: &str) -> Result<String> {
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// (what, token, expected code): every one must be a 401.
fn attacks(user: &TestUser) -> Result<Vec<(&'static str, String, &'static str)>> {
    let now = Utc::now().timestamp();
    let good = claims(user);
    // A well-formed RS256 token (the service pins HS256): header says RS256, signature is an
    // HMAC with the service's own secret, which must not be accepted under another alg.
    let rs_header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
    let payload = b64(&with(good.clone(), "role", json!("ADMIN")));
    let hs = hs256(&good, TEST_JWT_SECRET)?;
    let signature = hs.rsplit('.').next().unwrap_or_default();
    let guest = GuestLinks::new(
        "security-test-guest-link-secret-0123456789"
            .to_owned()
            .into(),
    )
    .mint(
        OrgId::from(user.org),
        Uuid::now_v7(),
        Utc::now() - chrono::Duration::minutes(5),
        Utc::now() + chrono::Duration::hours(1),
    )?
    .0;
    Ok(vec![
        (
            "expired",
            hs256(
                &with(good.clone(), "exp", json!(now - 3600)),
                TEST_JWT_SECRET,
            )?,
            "token_expired",
        ),
        (
            "not yet valid",
            hs256(
                &with(good.clone(), "nbf", json!(now + 3600)),
                TEST_JWT_SECRET,
            )?,
            "invalid_token",
        ),
        (
            "wrong audience",
            hs256(
                &with(good.clone(), "aud", json!("billing")),
                TEST_JWT_SECRET,
            )?,
            "invalid_token",
        ),
        (
            "wrong issuer",
            hs256(
                &with(good.clone(), "iss", json!("https://evil.example")),
                TEST_JWT_SECRET,
            )?,
            "invalid_token",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                payload
            ),
            "invalid_token",
        ),
        (
            "RS256 header on an HS256 service",
            format!("{rs_header}.{payload}.{signature}"),
            "invalid_token",
        ),
        (
            "another key",
            hs256(&good, "an-attackers-secret-0123456789abcdef01")?,
            "invalid_token",
        ),
        ("guest link as a platform token", guest, "invalid_token"),
    ])
}

async fn every_bearer_route_refuses_every_attack(name: &str, service: &Service) -> Result {
    let document = common::openapi(&service.app).await?;
    let user = TestUser::new(Uuid::now_v7(), Role::Ceo);
    // The attacks must be refused for the attack's reason: the same claims, properly signed,
    // are accepted.
    let valid = hs256(&claims(&user), TEST_JWT_SECRET)?;
    let attacks = attacks(&user)?;
    let mut problems = Vec::new();
    let mut checked = 0;
    for route in routes(&document).iter().filter(|r| r.bearer) {
        let path = route
            .path_params
            .iter()
            .fold(route.path.clone(), |path, param| {
                path.replace(&format!("{{{param}}}"), &Uuid::now_v7().to_string())
            });
        let path = path.replace("{e164}", "+33123456789");
        for (what, token, code) in &attacks {
            let (status, body) = send(
                &service.app,
                &route.method,
                &path,
                &Credential::Bearer(token.clone()),
                None,
                Duration::ZERO,
            )
            .await?;
            let got = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if status != 401 || got != *code {
                problems.push(format!("{} {path}: {what}: {status} {body}", route.method));
            }
            checked += 1;
        }
        let (status, body) = send(
            &service.app,
            &route.method,
            &path,
            &Credential::Bearer(valid.clone()),
            None,
            Duration::ZERO,
        )
        .await?;
        if status == 401 {
            problems.push(format!(
                "{} {path}: a valid token got 401: {body}",
                route.method
            ));
        }
    }
    println!("{name}: {checked} attacks on bearer routes refused");
    assert!(
        checked > 0,
        "{name}: no bearer route in the OpenAPI document"
    );
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    Ok(())
}

#[tokio::test]
async fn video_refuses_bad_tokens_on_every_route() -> Result {
    let video = services::video().await?;
    every_bearer_route_refuses_every_attack("video", &video).await
}

#[tokio::test]
async fn monitoring_refuses_bad_tokens_on_every_route() -> Result {
    let monitoring = services::monitoring().await?;
    every_bearer_route_refuses_every_attack("monitoring", &monitoring).await
}

#[tokio::test]
async fn telephony_refuses_bad_tokens_on_every_route() -> Result {
    let telephony = services::telephony().await?;
    every_bearer_route_refuses_every_attack("telephony", &telephony).await
}

#[tokio::test]
async fn signaling_refuses_bad_tokens_on_every_route() -> Result {
    let signaling = services::signaling().await?;
    every_bearer_route_refuses_every_attack("signaling", &signaling).await
}

/// A guest link is scoped to one call: presented for a guest of another call of the same org
/// it reaches nothing, and it never joins another call's lobby.
#[tokio::test]
async fn a_guest_link_of_one_call_is_refused_on_another() -> Result {
    let video = services::video().await?;
    let org = Uuid::now_v7();
    let host = TestUser::new(org, Role::Closer);
    let mut calls = Vec::new();
    for _ in 0..2 {
        let appointment = video
            .appointment(&TestAppointment::new(org, host.id))
            .await?;
        let (status, joined) = video
            .call(
                &host,
                "POST",
                &format!("/calls/appointments/{appointment}/join"),
                Some(json!({})),
            )
            .await?;
        assert_eq!(status, 200, "{joined}");
        let call = joined["callId"].as_str().ok_or("callId")?.to_owned();
        let (status, link) = video
            .call(&host, "POST", &format!("/calls/{call}/guest-links"), None)
            .await?;
        assert_eq!(status, 201, "{link}");
        let token = link["token"].as_str().ok_or("token")?.to_owned();
        let (status, waiting) = video
            .app
            .send(
                video
                    .app
                    .post("/calls/guest/join")
                    .json(&json!({"token": token, "displayName": "Guest"})),
                None,
            )
            .await?;
        assert_eq!(status, 202, "{waiting}");
        let guest = waiting["guestId"].as_str().ok_or("guestId")?.to_owned();
        let device = waiting["deviceSecret"]
            .as_str()
            .ok_or("deviceSecret")?
            .to_owned();
        calls.push((call, token, guest, device));
    }
    // Even with the guest's own device secret, the other call's link reads nothing.
    let (_, token_x, guest_x, device_x) = &calls[0];
    let (_, token_y, guest_y, device_y) = &calls[1];
    for (token, guest, device) in [(token_x, guest_y, device_y), (token_y, guest_x, device_x)] {
        let (status, body) = video
            .app
            .send(
                video
                    .app
                    .get(&format!("/calls/guest/{guest}"))
                    .query(&[("token", token)])
                    .header("Guest-Device-Secret", device),
                None,
            )
            .await?;
        assert_eq!(status, 404, "{body}");
    }
    // Each link still works for its own guest's device.
    for (_, token, guest, device) in &calls {
        let (status, body) = video
            .app
            .send(
                video
                    .app
                    .get(&format!("/calls/guest/{guest}"))
                    .query(&[("token", token)])
                    .header("Guest-Device-Secret", device),
                None,
            )
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    Ok(())
}

/// Reps (CLOSER, SETTER) on every monitoring route but their own (`/monitoring/rep/…`): 403, or
/// 404 for a route naming an object, and never a 2xx.
#[tokio::test]
async fn reps_are_refused_on_every_supervisor_route() -> Result {
    let monitoring = services::monitoring().await?;
    let document = common::openapi(&monitoring.app).await?;
    let org = Uuid::now_v7();
    let mut checked = 0;
    let mut problems = Vec::new();
    for role in [Role::Closer, Role::Setter] {
        let rep = TestUser::new(org, role);
        let token = Credential::Bearer(monitoring.token(&rep));
        for route in routes(&document)
            .iter()
            .filter(|r| r.bearer && !r.path.starts_with("/monitoring/rep/"))
        {
            let path = route
                .path_params
                .iter()
                .fold(route.path.clone(), |path, param| {
                    path.replace(&format!("{{{param}}}"), &Uuid::now_v7().to_string())
                });
            // A valid body, so the answer is about the role (bodies are read first).
            let body = match (route.method.as_str(), route.path.as_str()) {
                ("GET", _) => None,
                ("POST", "/monitoring/sessions") => Some(json!({"repId": rep.id})),
                (_, "/monitoring/settings") => Some(
                    json!({"notifyRep": true, "allowCoach": true, "allowBarge": true, "maxSupervisorsPerRep": 5}),
                ),
                (_, path) if path.ends_with("/mode") => Some(json!({"mode": "barge"})),
                _ => Some(json!({})),
            };
            let body = body.as_ref();
            let (status, answer) = send(
                &monitoring.app,
                &route.method,
                &path,
                &token,
                body,
                Duration::from_millis(200),
            )
            .await?;
            let allowed: &[u16] = if route.path_params.is_empty() {
                &[403]
            } else {
                &[403, 404]
            };
            if !allowed.contains(&status) {
                problems.push(format!("{role} {} {path}: {status} {answer}", route.method));
            }
            checked += 1;
        }
    }
    println!("monitoring: {checked} supervisor routes refused to reps");
    assert!(checked >= 10, "only {checked} supervisor routes found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Signaling's real entrance is the Socket.IO CONNECT packet (`auth.token`, or `?token=` for
/// older clients): every attack token gets `connect_error`, the valid one connects.
#[tokio::test]
async fn signaling_socket_connect_refuses_every_attack() -> Result {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let signaling = services::signaling().await?;
    let user = TestUser::new(Uuid::now_v7(), Role::Closer);
    let valid = hs256(&claims(&user), TEST_JWT_SECRET)?;
    let mut cases: Vec<(String, String, bool)> = attacks(&user)?
        .into_iter()
        .map(|(what, token, _)| (what.to_owned(), token, false))
        .collect();
    cases.push(("valid".to_owned(), valid, true));
    for (what, token, accepted) in cases {
        for in_query in [false, true] {
            let mut url = signaling
                .app
                .url("/socket.io/?EIO=4&transport=websocket")
                .replacen("http", "ws", 1);
            let connect = if in_query {
                url.push_str(&format!("&token={token}"));
                "40/video-call,".to_owned()
            } else {
                format!("40/video-call,{}", json!({"token": token}))
            };
            let (mut stream, _) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(url),
            )
            .await??;
            // OPEN, then our CONNECT, then the first text frame is the answer.
            let mut texts = Vec::new();
            for step in 0..2 {
                if step == 1 {
                    stream.send(Message::text(connect.clone())).await?;
                }
                let text = loop {
                    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await? {
                        Some(Ok(Message::Text(text))) => break text.as_str().to_owned(),
                        Some(Ok(_)) => {}
                        other => return Err(format!("websocket ended: {other:?}").into()),
                    }
                };
                texts.push(text);
            }
            assert!(
                texts[0].starts_with('0'),
                "not an OPEN packet: {}",
                texts[0]
            );
            let answer = &texts[1];
            if accepted {
                assert!(answer.starts_with("40/video-call,"), "{what}: {answer}");
            } else {
                assert!(
                    answer.starts_with("44/video-call,") && answer.contains("unauthorized"),
                    "{what} (in query: {in_query}): {answer}"
                );
            }
        }
    }
    Ok(())
}
