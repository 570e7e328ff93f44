//! The per-thread pools behind `DbPool`: on a single-threaded runtime (an actix worker) each
//! `DbPool` gets connections of its own database, and one built after another was dropped never
//! inherits the dropped one's pool.

use diesel_async::RunQueryDsl;
use sb_testkit::{Result, TestDb};

async fn database_of(pool: &sb_db::DbPool) -> Result<String> {
    let mut conn = pool.get().await?;
    Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_database()",
    ))
    .get_result(&mut conn)
    .await?)
}

#[tokio::test(flavor = "current_thread")]
async fn each_pool_on_a_worker_thread_reaches_its_own_database() -> Result {
    let (a, b) = (TestDb::new().await?, TestDb::new().await?);
    let pool_a = sb_db::build_pool(&a.config())?;
    let pool_b = sb_db::build_pool(&b.config())?;
    assert_eq!(database_of(&pool_a).await?, a.name());
    assert_eq!(database_of(&pool_b).await?, b.name());
    // A pool built after one is dropped, many times over on this thread.
    drop(pool_a);
    for _ in 0..20 {
        let pool = sb_db::build_pool(&b.config())?;
        assert_eq!(database_of(&pool).await?, b.name());
        drop(pool);
        let pool = sb_db::build_pool(&a.config())?;
        assert_eq!(database_of(&pool).await?, a.name());
    }
    drop(pool_b);
    Ok(())
}
