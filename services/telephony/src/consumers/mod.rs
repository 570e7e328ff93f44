//! JetStream consumers of the telephony service.

pub mod supervision;
