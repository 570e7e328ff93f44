//! NATS connection shared by services, and its readiness probe.

pub use async_nats::Client;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::config::NatsConfig;
use crate::health::ReadinessProbe;

#[derive(Debug, thiserror::Error)]
#[error(
    "NATS is not reachable at {url}: {source}. Start it with: nats-server -js (Debian: start-stop-daemon --start --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server)"
)]
pub struct NatsUnreachable {
    pub url: String,
    #[source]
    pub source: async_nats::ConnectError,
}

/// Connects with the service name (shown by `nats server report connections`) and keeps
/// reconnecting forever after the first success: an outage must not kill the service. `NATS_URL`
/// may list several servers of a cluster, comma-separated: the first that answers is used, and
/// the client learns the cluster's other servers from it to reconnect to when that one fails.
pub async fn connect(
    config: &NatsConfig,
    service: &str,
) -> Result<async_nats::Client, NatsUnreachable> {
    async_nats::ConnectOptions::new()
        .name(format!("switchboard-{service}"))
        .connection_timeout(config.connect_timeout)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                async_nats::Event::Connected => tracing::info!("nats connected"),
                other => tracing::debug!(event = %other, "nats event"),
            }
        })
        .connect(
            config
                .url
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|source| NatsUnreachable {
            url: config.redacted_url(),
            source,
        })
}

/// Ready when the client is connected and a round trip (flush) completes.
pub struct NatsProbe {
    client: async_nats::Client,
}

impl NatsProbe {
    pub fn new(client: async_nats::Client) -> Self {
        Self { client }
    }
}

impl ReadinessProbe for NatsProbe {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            if self.client.connection_state() != async_nats::connection::State::Connected {
                return Err("disconnected".to_owned());
            }
            self.client.flush().await.map_err(|e| e.to_string())
        }
        .boxed()
    }
}
