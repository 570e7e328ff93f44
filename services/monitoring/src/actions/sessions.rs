//! Monitoring sessions: start, pause, resume, mode changes, token renewal and stop, each
//! audited and announced; refused starts are audited too. A session supervises the rep's side
//! room, the LiveKit room of their video call, or their phone call's conference (telephony
//! brings the supervisor in from the events).

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::policy::{self, MonitoredRep};
use sb_auth::{Principal, Role};
use sb_events::outbox::Outbox;
use sb_events::proto::{
    MonitoringSessionModeChanged, MonitoringSessionStarted, MonitoringSessionStopped,
    MonitoringSessionTarget,
};
use sb_livekit::{ParticipantToken, Preset};
use sb_platform::ApiErrorExt as _;
use sb_platform::phone::E164;
use sb_platform::{ApiError, Code, Problem};
use uuid::Uuid;

use crate::actions::presence;
use crate::domain::{self, Identity, Mode, SessionStatus, TargetChoice, TargetKind};
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::audit::{self, NewAuditEntry};
use crate::store::reps::{self, Rep};
use crate::store::sessions::{self, NewSession, Session};
use crate::store::settings::{self, Settings};

/// A session and the supervisor's LiveKit connection details (none for a phone call: Twilio
/// rings the supervisor).
pub struct Connected {
    pub session: Session,
    pub token: Option<ParticipantToken>,
    pub expires_at: DateTime<Utc>,
}

/// How Twilio reaches a supervisor joining a rep's phone call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneRoute {
    /// The supervisor's app (telephony's Voice SDK client identity).
    App,
    /// A phone number, as the client typed it (validated when the session starts).
    Number(String),
}

/// What `POST /monitoring/sessions` asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub rep_id: Uuid,
    pub target: TargetChoice,
    pub phone: PhoneRoute,
}

/// The target as events carry it.
pub fn target_of(session: &Session) -> MonitoringSessionTarget {
    MonitoringSessionTarget {
        kind: session.target.proto() as i32,
        call_id: session.call_id.map(|id| id.to_string()).unwrap_or_default(),
        room_name: session.room_name.clone().unwrap_or_default(),
        supervisor_address: session.supervisor_address.clone().unwrap_or_default(),
    }
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn mode_of(session: &Session) -> Mode {
    session.mode
}

/// Whether `principal` may monitor `rep` (the policy's scope rule).
pub fn can_monitor(principal: &Principal, rep: &Rep) -> bool {
    let Ok(role) = rep.role.parse::<Role>() else {
        return false;
    };
    policy::can_monitor(
        principal,
        &MonitoredRep {
            user_id: rep.user_id.into(),
            org_id: rep.org_id.into(),
            role,
            teams: rep.team_ids().into_iter().map(Into::into).collect(),
        },
    )
}

fn require_supervisor(principal: &Principal) -> Result<(), MonitoringError> {
    if principal.role.is_supervisor() {
        Ok(())
    } else {
        Err(MonitoringError::forbidden(
            Code::Forbidden,
            "only supervisors (ADMIN, CEO, DIRECTOR, MANAGER) may monitor",
        ))
    }
}

/// The rep if `principal` may monitor them; anything else is 404.
pub async fn rep_in_scope(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    rep_id: Uuid,
) -> Result<Rep, MonitoringError> {
    reps::find(conn, rep_id)
        .await?
        .filter(|rep| can_monitor(principal, rep))
        .ok_or(MonitoringError::not_found("rep"))
}

/// The session if `principal` may act on it: its supervisor, or a leader of the org (CEO,
/// DIRECTOR, ADMIN) who may monitor the rep. A supervisor who can see the rep but does not own
/// the session gets 403; anyone else 404.
async fn session_for(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<Session, MonitoringError> {
    require_supervisor(principal)?;
    let session = sessions::find(conn, id)
        .await?
        .ok_or(MonitoringError::not_found("session"))?;
    let rep = rep_in_scope(conn, principal, session.rep_id)
        .await
        .map_err(|_| MonitoringError::not_found("session"))?;
    let own = session.supervisor_id == principal.user_id.as_uuid();
    let leader = matches!(principal.role, Role::Admin | Role::Ceo | Role::Director);
    if own || leader {
        let _ = rep;
        Ok(session)
    } else {
        Err(MonitoringError::forbidden(
            Code::NotYourSession,
            "another supervisor's session",
        ))
    }
}

async fn audit_row(
    conn: &mut AsyncPgConnection,
    session: &Session,
    actor: Option<Uuid>,
    action: &str,
    mode: Mode,
    detail: Option<&str>,
    ip: Option<&str>,
) -> Result<(), MonitoringError> {
    audit::append(
        conn,
        &NewAuditEntry {
            id: Uuid::now_v7(),
            org_id: session.org_id,
            session_id: Some(session.id),
            actor_id: actor,
            rep_id: session.rep_id,
            action,
            mode,
            detail,
            ip,
            target: Some(session.target.as_str()),
        },
    )
    .await?;
    Ok(())
}

fn token(
    state: &AppState,
    session: &Session,
    name: &str,
    preset: Preset,
) -> Result<Option<ParticipantToken>, MonitoringError> {
    let Some(room) = session.room_name.as_deref() else {
        return Ok(None);
    };
    state
        .tokens
        .issue(
            room,
            &session.identity,
            name,
            preset,
            Some(state.config.supervisor_token_ttl),
            None,
        )
        .map(Some)
        .map_err(MonitoringError::internal)
}

/// The grants of a supervisor in `mode` on `target`. Inside a customer's call a listener stays
/// hidden whatever the org tells its reps: the customer must not see a silent stranger.
fn preset_for(target: TargetKind, mode: Mode, notify_rep: bool) -> Preset {
    mode.preset(notify_rep && target == TargetKind::SideRoom)
}

fn preset_of(session: &Session, settings: &Settings) -> Preset {
    if session.status == SessionStatus::Paused {
        Preset::SupervisorPaused
    } else {
        preset_for(session.target, mode_of(session), settings.notify_rep)
    }
}

fn ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.supervisor_token_ttl)
        .unwrap_or(chrono::Duration::minutes(5))
}

