//! The outbox and its relay against real Postgres and NATS: exactly once, in order, through
//! rollbacks, concurrent relays, a relay crash and a NATS outage.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Effects, World, call_started, effects, header, read_stream};
use diesel_async::AsyncConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use prost::Message;
use sb_events::consumer::{ConsumerConfig, ConsumerRunner};
use sb_events::outbox::{self, Outbox, RelayConfig};
use sb_events::proto::VideoCallStarted;
use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, Event, Namespace, headers};
use sb_testkit::{NatsServer, Result, run_until, wait_until};
use tokio_util::sync::CancellationToken;

fn video() -> Outbox {
    Outbox::new("video")
}
const ORG: &str = "0190a000-0000-7000-8000-000000000001";

async fn enqueue_many(
    conn: &mut AsyncPgConnection,
    aggregates: usize,
    per_aggregate: i64,
) -> Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::new();
    for n in 0..per_aggregate {
        for a in 0..aggregates {
            let id = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    video()
                        .enqueue(conn, &call_started(&format!("call-{a}"), ORG, n))
                        .await
                })
                .await?;
            ids.push(id);
        }
    }
    Ok(ids)
}

fn published(n: usize) -> outbox::BatchOutcome {
    outbox::BatchOutcome::Published {
        published: n,
        failed: false,
    }
}

async fn pending(world: &World) -> Result<i64> {
    let mut conn = world.db.conn().await?;
    Ok(outbox::pending(&mut conn, "video").await?)
}

#[tokio::test]
async fn committed_events_are_published_once_with_their_headers() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let event = call_started("call-1", ORG, 1);
    let id = conn
        .transaction::<_, diesel::result::Error, _>(async |c| video().enqueue(c, &event).await)
        .await?;
    assert_eq!(world.relay(video()).publish_once().await?, published(1));
    assert_eq!(
        world.relay(video()).publish_once().await?,
        published(0),
        "nothing left"
    );

    let messages = world.stream_messages(Domain::Video).await?;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        message.subject.as_str(),
        world.ns.subject("sb.video.call.started")
    );
    assert_eq!(header(message, headers::MSG_ID), id.to_string());
    assert_eq!(header(message, headers::EVENT_TYPE), VideoCallStarted::TYPE);
    assert_eq!(header(message, headers::ORG_ID), ORG);
    assert!(headers::is_valid_traceparent(&header(
        message,
        headers::TRACEPARENT
    )));
    assert_eq!(VideoCallStarted::decode(message.payload.as_ref())?, event);
    assert_eq!(pending(&world).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let result = conn
        .transaction::<(), diesel::result::Error, _>(async |c| {
            video().enqueue(c, &call_started("call-1", ORG, 1)).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(result.is_err());
    assert_eq!(pending(&world).await?, 0);
    assert_eq!(world.relay(video()).publish_once().await?, published(0));
    Ok(())
}

#[tokio::test]
async fn the_relay_wakes_on_notify_without_polling() -> Result {
    let world = World::new().await?;
    let relay = world.relay(video()).with_config(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    // Let the listener start (the relay's first pass finds nothing and goes to sleep).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = world.db.conn().await?;
    let started = std::time::Instant::now();
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        video().enqueue(c, &call_started("call-1", ORG, 1)).await
    })
    .await?;
    wait_until(
        Duration::from_secs(5),
        "NOTIFY to wake the relay",
        || async { matches!(pending(&world).await, Ok(0)) },
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "published in {:?}, without polling",
        started.elapsed()
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}

/// Notifications received on the outbox channel by a separate session within `wait`.
async fn notifications_within(listener: &mut AsyncPgConnection, wait: Duration) -> usize {
    use futures_util::StreamExt;
    let mut stream = std::pin::pin!(listener.notifications_stream());
    let mut received = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(wait, stream.next()).await {
        received += 1;
    }
    received
}

#[tokio::test]
async fn a_transaction_through_wake_on_commit_wakes_the_relay_in_memory_without_notify() -> Result {
    use diesel_async::RunQueryDsl;
    let world = World::new().await?;
    let outbox = video();
    let relay = world.relay(outbox.clone()).with_config(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..RelayConfig::default()
    });
    let mut listener = AsyncPgConnection::establish(&world.db.url()).await?;
    diesel::sql_query(format!("LISTEN {}", outbox::NOTIFY_CHANNEL))
        .execute(&mut listener)
        .await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = world.db.conn().await?;

    // A rolled-back transaction wakes nothing and leaves nothing.
    let rolled_back = outbox
        .wake_on_commit(conn.transaction::<(), diesel::result::Error, _>(async |c| {
            outbox.enqueue(c, &call_started("call-0", ORG, 0)).await?;
            Err(diesel::result::Error::RollbackTransaction)
        }))
        .await;
    assert!(rolled_back.is_err());

    let started = std::time::Instant::now();
    outbox
        .wake_on_commit(conn.transaction::<_, diesel::result::Error, _>(async |c| {
            outbox.enqueue(c, &call_started("call-1", ORG, 1)).await
        }))
        .await?;
    wait_until(
        Duration::from_secs(5),
        "the commit to wake the relay",
        || async { matches!(pending(&world).await, Ok(0)) },
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "published in {:?}, without polling",
        started.elapsed()
    );
    assert_eq!(
        notifications_within(&mut listener, Duration::from_millis(300)).await,
        0,
        "no NOTIFY on the commit path"
    );

    // The same enqueue in a plain transaction still notifies (other writers, other processes).
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        outbox.enqueue(c, &call_started("call-2", ORG, 2)).await
    })
    .await?;
    assert_eq!(
        notifications_within(&mut listener, Duration::from_millis(500)).await,
        1
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}

