//! The relay: publishes a service's outbox rows to JetStream and marks them published.
//!
//! One batch = one transaction: take the source's transaction-scoped advisory lock (so concurrent
//! relays of one service publish batches one after another, which keeps per-aggregate order),
//! claim the oldest unpublished rows, publish them pipelined with `Nats-Msg-Id`, await the acks in
//! order, mark the acknowledged prefix published, commit. The claim locks no rows: only the
//! holder of the source's lock claims or marks the source's rows, and its marks are visible to
//! the next holder when it commits, so a row lock would only cost Postgres a locked tuple and a
//! WAL record per row (a fifth of its CPU per event in `sb-bench outbox`).
//!
//! A crash after publishing but before the commit leaves the rows unpublished: they are published
//! again and JetStream drops the copies (same `Nats-Msg-Id`, within the duplicate window). A
//! failed commit of a relay that lives on (Postgres down, for however long) loses nothing of what
//! it learnt: the relay remembers the acknowledged ids and marks them first once Postgres is back,
//! so an outage longer than the duplicate window does not publish them a second time.
//! NATS down: publishes time out, the transaction rolls back, the relay backs off and retries;
//! rows wait in Postgres and nothing is lost.
//!
//! A row JetStream refuses for what it is (larger than the server takes, or a subject no stream
//! captures, as JetStream itself confirms) would hold up every row of its source behind it: after
//! `max_attempts` refusals it moves to the dead letters, counted in `sb_outbox_dead_letters_total`.
//! Refusals while JetStream cannot even answer (an outage, a leader election) are not counted.
//!
//! Claiming from a cursor. The claim's index (`source, id` of unpublished rows) keeps an entry of
//! every published row until vacuum removes it, and a claim that starts from the smallest id
//! walks all of them: up to milliseconds of Postgres CPU per batch under load, where a claim from
//! the last published id costs microseconds. So the relay remembers the highest id it published
//! (its cursor) and claims from there, less `lag_window`. Ids are UUID v7 taken when an event is
//! enqueued, not when its transaction commits: a transaction that enqueued first can commit after
//! a later one was published, below the cursor. Its row is still found: by the next claim when it
//! committed within `lag_window` of its id's time (the claim starts that far back), and by the
//! full rescan that every `rescan_interval` claims from the beginning otherwise (a transaction
//! held open for seconds, or a producer whose clock runs behind the relay's host). A late row is
//! published late, never lost; ordering within an aggregate does not depend on this (its events
//! are written under the aggregate's row lock, so they commit in id order).

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use sb_db::{CacheBySql, DatabaseConfig, DbPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    NOTIFY_CHANNEL, Outbox, OutboxRow, claim, dead_letter, mark_published, pending,
    prune_published, row_headers,
};
use crate::metrics::EventMetrics;
use crate::subject::Namespace;

/// Receives `(event id, instant of the JetStream ack)` for every published event: a hook for
/// benchmarks and tests that measure commit-to-ack latency.
pub type AckObserver = tokio::sync::mpsc::UnboundedSender<(Uuid, Instant)>;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows per batch (one pipelined burst of publishes).
    pub batch_size: i64,
    /// Batches one transaction may chain while a backlog lasts (bounds its duration).
    pub batches_per_transaction: usize,
    /// Fallback wake-up when a NOTIFY is missed (listener reconnecting).
    pub poll_interval: Duration,
    /// Longest wait for one JetStream ack.
    pub ack_timeout: Duration,
    /// Longest pause between retries while NATS or Postgres is failing.
    pub max_backoff: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// Refusals of one row (see the module's documentation) before it becomes a dead letter.
    pub max_attempts: u32,
    /// How far below the last published id a claim starts (see "Claiming from a cursor" in the
    /// module's documentation): rows of transactions that committed at most this long after
    /// they enqueued are found by the next claim even when a later id was published first.
    pub lag_window: Duration,
    /// How often a claim starts from the beginning of the source's unpublished rows instead of
    /// the cursor, for rows committed later than `lag_window` after their id was taken.
    pub rescan_interval: Duration,
    /// Shortest time between the starts of two batches: commits that wake the relay meanwhile
    /// are published together by the next one (one claim for many commits).
    pub coalesce: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            batches_per_transaction: 32,
            poll_interval: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            retention: Duration::from_secs(24 * 3600),
            max_attempts: 10,
            lag_window: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(5),
            coalesce: Duration::from_millis(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("publishing to JetStream: {0}")]
    Publish(String),
}

