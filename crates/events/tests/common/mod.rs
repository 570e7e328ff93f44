//! Shared set-up of the event tests: a database of the test's own, a NATS prefix of its own, the
//! streams under it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::time::Duration;

use async_nats::jetstream;
use sb_events::outbox::{Outbox, Relay, RelayConfig};
use sb_events::proto::VideoCallStarted;
use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, EventMetrics, Namespace};
use sb_testkit::{Result, TestDb, TestNats};

pub struct World {
    pub db: TestDb,
    pub nats: TestNats,
    pub ns: Namespace,
    pub js: jetstream::Context,
    pub metrics: EventMetrics,
}

impl World {
    pub async fn new() -> Result<Self> {
        let db = TestDb::new().await?;
        let nats = TestNats::new().await?;
        let ns = Namespace::prefixed(nats.prefix());
        let js = nats.jetstream();
        ensure_streams(&js, &ns, &Domain::ALL, &StreamSettings::default()).await?;
        Ok(Self {
            db,
            nats,
            ns,
            js,
            metrics: EventMetrics::standalone()?,
        })
    }

    pub fn relay(&self, outbox: Outbox) -> Relay {
        self.relay_on(outbox, self.js.clone(), self.ns.clone())
    }

    pub fn relay_on(&self, outbox: Outbox, js: jetstream::Context, ns: Namespace) -> Relay {
        Relay::new(
            outbox,
            self.db.pool(),
            self.db.config(),
            js,
            ns,
            self.metrics.clone(),
        )
        .with_config(RelayConfig {
            ack_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_millis(500),
            ..RelayConfig::default()
        })
    }

    /// Every message of `domain`'s stream, in stream order.
    pub async fn stream_messages(
        &self,
        domain: Domain,
    ) -> Result<Vec<async_nats::jetstream::Message>> {
        read_stream(&self.js, &self.ns.stream(domain)).await
    }
}

/// Reads a whole stream with an ephemeral ordered consumer.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
) -> Result<Vec<async_nats::jetstream::Message>> {
    use futures_util::StreamExt;
    let stream = js.get_stream(stream).await?;
    let total = stream.cached_info().state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        let next = sb_testkit::within(
            Duration::from_secs(10),
            "reading the stream",
            messages.next(),
        )
        .await?;
        match next {
            Some(message) => out.push(message?),
            None => break,
        }
    }
    Ok(out)
}

pub fn call_started(call: &str, org: &str, n: i64) -> VideoCallStarted {
    VideoCallStarted {
        call_id: call.to_owned(),
        org_id: org.to_owned(),
        appointment_id: String::new(),
        room_name: format!("org_{org}_apt_{call}"),
        started_at_unix_ms: n,
    }
}

pub fn header(message: &async_nats::jetstream::Message, name: &str) -> String {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}
