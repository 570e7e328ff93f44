//! Test-only helpers shared by every crate's integration tests: a service under test
//! ([`TestService`]: spawned, with requests sent as a user), an `Application` on port 0,
//! a fresh database per test cloned from a migrated template, NATS isolation (a unique prefix on the
//! shared server, or a private `nats-server` for fault tests), tokens, bounded waits, fakes of
//! LiveKit and Twilio, and bridges to their official Node SDKs.
//!
//! Tests using it run in parallel (nextest runs each test in its own process) without sharing
//! state: nothing here is process-global except the template database, which is built once under
//! a Postgres advisory lock.

mod app;
mod appointments;
mod database;
mod fake_livekit;
mod fake_twilio;
mod interop;
mod moto;
mod nats;
mod nats_cluster;
mod private;
mod proxy;
mod service;
mod tokens;
mod users;
mod wait;

pub use app::{Answer, TestApp};
pub use appointments::TestAppointment;
pub use database::{TestDb, admin_url, postgres_server_url};
pub use fake_livekit::{
    DEFAULT_DEPARTURE_TIMEOUT_SECS, DEFAULT_EMPTY_TIMEOUT_SECS, FakeLiveKit, RecordedCall,
    sign_webhook,
};
pub use fake_twilio::{
    FakeCall, FakeConference, FakeParticipant, FakeTwilio, TwilioRequest, sign_twilio_webhook,
    twilio_sid,
};
pub use interop::{
    demo_in_chromium, eventsource_in_chromium, livekit_node, socketio_node, twilio_node,
};
pub use moto::{
    MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY, Moto, TestBucket, egress_ended_webhook,
};
pub use nats::{NatsServer, TestNats, nats_config, nats_url};
pub use nats_cluster::NatsCluster;
pub use private::{PrivateDeps, PrivateNats, PrivatePostgres};
pub use proxy::FaultProxy;
pub use service::{Deps, Service, TestService};
pub use tokens::{TEST_JWT_SECRET, TestTokens};
pub use users::TestUser;
pub use wait::{WaitTimeout, run_until, wait_until, within};

/// What [`service_config!`] names, so the services' tests need not import it.
#[doc(hidden)]
pub mod __private {
    pub use sb_events::streams::StreamSettings;
    pub use sb_platform::config::{Environment, HttpConfig};
}

/// Error type of testkit helpers and of the tests that use them.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Installs the crypto provider reqwest needs and a test log subscriber (`RUST_LOG` to see it).
pub fn init() {
    sb_platform::install_crypto_provider();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    sb_platform::telemetry::init(&sb_platform::config::LogConfig {
        environment: sb_platform::config::Environment::Development,
        format: sb_platform::config::LogFormat::Pretty,
        filter,
    });
}
