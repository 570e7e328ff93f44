//! Twilio's voice webhooks: the TwiML of incoming calls, of the second half of outbound calls and
//! of a finished `<Dial>`, and the status and recording callbacks. Every handler answers fast
//! (one short transaction, no call to Twilio) and is idempotent: Twilio may repeat a request.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_platform::ApiErrorExt as _;
use uuid::Uuid;

use crate::actions::calls::{insert_outbound, twilio_time, valid_call_sid};
use crate::actions::{conference, events, status};
use crate::domain::phone::{self, E164};
use crate::domain::status::{CallStatus, DialStatus, Direction, RecordingKind, RecordingStatus};
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::calls::{self, Call, NewCall};
use crate::store::numbers::{self, PhoneNumber};
use crate::store::recordings::{self, NewRecording};
use sb_twilio::Params;
use sb_twilio::twiml::{self, Speech};

/// What a webhook did: the TwiML to answer and the metric outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub twiml: String,
    pub outcome: &'static str,
}

impl Answer {
    fn new(twiml: String, outcome: &'static str) -> Self {
        Self { twiml, outcome }
    }
}

/// Voice of the service's own messages when no number says otherwise.
fn default_speech() -> Speech {
    Speech {
        voice: "alice".to_owned(),
        language: "en-US".to_owned(),
    }
}

fn speech_of(number: &PhoneNumber) -> Speech {
    Speech {
        voice: number.voice.clone(),
        language: number.language.clone(),
    }
}

fn call_sid(params: &Params) -> Result<&str, TelephonyError> {
    params
        .get("CallSid")
        .filter(|sid| valid_call_sid(sid))
        .ok_or_else(|| TelephonyError::invalid("CallSid", "missing or not a Twilio CallSid"))
}

/// The E.164 form of a number Twilio sends, or the raw text (`anonymous`, `client:…`).
fn normalise(raw: &str) -> String {
    E164::parse(raw).map_or_else(|_| raw.chars().take(160).collect(), E164::into_inner)
}

/// The voicemail TwiML of `number`.
fn voicemail_twiml(state: &AppState, number: &PhoneNumber) -> String {
    let greeting = number
        .voicemail_greeting
        .clone()
        .unwrap_or_else(|| twiml::prompts(&number.language).voicemail.to_owned());
    twiml::voicemail(
        &speech_of(number),
        &greeting,
        &state.public_url("/webhook/voice/recording"),
        &state.public_url("/webhook/voice/transcription"),
    )
}

