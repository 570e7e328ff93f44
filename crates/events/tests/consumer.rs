//! The consumer runner against real Postgres and NATS: a crash before the ack applies the effect
//! once, a poison message is dead-lettered without blocking the ones behind it.

mod common;

use std::time::Duration;

use common::{Effects, World, call_started, effects};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_db::schema::{dead_letters, inbox};
use sb_events::Domain;
use sb_events::consumer::{Applied, ConsumerConfig, ConsumerRunner};
use sb_events::publish::publish;
use sb_testkit::{Result, run_until};

const ORG: &str = "0190a000-0000-7000-8000-000000000001";

fn runner(world: &World, config: ConsumerConfig) -> ConsumerRunner<Effects> {
    ConsumerRunner::new(
        config,
        world.db.pool(),
        world.js.clone(),
        world.ns.clone(),
        Effects,
        world.metrics.clone(),
    )
}

fn config() -> ConsumerConfig {
    let mut config = ConsumerConfig::new("test", "effects", Domain::Video, "sb.video.>");
    config.ack_wait = Duration::from_secs(1);
    config.max_deliver = 3;
    config.backoff = vec![Duration::from_millis(50)];
    config
}

#[tokio::test]
async fn a_crash_before_the_ack_applies_the_effect_once() -> Result {
    let world = World::new().await?;
    publish(&world.js, &world.ns, &call_started("call-1", ORG, 1)).await?;
    let runner = runner(&world, config());
    let consumer = runner.ensure().await?;

    // First delivery: applied and committed, then the process dies before acking.
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let message = futures_util::StreamExt::next(&mut batch)
        .await
        .ok_or("no message")??;
    let envelope = runner.envelope(&message)?;
    assert_eq!(runner.apply(&envelope).await?, Applied::Done);
    drop(message);
    assert_eq!(effects(&world, "call-1").await?, 1);

    // Restarted runner: JetStream redelivers after ack_wait; the inbox makes it a duplicate.
    run_until(
        Duration::from_secs(15),
        "the redelivery to be acknowledged",
        |stop| runner.run(stop),
        || async {
            world
                .metrics
                .consumer_messages_total
                .with_label_values(&["test-effects", "duplicate"])
                .get()
                == 1
        },
    )
    .await?;
    assert_eq!(
        effects(&world, "call-1").await?,
        1,
        "the effect was applied once"
    );
    let mut consumer = world
        .js
        .get_stream(world.ns.stream(Domain::Video))
        .await?
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("test-effects")
        .await?;
    let info = consumer.info().await?;
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "acknowledged after the duplicate"
    );
    Ok(())
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_does_not_block_the_others() -> Result {
    let world = World::new().await?;
    publish(&world.js, &world.ns, &call_started("before", ORG, 1)).await?;
    let poison = publish(&world.js, &world.ns, &call_started("poison", ORG, 2)).await?;
    for n in 0..5 {
        publish(
            &world.js,
            &world.ns,
            &call_started(&format!("after-{n}"), ORG, 3 + n),
        )
        .await?;
    }
    let dead_lettered = || {
        world
            .metrics
            .consumer_dead_letters_total
            .with_label_values(&["test-effects"])
            .get()
    };
    let applied = || {
        world
            .metrics
            .consumer_messages_total
            .with_label_values(&["test-effects", "applied"])
            .get()
    };
    run_until(
        Duration::from_secs(20),
        "the poison message to be dead-lettered and every other one applied",
        |stop| runner(&world, config()).run(stop),
        || async { dead_lettered() == 1 && applied() == 6 },
    )
    .await?;

    assert_eq!(effects(&world, "before").await?, 1);
    for n in 0..5 {
        assert_eq!(effects(&world, &format!("after-{n}")).await?, 1);
    }
    assert_eq!(effects(&world, "poison").await?, 0);
    let mut conn = world.db.conn().await?;
    let (event_id, deliveries, error, consumer): (Option<uuid::Uuid>, i64, String, String) =
        dead_letters::table
            .select((
                dead_letters::event_id,
                dead_letters::deliveries,
                dead_letters::error,
                dead_letters::consumer,
            ))
            .first(&mut conn)
            .await?;
    assert_eq!(event_id, Some(poison));
    assert_eq!(deliveries, 3, "dead-lettered after max_deliver attempts");
    assert!(error.contains("always fails"), "{error}");
    assert_eq!(consumer, "test-effects");
    assert_eq!(
        world
            .metrics
            .consumer_messages_total
            .with_label_values(&["test-effects", "retried"])
            .get(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_message_without_an_event_id_is_dead_lettered_at_once() -> Result {
    let world = World::new().await?;
    world
        .js
        .publish(
            world.ns.subject("sb.video.call.started"),
            "not protobuf".into(),
        )
        .await?
        .await?;
    publish(&world.js, &world.ns, &call_started("fine", ORG, 1)).await?;
    run_until(
        Duration::from_secs(10),
        "both messages to be handled",
        |stop| runner(&world, config()).run(stop),
        || async {
            world
                .metrics
                .consumer_dead_letters_total
                .with_label_values(&["test-effects"])
                .get()
                == 1
                && world
                    .metrics
                    .consumer_messages_total
                    .with_label_values(&["test-effects", "applied"])
                    .get()
                    == 1
        },
    )
    .await?;
    let mut conn = world.db.conn().await?;
    let (deliveries, error): (i64, String) = dead_letters::table
        .select((dead_letters::deliveries, dead_letters::error))
        .first(&mut conn)
        .await?;
    assert_eq!(
        deliveries, 1,
        "no retries for a message that can never be applied"
    );
    assert!(error.contains("Nats-Msg-Id"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_postgres_outage_holds_messages_without_spending_attempts() -> Result {
    let world = World::new().await?;
    // The consumer reaches Postgres through a proxy the test can cut.
    let mut url = url::Url::parse(&world.db.url())?;
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = sb_testkit::FaultProxy::start(&target).await?;
    url.set_port(Some(proxy.port()))
        .map_err(|()| "cannot set the proxy port")?;
    let mut database = sb_db::DatabaseConfig::with_url(url.as_str());
    database.acquire_timeout = Duration::from_millis(500);
    database.connect_timeout = Duration::from_millis(500);
    let pool = sb_db::build_pool(&database)?;
    let runner = ConsumerRunner::new(
        config(),
        pool,
        world.js.clone(),
        world.ns.clone(),
        Effects,
        world.metrics.clone(),
    );
    let applied = || {
        world
            .metrics
            .consumer_messages_total
            .with_label_values(&["test-effects", "applied"])
            .get()
    };
    let label = ["test-effects"];

    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    // A first event warms the pool: the outage then breaks live connections, not just new ones.
    publish(&world.js, &world.ns, &call_started("before-outage", ORG, 1)).await?;
    sb_testkit::wait_until(Duration::from_secs(10), "the first event", || async {
        applied() == 1
    })
    .await?;

    proxy.cut();
    publish(&world.js, &world.ns, &call_started("during-outage", ORG, 2)).await?;
    // Three times the ack wait and well past max_deliver's worth of retries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        applied(),
        1,
        "nothing can be applied while Postgres is unreachable"
    );
    assert_eq!(
        world
            .metrics
            .consumer_dead_letters_total
            .with_label_values(&label)
            .get(),
        0,
        "an outage is not the message's fault"
    );

    proxy.restore();
    sb_testkit::wait_until(
        Duration::from_secs(15),
        "the held event after Postgres returns",
        || async { applied() == 2 },
    )
    .await?;
    stop.cancel();
    sb_testkit::within(Duration::from_secs(5), "consumer stop", task).await??;

    assert_eq!(
        world
            .metrics
            .consumer_dead_letters_total
            .with_label_values(&label)
            .get(),
        0
    );
    assert_eq!(
        world
            .metrics
            .consumer_redeliveries_total
            .with_label_values(&label)
            .get(),
        0,
        "the held message kept its delivery: no attempt was spent"
    );
    assert_eq!(effects(&world, "during-outage").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_dead_lettered_event_redelivered_after_a_lost_term_is_not_applied() -> Result {
    let world = World::new().await?;
    publish(&world.js, &world.ns, &call_started("flaky", ORG, 1)).await?;
    let dead_lettered = || {
        world
            .metrics
            .consumer_dead_letters_total
            .with_label_values(&["test-effects"])
            .get()
    };
    run_until(
        Duration::from_secs(20),
        "the flaky message to be dead-lettered after max_deliver attempts",
        |stop| runner(&world, config()).run(stop),
        || async { dead_lettered() == 1 },
    )
    .await?;

    // The Term is lost: JetStream delivers the message a fourth time, when the handler would
    // succeed. The event is in the dead letters already, so it must not be applied as well.
    let runner = runner(&world, config());
    let message = world
        .stream_messages(Domain::Video)
        .await?
        .into_iter()
        .next()
        .ok_or("the stream is empty")?;
    let mut redelivered = runner.envelope(&message)?;
    redelivered.delivered = 4;
    assert_eq!(runner.apply(&redelivered).await?, Applied::Duplicate);
    assert_eq!(effects(&world, "flaky").await?, 0);
    Ok(())
}

#[tokio::test]
async fn inbox_rows_older_than_the_retention_are_pruned_and_newer_ones_kept() -> Result {
    let world = World::new().await?;
    let mut conn = world.db.conn().await?;
    let old = uuid::Uuid::now_v7();
    let recent = uuid::Uuid::now_v7();
    let other_consumer = uuid::Uuid::now_v7();
    let eight_days_ago = chrono::Utc::now() - chrono::Duration::days(8);
    diesel::insert_into(inbox::table)
        .values(vec![
            (
                inbox::consumer.eq("test-effects"),
                inbox::event_id.eq(old),
                inbox::processed_at.eq(eight_days_ago),
            ),
            (
                inbox::consumer.eq("test-effects"),
                inbox::event_id.eq(recent),
                inbox::processed_at.eq(chrono::Utc::now()),
            ),
            (
                inbox::consumer.eq("test-other"),
                inbox::event_id.eq(other_consumer),
                inbox::processed_at.eq(eight_days_ago),
            ),
        ])
        .execute(&mut conn)
        .await?;

    let mut config = config();
    config.inbox_retention = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(runner(&world, config).prune_inbox(100).await?, 1);

    let mut left: Vec<uuid::Uuid> = inbox::table.select(inbox::event_id).load(&mut conn).await?;
    left.sort();
    let mut expected = vec![recent, other_consumer];
    expected.sort();
    assert_eq!(left, expected, "only this consumer's old row goes");
    Ok(())
}
