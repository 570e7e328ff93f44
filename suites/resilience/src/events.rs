//! End-to-end event accounting: the ids the services wrote to the outbox against the ids
//! JetStream holds (`Nats-Msg-Id`), each expected exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use sb_events::{Domain, Namespace};

/// The domains whose streams the services publish to.
pub const PUBLISHED: [Domain; 4] = [
    Domain::Video,
    Domain::Telephony,
    Domain::Signaling,
    Domain::Monitoring,
];

/// Every event id in the outbox table (published or not).
pub async fn outbox_ids(database_url: &str) -> anyhow::Result<BTreeSet<uuid::Uuid>> {
    use sb_db::schema::outbox;
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    let ids: Vec<uuid::Uuid> = outbox::table.select(outbox::id).load(&mut conn).await?;
    Ok(ids.into_iter().collect())
}

/// Outbox rows not yet published.
pub async fn unpublished(database_url: &str) -> anyhow::Result<i64> {
    use sb_db::schema::outbox;
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    Ok(outbox::table
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(&mut conn)
        .await?)
}

/// How many times each event id is stored in the services' streams.
pub async fn stream_ids(nats_url: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::new(client);
    let ns = Namespace::production();
    let mut counts = BTreeMap::new();
    for domain in PUBLISHED {
        let mut stream = match js.get_stream(ns.stream(domain)).await {
            Ok(stream) => stream,
            Err(error) if error.to_string().contains("not found") => continue,
            Err(error) => return Err(error.into()),
        };
        let total = stream.info().await?.state.messages;
        if total == 0 {
            continue;
        }
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await?;
        let mut messages = consumer.messages().await?;
        let mut seen = 0u64;
        while seen < total {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| anyhow::anyhow!("reading {}: {seen} of {total}", domain.stream()))?
                .ok_or_else(|| anyhow::anyhow!("stream ended early"))??;
            seen += 1;
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(sb_events::headers::MSG_ID))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| format!("(no Nats-Msg-Id) {}", message.subject));
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// The comparison of the two.
#[derive(Debug, Default)]
pub struct Accounting {
    pub produced: usize,
    pub delivered_once: usize,
    pub missing: Vec<String>,
    pub duplicated: Vec<(String, usize)>,
    pub unknown: Vec<String>,
}

impl Accounting {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.unknown.is_empty()
    }
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} produced, {} delivered once, {} missing, {} duplicated, {} not from the outbox",
            self.produced,
            self.delivered_once,
            self.missing.len(),
            self.duplicated.len(),
            self.unknown.len()
        )
    }
}

/// Accounts for every event. Consumers may still derive new events while this runs (a backlog
/// replayed after an outage), so the streams are read before the outbox: every stored id was
/// committed before it was published, so an id in that stream snapshot but not in the later
/// outbox snapshot really came from elsewhere. An outbox row missing from the streams may just be
/// newer than the snapshot: the accounting is repeated until nothing is missing, or for at most
/// `settle`, and what is still missing then is reported.
pub async fn account(
    database_url: &str,
    nats_url: &str,
    settle: Duration,
) -> anyhow::Result<Accounting> {
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        drained(database_url, settle).await?;
        let stored = stream_ids(nats_url).await?;
        let produced = outbox_ids(database_url).await?;
        let accounting = tally(&produced, &stored);
        if accounting.missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(accounting);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tally(produced: &BTreeSet<uuid::Uuid>, stored: &BTreeMap<String, usize>) -> Accounting {
    let mut accounting = Accounting {
        produced: produced.len(),
        ..Accounting::default()
    };
    for id in produced {
        match stored.get(&id.to_string()) {
            None => accounting.missing.push(id.to_string()),
            Some(1) => accounting.delivered_once += 1,
            Some(n) => accounting.duplicated.push((id.to_string(), *n)),
        }
    }
    for id in stored.keys() {
        if id
            .parse::<uuid::Uuid>()
            .map_or(true, |u| !produced.contains(&u))
        {
            accounting.unknown.push(id.clone());
        }
    }
    accounting
}

/// Waits (bounded) until every outbox row is published.
pub async fn drained(database_url: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = unpublished(database_url).await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{left} outbox rows still unpublished after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one durable consumer applied, against what its stream holds for it.
#[derive(Debug)]
pub struct Application {
    pub consumer: &'static str,
    /// Events of its stream its filter takes.
    pub expected: usize,
    /// Events its inbox holds (each applied once: the inbox row commits with the effect).
    pub applied: usize,
    /// In the stream, not in the inbox.
    pub missing: Vec<String>,
    /// In the inbox, not in the stream.
    pub unknown: Vec<String>,
}

impl std::fmt::Display for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} expected, {} applied, {} missing, {} unknown",
            self.consumer,
            self.expected,
            self.applied,
            self.missing.len(),
            self.unknown.len()
        )
    }
}

/// Event ids of `domain`'s stream whose subject starts with `prefix`.
async fn stream_ids_under(
    js: &jetstream::Context,
    domain: Domain,
    prefix: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let ns = Namespace::production();
    let mut ids = BTreeSet::new();
    let mut stream = js.get_stream(ns.stream(domain)).await?;
    let total = stream.info().await?.state.messages;
    if total == 0 {
        return Ok(ids);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    for _ in 0..total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| anyhow::anyhow!("reading {}", domain.stream()))?
            .ok_or_else(|| anyhow::anyhow!("stream ended early"))??;
        if message.subject.as_str().starts_with(prefix)
            && let Some(id) = message
                .headers
                .as_ref()
                .and_then(|h| h.get(sb_events::headers::MSG_ID))
        {
            ids.insert(id.as_str().to_owned());
        }
    }
    Ok(ids)
}

/// For each `(consumer, domain, subject prefix)`: every event of the stream under the prefix
/// against the consumer's inbox, repeated until nothing is missing or `settle` passes (consumers
/// may still be catching up).
pub async fn applications(
    database_url: &str,
    nats_url: &str,
    consumers: &[(&'static str, Domain, &str)],
    settle: Duration,
) -> anyhow::Result<Vec<Application>> {
    use sb_db::schema::inbox;
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let mut conn = AsyncPgConnection::establish(database_url).await?;
        let mut out = Vec::new();
        for (consumer, domain, prefix) in consumers {
            let expected = stream_ids_under(&js, *domain, prefix).await?;
            let applied: BTreeSet<String> = inbox::table
                .filter(inbox::consumer.eq(*consumer))
                .select(inbox::event_id)
                .load::<uuid::Uuid>(&mut conn)
                .await?
                .into_iter()
                .map(|id| id.to_string())
                .collect();
            out.push(Application {
                consumer,
                expected: expected.len(),
                applied: applied.len(),
                missing: expected.difference(&applied).cloned().collect(),
                unknown: applied.difference(&expected).cloned().collect(),
            });
        }
        if out.iter().all(|a| a.missing.is_empty()) || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Rows in `dead_letters`.
pub async fn dead_letters(database_url: &str) -> anyhow::Result<i64> {
    use sb_db::schema::dead_letters;
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    Ok(dead_letters::table.count().get_result(&mut conn).await?)
}
