//! The shared queries on the shared tables, against a real database.

use chrono::{Duration, Utc};
use sb_db::models::{
    AppointmentKind, AppointmentStatus, NewAppointment, find_appointment, find_appointment_any_org,
    record_webhook_once, upsert_appointment,
};
use sb_testkit::{Result, TestDb};
use serde_json::json;
use uuid::Uuid;

fn appointment(id: Uuid, org: Uuid, version: i64, status: AppointmentStatus) -> NewAppointment {
    NewAppointment {
        id,
        org_id: org,
        host_user_id: Uuid::now_v7(),
        guest_user_id: None,
        setter_user_id: None,
        team_id: Some(Uuid::now_v7()),
        lead: json!({"name": "Ada Lovelace", "phone": "+33612345678"}),
        scheduled_at: Utc::now() + Duration::hours(1),
        ends_at: None,
        kind: AppointmentKind::Remote,
        status,
        version,
    }
}

#[tokio::test]
async fn appointments_keep_the_highest_version() -> Result {
    let db = TestDb::new().await?;
    let mut conn = db.conn().await?;
    let (id, org) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(
        upsert_appointment(
            &mut conn,
            &appointment(id, org, 2, AppointmentStatus::Confirmed)
        )
        .await?
    );
    assert!(
        !upsert_appointment(
            &mut conn,
            &appointment(id, org, 1, AppointmentStatus::Scheduled)
        )
        .await?,
        "older version ignored"
    );
    assert!(
        !upsert_appointment(
            &mut conn,
            &appointment(id, org, 2, AppointmentStatus::Cancelled)
        )
        .await?,
        "same version ignored"
    );
    let stored = find_appointment(&mut conn, org, id)
        .await?
        .ok_or("missing")?;
    assert_eq!((stored.version, stored.status.as_str()), (2, "confirmed"));
    assert!(
        upsert_appointment(
            &mut conn,
            &appointment(id, org, 3, AppointmentStatus::Cancelled)
        )
        .await?
    );
    let stored = find_appointment(&mut conn, org, id)
        .await?
        .ok_or("missing")?;
    assert_eq!((stored.version, stored.status.as_str()), (3, "cancelled"));
    assert_eq!(stored.lead().name.as_deref(), Some("Ada Lovelace"));
    Ok(())
}

#[tokio::test]
async fn another_orgs_appointment_is_not_found() -> Result {
    let db = TestDb::new().await?;
    let mut conn = db.conn().await?;
    let (id, org) = (Uuid::now_v7(), Uuid::now_v7());
    upsert_appointment(
        &mut conn,
        &appointment(id, org, 1, AppointmentStatus::Scheduled),
    )
    .await?;
    assert!(
        find_appointment(&mut conn, Uuid::now_v7(), id)
            .await?
            .is_none()
    );
    assert!(find_appointment_any_org(&mut conn, id).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn invalid_kind_is_refused_by_the_database() -> Result {
    use diesel_async::RunQueryDsl;
    // The Rust side cannot spell a wrong kind any more (`AppointmentKind`); the CHECK constraint
    // still guards the column against anything else that writes to it.
    let db = TestDb::new().await?;
    let mut conn = db.conn().await?;
    let refused = diesel::sql_query(
        "INSERT INTO appointments (id, org_id, host_user_id, lead, scheduled_at, kind, status, version) \
         VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', now(), 'teleport', 'scheduled', 1)",
    )
    .execute(&mut *conn)
    .await;
    assert!(refused.is_err(), "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn webhooks_are_recorded_once() -> Result {
    let db = TestDb::new().await?;
    let mut conn = db.conn().await?;
    assert!(record_webhook_once(&mut conn, "livekit", "EV_1").await?);
    assert!(!record_webhook_once(&mut conn, "livekit", "EV_1").await?);
    assert!(
        record_webhook_once(&mut conn, "twilio", "EV_1").await?,
        "keys are per provider"
    );
    Ok(())
}

#[tokio::test]
async fn test_databases_are_isolated() -> Result {
    let (a, b) = (TestDb::new().await?, TestDb::new().await?);
    assert_ne!(a.name(), b.name());
    let id = Uuid::now_v7();
    let org = Uuid::now_v7();
    let (mut conn_a, mut conn_b) = (a.conn().await?, b.conn().await?);
    upsert_appointment(
        &mut conn_a,
        &appointment(id, org, 1, AppointmentStatus::Scheduled),
    )
    .await?;
    assert!(find_appointment(&mut conn_b, org, id).await?.is_none());
    Ok(())
}