#[tokio::test]
async fn two_relays_on_one_table_never_publish_a_row_twice() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let ids = enqueue_many(&mut conn, 20, 25).await?;
    let metrics = [
        sb_events::EventMetrics::standalone()?,
        sb_events::EventMetrics::standalone()?,
    ];
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for m in &metrics {
        let relay = sb_events::outbox::Relay::new(
            video(),
            world.db.pool(),
            world.db.config(),
            world.js.clone(),
            world.ns.clone(),
            m.clone(),
        )
        .with_config(RelayConfig {
            batch_size: 16,
            ..RelayConfig::default()
        });
        tasks.push(tokio::spawn(relay.run(stop.clone())));
    }
    wait_until(
        Duration::from_secs(30),
        "both relays to drain the outbox",
        || async { matches!(pending(&world).await, Ok(0)) },
    )
    .await?;
    stop.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task).await??;
    }
    let published: u64 = metrics
        .iter()
        .map(|m| {
            m.events_published_total
                .with_label_values(&["video", "sb.video.call.started"])
                .get()
        })
        .sum();
    assert_eq!(
        published,
        ids.len() as u64,
        "every row published exactly once across both relays"
    );
    let messages = world.stream_messages(Domain::Video).await?;
    assert_eq!(messages.len(), ids.len());
    assert_per_aggregate_order(&messages)?;
    Ok(())
}

