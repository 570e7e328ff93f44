//! Reconciliation with LiveKit, for what lost webhooks leave behind: rooms that could not be
//! created, calls whose last participant_left never came, recordings stuck or never reported.

use chrono::Utc;
use diesel_async::AsyncConnection;
use sb_platform::Metrics;
use sb_platform::jobs::Job;
use tokio_util::sync::CancellationToken;

use crate::actions::{calls as call_actions, presence, recording, recording_files};
use crate::domain::call::Identity;
use crate::domain::call::{CallStatus, EgressState};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::{calls, meetings, recordings};

/// How many calls and recordings one pass looks at.
const BATCH: i64 = 200;

/// What one pass repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub rooms_created: u64,
    pub calls_completed: u64,
    pub recordings_updated: u64,
    pub recordings_failed: u64,
    /// Meeting members marked out because LiveKit no longer had them.
    pub meeting_members_left: u64,
    /// Recordings deleted because they outlived `VIDEO_RECORDING_RETENTION`.
    pub recordings_deleted: u64,
}

/// The job: its passes run in turn every `VIDEO_RECONCILE_INTERVAL`.
pub fn job(state: AppState) -> Job<AppState> {
    let period = state.config.reconcile.interval;
    Job::new("video-reconcile", period, state)
        .pass(
            "active_calls",
            |s| async move { count_active_calls(&s).await },
        )
        .pass("missing_rooms", |s| async move {
            create_missing_rooms(&s).await
        })
        .pass(
            "empty_calls",
            |s| async move { complete_empty_calls(&s).await },
        )
        .pass("recordings", |s| async move { settle_recordings(&s).await })
        .pass(
            "meeting_presence",
            |s| async move { meeting_presence(&s).await },
        )
        .pass("recording_retention", |s| async move {
            delete_expired_recordings(&s).await
        })
}

/// Runs the job until `stop`.
pub async fn run(state: AppState, metrics: Metrics, stop: CancellationToken) {
    job(state).run(metrics, stop).await;
}

/// Every pass once, in order, stopping at the first that fails. LiveKit not answering (a
/// timeout, a 5xx) is not one room's problem: a pass ends there with the error instead of
/// waiting out `LIVEKIT_TIMEOUT` once per call, so a pass takes at most about one timeout while
/// LiveKit is away, and the next run retries.
pub async fn reconcile_once(state: &AppState) -> Result<ReconcileReport, VideoError> {
    count_active_calls(state).await?;
    let rooms_created = create_missing_rooms(state).await?;
    let calls_completed = complete_empty_calls(state).await?;
    let recordings = settle_recordings(state).await?;
    let meeting_members_left = meeting_presence(state).await?;
    let recordings_deleted = delete_expired_recordings(state).await?;
    Ok(ReconcileReport {
        rooms_created,
        calls_completed,
        recordings_updated: recordings.updated,
        recordings_failed: recordings.failed,
        meeting_members_left,
        recordings_deleted,
    })
}

/// Recordings older than `VIDEO_RECORDING_RETENTION`, deleted from the bucket and here.
pub async fn delete_expired_recordings(state: &AppState) -> Result<u64, VideoError> {
    let deleted = recording_files::delete_expired(state).await?;
    state.metrics.reconciled("recording_deleted", deleted);
    Ok(deleted)
}

/// The `sb_video_active_calls` gauge, from the database (every replica reports the same).
async fn count_active_calls(state: &AppState) -> Result<(), VideoError> {
    let mut conn = state.conn().await?;
    state
        .metrics
        .set_active_calls(calls::count_ongoing(&mut conn).await?);
    Ok(())
}

/// Calls whose LiveKit room could not be created when they started.
async fn create_missing_rooms(state: &AppState) -> Result<u64, VideoError> {
    let mut conn = state.conn().await?;
    let mut created = 0;
    for call in calls::calls_without_room(&mut conn, BATCH).await? {
        if call_actions::ensure_room(state, &mut conn, &call)
            .await
            .is_ok()
            && calls::find(&mut conn, call.id)
                .await?
                .is_some_and(|c| c.room_created)
        {
            created += 1;
        }
    }
    state.metrics.reconciled("room_created", created);
    Ok(created)
}

/// Ongoing calls whose room has been empty (or gone) for the grace period: whoever we still
/// think is in left without LiveKit telling us, and the call completes.
async fn complete_empty_calls(state: &AppState) -> Result<u64, VideoError> {
    let mut conn = state.conn().await?;
    let mut completed_calls = 0;
    let grace = chrono::Duration::from_std(state.config.reconcile.empty_grace)
        .unwrap_or(chrono::Duration::MAX);
    for call in calls::open_calls(&mut conn, BATCH).await? {
        if call.status != CallStatus::Ongoing
            || !call.room_created
            || Utc::now() - call.updated_at < grace
        {
            continue;
        }
        // Someone LiveKit reports joining after this moment may be missing from the list only
        // because the list is older (a few seconds of clock skew allowed).
        let listed_at = Utc::now() - chrono::Duration::seconds(5);
        let present = match state
            .livekit_call(
                "list_participants",
                state.livekit.list_participants(&call.room_name),
            )
            .await
        {
            Ok(list) => list,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) if error.is_unavailable() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(call.id = %call.id, error = %error, "cannot list participants");
                continue;
            }
        };
        // Only call participants keep a call going: a monitoring supervisor (`sup_…`) or a
        // recorder left in the room does not.
        if present
            .iter()
            .any(|p| p.identity.parse::<Identity>().is_ok())
        {
            continue;
        }
        // The room is empty (or gone) and has been for the grace period: whoever we still
        // think is in left without LiveKit telling us.
        let outbox = &state.outbox;
        let completed = state
            .outbox
            .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
                let call = calls::lock(conn, call.id).await?;
                if call.status != CallStatus::Ongoing
                    || calls::joined_since(conn, call.id, listed_at).await?
                {
                    return Ok(false);
                }
                calls::close_open_sessions(conn, call.id, None, Utc::now(), "reconciled").await?;
                let identities: Vec<String> = calls::participants(conn, call.id)
                    .await?
                    .into_iter()
                    .filter(|p| p.active)
                    .map(|p| p.identity)
                    .collect();
                let identities: Vec<&str> = identities.iter().map(String::as_str).collect();
                let refreshed =
                    presence::refresh(conn, outbox, &call, &identities, Some("reconciled")).await?;
                Ok(refreshed.completed)
            }))
            .await?;
        if completed {
            completed_calls += 1;
            recording::stop_for_call(state, &mut conn, call.id).await;
        }
    }
    state.metrics.reconciled("call_completed", completed_calls);
    Ok(completed_calls)
}

