//! The route table of the video service, one file per resource.

mod calls;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use sb_platform::request::{JsonBody, OptionalJson};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    calls::config(cfg);
    webhooks::config(cfg);
}
