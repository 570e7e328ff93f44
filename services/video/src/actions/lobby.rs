//! Guest links, the lobby where external guests wait, and the host's controls over who is in.

use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel_async::AsyncConnection;
use sb_auth::{GuestClaims, GuestLinkError, OrgId, Principal};
use sb_db::models::Appointment;
use sb_livekit::protocol::TrackInfo;
use sb_livekit::{ParticipantToken, Preset};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::actions::access;
use crate::domain::call::{DisplayName, Identity, Window};
use crate::domain::lobby::{
    self as rules, Decision, DeviceSecret, LobbyStatus, MAX_WAITING_GUESTS, Outcome,
};
use crate::error::VideoError;
use crate::state::AppState;
use crate::store::calls::{self, Call, NewParticipant};
use crate::store::lobby::{self, LobbyGuest, NewLobbyGuest};

/// The `role` of an admitted guest's participant row (platform users have their JWT role).
const GUEST_ROLE: &str = "GUEST";

/// The 401 a refused guest link answers, with a code the guest page can explain.
pub fn link_error(error: GuestLinkError) -> VideoError {
    let (code, detail) = match error {
        GuestLinkError::Expired => (Code::GuestLinkExpired, "this guest link has expired"),
        GuestLinkError::NotYetValid => (
            Code::GuestLinkNotYetValid,
            "this guest link opens shortly before the appointment",
        ),
        GuestLinkError::WrongCall
        | GuestLinkError::Invalid
        | GuestLinkError::EmptyWindow
        | GuestLinkError::Signing => (Code::GuestLinkInvalid, "this guest link is not valid"),
    };
    VideoError::GuestLink {
        code,
        detail: detail.to_owned(),
    }
}

fn ensure_open(call: &Call) -> Result<(), VideoError> {
    let status = call.status;
    if status.is_final() {
        return Err(VideoError::conflict(
            Code::CallFinished,
            format!("this call is {}", status.as_str()),
        ));
    }
    Ok(())
}

fn span(duration: std::time::Duration) -> Result<chrono::Duration, VideoError> {
    chrono::Duration::from_std(duration).map_err(VideoError::internal)
}

/// The appointment's joinable window under this service's guest-link settings.
pub fn window(state: &AppState, appointment: &Appointment) -> Result<Window, VideoError> {
    let settings = &state.config.guest_links;
    Ok(Window::around(
        appointment.scheduled_at,
        appointment.ends_at,
        span(settings.open_before)?,
        span(settings.close_after)?,
    ))
}

/// `POST /calls/{id}/guest-links`: a link opening `open_before` the appointment and closing
/// `close_after` its end. Links are stateless (signed, not stored): each one lets one guest
/// into the lobby, and the host still decides who comes in.
pub async fn mint_link(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
) -> Result<(String, GuestClaims), VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    ensure_open(&call)?;
    let Window {
        opens: open,
        closes: close,
    } = window(state, &appointment)?;
    if close <= Utc::now() {
        return Err(VideoError::conflict(
            Code::AppointmentWindowOver,
            format!("guest links for this appointment closed at {close}"),
        ));
    }
    state
        .guest_links
        .mint(OrgId::from(call.org_id), call.id, open, close)
        .map_err(|error| match error {
            GuestLinkError::EmptyWindow => VideoError::conflict(
                Code::AppointmentWindowEmpty,
                "the appointment ends before a guest link for it would open",
            ),
            other => VideoError::internal(other),
        })
}

/// A lobby place and, when this join opened it, the secret its device must keep.
pub struct LobbyPlace {
    pub guest: LobbyGuest,
    pub device_secret: Option<DeviceSecret>,
}

