//! Calls bridged through a per-call Twilio `<Conference>` (`call_<call id>`) instead of a direct
//! `<Dial>`, so a supervisor can be added as a participant. The leg whose TwiML we
//! serve joins with `<Dial><Conference>`; the other party is rung with the Participants API:
//! the customer of an outbound call once the rep's device answered, the rep's app and/or
//! forward number of an inbound call after the greeting. What `<Dial>` did by itself is done
//! from the participants' callbacks: an outbound customer who does not answer ends the rep's
//! leg; an inbound call nobody answers goes to voicemail (the customer's call is redirected to
//! `/webhook/voice/completed`, which answers the voicemail TwiML). These are the only webhooks
//! that call Twilio, after their transaction committed, and only on the transition that asks
//! for it, so a repeated callback does nothing twice.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_platform::ApiErrorExt as _;
use uuid::Uuid;

use crate::actions::calls::valid_call_sid;
use crate::domain::phone;
use crate::domain::status::Direction;
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls::{self, Call};
use crate::store::conferences::{self as conf, Participant};
use crate::store::numbers::PhoneNumber;
use sb_twilio::twiml::{self, Bridge, Speech};
use sb_twilio::{CallUpdate, NewParticipant, Params, TwilioError};

/// How long the customer of an outbound call rings before giving up (Twilio's `<Dial>`
/// default, which the direct dial used).
const CUSTOMER_RING_SECONDS: u32 = 30;

/// Absolute URL of the conference and participant callbacks of `call`.
pub fn callback_url(state: &AppState, call_id: Uuid) -> String {
    state.public_url(&format!("/webhook/voice/conference?callId={call_id}"))
}

fn recording_url(state: &AppState, call: &Call) -> Option<String> {
    call.record
        .then(|| state.public_url(&format!("/webhook/voice/recording?callId={}", call.id)))
}

/// The number the org shows for this call (the caller id of legs we add).
pub fn org_number(call: &Call) -> &str {
    match call.direction {
        Direction::Outbound => &call.from_number,
        Direction::Inbound => &call.to_number,
    }
}

/// Outbound: the rep's device answered. Rings the customer into the call's conference (once,
/// however often Twilio asks) and answers the TwiML that brings the rep's leg in.
pub async fn bridge_outbound(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: &Call,
) -> Result<String, TelephonyError> {
    conf::ensure(conn, call.id, call.org_id).await?;
    let rung = conf::participants(conn, call.id)
        .await?
        .iter()
        .any(|p| p.role == conf::CUSTOMER);
    if !rung {
        let customer = NewParticipant {
            from: call.from_number.clone(),
            to: call.to_number.clone(),
            label: conf::CUSTOMER.to_owned(),
            start_conference_on_enter: true,
            end_conference_on_exit: true,
            // The rep hears the customer's phone ringing, as with `<Dial>`.
            early_media: true,
            timeout_seconds: CUSTOMER_RING_SECONDS,
            status_callback: callback_url(state, call.id),
            ..NewParticipant::default()
        };
        let name = conf::name(call.id);
        let added = state
            .twilio_call("create_participant", Resend::IfNotActedOn, || {
                state.twilio.create_participant(&name, &customer)
            })
            .await;
        match added {
            Ok(leg) => {
                conf::upsert_participant(
                    conn,
                    &leg.call_sid,
                    call.id,
                    call.org_id,
                    conf::CUSTOMER,
                    None,
                    conf::RINGING,
                )
                .await?;
            }
            Err(error) => {
                tracing::warn!(call.id = %call.id, %error, "cannot ring the customer into the conference");
                return Ok(twiml::say_and_hang_up(
                    &default_speech(),
                    twiml::prompts("en").unavailable,
                ));
            }
        }
    }
    Ok(twiml::bridge(
        None,
        &Bridge {
            name: conf::name(call.id),
            label: conf::REP.to_owned(),
            starts: true,
            action: state.public_url("/webhook/voice/completed"),
            status_callback: callback_url(state, call.id),
            recording_callback: recording_url(state, call),
        },
    ))
}

fn default_speech() -> Speech {
    Speech {
        voice: "alice".to_owned(),
        language: "en-US".to_owned(),
    }
}

