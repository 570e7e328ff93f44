//! Ad-hoc meetings (seed 003): creating them with their LiveKit room, joining, leaving, ending,
//! and applying LiveKit's webhooks about their rooms.

use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use std::collections::HashMap;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use sb_auth::Principal;
use sb_livekit::protocol::WebhookEvent;
use sb_livekit::{ParticipantToken, RoomOptions};
use sb_platform::config::Environment;
use uuid::Uuid;

use crate::actions::webhook::{self, WebhookOutcome};
use crate::domain::call::{DisplayName, Identity, meeting_room};
use crate::domain::meeting::{self, CallType, MemberRole, Mode, RoomName, Source};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::meetings::{
    self as store, Meeting, Member, MemberChanges, NewMeeting, NewMember,
};

/// Seconds LiveKit keeps an empty meeting room. The meeting itself stays open (rooms are
/// reusable); LiveKit's default `auto_create` opens the room again on the next connection.
const EMPTY_ROOM_TIMEOUT_SECS: u32 = 300;

/// What `POST /api/livekit/rooms` asks for, parsed.
#[derive(Debug, Clone)]
pub struct NewMeetingRequest {
    pub room_name: RoomName,
    pub call_type: CallType,
    pub mode: Mode,
    pub participants: Vec<Uuid>,
    pub speakers: Vec<Uuid>,
}

/// A meeting with its members (the host first).
#[derive(Debug, Clone)]
pub struct MeetingDetail {
    pub meeting: Meeting,
    pub members: Vec<Member>,
}

pub struct Joined {
    pub meeting: Meeting,
    pub token: ParticipantToken,
}

fn not_found() -> VideoError {
    VideoError::not_found("meeting")
}

/// The caller's org's meeting named `room_name` and the caller's membership. A meeting of
/// another org, or one the caller was not invited to, is 404 like a missing one: the name
/// alone must not tell anyone it exists.
async fn visible(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    room_name: &RoomName,
) -> Result<(Meeting, Member), VideoError> {
    let meeting = store::find_by_name(conn, principal.org_id.as_uuid(), room_name.as_str())
        .await?
        .ok_or_else(not_found)?;
    let member = store::find_member(conn, meeting.id, principal.user_id.as_uuid())
        .await?
        .ok_or_else(not_found)?;
    Ok((meeting, member))
}

async fn detail(
    conn: &mut AsyncPgConnection,
    meeting: Meeting,
) -> Result<MeetingDetail, VideoError> {
    let members = store::members_of(conn, &[meeting.id]).await?;
    Ok(MeetingDetail { meeting, members })
}

