//! What routes, consumers and jobs do: each function owns its transaction (or runs in the
//! caller's), calls LiveKit where needed and writes events to the outbox with the change.

pub mod presence;
pub mod sessions;
pub mod webhook;
