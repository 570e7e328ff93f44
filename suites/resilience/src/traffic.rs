//! The traffic of the fault tests and the soak run: appointment call joins, LiveKit and Twilio
//! webhooks, signaling over Socket.IO and monitoring sessions, each request timed and labelled
//! with its route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sb_auth::Role;
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_testkit::{FakeLiveKit, TestTokens, TestUser, sign_twilio_webhook};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::socket::{ErrorEvent, SocketClient};

/// One answered (or failed) request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub route: &'static str,
    /// HTTP status; 0 when no answer came (connection refused, timeout).
    pub status: u16,
    pub elapsed: Duration,
    /// The problem+json `code` of an error answer, or what the transport said when no answer
    /// came.
    pub code: Option<String>,
    /// No answer because the server turned the request away before taking it: nothing was
    /// listening (connection refused), or a websocket was closed with 1001 (going away). What a
    /// server that is shutting down may do, unlike cutting a request it had taken.
    pub turned_away: bool,
    /// The `X-Request-Id` the request was sent with (HTTP requests only): whether the server
    /// took a request that got no answer is told by its `request started` log line.
    pub request_id: Option<String>,
    /// No answer within the client's timeout.
    pub timed_out: bool,
}

impl Sample {
    /// A sample for a step that failed before any request was sent.
    fn not_sent(route: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            route,
            status: 0,
            elapsed: Duration::ZERO,
            code: Some(error.to_string()),
            turned_away: false,
            request_id: None,
            timed_out: false,
        }
    }
}

/// Base URLs of the four services.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub video: String,
    pub telephony: String,
    pub signaling: String,
    pub monitoring: String,
}

impl Endpoints {
    pub fn of(stack: &crate::Stack) -> Self {
        Self {
            video: stack.video.address.clone(),
            telephony: stack.telephony.address.clone(),
            signaling: stack.signaling.address.clone(),
            monitoring: stack.monitoring.address.clone(),
        }
    }
}

/// One org's users and a Twilio number, and the means to sign webhooks.
#[derive(Clone)]
pub struct Traffic {
    pub endpoints: Endpoints,
    pub client: reqwest::Client,
    pub tokens: TestTokens,
    pub livekit: Arc<FakeLiveKit>,
    pub twilio_auth_token: String,
    pub db: sb_db::DbPool,
    pub org: Uuid,
    pub ceo: TestUser,
    pub number: String,
}

/// A valid French landline number of the run's own (libphonenumber checks the numbering plan).
fn fresh_number() -> String {
    let digits = Uuid::new_v4().as_u128() % 10_000_000;
    format!("+3315{digits:07}")
}

impl Traffic {
    /// A new org with a CEO, and a Twilio number owned by a rep of the org.
    pub async fn new(
        endpoints: Endpoints,
        tokens: TestTokens,
        livekit: Arc<FakeLiveKit>,
        twilio_auth_token: String,
        database_url: &str,
        request_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let db = sb_db::build_pool(&sb_db::DatabaseConfig::with_url(database_url))?;
        let org = Uuid::now_v7();
        let traffic = Self {
            endpoints,
            client: crate::http_client(request_timeout)?,
            tokens,
            livekit,
            twilio_auth_token,
            db,
            org,
            ceo: TestUser::new(org, Role::Ceo),
            number: fresh_number(),
        };
        let owner = TestUser::new(org, Role::Closer);
        let path = format!("/api/numbers/{}", traffic.number);
        let (sample, body) = traffic
            .send(
                "PUT /api/numbers/{e164}",
                traffic
                    .client
                    .put(format!("{}{path}", traffic.endpoints.telephony))
                    .json(&json!({"ownerUserId": owner.id, "ringApp": true})),
                Some(&traffic.ceo),
            )
            .await;
        anyhow::ensure!(
            sample.status == 200 || sample.status == 201,
            "assigning {}: {} {body}",
            traffic.number,
            sample.status
        );
        Ok(traffic)
    }

    pub fn token(&self, user: &TestUser) -> String {
        self.tokens.for_principal(&user.principal())
    }

