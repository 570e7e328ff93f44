//! `GET /monitoring/stream`: changes arrive live, only within the supervisor's scope.

mod common;

use std::time::Duration;

use common::{TestMonitoring, User, rep_online};
use futures_util::StreamExt;
use sb_auth::Role;
use sb_testkit::{Result, within};
use serde_json::Value;
use uuid::Uuid;

/// An open event stream, read frame by frame.
struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    async fn open(monitoring: &TestMonitoring, user: &User) -> Result<Self> {
        let response = reqwest::Client::new()
            .get(monitoring.app.url("/monitoring/stream"))
            .bearer_auth(monitoring.token(user))
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let mut events = Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        };
        let (name, _) = events.next().await?;
        assert_eq!(name, "ready");
        Ok(events)
    }

    /// The next event (name, data), skipping keep-alive comments; bounded.
    async fn next(&mut self) -> Result<(String, Value)> {
        within(Duration::from_secs(10), "the next event", async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let frame: String = self.buffer.drain(..end + 2).collect();
                    if frame.starts_with(':') {
                        continue;
                    }
                    let field = |name: &str| {
                        frame
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let data: Value = serde_json::from_str(&field("data: ")).unwrap_or(Value::Null);
                    return Ok::<_, sb_testkit::Error>((field("event: "), data));
                }
                match self.body.next().await {
                    Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk?)),
                    None => return Err("the stream ended".into()),
                }
            }
        })
        .await?
    }
}

#[tokio::test]
async fn supervisors_see_changes_live_and_only_in_their_scope() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let manager = User::new(org, Role::Manager).in_team(team);
    let outsider = User::new(Uuid::now_v7(), Role::Ceo);
    let mut ceo_events = Events::open(&monitoring, &ceo).await?;
    let mut manager_events = Events::open(&monitoring, &manager).await?;
    let mut outsider_events = Events::open(&monitoring, &outsider).await?;

    // A rep outside the manager's teams comes online: the CEO sees it.
    let other_rep = User::new(org, Role::Closer);
    rep_online(&monitoring, &other_rep).await?;
    let (name, data) = ceo_events.next().await?;
    assert_eq!(name, "rep.presence_changed");
    assert_eq!(data["repUserId"], other_rep.id.to_string(), "{data}");
    assert_eq!(
        (data["status"].as_str(), data["previousStatus"].as_str()),
        (Some("ONLINE"), Some("OFFLINE")),
        "{data}"
    );

    // Then one of the manager's reps, and the CEO listens to them.
    let team_rep = User::new(org, Role::Setter).in_team(team);
    rep_online(&monitoring, &team_rep).await?;
    let (status, _) = monitoring
        .post_json(
            &ceo,
            "/monitoring/sessions",
            serde_json::json!({"repId": team_rep.id}),
        )
        .await?;
    assert_eq!(status, 201);
    // The manager's first event is about their own rep: the other one was filtered out.
    let (name, data) = manager_events.next().await?;
    assert_eq!(
        (name.as_str(), data["repUserId"].as_str()),
        (
            "rep.presence_changed",
            Some(team_rep.id.to_string().as_str())
        )
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(manager_events.next().await?.0);
    }
    seen.sort();
    assert_eq!(
        seen,
        ["rep.presence_changed", "session.started"],
        "started, then LISTENED"
    );

    // Another org's CEO saw none of it: the next thing they see is their own org's rep.
    let own_rep = User::new(outsider.org, Role::Closer);
    rep_online(&monitoring, &own_rep).await?;
    let (_, data) = outsider_events.next().await?;
    assert_eq!(data["repUserId"], own_rep.id.to_string());

    let metrics = monitoring.metrics().await?;
    assert!(
        metrics.contains("sb_monitoring_live_streams 3"),
        "{metrics}"
    );
    Ok(())
}
