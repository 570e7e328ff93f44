//! The route table of the video service, one file per resource.

mod calls;
mod controls;
mod lobby;
mod meetings;
mod recordings;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use sb_platform::request::{JsonBody, OptionalJson};

/// actix-web tries routes in the order they are registered, a regex match for each pattern with
/// a parameter: the calls come first because the join is the busiest route. No pattern of one
/// file matches a path of another's, so the order changes no answer.
pub fn config(cfg: &mut ServiceConfig<'_>) {
    calls::config(cfg);
    lobby::config(cfg);
    controls::config(cfg);
    recordings::config(cfg);
    meetings::config(cfg);
    webhooks::config(cfg);
}
