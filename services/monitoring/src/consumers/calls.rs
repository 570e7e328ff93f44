//! Which reps are on a call: `sb.video.participant.*` (durable `monitoring-video`) and
//! `sb.telephony.call.*` (durable `monitoring-telephony`; NATS 2.9 allows one filter per
//! consumer). Each event is a fact about one call; a rep is on a call while one has started and
//! not ended, whatever order the facts arrive in. A video call's LiveKit room is kept so a
//! session can join it; when the rep's call ends, the sessions inside it stop.
//! `sb.telephony.supervision.failed` (durable `monitoring-supervision`): telephony could not
//! bring a supervisor into a phone call's conference (or move them in it), so the session stops.

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_events::consumer::{ConsumerConfig, Handler, HandlerError};
use sb_events::proto::{
    PhoneCallCompleted, PhoneCallStatus, PhoneCallStatusChanged, PhoneSupervisionFailed,
    VideoParticipantJoined, VideoParticipantLeft,
};
use sb_events::{Domain, EventEnvelope};
use uuid::Uuid;

use crate::actions::{presence, sessions};
use crate::domain::{PHONE_CALL, TargetKind, VIDEO_CALL};
use crate::state::AppState;
use crate::store::reps;
use crate::store::sessions as session_store;

pub fn video_consumer() -> ConsumerConfig {
    ConsumerConfig::new(
        crate::SERVICE,
        "video",
        Domain::Video,
        "sb.video.participant.>",
    )
}

pub fn telephony_consumer() -> ConsumerConfig {
    ConsumerConfig::new(
        crate::SERVICE,
        "telephony",
        Domain::Telephony,
        "sb.telephony.call.>",
    )
}

pub fn supervision_consumer() -> ConsumerConfig {
    ConsumerConfig::new(
        crate::SERVICE,
        "supervision",
        Domain::Telephony,
        "sb.telephony.supervision.>",
    )
}

/// The stop reason of a session telephony could not serve (a known reason, or a generic one:
/// the reason is stored and shown, so it is not taken as is from the event).
fn failure_reason(reason: &str) -> &'static str {
    match reason {
        "call_not_live" => "phone_call_not_live",
        "invalid_target" => "phone_invalid_target",
        "provider_rejected" => "phone_provider_rejected",
        _ => "phone_failed",
    }
}

/// Stops the session telephony reports it could not serve (audited, announced); telephony
/// removes whatever it had set up on the stopped event.
async fn supervision_failed(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    event: &EventEnvelope,
) -> Result<(), HandlerError> {
    let e = event
        .decode::<PhoneSupervisionFailed>()
        .map_err(HandlerError::permanent)?;
    let (Some(id), Some(org)) = (uuid(&e.session_id), uuid(&e.org_id)) else {
        return Ok(());
    };
    let Some(session) = session_store::find(conn, id).await? else {
        return Ok(());
    };
    // Another org's session is not telephony's to stop; a side room or video session neither.
    if session.org_id != org || session.target != TargetKind::PhoneCall {
        return Ok(());
    }
    let session = session_store::lock(conn, id).await?;
    sessions::stop_in(
        conn,
        &state.outbox,
        &session,
        None,
        failure_reason(&e.reason),
        None,
    )
    .await
    .map_err(HandlerError::retry)?;
    presence::refresh(conn, &state.outbox, session.rep_id)
        .await
        .map_err(HandlerError::retry)?;
    Ok(())
}

fn time(unix_ms: i64) -> Option<DateTime<Utc>> {
    (unix_ms > 0)
        .then(|| Utc.timestamp_millis_opt(unix_ms).single())
        .flatten()
}

fn uuid(value: &str) -> Option<Uuid> {
    Uuid::parse_str(value).ok()
}