/// `POST /webhook/voice`: a call to one of the org's numbers. Saves it (INBOUND), announces it
/// for push consumers, and rings the owner's app and/or forward number after the greeting.
pub async fn incoming(state: &AppState, params: &Params) -> Result<Answer, TelephonyError> {
    if params
        .get("From")
        .is_some_and(|from| from.starts_with("client:"))
    {
        // The TwiML app of the mobile apps may point here too: that is a call placed from the app.
        return from_app(state, params).await;
    }
    let sid = call_sid(params)?.to_owned();
    let to = normalise(params.get("To").unwrap_or_default());
    let from = normalise(params.get("From").unwrap_or("anonymous"));
    let mut conn = state.conn().await?;
    let Some(number) = numbers::find(&mut conn, &to).await? else {
        tracing::warn!(to = %phone::redact(&to), "call to a number no org has");
        return Ok(Answer::new(
            twiml::say_and_hang_up(&default_speech(), twiml::prompts("en").not_in_service),
            "unknown_number",
        ));
    };
    let reported = params
        .get("CallStatus")
        .and_then(CallStatus::from_twilio)
        .filter(|s| !s.is_final())
        .unwrap_or(CallStatus::Ringing);
    let client = number
        .owner_user_id
        .filter(|_| number.ring_app)
        .map(phone::client_identity);
    let rings = client.is_some() || number.forward_to.is_some();
    let outbox = &state.outbox;
    let inserted = state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let now = Utc::now();
            let Some(call) = calls::insert_if_new_sid(
                conn,
                &NewCall {
                    id: Uuid::now_v7(),
                    org_id: number.org_id,
                    user_id: number.owner_user_id,
                    team_id: number.team_id,
                    phone_number_id: Some(number.id),
                    appointment_id: None,
                    direction: Direction::Inbound,
                    call_sid: Some(&sid),
                    from_number: &from,
                    to_number: &number.e164,
                    status: reported,
                    initiated_at: None,
                    ringing_at: (reported == CallStatus::Ringing).then_some(now),
                    record: false,
                },
            )
            .await?
            else {
                return Ok(false);
            };
            if !rings {
                calls::set_voicemail(conn, call.id).await?;
            }
            events::incoming(conn, outbox, &call).await?;
            events::status_changed(conn, outbox, &call, None, now).await?;
            Ok(true)
        }))
        .await?;
    let outcome = if inserted { "applied" } else { "duplicate" };
    if !rings {
        return Ok(Answer::new(voicemail_twiml(state, &number), outcome));
    }
    let greeting = number
        .greeting
        .clone()
        .unwrap_or_else(|| twiml::prompts(&number.language).connecting.to_owned());
    let Some(call) = calls::find_by_sid(&mut conn, &sid).await? else {
        return Err(TelephonyError::internal(
            "the inbound call vanished after its insert",
        ));
    };
    // Bridged through the call's conference so a supervisor can join.
    let bridged = conference::bridge_inbound(
        state,
        &mut conn,
        &call,
        &number,
        &speech_of(&number),
        &greeting,
        client.clone(),
    )
    .await?;
    if let Some(twiml) = bridged {
        return Ok(Answer::new(twiml, outcome));
    }
    // Twilio's REST API could not ring anyone into the conference (unreachable, refusing, or no
    // account at all in development): the caller still reaches the rep through a plain `<Dial>`,
    // which cannot be supervised, rather than a voicemail nobody chose. Its action is the same
    // `/webhook/voice/completed`, so nobody answering still ends in voicemail.
    tracing::warn!(call.id = %call.id, "rings the rep with a direct <Dial>: this call cannot be supervised");
    let ring = twiml::Ring {
        client,
        forward_to: number.forward_to.clone(),
        timeout_seconds: number.ring_timeout(),
        action: state.public_url("/webhook/voice/completed"),
    };
    Ok(Answer::new(
        twiml::inbound(&speech_of(&number), &greeting, &ring),
        outcome,
    ))
}

/// `POST /webhook/voice/completed`: the `<Dial>` ended. Nobody answered an inbound call: the
/// caller may leave a voicemail; otherwise hang up.
pub async fn dial_completed(state: &AppState, params: &Params) -> Result<Answer, TelephonyError> {
    let sid = call_sid(params)?.to_owned();
    let dial = params.get("DialCallStatus").and_then(DialStatus::parse);
    let talk = params
        .get("DialCallDuration")
        .and_then(|d| d.parse::<i32>().ok())
        .filter(|d| *d >= 0);
    let mut conn = state.conn().await?;
    let Some(call) = calls::find_by_sid(&mut conn, &sid).await? else {
        tracing::warn!(call.sid = %sid, "Dial action for an unknown call");
        return Ok(Answer::new(twiml::hang_up(), "unknown_call"));
    };
    // A call bridged through a conference is redirected here (no DialCallStatus) once its
    // conference callbacks recorded that nobody answered.
    let dial = dial.or_else(|| call.dial_status.as_deref().and_then(DialStatus::parse));
    let voicemail =
        call.direction == Direction::Inbound && dial.is_some_and(DialStatus::unanswered);
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            calls::lock(conn, call.id).await?;
            if let Some(dial) = dial {
                calls::set_dial_outcome(conn, call.id, dial.as_str(), talk).await?;
            }
            if voicemail {
                calls::set_voicemail(conn, call.id).await?;
            }
            Ok(())
        }))
        .await?;
    if voicemail {
        let number = match call.phone_number_id {
            Some(_) => numbers::find(&mut conn, &call.to_number).await?,
            None => None,
        };
        if let Some(number) = number {
            return Ok(Answer::new(voicemail_twiml(state, &number), "applied"));
        }
    }
    Ok(Answer::new(twiml::hang_up(), "applied"))
}

