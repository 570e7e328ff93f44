//! The route table of the video service, one file per resource.

mod calls;
mod controls;
mod lobby;
mod meetings;
mod recordings;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use sb_platform::request::{JsonBody, OptionalJson};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    lobby::config(cfg);
    calls::config(cfg);
    controls::config(cfg);
    recordings::config(cfg);
    meetings::config(cfg);
    webhooks::config(cfg);
}
