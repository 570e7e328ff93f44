//! The route table of the video service, one file per resource.

mod body;
mod calls;
mod meetings;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use body::{JsonBody, OptionalJson};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    calls::config(cfg);
    meetings::config(cfg);
    webhooks::config(cfg);
}