/// A call fact: (rep, org, kind, call, started, ended, LiveKit room of a video call).
type Fact = (
    Uuid,
    Uuid,
    &'static str,
    Uuid,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

fn fact(event: &EventEnvelope) -> Result<Option<Fact>, HandlerError> {
    let permanent = HandlerError::permanent;
    if event.is::<VideoParticipantJoined>() {
        let e = event
            .decode::<VideoParticipantJoined>()
            .map_err(permanent)?;
        return Ok(uuid(&e.user_id)
            .zip(uuid(&e.org_id))
            .zip(uuid(&e.call_id))
            .map(|((rep, org), call)| {
                (
                    rep,
                    org,
                    VIDEO_CALL,
                    call,
                    time(e.joined_at_unix_ms).or(Some(Utc::now())),
                    None,
                    Some(e.room_name.clone()).filter(|room| !room.is_empty()),
                )
            }));
    }
    if event.is::<VideoParticipantLeft>() {
        let e = event.decode::<VideoParticipantLeft>().map_err(permanent)?;
        return Ok(uuid(&e.user_id)
            .zip(uuid(&e.org_id))
            .zip(uuid(&e.call_id))
            .map(|((rep, org), call)| {
                (
                    rep,
                    org,
                    VIDEO_CALL,
                    call,
                    None,
                    time(e.left_at_unix_ms).or(Some(Utc::now())),
                    Some(e.room_name.clone()).filter(|room| !room.is_empty()),
                )
            }));
    }
    if event.is::<PhoneCallStatusChanged>() {
        let e = event
            .decode::<PhoneCallStatusChanged>()
            .map_err(permanent)?;
        let at = time(e.changed_at_unix_ms).or(Some(Utc::now()));
        let (started, ended) = match PhoneCallStatus::try_from(e.status) {
            Ok(PhoneCallStatus::InProgress) => (at, None),
            Ok(
                PhoneCallStatus::Completed
                | PhoneCallStatus::Busy
                | PhoneCallStatus::NoAnswer
                | PhoneCallStatus::Failed
                | PhoneCallStatus::Canceled,
            ) => (None, at),
            _ => return Ok(None),
        };
        return Ok(uuid(&e.user_id)
            .zip(uuid(&e.org_id))
            .zip(uuid(&e.call_id))
            .map(|((rep, org), call)| (rep, org, PHONE_CALL, call, started, ended, None)));
    }
    if event.is::<PhoneCallCompleted>() {
        let e = event.decode::<PhoneCallCompleted>().map_err(permanent)?;
        return Ok(uuid(&e.user_id)
            .zip(uuid(&e.org_id))
            .zip(uuid(&e.call_id))
            .map(|((rep, org), call)| {
                (
                    rep,
                    org,
                    PHONE_CALL,
                    call,
                    time(e.started_at_unix_ms),
                    time(e.ended_at_unix_ms).or(Some(Utc::now())),
                    None,
                )
            }));
    }
    Ok(None)
}

pub struct RepCalls {
    pub state: AppState,
}

impl Handler for RepCalls {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            if event.is::<PhoneSupervisionFailed>() {
                return supervision_failed(conn, &self.state, event).await;
            }
            let Some((rep, org, kind, call, started, ended, room)) = fact(event)? else {
                return Ok(());
            };
            let outbox = &self.state.outbox;
            reps::record_call(
                conn,
                &reps::CallFact {
                    rep_id: rep,
                    org_id: org,
                    kind,
                    call_id: call,
                    started_at: started,
                    ended_at: ended,
                    room_name: room.as_deref(),
                },
            )
            .await?;
            let mut stopped = Vec::new();
            if ended.is_some() && !reps::call_open(conn, rep, kind, call).await? {
                // The rep's call ended (or they left it): nothing left to supervise there.
                for session in session_store::open_in_call(conn, rep, call).await? {
                    if sessions::stop_in(conn, outbox, &session, None, "call_ended", None)
                        .await
                        .map_err(HandlerError::retry)?
                    {
                        stopped.push(session);
                    }
                }
            }
            presence::refresh(conn, outbox, rep)
                .await
                .map_err(HandlerError::retry)?;
            // Best effort, like every stop: a supervisor left in the call's room is removed
            // by the reconciliation job.
            for session in &stopped {
                sessions::disconnect(&self.state, session).await;
            }
            Ok(())
        }
        .boxed()
    }
}