/// `POST /calls/guest/join`: the guest presenting `token` waits in the call's lobby. A device
/// that presents the secret its first join was given gets its place back (a reloaded page keeps
/// its place); anyone else with the link is a new guest the host decides about, so a link
/// forwarded after admission never hands over the admitted guest's place.
pub async fn join(
    state: &AppState,
    token: &str,
    display_name: &DisplayName,
    presented: Option<&DeviceSecret>,
) -> Result<LobbyPlace, VideoError> {
    let claims = state.guest_links.verify_link(token).map_err(link_error)?;
    let expires_at = DateTime::from_timestamp(claims.exp, 0)
        .ok_or_else(|| link_error(GuestLinkError::Invalid))?;
    let org = claims.org.as_uuid();
    let mut conn = state.conn().await?;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            // The call row's lock makes concurrent joins queue: the per-link and waiting
            // limits hold without a unique index.
            let call = calls::lock(conn, claims.call)
                .await
                .optional()?
                .filter(|call| call.org_id == org)
                .ok_or(VideoError::not_found("call"))?;
            ensure_open(&call)?;
            let places = lobby::of_link(conn, call.id, claims.sub).await?;
            if let Some(presented) = presented
                && let Some(guest) = places.iter().find(|guest| {
                    guest
                        .device_secret_sha256
                        .as_deref()
                        .is_some_and(|digest| presented.matches(digest))
                })
            {
                return Ok(LobbyPlace {
                    guest: guest.clone(),
                    device_secret: None,
                });
            }
            if places.len() >= rules::MAX_GUESTS_PER_LINK as usize {
                return Err(VideoError::conflict(
                    Code::LobbyFull,
                    format!(
                        "this link has already brought {} guests: ask the host for a new one",
                        rules::MAX_GUESTS_PER_LINK
                    ),
                ));
            }
            if lobby::count_waiting(conn, call.id, Utc::now()).await? >= MAX_WAITING_GUESTS {
                return Err(VideoError::conflict(
                    Code::LobbyFull,
                    format!("{MAX_WAITING_GUESTS} guests are already waiting for this call"),
                ));
            }
            let device_secret = DeviceSecret::generate();
            let guest = lobby::insert(
                conn,
                &NewLobbyGuest {
                    id: Uuid::now_v7(),
                    call_id: call.id,
                    org_id: call.org_id,
                    link_id: claims.sub,
                    display_name: display_name.as_str(),
                    expires_at,
                    device_secret_sha256: &device_secret.sha256(),
                },
            )
            .await?;
            Ok(LobbyPlace {
                guest,
                device_secret: Some(device_secret),
            })
        }))
        .await
}

/// What an admitted guest connects with.
pub struct Admission {
    pub token: ParticipantToken,
    /// Whether the call is being recorded: the guest page shows the consent notice.
    pub recording: bool,
}

/// `GET /calls/guest/{guestId}`: the guest's place in the lobby and, once admitted, a fresh
/// LiveKit token. Only the device holding the place's secret, with the link that opened it,
/// can read it; anyone else is told there is no such guest.
pub async fn poll(
    state: &AppState,
    token: &str,
    guest_id: Uuid,
    presented: Option<&DeviceSecret>,
) -> Result<(LobbyGuest, Option<Admission>), VideoError> {
    let claims = state.guest_links.verify_link(token).map_err(link_error)?;
    let mut conn = state.conn().await?;
    let guest = lobby::find(&mut conn, claims.call, guest_id)
        .await?
        .filter(|g| g.link_id == claims.sub && g.org_id == claims.org.as_uuid())
        .filter(|g| match g.device_secret_sha256.as_deref() {
            Some(digest) => presented.is_some_and(|secret| secret.matches(digest)),
            // A place taken before devices were bound: the link alone, as then.
            None => true,
        })
        .ok_or(VideoError::not_found("guest"))?;
    let call = calls::find(&mut conn, guest.call_id)
        .await?
        .ok_or(VideoError::not_found("call"))?;
    ensure_open(&call)?;
    let status = guest.status;
    if status != LobbyStatus::Admitted {
        return Ok((guest, None));
    }
    let token = state
        .tokens
        .issue(
            &call.room_name,
            &Identity::Guest(guest.id).to_string(),
            &guest.display_name,
            Preset::Guest,
            None,
            None,
        )
        .map_err(VideoError::internal)?;
    let recording = call.recording_status.is_recording();
    Ok((guest, Some(Admission { token, recording })))
}

/// `GET /calls/{id}/lobby`: every guest of the call, oldest first.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
) -> Result<Vec<LobbyGuest>, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    Ok(lobby::of_call(&mut conn, call.id).await?)
}