/// `POST /webhook/voice/outbound[?callId=…]`: the caller's device answered a click-to-call
/// (`callId`), or the app placed a call through the TwiML app: dial the destination.
pub async fn outbound(
    state: &AppState,
    params: &Params,
    call_id: Option<Uuid>,
) -> Result<Answer, TelephonyError> {
    let Some(call_id) = call_id else {
        return from_app(state, params).await;
    };
    let sid = call_sid(params)?.to_owned();
    let mut conn = state.conn().await?;
    let call = calls::find(&mut conn, call_id)
        .await?
        .filter(|c| c.direction == Direction::Outbound)
        .filter(|c| c.call_sid.as_deref().is_none_or(|known| known == sid));
    let Some(call) = call else {
        tracing::warn!(call.id = %call_id, "outbound TwiML for an unknown call");
        return Ok(Answer::new(
            twiml::say_and_hang_up(&default_speech(), twiml::prompts("en").unavailable),
            "unknown_call",
        ));
    };
    if call.call_sid.is_none() {
        calls::set_sid(&mut conn, call.id, &sid).await?;
    }
    if call.status.is_final() {
        return Ok(Answer::new(twiml::hang_up(), "stale"));
    }
    let twiml = conference::bridge_outbound(state, &mut conn, &call).await?;
    Ok(Answer::new(twiml, "applied"))
}

/// A call placed from the mobile app through the TwiML app: `From` is `client:u_…`, `To` the
/// number dialled, `CallerId` (optional, a parameter the app passes) one of the user's numbers.
async fn from_app(state: &AppState, params: &Params) -> Result<Answer, TelephonyError> {
    let sid = call_sid(params)?.to_owned();
    let sorry = |text: &'static str, outcome| {
        Answer::new(twiml::say_and_hang_up(&default_speech(), text), outcome)
    };
    let Some(user) = params.get("From").and_then(phone::user_of_client) else {
        return Ok(sorry(twiml::prompts("en").unavailable, "rejected"));
    };
    let Ok(to) = E164::parse(params.get("To").unwrap_or_default()) else {
        return Ok(sorry(twiml::prompts("en").not_in_service, "rejected"));
    };
    let mut conn = state.conn().await?;
    if let Some(call) = calls::find_by_sid(&mut conn, &sid).await? {
        let twiml = conference::bridge_outbound(state, &mut conn, &call).await?;
        return Ok(Answer::new(twiml, "duplicate"));
    }
    let wanted = params.get("CallerId").map(normalise);
    let owned = numbers::owned_by(&mut conn, user).await?;
    let number = match &wanted {
        Some(wanted) => owned.into_iter().find(|n| &n.e164 == wanted),
        None => owned.into_iter().next(),
    };
    let Some(number) = number else {
        tracing::warn!(user.id = %user, "call from the app by a user with no number");
        return Ok(sorry(twiml::prompts("en").unavailable, "rejected"));
    };
    let reported = params
        .get("CallStatus")
        .and_then(CallStatus::from_twilio)
        .filter(|s| !s.is_final())
        .unwrap_or(CallStatus::Initiated);
    let inserted = insert_outbound(
        state,
        &mut conn,
        user,
        NewCall {
            id: Uuid::now_v7(),
            org_id: number.org_id,
            user_id: Some(user),
            team_id: number.team_id,
            phone_number_id: Some(number.id),
            appointment_id: None,
            direction: Direction::Outbound,
            call_sid: Some(&sid),
            from_number: &number.e164,
            to_number: to.as_str(),
            status: reported,
            initiated_at: Some(Utc::now()),
            ringing_at: None,
            record: number.record_calls,
        },
    )
    .await;
    match inserted {
        Ok(call) => {
            let twiml = conference::bridge_outbound(state, &mut conn, &call).await?;
            Ok(Answer::new(twiml, "applied"))
        }
        Err(TelephonyError::RateLimited { .. }) => {
            Ok(sorry(twiml::prompts("en").unavailable, "rate_limited"))
        }
        Err(error) => Err(error),
    }
}

