//! The telephony service's rules, with no I/O: call statuses and their order, phone numbers and
//! identities, quality thresholds and the job's backoff.

pub mod backoff;
pub mod phone;
pub mod quality;
pub mod status;