    /// Sends `request` (with `user`'s token), timing it; never fails: a transport error is a
    /// sample with status 0.
    pub async fn send(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
        user: Option<&TestUser>,
    ) -> (Sample, Value) {
        let request_id = Uuid::new_v4().to_string();
        let request = request.header("X-Request-Id", &request_id);
        let request = match user {
            Some(user) => request.bearer_auth(self.token(user)),
            None => request,
        };
        let started = Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        }
        .await;
        let elapsed = started.elapsed();
        let (status, body, turned_away, timed_out) = match answer {
            Ok((status, text)) => (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
                false,
                false,
            ),
            Err(error) => (
                0,
                // With its causes: reqwest's own message names only the URL.
                Value::String(sb_platform::error::error_chain(&error)),
                error.is_connect(),
                error.is_timeout(),
            ),
        };
        // A problem's stable code, or for a transport error what the transport said.
        let code = match &body {
            Value::String(transport) if status == 0 => Some(transport.clone()),
            body => body["code"].as_str().map(str::to_owned),
        };
        (
            Sample {
                route,
                status,
                elapsed,
                code,
                turned_away,
                request_id: Some(request_id),
                timed_out,
            },
            body,
        )
    }

    /// A remote appointment in the read model, as the CRM projector would write it.
    pub async fn appointment(
        &self,
        host: &TestUser,
        guest: Option<&TestUser>,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let mut conn = self.db.get().await?;
        upsert_appointment(
            &mut conn,
            &NewAppointment {
                id,
                org_id: self.org,
                host_user_id: host.id,
                guest_user_id: guest.map(|g| g.id),
                setter_user_id: None,
                team_id: None,
                lead: json!({"name": "Soak Lead"}),
                scheduled_at: now,
                ends_at: Some(now + chrono::Duration::minutes(30)),
                kind: sb_db::models::AppointmentKind::Remote,
                status: sb_db::models::AppointmentStatus::Scheduled,
                version: 1,
            },
        )
        .await?;
        Ok(id)
    }

    /// Joins the call of `appointment` as `host`: (sample, callId, roomName).
    pub async fn join(
        &self,
        host: &TestUser,
        appointment: Uuid,
    ) -> (Sample, Option<(String, String)>) {
        let url = format!(
            "{}/calls/appointments/{appointment}/join",
            self.endpoints.video
        );
        let (sample, body) = self
            .send(
                "POST /calls/appointments/{id}/join",
                self.client.post(url).json(&json!({"displayName": "Host"})),
                Some(host),
            )
            .await;
        let call = match (body["callId"].as_str(), body["roomName"].as_str()) {
            (Some(call), Some(room)) => Some((call.to_owned(), room.to_owned())),
            _ => None,
        };
        (sample, call)
    }

    /// A signed LiveKit webhook to `base` (video or monitoring).
    pub async fn livekit_webhook(&self, base: &str, route: &'static str, body: &Value) -> Sample {
        let raw = body.to_string();
        let signature = match self.livekit.sign_webhook(&raw) {
            Ok(signature) => signature,
            Err(error) => return Sample::not_sent(route, error),
        };
        let request = self
            .client
            .post(format!("{base}/webhooks/livekit"))
            .header("Authorization", signature)
            .header("Content-Type", "application/webhook+json")
            .body(raw);
        self.send(route, request, None).await.0
    }

    /// LiveKit reports `identity` joined `room` (to the video service).
    pub async fn participant_joined(&self, room: &str, identity: &str) -> Sample {
        let now = Utc::now().timestamp();
        let sid = format!("PA_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let body = json!({
            "event": "participant_joined", "id": format!("EV_{}", Uuid::new_v4().simple()),
            "createdAt": now.to_string(), "room": {"name": room},
            "participant": {"sid": sid, "identity": identity, "joinedAt": now.to_string()},
        });
        self.livekit_webhook(
            &self.endpoints.video,
            "POST /webhooks/livekit (video)",
            &body,
        )
        .await
    }

    /// A Twilio webhook to telephony, signed for its public URL.
    pub async fn twilio_webhook(
        &self,
        route: &'static str,
        path: &str,
        form: &[(String, String)],
    ) -> Sample {
        let signature = sign_twilio_webhook(
            &self.twilio_auth_token,
            &format!("{}{path}", crate::PUBLIC_BASE_URL),
            form,
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(format!("{}{path}", self.endpoints.telephony))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("I-Twilio-Idempotency-Token", Uuid::new_v4().to_string())
            .header("X-Twilio-Signature", signature)
            .body(body);
        self.send(route, request, None).await.0
    }

    /// An inbound call to the number, answered by nobody, then completed: two webhooks.
    pub async fn inbound_call(&self) -> Vec<Sample> {
        let sid = sb_testkit::twilio_sid("CA");
        let caller = "+447911123456";
        let form = |status: &str, extra: &[(&str, &str)]| {
            let mut pairs: Vec<(String, String)> = [
                ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
                ("ApiVersion", "2010-04-01"),
                ("CallSid", sid.as_str()),
                ("CallStatus", status),
                ("Called", self.number.as_str()),
                ("Caller", caller),
                ("Direction", "inbound"),
                ("From", caller),
                ("To", self.number.as_str()),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            pairs.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            pairs
        };
        let mut samples = vec![
            self.twilio_webhook(
                "POST /webhook/voice",
                "/webhook/voice",
                &form("ringing", &[]),
            )
            .await,
        ];
        samples.push(
            self.twilio_webhook(
                "POST /webhook/voice/status",
                "/webhook/voice/status",
                &form(
                    "completed",
                    &[("CallDuration", "0"), ("SequenceNumber", "3")],
                ),
            )
            .await,
        );
        samples
    }

    /// `rep` comes online: their monitoring room (`POST /monitoring/rep/session`), they connect
    /// and publish their microphone in the fake LiveKit, and LiveKit's webhooks say so. Returns
    /// the samples and the room, or `None` when the rep session was refused.
    pub async fn rep_online(&self, rep: &TestUser) -> (Vec<Sample>, Option<String>) {
        let base = &self.endpoints.monitoring;
        let mut samples = Vec::new();
        let (sample, body) = self
            .send(
                "POST /monitoring/rep/session",
                self.client.post(format!("{base}/monitoring/rep/session")),
                Some(rep),
            )
            .await;
        samples.push(sample);
        let Some(room) = body["roomName"].as_str() else {
            return (samples, None);
        };
        let identity = format!("rep_{}", rep.id);
        self.livekit.join(room, &identity, &rep.name);
        self.livekit.publish_audio(room, &identity);
        let now = Utc::now().timestamp().to_string();
        let sid = format!("PA_{}", &rep.id.simple().to_string()[20..]);
        let joined = json!({
            "event": "participant_joined", "id": format!("EV_j_{sid}"), "createdAt": now,
            "room": {"name": room},
            "participant": {"sid": sid, "identity": identity, "joinedAt": now},
        });
        let published = json!({
            "event": "track_published", "id": format!("EV_t_{sid}"), "createdAt": now,
            "room": {"name": room},
            "participant": {"sid": sid, "identity": identity},
            "track": {"sid": format!("TR_{sid}"), "type": "AUDIO", "source": "MICROPHONE"},
        });
        for event in [joined, published] {
            samples.push(
                self.livekit_webhook(base, "POST /webhooks/livekit (monitoring)", &event)
                    .await,
            );
        }
        (samples, Some(room.to_owned()))
    }

    /// A rep comes online, a supervisor (the CEO) listens, then stops.
    pub async fn monitoring_session(&self) -> Vec<Sample> {
        let base = &self.endpoints.monitoring;
        let rep = TestUser::new(self.org, Role::Closer);
        let (mut samples, room) = self.rep_online(&rep).await;
        let Some(room) = room else {
            return samples;
        };
        let identity = format!("rep_{}", rep.id);
        let (sample, body) = self
            .send(
                "POST /monitoring/sessions",
                self.client
                    .post(format!("{base}/monitoring/sessions"))
                    .json(&json!({"repId": rep.id})),
                Some(&self.ceo),
            )
            .await;
        samples.push(sample);
        if let Some(id) = body["session"]["id"].as_str() {
            samples.push(
                self.send(
                    "POST /monitoring/sessions/{id}/stop",
                    self.client
                        .post(format!("{base}/monitoring/sessions/{id}/stop"))
                        .json(&json!({})),
                    Some(&self.ceo),
                )
                .await
                .0,
            );
        }
        self.livekit.leave(&room, &identity);
        samples
    }

    /// A signaling room for a new appointment; host and guest connect over Socket.IO, join,
    /// and exchange an offer and an answer. The exchange is one sample (route `socket.io …`).
    pub async fn signaling_exchange(&self) -> Vec<Sample> {
        let host = TestUser::new(self.org, Role::Closer);
        let guest = TestUser::new(self.org, Role::Member);
        let mut samples = Vec::new();
        let appointment = match self.appointment(&host, Some(&guest)).await {
            Ok(id) => id,
            Err(error) => {
                samples.push(Sample::not_sent("appointment insert", error));
                return samples;
            }
        };
        let base = &self.endpoints.signaling;
        let (sample, body) = self
            .send(
                "POST /video-call/room/appointment/{id}/create",
                self.client.post(format!(
                    "{base}/video-call/room/appointment/{appointment}/create"
                )),
                Some(&host),
            )
            .await;
        samples.push(sample);
        let Some(room) = body["roomId"].as_str() else {
            return samples;
        };
        let started = Instant::now();
        let exchanged = self.exchange(base, room, &host, &guest).await;
        // A socket has no status code: signaling's `unavailable` error event (its database is
        // away) is what a 503 is to HTTP; any other failure counts as a failed request.
        let status = match &exchanged {
            Ok(()) => 200,
            Err(error)
                if error
                    .downcast_ref::<ErrorEvent>()
                    .and_then(ErrorEvent::code)
                    == Some("unavailable") =>
            {
                503
            }
            Err(_) => 0,
        };
        let turned_away = exchanged
            .as_ref()
            .err()
            .is_some_and(crate::socket::turned_away);
        samples.push(Sample {
            route: "socket.io join + signal round trip",
            status,
            elapsed: started.elapsed(),
            code: exchanged.err().map(|e| e.to_string()),
            turned_away,
            request_id: None,
            timed_out: false,
        });
        samples
    }

    async fn exchange(
        &self,
        base: &str,
        room: &str,
        host: &TestUser,
        guest: &TestUser,
    ) -> anyhow::Result<()> {
        let mut a = SocketClient::connect(base, &self.token(host)).await?;
        let mut b = SocketClient::connect(base, &self.token(guest)).await?;
        a.emit("join-room", json!({"roomId": room})).await?;
        a.expect("joined-room").await?;
        b.emit("join-room", json!({"roomId": room})).await?;
        b.expect("joined-room").await?;
        a.emit(
            "webrtc-signal",
            json!({"roomId": room, "signal": {"type": "offer", "sdp": "v=0 soak"}}),
        )
        .await?;
        b.expect("webrtc-signal").await?;
        b.emit(
            "webrtc-signal",
            json!({"roomId": room, "signal": {"type": "answer", "sdp": "v=0 soak"}}),
        )
        .await?;
        a.expect("webrtc-signal").await?;
        a.close().await?;
        b.close().await?;
        Ok(())
    }

    /// A new appointment, the host joins, LiveKit reports the host in the room.
    pub async fn video_call(&self) -> Vec<Sample> {
        let host = TestUser::new(self.org, Role::Closer);
        let appointment = match self.appointment(&host, None).await {
            Ok(id) => id,
            Err(error) => return vec![Sample::not_sent("appointment insert", error)],
        };
        let (sample, call) = self.join(&host, appointment).await;
        let mut samples = vec![sample];
        if let Some((_, room)) = call {
            samples.push(
                self.participant_joined(&room, &format!("u_{}", host.id))
                    .await,
            );
        }
        samples
    }
}