/// `POST /webhook/voice/status[?callId=…]`: a status callback. Applied monotonically; an unknown
/// call is answered 200 (logged, counted) so Twilio stops.
pub async fn status_callback(
    state: &AppState,
    params: &Params,
    call_id: Option<Uuid>,
) -> Result<&'static str, TelephonyError> {
    let sid = call_sid(params)?.to_owned();
    let Some(reported) = params.get("CallStatus").and_then(CallStatus::from_twilio) else {
        return Ok("ignored");
    };
    let report = status::StatusReport {
        status: reported,
        sequence: params
            .get("SequenceNumber")
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|s| *s >= 0),
        at: twilio_time(params.get("Timestamp")).unwrap_or_else(Utc::now),
        duration_seconds: params
            .get("CallDuration")
            .and_then(|d| d.parse::<i32>().ok())
            .filter(|d| *d >= 0),
        price: params
            .get("Price")
            .map(|p| (p.to_owned(), params.get("PriceUnit").map(str::to_owned))),
    };
    let mut conn = state.conn().await?;
    // The common case in two round trips, without a transaction: read the call, then write the
    // report with its events as one statement that applies only if nothing changed the call
    // meanwhile. A call whose CallSid is not stored yet, or that changed between the two, takes
    // the locked path below.
    let Some((call, version)) = find_versioned(&mut conn, call_id, &sid).await? else {
        tracing::warn!(call.sid = %sid, "status callback for an unknown call");
        return Ok("unknown_call");
    };
    if call.call_sid.is_some()
        && let Some(advanced) =
            status::apply_unless_changed(&mut conn, state, &call, &version, &report).await?
    {
        state.metrics.status_write("one_statement");
        return Ok(if advanced { "applied" } else { "stale" });
    }
    state.metrics.status_write("locked");
    let outcome = state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let Some(mut locked) = lock_call(conn, call_id, &sid).await? else {
                return Ok("unknown_call");
            };
            if locked.call_sid.is_none() {
                calls::set_sid(conn, locked.id, &sid).await?;
                locked = calls::lock(conn, locked.id).await?;
            }
            let (_, advanced) = status::apply(conn, state, &locked, &report).await?;
            Ok(if advanced { "applied" } else { "stale" })
        }))
        .await?;
    if outcome == "unknown_call" {
        tracing::warn!(call.sid = %sid, "status callback for an unknown call");
    }
    Ok(outcome)
}

/// The call a callback is about and its row's version, found as `lock_call` finds it, unlocked.
async fn find_versioned(
    conn: &mut AsyncPgConnection,
    call_id: Option<Uuid>,
    sid: &str,
) -> Result<Option<(Call, calls::RowVersion)>, TelephonyError> {
    Ok(calls::find_versioned(conn, call_id, sid)
        .await?
        .filter(|(c, _)| c.call_sid.as_deref().is_none_or(|known| known == sid)))
}

/// The call a callback is about, found and locked in one read: by the `callId` we put in its URL
/// (the CallSid may not be stored yet), checked against the CallSid, else by CallSid.
async fn lock_call(
    conn: &mut AsyncPgConnection,
    call_id: Option<Uuid>,
    sid: &str,
) -> Result<Option<Call>, TelephonyError> {
    if let Some(id) = call_id {
        return Ok(calls::try_lock(conn, id)
            .await?
            .filter(|c| c.call_sid.as_deref().is_none_or(|known| known == sid)));
    }
    Ok(calls::try_lock_by_sid(conn, sid).await?)
}

