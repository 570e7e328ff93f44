//! The reconciliation job: LiveKit may never send participant_left, so presence is checked
//! against `ListParticipants`; sessions whose supervisor token expired unrenewed are stopped;
//! a supervisor still in a rep's room without an open session (removing them failed while
//! LiveKit was away) is taken out; who hears a coaching or barging supervisor inside a video
//! call is applied again (a webhook about a newcomer may have been lost).

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use diesel_async::AsyncConnection;
use sb_livekit::protocol::TrackSource;
use sb_platform::Metrics;
use sb_platform::jobs::Job;
use tokio_util::sync::CancellationToken;

use crate::actions::{presence, sessions};
use crate::domain::Identity;
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::{reps, sessions as session_store};

const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub connections_closed: u64,
    pub connections_found: u64,
    pub sessions_expired: u64,
    /// Supervisors removed from a rep's room their session no longer allows them in.
    pub supervisors_removed: u64,
}

/// The job: its passes run in turn every `MONITORING_RECONCILE_INTERVAL`.
pub fn job(state: AppState) -> Job<AppState> {
    let period = state.config.reconcile_interval;
    Job::new("monitoring-reconcile", period, state)
        .pass(
            "rep_connections",
            |s| async move { rep_connections(&s).await },
        )
        .pass(
            "expired_sessions",
            |s| async move { expired_sessions(&s).await },
        )
        .pass("call_audio", |s| async move { call_audio(&s).await })
}

/// Runs the job until `stop`.
pub async fn run(state: AppState, metrics: Metrics, stop: CancellationToken) {
    job(state).run(metrics, stop).await;
}

/// Every pass once, in order, stopping at the first that fails.
pub async fn reconcile_once(state: &AppState) -> Result<ReconcileReport, MonitoringError> {
    let connections = rep_connections(state).await?;
    let sessions_expired = expired_sessions(state).await?;
    call_audio(state).await?;
    Ok(ReconcileReport {
        sessions_expired,
        ..connections
    })
}

/// Reps' connections checked against LiveKit's `ListParticipants`: closed when LiveKit no
/// longer has them, recorded when it has ones we missed; supervisors without an open session
/// taken out of the rep's room.
async fn rep_connections(state: &AppState) -> Result<ReconcileReport, MonitoringError> {
    let mut report = ReconcileReport::default();
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;

    let recent = Utc::now()
        - chrono::Duration::from_std(state.config.rep_token_ttl)
            .unwrap_or(chrono::Duration::minutes(15));
    for rep in reps::possibly_connected(&mut conn, recent, BATCH).await? {
        // A connection LiveKit reported after this moment may be missing from the list below
        // only because the list is older: it is left for the next pass.
        let listed_at = Utc::now()
            - chrono::Duration::from_std(state.config.reconcile_min_age).unwrap_or_default();
        let present = match state
            .livekit_call(
                "list_participants",
                state.livekit.list_participants(&rep.room_name),
            )
            .await
        {
            Ok(list) => list,
            Err(error) if error.is_not_found() => Vec::new(),
            // LiveKit away is not this rep's problem: end the pass rather than wait out the
            // timeout once per rep; the next pass retries.
            Err(error) if error.is_unavailable() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(rep.id = %rep.user_id, error = %error, "cannot list the rep's room");
                continue;
            }
        };
        for participant in &present {
            let Ok(Identity::Supervisor(supervisor)) = participant.identity.parse() else {
                continue;
            };
            if session_store::open_of(&mut conn, rep.user_id, supervisor)
                .await?
                .is_some()
            {
                continue;
            }
            match state
                .livekit_call(
                    "remove_participant",
                    state
                        .livekit
                        .remove_participant(&rep.room_name, &participant.identity),
                )
                .await
            {
                Ok(()) => report.supervisors_removed += 1,
                Err(error) if error.is_not_found() => {}
                Err(error) if error.is_unavailable() => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(rep.id = %rep.user_id, error = %error, "cannot remove a supervisor without a session");
                }
            }
        }
        let identity = Identity::Rep(rep.user_id).to_string();
        let live: Vec<_> = present.iter().filter(|p| p.identity == identity).collect();
        let live_sids: HashSet<&str> = live.iter().map(|p| p.sid.as_str()).collect();
        let (closed, found) = state
            .outbox
            .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
                let now = Utc::now();
                let known = reps::connections(conn, rep.user_id).await?;
                let mut closed = 0;
                for connection in known
                    .iter()
                    .filter(|c| c.left_at.is_none() && c.joined_at.is_none_or(|at| at < listed_at))
                {
                    if !live_sids.contains(connection.sid.as_str()) {
                        reps::record_connection(
                            conn,
                            rep.user_id,
                            &connection.sid,
                            None,
                            Some((now, "reconciled")),
                        )
                        .await?;
                        closed += 1;
                    }
                }
                let mut found = 0;
                for participant in &live {
                    if !known.iter().any(|c| c.sid == participant.sid) {
                        found += 1;
                    }
                    let joined = Utc
                        .timestamp_opt(participant.joined_at, 0)
                        .single()
                        .filter(|_| participant.joined_at > 0);
                    reps::record_connection(
                        conn,
                        rep.user_id,
                        &participant.sid,
                        joined.or(Some(now)),
                        None,
                    )
                    .await?;
                    for track in participant
                        .tracks
                        .iter()
                        .filter(|t| t.source == TrackSource::Microphone as i32)
                    {
                        reps::record_track(
                            conn,
                            rep.user_id,
                            &participant.sid,
                            &track.sid,
                            Some(now),
                            None,
                        )
                        .await?;
                    }
                }
                presence::refresh(conn, outbox, rep.user_id).await?;
                Ok((closed, found))
            }))
            .await?;
        report.connections_closed += closed;
        report.connections_found += found;
    }
    Ok(report)
}

/// Sessions whose supervisor token expired unrenewed are stopped.
async fn expired_sessions(state: &AppState) -> Result<u64, MonitoringError> {
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let mut expired = 0;
    for session in session_store::expired(&mut conn, Utc::now()).await? {
        let stopped = state
            .outbox
            .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
                let session = session_store::lock(conn, session.id).await?;
                if session.token_expires_at >= Utc::now() {
                    return Ok(false);
                }
                let stopped =
                    sessions::stop_in(conn, outbox, &session, None, "token_expired", None).await?;
                presence::refresh(conn, outbox, session.rep_id).await?;
                Ok(stopped)
            }))
            .await?;
        if stopped {
            expired += 1;
            sessions::disconnect(state, &session).await;
        }
    }
    Ok(expired)
}

/// Coaching and barging supervisors inside video calls: their audio routed again.
async fn call_audio(state: &AppState) -> Result<u64, MonitoringError> {
    let mut conn = state.conn().await?;
    let open = session_store::speaking_in_calls(&mut conn, BATCH).await?;
    drop(conn);
    let mut routed = 0;
    for session in open {
        sessions::route_supervisor_audio(state, &session).await?;
        routed += 1;
    }
    Ok(routed)
}
