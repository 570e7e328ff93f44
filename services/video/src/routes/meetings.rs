//! Ad-hoc meetings (seed 003) under `/api/livekit`: create, list, read, join, leave, token.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::actions::meetings::{self, Joined, MeetingDetail, NewMeetingRequest};
use crate::domain::call::DisplayName;
use crate::domain::meeting::{CallType, MeetingStatus, MemberRole, Mode, RoomName, invite_link};
use crate::error::VideoError;
use crate::routes::{JsonBody, OptionalJson};
use crate::state::AppState;
use crate::store::meetings::Member;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_meeting)
        .service(list_meetings)
        .service(get_meeting)
        .service(join_meeting)
        .service(leave_meeting)
        .service(meeting_token);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Unique in the organisation; used in paths and the invite link.
    #[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    room_name: RoomName,
    /// Users invited (at most 50 distinct); the creator joins as host without being listed.
    #[serde(default)]
    participants: Vec<Uuid>,
    #[serde(default)]
    call_type: CallType,
    #[serde(default)]
    mode: Mode,
    /// Webinar only: invitees who may publish; the other invitees listen.
    #[serde(default)]
    speakers: Vec<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    user_id: Uuid,
    role: MemberRole,
    /// In the room now, as far as the API and LiveKit's webhooks say.
    in_room: bool,
    /// Last time they joined.
    joined_at: Option<DateTime<Utc>>,
    /// Last time they left.
    left_at: Option<DateTime<Utc>>,
}

