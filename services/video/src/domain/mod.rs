//! The video service's rules, free of I/O: names, identities, call and recording states, how
//! presence is derived from LiveKit's sessions, and statistics.

pub mod call;
pub mod lobby;
pub mod meeting;
pub mod presence;
pub mod stats;
