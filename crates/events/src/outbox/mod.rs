//! The transactional outbox: events are written in the same transaction as the state change that
//! produced them, then published to JetStream by a [`Relay`].
//!
//! Waking the relay. A transaction awaited through [`Outbox::wake_on_commit`] wakes this process's relay
//! right after it commits, in memory. Rows written any other way (outside that wrapper, or by
//! another process) wake it with a transactional `NOTIFY`, and the relay also polls. NOTIFY is
//! kept off the hot path on purpose: PostgreSQL takes one database-wide lock from the NOTIFY of a
//! committing transaction until its commit is flushed, so transactions that notify commit one at
//! a time (pgbench on this project's machine: 7,124 inserts/s alone, 2,236/s with `pg_notify`).

mod relay;

use sb_db::CacheBySql;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sb_db::schema::outbox;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::event::Event;
use crate::headers;

pub use relay::{AckObserver, BatchOutcome, Relay, RelayConfig, RelayError};

/// Postgres channel the relay listens on; the payload is the source service.
pub const NOTIFY_CHANNEL: &str = "sb_outbox";

/// What a transaction awaited by [`Outbox::wake_on_commit`] runs within: its source (enqueues of
/// that source need no NOTIFY) and whether it enqueued anything (else there is nothing to wake
/// the relay for).
struct CommitScope {
    source: &'static str,
    enqueued: Cell<bool>,
}

tokio::task_local! {
    static WAKES_AFTER_COMMIT: CommitScope;
}

