//! Starts a service's `Application` in the background and talks to it over HTTP.

use std::time::Duration;

use sb_platform::Application;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running service on an ephemeral port. Dropping it stops the service.
pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub client: reqwest::Client,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Runs `app` until the `TestApp` is stopped or dropped.
    pub fn spawn(app: Application) -> Self {
        crate::init();
        let port = app.port();
        let stop = app.stop_token();
        let task = tokio::spawn(app.run_until_stopped());
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(client) => client,
            Err(error) => panic!("building the test HTTP client: {error}"),
        };
        Self {
            port,
            address: format!("http://127.0.0.1:{port}"),
            client,
            stop,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    /// Sends `request` with `token` (if any) and returns the status and the body as JSON (a
    /// body that is not JSON comes back as a JSON string).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> crate::Result<(u16, serde_json::Value)> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, body))
    }

    /// Posts `body` to `/webhooks/livekit` signed like `livekit`'s server signs webhooks.
    pub async fn livekit_webhook(
        &self,
        livekit: &crate::FakeLiveKit,
        body: &serde_json::Value,
    ) -> crate::Result<(u16, serde_json::Value)> {
        let raw = body.to_string();
        let request = self
            .post("/webhooks/livekit")
            .header("Authorization", livekit.sign_webhook(&raw)?)
            .header("Content-Type", "application/webhook+json")
            .body(raw);
        self.send(request, None).await
    }

    /// `POST path` with a JSON body and a bearer token.
    pub async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> crate::Result<(u16, serde_json::Value)> {
        self.send(self.post(path).json(body), Some(token)).await
    }

    /// `POST path` without a body.
    pub async fn post_empty(
        &self,
        token: &str,
        path: &str,
    ) -> crate::Result<(u16, serde_json::Value)> {
        self.send(self.post(path), Some(token)).await
    }

    /// `GET path` with a bearer token.
    pub async fn get_json(
        &self,
        token: &str,
        path: &str,
    ) -> crate::Result<(u16, serde_json::Value)> {
        self.send(self.get(path), Some(token)).await
    }

    /// Stops the service gracefully and waits (bounded) until it has.
    pub async fn stop(mut self) -> crate::Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            crate::within(Duration::from_secs(15), "service stop", task).await???;
        }
        Ok(())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
