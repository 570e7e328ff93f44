//! A minimal Socket.IO v5 client over a websocket (namespace `/video-call`), enough to join a
//! room, exchange signals and see how the server closes the connection.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// What the server sent last before the socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The close frame's `code reason` (`1001 server shutting down`), else the last packet
    /// before the websocket closed.
    WithReason(String),
    /// The websocket closed with nothing said.
    Silently,
}

/// The server closed the websocket while we waited for a frame.
#[derive(Debug, thiserror::Error)]
#[error("websocket closed by the server: {code:?} {reason}")]
pub struct ClosedByServer {
    pub code: Option<u16>,
    pub reason: String,
}

/// Whether `error` says the server turned the session away before taking it on: it was not
/// listening (connection refused), or it closed the websocket because it is going away (1001),
/// as a server shutting down does.
pub fn turned_away(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(closed) = cause.downcast_ref::<ClosedByServer>() {
            return closed.code == Some(1001);
        }
        if let Some(tokio_tungstenite::tungstenite::Error::Io(io)) =
            cause.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

pub struct SocketClient {
    stream: Stream,
}

impl SocketClient {
    /// Opens a websocket Engine.IO session at `base` (`http://127.0.0.1:port`) and connects to
    /// `/video-call` with `token`.
    pub async fn connect(base: &str, token: &str) -> anyhow::Result<Self> {
        let url = format!("{base}/socket.io/?EIO=4&transport=websocket").replacen("http", "ws", 1);
        let (stream, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await??;
        let mut socket = Self { stream };
        let open = socket.recv().await?;
        anyhow::ensure!(open.starts_with('0'), "not an OPEN packet: {open}");
        socket
            .send(&format!(
                "40/video-call,{}",
                serde_json::json!({ "token": token })
            ))
            .await?;
        let connect = socket.recv().await?;
        anyhow::ensure!(
            connect.starts_with("40/video-call,{\"sid\""),
            "CONNECT refused: {connect}"
        );
        Ok(socket)
    }

    pub async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn emit(&mut self, event: &str, payload: Value) -> anyhow::Result<()> {
        self.send(&format!(
            "42/video-call,{}",
            serde_json::json!([event, payload])
        ))
        .await
    }

    /// The next text frame; pings are answered and skipped.
    pub async fn recv(&mut self) -> anyhow::Result<String> {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next()).await? {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => self.send("3").await?,
                // Engine.IO CLOSE: the server ends the session; its close frame, next, says why.
                Some(Ok(Message::Text(text))) if text.as_str() == "1" => {}
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClosedByServer {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame
                            .map(|f| f.reason.as_str().to_owned())
                            .unwrap_or_default(),
                    }
                    .into());
                }
                None => anyhow::bail!("websocket closed"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The next event named `name` (other events are skipped); its first argument.
    pub async fn expect(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let text = self.recv().await?;
            let Some(body) = text.strip_prefix("42/video-call,") else {
                continue;
            };
            let items: Vec<Value> = serde_json::from_str(body)?;
            if items.first().and_then(Value::as_str) == Some(name) {
                return Ok(items.get(1).cloned().unwrap_or(Value::Null));
            }
            if items.first().and_then(Value::as_str) == Some("error") {
                return Err(ErrorEvent {
                    waiting_for: name.to_owned(),
                    payload: items.get(1).cloned().unwrap_or(Value::Null),
                }
                .into());
            }
        }
    }

    /// Reads until the server ends the session (bounded by `limit`): the last thing it said.
    pub async fn until_closed(&mut self, limit: Duration) -> anyhow::Result<Closed> {
        let mut last = None;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await?;
            match next {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    drop(self.send("3").await);
                }
                Some(Ok(Message::Text(text))) => last = Some(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason.as_str()))
                        .filter(|r| r.len() > 5);
                    return Ok(match (reason, last) {
                        (Some(reason), _) => Closed::WithReason(reason),
                        (None, Some(text)) => Closed::WithReason(text),
                        (None, None) => Closed::Silently,
                    });
                }
                None | Some(Err(_)) => {
                    return Ok(last.map_or(Closed::Silently, Closed::WithReason));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stream.close(None).await?;
        Ok(())
    }
}

/// The server sent an `error` event (`{event, code, message}`) while another event was awaited.
#[derive(Debug)]
pub struct ErrorEvent {
    pub waiting_for: String,
    pub payload: Value,
}

impl ErrorEvent {
    /// The event's stable code (`unavailable` when signaling's database is away).
    pub fn code(&self) -> Option<&str> {
        self.payload.get("code").and_then(Value::as_str)
    }
}

impl std::fmt::Display for ErrorEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error event while waiting for {}: {}",
            self.waiting_for, self.payload
        )
    }
}

impl std::error::Error for ErrorEvent {}
