//! Supervision of a phone call: the monitoring service owns the sessions and
//! announces them (`sb.monitoring.session.started|mode_changed|stopped` with a PHONE_CALL
//! target); telephony brings the supervisor into the call's conference with the Participants
//! API: listen (muted), coach (`Coaching` + `CallSidToCoach` = the rep's leg: only the rep hears
//! them), barge (unmuted). Runs inside the consumer's transaction (the inbox row commits with
//! it), one event at a time per session (its row is locked), and in order: a mode change older
//! than the last applied is skipped, a stop before its start leaves a tombstone the start then
//! respects. Twilio is asked inside the transaction: when it is busy the event is retried by
//! the consumer (nothing committed), and the supervisor's leg carries the label
//! `supervisor_<session>`, so a start applied again after a crash finds the leg it added
//! instead of ringing the supervisor twice. What cannot be applied (the call is not live in a
//! conference, Twilio refuses) is recorded and announced as `sb.telephony.supervision.failed`.

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::AsyncPgConnection;
use sb_events::EventEnvelope;
use sb_events::consumer::HandlerError;
use sb_events::proto::{
    MonitoringMode, MonitoringSessionModeChanged, MonitoringSessionStarted,
    MonitoringSessionStopped, MonitoringSessionTarget, MonitoringTarget, PhoneSupervisionFailed,
};
use uuid::Uuid;

use crate::actions::conference;
use crate::domain::phone::{self, E164};
use crate::state::{AppState, Resend};
use crate::store::calls::{self, Call};
use crate::store::conferences::{self as conf, NewSupervision};
use sb_twilio::{NewParticipant, ParticipantChanges, TwilioError};

/// How long a supervisor's phone or app rings before Twilio gives up.
const SUPERVISOR_RING_SECONDS: u32 = 30;

fn time(unix_ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(unix_ms)
        .single()
        .filter(|_| unix_ms > 0)
        .unwrap_or_else(Utc::now)
}

fn mode_name(mode: i32) -> &'static str {
    match MonitoringMode::try_from(mode) {
        Ok(MonitoringMode::Coach) => "coach",
        Ok(MonitoringMode::Barge) => "barge",
        _ => "listen",
    }
}

/// The participant settings of `mode`; `rep` is the leg a coach speaks to.
fn changes(mode: &str, rep: &str) -> ParticipantChanges {
    ParticipantChanges {
        muted: mode == "listen",
        coaching: mode == "coach",
        call_sid_to_coach: (mode == "coach").then(|| rep.to_owned()),
    }
}

fn label(session: Uuid) -> String {
    format!("supervisor_{}", session.simple())
}

/// Where Twilio rings the supervisor: their app (`client:u_<32 hex>`, telephony's identity of
/// the user) or an E.164 number; anything else is refused.
fn supervisor_to(address: &str) -> Option<String> {
    if address.starts_with("client:") {
        return phone::user_of_client(address)
            .map(|user| format!("client:{}", phone::client_identity(user)));
    }
    E164::parse(address).ok().map(E164::into_inner)
}

fn phone_target(target: Option<&MonitoringSessionTarget>) -> Option<&MonitoringSessionTarget> {
    target.filter(|t| t.kind == MonitoringTarget::PhoneCall as i32)
}

fn retry(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::retry(error.to_string())
}

/// The fields every session event carries.
struct Session<'a> {
    id: Uuid,
    org: Uuid,
    supervisor: Option<Uuid>,
    rep: &'a str,
    supervisor_raw: &'a str,
    target: &'a MonitoringSessionTarget,
}

impl Session<'_> {
    fn call_id(&self) -> Option<Uuid> {
        Uuid::try_parse(&self.target.call_id).ok()
    }
}

/// A refusal: why, Twilio's code.
struct Refusal {
    status: &'static str,
    reason: &'static str,
    twilio_code: i64,
}

impl Refusal {
    fn not_live() -> Self {
        Self {
            status: conf::REFUSED,
            reason: "call_not_live",
            twilio_code: 0,
        }
    }

    fn invalid() -> Self {
        Self {
            status: conf::REFUSED,
            reason: "invalid_target",
            twilio_code: 0,
        }
    }

