//! LiveKit webhooks about reps' rooms. Each is applied once (its id in `webhook_receipts` under
//! the provider `livekit-monitoring`, since the video service receives the same events) and is
//! only a fact: presence is recomputed from all facts, so order does not matter.
//! Webhooks about a video call's room that a coaching or barging supervisor is in re-apply who
//! hears the supervisor (a newcomer auto-subscribes to everything; a new track reaches
//! everyone): idempotent, so neither receipts nor order matter.

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::AsyncConnection;
use sb_livekit::protocol::{TrackSource, WebhookEvent};

use crate::actions::{presence, sessions};
use crate::domain::{self, Identity};
use crate::error::MonitoringError;
use crate::state::AppState;
use crate::store::reps;
use crate::store::sessions as session_store;

/// Provider name of this service's webhook receipts.
const PROVIDER: &str = "livekit-monitoring";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    Duplicate,
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored => "ignored",
        }
    }
}

fn event_time(event: &WebhookEvent) -> DateTime<Utc> {
    Utc.timestamp_opt(event.created_at, 0)
        .single()
        .filter(|_| event.created_at > 0)
        .unwrap_or_else(Utc::now)
}

pub async fn apply(
    state: &AppState,
    event: &WebhookEvent,
) -> Result<WebhookOutcome, MonitoringError> {
    let room = event
        .room
        .as_ref()
        .map_or("", |r| r.name.as_str())
        .to_owned();
    if !domain::is_rep_room(&room) {
        return route_in_call(state, event, &room).await;
    }
    let key = if event.id.is_empty() {
        format!(
            "{}:{}:{}:{}",
            event.event,
            room,
            event.participant.as_ref().map_or("", |p| p.sid.as_str()),
            event.created_at
        )
    } else {
        event.id.clone()
    };
    let outbox = &state.outbox;
    let mut conn = state.conn().await?;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, MonitoringError, _>(async |conn| {
            if !sb_db::models::record_webhook_once(conn, PROVIDER, &key).await? {
                return Ok(WebhookOutcome::Duplicate);
            }
            let Some(rep) = reps::find_by_room(conn, &room).await? else {
                return Ok(WebhookOutcome::Ignored);
            };
            let at = event_time(event);
            if event.event == "room_finished" {
                for connection in reps::connections(conn, rep.user_id).await? {
                    if connection.left_at.is_none() {
                        reps::record_connection(
                            conn,
                            rep.user_id,
                            &connection.sid,
                            None,
                            Some((at, "webhook")),
                        )
                        .await?;
                    }
                }
                presence::refresh(conn, outbox, rep.user_id).await?;
                return Ok(WebhookOutcome::Applied);
            }
            let Some(participant) = event.participant.as_ref() else {
                return Ok(WebhookOutcome::Ignored);
            };
            // Supervisors' own comings and goings are their sessions' business.
            if participant.identity.parse::<Identity>() != Ok(Identity::Rep(rep.user_id)) {
                return Ok(WebhookOutcome::Ignored);
            }
            let joined = (participant.joined_at > 0)
                .then(|| Utc.timestamp_opt(participant.joined_at, 0).single())
                .flatten();
            match event.event.as_str() {
                "participant_joined" => {
                    reps::record_connection(
                        conn,
                        rep.user_id,
                        &participant.sid,
                        joined.or(Some(at)),
                        None,
                    )
                    .await?;
                }
                "participant_left" => {
                    reps::record_connection(
                        conn,
                        rep.user_id,
                        &participant.sid,
                        joined,
                        Some((at, "webhook")),
                    )
                    .await?;
                }
                "track_published" | "track_unpublished" => {
                    let Some(track) = event.track.as_ref() else {
                        return Ok(WebhookOutcome::Ignored);
                    };
                    if track.source != TrackSource::Microphone as i32 {
                        return Ok(WebhookOutcome::Ignored);
                    }
                    let (published, unpublished) = if event.event == "track_published" {
                        (Some(at), None)
                    } else {
                        (None, Some(at))
                    };
                    reps::record_track(
                        conn,
                        rep.user_id,
                        &participant.sid,
                        &track.sid,
                        published,
                        unpublished,
                    )
                    .await?;
                }
                _ => return Ok(WebhookOutcome::Ignored),
            }
            presence::refresh(conn, outbox, rep.user_id).await?;
            Ok(WebhookOutcome::Applied)
        }))
        .await
}

/// A participant joined, or published, in a video call's room: supervisors coaching there are
/// taken away from everyone but the rep again (barging ones given back to everyone).
async fn route_in_call(
    state: &AppState,
    event: &WebhookEvent,
    room: &str,
) -> Result<WebhookOutcome, MonitoringError> {
    if !matches!(
        event.event.as_str(),
        "participant_joined" | "track_published"
    ) || room.is_empty()
    {
        return Ok(WebhookOutcome::Ignored);
    }
    let mut conn = state.conn().await?;
    let open = session_store::open_in_room(&mut conn, room).await?;
    drop(conn);
    let mut applied = false;
    for session in open {
        sessions::route_supervisor_audio(state, &session).await?;
        applied = true;
    }
    Ok(if applied {
        WebhookOutcome::Applied
    } else {
        WebhookOutcome::Ignored
    })
}
