//! A rep's status, recomputed from the facts (connections, microphone tracks, calls, sessions)
//! whenever one of them changes, inside the caller's transaction with the rep row locked.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use sb_events::outbox::Outbox;
use sb_events::proto::RepPresenceChanged;
use uuid::Uuid;

use crate::actions::sessions;
use crate::domain::{self, RepStatus, SessionStatus, TargetKind};
use crate::error::MonitoringError;
use crate::store::reps;
use crate::store::sessions as session_store;

/// Recomputes `rep_id`'s status; announces a change, and stops the side-room sessions of a rep
/// who is no longer publishing (there is nothing left to hear there).
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    outbox: &Outbox,
    rep_id: Uuid,
) -> Result<Option<RepStatus>, MonitoringError> {
    let Some(rep) = reps::lock(conn, rep_id).await? else {
        return Ok(None);
    };
    let connections = reps::connections(conn, rep_id).await?;
    let tracks = reps::tracks(conn, rep_id).await?;
    let publishing = domain::publishing(&connections, &tracks);
    if !publishing {
        // Only the side room goes silent with the rep's monitoring app; a session inside a
        // call ends with the call.
        for session in session_store::open_of_rep(conn, rep_id)
            .await?
            .into_iter()
            .filter(|s| s.target == TargetKind::SideRoom)
        {
            sessions::stop_in(conn, outbox, &session, None, "rep_offline", None).await?;
        }
    }
    let listened_by: Vec<String> = session_store::open_of_rep(conn, rep_id)
        .await?
        .into_iter()
        .filter(|s| s.status == SessionStatus::Active)
        .map(|s| s.supervisor_id.to_string())
        .collect();
    let on_call = reps::current_call(conn, rep_id).await?.is_some();
    let status = RepStatus::derive(publishing, !listened_by.is_empty(), on_call);
    let previous = rep.status;
    if status == previous && publishing == rep.publishing {
        return Ok(None);
    }
    reps::write_status(conn, rep_id, status, publishing).await?;
    if status != previous {
        outbox
            .enqueue(
                conn,
                &RepPresenceChanged {
                    org_id: rep.org_id.to_string(),
                    rep_user_id: rep_id.to_string(),
                    previous_status: previous.proto() as i32,
                    status: status.proto() as i32,
                    listened_by,
                    changed_at_unix_ms: Utc::now().timestamp_millis(),
                },
            )
            .await?;
    }
    Ok(Some(status))
}
