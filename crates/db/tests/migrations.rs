//! The embedded migrations against a real PostgreSQL: up, down, up; and concurrent migrators.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use sb_testkit::{Result, TestDb};

#[derive(diesel::QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    table_name: String,
}

async fn tables(db: &TestDb) -> Result<Vec<String>> {
    let mut conn = db.conn().await?;
    let rows: Vec<Table> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' ORDER BY 1",
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|t| t.table_name).collect())
}

#[tokio::test]
async fn all_migrations_run_up_down_up() -> Result {
    let db = TestDb::empty().await?;
    let config = db.config();
    let applied = sb_db::migrate::run_pending(&config).await?;
    assert!(!applied.is_empty());
    let after_up = tables(&db).await?;
    for table in ["appointments", "inbox", "outbox", "webhook_receipts"] {
        assert!(
            after_up.contains(&table.to_owned()),
            "{table} missing from {after_up:?}"
        );
    }

    let reverted = sb_db::migrate::revert_all(&config).await?;
    assert_eq!(reverted.len(), applied.len());
    assert_eq!(
        tables(&db).await?,
        Vec::<String>::new(),
        "down.sql leaves nothing behind"
    );

    let reapplied = sb_db::migrate::run_pending(&config).await?;
    assert_eq!(reapplied, applied);
    assert_eq!(tables(&db).await?, after_up);
    assert!(sb_db::migrate::pending(&config).await?.is_empty());
    assert!(
        sb_db::migrate::run_pending(&config).await?.is_empty(),
        "second run is a no-op"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_migrators_both_succeed_and_apply_once() -> Result {
    let db = TestDb::empty().await?;
    let config = db.config();
    let (a, b, c) = tokio::join!(
        sb_db::migrate::run_pending(&config),
        sb_db::migrate::run_pending(&config),
        sb_db::migrate::run_pending(&config),
    );
    let mut applied = [a?, b?, c?];
    applied.sort_by_key(Vec::len);
    let migrations_on_disk =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))?
            .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
            .count();
    assert_eq!(
        applied.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![0, 0, migrations_on_disk],
        "exactly one migrator applied everything, the others found nothing to do"
    );
    assert!(sb_db::migrate::pending(&config).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn unreachable_database_fails_with_a_clear_message() -> Result {
    let config = sb_db::DatabaseConfig::with_url("postgres://postgres:pw@127.0.0.1:1/nowhere");
    let error = sb_db::migrate::run_pending(&config)
        .await
        .err()
        .ok_or("expected an error")?;
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains(":pw@"), "password leaked: {message}");
    let error = sb_db::ensure_database_exists(&config)
        .await
        .err()
        .ok_or("expected an error")?;
    assert!(error.to_string().contains("pg_ctlcluster"), "{error}");
    Ok(())
}

#[tokio::test]
async fn migrate_on_start_applies_only_when_asked() -> Result {
    let db = TestDb::empty().await?;
    let mut config = db.config();
    sb_db::prepare(&config).await?;
    assert!(
        tables(&db).await?.is_empty(),
        "MIGRATE_ON_START unset: nothing applied"
    );
    config.migrate_on_start = true;
    let pool = sb_db::prepare(&config).await?;
    assert!(tables(&db).await?.contains(&"outbox".to_owned()));
    drop(pool.get().await?);
    Ok(())
}