impl TryFrom<Member> for MemberView {
    type Error = VideoError;
    fn try_from(m: Member) -> Result<Self, Self::Error> {
        Ok(Self {
            user_id: m.user_id,
            role: m.role,
            in_room: m.in_room,
            joined_at: m.joined_at,
            left_at: m.left_at,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingView {
    id: Uuid,
    room_name: String,
    call_type: CallType,
    mode: Mode,
    status: MeetingStatus,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    /// Relative link of the frontend's invitation page.
    invite_link: String,
    /// Every member, the host first.
    participants: Vec<MemberView>,
}

impl TryFrom<MeetingDetail> for MeetingView {
    type Error = VideoError;
    fn try_from(MeetingDetail { meeting, members }: MeetingDetail) -> Result<Self, Self::Error> {
        Ok(Self {
            id: meeting.id,
            invite_link: invite_link(&meeting.room_name),
            room_name: meeting.room_name,
            call_type: meeting.call_type,
            mode: meeting.mode,
            status: meeting.status,
            created_by: meeting.created_by,
            created_at: meeting.created_at,
            ended_at: meeting.ended_at,
            participants: members
                .into_iter()
                .map(MemberView::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// LiveKit access token for this member (short-lived).
    token: String,
    /// LiveKit server URL to connect to with the token.
    url: String,
    room_name: String,
    /// The LiveKit identity, `u_<userId>`.
    identity: String,
}

impl From<Joined> for TokenResponse {
    fn from(joined: Joined) -> Self {
        Self {
            token: joined.token.token,
            url: joined.token.server_url,
            room_name: joined.meeting.room_name,
            identity: joined.token.identity,
        }
    }
}

fn room_name(raw: &str) -> Result<RoomName, VideoError> {
    RoomName::parse(raw).map_err(|e| VideoError::invalid("room_name", e))
}

fn display_name(username: Option<&str>) -> Result<Option<DisplayName>, VideoError> {
    username
        .map(DisplayName::parse)
        .transpose()
        .map_err(|e| VideoError::invalid("username", e))
}

/// `POST /api/livekit/rooms`
#[utoipa::path(post, path = "/api/livekit/rooms", tag = "meetings",
    request_body = CreateBody,
    responses(
        (status = 201, body = MeetingView, description = "The meeting and its LiveKit room, the caller as host"),
        (status = 400, description = "Malformed body; `field` names the field at fault (`participants[2]`)", content_type = "application/problem+json"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json"),
        (status = 409, description = "`room_exists`: the organisation has a meeting of that name", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json"),
        (status = 503, description = "`livekit_unavailable`: nothing was created, retry", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/livekit/rooms")]
async fn create_meeting(
    state: web::Data<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, VideoError> {
    let detail = meetings::create(
        &state,
        &principal,
        NewMeetingRequest {
            room_name: body.room_name,
            call_type: body.call_type,
            mode: body.mode,
            participants: body.participants,
            speakers: body.speakers,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(MeetingView::try_from(detail)?))
}

/// `GET /api/livekit/rooms`
#[utoipa::path(get, path = "/api/livekit/rooms", tag = "meetings",
    params(PageRequest),
    responses(
        (status = 200, body = Page<MeetingView>, description = "Meetings of the caller's organisation they created or were invited to: open ones first, then newest first"),
        (status = 400, description = "`invalid_field` naming the parameter at fault", content_type = "application/problem+json"),
        (status = 401, description = "No or bad JWT", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/livekit/rooms")]
async fn list_meetings(
    state: web::Data<AppState>,
    principal: Principal,
    page: PageRequest,
) -> Result<HttpResponse, VideoError> {
    let meetings = meetings::list(&state, &principal, page).await?;
    Ok(HttpResponse::Ok().json(meetings.try_map(MeetingView::try_from)?))
}

/// `GET /api/livekit/rooms/{room_name}`
#[utoipa::path(get, path = "/api/livekit/rooms/{room_name}", tag = "meetings",
    params(("room_name" = String, Path)),
    responses(
        (status = 200, body = MeetingView),
        (status = 400, description = "Malformed room name", content_type = "application/problem+json"),
        (status = 404, description = "Unknown, another organisation's, or the caller is not a member", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[get("/api/livekit/rooms/{room_name}")]
async fn get_meeting(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, VideoError> {
    let detail = meetings::get(&state, &principal, &room_name(&path)?).await?;
    Ok(HttpResponse::Ok().json(MeetingView::try_from(detail)?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// Shown to the other participants; trimmed, 1–100 characters. Defaults to the name in
    /// the caller's JWT.
    #[schema(max_length = 100)]
    username: Option<String>,
}

/// `POST /api/livekit/rooms/{room_name}/join`
#[utoipa::path(post, path = "/api/livekit/rooms/{room_name}/join", tag = "meetings",
    params(("room_name" = String, Path)),
    request_body(content = Option<JoinBody>, description = "Optional"),
    responses(
        (status = 200, body = TokenResponse, description = "A LiveKit token with the grants of the caller's role"),
        (status = 400, description = "Malformed room name or body", content_type = "application/problem+json"),
        (status = 404, description = "Unknown, another organisation's, or the caller is not a member", content_type = "application/problem+json"),
        (status = 409, description = "`meeting_ended`", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/livekit/rooms/{room_name}/join")]
async fn join_meeting(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<JoinBody>,
) -> Result<HttpResponse, VideoError> {
    let room = room_name(&path)?;
    let name = display_name(body.username.as_deref())?;
    let joined = meetings::join(&state, &principal, &room, name).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(joined)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveBody {
    /// Creator only: end the meeting for everyone and close its LiveKit room.
    #[serde(default)]
    end: bool,
}

/// `POST /api/livekit/rooms/{room_name}/leave`
#[utoipa::path(post, path = "/api/livekit/rooms/{room_name}/leave", tag = "meetings",
    params(("room_name" = String, Path)),
    request_body(content = Option<LeaveBody>, description = "Optional"),
    responses(
        (status = 200, body = MeetingView, description = "The caller left; the meeting stays open unless its creator ended it"),
        (status = 400, description = "Malformed room name or body", content_type = "application/problem+json"),
        (status = 403, description = "Only the creator may end the meeting", content_type = "application/problem+json"),
        (status = 404, description = "Unknown, another organisation's, or the caller is not a member", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/livekit/rooms/{room_name}/leave")]
async fn leave_meeting(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    OptionalJson(body): OptionalJson<LeaveBody>,
) -> Result<HttpResponse, VideoError> {
    let room = room_name(&path)?;
    let detail = meetings::leave(&state, &principal, &room, body.end).await?;
    Ok(HttpResponse::Ok().json(MeetingView::try_from(detail)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    #[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    room_name: RoomName,
    /// Must be the caller's own id when given: tokens are never minted for someone else.
    user_id: Option<Uuid>,
    /// Display name in the room; trimmed, 1–100 characters.
    #[schema(max_length = 100)]
    username: Option<String>,
}

/// `POST /api/livekit/token`
#[utoipa::path(post, path = "/api/livekit/token", tag = "meetings",
    request_body = TokenBody,
    responses(
        (status = 200, body = TokenResponse, description = "A LiveKit token, as for joining the meeting"),
        (status = 400, description = "Malformed body", content_type = "application/problem+json"),
        (status = 403, description = "`user_id` is not the caller", content_type = "application/problem+json"),
        (status = 404, description = "Unknown, another organisation's, or the caller is not a member", content_type = "application/problem+json"),
        (status = 409, description = "`meeting_ended`", content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[post("/api/livekit/token")]
async fn meeting_token(
    state: web::Data<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<HttpResponse, VideoError> {
    if body
        .user_id
        .is_some_and(|id| id != principal.user_id.as_uuid())
    {
        return Err(VideoError::forbidden(
            Code::Forbidden,
            "a token can only be issued for yourself".to_owned(),
        ));
    }
    let name = display_name(body.username.as_deref())?;
    let joined = meetings::join(&state, &principal, &body.room_name, name).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(joined)))
}
