//! The event backbone: contracts compiled from `proto/`, typed subjects, JetStream stream setup,
//! the transactional outbox and its relay, the consumer runner, and the appointment projector.

pub mod consumer;
mod event;
pub mod headers;
mod metrics;
pub mod outbox;
pub mod projector;
pub mod publish;
pub mod streams;
mod subject;

pub use event::{ALL_EVENTS, DecodeError, Event, EventEnvelope, Subject, decode_json};
pub use metrics::EventMetrics;
pub use subject::{Domain, Namespace};

/// The encoded `FileDescriptorSet` of `switchboard.events.v1`, to decode events by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchboard.events.v1.fds"));

/// Generated protobuf types of `switchboard.events.v1`.
pub mod proto {
    #![expect(clippy::all, reason = "generated code")]
    include!(concat!(env!("OUT_DIR"), "/switchboard.events.v1.rs"));
}
