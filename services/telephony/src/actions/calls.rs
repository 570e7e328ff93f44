//! Click-to-call (`POST /api/calls/initiate`): Twilio first rings the caller's own device, and
//! once it answers, the TwiML of `/webhook/voice/outbound` dials the destination.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::policy::{self, AppointmentAccess};
use sb_auth::{Principal, Role};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::actions::{events, status};
use crate::domain::phone::{self, E164};
use crate::domain::status::{CallStatus, Direction};
use crate::error::TelephonyError;
use crate::state::{AppState, Resend};
use crate::store::calls::{self, Call, NewCall};
use crate::store::numbers::{self, PhoneNumber};
use sb_twilio::TwilioError;

/// What `POST /api/calls/initiate` asks for.
#[derive(Debug, Clone)]
pub struct Initiate {
    pub from: E164,
    pub to: E164,
    /// Record both parties; defaults to the number's setting.
    pub record: Option<bool>,
    pub appointment_id: Option<Uuid>,
}

/// Twilio's CallSids are `CA` and 32 hex digits; anything else is not from Twilio.
pub fn valid_call_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("CA") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Where Twilio first rings the caller: their app, else the number's forward number.
fn caller_device(number: &PhoneNumber, user: Uuid) -> Result<String, TelephonyError> {
    if number.ring_app {
        return Ok(format!("client:{}", phone::client_identity(user)));
    }
    number.forward_to.clone().ok_or_else(|| {
        TelephonyError::conflict(
            Code::NoDevice,
            "this number rings neither an app nor a forward number: ask an admin to set one",
        )
    })
}

async fn check_appointment(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<(), TelephonyError> {
    let appointment = sb_db::models::find_appointment_any_org(conn, id)
        .await?
        .filter(|a| principal.role == Role::Admin || a.org_id == principal.org_id.as_uuid())
        .ok_or(TelephonyError::not_found("appointment"))?;
    let access = AppointmentAccess {
        org_id: appointment.org_id.into(),
        team_id: appointment.team_id.map(Into::into),
        host_user_id: appointment.host_user_id.into(),
        guest_user_id: appointment.guest_user_id.map(Into::into),
        setter_user_id: appointment.setter_user_id.map(Into::into),
    };
    if policy::can_access_appointment(principal, &access) {
        Ok(())
    } else {
        Err(TelephonyError::forbidden(
            Code::Forbidden,
            "your role does not give access to this appointment".to_owned(),
        ))
    }
}

/// Inserts an outbound call of `user` after checking their rate limit, under a per-user
/// advisory lock so two replicas cannot both let the eleventh call through. Runs in its own
/// transaction; announces the new call.
pub async fn insert_outbound(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    user: Uuid,
    call: NewCall<'_>,
) -> Result<Call, TelephonyError> {
    let limit = state.config.rate_limit;
    let window = chrono::Duration::from_std(limit.window).unwrap_or(chrono::Duration::MAX);
    let outbox = &state.outbox;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            calls::lock_user(conn, user).await?;
            let now = Utc::now();
            let (count, oldest) = calls::outbound_since(conn, user, now - window).await?;
            if count >= i64::from(limit.calls) {
                let free_at = oldest.unwrap_or(now) + window;
                let wait_ms = u64::try_from((free_at - now).num_milliseconds()).unwrap_or(0);
                return Err(TelephonyError::RateLimited {
                    retry_after_secs: wait_ms.div_ceil(1000).max(1),
                });
            }
            let call = calls::insert(conn, &call).await?;
            events::status_changed(conn, outbox, &call, None, now).await?;
            Ok(call)
        }))
        .await
}