/// `POST /calls/{id}/lobby/{guestId}/admit|deny`. Admitting creates the guest's participant row
/// in the same transaction, so an admitted guest is always one of the call's participants.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    guest_id: Uuid,
    decision: Decision,
) -> Result<LobbyGuest, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    let decided_by = principal.user_id.as_uuid();
    let guest = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            // Call before guest: the one order in which any transaction takes both locks.
            let call = calls::lock(conn, call.id).await?;
            let guest = lobby::lock(conn, call.id, guest_id)
                .await?
                .ok_or(VideoError::not_found("guest"))?;
            let current = guest.status;
            let status = match rules::decide(current, decision) {
                // The first decision's author and time stay: they are the audit trail.
                Outcome::Unchanged => return Ok(guest),
                Outcome::AlreadyDecided(done) => {
                    return Err(VideoError::conflict(
                        Code::AlreadyDecided,
                        format!("this guest is already {}", done.as_str()),
                    ));
                }
                Outcome::Apply(status) => status,
            };
            let now = Utc::now();
            if decision == Decision::Admit {
                ensure_open(&call)?;
                if guest.expires_at <= now {
                    return Err(VideoError::conflict(
                        Code::GuestLinkExpired,
                        "this guest's link has expired: send them a new one",
                    ));
                }
                let identity = Identity::Guest(guest.id).to_string();
                calls::ensure_participant(
                    conn,
                    &NewParticipant {
                        id: Uuid::now_v7(),
                        call_id: call.id,
                        org_id: call.org_id,
                        user_id: None,
                        identity: &identity,
                        role: GUEST_ROLE,
                        display_name: &guest.display_name,
                        is_host: false,
                        is_guest: true,
                    },
                )
                .await?;
            }
            Ok(lobby::set_status(conn, guest.id, status, decided_by, now).await?)
        }))
        .await?;
    tracing::info!(
        call.id = %call_id,
        guest.id = %guest.id,
        status = guest.status.as_str(),
        decided_by = %decided_by,
        "lobby decision"
    );
    Ok(guest)
}

/// What removing a participant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// LiveKit disconnected them.
    pub disconnected: bool,
    /// A guest who was admitted or waiting is denied from now on.
    pub denied: bool,
}

/// `POST /calls/{id}/participants/{identity}/remove`: LiveKit disconnects the participant. A
/// guest is also denied, in the same transaction, so they cannot fetch a new token; if LiveKit
/// cannot be reached nothing changes (the host retries). The answer says what was done; when
/// nothing was (not connected, and no guest to deny) it is 404 `participant_not_found`.
pub async fn remove(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    identity: Identity,
) -> Result<Removal, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    let decided_by = principal.user_id.as_uuid();
    let name = identity.to_string();
    let removal = state
        .outbox
        .wake_on_commit(conn.transaction::<_, VideoError, _>(async |conn| {
            let mut denied = false;
            if let Identity::Guest(guest_id) = identity
                && let Some(guest) = lobby::lock(conn, call.id, guest_id).await?
                && guest.status != LobbyStatus::Denied
            {
                lobby::set_status(conn, guest.id, LobbyStatus::Denied, decided_by, Utc::now())
                    .await?;
                denied = true;
            }
            let disconnected = match state
                .livekit_call(
                    "remove_participant",
                    state.livekit.remove_participant(&call.room_name, &name),
                )
                .await
            {
                Ok(()) => true,
                Err(error) if error.is_not_found() => false,
                Err(error) => return Err(error.into()),
            };
            Ok(Removal {
                disconnected,
                denied,
            })
        }))
        .await?;
    tracing::info!(
        call.id = %call.id,
        identity = %name,
        disconnected = removal.disconnected,
        denied = removal.denied,
        by = %decided_by,
        "participant removed by the host"
    );
    if removal.disconnected || removal.denied {
        Ok(removal)
    } else {
        Err(VideoError::Absent {
            code: Code::ParticipantNotFound,
            detail: format!("{name} is not connected to this call"),
        })
    }
}

/// `POST /calls/{id}/participants/{identity}/mute`: LiveKit mutes (or unmutes) one published
/// track of a participant.
pub async fn mute(
    state: &AppState,
    principal: &Principal,
    call_id: Uuid,
    identity: Identity,
    track_sid: &str,
    muted: bool,
) -> Result<TrackInfo, VideoError> {
    let mut conn = state.conn().await?;
    let (call, appointment) = access::call(&mut conn, principal, call_id).await?;
    access::require_host(principal, &appointment)?;
    drop(conn);
    let name = identity.to_string();
    state
        .livekit_call(
            "mute_track",
            state
                .livekit
                .mute_track(&call.room_name, &name, track_sid, muted),
        )
        .await
        .map_err(|error| {
            if error.is_not_found() {
                VideoError::Absent {
                    code: Code::TrackNotFound,
                    detail: format!("{name} has no published track {track_sid} in this call"),
                }
            } else {
                error.into()
            }
        })
}