pub fn valid_recording_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("RE") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// `POST /webhook/voice/recording`: the `<Record>` action of a voicemail (no `RecordingStatus`),
/// or a recording status callback (voicemail or dual-channel call recording). The voicemail is
/// announced once, when it is first known complete.
pub async fn recording(
    state: &AppState,
    params: &Params,
    call_id: Option<Uuid>,
) -> Result<Answer, TelephonyError> {
    // A conference's recording callback names the conference, not a leg: the `callId` we put
    // in its URL says which call it is.
    let sid = match (params.get("CallSid"), call_id) {
        (None, Some(_)) => None,
        _ => Some(call_sid(params)?.to_owned()),
    };
    let recording_sid = params
        .get("RecordingSid")
        .filter(|s| valid_recording_sid(s))
        .ok_or_else(|| {
            TelephonyError::invalid("RecordingSid", "missing or not a Twilio RecordingSid")
        })?
        .to_owned();
    let record_action = params.get("RecordingStatus").is_none();
    let answer = if record_action {
        twiml::hang_up()
    } else {
        twiml::empty()
    };
    let status = if record_action {
        RecordingStatus::Completed
    } else {
        match params
            .get("RecordingStatus")
            .and_then(RecordingStatus::parse)
        {
            Some(status) => status,
            None => return Ok(Answer::new(answer, "ignored")),
        }
    };
    let voicemail = record_action || params.get("RecordingSource") == Some("RecordVerb");
    let kind = if voicemail {
        RecordingKind::Voicemail
    } else {
        RecordingKind::Call
    };
    let url = params
        .get("RecordingUrl")
        .filter(|u| u.len() <= 2000)
        .map(str::to_owned);
    let duration = params
        .get("RecordingDuration")
        .and_then(|d| d.parse::<i32>().ok())
        .filter(|d| *d >= 0);
    let channels = params
        .get("RecordingChannels")
        .and_then(|c| c.parse::<i32>().ok())
        .filter(|c| matches!(c, 1 | 2));
    let mut conn = state.conn().await?;
    let call = match (&sid, call_id) {
        (Some(sid), _) => calls::find_by_sid(&mut conn, sid).await?,
        (None, Some(id)) => calls::find(&mut conn, id).await?,
        (None, None) => None,
    };
    let Some(call) = call else {
        tracing::warn!(call.sid = ?sid, "recording of an unknown call");
        return Ok(Answer::new(answer, "unknown_call"));
    };
    let outbox = &state.outbox;
    let outcome = state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let call = calls::lock(conn, call.id).await?;
            let url = url.as_deref();
            let inserted = recordings::insert_if_absent(
                conn,
                &NewRecording {
                    id: Uuid::now_v7(),
                    org_id: call.org_id,
                    call_id: call.id,
                    recording_sid: &recording_sid,
                    kind,
                    status,
                    url,
                    duration_seconds: duration,
                    channels,
                },
            )
            .await?;
            let (recording, completed_now) = match inserted {
                Some(recording) => (recording, status == RecordingStatus::Completed),
                None => {
                    let known = recordings::lock(conn, &recording_sid).await?;
                    if known.status.is_final() {
                        return Ok("duplicate");
                    }
                    let written =
                        recordings::update(conn, known.id, status, url, duration, channels).await?;
                    (written, status == RecordingStatus::Completed)
                }
            };
            if completed_now && recording.kind == RecordingKind::Voicemail {
                calls::set_voicemail(conn, call.id).await?;
                events::voicemail(conn, outbox, &call, &recording).await?;
            }
            Ok("applied")
        }))
        .await?;
    Ok(Answer::new(answer, outcome))
}
