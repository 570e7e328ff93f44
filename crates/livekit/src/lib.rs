//! LiveKit adapter shared by the video and monitoring services: configuration, grant presets
//! with every permission explicit, access-token minting, and webhook verification.
//!
//! Room, participant and egress operations (a trait over `livekit-api`'s Twirp clients, with a
//! fake server in testkit) come with the video service.

mod config;
pub mod grants;
mod token;
mod webhook;

pub use config::{DEV_API_KEY, DEV_API_SECRET, LiveKitConfig, LiveKitConfigError};
pub use grants::Preset;
pub use token::{ParticipantToken, TokenError, TokenIssuer};
pub use webhook::{WebhookError, WebhookVerifier};

/// LiveKit protocol types (webhook events, rooms, participants).
pub use livekit_protocol as protocol;
