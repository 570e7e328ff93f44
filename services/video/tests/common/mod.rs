//! The video service as `sb_testkit::TestService` runs it: its test configuration and build.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a part of the harness"
)]

use std::time::Duration;

use sb_testkit::{Deps, Result, Service};
use sb_video::VideoConfig;
use sb_video::config::{GuestLinkConfig, ReconcileConfig, RecordingConfig};

pub use sb_testkit::{TestAppointment, TestUser as User};

pub type TestVideo = sb_testkit::TestService<Video>;

pub struct Video;

impl Service for Video {
    type Config = VideoConfig;
    type State = sb_video::AppState;

    fn config(deps: &Deps<'_>) -> VideoConfig {
        sb_testkit::service_config!(
            deps,
            VideoConfig {
                livekit: deps.livekit.config(),
                livekit_timeout: Duration::from_secs(2),
                guest_links: GuestLinkConfig {
                    secret: "video-test-guest-link-secret-0123456789".to_owned().into(),
                    base_url: "https://app.example.test/call/guest".to_owned(),
                    open_before: Duration::from_secs(30 * 60),
                    close_after: Duration::from_secs(2 * 3600),
                },
                recording: RecordingConfig {
                    s3: None,
                    prefix: "recordings".to_owned(),
                    stuck_after: Duration::from_secs(15 * 60),
                },
                reconcile: ReconcileConfig {
                    // Tests run passes themselves with `reconcile_once`.
                    interval: Duration::from_secs(3600),
                    empty_grace: Duration::ZERO,
                },
            }
        )
    }

    fn name(_: &VideoConfig) -> &str {
        "video"
    }

    async fn build(config: VideoConfig) -> Result<sb_platform::Application> {
        Ok(sb_video::build(config).await?)
    }

    async fn state(config: VideoConfig) -> Result<sb_video::AppState> {
        Ok(sb_video::state_for_tests(config)?)
    }
}
