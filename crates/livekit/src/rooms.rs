//! Room, participant and egress operations behind a trait, so services are tested against the
//! fake Twirp server in testkit (and could run against another implementation).

use std::future::Future;
use std::pin::Pin;

use livekit_api::services::ServerError;
use livekit_api::services::ServiceError;
use livekit_api::services::egress::{
    EgressClient, EgressListFilter, EgressListOptions, EgressOutput, RoomCompositeOptions,
};
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_protocol as proto;

use crate::config::LiveKitConfig;
use crate::grants::Preset;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    /// The server answered with a Twirp error (`not_found`, `unauthenticated`, …).
    #[error("LiveKit refused the request ({code}): {message}")]
    Refused { code: String, message: String },
    /// The server could not be reached or answered garbage: retry later.
    #[error("LiveKit is unavailable: {0}")]
    Unavailable(String),
}

impl LiveKitError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, LiveKitError::Refused { code, .. } if code == "not_found")
    }

    /// Worth retrying: unreachable, timed out, or the server says it is unavailable.
    pub fn is_unavailable(&self) -> bool {
        match self {
            LiveKitError::Unavailable(_) => true,
            LiveKitError::Refused { code, .. } => code == "unavailable" || code == "internal",
        }
    }

    /// What a client is told: 503 `livekit_unavailable` (retry) or 502 `livekit_error`.
    pub fn problem(&self) -> sb_platform::Problem {
        use sb_platform::{Code, Problem};
        if self.is_unavailable() {
            Problem::new(Code::LivekitUnavailable)
                .with_detail("the media server is temporarily unavailable, retry shortly")
                .with_retry_after(2)
        } else {
            Problem::new(Code::LivekitError).with_detail("the media server refused the request")
        }
    }
}

impl From<ServiceError> for LiveKitError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Twirp(ServerError::Twirp(code)) => LiveKitError::Refused {
                code: code.code,
                message: code.msg,
            },
            other => LiveKitError::Unavailable(other.to_string()),
        }
    }
}

/// Settings of a room created by the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomOptions {
    /// Seconds an empty room is kept before LiveKit closes it.
    pub empty_timeout_secs: u32,
    /// 0 for no limit.
    pub max_participants: u32,
    pub metadata: String,
}

/// The LiveKit operations the services use.
pub trait LiveKitApi: Send + Sync {
    fn create_room(
        &self,
        name: &str,
        options: RoomOptions,
    ) -> BoxFuture<'_, Result<proto::Room, LiveKitError>>;
    fn delete_room(&self, name: &str) -> BoxFuture<'_, Result<(), LiveKitError>>;
    fn list_participants(
        &self,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<proto::ParticipantInfo>, LiveKitError>>;
    fn remove_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> BoxFuture<'_, Result<(), LiveKitError>>;
    /// Applies `preset`'s publish/subscribe permissions to a connected participant (lobby
    /// admission, coach and barge modes).
    fn set_permissions(
        &self,
        room: &str,
        identity: &str,
        preset: Preset,
    ) -> BoxFuture<'_, Result<proto::ParticipantInfo, LiveKitError>>;
    /// Subscribes (or unsubscribes) the participant `identity` to the given tracks of others,
    /// enforced by the SFU: a coaching supervisor's microphone is taken away from everyone but
    /// the rep this way.
    fn update_subscriptions(
        &self,
        room: &str,
        identity: &str,
        track_sids: Vec<String>,
        subscribe: bool,
    ) -> BoxFuture<'_, Result<(), LiveKitError>>;
    /// Mutes (or unmutes) a published track of a participant (host controls).
    fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> BoxFuture<'_, Result<proto::TrackInfo, LiveKitError>>;
    /// Records the room (composite) to a file: `output` names the file and, when set, the
    /// S3-compatible bucket it is uploaded to (otherwise the egress service's own storage).
    fn start_recording(
        &self,
        room: &str,
        output: proto::EncodedFileOutput,
    ) -> BoxFuture<'_, Result<proto::EgressInfo, LiveKitError>>;
    fn stop_egress(
        &self,
        egress_id: &str,
    ) -> BoxFuture<'_, Result<proto::EgressInfo, LiveKitError>>;
    fn list_egress(
        &self,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<proto::EgressInfo>, LiveKitError>>;
}

/// The permission a preset grants, in the form `UpdateParticipant` takes.
pub fn permission(preset: Preset) -> proto::ParticipantPermission {
    let grants = preset.grants("");
    let source = |name: &str| match name {
        "camera" => proto::TrackSource::Camera as i32,
        "microphone" => proto::TrackSource::Microphone as i32,
        "screen_share" => proto::TrackSource::ScreenShare as i32,
        "screen_share_audio" => proto::TrackSource::ScreenShareAudio as i32,
        _ => proto::TrackSource::Unknown as i32,
    };
    proto::ParticipantPermission {
        can_subscribe: grants.can_subscribe == Some(true),
        can_publish: grants.can_publish == Some(true),
        can_publish_data: grants.can_publish_data == Some(true),
        can_publish_sources: grants
            .can_publish_sources
            .iter()
            .map(|s| source(s))
            .collect(),
        hidden: grants.hidden,
        can_update_metadata: grants.can_update_own_metadata == Some(true),
        ..Default::default()
    }
}

/// The real server, through `livekit-api`'s Twirp clients (protobuf bodies, a fresh short-lived
/// token with only the grant each call needs).
pub struct LiveKitClient {
    rooms: RoomClient,
    egress: EgressClient,
}

impl LiveKitClient {
    pub fn new(config: &LiveKitConfig) -> Self {
        let api = config.api_url();
        Self {
            rooms: RoomClient::with_api_key(&api, &config.api_key, config.secret())
                .with_failover(false),
            egress: EgressClient::with_api_key(&api, &config.api_key, config.secret()),
        }
    }
}

impl LiveKitApi for LiveKitClient {
    fn create_room(
        &self,
        name: &str,
        options: RoomOptions,
    ) -> BoxFuture<'_, Result<proto::Room, LiveKitError>> {
        let name = name.to_owned();
        Box::pin(async move {
            let options = CreateRoomOptions {
                empty_timeout: options.empty_timeout_secs,
                max_participants: options.max_participants,
                metadata: options.metadata,
                ..Default::default()
            };
            Ok(self.rooms.create_room(&name, options).await?)
        })
    }

    fn delete_room(&self, name: &str) -> BoxFuture<'_, Result<(), LiveKitError>> {
        let name = name.to_owned();
        Box::pin(async move { Ok(self.rooms.delete_room(&name).await?) })
    }

