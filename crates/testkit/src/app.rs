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

    /// Sends `request` with `token` (if any) and reads the whole answer.
    pub async fn answer(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> crate::Result<Answer> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        Answer::read(request.send().await?).await
    }

    /// Like [`Self::answer`], reduced to the status and the body.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> crate::Result<(u16, serde_json::Value)> {
        Ok(self.answer(request, token).await?.pair())
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

    /// Posts `form` to `path_and_query` as Twilio posts webhooks, with `signature` as its
    /// `X-Twilio-Signature` (or none).
    pub async fn twilio_webhook(
        &self,
        path_and_query: &str,
        form: &[(String, String)],
        signature: Option<&str>,
    ) -> crate::Result<Answer> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .post(path_and_query)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header(
                "I-Twilio-Idempotency-Token",
                uuid::Uuid::new_v4().to_string(),
            )
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        self.answer(request, None).await
    }

    /// `GET path` without following a redirect.
    pub async fn get_unfollowed(&self, path: &str) -> crate::Result<Answer> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Answer::read(client.get(self.url(path)).send().await?).await
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

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> crate::Result<String> {
        Ok(self.get("/metrics").send().await?.text().await?)
    }

    /// `GET /openapi.json`, which must answer 200.
    pub async fn openapi(&self) -> crate::Result<serde_json::Value> {
        let response = self.get("/openapi.json").send().await?;
        if response.status() != 200 {
            return Err(format!("GET /openapi.json: {}", response.status()).into());
        }
        Ok(response.json().await?)
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

/// A whole answer: status, the headers tests look at, and the body as JSON (a body that is not
/// JSON comes back as a JSON string) and as text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub body: serde_json::Value,
    pub text: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> crate::Result<Self> {
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let location = header(reqwest::header::LOCATION);
        let text = response.text().await?;
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text.clone()));
        Ok(Self {
            status,
            content_type,
            retry_after,
            location,
            body,
            text,
        })
    }

    /// The status and the body, as most assertions want them.
    pub fn pair(self) -> (u16, serde_json::Value) {
        (self.status, self.body)
    }
}