/// Writes a service's events into the outbox. Clones share the wake-up of the process's relay
/// ([`Relay::new`] takes one).
#[derive(Debug, Clone)]
pub struct Outbox {
    source: &'static str,
    relay_wake: Arc<Notify>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxRow {
    pub id: Uuid,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl Outbox {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            relay_wake: Arc::new(Notify::new()),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Wakes this process's relay (it then publishes whatever is committed and unpublished).
    pub fn wake_relay(&self) {
        self.relay_wake.notify_one();
    }

    pub(crate) fn relay_wake(&self) -> Arc<Notify> {
        self.relay_wake.clone()
    }

    /// Awaits `transaction` (a `conn.transaction(…)` future: the outermost one, not a savepoint)
    /// and, when it enqueued events of this source, wakes the relay in memory once it has
    /// committed, so those events cost no NOTIFY; a transaction that enqueued nothing wakes
    /// nothing. Wrapping a savepoint instead would wake the relay before the rows are visible:
    /// they would then wait for its next poll (never lost).
    pub async fn wake_on_commit<R, E>(
        &self,
        transaction: impl Future<Output = Result<R, E>>,
    ) -> Result<R, E> {
        let scope = CommitScope {
            source: self.source,
            enqueued: Cell::new(false),
        };
        let (enqueued, result) = WAKES_AFTER_COMMIT
            .scope(scope, async {
                let result = transaction.await;
                let enqueued = WAKES_AFTER_COMMIT.with(|scope| scope.enqueued.get());
                (enqueued, result)
            })
            .await;
        if enqueued && result.is_ok() {
            self.wake_relay();
        }
        result
    }

    /// Adds `event` to the outbox inside the caller's transaction; returns the event id. Nothing is
    /// published if the transaction rolls back. The relay is woken after the commit: in memory
    /// inside [`Outbox::wake_on_commit`], else by a transactional NOTIFY (see the module docs).
    pub async fn enqueue<E: Event>(
        &self,
        conn: &mut AsyncPgConnection,
        event: &E,
    ) -> QueryResult<Uuid> {
        self.enqueue_traced(conn, event, None).await
    }

    /// Like [`Outbox::enqueue`], propagating the caller's W3C `traceparent` when it is valid.
    pub async fn enqueue_traced<E: Event>(
        &self,
        conn: &mut AsyncPgConnection,
        event: &E,
        traceparent: Option<&str>,
    ) -> QueryResult<Uuid> {
        let ids = self
            .enqueue_many(conn, &[Pending::new(event)], traceparent)
            .await?;
        Ok(ids.into_iter().next().unwrap_or_default())
    }

    /// Adds `events` to the outbox in one multi-row insert (one round trip), in order, inside the
    /// caller's transaction; returns their ids. Otherwise as [`Outbox::enqueue_traced`].
    pub async fn enqueue_many(
        &self,
        conn: &mut AsyncPgConnection,
        events: &[Pending],
        traceparent: Option<&str>,
    ) -> QueryResult<Vec<Uuid>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let staged = self.stage(events, traceparent);
        let rows: Vec<_> = staged
            .rows()
            .map(|(id, subject, payload, headers)| {
                (
                    outbox::id.eq(id),
                    outbox::source.eq(self.source),
                    outbox::subject.eq(subject),
                    outbox::payload.eq(payload),
                    outbox::headers.eq(headers),
                )
            })
            .collect();
        diesel::insert_into(outbox::table)
            .values(rows)
            .cached()
            .execute(conn)
            .await?;
        self.wake_after_commit(conn).await?;
        Ok(staged.ids)
    }

    /// Once a statement of the caller's transaction has written [`StagedEvents`] itself: wakes
    /// the relay after the commit, as [`Outbox::enqueue_many`] does (in memory inside
    /// [`Outbox::wake_on_commit`], else by a transactional NOTIFY).
    pub async fn wake_after_commit(&self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let woken_after_commit = WAKES_AFTER_COMMIT
            .try_with(|scope| {
                let ours = scope.source == self.source;
                if ours {
                    scope.enqueued.set(true);
                }
                ours
            })
            .unwrap_or(false);
        if !woken_after_commit {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(self.source)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// `events` as outbox rows (ids, headers), for a statement that writes them itself beside the
    /// state change they announce, as one statement without a transaction (see
    /// [`StagedEvents`]). [`Outbox::enqueue_many`] writes the same rows.
    pub fn stage(&self, events: &[Pending], traceparent: Option<&str>) -> StagedEvents {
        let traceparent = traceparent.filter(|tp| headers::is_valid_traceparent(tp));
        let mut staged = StagedEvents {
            source: self.source,
            ids: Vec::with_capacity(events.len()),
            subjects: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            headers: Vec::with_capacity(events.len()),
        };
        for event in events {
            let id = Uuid::now_v7();
            let mut meta = BTreeMap::new();
            meta.insert(headers::MSG_ID.to_owned(), id.to_string());
            meta.insert(headers::EVENT_TYPE.to_owned(), event.event_type.to_owned());
            meta.insert(headers::ORG_ID.to_owned(), event.org_id.clone());
            let traceparent =
                traceparent.map_or_else(|| headers::new_traceparent(id), str::to_owned);
            meta.insert(headers::TRACEPARENT.to_owned(), traceparent);
            staged.ids.push(id);
            staged.subjects.push(event.subject.clone());
            staged.payloads.push(event.payload.clone());
            staged
                .headers
                .push(serde_json::to_value(&meta).unwrap_or_default());
        }
        staged
    }
}

/// Outbox rows built by [`Outbox::stage`], column by column, for a statement that inserts them
/// itself: [`StagedEvents::insert_sql`] in a `WITH` beside the state change, so both commit as
/// one statement, its five parameters bound by [`StagedEvents::bind`]. The statement's caller
/// then wakes the relay ([`Outbox::wake_relay`]) once it has returned.
#[derive(Debug, Clone, Default)]
pub struct StagedEvents {
    pub source: &'static str,
    pub ids: Vec<Uuid>,
    pub subjects: Vec<String>,
    pub payloads: Vec<Vec<u8>>,
    pub headers: Vec<serde_json::Value>,
}

impl StagedEvents {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The insert of staged rows, its parameters numbered from `$first` (source, ids, subjects,
    /// payloads, headers), selected `FROM <from>` (the name of a `WITH` query, such as
    /// `written`, to insert them only when it returned a row; `(SELECT 1) AS always` otherwise).
    pub fn insert_sql(first: usize, from: &str) -> String {
        let [source, ids, subjects, payloads, headers] =
            [0, 1, 2, 3, 4].map(|offset| first + offset);
        format!(
            "INSERT INTO outbox (id, source, subject, payload, headers) \
             SELECT e.id, ${source}, e.subject, e.payload, e.headers FROM {from}, \
             unnest(${ids}::uuid[], ${subjects}::text[], ${payloads}::bytea[], \
             ${headers}::jsonb[]) AS e(id, subject, payload, headers)"
        )
    }

    /// Binds the five parameters of [`StagedEvents::insert_sql`], in its order.
    pub fn bind<'a>(
        &'a self,
        query: diesel::query_builder::BoxedSqlQuery<
            'a,
            diesel::pg::Pg,
            diesel::query_builder::SqlQuery,
        >,
    ) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery>
    {
        use diesel::sql_types::{Array, Bytea, Jsonb, Text, Uuid as SqlUuid};
        query
            .bind::<Text, _>(self.source)
            .bind::<Array<SqlUuid>, _>(&self.ids)
            .bind::<Array<Text>, _>(&self.subjects)
            .bind::<Array<Bytea>, _>(&self.payloads)
            .bind::<Array<Jsonb>, _>(&self.headers)
    }

    fn rows(&self) -> impl Iterator<Item = (Uuid, &str, &[u8], &serde_json::Value)> {
        self.ids
            .iter()
            .zip(&self.subjects)
            .zip(&self.payloads)
            .zip(&self.headers)
            .map(|(((id, subject), payload), headers)| {
                (*id, subject.as_str(), payload.as_slice(), headers)
            })
    }
}

/// An event ready for [`Outbox::enqueue_many`]: events of different types in one insert.
#[derive(Debug, Clone)]
pub struct Pending {
    subject: String,
    event_type: &'static str,
    org_id: String,
    payload: Vec<u8>,
}

impl Pending {
    pub fn new<E: Event>(event: &E) -> Self {
        Self {
            subject: E::SUBJECT.to_string(),
            event_type: E::TYPE,
            org_id: event.org_id().to_owned(),
            payload: event.encode_to_vec(),
        }
    }
}

/// Up to `limit` unpublished rows of `source` with ids above `after`, oldest first. Locks no row:
/// call inside a transaction that holds the source's batch lock (see the relay's module docs).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    source: &str,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    // The nil UUID sorts before every v7 id.
    outbox::table
        .filter(outbox::source.eq(source))
        .filter(outbox::published_at.is_null())
        .filter(outbox::id.gt(after.unwrap_or(Uuid::nil())))
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
        .await
}

/// Marks rows published (JetStream acknowledged them).
pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(diesel::dsl::now))
        .cached()
        .execute(conn)
        .await
}