/// `POST /api/livekit/rooms`: the meeting, its members and its LiveKit room together. The rows
/// are inserted and the room created while they are uncommitted, so a LiveKit failure rolls them
/// back (503) and a retry starts clean — except in development, where LiveKit auto-creates rooms
/// on connection: there the meeting is kept.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    request: NewMeetingRequest,
) -> Result<MeetingDetail, VideoError> {
    let creator = principal.user_id.as_uuid();
    let org = principal.org_id.as_uuid();
    let planned = meeting::members(
        creator,
        request.mode,
        &request.participants,
        &request.speakers,
    )
    .map_err(|refused| VideoError::invalid(refused.field, refused.detail))?;
    let id = Uuid::now_v7();
    let livekit_room = meeting_room(org, id);
    let mut conn = state.conn().await?;
    let invited: Vec<Uuid> = planned.iter().map(|&(user, _)| user).collect();
    let strangers = store::members_of_other_orgs(&mut conn, org, &invited).await?;
    if let Some(stranger) = strangers.first() {
        return Err(VideoError::invalid(
            "participants",
            format!("{stranger} belongs to another organisation"),
        ));
    }
    let meeting = state.outbox.wake_on_commit(conn
        .transaction::<_, VideoError, _>(async |conn| {
            let livekit_room = &livekit_room;
            let Some(meeting) = store::insert_if_absent(
                conn,
                &NewMeeting {
                    id,
                    org_id: org,
                    room_name: request.room_name.as_str(),
                    livekit_room,
                    created_by: creator,
                    call_type: request.call_type,
                    mode: request.mode,
                },
            )
            .await?
            else {
                return Err(VideoError::conflict(
                    Code::RoomExists,
                    format!("a meeting named {} already exists", request.room_name),
                ));
            };
            let members: Vec<NewMember> = planned
                .iter()
                .map(|&(user_id, role)| NewMember {
                    meeting_id: id,
                    user_id,
                    role,
                })
                .collect();
            store::insert_members(conn, &members).await?;
            let options = RoomOptions {
                empty_timeout_secs: EMPTY_ROOM_TIMEOUT_SECS,
                max_participants: 0,
                metadata: serde_json::json!({ "meetingId": id }).to_string(),
            };
            match state
                .livekit_call(
                    "create_room",
                    state.livekit.create_room(livekit_room, options),
                )
                .await
            {
                Ok(_) => {}
                Err(error) if state.config.environment == Environment::Development => {
                    tracing::warn!(meeting.id = %id, error = %error, "LiveKit room not created; keeping the meeting (development: the server auto-creates rooms on connection)");
                }
                Err(error) => return Err(error.into()),
            }
            Ok(meeting)
        }))
        .await?;
    detail(&mut conn, meeting).await
}

/// `GET /api/livekit/rooms`: the caller's org's meetings they created or were invited to.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<MeetingDetail>, VideoError> {
    let mut conn = state.conn().await?;
    let (meetings, total) = store::list_for_user(
        &mut conn,
        principal.org_id.as_uuid(),
        principal.user_id.as_uuid(),
        page.limit(),
        page.offset(),
    )
    .await?;
    let ids: Vec<Uuid> = meetings.iter().map(|m| m.id).collect();
    let mut members: HashMap<Uuid, Vec<Member>> = HashMap::new();
    for member in store::members_of(&mut conn, &ids).await? {
        members.entry(member.meeting_id).or_default().push(member);
    }
    Ok(page.wrap(meetings, total).map(|meeting| MeetingDetail {
        members: members.remove(&meeting.id).unwrap_or_default(),
        meeting,
    }))
}

/// `GET /api/livekit/rooms/{room_name}`.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    room_name: &RoomName,
) -> Result<MeetingDetail, VideoError> {
    let mut conn = state.conn().await?;
    let (meeting, _) = visible(&mut conn, principal, room_name).await?;
    detail(&mut conn, meeting).await
}

fn default_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Host => "Host",
        MemberRole::Speaker => "Speaker",
        MemberRole::Participant | MemberRole::Listener => "Participant",
    }
}

/// `POST /api/livekit/rooms/{room_name}/join` and `POST /api/livekit/token`: a LiveKit token
/// whose grants follow the meeting's call type and mode and the member's role; the member is
/// marked in the room.
pub async fn join(
    state: &AppState,
    principal: &Principal,
    room_name: &RoomName,
    display_name: Option<DisplayName>,
) -> Result<Joined, VideoError> {
    let mut conn = state.conn().await?;
    let (meeting, member) = visible(&mut conn, principal, room_name).await?;
    let ended = || VideoError::conflict(Code::MeetingEnded, "this meeting has ended");
    if meeting.is_ended() {
        return Err(ended());
    }
    let role = member.role;
    let preset = meeting::preset(meeting.call_type, meeting.mode, role);
    let identity = Identity::User(member.user_id).to_string();
    let name = display_name.or_else(|| {
        principal
            .name
            .as_deref()
            .and_then(|n| DisplayName::parse(n).ok())
    });
    let name = name
        .as_ref()
        .map_or(default_name(role), DisplayName::as_str);
    // Signed before anything is written, so a signing failure leaves no one marked in the room.
    let token = state
        .tokens
        .issue(&meeting.livekit_room, &identity, name, preset, None, None)
        .map_err(VideoError::internal)?;
    let now = Utc::now();
    let meeting = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let meeting = store::lock(conn, meeting.id).await?;
            if meeting.is_ended() {
                return Err(ended());
            }
            let member = store::find_member(conn, meeting.id, member.user_id)
                .await?
                .ok_or_else(not_found)?;
            if let Some(presence) = member.presence().joined(now, Source::Api) {
                store::write_presence(conn, meeting.id, member.user_id, &presence.into()).await?;
            }
            Ok(meeting)
        }))
        .await?;
    Ok(Joined { meeting, token })
}