/// Every `call-N` aggregate's events arrive with increasing `started_at_unix_ms` (the sequence).
fn assert_per_aggregate_order(messages: &[async_nats::jetstream::Message]) -> Result {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = HashSet::new();
    for message in messages {
        assert!(
            seen.insert(header(message, headers::MSG_ID)),
            "duplicate event in the stream"
        );
        let event = VideoCallStarted::decode(message.payload.as_ref())?;
        if let Some(previous) = last.insert(event.call_id.clone(), event.started_at_unix_ms) {
            assert!(
                previous < event.started_at_unix_ms,
                "{}: {previous} then {}",
                event.call_id,
                event.started_at_unix_ms
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_relay_crash_between_publish_and_mark_duplicates_nothing() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let ids = enqueue_many(&mut conn, 5, 4).await?;
    let relay = world.relay(video());
    // The crash: rows claimed and published, then the transaction dies before marking them.
    let expected = ids.len();
    let crashed = conn
        .transaction::<(), diesel::result::Error, _>(async |c| {
            let rows = outbox::claim(c, "video", None, 100).await?;
            let (acked, failure) = relay.publish_rows(&rows).await;
            assert!(failure.is_none());
            assert_eq!(acked.len(), expected, "all published and acknowledged");
            // The process dies here, before marking the rows published.
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(crashed.is_err(), "the transaction was rolled back");
    assert_eq!(
        world.stream_messages(Domain::Video).await?.len(),
        expected,
        "they did reach the stream"
    );
    assert_eq!(
        pending(&world).await?,
        ids.len() as i64,
        "rows are still unpublished after the crash"
    );

    // Restart: the relay publishes everything again; JetStream drops the copies.
    while world.relay(video()).publish_once().await? != published(0) {}
    assert_eq!(pending(&world).await?, 0);
    let messages = world.stream_messages(Domain::Video).await?;
    assert_eq!(messages.len(), ids.len(), "no duplicate reached the stream");
    assert_per_aggregate_order(&messages)?;

    // And a consumer downstream applies each event once.
    let config = ConsumerConfig::new("test", "effects", Domain::Video, "sb.video.>");
    let runner = ConsumerRunner::new(
        config,
        world.db.pool(),
        world.js.clone(),
        world.ns.clone(),
        Effects,
        world.metrics.clone(),
    );
    run_until(
        Duration::from_secs(15),
        "the consumer to apply every event",
        |stop| runner.run(stop),
        || async {
            world
                .metrics
                .consumer_messages_total
                .with_label_values(&["test-effects", "applied"])
                .get()
                == expected as u64
        },
    )
    .await?;
    for aggregate in 0..5 {
        assert_eq!(
            effects(&world, &format!("call-{aggregate}")).await?,
            4,
            "call-{aggregate}: one effect per event"
        );
    }
    Ok(())
}

#[tokio::test]
async fn marks_lost_to_an_outage_longer_than_the_duplicate_window_publish_nothing_twice() -> Result
{
    let world = World::new().await?;
    // A short duplicate window, so the outage below outlasts it.
    let window = Duration::from_millis(500);
    ensure_streams(
        &world.js,
        &world.ns,
        &[Domain::Video],
        &StreamSettings {
            duplicate_window: window,
            ..StreamSettings::default()
        },
    )
    .await?;
    let mut conn = world.db.conn().await?;
    let ids = enqueue_many(&mut conn, 3, 2).await?;

    // Postgres stops taking the marks once JetStream has acknowledged the rows: the relay's
    // transaction fails after publishing, as when Postgres goes away at that moment.
    diesel::sql_query(
        "CREATE FUNCTION refuse_marks() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'Postgres is away'; END $$",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "CREATE TRIGGER refuse_marks BEFORE UPDATE ON outbox FOR EACH ROW \
         EXECUTE FUNCTION refuse_marks()",
    )
    .execute(&mut conn)
    .await?;
    let relay = world.relay(video());
    assert!(relay.publish_once().await.is_err(), "the marks failed");
    assert_eq!(world.stream_messages(Domain::Video).await?.len(), ids.len());
    assert_eq!(pending(&world).await?, ids.len() as i64);

    // The outage outlasts the duplicate window: JetStream would now take copies.
    tokio::time::sleep(window * 4).await;
    diesel::sql_query("DROP TRIGGER refuse_marks ON outbox")
        .execute(&mut conn)
        .await?;

    while relay.publish_once().await? != published(0) {}
    assert_eq!(pending(&world).await?, 0, "every row is marked");
    let messages = world.stream_messages(Domain::Video).await?;
    assert_eq!(messages.len(), ids.len(), "nothing was published twice");
    assert_per_aggregate_order(&messages)?;
    Ok(())
}

/// Writes an outbox row of the video source by hand: any subject, any size.
async fn enqueue_raw(
    conn: &mut AsyncPgConnection,
    subject: &str,
    payload: Vec<u8>,
) -> Result<uuid::Uuid> {
    use diesel::ExpressionMethods;
    use sb_db::schema::outbox as table;
    let id = uuid::Uuid::now_v7();
    diesel::insert_into(table::table)
        .values((
            table::id.eq(id),
            table::source.eq("video"),
            table::subject.eq(subject),
            table::payload.eq(payload),
            table::headers.eq(serde_json::json!({
                headers::MSG_ID: id.to_string(),
                headers::EVENT_TYPE: "switchboard.events.v1.VideoCallStarted",
            })),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

#[tokio::test]
async fn rows_jetstream_keeps_refusing_become_dead_letters_and_stop_blocking_their_source() -> Result
{
    use diesel::QueryDsl;
    use sb_db::schema::dead_letters;
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let before = enqueue_many(&mut conn, 2, 1).await?;
    // No stream captures this subject, and this payload is larger than the server takes.
    let unrouted = enqueue_raw(&mut conn, "sb.unrouted.call.started", vec![1; 16]).await?;
    let max_payload = world.js.client().server_info().max_payload;
    let too_large =
        enqueue_raw(&mut conn, "sb.video.call.started", vec![2; max_payload + 1]).await?;
    let after = enqueue_many(&mut conn, 2, 1).await?;

    let relay = world.relay(video()).with_config(RelayConfig {
        ack_timeout: Duration::from_secs(2),
        max_attempts: 3,
        ..RelayConfig::default()
    });
    let mut passes = 0;
    while pending(&world).await? > 0 {
        passes += 1;
        assert!(
            passes <= 20,
            "the refused rows still block the outbox after {passes} passes"
        );
        // A refused row fails its batch (an error, or a partly published batch).
        drop(relay.publish_once().await);
    }

    let stream = world.stream_messages(Domain::Video).await?;
    let published: Vec<String> = stream.iter().map(|m| header(m, headers::MSG_ID)).collect();
    let expected: Vec<String> = before
        .iter()
        .chain(&after)
        .map(ToString::to_string)
        .collect();
    assert_eq!(published, expected, "every other row published, in order");

    let mut letters: Vec<(Option<uuid::Uuid>, String, String, i64)> = dead_letters::table
        .select((
            dead_letters::event_id,
            dead_letters::consumer,
            dead_letters::subject,
            dead_letters::deliveries,
        ))
        .load(&mut conn)
        .await?;
    letters.sort();
    let mut wanted = vec![
        (
            Some(unrouted),
            "outbox:video".to_owned(),
            "sb.unrouted.call.started".to_owned(),
            3,
        ),
        (
            Some(too_large),
            "outbox:video".to_owned(),
            "sb.video.call.started".to_owned(),
            3,
        ),
    ];
    wanted.sort();
    assert_eq!(letters, wanted);
    assert_eq!(
        world
            .metrics
            .outbox_dead_letters_total
            .with_label_values(&["video"])
            .get(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_nats_outage_loses_nothing_and_keeps_per_aggregate_order() -> Result {
    let world = World::new().await?;
    let mut server = NatsServer::start().await?;
    let config = sb_platform::config::NatsConfig {
        url: server.url(),
        connect_timeout: Duration::from_secs(2),
    };
    let client = sb_platform::nats::connect(&config, "outage-test").await?;
    let js = async_nats::jetstream::new(client);
    let ns = Namespace::production();
    ensure_streams(&js, &ns, &[Domain::Video], &StreamSettings::default()).await?;

    let stop = CancellationToken::new();
    let relay = world
        .relay_on(video(), js.clone(), ns.clone())
        .with_config(RelayConfig {
            ack_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_millis(300),
            ..RelayConfig::default()
        });
    let task = tokio::spawn(relay.run(stop.clone()));

    server.stop().await?;
    let mut conn = world.db.conn().await?;
    let ids = enqueue_many(&mut conn, 50, 20).await?;
    assert_eq!(ids.len(), 1000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pending(&world).await?,
        1000,
        "nothing is marked published while NATS is down"
    );

    server.resume().await?;
    wait_until(
        Duration::from_secs(60),
        "the relay to drain the outbox after NATS returns",
        || async { matches!(pending(&world).await, Ok(0)) },
    )
    .await?;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    let messages = read_stream(&js, &ns.stream(Domain::Video)).await?;
    assert_eq!(messages.len(), 1000, "every event arrived exactly once");
    let arrived: HashSet<String> = messages
        .iter()
        .map(|m| header(m, headers::MSG_ID))
        .collect();
    let expected: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(arrived, expected);
    assert_per_aggregate_order(&messages)?;
    Ok(())
}

#[tokio::test]
async fn published_rows_are_pruned_after_the_retention() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    enqueue_many(&mut conn, 1, 3).await?;
    world.relay(video()).publish_once().await?;
    let deleted = outbox::prune_published(
        &mut conn,
        "video",
        chrono::Utc::now() + chrono::Duration::seconds(1),
        100,
    )
    .await?;
    assert_eq!(deleted, 3);
    enqueue_many(&mut conn, 1, 1).await?;
    let kept = outbox::prune_published(
        &mut conn,
        "video",
        chrono::Utc::now() + chrono::Duration::seconds(1),
        100,
    )
    .await?;
    assert_eq!(kept, 0, "unpublished rows are never pruned");
    Ok(())
}

/// Enqueues `call-late` on its own connection and holds the transaction open until `commit`
/// fires: an id taken before rows that commit (and are published) ahead of it.
async fn hold_open(
    world: &World,
    commit: tokio::sync::oneshot::Receiver<()>,
) -> Result<(
    tokio::sync::oneshot::Receiver<uuid::Uuid>,
    tokio::task::JoinHandle<std::result::Result<uuid::Uuid, diesel::result::Error>>,
)> {
    let mut conn = world.db.conn().await?;
    let (enqueued_tx, enqueued) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        conn.transaction::<_, diesel::result::Error, _>(async |c| {
            let id = video()
                .enqueue(c, &call_started("call-late", ORG, 1))
                .await?;
            enqueued_tx.send(id).ok();
            commit.await.ok();
            Ok(id)
        })
        .await
    });
    Ok((enqueued, task))
}

async fn enqueue_one(world: &World, call: &str) -> Result<uuid::Uuid> {
    let mut conn = world.db.conn().await?;
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            video().enqueue(c, &call_started(call, ORG, 1)).await
        })
        .await?)
}

async fn published_ids(world: &World) -> Result<Vec<String>> {
    Ok(world
        .stream_messages(Domain::Video)
        .await?
        .iter()
        .map(|m| header(m, headers::MSG_ID))
        .collect())
}

#[tokio::test]
async fn a_row_committed_after_a_higher_id_was_published_is_published_by_the_next_claim() -> Result
{
    let world = World::new().await?;
    // One relay throughout: its cursor is the id it published last.
    let relay = world.relay(video());
    let (commit, commit_rx) = tokio::sync::oneshot::channel();
    let (enqueued, task) = hold_open(&world, commit_rx).await?;
    let late = enqueued.await?;
    let early = enqueue_one(&world, "call-early").await?;
    assert!(late < early, "the held transaction took the lower id");
    assert_eq!(relay.publish_once().await?, published(1));
    assert_eq!(relay.publish_once().await?, published(0));

    // Commits now, below the published id but within the lag window (1 s by default).
    commit.send(()).ok();
    assert_eq!(task.await??, late);
    assert_eq!(relay.publish_once().await?, published(1));
    assert_eq!(
        published_ids(&world).await?,
        vec![early.to_string(), late.to_string()]
    );
    assert_eq!(pending(&world).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_row_committed_later_than_the_lag_window_is_published_by_the_periodic_rescan() -> Result {
    let world = World::new().await?;
    let rescan_interval = Duration::from_millis(500);
    let relay = world.relay(video()).with_config(RelayConfig {
        lag_window: Duration::from_millis(20),
        rescan_interval,
        ..RelayConfig::default()
    });
    let (commit, commit_rx) = tokio::sync::oneshot::channel();
    let (enqueued, task) = hold_open(&world, commit_rx).await?;
    let late = enqueued.await?;
    // The later id is taken well past the lag window after the held one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = enqueue_one(&world, "call-early").await?;
    // The relay's first batch is a full rescan; it publishes the committed row.
    assert_eq!(relay.publish_once().await?, published(1));

    commit.send(()).ok();
    assert_eq!(task.await??, late);
    // Claims from the cursor (less 20 ms) do not reach it: this is the row a cursor alone skips.
    assert_eq!(relay.publish_once().await?, published(0));
    assert_eq!(pending(&world).await?, 1);
    // The next full rescan publishes it.
    tokio::time::sleep(rescan_interval).await;
    assert_eq!(relay.publish_once().await?, published(1));
    assert_eq!(
        published_ids(&world).await?,
        vec![early.to_string(), late.to_string()]
    );
    assert_eq!(pending(&world).await?, 0);

    // The running relay does the same on its own, within a rescan interval.
    let (commit, commit_rx) = tokio::sync::oneshot::channel();
    let (enqueued, task) = hold_open(&world, commit_rx).await?;
    let late = enqueued.await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue_one(&world, "call-early-2").await?;
    let stop = CancellationToken::new();
    let running = world.relay(video()).with_config(RelayConfig {
        lag_window: Duration::from_millis(20),
        rescan_interval,
        poll_interval: Duration::from_millis(50),
        ..RelayConfig::default()
    });
    let relay_task = tokio::spawn(running.run(stop.clone()));
    wait_until(
        Duration::from_secs(5),
        "the early row published",
        || async { matches!(pending(&world).await, Ok(1)) },
    )
    .await?;
    commit.send(()).ok();
    assert_eq!(task.await??, late);
    wait_until(Duration::from_secs(5), "the late row published", || async {
        matches!(pending(&world).await, Ok(0))
    })
    .await?;
    assert!(published_ids(&world).await?.contains(&late.to_string()));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), relay_task).await??;
    Ok(())
}

#[tokio::test]
async fn enqueue_many_writes_events_in_order_in_one_insert() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let events = [
        call_started("call-1", ORG, 1),
        call_started("call-2", ORG, 2),
        call_started("call-3", ORG, 3),
    ];
    let pending_events: Vec<_> = events.iter().map(outbox::Pending::new).collect();
    let ids = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            video().enqueue_many(c, &pending_events, None).await
        })
        .await?;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order");
    assert_eq!(world.relay(video()).publish_once().await?, published(3));
    let messages = world.stream_messages(Domain::Video).await?;
    let got: Vec<_> = messages
        .iter()
        .map(|m| VideoCallStarted::decode(m.payload.as_ref()))
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(got, events);
    assert_eq!(
        messages
            .iter()
            .map(|m| header(m, headers::MSG_ID))
            .collect::<Vec<_>>(),
        ids.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    Ok(())
}

/// Rows of the outbox table read by sequential scans so far, as the statistics collector
/// reports them (a backend reports its counts when it goes idle, at most once a second).
async fn outbox_rows_read_by_scans(conn: &mut AsyncPgConnection) -> Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Scans {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq_tup_read: i64,
    }
    let scans: Scans = diesel::sql_query(
        "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'outbox' AND schemaname = 'public'",
    )
    .get_result(conn)
    .await?;
    Ok(scans.seq_tup_read)
}

#[tokio::test]
async fn the_relay_never_scans_the_whole_outbox_after_it_grew_under_statements_planned_when_small()
-> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    // Postgres switches a prepared statement to a generic plan after five runs when that looks no
    // worse; here its sessions use generic plans from the first run, planned for the small table
    // below. No autovacuum: no analyze replans them behind the test's back (as on a fresh
    // database before autovacuum's first visit).
    diesel::sql_query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', \
         current_database()); END $$",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query("ALTER TABLE outbox SET (autovacuum_enabled = false)")
        .execute(&mut conn)
        .await?;
    // One connection, opened after the setting: every batch runs on the statements it prepared
    // while the table was small.
    let mut config = world.db.config();
    config.max_connections = 1;
    let relay = sb_events::outbox::Relay::new(
        video(),
        sb_db::build_pool(&config)?,
        config,
        world.js.clone(),
        world.ns.clone(),
        world.metrics.clone(),
    );
    for _ in 0..3 {
        enqueue_many(&mut conn, 8, 4).await?;
        assert_eq!(relay.publish_once().await?, published(32));
    }
    // The table grows (another service's published rows), with no analyze.
    diesel::sql_query(
        "INSERT INTO outbox (id, source, subject, payload, headers, published_at) \
         SELECT gen_random_uuid(), 'other', 'sb.other', '\\x00', '{}', now() \
         FROM generate_series(1, 150000)",
    )
    .execute(&mut conn)
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = outbox_rows_read_by_scans(&mut conn).await?;
    enqueue_many(&mut conn, 16, 16).await?;
    assert_eq!(relay.publish_once().await?, published(256));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The small scans of the warm-up may be reported late, into this window; a scan of the
    // grown table reads its 150,000 rows.
    let read = outbox_rows_read_by_scans(&mut conn).await? - before;
    assert!(
        read < 100_000,
        "the relay's claim or mark scanned the whole table ({read} rows read)"
    );
    assert_eq!(pending(&world).await?, 0);
    Ok(())
}
