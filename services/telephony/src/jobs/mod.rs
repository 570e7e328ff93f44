//! Periodic work of the telephony service.

pub mod followup;
