//! LiveKit adapter shared by the video and monitoring services: configuration, grant presets
//! with every permission explicit, access-token minting, and webhook verification.
//! Room, participant and egress operations go through the [`LiveKitApi`] trait; the real
//! implementation is [`LiveKitClient`], and testkit has a fake Twirp server for tests.

mod config;
mod extract;
pub mod grants;
mod rooms;
mod token;
mod webhook;

pub use config::{DEV_API_KEY, DEV_API_SECRET, LiveKitConfig, LiveKitConfigError};
pub use extract::{RejectedWebhooks, SignedWebhook};
pub use grants::Preset;
pub use rooms::{
    BoxFuture, LiveKitApi, LiveKitClient, LiveKitError, RoomOptions, bounded, permission,
};
pub use token::{ParticipantToken, TokenError, TokenIssuer};
pub use webhook::{MAX_WEBHOOK_BYTES, WebhookError, WebhookVerifier};

/// LiveKit protocol types (webhook events, rooms, participants).
pub use livekit_protocol as protocol;
