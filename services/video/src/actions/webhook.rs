//! Applying LiveKit webhooks. LiveKit delivers them at most once and in no particular order:
//! each is applied once (its id in `webhook_receipts`, in the same transaction as its effect)
//! and only moves state forward, so any order of the same events ends in the same state.

use chrono::{DateTime, TimeZone, Utc};
use diesel_async::AsyncConnection;
use sb_livekit::protocol::{ParticipantInfo, WebhookEvent};
use uuid::Uuid;

use crate::actions::{presence, recording};
use crate::domain::call::{Identity, RoomKind};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::calls::{self, NewParticipant};

/// What happened to a webhook, for the response and the metric.
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

/// When LiveKit says the event happened (whole seconds), or now for an event without a time.
pub(crate) fn event_time(event: &WebhookEvent) -> DateTime<Utc> {
    Utc.timestamp_opt(event.created_at, 0)
        .single()
        .filter(|_| event.created_at > 0)
        .unwrap_or_else(Utc::now)
}

fn joined_time(info: &ParticipantInfo) -> Option<DateTime<Utc>> {
    if info.joined_at_ms > 0 {
        Utc.timestamp_millis_opt(info.joined_at_ms).single()
    } else if info.joined_at > 0 {
        Utc.timestamp_opt(info.joined_at, 0).single()
    } else {
        None
    }
}

/// The key the event is recorded under in `webhook_receipts`.
pub(crate) fn receipt_key(event: &WebhookEvent) -> String {
    if event.id.is_empty() {
        // Older servers send no id: the event's content identifies it.
        format!(
            "{}:{}:{}:{}",
            event.event,
            room_of(event),
            event.participant.as_ref().map_or("", |p| p.sid.as_str()),
            event.created_at
        )
    } else {
        event.id.clone()
    }
}

pub(crate) fn room_of(event: &WebhookEvent) -> &str {
    if let Some(egress) = &event.egress_info {
        return &egress.room_name;
    }
    event.room.as_ref().map_or("", |room| room.name.as_str())
}

/// Applies one verified webhook; after a retry-worthy failure nothing of it is kept (the receipt
/// rolls back with the effect).
pub async fn apply(state: &AppState, event: &WebhookEvent) -> Result<WebhookOutcome, VideoError> {
    let room = room_of(event).to_owned();
    let kind = RoomKind::parse(&room);
    if matches!(kind, Some(RoomKind::Meeting { .. })) {
        return crate::actions::meeting_webhook(state, event).await;
    }
    if !matches!(kind, Some(RoomKind::Appointment { .. })) {
        tracing::debug!(event = %event.event, "webhook for a room this service did not create");
        return Ok(WebhookOutcome::Ignored);
    }
    let mut conn = state.conn().await?;
    let outbox = &state.outbox;
    let key = receipt_key(event);
    let (outcome, completed_call) = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let room = &room;
            if !sb_db::models::record_webhook_once(conn, "livekit", &key).await? {
                return Ok((WebhookOutcome::Duplicate, None));
            }
            let Some(call) = calls::find_by_room(conn, room).await? else {
                return Ok((WebhookOutcome::Ignored, None));
            };
            let call = calls::lock(conn, call.id).await?;
            let at = event_time(event);
            let refreshed = match event.event.as_str() {
                "room_started" => {
                    calls::set_room_created(conn, call.id, true).await?;
                    None
                }
                "room_finished" => {
                    calls::set_room_finished(conn, call.id, at).await?;
                    // No end reason from webhooks: which of room_finished and the last
                    // participant_left arrives first is chance, and the state must not be.
                    Some(presence::settle(conn, outbox, &call, None).await?)
                }
                "participant_joined" | "participant_left" => {
                    let Some(info) = event.participant.as_ref() else {
                        return Ok((WebhookOutcome::Ignored, None));
                    };
                    let Ok(identity) = info.identity.parse::<Identity>() else {
                        // Egress recorders, monitoring supervisors: not call participants.
                        return Ok((WebhookOutcome::Ignored, None));
                    };
                    // LiveKit reports the name the token carried; an empty one (a token
                    // minted elsewhere) must not erase the name the join stored.
                    let named = !info.name.trim().is_empty();
                    let name: String = if named {
                        info.name.chars().take(100).collect()
                    } else {
                        "Participant".to_owned()
                    };
                    let (user_id, is_guest, role) = match identity {
                        Identity::User(id) => (Some(id), false, "MEMBER"),
                        Identity::Guest(_) => (None, true, "GUEST"),
                    };
                    let identity = identity.to_string();
                    let participant = NewParticipant {
                        id: Uuid::now_v7(),
                        call_id: call.id,
                        org_id: call.org_id,
                        user_id,
                        identity: &identity,
                        role,
                        display_name: &name,
                        is_host: false,
                        is_guest,
                    };
                    if named {
                        calls::ensure_participant(conn, &participant).await?;
                    } else {
                        calls::ensure_participant_keeping_name(conn, &participant).await?;
                    }
                    let joined = joined_time(info);
                    let left = (event.event == "participant_left").then_some((at, "webhook"));
                    let joined = joined.or(if left.is_none() { Some(at) } else { None });
                    calls::record_session(conn, call.id, &info.sid, &identity, joined, left)
                        .await?;
                    Some(presence::refresh(conn, outbox, &call, &[identity.as_str()], None).await?)
                }
                "egress_started" | "egress_updated" | "egress_ended" => {
                    if let Some(info) = &event.egress_info {
                        recording::apply_egress(conn, outbox, info, None).await?;
                    }
                    None
                }
                _ => return Ok((WebhookOutcome::Ignored, None)),
            };
            let completed = refreshed.filter(|r| r.completed).map(|_| call.id);
            Ok((WebhookOutcome::Applied, completed))
        }))
        .await?;
    if let Some(call_id) = completed_call {
        recording::stop_for_call(state, &mut conn, call_id).await;
    }
    Ok(outcome)
}
