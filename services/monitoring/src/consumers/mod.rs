//! JetStream consumers of the monitoring service.

pub mod calls;
pub mod users;