/// Inbound: rings the rep's app (`client`) and/or forward number into the call's conference
/// (once), and answers the greeting and the TwiML that brings the customer in to wait, in
/// silence, for them. `None` when nobody could be rung: the caller goes to voicemail.
pub async fn bridge_inbound(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: &Call,
    number: &PhoneNumber,
    speech: &Speech,
    greeting: &str,
    client: Option<String>,
) -> Result<Option<String>, TelephonyError> {
    conf::ensure(conn, call.id, call.org_id).await?;
    let known = conf::participants(conn, call.id).await?;
    let mut ringing = known.iter().any(|p| p.role == conf::REP);
    if !ringing {
        let timeout = number.ring_timeout();
        let caller = phone::E164::parse(&call.from_number).ok();
        let mut legs = Vec::new();
        if let Some(identity) = client {
            // The app shows who calls; an anonymous caller shows as the org's number.
            let from = caller
                .as_ref()
                .map_or_else(|| number.e164.clone(), |c| c.as_str().to_owned());
            legs.push((format!("client:{identity}"), from, "rep"));
        }
        if let Some(forward) = &number.forward_to {
            // Twilio only lets a number we own call out to the public network.
            legs.push((forward.clone(), number.e164.clone(), "rep_forward"));
        }
        let name = conf::name(call.id);
        for (to, from, label) in legs {
            let rep = NewParticipant {
                from,
                to,
                label: label.to_owned(),
                start_conference_on_enter: true,
                end_conference_on_exit: true,
                timeout_seconds: timeout,
                status_callback: callback_url(state, call.id),
                ..NewParticipant::default()
            };
            let added = state
                .twilio_call("create_participant", Resend::IfNotActedOn, || {
                    state.twilio.create_participant(&name, &rep)
                })
                .await;
            match added {
                Ok(leg) => {
                    conf::upsert_participant(
                        conn,
                        &leg.call_sid,
                        call.id,
                        call.org_id,
                        conf::REP,
                        None,
                        conf::RINGING,
                    )
                    .await?;
                    ringing = true;
                }
                Err(error) => {
                    tracing::warn!(call.id = %call.id, %error, "cannot ring the rep into the conference");
                }
            }
        }
    }
    if !ringing {
        return Ok(None);
    }
    Ok(Some(twiml::bridge(
        Some((speech, greeting)),
        &Bridge {
            name: conf::name(call.id),
            label: conf::CUSTOMER.to_owned(),
            starts: false,
            action: state.public_url("/webhook/voice/completed"),
            status_callback: callback_url(state, call.id),
            recording_callback: recording_url(state, call),
        },
    )))
}

/// What a callback asks of Twilio once its transaction committed.
#[derive(Debug, Default)]
struct FollowUp {
    /// Hang up or redirect these calls.
    calls: Vec<(String, CallUpdate)>,
    /// Remove these participants (conference SID, CallSid): other rep devices still ringing
    /// once one answered.
    removals: Vec<(String, String)>,
}

fn valid_conference_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("CF") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The role of a leg we did not add ourselves: the call's own leg (the rep's of an outbound
/// call, the customer's of an inbound one), else what its label says.
fn role_of(call: &Call, call_sid: &str, label: Option<&str>) -> Option<&'static str> {
    if call.call_sid.as_deref() == Some(call_sid) {
        return Some(match call.direction {
            Direction::Outbound => conf::REP,
            Direction::Inbound => conf::CUSTOMER,
        });
    }
    match label? {
        l if l == conf::CUSTOMER => Some(conf::CUSTOMER),
        l if l.starts_with("rep") => Some(conf::REP),
        l if l.starts_with("supervisor") => Some(conf::SUPERVISOR),
        _ => None,
    }
}

