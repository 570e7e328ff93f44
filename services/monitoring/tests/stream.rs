//! `GET /monitoring/stream`: changes arrive live, only within the supervisor's scope, from
//! whichever replica made them; browsers open it with a single-use ticket; a reconnect replays
//! what was missed (bounded); it ends with its token and when the service shuts down.

mod common;

use std::time::{Duration, Instant};

use common::{TestMonitoring, User, rep_online};
use futures_util::StreamExt;
use sb_auth::Role;
use sb_testkit::{Result, TestApp, wait_until, within};
use serde_json::{Value, json};
use uuid::Uuid;

/// One server-sent event: name, id, data.
type Frame = (String, u64, Value);

/// An open event stream, read frame by frame.
struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    /// Sends `request` (a streaming client: no overall timeout) and expects a stream.
    async fn connect(request: reqwest::RequestBuilder) -> Result<Self> {
        let response = request.send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Ok(Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        })
    }

    /// Opens the stream at `url` with `token` and reads its `ready` event; returns the stream
    /// and the ready event's id (where it starts).
    async fn open_at(url: &str, token: &str) -> Result<(Self, u64)> {
        let mut events = Self::connect(client().get(url).bearer_auth(token)).await?;
        let (name, id, _) = events.next().await?;
        assert_eq!(name, "ready");
        Ok((events, id))
    }

    async fn open(monitoring: &TestMonitoring, user: &User) -> Result<Self> {
        Ok(Self::open_at(
            &monitoring.app.url("/monitoring/stream"),
            &monitoring.token(user),
        )
        .await?
        .0)
    }

    /// The next event, skipping keep-alive comments; bounded.
    async fn next(&mut self) -> Result<Frame> {
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
                    let id = field("id: ")
                        .parse::<u64>()
                        .map_err(|e| format!("every event has a numeric id: {frame:?}: {e}"))?;
                    return Ok::<_, sb_testkit::Error>((field("event: "), id, data));
                }
                match self.body.next().await {
                    Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk?)),
                    None => return Err("the stream ended".into()),
                }
            }
        })
        .await?
    }

    /// Reads until the server ends the stream (bounded by `limit`); returns the events' names.
    async fn until_end(&mut self, limit: Duration) -> Result<Vec<String>> {
        within(limit, "the end of the stream", async {
            let mut names = Vec::new();
            loop {
                match self.next().await {
                    Ok((name, _, _)) => names.push(name),
                    Err(error) if error.to_string().contains("the stream ended") => {
                        return Ok::<_, sb_testkit::Error>(names);
                    }
                    Err(error) => return Err(error),
                }
            }
        })
        .await?
    }

    /// The next presence change about `rep` (skipping others), with its id.
    async fn presence_of(&mut self, rep: &User) -> Result<(u64, Value)> {
        loop {
            let (name, id, data) = self.next().await?;
            if name == "rep.presence_changed" && data["repUserId"] == rep.id.to_string() {
                return Ok((id, data));
            }
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Another replica of the service: same database, NATS prefix and fakes.
async fn replica(
    monitoring: &TestMonitoring,
    adjust: impl FnOnce(&mut sb_monitoring::MonitoringConfig),
) -> Result<TestApp> {
    let mut config = monitoring.config.clone();
    adjust(&mut config);
    Ok(TestApp::spawn(sb_monitoring::build(config).await?))
}

/// A ticket for `user`, issued by the replica at `base`.
async fn ticket(base: &TestApp, monitoring: &TestMonitoring, user: &User) -> Result<Value> {
    let (status, body) = base
        .send(
            base.post("/monitoring/stream/tickets"),
            Some(&monitoring.token(user)),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(body)
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
    let (name, first_id, data) = ceo_events.next().await?;
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
    let (name, _, data) = manager_events.next().await?;
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
    // Ids follow the order of the service's events.
    let (_, next_id, _) = ceo_events.next().await?;
    assert!(next_id > first_id, "{next_id} after {first_id}");

    // Another org's CEO saw none of it: the next thing they see is their own org's rep.
    let own_rep = User::new(outsider.org, Role::Closer);
    rep_online(&monitoring, &own_rep).await?;
    let (_, _, data) = outsider_events.next().await?;
    assert_eq!(data["repUserId"], own_rep.id.to_string());

    let metrics = monitoring.metrics().await?;
    assert!(
        metrics.contains("sb_monitoring_live_streams 3"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn tickets_open_the_stream_once_shortly_and_with_the_scope_of_their_token() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let manager = User::new(org, Role::Manager).in_team(team);

    // Only supervisors get one, and only with a token.
    let (status, body) = monitoring
        .app
        .send(monitoring.app.post("/monitoring/stream/tickets"), None)
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
    let closer = User::new(org, Role::Closer);
    let (status, body) = monitoring
        .app
        .send(
            monitoring.app.post("/monitoring/stream/tickets"),
            Some(&monitoring.token(&closer)),
        )
        .await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    let issued = ticket(&monitoring.app, &monitoring, &manager).await?;
    let value = issued["ticket"].as_str().unwrap_or_default().to_owned();
    assert!(value.len() >= 43, "{issued}");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(issued["expiresAt"].clone())?;
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::seconds(20) && left <= chrono::Duration::seconds(30),
        "{issued}"
    );
    assert_eq!(
        issued["streamUrl"],
        format!("/monitoring/stream?ticket={value}")
    );
    // Only a hash is kept.
    assert_eq!(monitoring.count("monitoring_stream_tickets").await?, 1);
    let url = monitoring
        .app
        .url(issued["streamUrl"].as_str().unwrap_or_default());

    // No Authorization header: the ticket is the credential, and it carries the manager's scope.
    let mut events = Events::connect(client().get(&url)).await?;
    assert_eq!(events.next().await?.0, "ready");
    let outside = User::new(org, Role::Closer);
    rep_online(&monitoring, &outside).await?;
    let team_rep = User::new(org, Role::Setter).in_team(team);
    rep_online(&monitoring, &team_rep).await?;
    let (name, _, data) = events.next().await?;
    assert_eq!(
        (name.as_str(), data["repUserId"].as_str()),
        (
            "rep.presence_changed",
            Some(team_rep.id.to_string().as_str())
        ),
        "the rep outside the manager's teams is filtered out"
    );

    // Single use: the same URL again, or a made-up ticket, is refused.
    for url in [
        url.clone(),
        monitoring.app.url("/monitoring/stream?ticket=forged"),
    ] {
        let answer = sb_testkit::Answer::read(client().get(&url).send().await?).await?;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (401, Some("stream_ticket_invalid")),
            "{}",
            answer.text
        );
    }
    // Too long to be one: refused without a lookup.
    let long = "a".repeat(4096);
    let answer = sb_testkit::Answer::read(
        client()
            .get(
                monitoring
                    .app
                    .url(&format!("/monitoring/stream?ticket={long}")),
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(answer.status, 401);

    // Short-lived: a ticket not redeemed in time opens nothing (another replica with a
    // 300 ms lifetime issues it; it is stored in Postgres, so the first replica checks it).
    let brief = replica(&monitoring, |c| {
        c.stream_ticket_ttl = Duration::from_millis(300)
    })
    .await?;
    let issued = ticket(&brief, &monitoring, &manager).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let url = monitoring
        .app
        .url(issued["streamUrl"].as_str().unwrap_or_default());
    let answer = sb_testkit::Answer::read(client().get(&url).send().await?).await?;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (401, Some("stream_ticket_invalid"))
    );
    // Issuing forgets the expired ones.
    ticket(&monitoring.app, &monitoring, &manager).await?;
    assert_eq!(monitoring.count("monitoring_stream_tickets").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_browser_event_source_follows_the_stream_with_a_ticket_and_catches_up() -> Result {
    // Launching Chromium under a loaded CI can outlast the default 30 s a ticket waits to be
    // redeemed; what is tested here is the redemption (expiry is `tickets_open_the_stream_once…`).
    let monitoring =
        TestMonitoring::spawn_with(|c| c.stream_ticket_ttl = Duration::from_secs(120)).await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    // Where the console last was, then a change it missed.
    let (mut watcher, before) = Events::open_at(
        &monitoring.app.url("/monitoring/stream"),
        &monitoring.token(&ceo),
    )
    .await?;
    let missed = User::new(org, Role::Closer);
    rep_online(&monitoring, &missed).await?;
    let (missed_id, _) = watcher.presence_of(&missed).await?;

    // The browser opens a new EventSource with a ticket, resuming after `before`.
    let issued = ticket(&monitoring.app, &monitoring, &ceo).await?;
    let path = format!(
        "{}&lastEventId={before}",
        issued["streamUrl"].as_str().unwrap_or_default()
    );
    let live = User::new(org, Role::Setter);
    let mut browser = tokio::spawn(sb_testkit::eventsource_in_chromium(json!({
        "origin": monitoring.app.address,
        "path": path,
        "reps": [missed.id, live.id],
        "timeoutMs": 30000,
    })));
    // Once the browser's stream is open (the watcher's and its own), a live change. A browser
    // that gives up first says why.
    let opened = wait_until(
        Duration::from_secs(60),
        "the browser's stream to open",
        || async {
            monitoring
                .metrics()
                .await
                .is_ok_and(|m| m.contains("sb_monitoring_live_streams 2"))
        },
    );
    tokio::select! {
        opened = opened => opened?,
        answer = &mut browser => {
            return Err(format!("the browser stopped before its stream opened: {answer:?}").into());
        }
    }
    rep_online(&monitoring, &live).await?;
    let answer = browser.await??;
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    let of = |rep: &User| {
        events
            .iter()
            .find(|e| {
                e["name"] == "rep.presence_changed" && e["data"]["repUserId"] == rep.id.to_string()
            })
            .cloned()
    };
    assert_eq!(
        events.first().map(|e| e["name"].clone()),
        Some(json!("ready")),
        "{answer}"
    );
    let replayed = of(&missed).ok_or(format!("the missed change was replayed: {answer}"))?;
    assert_eq!(replayed["id"], missed_id.to_string(), "{answer}");
    assert_eq!(replayed["data"]["status"], "ONLINE");
    let followed = of(&live).ok_or(format!("the live change arrived: {answer}"))?;
    let followed_id: u64 = followed["id"].as_str().unwrap_or_default().parse()?;
    assert!(followed_id > missed_id, "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_reconnect_replays_what_was_missed_within_bounds_or_says_reset() -> Result {
    let monitoring = TestMonitoring::spawn_with(|c| c.stream_replay_max = 4).await?;
    let org = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let url = monitoring.app.url("/monitoring/stream");
    let token = monitoring.token(&ceo);
    let (mut events, start) = Events::open_at(&url, &token).await?;
    let first = User::new(org, Role::Closer);
    rep_online(&monitoring, &first).await?;
    let (first_id, _) = events.presence_of(&first).await?;
    drop(events);

    // Disconnected while a second rep comes online; the reconnect resumes after first_id.
    let second = User::new(org, Role::Setter);
    rep_online(&monitoring, &second).await?;
    let reconnect = |last: String| {
        client()
            .get(&url)
            .bearer_auth(&token)
            .header("Last-Event-ID", last)
    };
    let mut events = Events::connect(reconnect(first_id.to_string())).await?;
    let (name, id, _) = events.next().await?;
    assert_eq!((name.as_str(), id), ("ready", first_id));
    let (second_id, data) = events.presence_of(&second).await?;
    assert!(second_id > first_id);
    assert_eq!(data["status"], "ONLINE");
    drop(events);

    // From the start, more than MONITORING_STREAM_REPLAY_MAX (4) events were missed: reset.
    // Each rep's change is awaited on a watcher (the relay publishes after the webhook has been
    // answered), so none is still on its way when the reconnect below follows live changes.
    let (mut watcher, _) = Events::open_at(&url, &token).await?;
    let mut newest = 0;
    for _ in 0..5 {
        let rep = User::new(org, Role::Closer);
        rep_online(&monitoring, &rep).await?;
        newest = watcher.presence_of(&rep).await?.0;
        if newest > start + 4 {
            break;
        }
    }
    assert!(newest > start + 4, "{start} → {newest}");
    let mut events = Events::connect(reconnect(start.to_string())).await?;
    let (name, id, data) = events.next().await?;
    assert_eq!(
        (name.as_str(), data["reason"].as_str()),
        ("reset", Some("too_far_behind"))
    );
    assert!(id >= newest, "{id} / {newest}");
    assert_eq!(events.next().await?.0, "ready");
    // … and it then follows live changes (nothing of the replay).
    let fourth = User::new(org, Role::Setter);
    rep_online(&monitoring, &fourth).await?;
    let (_, _, data) = events.next().await?;
    assert_eq!(data["repUserId"], fourth.id.to_string());
    let (fourth_id, _) = watcher.presence_of(&fourth).await?;

    // An id this stream never gave: reset too.
    let mut events = Events::connect(reconnect("999999999".to_owned())).await?;
    let (name, _, data) = events.next().await?;
    assert_eq!(
        (name.as_str(), data["reason"].as_str()),
        ("reset", Some("unknown_event_id"))
    );

    // Not an id: 400 naming the header.
    let answer = sb_testkit::Answer::read(reconnect("yesterday".to_owned()).send().await?).await?;
    assert_eq!(
        (answer.status, answer.body["field"].as_str()),
        (400, Some("Last-Event-ID"))
    );

    // A replica keeping no replay window resets even a recent id (the window is checked from
    // the event's own id, whichever replica made it).
    let strict = replica(&monitoring, |c| c.stream_replay_window = Duration::ZERO).await?;
    let mut events = Events::connect(
        client()
            .get(strict.url("/monitoring/stream"))
            .bearer_auth(&token)
            .header("Last-Event-ID", (fourth_id - 1).to_string()),
    )
    .await?;
    let (name, _, data) = events.next().await?;
    assert_eq!(
        (name.as_str(), data["reason"].as_str()),
        ("reset", Some("too_old"))
    );
    Ok(())
}

#[tokio::test]
async fn a_change_made_on_one_replica_reaches_a_stream_on_another() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let other = replica(&monitoring, |_| {}).await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let manager = User::new(org, Role::Manager).in_team(team);
    // The ticket is issued by the first replica and redeemed by the second.
    let issued = ticket(&monitoring.app, &monitoring, &manager).await?;
    let mut events =
        Events::connect(client().get(other.url(issued["streamUrl"].as_str().unwrap_or_default())))
            .await?;
    assert_eq!(events.next().await?.0, "ready");

    let rep = User::new(org, Role::Closer).in_team(team);
    rep_online(&monitoring, &rep).await?;
    let (_, data) = events.presence_of(&rep).await?;
    assert_eq!(data["status"], "ONLINE");
    let (status, _) = monitoring
        .post_json(&manager, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201);
    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(events.next().await?.0);
    }
    names.sort();
    assert_eq!(names, ["rep.presence_changed", "session.started"]);
    Ok(())
}

#[tokio::test]
async fn the_stream_ends_when_the_token_behind_it_expires() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let ceo = User::new(Uuid::now_v7(), Role::Ceo);
    let short = monitoring
        .tokens
        .minter()
        .mint(&ceo.principal(), Duration::from_secs(3))?;
    let opened = Instant::now();
    let (mut events, _) =
        Events::open_at(&monitoring.app.url("/monitoring/stream"), &short).await?;
    let names = events.until_end(Duration::from_secs(10)).await?;
    assert_eq!(names, ["expired"]);
    let lasted = opened.elapsed();
    assert!(
        lasted > Duration::from_millis(1500) && lasted < Duration::from_secs(6),
        "{lasted:?}"
    );

    // A ticket's stream ends with the token it was traded for, too.
    let short = monitoring
        .tokens
        .minter()
        .mint(&ceo.principal(), Duration::from_secs(2))?;
    let (status, issued) = monitoring
        .app
        .send(
            monitoring.app.post("/monitoring/stream/tickets"),
            Some(&short),
        )
        .await?;
    assert_eq!(status, 201);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(issued["expiresAt"].clone())?;
    assert!(
        expires <= chrono::Utc::now() + chrono::Duration::seconds(2),
        "{issued}"
    );
    let mut events = Events::connect(
        client().get(
            monitoring
                .app
                .url(issued["streamUrl"].as_str().unwrap_or_default()),
        ),
    )
    .await?;
    assert_eq!(events.next().await?.0, "ready");
    assert_eq!(events.until_end(Duration::from_secs(8)).await?, ["expired"]);
    Ok(())
}

#[tokio::test]
async fn open_streams_close_as_soon_as_shutdown_starts() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    // A replica of its own to stop (SHUTDOWN_TIMEOUT is 5 s in tests).
    let stopping = replica(&monitoring, |_| {}).await?;
    let ceo = User::new(Uuid::now_v7(), Role::Ceo);
    let (mut events, _) =
        Events::open_at(&stopping.url("/monitoring/stream"), &monitoring.token(&ceo)).await?;
    let began = Instant::now();
    let (stopped, names) = tokio::join!(stopping.stop(), events.until_end(Duration::from_secs(10)));
    stopped?;
    assert_eq!(names?, Vec::<String>::new());
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    Ok(())
}
