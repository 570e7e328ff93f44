//! Cluster adapter over core NATS: broadcasts reach the sockets of every instance, and a
//! request can gather an answer from every live instance (room members, presence).
//!
//! Instances find each other with heartbeats on `<subject>.hello`: each says hello at start and
//! every [`HEARTBEAT`], answers a newcomer's hello at once, and forgets a peer not heard from for
//! three heartbeats. A gather (`<subject>.gather`, answers to a private inbox) waits for every
//! live peer or the timeout, whichever comes first: a dead instance costs one timeout until it is
//! forgotten, and its sockets — gone with it — are not reported.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::server::{SocketIo, lock};

/// How often an instance tells the others it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A question to every instance, or an instance's answer to one.
#[derive(Debug, Serialize, Deserialize)]
struct Gather {
    origin: String,
    body: Value,
}

/// An instance's heartbeat.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    origin: String,
    /// Set on a heartbeat that answers a newcomer's: not to be answered again.
    reply: bool,
}

/// One broadcast as it travels between instances: the encoded packet and who gets it.
#[derive(Debug, Deserialize)]
struct Envelope {
    origin: String,
    nsp: String,
    rooms: Vec<String>,
    except: Vec<String>,
    packet: String,
}

/// [`Envelope`] as it is sent: borrowed from the broadcast, nothing copied to write it.
#[derive(Debug, Serialize)]
struct EnvelopeOut<'a> {
    origin: &'a str,
    nsp: &'a str,
    rooms: &'a [&'a str],
    except: &'a [&'a str],
    packet: &'a str,
}

/// The publishing side; one task publishes in order so a peer sees signals in the order sent.
pub(crate) struct Cluster {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    client: async_nats::Client,
    subject: String,
    /// Other instances → when they were last heard from.
    peers: Mutex<HashMap<String, Instant>>,
}

impl Cluster {
    fn gather_subject(&self) -> String {
        format!("{}.gather", self.subject)
    }

    fn hello_subject(&self) -> String {
        format!("{}.hello", self.subject)
    }

    fn has_live_peer(&self) -> bool {
        lock(&self.peers)
            .values()
            .any(|seen| seen.elapsed() < HEARTBEAT * 3)
    }

    /// Peers heard from within three heartbeats.
    fn live_peers(&self) -> HashSet<String> {
        let mut peers = lock(&self.peers);
        peers.retain(|_, seen| seen.elapsed() < HEARTBEAT * 3);
        peers.keys().cloned().collect()
    }

    async fn hello(&self, origin: &str, reply: bool) {
        let hello = Hello {
            origin: origin.to_owned(),
            reply,
        };
        if let Ok(bytes) = serde_json::to_vec(&hello)
            && let Err(error) = self
                .client
                .publish(self.hello_subject(), bytes.into())
                .await
        {
            tracing::warn!(%error, "cluster heartbeat not published");
        }
    }

    pub(crate) fn publish(
        &self,
        origin: &str,
        nsp: &str,
        rooms: &[&str],
        except: &[&str],
        packet: &str,
    ) {
        // alone in the cluster: nobody to tell (a newcomer says hello before it serves anyone)
        if !self.has_live_peer() {
            return;
        }
        let envelope = EnvelopeOut {
            origin,
            nsp,
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
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|source| ClusterError::Subscribe { subject, source })
            }
        };
        let mut gathers = subscribe(format!("{subject}.gather")).await?;
        let mut hellos = subscribe(format!("{subject}.hello")).await?;
        client
            .flush()
            .await
            .map_err(|e| ClusterError::Flush(e.to_string()))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        if !self.set_cluster(Cluster {
            tx,
            client: client.clone(),
            subject: subject.clone(),
            peers: Mutex::new(HashMap::new()),
        }) {
            return Err(ClusterError::AlreadyAttached);
        }
        let io = self.clone();
        tokio::spawn(async move {
            while let Some(message) = gathers.next().await {
                let Some(reply) = message.reply else { continue };
                let Ok(request) = serde_json::from_slice::<Gather>(&message.payload) else {
                    tracing::warn!("unreadable cluster request");
                    continue;
                };
                if request.origin == io.uid() {
                    continue;
                }
                let answer = Gather {
                    origin: io.uid().to_owned(),
                    body: io.answer_locally(request.body),
                };
                let Some(cluster) = io.cluster() else { break };
                if let Ok(bytes) = serde_json::to_vec(&answer)
                    && let Err(error) = cluster.client.publish(reply, bytes.into()).await
                {
                    tracing::warn!(%error, "cluster answer not published");
                }
            }
        });
        // the others know this instance before it serves its first socket
        if let Some(cluster) = self.cluster() {
            cluster.hello(self.uid(), false).await;
            client
                .flush()
                .await
                .map_err(|e| ClusterError::Flush(e.to_string()))?;
        }
        let io = self.clone();
        tokio::spawn(async move {
            let Some(cluster) = io.cluster() else { return };
            let mut beat =
                tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
            loop {
                tokio::select! {
                    _ = beat.tick() => cluster.hello(io.uid(), false).await,
                    message = hellos.next() => {
                        let Some(message) = message else { break };
                        let Ok(hello) = serde_json::from_slice::<Hello>(&message.payload) else {
                            continue;
                        };
                        if hello.origin == io.uid() {
                            continue;
                        }
                        let known = lock(&cluster.peers)
                            .insert(hello.origin, Instant::now())
                            .is_some();
                        // a newcomer learns of this instance now, not at the next heartbeat
                        if !known && !hello.reply {
                            cluster.hello(io.uid(), true).await;
                        }
                    }
                }
            }
        });
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
                            envelope.packet.into(),
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

impl SocketIo {
    /// Asks every live instance of the cluster (this one included, answering first) the
    /// server's cluster question (see [`crate::Builder::on_cluster_request`]) and returns their
    /// answers; instances that do not answer within `timeout` are left out.
    pub async fn gather(&self, request: Value, timeout: Duration) -> Vec<Value> {
        let mut answers = vec![self.answer_locally(request.clone())];
        let Some(cluster) = self.cluster() else {
            return answers;
        };
        let mut expected = cluster.live_peers();
        if expected.is_empty() {
            return answers;
        }
        let inbox = cluster.client.new_inbox();
        let mut replies = match cluster.client.subscribe(inbox.clone()).await {
            Ok(replies) => replies,
            Err(error) => {
                tracing::warn!(%error, "cluster request not sent");
                return answers;
            }
        };
        let question = Gather {
            origin: self.uid().to_owned(),
            body: request,
        };
        let Ok(bytes) = serde_json::to_vec(&question) else {
            return answers;
        };
        if let Err(error) = cluster
            .client
            .publish_with_reply(cluster.gather_subject(), inbox, bytes.into())
            .await
        {
            tracing::warn!(%error, "cluster request not sent");
            return answers;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !expected.is_empty() {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await else {
                tracing::debug!(missing = expected.len(), "cluster request timed out");
                break;
            };
            if let Ok(answer) = serde_json::from_slice::<Gather>(&message.payload) {
                expected.remove(&answer.origin);
                answers.push(answer.body);
            }
        }
        answers
    }
}