/// Why a start was refused, as its audit row says it (`None`: not a refusal but a failure,
/// e.g. the database or LiveKit away).
fn refusal(error: &MonitoringError) -> Option<&'static str> {
    match error {
        MonitoringError::Api(ApiError::NotFound(_)) => Some("not_found"),
        MonitoringError::Api(
            ApiError::Forbidden { code, .. } | ApiError::Conflict { code, .. },
        ) => Some(code.as_str()),
        MonitoringError::Api(ApiError::Problem(problem)) if problem.status().is_client_error() => {
            Some(problem.code().as_str())
        }
        MonitoringError::Api(ApiError::Invalid { .. }) => Some(Code::InvalidField.as_str()),
        _ => None,
    }
}

/// Audits a refused start in its own transaction (the refused one rolled back). A rep the
/// caller may not see is recorded in the caller's org with only what the caller sent, so the
/// row tells nothing the caller did not already know; otherwise in the rep's org.
async fn audit_refusal(
    state: &AppState,
    principal: &Principal,
    request: &StartRequest,
    reason: &str,
    ip: Option<&str>,
) -> Result<(), MonitoringError> {
    let mut conn = state.conn().await?;
    let visible = if reason == "not_found" || reason == Code::Forbidden.as_str() {
        None
    } else {
        reps::find(&mut conn, request.rep_id)
            .await?
            .filter(|rep| can_monitor(principal, rep))
    };
    let org_id = visible.map_or(principal.org_id.as_uuid(), |rep| rep.org_id);
    audit::append(
        &mut conn,
        &NewAuditEntry {
            id: Uuid::now_v7(),
            org_id,
            session_id: None,
            actor_id: Some(principal.user_id.as_uuid()),
            rep_id: request.rep_id,
            action: "refuse",
            mode: Mode::Listen,
            detail: Some(reason),
            ip,
            target: Some(request.target.as_str()),
        },
    )
    .await?;
    Ok(())
}

