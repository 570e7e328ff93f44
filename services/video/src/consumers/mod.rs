//! JetStream consumers of the video service.

pub mod appointments;
