//! Shared set-up of the event tests: a database of the test's own, a NATS prefix of its own, the
//! streams under it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::time::Duration;

use async_nats::jetstream;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_db::schema::webhook_receipts;
use sb_events::EventEnvelope;
use sb_events::consumer::{Handler, HandlerError};
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

/// Records one effect row per application (not idempotent on purpose: the runner must be), fails
/// forever on the call named "poison", and on the call named "flaky" until its fourth delivery.
pub struct Effects;

impl Handler for Effects {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let call = event
                .decode::<VideoCallStarted>()
                .map_err(HandlerError::permanent)?;
            if call.call_id == "poison" {
                return Err(HandlerError::retry("this message always fails"));
            }
            if call.call_id == "flaky" && event.delivered <= 3 {
                return Err(HandlerError::retry("this message fails three times"));
            }
            diesel::insert_into(webhook_receipts::table)
                .values((
                    webhook_receipts::provider.eq("effect"),
                    webhook_receipts::key.eq(format!("{}:{}", call.call_id, uuid::Uuid::new_v4())),
                ))
                .execute(conn)
                .await?;
            Ok(())
        }
        .boxed()
    }
}

pub async fn effects(world: &World, call: &str) -> Result<i64> {
    let mut conn = world.db.conn().await?;
    Ok(webhook_receipts::table
        .filter(webhook_receipts::provider.eq("effect"))
        .filter(webhook_receipts::key.like(format!("{call}:%")))
        .count()
        .get_result(&mut conn)
        .await?)
}
