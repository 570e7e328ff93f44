//! Hostile webhooks against the three public webhook routes (LiveKit on video and monitoring,
//! Twilio on telephony): forged, replayed, truncated, oversized, wrong content type. Each
//! refusal has its status and stable problem code, and no table of the database changes (every
//! table's row count is compared). Replays of a genuine event have one effect. Reordering is
//! covered by each service's shuffled-replay tests (see the README's "Security testing").

mod common;

use std::time::{Duration, Instant};

use common::services::{self, PUBLIC_BASE_URL, Service};
use sb_auth::Role;
use sb_testkit::{Result, TestAppointment, TestUser, sign_twilio_webhook};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Signs a body: the header name and its value.
type Signer<'a> = Box<dyn Fn(&[u8]) -> Result<(&'static str, String)> + 'a>;

/// One webhook route and how its provider signs a body.
struct Hook<'a> {
    service: &'a Service,
    path: String,
    content_type: &'static str,
    sign: Signer<'a>,
    forge: Signer<'a>,
}

impl Hook<'_> {
    async fn post(
        &self,
        body: &[u8],
        signature: Option<(&'static str, String)>,
        content_type: &str,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .service
            .app
            .post(&self.path)
            .header("Content-Type", content_type)
            .body(body.to_vec());
        if let Some((header, value)) = signature {
            request = request.header(header, value);
        }
        self.service.app.send(request, None).await
    }

    async fn signed(&self, body: &[u8]) -> Result<(u16, Value)> {
        self.post(body, Some((self.sign)(body)?), self.content_type)
            .await
    }

    /// `body` must be refused with `status` and `code`, and write nothing.
    async fn refused(
        &self,
        what: &str,
        answer: (u16, Value),
        status: u16,
        code: &str,
        before: &[(String, i64)],
    ) -> Result {
        assert_eq!(
            (answer.0, answer.1["code"].as_str()),
            (status, Some(code)),
            "{}: {what}: {}",
            self.path,
            answer.1
        );
        let after = self.service.db.all_counts().await?;
        assert_eq!(before, after.as_slice(), "{}: {what} wrote rows", self.path);
        Ok(())
    }

    /// Every attack on `genuine` (a body that has an effect when delivered as is).
    async fn attack(&self, genuine: &[u8]) -> Result {
        let before = self.service.db.all_counts().await?;

        // Forged: signed with another key, unsigned, garbage.
        let answer = self
            .post(genuine, Some((self.forge)(genuine)?), self.content_type)
            .await?;
        self.refused("forged", answer, 403, "invalid_signature", &before)
            .await?;
        let answer = self.post(genuine, None, self.content_type).await?;
        self.refused("unsigned", answer, 403, "invalid_signature", &before)
            .await?;

        // Truncated: the genuine signature over a shortened body.
        let cut = &genuine[..genuine.len() / 2];
        let answer = self
            .post(cut, Some((self.sign)(genuine)?), self.content_type)
            .await?;
        self.refused("truncated", answer, 403, "invalid_signature", &before)
            .await?;

        // Wrong content type, correctly signed: refused before the body is read.
        for content_type in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/xml",
        ] {
            let answer = self
                .post(genuine, Some((self.sign)(genuine)?), content_type)
                .await?;
            self.refused(content_type, answer, 415, "unsupported_media_type", &before)
                .await?;
        }

        // Oversized, correctly signed (a signature does not make a body small enough).
        let mut big = genuine.to_vec();
        big.resize(200 * 1024, b' ');
        let answer = self.signed(&big).await?;
        self.refused("oversized", answer, 413, "payload_too_large", &before)
            .await?;
        self.oversized_is_refused_before_reading(&before).await?;

        // Replayed: the genuine delivery has its effect once; the same delivery again changes
        // nothing.
        let (status, answer) = self.signed(genuine).await?;
        assert_eq!(status, 200, "{}: genuine delivery: {answer}", self.path);
        let once = self.service.db.all_counts().await?;
        assert_ne!(
            once, before,
            "{}: the genuine delivery had no effect",
            self.path
        );
        for _ in 0..2 {
            let (status, answer) = self.signed(genuine).await?;
            assert_eq!(status, 200, "{}: replay: {answer}", self.path);
            assert_eq!(
                self.service.db.all_counts().await?,
                once,
                "{}: a replay had an effect",
                self.path
            );
        }
        Ok(())
    }

    /// A request declaring 1 GiB, of which only 1 KiB is sent, is answered 413 at once: the
    /// service decided on `Content-Length` without waiting for (or reading) the body. A chunked
    /// body with no length is cut off once it passes the limit.
    async fn oversized_is_refused_before_reading(&self, before: &[(String, i64)]) -> Result {
        let (header, signature) = (self.sign)(b"{}")?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\n{header}: {signature}\r\n",
            self.path, self.content_type
        );
        let started = Instant::now();
        let declared = format!("{head}Content-Length: 1073741824\r\n\r\n");
        let (status, body) =
            raw_exchange(self.service.app.port, declared.as_bytes(), &[b'x'; 1024]).await?;
        let elapsed = started.elapsed();
        println!(
            "{}: 1 GiB declared, 1 KiB sent: {status} in {} ms",
            self.path,
            elapsed.as_millis()
        );
        assert_eq!(status, 413, "{}: {body}", self.path);
        assert!(body.contains("payload_too_large"), "{body}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

        let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
        let mut chunks = Vec::new();
        for _ in 0..20 {
            chunks.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
            chunks.extend_from_slice(&[b' '; 16 * 1024]);
            chunks.extend_from_slice(b"\r\n");
        }
        // No terminating chunk: the body never ends, only the limit can end the request.
        let (status, body) =
            raw_exchange(self.service.app.port, chunked.as_bytes(), &chunks).await?;
        assert_eq!(status, 413, "{}: chunked: {body}", self.path);
        assert!(body.contains("payload_too_large"), "{body}");
        let after = self.service.db.all_counts().await?;
        assert_eq!(
            before,
            after.as_slice(),
            "{}: oversized wrote rows",
            self.path
        );
        Ok(())
    }
}

