//! The testkit's own promises: per-test databases and NATS prefixes do not collide, and are cleaned.

use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use sb_testkit::{Result, TestDb, TestNats, within};

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

#[tokio::test]
async fn dropped_test_databases_are_removed() -> Result {
    let name = {
        let db = TestDb::new().await?;
        db.name().to_owned()
    };
    let mut admin: diesel_async::AsyncPgConnection =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
            &sb_testkit::admin_url()?,
        )
        .await?;
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result::<Exists>(&mut admin)
            .await?;
    assert!(!row.exists, "{name} still exists");
    Ok(())
}

#[tokio::test]
async fn nats_prefixes_are_unique_and_streams_are_cleaned() -> Result {
    let (a, b) = (TestNats::new().await?, TestNats::new().await?);
    assert_ne!(a.prefix(), b.prefix());
    let stream = a.stream_name("SB_VIDEO");
    let js = a.jetstream();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![a.subject("sb.video.>")],
        ..Default::default()
    })
    .await?;
    // b does not see a's messages.
    let mut b_sub = b.client.subscribe(b.subject("sb.video.>")).await?;
    js.publish(a.subject("sb.video.call.started"), "x".into())
        .await?
        .await?;
    use futures_util::StreamExt;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b_sub.next())
            .await
            .is_err()
    );
    drop(a);
    let checker = b.jetstream();
    let gone = within(
        Duration::from_secs(5),
        "stream lookup",
        checker.get_stream(&stream),
    )
    .await?;
    assert!(
        gone.is_err(),
        "stream {stream} should have been deleted with its TestNats"
    );
    Ok(())
}