    fn twilio(error: &TwilioError) -> Self {
        Self {
            status: "failed",
            reason: "provider_rejected",
            twilio_code: error.code().unwrap_or_default(),
        }
    }
}

/// Applies one `sb.monitoring.session.*` event; other events and other targets are not ours.
pub async fn apply(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    event: &EventEnvelope,
) -> Result<&'static str, HandlerError> {
    let permanent = HandlerError::permanent;
    if event.is::<MonitoringSessionStarted>() {
        let e = event
            .decode::<MonitoringSessionStarted>()
            .map_err(permanent)?;
        let Some(session) = session(
            &e.session_id,
            &e.org_id,
            &e.supervisor_user_id,
            &e.rep_user_id,
            e.target.as_ref(),
        ) else {
            return Ok("ignored");
        };
        return started(
            state,
            conn,
            &session,
            mode_name(e.mode),
            time(e.started_at_unix_ms),
        )
        .await;
    }
    if event.is::<MonitoringSessionModeChanged>() {
        let e = event
            .decode::<MonitoringSessionModeChanged>()
            .map_err(permanent)?;
        let Some(session) = session(
            &e.session_id,
            &e.org_id,
            &e.supervisor_user_id,
            &e.rep_user_id,
            e.target.as_ref(),
        ) else {
            return Ok("ignored");
        };
        return mode_changed(
            state,
            conn,
            &session,
            mode_name(e.mode),
            time(e.changed_at_unix_ms),
        )
        .await;
    }
    if event.is::<MonitoringSessionStopped>() {
        let e = event
            .decode::<MonitoringSessionStopped>()
            .map_err(permanent)?;
        let Some(session) = session(
            &e.session_id,
            &e.org_id,
            &e.supervisor_user_id,
            &e.rep_user_id,
            e.target.as_ref(),
        ) else {
            return Ok("ignored");
        };
        return stopped(state, conn, &session, time(e.stopped_at_unix_ms)).await;
    }
    Ok("ignored")
}

fn session<'a>(
    id: &str,
    org: &str,
    supervisor: &'a str,
    rep: &'a str,
    target: Option<&'a MonitoringSessionTarget>,
) -> Option<Session<'a>> {
    let target = phone_target(target)?;
    Some(Session {
        id: Uuid::try_parse(id).ok()?,
        org: Uuid::try_parse(org).ok()?,
        supervisor: Uuid::try_parse(supervisor).ok(),
        rep,
        supervisor_raw: supervisor,
        target,
    })
}

/// The call of the session in its org, with its conference SID and the rep's leg, when it is
/// live in its conference.
async fn live_call(
    conn: &mut AsyncPgConnection,
    session: &Session<'_>,
) -> Result<Option<(Call, String, String)>, HandlerError> {
    let Some(call_id) = session.call_id() else {
        return Ok(None);
    };
    let Some(call) = calls::find(conn, call_id)
        .await?
        .filter(|c| c.org_id == session.org)
    else {
        return Ok(None);
    };
    if call.status.is_final() {
        return Ok(None);
    }
    let Some(conference) = conf::find(conn, call.id).await? else {
        return Ok(None);
    };
    let Some(conference_sid) = conference
        .conference_sid
        .filter(|_| conference.status == conf::LIVE)
    else {
        return Ok(None);
    };
    let rep = conf::participants(conn, call.id)
        .await?
        .into_iter()
        .find(|p| p.role == conf::REP && p.status == conf::JOINED)
        .map(|p| p.call_sid);
    let Some(rep) = rep else {
        return Ok(None);
    };
    Ok(Some((call, conference_sid, rep)))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the session, what was asked and why it was refused"
)]
async fn refuse(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    session: &Session<'_>,
    known: bool,
    mode: &str,
    at: DateTime<Utc>,
    stage: &str,
    refusal: Refusal,
) -> Result<&'static str, HandlerError> {
    if known {
        conf::set_supervision(
            conn,
            session.id,
            mode,
            refusal.status,
            Some(refusal.reason),
            at,
        )
        .await?;
    } else {
        conf::insert_supervision(
            conn,
            &NewSupervision {
                session_id: session.id,
                org_id: session.org,
                call_id: session.call_id(),
                supervisor_user_id: session.supervisor,
                mode,
                status: refusal.status,
                participant_call_sid: None,
                reason: Some(refusal.reason),
                mode_at: at,
            },
        )
        .await?;
    }
    state
        .outbox
        .enqueue(
            conn,
            &PhoneSupervisionFailed {
                session_id: session.id.to_string(),
                org_id: session.org.to_string(),
                call_id: session
                    .call_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                supervisor_user_id: session.supervisor_raw.to_owned(),
                rep_user_id: session.rep.to_owned(),
                reason: refusal.reason.to_owned(),
                twilio_code: refusal.twilio_code,
                stage: stage.to_owned(),
                failed_at_unix_ms: Utc::now().timestamp_millis(),
            },
        )
        .await
        .map_err(retry)?;
    Ok("refused")
}

