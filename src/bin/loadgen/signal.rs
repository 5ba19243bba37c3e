//! The `/ws` signaling socket as a client sees it: requests out, server messages in.
//!
//! A reader task drains the socket all the time (the server's once-a-second STATE must never
//! back up) and forwards everything except progress STATEs; a playback's last STATE (`finished` / `stopped`)
//! is forwarded.
use std::net::SocketAddr;
use std::time::Duration;

use app::protocol::{ClientMessage, ServerMessage};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` on `addr` (10 s at most), without a reader: for clients that must control what
/// they read (the soak's hostile ones); [`Signal::connect`] adds one.
pub async fn connect_ws(addr: SocketAddr) -> Result<Ws, String> {
    let url = format!("ws://{addr}/ws");
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "websocket connect timed out".to_string())?
    .map_err(|e| format!("websocket connect: {e}"))?;
    Ok(ws)
}

pub struct Signal {
    sink: SplitSink<Ws, Message>,
    rx: mpsc::Receiver<ServerMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl Signal {
    pub async fn connect(addr: SocketAddr) -> Result<Signal, String> {
        let ws = connect_ws(addr).await?;
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            // Ends when the socket closes or the receiver is dropped.
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(parsed) = serde_json::from_str::<ServerMessage>(&text) else {
                    continue;
                };
                if matches!(&parsed, ServerMessage::State(s) if !s.is_end()) {
                    continue;
                }
                if tx.send(parsed).await.is_err() {
                    break;
                }
            }
        });
        Ok(Signal { sink, rx, reader })
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), String> {
        self.sink
            .send(Message::Text(msg.to_json().into()))
            .await
            .map_err(|e| format!("websocket send: {e}"))
    }

    /// The next server message, or an error when the socket closed or `timeout` passed.
    pub async fn next(&mut self, timeout: Duration) -> Result<ServerMessage, String> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("the server closed the websocket".into()),
            Err(_) => Err(format!("no server message within {timeout:?}")),
        }
    }

    /// A message if one is waiting.
    pub fn try_next(&mut self) -> Option<ServerMessage> {
        self.rx.try_recv().ok()
    }

    /// Waits for a message (for `select!`); `None` once the socket is closed.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        self.rx.recv().await
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sink.close()).await;
        self.reader.abort();
    }
}

/// Waits for ANSWER; an ERROR (or anything else) is the session's failure.
pub async fn expect_answer(
    signal: &mut Signal,
    timeout: Duration,
) -> Result<app::protocol::SessionDescription, String> {
    match signal.next(timeout).await? {
        ServerMessage::Answer(b64) => {
            app::protocol::SessionDescription::decode(&b64).map_err(|e| format!("bad ANSWER: {e}"))
        }
        ServerMessage::Error(e) => Err(format!("server ERROR: {e}")),
        other => Err(format!("expected ANSWER, got {other:?}")),
    }
}

/// One HTTP/1.1 response: status, head (status line and headers) and body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request to the server on loopback (`Connection: close`), `timeout` at most: the
/// loadgen's few HTTP calls (health, WHIP) need no HTTP client crate.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let content_type = content_type
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no HTTP status")?;
        Ok(HttpResponse {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer within {timeout:?}"))?
}