/// `POST /api/livekit/rooms/{room_name}/leave`: the caller is out of the room. The meeting stays
/// open for later (rooms are reusable) unless its creator asks to `end` it: then everyone is
/// marked out and the LiveKit room is deleted, which disconnects whoever is still in it.
pub async fn leave(
    state: &AppState,
    principal: &Principal,
    room_name: &RoomName,
    end: bool,
) -> Result<MeetingDetail, VideoError> {
    let mut conn = state.conn().await?;
    let (meeting, member) = visible(&mut conn, principal, room_name).await?;
    if end && meeting.created_by != principal.user_id.as_uuid() {
        return Err(VideoError::forbidden(
            Code::Forbidden,
            "only the meeting's creator may end it".to_owned(),
        ));
    }
    let now = Utc::now();
    let ended_now = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let meeting = store::lock(conn, meeting.id).await?;
            let member = store::find_member(conn, meeting.id, member.user_id)
                .await?
                .ok_or_else(not_found)?;
            if member.in_room
                && let Some(presence) = member.presence().left(now, Source::Api)
            {
                store::write_presence(conn, meeting.id, member.user_id, &presence.into()).await?;
            }
            if !end || !store::end(conn, meeting.id, now).await? {
                return Ok(false);
            }
            for other in store::members_of(conn, &[meeting.id]).await? {
                if other.in_room
                    && let Some(presence) = other.presence().left(now, Source::Api)
                {
                    store::write_presence(conn, meeting.id, other.user_id, &presence.into())
                        .await?;
                }
            }
            Ok(true)
        }))
        .await?;
    if ended_now {
        delete_room(state, &meeting).await;
    }
    let meeting = store::find(&mut conn, meeting.id)
        .await?
        .ok_or_else(not_found)?;
    detail(&mut conn, meeting).await
}

/// Deletes an ended meeting's LiveKit room. The meeting is already ended in the database, so a
/// failure is only logged: an undeleted room empties and LiveKit closes it after its timeout.
async fn delete_room(state: &AppState, meeting: &Meeting) {
    match state
        .livekit_call(
            "delete_room",
            state.livekit.delete_room(&meeting.livekit_room),
        )
        .await
    {
        Ok(()) => {}
        // LiveKit had already closed the empty room.
        Err(error) if error.is_not_found() => {
            tracing::debug!(org.id = %meeting.org_id, meeting.id = %meeting.id, "LiveKit room already gone");
        }
        Err(error) => {
            tracing::warn!(org.id = %meeting.org_id, meeting.id = %meeting.id, error = %error, "LiveKit room of an ended meeting not deleted; LiveKit closes it once empty");
        }
    }
}

