//! Monitoring sessions: start, pause, resume, mode changes, token renewal and stop, each
//! audited and announced.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::policy::{self, MonitoredRep};
use sb_auth::{Principal, Role};
use sb_events::outbox::Outbox;
use sb_events::proto::{
    MonitoringSessionModeChanged, MonitoringSessionStarted, MonitoringSessionStopped,
};
use sb_livekit::{ParticipantToken, Preset};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::actions::presence;
use crate::domain::{Identity, Mode, SessionStatus};
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::audit::{self, NewAuditEntry};
use crate::store::reps::{self, Rep};
use crate::store::sessions::{self, NewSession, Session};
use crate::store::settings::{self, Settings};

/// A session and the supervisor's LiveKit connection details.
pub struct Connected {
    pub session: Session,
    pub token: ParticipantToken,
    pub expires_at: DateTime<Utc>,
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
            session_id: session.id,
            actor_id: actor,
            rep_id: session.rep_id,
            action,
            mode,
            detail,
            ip,
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
) -> Result<ParticipantToken, MonitoringError> {
    state
        .tokens
        .issue(
            &session.room_name,
            &session.identity,
            name,
            preset,
            Some(state.config.supervisor_token_ttl),
            None,
        )
        .map_err(MonitoringError::internal)
}

fn preset_of(session: &Session, settings: &Settings) -> Preset {
    if session.status == SessionStatus::Paused {
        Preset::SupervisorPaused
    } else {
        mode_of(session).preset(settings.notify_rep)
    }
}

fn ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.supervisor_token_ttl)
        .unwrap_or(chrono::Duration::minutes(5))
}

/// `POST /monitoring/sessions {repId}`: starts listening (or hands back the open session of this
/// supervisor with a fresh token).
pub async fn start(
    state: &AppState,
    principal: &Principal,
    rep_id: Uuid,
    ip: Option<String>,
) -> Result<(Connected, bool), MonitoringError> {
    require_supervisor(principal)?;
    let mut conn = state.conn().await?;
    let me = principal.user_id.as_uuid();
    let outbox = &state.outbox;
    let expires_at = Utc::now() + ttl(state);
    let ip = ip.as_deref();
    let (session, settings, created) = state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            // Checked first without the lock so out-of-scope reps cost nothing.
            rep_in_scope(conn, principal, rep_id).await?;
            let rep = reps::lock(conn, rep_id)
                .await?
                .ok_or(MonitoringError::not_found("rep"))?;
            let settings = settings::of_org(conn, rep.org_id).await?;
            if !rep.publishing {
                return Err(MonitoringError::conflict(
                    Code::RepOffline,
                    "the rep is not connected with their microphone on",
                ));
            }
            if let Some(open) = sessions::open_of(conn, rep_id, me).await? {
                sessions::set_token_expiry(conn, open.id, expires_at).await?;
                audit_row(conn, &open, Some(me), "renew", mode_of(&open), None, ip).await?;
                let open = sessions::lock(conn, open.id).await?;
                return Ok((open, settings, false));
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
            let identity = Identity::Supervisor(me).to_string();
            let session = sessions::insert(
                conn,
                &NewSession {
                    id: Uuid::now_v7(),
                    org_id: rep.org_id,
                    rep_id,
                    supervisor_id: me,
                    supervisor_role: principal.role.as_str(),
                    room_name: &rep.room_name,
                    identity: &identity,
                    token_expires_at: expires_at,
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
                        target: None,
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
    match state
        .livekit_call(
            "update_participant",
            state
                .livekit
                .set_permissions(&session.room_name, &session.identity, preset),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error.into()),
    }
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
        mode_of(&session).preset(settings.notify_rep)
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
    apply_grants(state, &session, mode.preset(settings.notify_rep)).await?;
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
                        target: None,
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
    match state
        .livekit_call(
            "remove_participant",
            state
                .livekit
                .remove_participant(&session.room_name, &session.identity),
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
                target: None,
            },
        )
        .await?;
    Ok(true)
}