/// Writes `head` then `body` on a new connection (ignoring a reset once the server has
/// answered) and reads the answer: status and text.
async fn raw_exchange(port: u16, head: &[u8], body: &[u8]) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(head).await?;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&answer);
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((status, text))
}

fn livekit_hook(service: &Service) -> Result<Hook<'_>> {
    let livekit = &service.livekit;
    let (key, secret) = (livekit.api_key.clone(), livekit.api_secret.clone());
    Ok(Hook {
        service,
        path: "/webhooks/livekit".to_owned(),
        content_type: "application/webhook+json",
        sign: Box::new(move |body| {
            Ok((
                "Authorization",
                sb_testkit::sign_webhook(&key, &secret, &String::from_utf8_lossy(body))?,
            ))
        }),
        forge: Box::new(move |body| {
            Ok((
                "Authorization",
                sb_testkit::sign_webhook(
                    "devkey",
                    "an-attackers-secret-0123456789abcdef",
                    &String::from_utf8_lossy(body),
                )?,
            ))
        }),
    })
}

fn participant_joined(room: &str, identity: &str) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp();
    let sid = format!("PA_{}", &Uuid::now_v7().simple().to_string()[20..]);
    json!({
        "event": "participant_joined", "id": format!("EV_{sid}"), "createdAt": now.to_string(),
        "room": {"name": room},
        "participant": {"sid": sid, "identity": identity, "name": "Someone", "joinedAt": now.to_string()},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn video_livekit_webhooks_refuse_hostile_deliveries_and_apply_replays_once() -> Result {
    let video = services::video().await?;
    let org = Uuid::now_v7();
    let host = TestUser::new(org, Role::Closer);
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
    let room = joined["roomName"].as_str().ok_or("roomName")?.to_owned();
    let hook = livekit_hook(&video)?;
    hook.attack(&participant_joined(&room, &format!("u_{}", host.id)))
        .await
}

#[tokio::test]
async fn monitoring_livekit_webhooks_refuse_hostile_deliveries_and_apply_replays_once() -> Result {
    let monitoring = services::monitoring().await?;
    let rep = TestUser::new(Uuid::now_v7(), Role::Closer);
    let (status, session) = monitoring
        .call(&rep, "POST", "/monitoring/rep/session", None)
        .await?;
    assert_eq!(status, 200, "{session}");
    let room = session["roomName"].as_str().ok_or("roomName")?.to_owned();
    let hook = livekit_hook(&monitoring)?;
    hook.attack(&participant_joined(&room, &format!("rep_{}", rep.id)))
        .await
}

#[tokio::test]
async fn twilio_webhooks_refuse_hostile_deliveries_and_apply_replays_once() -> Result {
    let telephony = services::telephony().await?;
    let org = Uuid::now_v7();
    let ceo = TestUser::new(org, Role::Ceo);
    let rep = TestUser::new(org, Role::Closer);
    let number = "+33123456789";
    let (status, assigned) = telephony
        .call(
            &ceo,
            "PUT",
            &format!("/api/numbers/{number}"),
            Some(json!({"ownerUserId": rep.id})),
        )
        .await?;
    assert_eq!(status, 201, "{assigned}");
    let twilio = &telephony.twilio;
    let token = twilio.auth_token.clone();
    let url = format!("{PUBLIC_BASE_URL}/webhook/voice");
    let form = |body: &[u8]| -> Vec<(String, String)> {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let hook = Hook {
        service: &telephony,
        path: "/webhook/voice".to_owned(),
        content_type: "application/x-www-form-urlencoded",
        sign: Box::new({
            let (token, url) = (token.clone(), url.clone());
            move |body| {
                Ok((
                    "X-Twilio-Signature",
                    sign_twilio_webhook(&token, &url, &form(body)),
                ))
            }
        }),
        forge: Box::new(move |body| {
            Ok((
                "X-Twilio-Signature",
                sign_twilio_webhook("an-attackers-auth-token-0123456789", &url, &form(body)),
            ))
        }),
    };
    let sid = sb_testkit::twilio_sid("CA");
    let genuine = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("AccountSid", twilio.account_sid.as_str()),
            ("CallSid", sid.as_str()),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", "+447911123456"),
            ("Caller", "+447911123456"),
            ("To", number),
            ("Called", number),
        ])
        .finish();
    hook.attack(genuine.as_bytes()).await
}
