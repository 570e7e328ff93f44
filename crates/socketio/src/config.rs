//! Server settings: heartbeats, payload limits, rate limits, allowed origins.

use std::time::Duration;

/// Settings of a Socket.IO server. The defaults are the reference server's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the transports are served (clients default to `/socket.io`).
    pub path: String,
    /// How often the server pings (Engine.IO `pingInterval`).
    pub ping_interval: Duration,
    /// How long a pong may take before the session is closed (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest packet (websocket frame, or polling body) accepted, in bytes (`maxPayload`).
    pub max_payload: usize,
    /// A session that has joined no namespace by then is closed.
    pub connect_timeout: Duration,
    /// Events a socket may send per second on average.
    pub events_per_second: u32,
    /// Events a socket may send at once before the average applies.
    pub event_burst: u32,
    /// Packets queued for one client before it counts as too slow and is dropped.
    pub outbound_buffer: usize,
    /// Origins allowed besides the server's own host; an empty list allows only same-origin
    /// browser pages (non-browser clients send no `Origin`).
    pub cors_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/socket.io".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            events_per_second: 50,
            event_burst: 100,
            outbound_buffer: 1024,
            cors_origins: Vec::new(),
        }
    }
}
