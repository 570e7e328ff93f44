//! The route table of the telephony service, one file per resource.

mod calls;
mod numbers;
mod twilio_request;
mod voice;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use sb_platform::request::{JsonBody, OptionalJson};

pub fn config(cfg: &mut ServiceConfig<'_>) {
    calls::config(cfg);
    numbers::config(cfg);
    voice::config(cfg);
    webhooks::config(cfg);
}
