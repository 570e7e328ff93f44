//! A private NATS cluster for scale-out tests: `nodes` nats-servers with JetStream on loopback
//! ports, routed to each other, each with its own storage, any of which the test may kill and
//! restart (its storage survives, so it catches up with the cluster).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

fn free_port() -> crate::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsCluster {
    /// Starts `nodes` servers and waits until JetStream has a meta leader (streams can be made).
    pub async fn start(nodes: usize) -> crate::Result<Self> {
        let binary = crate::nats::which_nats_server()
            .ok_or("nats-server not found on PATH or in /usr/sbin")?;
        let mut cluster = Self {
            binary,
            nodes: Vec::new(),
        };
        for n in 0..nodes {
            cluster.nodes.push(Node {
                name: format!("sb-node-{n}"),
                client_port: free_port()?,
                cluster_port: free_port()?,
                store: tempfile::tempdir()?,
                child: None,
            });
        }
        for n in 0..nodes {
            cluster.resume(n).await?;
        }
        cluster.wait_for_jetstream().await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|n| self.url(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// SIGKILL of one node: a crash, not a goodbye.
    pub async fn kill(&mut self, node: usize) -> crate::Result<()> {
        if let Some(mut child) = self.nodes[node].child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts a node again on its ports and storage; returns once it accepts clients.
    pub async fn resume(&mut self, node: usize) -> crate::Result<()> {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(n, _)| *n != node)
            .map(|(_, other)| format!("nats://127.0.0.1:{}", other.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let this = &mut self.nodes[node];
        if this.child.is_some() {
            return Ok(());
        }
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &this.client_port.to_string()])
            .args(["-n", &this.name, "--cluster_name", "sb-test"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", this.cluster_port),
                "--routes",
                &routes,
                "-js",
                "-sd",
            ])
            .arg(this.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        this.child = Some(child);
        let address = format!("127.0.0.1:{}", this.client_port);
        crate::wait_until(Duration::from_secs(10), "a nats node to listen", || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.is_ok() }
        })
        .await?;
        Ok(())
    }

    /// Waits until the cluster can place a stream on every node (a meta leader is elected and
    /// every node has joined), through the first live node.
    pub async fn wait_for_jetstream(&self) -> crate::Result<()> {
        let live = (0..self.nodes.len())
            .find(|n| self.nodes[*n].child.is_some())
            .ok_or("no live node")?;
        let client = async_nats::connect(self.url(live)).await?;
        let js = async_nats::jetstream::new(client);
        let replicas = self.nodes.len();
        crate::wait_until(
            Duration::from_secs(30),
            "the JetStream cluster to place a stream on every node",
            || {
                let js = js.clone();
                async move {
                    let probe = async_nats::jetstream::stream::Config {
                        name: "SB_CLUSTER_PROBE".to_owned(),
                        subjects: vec!["sb-cluster-probe".to_owned()],
                        num_replicas: replicas,
                        ..Default::default()
                    };
                    if js.get_or_create_stream(probe).await.is_err() {
                        return false;
                    }
                    js.delete_stream("SB_CLUSTER_PROBE").await.is_ok()
                }
            },
        )
        .await?;
        Ok(())
    }
}