/// `POST /monitoring/sessions {repId, target?, phone?}`: starts listening (or hands back the
/// open session of this supervisor with a fresh token). A refusal is audited.
pub async fn start(
    state: &AppState,
    principal: &Principal,
    request: &StartRequest,
    ip: Option<String>,
) -> Result<(Connected, bool), MonitoringError> {
    let result = start_checked(state, principal, request, ip.as_deref()).await;
    if let Err(error) = &result
        && let Some(reason) = refusal(error)
    {
        state.metrics.transition("refuse");
        if let Err(audit_error) =
            audit_refusal(state, principal, request, reason, ip.as_deref()).await
        {
            tracing::error!(error = %audit_error, reason, "a refused monitoring attempt was not audited");
        }
    }
    result
}

async fn start_checked(
    state: &AppState,
    principal: &Principal,
    request: &StartRequest,
    ip: Option<&str>,
) -> Result<(Connected, bool), MonitoringError> {
    require_supervisor(principal)?;
    let rep_id = request.rep_id;
    let me = principal.user_id.as_uuid();
    let phone_address = match &request.phone {
        PhoneRoute::App => domain::voice_client(me),
        PhoneRoute::Number(raw) => E164::parse(raw).map(E164::into_inner).map_err(|detail| {
            MonitoringError::from(ApiError::from(
                Problem::new(Code::InvalidPhoneNumber)
                    .with_detail(format!("phone.number {detail}"))
                    .with_extension("field", "phone.number"),
            ))
        })?,
    };
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let expires_at = Utc::now() + ttl(state);
    let (session, settings, created) = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            // Checked first without the lock so out-of-scope reps cost nothing.
            rep_in_scope(conn, principal, rep_id).await?;
            let rep = reps::lock(conn, rep_id)
                .await?
                .ok_or(MonitoringError::not_found("rep"))?;
            let settings = settings::of_org(conn, rep.org_id).await?;
            if let Some(open) = sessions::open_of(conn, rep_id, me).await? {
                sessions::set_token_expiry(conn, open.id, expires_at).await?;
                audit_row(conn, &open, Some(me), "renew", mode_of(&open), None, ip).await?;
                let open = sessions::lock(conn, open.id).await?;
                return Ok((open, settings, false));
            }
            let call = reps::live_call(conn, rep_id).await?;
            let (target, call_id, call_room) = domain::pick_target(
                request.target,
                call.as_ref()
                    .map(|(kind, id, room)| (kind.as_str(), *id, room.as_deref())),
            )
            .ok_or_else(|| {
                MonitoringError::conflict(
                    Code::CallNotLive,
                    "the rep is on no call that can be supervised",
                )
            })?;
            // The side room carries only what the rep publishes there; a call is heard whether
            // or not the rep's monitoring app is connected.
            if target == TargetKind::SideRoom && !rep.publishing {
                return Err(MonitoringError::conflict(
                    Code::RepOffline,
                    "the rep is not connected with their microphone on",
                ));
            }
            let open = sessions::open_of_rep(conn, rep_id).await?;
            if open.len() >= usize::try_from(settings.max_supervisors_per_rep).unwrap_or(1) {
                return Err(MonitoringError::conflict(
                    Code::TooManySupervisors,
                    format!(
                        "{} supervisor(s) already monitor this rep (the org allows {})",
                        open.len(),
                        settings.max_supervisors_per_rep
                    ),
                ));
            }
            let room_name = match target {
                TargetKind::SideRoom => Some(rep.room_name.clone()),
                TargetKind::VideoCall => call_room,
                TargetKind::PhoneCall => None,
            };
            let identity = Identity::Supervisor(me).to_string();
            let session = sessions::insert(
                conn,
                &NewSession {
                    id: Uuid::now_v7(),
                    org_id: rep.org_id,
                    rep_id,
                    supervisor_id: me,
                    supervisor_role: principal.role.as_str(),
                    room_name: room_name.as_deref(),
                    identity: &identity,
                    token_expires_at: expires_at,
                    target,
                    call_id,
                    supervisor_address: (target == TargetKind::PhoneCall)
                        .then_some(phone_address.as_str()),
                },
            )
            .await?;
            audit_row(conn, &session, Some(me), "start", Mode::Listen, None, ip).await?;
            outbox
                .enqueue(
                    conn,
                    &MonitoringSessionStarted {
                        session_id: session.id.to_string(),
                        org_id: session.org_id.to_string(),
                        supervisor_user_id: me.to_string(),
                        rep_user_id: rep_id.to_string(),
                        mode: Mode::Listen.proto() as i32,
                        started_at_unix_ms: ms(session.started_at),
                        target: Some(target_of(&session)),
                    },
                )
                .await?;
            presence::refresh(conn, outbox, rep_id).await?;
            Ok((session, settings, true))
        }))
        .await?;
    state
        .metrics
        .transition(if created { "start" } else { "renew" });
    let name = principal
        .name
        .clone()
        .unwrap_or_else(|| "Supervisor".to_owned());
    let token = token(state, &session, &name, preset_of(&session, &settings))?;
    Ok((
        Connected {
            session,
            token,
            expires_at,
        },
        created,
    ))
}