/// Rows sent to JetStream whose acks are still to be awaited.
struct Sent {
    rows: Vec<OutboxRow>,
    acks: Vec<jetstream::context::PublishAckFuture>,
    failure: Option<RelayError>,
    refused: Option<Refusal>,
}

/// A row JetStream refused.
struct Refusal {
    row: OutboxRow,
    reason: String,
    /// It can never be published as it is (larger than the server takes): no need to ask again.
    permanent: bool,
}

/// What awaiting a batch's acks gave: the acknowledged prefix, and what stopped it.
struct Confirmed {
    acked: Vec<Uuid>,
    failure: Option<RelayError>,
    refused: Option<Refusal>,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Another relay of this source holds the batch lock.
    Busy,
    /// `published` rows acknowledged and marked; `failed` when a publish failed after them.
    Published { published: usize, failed: bool },
}

pub struct Relay {
    outbox: Outbox,
    pool: DbPool,
    database: DatabaseConfig,
    js: jetstream::Context,
    ns: Namespace,
    metrics: EventMetrics,
    config: RelayConfig,
    observer: Option<AckObserver>,
    /// Ids JetStream acknowledged whose mark has not committed yet (the transaction failed):
    /// marked before anything is claimed, never published again.
    acknowledged_unmarked: std::sync::Mutex<Vec<Uuid>>,
    /// Refusals counted per row id (see the module's documentation).
    refusals: std::sync::Mutex<std::collections::HashMap<Uuid, u32>>,
    /// Where claims start (see "Claiming from a cursor" in the module's documentation).
    cursor: std::sync::Mutex<Cursor>,
}

/// The highest id this relay published, and when it last claimed from the beginning.
#[derive(Debug, Default)]
struct Cursor {
    highest: Option<Uuid>,
    last_rescan: Option<Instant>,
}

/// The smallest UUID v7 of `lag` before `id`'s time: claims start after it.
fn lag_floor(id: Uuid, lag: Duration) -> Uuid {
    let Some((seconds, nanos)) = id.get_timestamp().map(|t| t.to_unix()) else {
        return Uuid::nil();
    };
    let millis = seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(nanos / 1_000_000))
        .saturating_sub(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX));
    if millis == 0 {
        return Uuid::nil();
    }
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// The URL for the dedicated LISTEN connection (never logged).
fn expose(config: &DatabaseConfig) -> String {
    use secrecy::ExposeSecret;
    config.url.expose_secret().to_owned()
}