/// `POST /webhook/voice/conference[?callId=…]`: a conference status callback
/// (`StatusCallbackEvent` conference-start, conference-end, participant-join, participant-leave,
/// participant-mute…) or the call status callback of a leg we added (`CallStatus`). Applied
/// monotonically: a repeated or late callback changes nothing.
pub async fn callback(
    state: &AppState,
    params: &Params,
    call_id: Option<Uuid>,
) -> Result<&'static str, TelephonyError> {
    let by_name = params.get("FriendlyName").and_then(conf::call_of_name);
    let Some(call_id) = call_id.or(by_name) else {
        return Err(TelephonyError::invalid(
            "callId",
            "missing, and FriendlyName is not one of our conferences",
        ));
    };
    if by_name.is_some_and(|named| named != call_id) {
        tracing::warn!(call.id = %call_id, "conference callback whose name is another call's");
        return Ok("ignored");
    }
    let event = params.get("StatusCallbackEvent").map(str::to_owned);
    let leg_sid = params
        .get("CallSid")
        .filter(|sid| valid_call_sid(sid))
        .map(str::to_owned);
    let conference_sid = params
        .get("ConferenceSid")
        .filter(|sid| valid_conference_sid(sid))
        .map(str::to_owned);
    let label = params.get("ParticipantLabel").map(str::to_owned);
    let leg_status = params.get("CallStatus").map(str::to_owned);
    let duration = params
        .get("CallDuration")
        .and_then(|d| d.parse::<i32>().ok())
        .filter(|d| *d >= 0);
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let result = outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let Some(call) = calls::try_lock(conn, call_id).await? else {
                return Ok(("unknown_call", FollowUp::default()));
            };
            let mut follow = FollowUp::default();
            let outcome = match (event.as_deref(), leg_status.as_deref()) {
                (Some(event), _) => {
                    conference_event(
                        conn,
                        &call,
                        event,
                        conference_sid.as_deref(),
                        leg_sid.as_deref(),
                        label.as_deref(),
                        &mut follow,
                    )
                    .await?
                }
                (None, Some(status)) => match leg_sid.as_deref() {
                    Some(sid) => {
                        leg_callback(state, conn, &call, sid, status, duration, &mut follow).await?
                    }
                    None => "ignored",
                },
                (None, None) => "ignored",
            };
            Ok((outcome, follow))
        }))
        .await?;
    let (outcome, follow) = result;
    if outcome == "unknown_call" {
        tracing::warn!(call.id = %call_id, "conference callback for an unknown call");
    }
    for (sid, update) in &follow.calls {
        let done = state
            .twilio_call("update_call", Resend::AfterTransient, || {
                state.twilio.update_call(sid, update)
            })
            .await;
        if let Err(error) = done {
            tracing::warn!(call.id = %call_id, %error, ?update, "cannot update a call after its conference callback");
        }
    }
    for (conference, sid) in &follow.removals {
        let done = state
            .twilio_call("remove_participant", Resend::AfterTransient, || {
                state.twilio.remove_participant(conference, sid)
            })
            .await;
        if let Err(error) = done {
            tracing::warn!(call.id = %call_id, %error, "cannot stop ringing another device of the rep");
        }
    }
    Ok(outcome)
}

async fn conference_event(
    conn: &mut AsyncPgConnection,
    call: &Call,
    event: &str,
    conference_sid: Option<&str>,
    leg_sid: Option<&str>,
    label: Option<&str>,
    follow: &mut FollowUp,
) -> Result<&'static str, TelephonyError> {
    let Some(conference_sid) = conference_sid else {
        return Err(TelephonyError::invalid(
            "ConferenceSid",
            "missing or not a Twilio ConferenceSid",
        ));
    };
    match event {
        "conference-start" => {
            conf::record_conference(conn, call.id, call.org_id, conference_sid, conf::LIVE).await?;
            Ok("applied")
        }
        "conference-end" => {
            conf::record_conference(conn, call.id, call.org_id, conference_sid, conf::ENDED)
                .await?;
            Ok("applied")
        }
        "participant-join" | "participant-leave" => {
            // A join can come before conference-start: the conference is live once anyone is in.
            conf::record_conference(conn, call.id, call.org_id, conference_sid, conf::LIVE).await?;
            let Some(sid) = leg_sid else {
                return Ok("ignored");
            };
            let known = conf::participant(conn, sid).await?;
            let role = match &known {
                Some(p) => Some(role_static(&p.role)),
                None => role_of(call, sid, label),
            };
            let Some(role) = role else {
                return Ok("ignored");
            };
            let status = if event == "participant-join" {
                conf::JOINED
            } else {
                conf::LEFT
            };
            let session = known.as_ref().and_then(|p| p.session_id);
            let (_, changed) = upsert(conn, sid, call, role, session, status).await?;
            if changed && status == conf::JOINED && role == conf::REP {
                stop_other_devices(conn, call, sid, conference_sid, follow).await?;
            }
            Ok(if changed { "applied" } else { "stale" })
        }
        // Mute, hold, speaker… change nothing we keep.
        _ => Ok("ignored"),
    }
}