/// What the recordings pass settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordingsSettled {
    pub updated: u64,
    pub failed: u64,
}

/// Recordings stuck or never reported: settled from `ListEgress`, or failed.
async fn settle_recordings(state: &AppState) -> Result<RecordingsSettled, VideoError> {
    let mut conn = state.conn().await?;
    let mut settled = RecordingsSettled::default();
    let stuck_after = chrono::Duration::from_std(state.config.recording.stuck_after)
        .unwrap_or(chrono::Duration::MAX);
    for recording_row in recordings::unfinished(&mut conn, BATCH).await? {
        let Some(call) = calls::find(&mut conn, recording_row.call_id).await? else {
            continue;
        };
        let known = match state
            .livekit_call("list_egress", state.livekit.list_egress(&call.room_name))
            .await
        {
            Ok(list) => list
                .into_iter()
                .find(|e| e.egress_id == recording_row.egress_id),
            Err(error) if error.is_unavailable() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(egress.id = %recording_row.egress_id, error = %error, "cannot list egress");
                continue;
            }
        };
        let outbox = &state.outbox;
        let info = match known {
            Some(info) if EgressState::from_livekit(info.status).is_final() => info,
            Some(info) => {
                let call_over = call
                    .ended_at
                    .is_some_and(|end| Utc::now() - end > stuck_after);
                let too_old = Utc::now() - recording_row.updated_at > stuck_after;
                if !(call_over || too_old) {
                    continue;
                }
                // Still "running" long after its call ended: ask it to stop, and fail it.
                let _ = state
                    .livekit_call("stop_egress", state.livekit.stop_egress(&info.egress_id))
                    .await;
                sb_livekit::protocol::EgressInfo {
                    status: sb_livekit::protocol::EgressStatus::EgressFailed as i32,
                    error: "the recording did not finish in time".to_owned(),
                    ..info
                }
            }
            None => sb_livekit::protocol::EgressInfo {
                egress_id: recording_row.egress_id.clone(),
                room_name: call.room_name.clone(),
                status: sb_livekit::protocol::EgressStatus::EgressFailed as i32,
                error: "LiveKit no longer knows this recording".to_owned(),
                ..Default::default()
            },
        };
        let failed = EgressState::from_livekit(info.status) == EgressState::Failed;
        let applied = state
            .outbox
            .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
                let info = &info;
                recording::apply_egress(conn, outbox, info, None).await
            }))
            .await?;
        if applied == recording::EgressApplied::Advanced {
            if failed {
                settled.failed += 1;
            } else {
                settled.updated += 1;
            }
        }
    }
    state
        .metrics
        .reconciled("recording_updated", settled.updated);
    state.metrics.reconciled("recording_failed", settled.failed);
    Ok(settled)
}
/// Meeting members whose participant_left never came: marked out when their meeting's room no
/// longer has them (and they joined before the list was taken).
async fn meeting_presence(state: &AppState) -> Result<u64, VideoError> {
    let mut conn = state.conn().await?;
    let conn = &mut conn;
    let mut rooms: std::collections::BTreeMap<String, Vec<meetings::Member>> =
        std::collections::BTreeMap::new();
    for (member, room) in meetings::members_in_room(conn, BATCH).await? {
        rooms.entry(room).or_default().push(member);
    }
    let mut left = 0;
    for (room, members) in rooms {
        let listed_at = Utc::now() - chrono::Duration::seconds(5);
        let present: Vec<String> = match state
            .livekit_call("list_participants", state.livekit.list_participants(&room))
            .await
        {
            Ok(list) => list.into_iter().map(|p| p.identity).collect(),
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) if error.is_unavailable() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(room = %room, error = %error, "cannot list a meeting's participants");
                continue;
            }
        };
        for member in members {
            let identity = Identity::User(member.user_id).to_string();
            let joined_before = member.joined_at.is_none_or(|at| at < listed_at);
            if present.contains(&identity) || !joined_before {
                continue;
            }
            let now = Utc::now();
            let changes = meetings::MemberChanges {
                in_room: false,
                joined_at: member.joined_at,
                left_at: Some(now),
            };
            // The departure is announced with it, as a webhook's would be (monitoring would
            // otherwise keep the member on a call).
            let written = state
                .outbox
                .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
                    let written =
                        meetings::write_presence(conn, member.meeting_id, member.user_id, &changes)
                            .await?;
                    if written > 0
                        && let Some(meeting) = meetings::find(conn, member.meeting_id).await?
                    {
                        crate::actions::meetings::announce_member(
                            conn,
                            &state.outbox,
                            &meeting,
                            member.user_id,
                            false,
                            now,
                        )
                        .await?;
                    }
                    Ok(written)
                }))
                .await?;
            left += u64::try_from(written).unwrap_or(0);
        }
    }
    state.metrics.reconciled("meeting_member_left", left);
    Ok(left)
}
