//! The consumer runner: a durable pull consumer `<service>-<purpose>` whose handler applies each
//! event inside a transaction that also records it in `inbox`, so the effect happens once however
//! often JetStream delivers it.
//!
//! Per message: insert `(consumer, event id)` into `inbox` (already there: a duplicate, just ack),
//! run the handler, commit, then double-ack (ack confirmed by the server). A handler error rolls
//! back and the message is nak'ed with a growing delay, so a failing message does not hold up the
//! ones behind it; after `max_deliver` attempts (or at once, for a permanent error) it is written
//! to `dead_letters`, counted, logged and terminated. When Postgres itself is unreachable the
//! message is kept in progress (the ack timer is reset) and retried without spending an attempt.

use sb_db::CacheBySql;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use sb_db::DbPool;
use sb_db::schema::{dead_letters, inbox};
use tokio_util::sync::CancellationToken;

use crate::event::EventEnvelope;
use crate::headers;
use crate::metrics::EventMetrics;
use crate::subject::{Domain, Namespace};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub service: &'static str,
    pub purpose: &'static str,
    pub domain: Domain,
    /// Base subject filter, e.g. `crm.appointment.>` (one filter: NATS 2.9 has no multi-filter).
    pub filter: String,
    /// Attempts before a message becomes a dead letter.
    pub max_deliver: i64,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Delay before the n-th retry (the last one repeats).
    pub backoff: Vec<Duration>,
    /// How long an applied event's inbox row is kept. It must outlast every way the event can
    /// arrive again: JetStream's redeliveries (`max_deliver` × `ack_wait` and the backoff) and a
    /// relay re-publishing after an outage; past it, a copy would be applied again.
    pub inbox_retention: Duration,
}

impl ConsumerConfig {
    pub fn new(service: &'static str, purpose: &'static str, domain: Domain, filter: &str) -> Self {
        Self {
            service,
            purpose,
            domain,
            filter: filter.to_owned(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(10),
            ],
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    fn delay_before_retry(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (a conflict, a dependency hiccup).
    #[error("{0}")]
    Retry(BoxError),
    /// Will never succeed (undecodable, invalid): dead-letter at once.
    #[error("{0}")]
    Permanent(BoxError),
}

impl HandlerError {
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self::Retry(error.into())
    }

    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::Permanent(error.into())
    }
}

impl From<diesel::result::Error> for HandlerError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Retry(Box::new(error))
    }
}

/// Applies one event. Runs inside the transaction that records the event in `inbox`: write
/// through `conn` only, and leave side effects outside the database to the outbox.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The handler ran and its effect committed.
    Done,
    /// The inbox already had this event: nothing done.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Postgres unreachable or the connection broke: not the message's fault.
    #[error("database unavailable: {0}")]
    Infrastructure(String),
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

enum TxError {
    Db(diesel::result::Error),
    Handler(HandlerError),
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        TxError::Db(error)
    }
}

