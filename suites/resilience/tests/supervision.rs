//! Supervision across services, end to end: monitoring decides, telephony acts, through
//! JetStream only. A rep's phone call is bridged through its Twilio conference (the fake runs
//! it); a supervisor starts a session on the rep from monitoring's API, and the fake's audio
//! routing shows listen, coach, barge and stop reaching the real conversation. About 10 s.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Result;
use sb_auth::Role;
use sb_resilience::{PUBLIC_BASE_URL, Stack};
use sb_testkit::{FakeParticipant, PrivateDeps, TestUser, sign_twilio_webhook, wait_until};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);
const CUSTOMER: &str = "+33987654321";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

struct Api<'a> {
    stack: &'a Stack,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn send(
        &self,
        user: &TestUser,
        method: reqwest::Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .client
            .request(method, url)
            .bearer_auth(self.stack.tokens.for_principal(&user.principal()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn telephony(
        &self,
        user: &TestUser,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value)> {
        let url = self.stack.telephony.url(path);
        self.send(user, method, url, Some(body)).await
    }

    async fn monitoring(&self, user: &TestUser, path: &str, body: &Value) -> Result<(u16, Value)> {
        let url = self.stack.monitoring.url(path);
        self.send(user, reqwest::Method::POST, url, Some(body))
            .await
    }

    async fn monitoring_get(&self, user: &TestUser, path: &str) -> Result<(u16, Value)> {
        let url = self.stack.monitoring.url(path);
        self.send(user, reqwest::Method::GET, url, None).await
    }

    /// A Twilio webhook to telephony, signed for its public URL as Twilio signs it.
    async fn twilio_webhook(&self, path: &str, form: &[(&str, &str)]) -> Result<(u16, String)> {
        let form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let signature = sign_twilio_webhook(
            &self.stack.twilio.auth_token,
            &format!("{PUBLIC_BASE_URL}{path}"),
            &form,
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let response = self
            .client
            .post(self.stack.telephony.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }
}

fn supervisor_leg(stack: &Stack, conference: &str, session: &str) -> Option<FakeParticipant> {
    let label = format!("supervisor_{}", Uuid::parse_str(session).ok()?.simple());
    stack.twilio.conference(conference).and_then(|c| {
        c.participants
            .values()
            .find(|p| p.label.as_deref() == Some(label.as_str()))
            .cloned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_supervisor_listens_coaches_and_barges_in_a_reps_phone_call() -> Result {
    let deps = PrivateDeps::start().await?;
    let stack = Stack::start(&deps.postgres.url("switchboard"), &deps.nats.url(), |_| {}).await?;
    stack
        .twilio
        .deliver_to(PUBLIC_BASE_URL, &stack.telephony.url(""));
    let api = Api {
        stack: &stack,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?,
    };
    let org = Uuid::now_v7();
    let ceo = TestUser::new(org, Role::Ceo);
    let rep = TestUser::new(org, Role::Closer);
    let supervisor = TestUser::new(org, Role::Director);
    let number = "+33159871234";

    // The rep is known to monitoring (the roster learns them from their own token too).
    let (status, body) = api
        .monitoring(&rep, "/monitoring/rep/session", &json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");

    // The rep calls a customer: their app's leg joins the call's conference, the customer is
    // rung into it and answers.
    let (status, body) = api
        .telephony(
            &ceo,
            reqwest::Method::PUT,
            &format!("/api/numbers/{number}"),
            &json!({"ownerUserId": rep.id}),
        )
        .await?;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, started) = api
        .telephony(
            &rep,
            reqwest::Method::POST,
            "/api/calls/initiate",
            &json!({"from": number, "to": CUSTOMER}),
        )
        .await?;
    assert_eq!(status, 201, "{started}");
    let call_id = started["callId"].as_str().ok_or("callId")?.to_owned();
    let rep_sid = started["sid"].as_str().ok_or("sid")?.to_owned();
    let (status, twiml) = api
        .twilio_webhook(
            &format!("/webhook/voice/outbound?callId={call_id}"),
            &[("CallSid", &rep_sid), ("CallStatus", "in-progress")],
        )
        .await?;
    assert_eq!(status, 200, "{twiml}");
    let conference = stack
        .twilio
        .run_twiml(&rep_sid, &twiml)
        .ok_or("no <Conference> in the outbound TwiML")?;
    let customer_sid = stack
        .twilio
        .conference(&conference)
        .and_then(|c| {
            c.participants
                .values()
                .find(|p| p.label.as_deref() == Some("customer"))
                .map(|p| p.call_sid.clone())
        })
        .ok_or("the customer was not rung into the conference")?;
    stack.twilio.answer(&customer_sid);
    // Twilio's status callback of the rep's leg: the call is in progress.
    let (status, text) = api
        .twilio_webhook(
            "/webhook/voice/status",
            &[
                ("CallSid", &rep_sid),
                ("CallStatus", "in-progress"),
                ("SequenceNumber", "2"),
            ],
        )
        .await?;
    assert_eq!(status, 200, "{text}");

    // Monitoring learns from telephony's events that the rep is on a phone call.
    let on_call = "/monitoring/reps?pageSize=100";
    wait_until(WAIT, "the rep on a phone call in the roster", || async {
        api.monitoring_get(&supervisor, on_call)
            .await
            .is_ok_and(|(_, body)| {
                body["items"].as_array().is_some_and(|reps| {
                    reps.iter().any(|r| {
                        r["userId"] == json!(rep.id) && r["onCall"]["kind"] == json!("phone")
                    })
                })
            })
    })
    .await?;

    // The supervisor starts a session on the rep: the target is the phone call, and telephony
    // rings the supervisor's app into the conference, muted.
    let (status, body) = api
        .monitoring(
            &supervisor,
            "/monitoring/sessions",
            &json!({"repId": rep.id}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let session = body["session"]["id"]
        .as_str()
        .ok_or("session id")?
        .to_owned();
    assert_eq!(body["session"]["target"]["kind"], "phone_call", "{body}");
    assert_eq!(body["participantToken"], Value::Null, "{body}");
    wait_until(WAIT, "the supervisor's leg in the conference", || async {
        supervisor_leg(&stack, &conference, &session).is_some()
    })
    .await?;
    let leg = supervisor_leg(&stack, &conference, &session).ok_or("leg")?;
    let created = stack
        .twilio
        .requests()
        .into_iter()
        .find(|r| r.param("Label") == leg.label.as_deref())
        .ok_or("the Participants request")?;
    assert_eq!(
        created.param("To"),
        Some(format!("client:u_{}", supervisor.id.simple()).as_str())
    );
    stack.twilio.answer(&leg.call_sid);
    let sup = leg.call_sid.clone();
    let (rep_leg, customer) = (rep_sid.as_str(), customer_sid.as_str());

    // Listen: the supervisor hears both sides, nobody hears the supervisor.
    wait_until(WAIT, "the supervisor connected", || async {
        stack.twilio.hears(&conference, &sup) == set(&[rep_leg, customer])
    })
    .await?;
    assert_eq!(stack.twilio.hears(&conference, rep_leg), set(&[customer]));
    assert_eq!(stack.twilio.hears(&conference, customer), set(&[rep_leg]));

    // Coach: the rep hears the supervisor, the customer does not.
    let mode_path = format!("/monitoring/sessions/{session}/mode");
    let (status, body) = api
        .monitoring(&supervisor, &mode_path, &json!({"mode": "coach"}))
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_until(WAIT, "the rep hearing their coach", || async {
        stack.twilio.hears(&conference, rep_leg) == set(&[customer, &sup])
    })
    .await?;
    assert_eq!(stack.twilio.hears(&conference, customer), set(&[rep_leg]));

    // Barge: everyone hears everyone.
    let (status, body) = api
        .monitoring(&supervisor, &mode_path, &json!({"mode": "barge"}))
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_until(WAIT, "the customer hearing the supervisor", || async {
        stack.twilio.hears(&conference, customer) == set(&[rep_leg, &sup])
    })
    .await?;
    assert_eq!(
        stack.twilio.hears(&conference, rep_leg),
        set(&[customer, &sup])
    );

    // Stop: the supervisor leaves, the conversation goes on.
    let (status, body) = api
        .monitoring(
            &supervisor,
            &format!("/monitoring/sessions/{session}/stop"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    wait_until(WAIT, "the supervisor removed", || async {
        supervisor_leg(&stack, &conference, &session).is_none()
    })
    .await?;
    assert_eq!(stack.twilio.hears(&conference, rep_leg), set(&[customer]));
    assert_eq!(stack.twilio.hears(&conference, customer), set(&[rep_leg]));
    stack.stop().await?;
    Ok(())
}