/// `POST /monitoring/sessions/{id}/token`: a fresh token for an open session.
pub async fn renew(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    ip: Option<String>,
) -> Result<Connected, MonitoringError> {
    let mut conn = state.conn().await?;
    let session = session_for(&mut conn, principal, id).await?;
    if session.supervisor_id != principal.user_id.as_uuid() {
        return Err(MonitoringError::forbidden(
            Code::NotYourSession,
            "only the session's supervisor may renew its token",
        ));
    }
    let expires_at = Utc::now() + ttl(state);
    let ip = ip.as_deref();
    let (session, settings) = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            let session = sessions::lock(conn, id).await?;
            if session.status == SessionStatus::Stopped {
                return Err(MonitoringError::conflict(
                    Code::SessionStopped,
                    "the session has stopped",
                ));
            }
            sessions::set_token_expiry(conn, id, expires_at).await?;
            audit_row(
                conn,
                &session,
                Some(principal.user_id.as_uuid()),
                "renew",
                mode_of(&session),
                None,
                ip,
            )
            .await?;
            let settings = settings::of_org(conn, session.org_id).await?;
            Ok((session, settings))
        }))
        .await?;
    state.metrics.transition("renew");
    let name = principal
        .name
        .clone()
        .unwrap_or_else(|| "Supervisor".to_owned());
    let token = token(state, &session, &name, preset_of(&session, &settings))?;
    Ok(Connected {
        session,
        token,
        expires_at,
    })
}

