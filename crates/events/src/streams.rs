//! JetStream streams, one per domain, created or updated idempotently at start-up.
//!
//! De-duplication window: JetStream drops a second message with the same `Nats-Msg-Id` (the
//! event id) within `EVENTS_DUPLICATE_WINDOW` (default 2 minutes). The outbox relay republishes a
//! row only when it crashed or timed out between publishing and marking the row published, which it
//! retries within seconds; a republish later than the window is caught by the consumers' inbox.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use sb_platform::config::{ConfigError, Env};

use crate::subject::{Domain, Namespace};

#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 1 for a single server; 3 in production (JetStream R3).
    pub replicas: usize,
    /// How long events are kept.
    pub max_age: Duration,
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl StreamSettings {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            replicas: env.or("EVENTS_STREAM_REPLICAS", defaults.replicas)?,
            max_age: env.duration("EVENTS_MAX_AGE", defaults.max_age)?,
            duplicate_window: env.duration("EVENTS_DUPLICATE_WINDOW", defaults.duplicate_window)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up stream {stream}: {reason}")]
pub struct StreamSetupError {
    pub stream: String,
    pub reason: String,
}

pub fn stream_config(ns: &Namespace, domain: Domain, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: ns.stream(domain),
        description: Some(format!("Switchboard {} events", domain.subject_root())),
        subjects: vec![ns.subject(&format!("{}.>", domain.subject_root()))],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        max_age: settings.max_age,
        duplicate_window: settings.duplicate_window,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// Creates the stream, or updates it when its settings changed. Safe to call from every replica at
/// once.
pub async fn ensure_stream(
    js: &jetstream::Context,
    ns: &Namespace,
    domain: Domain,
    settings: &StreamSettings,
) -> Result<(), StreamSetupError> {
    let wanted = stream_config(ns, domain, settings);
    let fail = |reason: String| StreamSetupError {
        stream: wanted.name.clone(),
        reason,
    };
    for _ in 0..3 {
        match js.get_stream(&wanted.name).await {
            Ok(mut existing) => {
                let current = existing
                    .info()
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .config
                    .clone();
                let differs = current.subjects != wanted.subjects
                    || current.max_age != wanted.max_age
                    || current.duplicate_window != wanted.duplicate_window
                    || current.num_replicas != wanted.num_replicas;
                if differs {
                    tracing::info!(stream = %wanted.name, "updating stream settings");
                    js.update_stream(&wanted)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                return Ok(());
            }
            Err(error) if is_stream_not_found(&error) => {
                match js.create_stream(wanted.clone()).await {
                    Ok(_) => {
                        tracing::info!(stream = %wanted.name, "created stream");
                        return Ok(());
                    }
                    // Another replica created it in between: read it again.
                    Err(error) if error.to_string().contains("already in use") => continue,
                    Err(error) => return Err(fail(error.to_string())),
                }
            }
            Err(error) => return Err(fail(error.to_string())),
        }
    }
    Err(fail("stream kept changing while being set up".to_owned()))
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

pub async fn ensure_streams(
    js: &jetstream::Context,
    ns: &Namespace,
    domains: &[Domain],
    settings: &StreamSettings,
) -> Result<(), StreamSetupError> {
    for domain in domains {
        ensure_stream(js, ns, *domain, settings).await?;
    }
    Ok(())
}
