//! The server's Prometheus metrics: sockets, packets, disconnects, rejections. Every series is
//! resolved when the server is built, so counting on the hot path is one atomic add.

use std::collections::HashMap;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::socket::DisconnectReason;

/// Why the server refused something a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// An event beyond the socket's budget.
    RateLimit,
    /// A frame or polling body over `max_payload`.
    PayloadTooLarge,
    /// A CONNECT refused by the namespace (bad or missing credentials) or to an unknown one.
    ConnectError,
    /// A packet that could not be read.
    BadPacket,
}

impl Rejection {
    const ALL: [Self; 4] = [
        Self::RateLimit,
        Self::PayloadTooLarge,
        Self::ConnectError,
        Self::BadPacket,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ConnectError => "connect_error",
            Self::BadPacket => "bad_packet",
        }
    }
}

const REASONS: [DisconnectReason; 7] = [
    DisconnectReason::TransportClose,
    DisconnectReason::TransportError,
    DisconnectReason::PingTimeout,
    DisconnectReason::ClientNamespaceDisconnect,
    DisconnectReason::ServerNamespaceDisconnect,
    DisconnectReason::RateLimited,
    DisconnectReason::SlowClient,
];

/// The series of one server, registered in a service's registry with a constant `service` label.
pub(crate) struct ServerMetrics {
    connected: HashMap<String, IntGauge>,
    packets_in: IntCounter,
    packets_out: IntCounter,
    disconnects: [IntCounter; REASONS.len()],
    rejected: [IntCounter; Rejection::ALL.len()],
}

impl ServerMetrics {
    pub(crate) fn register<'a>(
        registry: &Registry,
        service: &str,
        namespaces: impl Iterator<Item = &'a str>,
    ) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help).const_label("service", service.to_owned())
        };
        let connected = IntGaugeVec::new(
            opts(
                "sb_socketio_connected_sockets",
                "Sockets connected to a namespace on this instance",
            ),
            &["namespace"],
        )?;
        let packets = IntCounterVec::new(
            opts(
                "sb_socketio_packets_total",
                "Engine.IO packets received from clients (in) and queued to them (out)",
            ),
            &["direction"],
        )?;
        let disconnects = IntCounterVec::new(
            opts(
                "sb_socketio_disconnects_total",
                "Sockets that left their namespace, by reason",
            ),
            &["reason"],
        )?;
        let rejected = IntCounterVec::new(
            opts(
                "sb_socketio_rejected_total",
                "Client input refused: rate_limit, payload_too_large, connect_error, bad_packet",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(packets.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            connected: namespaces
                .map(|nsp| (nsp.to_owned(), connected.with_label_values(&[nsp])))
                .collect(),
            packets_in: packets.with_label_values(&["in"]),
            packets_out: packets.with_label_values(&["out"]),
            disconnects: REASONS.map(|r| disconnects.with_label_values(&[r.as_str()])),
            rejected: Rejection::ALL.map(|r| rejected.with_label_values(&[r.as_str()])),
        })
    }

    pub(crate) fn connected(&self, nsp: &str, delta: i64) {
        if let Some(gauge) = self.connected.get(nsp) {
            gauge.add(delta);
        }
    }

    pub(crate) fn packet_in(&self) {
        self.packets_in.inc();
    }

    pub(crate) fn packets_out(&self, count: u64) {
        self.packets_out.inc_by(count);
    }

    pub(crate) fn disconnect(&self, reason: DisconnectReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.disconnects[i].inc();
        }
    }

    pub(crate) fn rejected(&self, rejection: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == rejection) {
            self.rejected[i].inc();
        }
    }
}
