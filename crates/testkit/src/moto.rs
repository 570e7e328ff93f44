//! A real S3-compatible server for tests: `moto_server` (PyPI's `moto[server]`; `.ci/run`
//! installs it when missing) on a free loopback port, killed when dropped, and a client of one
//! of its buckets that does what LiveKit's egress does (create the bucket, upload files).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

/// The credentials and region moto accepts (it checks signatures, not identities).
pub const MOTO_ACCESS_KEY: &str = "test-access-key";
pub const MOTO_SECRET_KEY: &str = "test-secret-key";
pub const MOTO_REGION: &str = "us-east-1";

/// A `moto_server` on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    pub async fn start() -> crate::Result<Self> {
        crate::init();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting moto_server (pip install 'moto[server]'): {e}"))?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        crate::wait_until(Duration::from_secs(30), "moto_server answering", || {
            let request = client.get(&moto.endpoint).send();
            async move { request.await.is_ok() }
        })
        .await?;
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's own client of one bucket (path-style, moto's credentials).
pub struct TestBucket {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl TestBucket {
    /// Creates bucket `name` at `endpoint`.
    pub async fn create(endpoint: &str, name: &str) -> crate::Result<Self> {
        let bucket = Bucket::new(
            endpoint.parse()?,
            UrlStyle::Path,
            name.to_owned(),
            MOTO_REGION.to_owned(),
        )?;
        let credentials = Credentials::new(MOTO_ACCESS_KEY, MOTO_SECRET_KEY);
        let http = reqwest::Client::new();
        let url = bucket
            .create_bucket(&credentials)
            .sign(Duration::from_secs(60));
        // Werkzeug (moto) refuses a PUT without a length, and reqwest sends none for an empty body.
        let status = http
            .put(url)
            .header("Content-Length", "0")
            .send()
            .await?
            .status();
        if !status.is_success() {
            return Err(format!("creating the bucket: {status}").into());
        }
        Ok(Self {
            bucket,
            credentials,
            http,
        })
    }

    /// Uploads `bytes` as `key` (`video/mp4`, as egress writes).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> crate::Result<()> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(Duration::from_secs(60));
        let status = self
            .http
            .put(url)
            .header("Content-Type", "video/mp4")
            .body(bytes)
            .send()
            .await?
            .status();
        if !status.is_success() {
            return Err(format!("uploading {key}: {status}").into());
        }
        Ok(())
    }

    /// The status of a GET of `key`, straight from the bucket.
    pub async fn status_of(&self, key: &str) -> crate::Result<u16> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(Duration::from_secs(60));
        Ok(self.http.get(url).send().await?.status().as_u16())
    }
}

/// LiveKit's `egress_ended` webhook for a one-minute room-composite recording of `room` that
/// egress `egress` finished at `ended` (Unix seconds), its file uploaded as `key` with `size`
/// bytes: what a test posts after [`TestBucket::put`].
pub fn egress_ended_webhook(
    room: &str,
    egress: &str,
    key: &str,
    size: usize,
    ended: i64,
) -> serde_json::Value {
    serde_json::json!({
        "event": "egress_ended",
        "id": format!("EV_{egress}"),
        "createdAt": ended.to_string(),
        "room": {"name": room},
        "egressInfo": {
            "egressId": egress,
            "roomName": room,
            "status": "EGRESS_COMPLETE",
            "startedAt": ((ended - 60) * 1_000_000_000).to_string(),
            "endedAt": (ended * 1_000_000_000).to_string(),
            "fileResults": [{"filename": key, "location": format!("s3://recordings/{key}"),
                "duration": "60000000000", "size": size.to_string()}]
        }
    })
}
