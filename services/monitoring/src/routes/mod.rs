//! The route table of the monitoring service, one file per resource.

mod audit;
mod rep;
mod sessions;
mod settings;
mod stream;
mod supervisor;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    rep::config(cfg);
    supervisor::config(cfg);
    sessions::config(cfg);
    stream::config(cfg);
    audit::config(cfg);
    settings::config(cfg);
    webhooks::config(cfg);
}

/// The caller's address for the audit, believing only `TRUSTED_PROXY_COUNT` proxies (one
/// implementation for every service).
pub use sb_platform::client_ip::client_ip;
