//! The five scenarios; each returns its table rows (a row saying why, when it could not run).

pub mod cold_start;
pub mod join;
pub mod outbox;
pub mod signaling;
pub mod telephony;