/// Places the call. The row is committed (INITIATED, announced) before Twilio is asked, so the
/// status callbacks that may beat Twilio's answer find it by the `callId` in their URL.
pub async fn initiate(
    state: &AppState,
    principal: &Principal,
    request: Initiate,
) -> Result<Call, TelephonyError> {
    let me = principal.user_id.as_uuid();
    let mut conn = state.conn().await?;
    let number = numbers::find(&mut conn, request.from.as_str())
        .await?
        .filter(|n| n.org_id == principal.org_id.as_uuid() && n.owner_user_id == Some(me))
        .ok_or(TelephonyError::NumberNotOwned)?;
    check_destination(state, &mut conn, &number, &request.to).await?;
    if let Some(appointment) = request.appointment_id {
        check_appointment(&mut conn, principal, appointment).await?;
    }
    let device = caller_device(&number, me)?;
    let record = request.record.unwrap_or(number.record_calls);
    let now = Utc::now();
    let call = insert_outbound(
        state,
        &mut conn,
        me,
        NewCall {
            id: Uuid::now_v7(),
            org_id: number.org_id,
            user_id: Some(me),
            team_id: number.team_id,
            phone_number_id: Some(number.id),
            appointment_id: request.appointment_id,
            direction: Direction::Outbound,
            call_sid: None,
            from_number: request.from.as_str(),
            to_number: request.to.as_str(),
            status: CallStatus::Initiated,
            initiated_at: Some(now),
            ringing_at: None,
            record,
        },
    )
    .await?;
    tracing::info!(call.id = %call.id, to = %phone::redact(request.to.as_str()), "placing a call");

    let create = sb_twilio::NewCall {
        to: device,
        from: number.e164.clone(),
        url: state.public_url(&format!("/webhook/voice/outbound?callId={}", call.id)),
        status_callback: state.public_url(&format!("/webhook/voice/status?callId={}", call.id)),
        timeout_seconds: number.ring_timeout(),
    };
    match state
        .twilio_call("create_call", Resend::IfNotActedOn, || {
            state.twilio.create_call(&create)
        })
        .await
    {
        Ok(resource) if valid_call_sid(&resource.sid) => {
            // One UPDATE: it takes the call's row lock like a callback's transaction does.
            calls::set_sid(&mut conn, call.id, &resource.sid).await?;
            calls::find(&mut conn, call.id)
                .await?
                .ok_or(TelephonyError::not_found("call"))
        }
        Ok(resource) => {
            let error = TwilioError::Unavailable(format!("unexpected CallSid {:?}", resource.sid));
            record_failure(state, &mut conn, &call, &error).await?;
            Err(error.into())
        }
        Err(error) => {
            tracing::warn!(call.id = %call.id, error = %error, "Twilio did not place the call");
            record_failure(state, &mut conn, &call, &error).await?;
            Err(error.into())
        }
    }
}

/// The toll-fraud guard, before anything is written or asked of Twilio: no premium-rate range
/// (`TELEPHONY_BLOCKED_PREFIXES`) and none of the organisation's own numbers (a call to itself
/// costs twice and can loop through its own greeting).
async fn check_destination(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    from: &PhoneNumber,
    to: &E164,
) -> Result<(), TelephonyError> {
    let refused = |detail: String| TelephonyError::CallRefused {
        code: Code::DestinationBlocked,
        field: "to",
        detail,
        twilio_code: None,
    };
    if let Some(prefix) = state.config.destinations.blocked_prefix(to) {
        return Err(refused(format!(
            "numbers starting {prefix} are premium-rate: calls to them are blocked"
        )));
    }
    if numbers::find(conn, to.as_str())
        .await?
        .is_some_and(|own| own.org_id == from.org_id)
    {
        return Err(refused(
            "this is one of your organisation's own numbers".to_owned(),
        ));
    }
    Ok(())
}

/// Keeps what went wrong on the call. A refusal fails the call (announced like any terminal
/// status); when Twilio could not be reached the call may still exist there, so it stays
/// INITIATED: its callbacks will find it, or the follow-up job fails it if none ever comes.
async fn record_failure(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    call: &Call,
    error: &TwilioError,
) -> Result<(), TelephonyError> {
    let code = error.code().and_then(|c| i32::try_from(c).ok());
    let message = error.to_string();
    let refused = matches!(error, TwilioError::Rejected { .. });
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            let locked = calls::lock(conn, call.id).await?;
            calls::set_error(conn, call.id, code, &message).await?;
            if refused {
                status::apply(
                    conn,
                    state,
                    &locked,
                    &status::StatusReport {
                        status: CallStatus::Failed,
                        sequence: None,
                        at: Utc::now(),
                        duration_seconds: None,
                        price: None,
                    },
                )
                .await?;
            }
            Ok(())
        }))
        .await
}

/// Parses Twilio's RFC 2822 `Timestamp`.
pub fn twilio_time(raw: Option<&str>) -> Option<DateTime<Utc>> {
    raw.and_then(|t| DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sids_are_checked() {
        assert!(valid_call_sid("CA0123456789abcdef0123456789abcdef"));
        assert!(!valid_call_sid("CA0123"));
        assert!(!valid_call_sid("RE0123456789abcdef0123456789abcdef"));
        assert!(!valid_call_sid("CA0123456789abcdef0123456789abcdeg"));
    }

    #[test]
    fn twilio_times_parse() {
        let t = twilio_time(Some("Mon, 16 Aug 2010 03:45:01 +0000"));
        assert_eq!(t.map(|t| t.timestamp()), Some(1_281_930_301));
        assert_eq!(twilio_time(Some("yesterday")), None);
    }
}