async fn started(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    session: &Session<'_>,
    mode: &'static str,
    at: DateTime<Utc>,
) -> Result<&'static str, HandlerError> {
    if conf::lock_supervision(conn, session.id).await?.is_some() {
        // Applied already, or stopped before it started (the tombstone wins).
        return Ok("duplicate");
    }
    let Some(to) = supervisor_to(&session.target.supervisor_address) else {
        return refuse(
            state,
            conn,
            session,
            false,
            mode,
            at,
            "started",
            Refusal::invalid(),
        )
        .await;
    };
    let Some((call, conference_sid, rep)) = live_call(conn, session).await? else {
        return refuse(
            state,
            conn,
            session,
            false,
            mode,
            at,
            "started",
            Refusal::not_live(),
        )
        .await;
    };
    let label = label(session.id);
    let found = state
        .twilio_call("fetch_participant", Resend::AfterTransient, || {
            state.twilio.fetch_participant(&conference_sid, &label)
        })
        .await;
    let leg = match found {
        Ok(Some(leg)) => Ok(leg),
        Ok(None) => {
            let wanted = changes(mode, &rep);
            let participant = NewParticipant {
                from: conference::org_number(&call).to_owned(),
                to,
                label: label.clone(),
                muted: wanted.muted,
                coaching: wanted.coaching,
                call_sid_to_coach: wanted.call_sid_to_coach,
                start_conference_on_enter: true,
                // The supervisor leaving never ends the customer's call.
                end_conference_on_exit: false,
                early_media: false,
                timeout_seconds: SUPERVISOR_RING_SECONDS,
                status_callback: conference::callback_url(state, call.id),
            };
            state
                .twilio_call("create_participant", Resend::IfNotActedOn, || {
                    state
                        .twilio
                        .create_participant(&conference_sid, &participant)
                })
                .await
        }
        Err(error) => Err(error),
    };
    let leg = match leg {
        Ok(leg) => leg,
        Err(error @ TwilioError::Rejected { .. }) => {
            tracing::warn!(session.id = %session.id, %error, "Twilio refused the supervisor's leg");
            let refusal = if conference::gone(&error) {
                Refusal::not_live()
            } else {
                Refusal::twilio(&error)
            };
            return refuse(state, conn, session, false, mode, at, "started", refusal).await;
        }
        Err(error) => return Err(retry(error)),
    };
    conf::insert_supervision(
        conn,
        &NewSupervision {
            session_id: session.id,
            org_id: session.org,
            call_id: Some(call.id),
            supervisor_user_id: session.supervisor,
            mode,
            status: conf::ACTIVE,
            participant_call_sid: Some(&leg.call_sid),
            reason: None,
            mode_at: at,
        },
    )
    .await?;
    conf::upsert_participant(
        conn,
        &leg.call_sid,
        call.id,
        call.org_id,
        conf::SUPERVISOR,
        Some(session.id),
        conf::RINGING,
    )
    .await?;
    Ok("applied")
}

