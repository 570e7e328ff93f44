//! A Socket.IO v5 / Engine.IO v4 server for actix-web: websocket and long-polling transports,
//! namespaces with authenticated CONNECT, events, acknowledgements, rooms, rate limits, and a
//! cluster adapter over core NATS.

mod cluster;
mod config;
mod metrics;
pub mod packet;
mod server;
mod socket;
mod transport;

pub use cluster::ClusterError;
pub use config::Config;
pub use metrics::Rejection;
pub use server::{
    Builder, ClusterHandler, ConnectContext, ConnectError, Handshake, Namespace, Refusal, SocketIo,
};
pub use socket::{Ack, AckError, DisconnectReason, Socket, SocketData};