/// Applies `preset` to the supervisor if connected. Not connected is fine: the next token
/// (renewal) carries the new grants. Unreachable LiveKit is a 503 and nothing changes.
async fn apply_grants(
    state: &AppState,
    session: &Session,
    preset: Preset,
) -> Result<(), MonitoringError> {
    let Some(room) = session.room_name.as_deref() else {
        // A phone call: telephony updates the conference participant from the event.
        return Ok(());
    };
    match state
        .livekit_call(
            "update_participant",
            state
                .livekit
                .set_permissions(room, &session.identity, preset),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Who hears a supervisor's microphone in a video call, enforced by the SFU: coaching, only
/// the rep (every other participant is unsubscribed from the supervisor's tracks); barging,
/// everyone (subscribed again). Re-applied when someone joins or the supervisor publishes
/// (LiveKit webhooks) and by the reconciliation job, since a newcomer auto-subscribes.
pub async fn route_supervisor_audio(
    state: &AppState,
    session: &Session,
) -> Result<(), MonitoringError> {
    let (TargetKind::VideoCall, Some(room)) = (session.target, session.room_name.as_deref()) else {
        return Ok(());
    };
    let coaching = session.status == SessionStatus::Active && session.mode == Mode::Coach;
    let barging = session.status == SessionStatus::Active && session.mode == Mode::Barge;
    if !coaching && !barging {
        // Listening or paused: the grants allow no publication, so there is nothing to route.
        return Ok(());
    }
    let participants = match state
        .livekit_call("list_participants", state.livekit.list_participants(room))
        .await
    {
        Ok(list) => list,
        Err(error) if error.is_not_found() => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let tracks: Vec<String> = participants
        .iter()
        .filter(|p| p.identity == session.identity)
        .flat_map(|p| p.tracks.iter().map(|t| t.sid.clone()))
        .collect();
    if tracks.is_empty() {
        return Ok(());
    }
    let rep = domain::call_identity(session.rep_id);
    for participant in participants
        .iter()
        .filter(|p| p.identity != session.identity && p.identity != rep)
    {
        match state
            .livekit_call(
                "update_subscriptions",
                state.livekit.update_subscriptions(
                    room,
                    &participant.identity,
                    tracks.clone(),
                    barging,
                ),
            )
            .await
        {
            Ok(()) => {}
            // Left meanwhile.
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Pause (ACTIVE → PAUSED) or resume (PAUSED → ACTIVE).
pub async fn set_paused(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    pause: bool,
    ip: Option<String>,
) -> Result<Session, MonitoringError> {
    let mut conn = state.conn().await?;
    let session = session_for(&mut conn, principal, id).await?;
    let (from, to, action) = if pause {
        (SessionStatus::Active, SessionStatus::Paused, "pause")
    } else {
        (SessionStatus::Paused, SessionStatus::Active, "resume")
    };
    if session.status != from {
        return Err(MonitoringError::conflict(
            Code::InvalidTransition,
            format!(
                "the session is {}, not {}",
                session.status.as_str(),
                from.as_str()
            ),
        ));
    }
    let settings = settings::of_org(&mut conn, session.org_id).await?;
    let preset = if pause {
        Preset::SupervisorPaused
    } else {
        preset_for(session.target, mode_of(&session), settings.notify_rep)
    };
    apply_grants(state, &session, preset).await?;
    let outbox = &state.outbox;
    let ip = ip.as_deref();
    let session = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            let session = sessions::lock(conn, id).await?;
            if session.status != from {
                return Err(MonitoringError::conflict(
                    Code::InvalidTransition,
                    "the session changed meanwhile",
                ));
            }
            sessions::set_status(conn, id, to).await?;
            audit_row(
                conn,
                &session,
                Some(principal.user_id.as_uuid()),
                action,
                mode_of(&session),
                None,
                ip,
            )
            .await?;
            presence::refresh(conn, outbox, session.rep_id).await?;
            Ok(sessions::lock(conn, id).await?)
        }))
        .await?;
    state.metrics.transition(action);
    if !pause {
        // A resumed coach publishes again under a new track: the webhook re-applies the
        // routing; applying it now covers a track that survived.
        if let Err(error) = route_supervisor_audio(state, &session).await {
            tracing::warn!(session.id = %session.id, error = %error, "supervisor audio not routed on resume; the webhook and the job retry");
        }
    }
    Ok(session)
}

/// `POST /monitoring/sessions/{id}/mode`: listen, coach or barge, as the org allows.
pub async fn set_mode(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    mode: Mode,
    ip: Option<String>,
) -> Result<Session, MonitoringError> {
    let mut conn = state.conn().await?;
    let session = session_for(&mut conn, principal, id).await?;
    let settings = settings::of_org(&mut conn, session.org_id).await?;
    let allowed = match mode {
        Mode::Listen => true,
        Mode::Coach => settings.allow_coach,
        Mode::Barge => settings.allow_barge,
    };
    if !allowed {
        return Err(MonitoringError::forbidden(
            Code::ModeNotAllowed,
            format!("the organisation does not allow {} mode", mode.as_str()),
        ));
    }
    if session.status != SessionStatus::Active {
        return Err(MonitoringError::conflict(
            Code::SessionNotActive,
            format!("the session is {}", session.status.as_str()),
        ));
    }
    let previous = mode_of(&session);
    if previous == mode {
        return Ok(session);
    }
    apply_grants(
        state,
        &session,
        preset_for(session.target, mode, settings.notify_rep),
    )
    .await?;
    // Coach → barge: the supervisor's live track reaches everyone again; barge → coach: only
    // the rep. Done before the change commits so a failure leaves the previous mode in force.
    let routed = Session {
        mode,
        ..session.clone()
    };
    if let Err(error) = route_supervisor_audio(state, &routed).await {
        apply_grants(
            state,
            &session,
            preset_for(session.target, previous, settings.notify_rep),
        )
        .await
        .ok();
        return Err(error);
    }
    let outbox = &state.outbox;
    let ip = ip.as_deref();
    let session = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            let session = sessions::lock(conn, id).await?;
            sessions::set_mode(conn, id, mode).await?;
            audit_row(
                conn,
                &session,
                Some(principal.user_id.as_uuid()),
                "mode_change",
                mode,
                Some(previous.as_str()),
                ip,
            )
            .await?;
            outbox
                .enqueue(
                    conn,
                    &MonitoringSessionModeChanged {
                        session_id: session.id.to_string(),
                        org_id: session.org_id.to_string(),
                        supervisor_user_id: session.supervisor_id.to_string(),
                        rep_user_id: session.rep_id.to_string(),
                        previous_mode: previous.proto() as i32,
                        mode: mode.proto() as i32,
                        changed_at_unix_ms: Utc::now().timestamp_millis(),
                        target: Some(target_of(&session)),
                    },
                )
                .await?;
            Ok(sessions::lock(conn, id).await?)
        }))
        .await?;
    state.metrics.transition("mode_change");
    Ok(session)
}

