//! The route table of the monitoring service, one file per resource.

mod audit;
mod rep;
mod sessions;
mod settings;
mod stream;
mod supervisor;
mod webhooks;

use actix_web::HttpRequest;
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

/// The caller's address for the audit: the gateway's `X-Forwarded-For`/`Forwarded` (the
/// services run behind one), else the peer.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    req.connection_info()
        .realip_remote_addr()
        .map(|ip| ip.chars().take(64).collect())
}
