//! The signaling service's own metrics (the Socket.IO server's `sb_socketio_*` are registered by
//! the server itself, in the same registry).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::SERVICE;
use crate::domain::RoomStatus;

#[derive(Clone)]
pub struct SignalingMetrics {
    /// Rooms with at least one connected member on this instance.
    pub active_rooms: IntGauge,
    transitions: [IntCounter; 3],
}

const STATUSES: [RoomStatus; 3] = [
    RoomStatus::Waiting,
    RoomStatus::InProgress,
    RoomStatus::Ended,
];

impl SignalingMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let active_rooms = IntGauge::with_opts(
            Opts::new(
                "sb_signaling_active_rooms",
                "Rooms with at least one member connected to this instance",
            )
            .const_label("service", SERVICE),
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "sb_signaling_room_transitions_total",
                "Room status changes, by the status entered (Waiting, InProgress, Ended)",
            )
            .const_label("service", SERVICE),
            &["status"],
        )?;
        registry.register(Box::new(active_rooms.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        Ok(Self {
            active_rooms,
            transitions: STATUSES.map(|s| transitions.with_label_values(&[s.as_str()])),
        })
    }

    /// Metrics in a registry of their own, for state built outside the service (tests, tools).
    pub fn detached() -> Result<Self, prometheus::Error> {
        Self::register(&Registry::new())
    }

    pub fn transition(&self, status: RoomStatus) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.transitions[i].inc();
        }
    }
}