/// One of the rep's devices answered: the others stop ringing.
async fn stop_other_devices(
    conn: &mut AsyncPgConnection,
    call: &Call,
    answered: &str,
    conference_sid: &str,
    follow: &mut FollowUp,
) -> Result<(), TelephonyError> {
    for other in conf::participants(conn, call.id).await? {
        if other.role == conf::REP && other.status == conf::RINGING && other.call_sid != answered {
            follow
                .removals
                .push((conference_sid.to_owned(), other.call_sid.clone()));
        }
    }
    Ok(())
}

fn role_static(role: &str) -> &'static str {
    match role {
        conf::REP => conf::REP,
        conf::CUSTOMER => conf::CUSTOMER,
        _ => conf::SUPERVISOR,
    }
}

/// Records the leg's status; whether it moved.
async fn upsert(
    conn: &mut AsyncPgConnection,
    sid: &str,
    call: &Call,
    role: &str,
    session: Option<Uuid>,
    status: &str,
) -> Result<(Participant, bool), TelephonyError> {
    let before = conf::participant(conn, sid).await?.map(|p| p.status);
    let after =
        conf::upsert_participant(conn, sid, call.id, call.org_id, role, session, status).await?;
    let changed = before.as_deref() != Some(after.status.as_str());
    Ok((after, changed))
}

/// The call status callback of a leg we added (customer, rep device, supervisor).
async fn leg_callback(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: &Call,
    sid: &str,
    status: &str,
    duration: Option<i32>,
    follow: &mut FollowUp,
) -> Result<&'static str, TelephonyError> {
    let Some(known) = conf::participant(conn, sid).await? else {
        // Twilio can report `initiated` before the Participants API answered us; the row is
        // written then, and the later statuses find it.
        return Ok("unknown_leg");
    };
    if known.call_id != call.id {
        return Ok("ignored");
    }
    let unanswered = matches!(status, "no-answer" | "busy" | "failed" | "canceled");
    let target = match status {
        "in-progress" | "answered" => conf::JOINED,
        "completed" => conf::LEFT,
        _ if unanswered => conf::FAILED,
        _ => return Ok("ignored"),
    };
    let role = role_static(&known.role);
    let (_, changed) = upsert(conn, sid, call, role, known.session_id, target).await?;
    if !changed {
        return Ok("stale");
    }
    if role == conf::REP && target == conf::JOINED {
        // Its answer can reach us before its participant-join (which does the same).
        if let Some(conference_sid) = conf::find(conn, call.id)
            .await?
            .and_then(|c| c.conference_sid)
        {
            stop_other_devices(conn, call, sid, &conference_sid, follow).await?;
        }
    }
    match (role, call.direction) {
        (conf::CUSTOMER, Direction::Outbound) if unanswered => {
            // What `<Dial>`'s DialCallStatus said: the customer did not answer. The rep's leg
            // would otherwise stay alone in the conference.
            calls::set_dial_outcome(conn, call.id, status, Some(0)).await?;
            if let Some(rep) = &call.call_sid {
                follow.calls.push((rep.clone(), CallUpdate::Hangup));
            }
        }
        (conf::CUSTOMER, Direction::Outbound) | (conf::REP, Direction::Inbound)
            if target == conf::LEFT =>
        {
            calls::set_dial_outcome(conn, call.id, "completed", duration).await?;
        }
        (conf::REP, Direction::Inbound) if unanswered => {
            let others = conf::participants(conn, call.id).await?;
            let waiting = others.iter().any(|p| {
                p.role == conf::REP && (p.status == conf::RINGING || p.status == conf::JOINED)
            });
            if !waiting && !call.status.is_final() {
                // Nobody answered: the caller may leave a voicemail, as after `<Dial>`.
                calls::set_dial_outcome(conn, call.id, status, Some(0)).await?;
                if let Some(customer) = &call.call_sid {
                    follow.calls.push((
                        customer.clone(),
                        CallUpdate::Redirect(state.public_url("/webhook/voice/completed")),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok("applied")
}

/// Whether Twilio's refusal means the leg or conference is gone (not worth asking again).
pub fn gone(error: &TwilioError) -> bool {
    matches!(error, TwilioError::Rejected { status: 404, .. })
}