async fn mode_changed(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    session: &Session<'_>,
    mode: &'static str,
    at: DateTime<Utc>,
) -> Result<&'static str, HandlerError> {
    let Some(known) = conf::lock_supervision(conn, session.id).await? else {
        // Its start has not been applied yet (it is being retried): come back later rather
        // than lose the change.
        return Err(HandlerError::retry(
            "mode change before its session's start",
        ));
    };
    if known.status != conf::ACTIVE {
        return Ok("ignored");
    }
    if at <= known.mode_at {
        return Ok("stale");
    }
    let Some((_, conference_sid, rep)) = live_call(conn, session).await? else {
        return refuse(
            state,
            conn,
            session,
            true,
            mode,
            at,
            "mode_changed",
            Refusal::not_live(),
        )
        .await;
    };
    let Some(leg) = known.participant_call_sid else {
        return Ok("ignored");
    };
    let wanted = changes(mode, &rep);
    let updated = state
        .twilio_call("update_participant", Resend::AfterTransient, || {
            state
                .twilio
                .update_participant(&conference_sid, &leg, &wanted)
        })
        .await;
    match updated {
        Ok(_) => {
            conf::set_supervision(conn, session.id, mode, conf::ACTIVE, None, at).await?;
            Ok("applied")
        }
        Err(error @ TwilioError::Rejected { .. }) => {
            tracing::warn!(session.id = %session.id, %error, "Twilio refused the mode change");
            let refusal = if conference::gone(&error) {
                Refusal::not_live()
            } else {
                Refusal::twilio(&error)
            };
            refuse(
                state,
                conn,
                session,
                true,
                mode,
                at,
                "mode_changed",
                refusal,
            )
            .await
        }
        Err(error) => Err(retry(error)),
    }
}

async fn stopped(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    session: &Session<'_>,
    at: DateTime<Utc>,
) -> Result<&'static str, HandlerError> {
    let Some(known) = conf::lock_supervision(conn, session.id).await? else {
        // Stopped before its start was applied: a tombstone, so the late start adds nobody.
        conf::insert_supervision(
            conn,
            &NewSupervision {
                session_id: session.id,
                org_id: session.org,
                call_id: session.call_id(),
                supervisor_user_id: session.supervisor,
                mode: "listen",
                status: conf::STOPPED,
                participant_call_sid: None,
                reason: None,
                mode_at: at,
            },
        )
        .await?;
        return Ok("applied");
    };
    if known.status != conf::ACTIVE {
        return Ok("ignored");
    }
    let conference_sid = match known.call_id {
        Some(call) => conf::find(conn, call).await?.and_then(|c| c.conference_sid),
        None => None,
    };
    if let (Some(conference_sid), Some(leg)) = (conference_sid, &known.participant_call_sid) {
        state
            .twilio_call("remove_participant", Resend::AfterTransient, || {
                state.twilio.remove_participant(&conference_sid, leg)
            })
            .await
            .map_err(retry)?;
    }
    conf::set_supervision(
        conn,
        session.id,
        &known.mode,
        conf::STOPPED,
        None,
        at.max(known.mode_at),
    )
    .await?;
    Ok("applied")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisors_are_rung_at_their_app_or_a_number_only() {
        let user = Uuid::now_v7();
        assert_eq!(
            supervisor_to(&format!("client:u_{}", user.simple())),
            Some(format!("client:u_{}", user.simple()))
        );
        assert_eq!(
            supervisor_to("+33612345678"),
            Some("+33612345678".to_owned())
        );
        assert_eq!(supervisor_to("client:alice"), None);
        assert_eq!(supervisor_to("sip:x@y"), None);
    }

    #[test]
    fn modes_map_to_twilios_participant_settings() {
        let rep = "CA0123456789abcdef0123456789abcdef";
        assert_eq!(
            changes("listen", rep),
            ParticipantChanges {
                muted: true,
                coaching: false,
                call_sid_to_coach: None
            }
        );
        assert_eq!(
            changes("coach", rep),
            ParticipantChanges {
                muted: false,
                coaching: true,
                call_sid_to_coach: Some(rep.to_owned())
            }
        );
        assert_eq!(
            changes("barge", rep),
            ParticipantChanges {
                muted: false,
                coaching: false,
                call_sid_to_coach: None
            }
        );
    }
}