/// `POST /monitoring/sessions/{id}/stop`.
pub async fn stop(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    ip: Option<String>,
) -> Result<Session, MonitoringError> {
    let mut conn = state.conn().await?;
    let session = session_for(&mut conn, principal, id).await?;
    let outbox = &state.outbox;
    let ip = ip.as_deref();
    let stopped = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            let session = sessions::lock(conn, id).await?;
            let stopped = stop_in(
                conn,
                outbox,
                &session,
                Some(principal.user_id.as_uuid()),
                "supervisor",
                ip,
            )
            .await?;
            presence::refresh(conn, outbox, session.rep_id).await?;
            Ok(stopped)
        }))
        .await?;
    if stopped {
        disconnect(state, &session).await;
    }
    sessions::find(&mut conn, id)
        .await?
        .ok_or(MonitoringError::not_found("session"))
}

/// Takes the supervisor out of the rep's room once their session stopped. Best effort: a
/// LiveKit token is only checked when connecting, so a supervisor this fails to remove would stay
/// connected; the reconciliation job removes them once LiveKit answers again.
pub async fn disconnect(state: &AppState, session: &Session) {
    let Some(room) = session.room_name.as_deref() else {
        // A phone call: telephony removes the conference participant on the stopped event.
        return;
    };
    match state
        .livekit_call(
            "remove_participant",
            state.livekit.remove_participant(room, &session.identity),
        )
        .await
    {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => {
            tracing::warn!(session.id = %session.id, error = %error, "supervisor not removed from the rep's room; the reconciliation job retries");
        }
    }
}

/// Stops `session` in the caller's transaction (audit + event); `false` if already stopped.
pub async fn stop_in(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    session: &Session,
    actor: Option<Uuid>,
    reason: &str,
    ip: Option<&str>,
) -> Result<bool, MonitoringError> {
    let now = Utc::now();
    if sessions::stop(conn, session.id, now, reason).await? == 0 {
        return Ok(false);
    }
    audit_row(
        conn,
        session,
        actor,
        "stop",
        mode_of(session),
        Some(reason),
        ip,
    )
    .await?;
    outbox
        .enqueue(
            conn,
            &MonitoringSessionStopped {
                session_id: session.id.to_string(),
                org_id: session.org_id.to_string(),
                supervisor_user_id: session.supervisor_id.to_string(),
                rep_user_id: session.rep_id.to_string(),
                started_at_unix_ms: ms(session.started_at),
                stopped_at_unix_ms: ms(now),
                duration_seconds: (now - session.started_at).num_seconds().max(0),
                target: Some(target_of(session)),
            },
        )
        .await?;
    Ok(true)
}
