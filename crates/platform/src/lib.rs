//! Service bootstrap shared by every Switchboard service: configuration, tracing, metrics,
//! health and readiness, problem+json errors, pagination, the HTTP application, the periodic-job
//! loop and graceful shutdown.

pub mod client_ip;
pub mod codes;
pub mod config;
pub mod error;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod nats;
pub mod pagination;
#[cfg(feature = "phone")]
pub mod phone;
pub mod request;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, Env, ProcessEnv};
pub use error::{ApiError, ApiErrorExt, Code, EventCode, Problem};
pub use health::{Readiness, ReadinessProbe};
pub use metrics::Metrics;
pub use pagination::{Page, PageRequest};
pub use server::{Application, ServiceSpec};

/// The allocator every Switchboard binary installs, so all of them run on the one that was
/// measured (docs/dependencies.md says why mimalloc):
/// `#[global_allocator] static ALLOCATOR: sb_platform::Allocator = sb_platform::Allocator;`
pub use mimalloc::MiMalloc as Allocator;

/// Installs rustls' ring crypto provider for the process. reqwest is built without a default
/// provider (`rustls-no-provider`), so every binary and test calls this before building a client;
/// later calls are no-ops.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    drop(rustls::crypto::ring::default_provider().install_default());
}
