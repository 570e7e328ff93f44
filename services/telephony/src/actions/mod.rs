//! What the routes and the job do: each function owns its transaction (or runs inside the
//! caller's, when it says so), calls Twilio outside of transactions, and writes events to the
//! outbox in the same transaction as the change they announce.

pub mod access;
pub mod calls;
pub mod conference;
pub mod events;
pub mod numbers;
pub mod quality;
pub mod recordings;
pub mod status;
pub mod supervision;
pub mod voice;
