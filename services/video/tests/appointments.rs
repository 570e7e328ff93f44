//! The video service projects CRM appointments itself (durable `video-appointments`): a created
//! appointment becomes joinable, a cancelled one cancels a call nobody joined.

mod common;

use std::time::Duration;

use common::{TestVideo, User};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sb_auth::Role;
use sb_events::Namespace;
use sb_events::proto::{Appointment, AppointmentCancelled, AppointmentCreated, AppointmentStatus};
use sb_testkit::{Result, TestAppointment, wait_until};
use serde_json::json;
use uuid::Uuid;

fn appointment(
    id: Uuid,
    org: Uuid,
    host: Uuid,
    version: i64,
    status: AppointmentStatus,
) -> Appointment {
    TestAppointment {
        id,
        ..TestAppointment::new(org, host)
    }
    .crm(version, status)
}

#[tokio::test]
async fn crm_events_make_appointments_joinable_and_cancel_unjoined_calls() -> Result {
    let video = TestVideo::spawn().await?;
    let js = video.nats.jetstream();
    let ns = Namespace::prefixed(video.nats.prefix());
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let (joinable, cancelled) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [joinable, cancelled] {
        sb_events::publish::publish(
            &js,
            &ns,
            &AppointmentCreated {
                appointment: Some(appointment(
                    id,
                    org,
                    closer.id,
                    1,
                    AppointmentStatus::Scheduled,
                )),
            },
        )
        .await?;
    }
    // Projected by the service's own consumer: the join works once it is there.
    let path = format!("/calls/appointments/{joinable}/join");
    wait_until(
        Duration::from_secs(10),
        "the appointment to be projected",
        || async {
            matches!(
                video.post_json(&closer, &path, json!({})).await,
                Ok((200, _))
            )
        },
    )
    .await?;

    // A call created for the other appointment, that nobody joined yet.
    {
        use sb_db::schema::video_calls;
        let mut conn = video.db.conn().await?;
        wait_until(
            Duration::from_secs(10),
            "the second appointment",
            || async {
                let Ok(mut conn) = video.db.conn().await else {
                    return false;
                };
                matches!(
                    sb_db::models::find_appointment(&mut conn, org, cancelled).await,
                    Ok(Some(_))
                )
            },
        )
        .await?;
        diesel::insert_into(video_calls::table)
            .values((
                video_calls::id.eq(Uuid::now_v7()),
                video_calls::org_id.eq(org),
                video_calls::appointment_id.eq(cancelled),
                video_calls::room_name.eq(format!("org_{org}_apt_{cancelled}")),
            ))
            .execute(&mut conn)
            .await?;
    }
    sb_events::publish::publish(
        &js,
        &ns,
        &AppointmentCancelled {
            appointment: Some(appointment(
                cancelled,
                org,
                closer.id,
                2,
                AppointmentStatus::Cancelled,
            )),
            reason: "lead asked".into(),
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(10),
        "the call to be cancelled",
        || async {
            let Ok(mut conn) = video.db.conn().await else {
                return false;
            };
            use sb_db::schema::video_calls;
            video_calls::table
                .filter(video_calls::appointment_id.eq(cancelled))
                .select(video_calls::status)
                .first::<String>(&mut conn)
                .await
                .is_ok_and(|s| s == "CANCELLED")
        },
    )
    .await?;
    let (status, body) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{cancelled}/join"),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("appointment_cancelled"))
    );
    Ok(())
}

#[tokio::test]
async fn call_events_reach_jetstream_through_the_outbox_relay() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let closer = User::new(org, Role::Closer);
    let apt = TestAppointment::new(org, closer.id);
    video.appointment(&apt).await?;
    let (status, joined) = video
        .post_json(
            &closer,
            &format!("/calls/appointments/{}/join", apt.id),
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");
    let event: sb_events::proto::VideoCallStarted = video.nats.published().await?;
    assert_eq!(event.call_id, joined["callId"].as_str().unwrap_or_default());
    assert_eq!(event.org_id, org.to_string());
    assert_eq!(event.appointment_id, apt.id.to_string());
    Ok(())
}
