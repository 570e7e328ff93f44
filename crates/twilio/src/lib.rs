//! The Twilio adapter: a small REST client (Calls, Voice Insights), the webhook signature, Voice
//! SDK access tokens, webhook parameters and the TwiML documents Switchboard answers with.
//!
//! The `twilio` crate on crates.io cannot serve: it cannot `<Dial>`, its base URL is fixed (so it
//! cannot be tested against a fake), it mis-parses `in-progress`/`no-answer`, and its signature
//! check rejects valid URLs with a port or query (docs/architecture.md, "Twilio").

pub mod client;
pub mod params;
pub mod signature;
pub mod token;
pub mod twiml;

pub use client::{
    Account, CallResource, CallUpdate, Media, NewCall, NewParticipant, ParticipantChanges,
    ParticipantResource, TwilioApi, TwilioClient, TwilioError, codes,
};
pub use params::Params;
