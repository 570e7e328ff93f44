//! The signaling service's routes: the REST room routes, the `/video-call` Socket.IO namespace's
//! event handlers, and the demo page.

pub mod demo;
mod rooms;
pub mod socket;

pub use rooms::config;