/// Unpublished rows of `source`.
pub async fn pending(conn: &mut AsyncPgConnection, source: &str) -> QueryResult<i64> {
    outbox::table
        .filter(outbox::source.eq(source))
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Deletes up to `limit` published rows of `source` created before `before`; returns how many.
/// Ids are UUID v7, ordered by creation time, so the primary key serves as the time index: no
/// index on `published_at` is needed (it would cost every mark-published an index insert).
pub async fn prune_published(
    conn: &mut AsyncPgConnection,
    source: &str,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
    let seconds = u64::try_from(before.timestamp()).unwrap_or(0);
    let nanos = before.timestamp_subsec_nanos();
    let boundary = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, nanos));
    diesel::sql_query(
        "DELETE FROM outbox WHERE id IN \
         (SELECT id FROM outbox WHERE id < $2 AND source = $1 AND published_at IS NOT NULL LIMIT $3)",
    )
    .bind::<Text, _>(source)
    .bind::<SqlUuid, _>(boundary)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// Moves a row JetStream keeps refusing out of the outbox into `dead_letters` (its consumer named
/// `outbox:<source>`, `deliveries` the attempts, no stream sequence: it never reached a stream),
/// in one transaction; false when the row is gone or published already (another relay did it).
pub async fn dead_letter(
    conn: &mut AsyncPgConnection,
    source: &str,
    row: &OutboxRow,
    error: &str,
    attempts: i64,
) -> QueryResult<bool> {
    use sb_db::schema::dead_letters;
    conn.transaction(async |conn| {
        let deleted = diesel::delete(
            outbox::table
                .filter(outbox::id.eq(row.id))
                .filter(outbox::published_at.is_null()),
        )
        .execute(conn)
        .await?;
        if deleted == 0 {
            return Ok(false);
        }
        diesel::insert_into(dead_letters::table)
            .values((
                dead_letters::id.eq(Uuid::now_v7()),
                dead_letters::consumer.eq(format!("outbox:{source}")),
                dead_letters::event_id.eq(Some(row.id)),
                dead_letters::subject.eq(&row.subject),
                dead_letters::event_type.eq(row
                    .headers
                    .get(headers::EVENT_TYPE)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)),
                dead_letters::payload.eq(&row.payload),
                dead_letters::headers.eq(&row.headers),
                dead_letters::error.eq(error),
                dead_letters::deliveries.eq(attempts),
                dead_letters::stream_sequence.eq(0_i64),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Headers of a row as NATS headers.
pub(crate) fn row_headers(row: &OutboxRow) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in row.headers.as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            map.insert(name.as_str(), value);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether the relay's wake-up is pending (a woken relay would run a batch now).
    async fn woken(outbox: &Outbox) -> bool {
        let wake = outbox.relay_wake();
        tokio::time::timeout(Duration::from_millis(20), wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_transaction_that_enqueued_nothing_or_failed_wakes_nothing() {
        let outbox = Outbox::new("video");
        let nothing = outbox.wake_on_commit(async { Ok::<_, ()>(()) }).await;
        assert_eq!(nothing, Ok(()));
        assert!(!woken(&outbox).await);

        // An enqueue marks the scope (its NOTIFY is skipped); a failed transaction still wakes
        // nothing.
        let failed = outbox
            .wake_on_commit(async {
                WAKES_AFTER_COMMIT.with(|scope| scope.enqueued.set(true));
                Err::<(), _>("rolled back")
            })
            .await;
        assert_eq!(failed, Err("rolled back"));
        assert!(!woken(&outbox).await);

        let committed = outbox
            .wake_on_commit(async {
                WAKES_AFTER_COMMIT.with(|scope| scope.enqueued.set(true));
                Ok::<_, ()>(())
            })
            .await;
        assert_eq!(committed, Ok(()));
        assert!(woken(&outbox).await);
    }
}
