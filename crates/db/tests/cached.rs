//! `.cached()`: statements diesel will not cache by type are prepared once per connection and
//! SQL text, and each SQL text keeps its own statement.

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::models::{NewAppointment, upsert_appointment};
use sb_db::schema::appointments as a;
use sb_testkit::{Result, TestDb};
use serde_json::json;
use uuid::Uuid;

/// Named statements this session has prepared whose text starts like `prefix`.
async fn prepared(conn: &mut AsyncPgConnection, prefix: &str) -> Result<i64> {
    Ok(diesel::select(
        diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE ",
        )
        .bind::<diesel::sql_types::Text, _>(format!("{prefix}%"))
        .sql(")"),
    )
    .get_result(conn)
    .await?)
}

async fn appointment(conn: &mut AsyncPgConnection) -> Result<Uuid> {
    let id = Uuid::now_v7();
    upsert_appointment(
        conn,
        &NewAppointment {
            id,
            org_id: Uuid::now_v7(),
            host_user_id: Uuid::now_v7(),
            guest_user_id: None,
            setter_user_id: None,
            team_id: None,
            lead: json!({}),
            scheduled_at: Utc::now(),
            ends_at: None,
            kind: sb_db::models::AppointmentKind::Remote,
            status: sb_db::models::AppointmentStatus::Scheduled,
            version: 1,
        },
    )
    .await?;
    Ok(id)
}

/// One changeset type, two SQL texts: `ends_at` is set only when given.
async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    ends_at: Option<DateTime<Utc>>,
    cached: bool,
) -> Result<usize> {
    let statement = diesel::update(a::table.find(id)).set((
        a::status.eq(status.to_owned()),
        ends_at.map(|at| a::ends_at.eq(at)),
    ));
    Ok(if cached {
        statement.cached().execute(conn).await?
    } else {
        statement.execute(conn).await?
    })
}

async fn stored(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(String, Option<DateTime<Utc>>)> {
    Ok(a::table
        .find(id)
        .select((a::status, a::ends_at))
        .first(conn)
        .await?)
}

#[tokio::test]
async fn a_cached_update_is_prepared_once_per_sql_text_and_each_text_writes_its_own_columns()
-> Result {
    let db = TestDb::new().await?;
    let mut conn = db.conn().await?;
    let (one, two) = (appointment(&mut conn).await?, appointment(&mut conn).await?);
    let prefix = r#"UPDATE "appointments""#;

    // diesel alone: prepared for the run, then closed.
    update(&mut conn, one, "confirmed", None, false).await?;
    update(&mut conn, two, "confirmed", None, false).await?;
    assert_eq!(prepared(&mut conn, prefix).await?, 0);

    // Cached: one statement for both rows.
    update(&mut conn, one, "confirmed", None, true).await?;
    update(&mut conn, two, "no_show", None, true).await?;
    assert_eq!(prepared(&mut conn, prefix).await?, 1);

    // The same type with `ends_at` given is another SQL text: its own statement, its own columns.
    // Postgres keeps microseconds.
    let ends = (Utc::now() + Duration::hours(1)).duration_trunc(Duration::microseconds(1))?;
    update(&mut conn, one, "completed", Some(ends), true).await?;
    update(&mut conn, two, "no_show", None, true).await?;
    assert_eq!(prepared(&mut conn, prefix).await?, 2);
    assert_eq!(
        stored(&mut conn, one).await?,
        ("completed".to_owned(), Some(ends))
    );
    assert_eq!(stored(&mut conn, two).await?, ("no_show".to_owned(), None));
    Ok(())
}
