//! The appointment projector: out-of-order and duplicate CRM events end in the highest version.

mod common;

use std::time::Duration;

use common::World;
use sb_db::models::find_appointment;
use sb_events::consumer::ConsumerRunner;
use sb_events::projector::{AppointmentProjector, consumer_config};
use sb_events::proto::*;
use sb_events::publish::publish;
use sb_testkit::{Result, run_until};
use uuid::Uuid;

fn appointment(id: Uuid, org: Uuid, version: i64, status: AppointmentStatus) -> Appointment {
    Appointment {
        id: id.to_string(),
        org_id: org.to_string(),
        host_user_id: Uuid::from_u128(0xaa).to_string(),
        guest_user_id: String::new(),
        setter_user_id: Uuid::from_u128(0xbb).to_string(),
        team_id: Uuid::from_u128(0xf1).to_string(),
        lead: Some(Lead {
            name: format!("Lead v{version}"),
            phone: "+33612345678".into(),
            email: String::new(),
        }),
        scheduled_at_unix_ms: 1_795_000_000_000 + version * 60_000,
        ends_at_unix_ms: 0,
        kind: AppointmentKind::Remote as i32,
        status: status as i32,
        version,
    }
}

#[tokio::test]
async fn out_of_order_and_duplicate_events_leave_the_highest_version() -> Result {
    let world = World::new().await?;
    let org = Uuid::now_v7();
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let js = &world.js;
    let ns = &world.ns;
    // First appointment: created, then v3 overtakes v2, and v3 comes again under a new event id.
    publish(
        js,
        ns,
        &AppointmentCreated {
            appointment: Some(appointment(first, org, 1, AppointmentStatus::Scheduled)),
        },
    )
    .await?;
    publish(
        js,
        ns,
        &AppointmentUpdated {
            appointment: Some(appointment(first, org, 3, AppointmentStatus::Confirmed)),
        },
    )
    .await?;
    publish(
        js,
        ns,
        &AppointmentUpdated {
            appointment: Some(appointment(first, org, 2, AppointmentStatus::Scheduled)),
        },
    )
    .await?;
    publish(
        js,
        ns,
        &AppointmentUpdated {
            appointment: Some(appointment(first, org, 3, AppointmentStatus::Confirmed)),
        },
    )
    .await?;
    // Second appointment: the cancellation arrives before the creation.
    publish(
        js,
        ns,
        &AppointmentCancelled {
            appointment: Some(appointment(second, org, 5, AppointmentStatus::Scheduled)),
            reason: "lead cancelled".into(),
        },
    )
    .await?;
    publish(
        js,
        ns,
        &AppointmentCreated {
            appointment: Some(appointment(second, org, 1, AppointmentStatus::Scheduled)),
        },
    )
    .await?;

    let runner = ConsumerRunner::new(
        consumer_config("video"),
        world.db.pool(),
        js.clone(),
        ns.clone(),
        AppointmentProjector,
        world.metrics.clone(),
    );
    run_until(
        Duration::from_secs(15),
        "all six events to be applied",
        |stop| runner.run(stop),
        || async {
            world
                .metrics
                .consumer_messages_total
                .with_label_values(&["video-appointments", "applied"])
                .get()
                == 6
        },
    )
    .await?;

    let mut conn = world.db.conn().await?;
    let a = find_appointment(&mut conn, org, first)
        .await?
        .ok_or("first appointment missing")?;
    assert_eq!((a.version, a.status.as_str()), (3, "confirmed"));
    assert_eq!(a.lead().name.as_deref(), Some("Lead v3"));
    assert_eq!(a.team_id, Some(Uuid::from_u128(0xf1)));
    let b = find_appointment(&mut conn, org, second)
        .await?
        .ok_or("second appointment missing")?;
    assert_eq!(
        (b.version, b.status.as_str()),
        (5, "cancelled"),
        "a cancellation marks the appointment cancelled"
    );
    Ok(())
}

#[tokio::test]
async fn an_invalid_appointment_is_dead_lettered_not_retried() -> Result {
    let world = World::new().await?;
    let mut broken = appointment(
        Uuid::now_v7(),
        Uuid::now_v7(),
        1,
        AppointmentStatus::Scheduled,
    );
    broken.host_user_id = "not-a-uuid".into();
    publish(
        &world.js,
        &world.ns,
        &AppointmentCreated {
            appointment: Some(broken),
        },
    )
    .await?;
    let runner = ConsumerRunner::new(
        consumer_config("video"),
        world.db.pool(),
        world.js.clone(),
        world.ns.clone(),
        AppointmentProjector,
        world.metrics.clone(),
    );
    run_until(
        Duration::from_secs(10),
        "the invalid event to be dead-lettered",
        |stop| runner.run(stop),
        || async {
            world
                .metrics
                .consumer_dead_letters_total
                .with_label_values(&["video-appointments"])
                .get()
                == 1
        },
    )
    .await?;
    assert_eq!(
        world
            .metrics
            .consumer_messages_total
            .with_label_values(&["video-appointments", "retried"])
            .get(),
        0
    );
    Ok(())
}