/// Applies a webhook about a meeting room. Each event is applied once (its receipt commits with
/// its effect) and only moves presence forward: an event older than what is known changes
/// nothing, so any delivery order ends in the same state.
pub async fn apply_webhook(
    state: &AppState,
    event: &WebhookEvent,
) -> Result<WebhookOutcome, VideoError> {
    let room = webhook::room_of(event).to_owned();
    let key = webhook::receipt_key(event);
    let at = webhook::event_time(event);
    let mut conn = state.conn().await?;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            if !sb_db::models::record_webhook_once(conn, "livekit", &key).await? {
                return Ok(WebhookOutcome::Duplicate);
            }
            let Some(meeting) = store::find_by_livekit_room(conn, &room).await? else {
                return Ok(WebhookOutcome::Ignored);
            };
            let meeting = store::lock(conn, meeting.id).await?;
            match event.event.as_str() {
                "participant_joined" | "participant_left" => {
                    let Some(Identity::User(user_id)) = event
                        .participant
                        .as_ref()
                        .and_then(|p| p.identity.parse::<Identity>().ok())
                    else {
                        // Recorders and anything else that is not a platform user.
                        return Ok(WebhookOutcome::Ignored);
                    };
                    let Some(member) = store::find_member(conn, meeting.id, user_id).await? else {
                        return Ok(WebhookOutcome::Ignored);
                    };
                    let next = if event.event == "participant_joined" {
                        // An ended meeting has nobody in it; a join reported late is from before.
                        if meeting.is_ended() {
                            return Ok(WebhookOutcome::Ignored);
                        }
                        member.presence().joined(at, Source::Webhook)
                    } else {
                        member.presence().left(at, Source::Webhook)
                    };
                    if let Some(presence) = next {
                        store::write_presence(conn, meeting.id, user_id, &presence.into()).await?;
                        announce_member(
                            conn,
                            &state.outbox,
                            &meeting,
                            user_id,
                            presence.in_room,
                            at,
                        )
                        .await?;
                    }
                    Ok(WebhookOutcome::Applied)
                }
                "room_finished" => {
                    for member in store::members_of(conn, &[meeting.id]).await? {
                        // Invitees who never came stay without a departure time.
                        if !member.in_room && member.joined_at.is_none() {
                            continue;
                        }
                        if let Some(presence) = member.presence().left(at, Source::Webhook) {
                            let changes = MemberChanges::from(presence);
                            store::write_presence(conn, meeting.id, member.user_id, &changes)
                                .await?;
                            announce_member(
                                conn,
                                &state.outbox,
                                &meeting,
                                member.user_id,
                                false,
                                at,
                            )
                            .await?;
                        }
                    }
                    Ok(WebhookOutcome::Applied)
                }
                _ => Ok(WebhookOutcome::Ignored),
            }
        }))
        .await
}

/// Announces that a member joined or left a meeting's LiveKit room
/// (`sb.video.participant.joined|left`, the meeting's id as `call_id`), as appointment calls
/// do: monitoring counts a rep in a meeting as on a call, and can supervise them in its room.
/// Only what LiveKit reported (webhooks, the reconciliation job) is announced: a token asked
/// for is not a connection.
pub async fn announce_member(
    conn: &mut AsyncPgConnection,
    outbox: &sb_events::outbox::Outbox,
    meeting: &Meeting,
    user_id: Uuid,
    in_room: bool,
    at: chrono::DateTime<Utc>,
) -> Result<(), VideoError> {
    use sb_events::proto::{VideoParticipantJoined, VideoParticipantLeft};
    let identity = Identity::User(user_id).to_string();
    if in_room {
        outbox
            .enqueue(
                conn,
                &VideoParticipantJoined {
                    call_id: meeting.id.to_string(),
                    org_id: meeting.org_id.to_string(),
                    room_name: meeting.livekit_room.clone(),
                    user_id: user_id.to_string(),
                    identity,
                    role: "participant".to_owned(),
                    joined_at_unix_ms: at.timestamp_millis(),
                },
            )
            .await?;
    } else {
        outbox
            .enqueue(
                conn,
                &VideoParticipantLeft {
                    call_id: meeting.id.to_string(),
                    org_id: meeting.org_id.to_string(),
                    room_name: meeting.livekit_room.clone(),
                    user_id: user_id.to_string(),
                    identity,
                    left_at_unix_ms: at.timestamp_millis(),
                },
            )
            .await?;
    }
    Ok(())
}