/// A lost or refused connection is Postgres' outage, not the message's fault: the same test the
/// pool and the HTTP errors use (`sb_db::connection_lost`, which also knows the server's
/// "terminating connection" and "the database system is starting up/shutting down" errors).
fn classify(error: diesel::result::Error) -> ApplyError {
    if sb_db::connection_lost(&error) {
        ApplyError::Infrastructure(error.to_string())
    } else {
        ApplyError::Handler(HandlerError::Retry(Box::new(error)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("consumer {name}: {reason}")]
pub struct ConsumerError {
    pub name: String,
    pub reason: String,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Retried,
    DeadLettered,
    /// Stopped while waiting for Postgres: JetStream redelivers after `ack_wait`.
    Abandoned,
}

pub struct ConsumerRunner<H> {
    config: ConsumerConfig,
    pool: DbPool,
    js: jetstream::Context,
    ns: Namespace,
    handler: Arc<H>,
    metrics: EventMetrics,
}

impl<H: Handler> ConsumerRunner<H> {
    pub fn new(
        config: ConsumerConfig,
        pool: DbPool,
        js: jetstream::Context,
        ns: Namespace,
        handler: H,
        metrics: EventMetrics,
    ) -> Self {
        Self {
            config,
            pool,
            js,
            ns,
            handler: Arc::new(handler),
            metrics,
        }
    }

    /// `<service>-<purpose>`.
    pub fn name(&self) -> String {
        self.ns.consumer(self.config.service, self.config.purpose)
    }

    fn fail(&self, reason: impl ToString) -> ConsumerError {
        ConsumerError {
            name: self.name(),
            reason: reason.to_string(),
        }
    }

    /// Creates the durable consumer, or binds to it when it exists.
    pub async fn ensure(&self) -> Result<PullConsumer, ConsumerError> {
        let stream = self
            .js
            .get_stream(self.ns.stream(self.config.domain))
            .await
            .map_err(|e| self.fail(e))?;
        let name = self.name();
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("{} {}", self.config.service, self.config.purpose)),
            filter_subject: self.ns.subject(&self.config.filter),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            // Safety net above our own limit: we dead-letter at `max_deliver`; the margin covers a
            // crash during the last attempt so that attempt is not lost.
            max_deliver: self.config.max_deliver + 2,
            max_ack_pending: 1000,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| self.fail(e))
    }

    /// The envelope of a JetStream message: metadata from its headers.
    pub fn envelope(&self, message: &jetstream::Message) -> Result<EventEnvelope, String> {
        let headers = message
            .headers
            .as_ref()
            .ok_or("no headers, so no Nats-Msg-Id")?;
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let id = header(headers::MSG_ID).ok_or("no Nats-Msg-Id header")?;
        let id = uuid::Uuid::parse_str(&id)
            .map_err(|e| format!("Nats-Msg-Id {id:?} is not a UUID: {e}"))?;
        let event_type = header(headers::EVENT_TYPE).ok_or("no Sb-Event-Type header")?;
        Ok(EventEnvelope {
            id,
            event_type,
            subject: self.ns.strip(message.subject.as_str()).to_owned(),
            org_id: header(headers::ORG_ID).unwrap_or_default(),
            traceparent: header(headers::TRACEPARENT),
            payload: message.payload.clone(),
            delivered: message.info().map(|info| info.delivered).unwrap_or(1),
        })
    }

    /// Applies `event` once: the inbox row and the handler's effect commit together.
    pub async fn apply(&self, event: &EventEnvelope) -> Result<Applied, ApplyError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| ApplyError::Infrastructure(e.to_string()))?;
        let consumer = self.name();
        let handler = self.handler.clone();
        let result = conn
            .transaction::<Applied, TxError, _>(async |conn| {
                let fresh = diesel::insert_into(inbox::table)
                    .values((inbox::consumer.eq(&consumer), inbox::event_id.eq(event.id)))
                    .on_conflict_do_nothing()
                    .cached()
                    .execute(conn)
                    .await?;
                if fresh == 0 {
                    return Ok(Applied::Duplicate);
                }
                handler
                    .handle(conn, event)
                    .await
                    .map_err(TxError::Handler)?;
                Ok(Applied::Done)
            })
            .await;
        match result {
            Ok(applied) => Ok(applied),
            Err(TxError::Handler(error)) => Err(ApplyError::Handler(error)),
            Err(TxError::Db(error)) => Err(classify(error)),
        }
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        event: Option<&EventEnvelope>,
        error: &str,
    ) -> Result<(), String> {
        let info = message.info().map_err(|e| e.to_string())?;
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers
            .iter()
            .flat_map(|map| map.iter())
            .map(|(name, values)| {
                let value = values
                    .iter()
                    .next()
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                (name.to_string(), serde_json::Value::String(value))
            })
            .collect();
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let consumer = self.name();
        let dead_letter = (
            dead_letters::id.eq(uuid::Uuid::now_v7()),
            dead_letters::consumer.eq(consumer.clone()),
            dead_letters::event_id.eq(event.map(|e| e.id)),
            dead_letters::subject.eq(self.ns.strip(message.subject.as_str())),
            dead_letters::event_type.eq(event.map(|e| e.event_type.clone())),
            dead_letters::payload.eq(message.payload.to_vec()),
            dead_letters::headers.eq(serde_json::Value::Object(headers)),
            dead_letters::error.eq(error),
            dead_letters::deliveries.eq(info.delivered),
            dead_letters::stream_sequence
                .eq(i64::try_from(info.stream_sequence).unwrap_or(i64::MAX)),
        );
        // The dead letter and the event's inbox row commit together: should the Term that follows
        // be lost, JetStream redelivers the message, and the inbox turns that delivery into a
        // duplicate instead of applying an event already handed to the dead letters.
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::insert_into(dead_letters::table)
                .values(dead_letter)
                .cached()
                .execute(conn)
                .await?;
            if let Some(event) = event {
                diesel::insert_into(inbox::table)
                    .values((inbox::consumer.eq(&consumer), inbox::event_id.eq(event.id)))
                    .on_conflict_do_nothing()
                    .cached()
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
        let name = consumer;
        self.metrics
            .consumer_dead_letters_total
            .with_label_values(&[name.as_str()])
            .inc();
        tracing::error!(
            consumer = %name,
            subject = %message.subject,
            event.id = ?event.map(|e| e.id),
            deliveries = info.delivered,
            stream.sequence = info.stream_sequence,
            %error,
            "message dead-lettered"
        );
        Ok(())
    }

    /// Handles one delivery to the end: applied and acked, nak'ed for a retry, or dead-lettered.
    pub async fn process(&self, message: &jetstream::Message, stop: &CancellationToken) -> Outcome {
        let name = self.name();
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        if delivered > 1 {
            self.metrics
                .consumer_redeliveries_total
                .with_label_values(&[name.as_str()])
                .inc();
        }
        let started = Instant::now();
        let envelope = self.envelope(message);
        let mut pause = Duration::from_millis(200);
        let outcome = loop {
            let verdict = match &envelope {
                Err(reason) => Err(ApplyError::Handler(HandlerError::permanent(reason.clone()))),
                Ok(event) => self.apply(event).await,
            };
            let terminal_error = match verdict {
                Ok(applied) => {
                    if let Err(error) = message.double_ack().await {
                        // Redelivered later; the inbox turns it into a duplicate.
                        tracing::warn!(consumer = %name, %error, "ack not confirmed");
                    }
                    break if applied == Applied::Done {
                        Outcome::Applied
                    } else {
                        Outcome::Duplicate
                    };
                }
                Err(ApplyError::Handler(HandlerError::Retry(error)))
                    if delivered < self.config.max_deliver =>
                {
                    let delay = self.config.delay_before_retry(delivered);
                    tracing::warn!(consumer = %name, delivered, retry_in_ms = delay.as_millis() as u64, %error, "handler failed, will retry");
                    if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                        tracing::warn!(consumer = %name, %error, "nak not sent; redelivered after ack_wait");
                    }
                    break Outcome::Retried;
                }
                Err(ApplyError::Handler(error)) => error.to_string(),
                Err(ApplyError::Infrastructure(error)) => {
                    tracing::warn!(consumer = %name, %error, "database unavailable, holding the message");
                    if !self.hold(message, pause, stop).await {
                        break Outcome::Abandoned;
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            match self
                .dead_letter(message, envelope.as_ref().ok(), &terminal_error)
                .await
            {
                Ok(()) => {
                    if let Err(error) = message.ack_with(AckKind::Term).await {
                        tracing::warn!(consumer = %name, %error, "term not sent");
                    }
                    break Outcome::DeadLettered;
                }
                Err(error) => {
                    tracing::warn!(consumer = %name, %error, "cannot record the dead letter yet");
                    if !self.hold(message, pause, stop).await {
                        break Outcome::Abandoned;
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        let label = match outcome {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Abandoned => "abandoned",
        };
        self.metrics
            .consumer_messages_total
            .with_label_values(&[name.as_str(), label])
            .inc();
        self.metrics
            .consumer_handle_seconds
            .with_label_values(&[name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Keeps the message ours (resets the ack timer) for `pause`; false when stopping.
    async fn hold(
        &self,
        message: &jetstream::Message,
        pause: Duration,
        stop: &CancellationToken,
    ) -> bool {
        // The in-progress ack resets JetStream's ack timer only until `ack_wait` runs out: renew it
        // at least twice per `ack_wait`, however long the pause, or the message is redelivered and
        // an attempt is spent on an outage that is not its fault.
        let renew_every = (self.config.ack_wait / 2).max(Duration::from_millis(10));
        let until = tokio::time::Instant::now() + pause;
        loop {
            drop(message.ack_with(AckKind::Progress).await);
            let now = tokio::time::Instant::now();
            if now >= until {
                return true;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep((until - now).min(renew_every)) => {}
            }
        }
    }

    /// Deletes this consumer's inbox rows older than `inbox_retention`, at most `limit` of them
    /// (a bounded statement, repeated by the next pass while a backlog lasts).
    pub async fn prune_inbox(&self, limit: i64) -> Result<usize, ApplyError> {
        let retention = chrono::Duration::from_std(self.config.inbox_retention)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| ApplyError::Infrastructure(e.to_string()))?;
        diesel::sql_query(
            "DELETE FROM inbox WHERE (consumer, event_id) IN \
             (SELECT consumer, event_id FROM inbox WHERE consumer = $1 AND processed_at < $2 LIMIT $3)",
        )
        .bind::<diesel::sql_types::Text, _>(self.name())
        .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .execute(&mut conn)
        .await
        .map_err(classify)
    }

    async fn prune_inbox_pass(&self) {
        const BATCH: i64 = 10_000;
        loop {
            match self.prune_inbox(BATCH).await {
                Ok(deleted) if i64::try_from(deleted).unwrap_or(i64::MAX) >= BATCH => continue,
                Ok(0) => return,
                Ok(deleted) => {
                    tracing::debug!(consumer = %self.name(), deleted, "pruned the inbox");
                    return;
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.name(), %error, "cannot prune the inbox");
                    return;
                }
            }
        }
    }

    /// Consumes until `stop` is cancelled; the message in hand is finished first. Survives NATS
    /// outages by re-binding to the consumer with a backoff. Prunes its inbox every hour.
    pub async fn run(self, stop: CancellationToken) {
        let name = self.name();
        let mut backoff = Duration::from_millis(200);
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(consumer = %name, "consumer started");
        'outer: while !stop.is_cancelled() {
            let messages = match self.ensure().await {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(100)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                    .map_err(|e| self.fail(e)),
                Err(error) => Err(error),
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(consumer = %name, %error, retry_in_ms = backoff.as_millis() as u64, "cannot consume yet");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => break 'outer,
                    _ = prune.tick() => {
                        self.prune_inbox_pass().await;
                        continue;
                    }
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        self.process(&message, &stop).await;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(consumer = %name, %error, "message stream interrupted, re-binding");
                        break;
                    }
                    None => break,
                }
            }
        }
        tracing::info!(consumer = %name, "consumer stopped");
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::{ApplyError, classify};

    #[test]
    fn a_connection_the_server_terminated_is_an_outage_not_a_handler_failure() {
        for message in [
            "terminating connection due to administrator command",
            "the database system is shutting down",
            "the database system is starting up",
        ] {
            let error =
                Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()));
            assert!(
                matches!(classify(error), ApplyError::Infrastructure(_)),
                "{message}"
            );
        }
        let closed = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection".to_owned()),
        );
        assert!(matches!(classify(closed), ApplyError::Infrastructure(_)));
        let conflict = Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new("could not serialize access".to_owned()),
        );
        assert!(matches!(classify(conflict), ApplyError::Handler(_)));
    }
}