    fn list_participants(
        &self,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<proto::ParticipantInfo>, LiveKitError>> {
        let room = room.to_owned();
        Box::pin(async move { Ok(self.rooms.list_participants(&room).await?) })
    }

    fn remove_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> BoxFuture<'_, Result<(), LiveKitError>> {
        let (room, identity) = (room.to_owned(), identity.to_owned());
        Box::pin(async move { Ok(self.rooms.remove_participant(&room, &identity).await?) })
    }

    fn set_permissions(
        &self,
        room: &str,
        identity: &str,
        preset: Preset,
    ) -> BoxFuture<'_, Result<proto::ParticipantInfo, LiveKitError>> {
        let (room, identity) = (room.to_owned(), identity.to_owned());
        Box::pin(async move {
            let options = UpdateParticipantOptions {
                permission: Some(permission(preset)),
                ..Default::default()
            };
            Ok(self
                .rooms
                .update_participant(&room, &identity, options)
                .await?)
        })
    }

    fn update_subscriptions(
        &self,
        room: &str,
        identity: &str,
        track_sids: Vec<String>,
        subscribe: bool,
    ) -> BoxFuture<'_, Result<(), LiveKitError>> {
        let (room, identity) = (room.to_owned(), identity.to_owned());
        Box::pin(async move {
            Ok(self
                .rooms
                .update_subscriptions(&room, &identity, track_sids, subscribe)
                .await?)
        })
    }

    fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> BoxFuture<'_, Result<proto::TrackInfo, LiveKitError>> {
        let (room, identity, track_sid) =
            (room.to_owned(), identity.to_owned(), track_sid.to_owned());
        Box::pin(async move {
            Ok(self
                .rooms
                .mute_published_track(&room, &identity, &track_sid, muted)
                .await?)
        })
    }

    fn start_recording(
        &self,
        room: &str,
        output: proto::EncodedFileOutput,
    ) -> BoxFuture<'_, Result<proto::EgressInfo, LiveKitError>> {
        let room = room.to_owned();
        Box::pin(async move {
            let output = EgressOutput::File(output);
            Ok(self
                .egress
                .start_room_composite_egress(&room, vec![output], RoomCompositeOptions::default())
                .await?)
        })
    }

    fn stop_egress(
        &self,
        egress_id: &str,
    ) -> BoxFuture<'_, Result<proto::EgressInfo, LiveKitError>> {
        let egress_id = egress_id.to_owned();
        Box::pin(async move { Ok(self.egress.stop_egress(&egress_id).await?) })
    }

    fn list_egress(
        &self,
        room: &str,
    ) -> BoxFuture<'_, Result<Vec<proto::EgressInfo>, LiveKitError>> {
        let room = room.to_owned();
        Box::pin(async move {
            let options = EgressListOptions {
                filter: EgressListFilter::Room(room),
                ..Default::default()
            };
            Ok(self.egress.list_egress(options).await?)
        })
    }
}

/// Runs one server API call for at most `timeout`; running out counts as unavailable (the
/// services answer 503 and their jobs retry).
pub async fn bounded<T>(
    timeout: std::time::Duration,
    call: impl Future<Output = Result<T, LiveKitError>>,
) -> Result<T, LiveKitError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(LiveKitError::Unavailable(format!(
            "no answer within {timeout:?}"
        ))),
    }
}
