//! Stream setup is idempotent and converges on the configured settings.

use std::time::Duration;

use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, Namespace};
use sb_testkit::{Result, TestNats};

#[tokio::test]
async fn streams_are_created_once_and_updated_when_settings_change() -> Result {
    let nats = TestNats::new().await?;
    let ns = Namespace::prefixed(nats.prefix());
    let js = nats.jetstream();
    let settings = StreamSettings::default();
    // Several replicas starting at once.
    let (a, b, c) = tokio::join!(
        ensure_streams(&js, &ns, &Domain::ALL, &settings),
        ensure_streams(&js, &ns, &Domain::ALL, &settings),
        ensure_streams(&js, &ns, &Domain::ALL, &settings),
    );
    a?;
    b?;
    c?;
    for domain in Domain::ALL {
        let mut stream = js.get_stream(ns.stream(domain)).await?;
        let info = stream.info().await?;
        assert_eq!(
            info.config.subjects,
            vec![ns.subject(&format!("{}.>", domain.subject_root()))]
        );
        assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    }
    let changed = StreamSettings {
        duplicate_window: Duration::from_secs(300),
        ..settings
    };
    ensure_streams(&js, &ns, &[Domain::Video], &changed).await?;
    let mut video = js.get_stream(ns.stream(Domain::Video)).await?;
    assert_eq!(
        video.info().await?.config.duplicate_window,
        Duration::from_secs(300)
    );
    Ok(())
}