impl Relay {
    pub fn new(
        outbox: Outbox,
        pool: DbPool,
        database: DatabaseConfig,
        js: jetstream::Context,
        ns: Namespace,
        metrics: EventMetrics,
    ) -> Self {
        Self {
            outbox,
            pool,
            database,
            js,
            ns,
            metrics,
            config: RelayConfig::default(),
            observer: None,
            acknowledged_unmarked: std::sync::Mutex::new(Vec::new()),
            refusals: std::sync::Mutex::new(std::collections::HashMap::new()),
            cursor: std::sync::Mutex::new(Cursor::default()),
        }
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, Cursor> {
        // A panic while holding the lock leaves a plain id and instant: still usable.
        self.cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where this batch's first claim starts (`None`: from the beginning), and whether it is a
    /// full rescan.
    fn claim_start(&self) -> (Option<Uuid>, bool) {
        let cursor = self.cursor();
        match cursor.highest {
            Some(highest)
                if cursor
                    .last_rescan
                    .is_some_and(|at| at.elapsed() < self.config.rescan_interval) =>
            {
                (Some(lag_floor(highest, self.config.lag_window)), false)
            }
            _ => (None, true),
        }
    }

    fn unmarked(&self) -> std::sync::MutexGuard<'_, Vec<Uuid>> {
        // A panic while holding the lock leaves a plain list of ids: still usable.
        self.acknowledged_unmarked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records acknowledged ids before their mark is attempted: if the transaction fails, they
    /// are marked at the start of the next one instead of being published again.
    fn remember(&self, acked: &[Uuid]) {
        self.unmarked().extend_from_slice(acked);
    }

    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    pub fn with_ack_observer(mut self, observer: AckObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sends `rows` in order without waiting for their acks.
    async fn send(&self, rows: Vec<OutboxRow>) -> Sent {
        let mut acks = Vec::with_capacity(rows.len());
        // While disconnected the client would buffer the messages (and block once its buffer is
        // full): fail fast instead and let the backoff retry.
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            let failure = Some(RelayError::Publish("NATS is disconnected".to_owned()));
            return Sent {
                rows,
                acks,
                failure,
                refused: None,
            };
        }
        let mut failure = None;
        let mut refused = None;
        for row in &rows {
            let subject = self.ns.subject(&row.subject);
            let publish =
                self.js
                    .publish_with_headers(subject, row_headers(row), row.payload.clone().into());
            match tokio::time::timeout(self.config.ack_timeout, publish).await {
                Ok(Ok(ack)) => acks.push(ack),
                Ok(Err(error)) => {
                    let permanent =
                        error.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded;
                    if permanent
                        || error.kind() == jetstream::context::PublishErrorKind::StreamNotFound
                    {
                        refused = Some(Refusal {
                            row: row.clone(),
                            reason: error.to_string(),
                            permanent,
                        });
                    }
                    failure = Some(RelayError::Publish(error.to_string()));
                    break;
                }
                Err(_) => {
                    failure = Some(RelayError::Publish(
                        "the NATS client did not take the message in time".to_owned(),
                    ));
                    break;
                }
            }
        }
        Sent {
            rows,
            acks,
            failure,
            refused,
        }
    }

    /// Awaits the acks of `sent` in order and returns the ids JetStream acknowledged: the longest
    /// acknowledged prefix, so a failure never lets a later event overtake an earlier one.
    async fn confirm(&self, sent: Sent) -> Confirmed {
        let Sent {
            rows,
            acks,
            mut failure,
            mut refused,
        } = sent;
        let mut acked = Vec::with_capacity(acks.len());
        let source = self.outbox.source();
        // The metrics' children, looked up once per batch (and per subject) rather than per row.
        let publish_seconds = self
            .metrics
            .outbox_publish_seconds
            .with_label_values(&[source]);
        let mut published_by_subject: Vec<(&str, prometheus::IntCounter)> = Vec::new();
        for (row, ack) in rows.iter().zip(acks) {
            let error = match tokio::time::timeout(self.config.ack_timeout, ack).await {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => {
                    // No responder for the ack: no stream captures the subject, or JetStream
                    // cannot answer at all; `count_refusal` asks JetStream which.
                    if error.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                        refused = Some(Refusal {
                            row: row.clone(),
                            reason: error.to_string(),
                            permanent: false,
                        });
                    }
                    Some(RelayError::Publish(error.to_string()))
                }
                Err(_) => Some(RelayError::Publish(format!(
                    "no ack within {:?}",
                    self.config.ack_timeout
                ))),
            };
            if let Some(error) = error {
                failure = Some(error);
                break;
            }
            let now = Instant::now();
            let lag = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default();
            publish_seconds.observe(lag.as_secs_f64());
            match published_by_subject
                .iter()
                .find(|(subject, _)| *subject == row.subject)
            {
                Some((_, counter)) => counter.inc(),
                None => {
                    let counter = self
                        .metrics
                        .events_published_total
                        .with_label_values(&[source, row.subject.as_str()]);
                    counter.inc();
                    published_by_subject.push((row.subject.as_str(), counter));
                }
            }
            if let Some(observer) = &self.observer {
                // A closed receiver means the observer lost interest; publishing goes on.
                observer.send((row.id, now)).ok();
            }
            acked.push(row.id);
        }
        Confirmed {
            acked,
            failure,
            refused,
        }
    }

    /// Publishes `rows` in order, pipelined, and returns the acknowledged prefix (see `confirm`).
    pub async fn publish_rows(&self, rows: &[OutboxRow]) -> (Vec<Uuid>, Option<RelayError>) {
        let sent = self.send(rows.to_vec()).await;
        let confirmed = self.confirm(sent).await;
        (confirmed.acked, confirmed.failure)
    }

    /// Publishes up to `batches_per_transaction` batches of this source's outbox in one
    /// transaction, overlapping the database work of one batch with the acks of the previous one:
    /// claim and send batch N+1, then await batch N's acks and mark them.
    pub async fn publish_once(&self) -> Result<BatchOutcome, RelayError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| RelayError::Pool(e.to_string()))?;
        let source = self.outbox.source();
        let batch_size = self.config.batch_size;
        let max_batches = self.config.batches_per_transaction.max(1);
        let remembered = self.unmarked().clone();
        let (start, rescan) = self.claim_start();
        let started = Instant::now();
        let mut highest: Option<Uuid> = None;
        let mut refused: Option<Refusal> = None;
        let outcome = conn
            .transaction::<_, RelayError, _>(async |conn| {
                // The marks this transaction writes are hints: losing the last few to a crash means
                // those rows are published again, which JetStream de-duplication and the consumers'
                // inbox absorb. So the relay does not wait for the WAL flush, and leaves the disk to
                // the producers' commits.
                if !begin_batch(conn, source).await? {
                    return Ok(BatchOutcome::Busy);
                }
                let mut published = 0;
                let mut failure: Option<RelayError> = None;
                let mut after: Option<Uuid> = start;
                // Two lanes run at once in each step: Postgres marks the batch acknowledged in
                // the previous step and claims the batch after next, while this process sends
                // the next batch to JetStream and awaits the acks of the one in flight. The
                // database's work and the publishing overlap instead of taking turns.
                // Marked before anything is claimed, so they are not claimed again.
                if !remembered.is_empty() {
                    mark_published(conn, &remembered).await?;
                }
                let mut to_mark = Vec::new();
                let mut claimed = claim(conn, source, after, batch_size).await?;
                let mut claims = 1;
                let mut in_flight: Option<Sent> = None;
                loop {
                    let full = i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= batch_size;
                    // Nothing more is sent once a send has failed: its acknowledged prefix is
                    // marked, and what follows is claimed again by a later transaction.
                    let stopped = failure.is_some()
                        || in_flight
                            .as_ref()
                            .is_some_and(|sent| sent.failure.is_some());
                    let to_send = if stopped {
                        Vec::new()
                    } else {
                        std::mem::take(&mut claimed)
                    };
                    after = to_send.last().map(|row| row.id).or(after);
                    let claim_ahead = full && !stopped && claims < max_batches;
                    let marks = std::mem::take(&mut to_mark);
                    let previous = in_flight.take();
                    let (database, publishing) = tokio::join!(
                        async {
                            if !marks.is_empty() {
                                mark_published(conn, &marks).await?;
                            }
                            if claim_ahead {
                                claim(conn, source, after, batch_size).await.map(Some)
                            } else {
                                Ok(None)
                            }
                        },
                        async {
                            let sent = if to_send.is_empty() {
                                None
                            } else {
                                Some(self.send(to_send).await)
                            };
                            let confirmed = match previous {
                                Some(previous) => Some(self.confirm(previous).await),
                                None => None,
                            };
                            (sent, confirmed)
                        }
                    );
                    let (sent, confirmed) = publishing;
                    if let Some(rows) = database? {
                        claimed = rows;
                        claims += 1;
                    }
                    if let Some(Confirmed {
                        acked,
                        failure: error,
                        refused: refusal,
                    }) = confirmed
                    {
                        refused = refused.take().or(refusal);
                        self.remember(&acked);
                        highest = acked.iter().copied().max().max(highest);
                        published += acked.len();
                        to_mark = acked;
                        if error.is_some() {
                            // The batch sent after it is not marked: it is sent again later,
                            // and JetStream drops the copies of what did arrive.
                            failure = failure.or(error);
                            mark_published(conn, &to_mark).await?;
                            break;
                        }
                    }
                    in_flight = sent;
                    if in_flight.is_none() {
                        if !to_mark.is_empty() {
                            mark_published(conn, &to_mark).await?;
                        }
                        break;
                    }
                }
                if let Some(error) = failure {
                    if published == 0 {
                        return Err(error);
                    }
                    tracing::warn!(source, published, %error, "outbox batch partly published");
                    return Ok(BatchOutcome::Published {
                        published,
                        failed: true,
                    });
                }
                Ok(BatchOutcome::Published {
                    published,
                    failed: false,
                })
            })
            .await;
        if matches!(outcome, Ok(BatchOutcome::Published { .. })) {
            // Committed: every remembered id is marked now (this relay publishes one
            // transaction at a time, so nothing was added meanwhile but by this one).
            self.unmarked().clear();
            let mut cursor = self.cursor();
            cursor.highest = highest.max(cursor.highest);
            if rescan && matches!(outcome, Ok(BatchOutcome::Published { failed: false, .. })) {
                // Every row committed before this batch began was claimable by it.
                cursor.last_rescan = Some(started);
            }
        }
        if let Some(refusal) = refused {
            self.count_refusal(refusal).await;
        }
        outcome
    }

    /// Counts a refusal of a row when it is the row's fault, and moves the row to the dead
    /// letters once it has been refused `max_attempts` times.
    async fn count_refusal(&self, refusal: Refusal) {
        let source = self.outbox.source();
        let id = refusal.row.id;
        if !refusal.permanent {
            // Only JetStream itself answering "no stream takes this subject" is the row's fault;
            // no answer at all (JetStream down, a leader election) is not.
            let subject = self.ns.subject(&refusal.row.subject);
            match self.js.stream_by_subject(subject).await {
                Err(error)
                    if error.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {}
                _ => return,
            }
        }
        let attempts = {
            let mut refusals = self
                .refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = refusals.entry(id).or_insert(0);
            *count = if refusal.permanent {
                self.config.max_attempts
            } else {
                count.saturating_add(1)
            };
            *count
        };
        tracing::warn!(source, event.id = %id, subject = %refusal.row.subject, attempts, reason = %refusal.reason, "JetStream refused an outbox row");
        if attempts < self.config.max_attempts {
            return;
        }
        let moved = match self.pool.get().await {
            Ok(mut conn) => {
                dead_letter(
                    &mut conn,
                    source,
                    &refusal.row,
                    &refusal.reason,
                    i64::from(attempts),
                )
                .await
            }
            Err(error) => {
                tracing::warn!(source, %error, "cannot dead-letter the outbox row yet");
                return;
            }
        };
        match moved {
            Ok(moved) => {
                self.refusals
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                if moved {
                    self.metrics
                        .outbox_dead_letters_total
                        .with_label_values(&[source])
                        .inc();
                    tracing::error!(source, event.id = %id, subject = %refusal.row.subject, attempts, reason = %refusal.reason, "outbox row dead-lettered");
                }
            }
            Err(error) => tracing::warn!(source, %error, "cannot dead-letter the outbox row yet"),
        }
    }

    /// Runs until `stop` is cancelled: publishes whenever its [`Outbox`] wakes it after a commit,
    /// a NOTIFY arrives, or `poll_interval` passes, drains backlogs batch after batch, backs off while NATS or Postgres fail.
    pub async fn run(self, stop: CancellationToken) {
        let source = self.outbox.source();
        let wake = self.outbox.relay_wake();
        let listener = tokio::spawn(listen(
            expose(&self.database),
            source,
            wake.clone(),
            stop.child_token(),
        ));
        let mut backoff = Duration::from_millis(100);
        let mut last_housekeeping: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        let mut last_batch: Option<Instant> = None;
        tracing::info!(source, "outbox relay started");
        while !stop.is_cancelled() {
            // Coalesce wake-ups: commits that arrive while this wait lasts are claimed together.
            if let Some(wait) =
                last_batch.and_then(|at| self.config.coalesce.checked_sub(at.elapsed()))
            {
                sleep_or_stop(wait, &stop).await;
            }
            last_batch = Some(Instant::now());
            let idle = match self.publish_once().await {
                Ok(BatchOutcome::Busy) => {
                    sleep_or_stop(Duration::from_millis(50), &stop).await;
                    continue;
                }
                Ok(BatchOutcome::Published {
                    published,
                    failed: false,
                }) => {
                    backoff = Duration::from_millis(100);
                    published == 0
                        || i64::try_from(published).unwrap_or(i64::MAX) % self.config.batch_size
                            != 0
                }
                Ok(BatchOutcome::Published { failed: true, .. }) => {
                    sleep_or_stop(backoff, &stop).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(source, %error, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed, retrying");
                    sleep_or_stop(backoff, &stop).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
            };
            if last_housekeeping.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_housekeeping = Some(Instant::now());
                self.update_pending_gauge().await;
                if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_prune = Some(Instant::now());
                    self.prune().await;
                }
            }
            if idle {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = wake.notified() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
        listener.abort();
        tracing::info!(source, "outbox relay stopped");
    }

    async fn update_pending_gauge(&self) {
        let source = self.outbox.source();
        if let Ok(mut conn) = self.pool.get().await
            && let Ok(count) = pending(&mut conn, source).await
        {
            self.metrics
                .outbox_pending
                .with_label_values(&[source])
                .set(count);
        }
    }

    async fn prune(&self) {
        let source = self.outbox.source();
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else {
            return;
        };
        if let Ok(mut conn) = self.pool.get().await {
            match prune_published(&mut conn, source, chrono::Utc::now() - retention, 10_000).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(source, deleted, "pruned published outbox rows"),
                Err(error) => tracing::warn!(source, %error, "cannot prune the outbox"),
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Turns off the WAL-flush wait for this transaction, plans its statements for their actual
/// arguments, and takes the source's batch lock (transaction-scoped: released at commit or
/// rollback, even if the relay dies), in one round trip.
///
/// Custom plans: the relay's connections live as long as the process, and a prepared statement
/// switches to a generic plan after five runs. Planned while the outbox was small (a fresh
/// database, a quiet start), the mark's `id = ANY($1)` kept a sequential scan once the table had
/// grown, until an analyze replanned it: 100–250 ms per mark of 256 rows over 125,000 rows, seen
/// in the telephony benchmark. A custom plan costs a few tens of µs per batch.
async fn begin_batch(conn: &mut AsyncPgConnection, source: &str) -> diesel::QueryResult<bool> {
    let row: Locked = diesel::sql_query(
        "SELECT set_config('synchronous_commit', 'off', true) IS NOT NULL \
         AND set_config('plan_cache_mode', 'force_custom_plan', true) IS NOT NULL \
         AND pg_try_advisory_xact_lock(hashtext('sb_outbox:' || $1)) AS locked",
    )
    .bind::<Text, _>(source)
    .cached()
    .get_result(conn)
    .await?;
    Ok(row.locked)
}

async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

/// Holds a dedicated connection LISTENing on the outbox channel and wakes the relay for its
/// source. Reconnects forever; the relay's polling covers the gaps.
async fn listen(url: String, source: &'static str, wake: Arc<Notify>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match AsyncPgConnection::establish(&url).await {
            Ok(mut conn) => match diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => {
                    // Rows committed while we were not listening.
                    wake.notify_one();
                    let mut notifications = pin!(conn.notifications_stream());
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            next = notifications.next() => match next {
                                Some(Ok(notification)) => {
                                    if notification.payload == source {
                                        wake.notify_one();
                                    }
                                }
                                Some(Err(error)) => {
                                    tracing::debug!(source, %error, "outbox listener lost its connection");
                                    break;
                                }
                                None => break,
                            },
                        }
                    }
                }
                Err(error) => tracing::debug!(source, %error, "outbox listener cannot LISTEN"),
            },
            Err(error) => tracing::debug!(source, %error, "outbox listener cannot connect"),
        }
        sleep_or_stop(Duration::from_secs(1), &stop).await;
    }
}
