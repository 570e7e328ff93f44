//! Cluster adapter over core NATS: broadcasts reach the sockets of every instance.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::server::SocketIo;

/// One broadcast as it travels between instances: the encoded packet and who gets it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    packet: String,
}

/// The publishing side; one task publishes in order so a peer sees signals in the order sent.
pub(crate) struct Cluster {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Cluster {
    pub(crate) fn publish(
        &self,
        origin: &str,
        nsp: &str,
        rooms: Vec<String>,
        except: Vec<String>,
        packet: String,
    ) {
        let envelope = Envelope {
            origin: origin.to_owned(),
            nsp: nsp.to_owned(),
            rooms,
            except,
            packet,
        };
        match serde_json::to_vec(&envelope) {
            Ok(bytes) => {
                // the publisher only stops with the process
                let _ = self.tx.send(bytes);
            }
            Err(error) => tracing::error!(%error, "cannot encode a cluster broadcast"),
        }
    }
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
    #[error("cannot flush the NATS connection: {0}")]
    Flush(String),
    #[error("the cluster adapter is already attached")]
    AlreadyAttached,
}

impl SocketIo {
    /// Joins the cluster of instances sharing `subject` on this NATS connection. Long-polling
    /// clients need sticky sessions at the gateway (a session lives on one instance); websocket
    /// clients do not.
    pub async fn attach_nats(
        &self,
        client: async_nats::Client,
        subject: String,
    ) -> Result<(), ClusterError> {
        let mut subscriber =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| ClusterError::Subscribe {
                    subject: subject.clone(),
                    source,
                })?;
        // the subscription is live on the server before any broadcast can depend on it
        client
            .flush()
            .await
            .map_err(|e| ClusterError::Flush(e.to_string()))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        if !self.set_cluster(Cluster { tx }) {
            return Err(ClusterError::AlreadyAttached);
        }
        let publisher = client.clone();
        let publish_subject = subject.clone();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if let Err(error) = publisher
                    .publish(publish_subject.clone(), bytes.into())
                    .await
                {
                    tracing::warn!(%error, "cluster broadcast not published");
                }
            }
        });
        let io = self.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                match serde_json::from_slice::<Envelope>(&message.payload) {
                    Ok(envelope) if envelope.origin != io.uid() => {
                        io.deliver_local(
                            &envelope.nsp,
                            &envelope.rooms,
                            &envelope.except,
                            &envelope.packet,
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "unreadable cluster broadcast"),
                }
            }
        });
        Ok(())
    }
}
