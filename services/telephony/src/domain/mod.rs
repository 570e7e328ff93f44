//! The telephony service's rules, with no I/O: call statuses and their order, phone numbers and
//! identities, which destinations may be called, quality thresholds, the follow-ups and their
//! backoff.

pub mod backoff;
pub mod destination;
pub mod followup;
pub mod phone;
pub mod quality;
pub mod status;
