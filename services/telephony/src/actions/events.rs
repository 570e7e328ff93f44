//! The events the service announces, written to the outbox inside the caller's transaction.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use sb_events::outbox::Outbox;
use sb_events::proto::{
    CallQualityDegraded, PhoneCallCompleted, PhoneCallIncoming, PhoneCallStatus,
    PhoneCallStatusChanged, VoicemailReceived,
};

use crate::domain::quality::Metrics;
use crate::domain::status::CallStatus;
use crate::error::TelephonyError;
use crate::store::calls::Call;
use crate::store::recordings::Recording;

fn ms(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or(0, |t| t.timestamp_millis())
}

fn opt_id(id: Option<uuid::Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// `sb.telephony.call.incoming`: a call reached one of the org's numbers (push consumers ring
/// the owner's phone with it).
pub async fn incoming(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
) -> Result<(), TelephonyError> {
    outbox
        .enqueue(
            conn,
            &PhoneCallIncoming {
                call_id: call.id.to_string(),
                org_id: call.org_id.to_string(),
                call_sid: call.call_sid.clone().unwrap_or_default(),
                from_number: call.from_number.clone(),
                to_number: call.to_number.clone(),
                user_id: opt_id(call.user_id),
                received_at_unix_ms: call.created_at.timestamp_millis(),
            },
        )
        .await?;
    Ok(())
}

/// `sb.telephony.call.status_changed` of `call`: it moved forward (`previous` is `None` for a
/// new call).
pub fn status_changed_event(
    call: &Call,
    previous: Option<CallStatus>,
    at: DateTime<Utc>,
) -> PhoneCallStatusChanged {
    PhoneCallStatusChanged {
        call_id: call.id.to_string(),
        org_id: call.org_id.to_string(),
        call_sid: call.call_sid.clone().unwrap_or_default(),
        user_id: opt_id(call.user_id),
        direction: call.direction.to_proto() as i32,
        previous_status: previous.map_or(PhoneCallStatus::Unspecified, CallStatus::to_proto) as i32,
        status: call.status.to_proto() as i32,
        changed_at_unix_ms: at.timestamp_millis(),
    }
}

/// `sb.telephony.call.completed` of `call`: it reached a terminal status.
pub fn completed_event(call: &Call) -> PhoneCallCompleted {
    PhoneCallCompleted {
        call_id: call.id.to_string(),
        org_id: call.org_id.to_string(),
        call_sid: call.call_sid.clone().unwrap_or_default(),
        user_id: opt_id(call.user_id),
        direction: call.direction.to_proto() as i32,
        status: call.status.to_proto() as i32,
        duration_seconds: i64::from(call.duration_seconds.unwrap_or(0)),
        started_at_unix_ms: ms(call.answered_at),
        ended_at_unix_ms: ms(call.ended_at),
        appointment_id: opt_id(call.appointment_id),
        price: call.price.clone().unwrap_or_default(),
        price_unit: call.price_unit.clone().unwrap_or_default(),
    }
}

/// `sb.telephony.call.status_changed`: the call moved forward (`previous` is `None` for a new call).
pub async fn status_changed(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    previous: Option<CallStatus>,
    at: DateTime<Utc>,
) -> Result<(), TelephonyError> {
    outbox
        .enqueue(conn, &status_changed_event(call, previous, at))
        .await?;
    Ok(())
}

/// `sb.telephony.voicemail.received`.
pub async fn voicemail(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    recording: &Recording,
) -> Result<(), TelephonyError> {
    outbox
        .enqueue(
            conn,
            &VoicemailReceived {
                voicemail_id: recording.id.to_string(),
                call_id: call.id.to_string(),
                org_id: call.org_id.to_string(),
                user_id: opt_id(call.user_id),
                from_number: call.from_number.clone(),
                recording_sid: recording.recording_sid.clone(),
                duration_seconds: i64::from(recording.duration_seconds.unwrap_or(0)),
                received_at_unix_ms: recording.updated_at.timestamp_millis(),
            },
        )
        .await?;
    Ok(())
}

/// `sb.telephony.quality.degraded`.
pub async fn degraded(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    call: &Call,
    metrics: &Metrics,
    at: DateTime<Utc>,
) -> Result<(), TelephonyError> {
    outbox
        .enqueue(
            conn,
            &CallQualityDegraded {
                call_id: call.id.to_string(),
                org_id: call.org_id.to_string(),
                call_sid: call.call_sid.clone().unwrap_or_default(),
                user_id: opt_id(call.user_id),
                mos: metrics.mos.unwrap_or(0.0),
                rtt_ms: metrics.latency_ms.unwrap_or(0.0),
                jitter_ms: metrics.jitter_ms.unwrap_or(0.0),
                packet_loss_percent: metrics.packet_loss_percent.unwrap_or(0.0),
                measured_at_unix_ms: at.timestamp_millis(),
            },
        )
        .await?;
    Ok(())
}
