//! `GET /ws`: the signaling websocket (the Go demo's protocol, see `app::protocol`).
//!
//! One socket runs at most one session at a time; when it ends (STOP, peer gone, limit) the
//! same socket can start another. Closing the socket ends a running recording cleanly: the
//! file is finalized and kept.
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::AppState;
use crate::session::{self, SessionHandle};
use app::protocol::{ClientMessage, MAX_MESSAGE_BYTES, ServerMessage};

pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    if let Err(why) = check_origin(&headers, &state.config.allow_origin) {
        tracing::warn!(%why, "websocket refused");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    // Frames up to 4 MiB reach the handler, which answers anything over 1 MiB with an ERROR
    // instead of dropping the connection.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| handle(socket, state))
}

/// Browsers send `Origin`; it must match the page's host or be allowed by `--allow-origin`.
/// Clients that send no Origin (scripts, tests) are not browsers and are let through.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!(
            "websocket origin {origin} is not allowed (use --allow-origin to allow it)"
        ))
    }
}

async fn handle(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<ServerMessage>(64);
    let mut running: Option<SessionHandle> = None;
    let shutdown = state.shutdown.clone();

    loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        let _ = out_tx.send(ServerMessage::Error("binary messages are not supported; send JSON text".into())).await;
                        continue;
                    }
                    Some(Ok(_)) => continue, // ping/pong
                };
                if let Some(reply) = on_text(&text, &state, &out_tx, &mut running) {
                    let _ = out_tx.send(ServerMessage::Error(reply)).await;
                }
            }
            Some(msg) = out_rx.recv() => {
                if sink.send(Message::Text(msg.to_json().into())).await.is_err() {
                    break;
                }
            }
            _ = async { running.as_mut().expect("guarded").finished().await }, if running.is_some() => {
                running = None;
            }
            _ = shutdown.cancelled() => break,
        }
    }

    // The client went away (or the server is stopping): end the session cleanly, then deliver
    // whatever it still has to say if the socket is still open.
    if let Some(mut session) = running.take() {
        session.stop();
        session.finished().await;
    }
    while let Ok(msg) = out_rx.try_recv() {
        if sink
            .send(Message::Text(msg.to_json().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Handles one text message; returns the text of an ERROR to send, if any.
fn on_text(
    text: &str,
    state: &AppState,
    out: &mpsc::Sender<ServerMessage>,
    running: &mut Option<SessionHandle>,
) -> Option<String> {
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    match msg {
        ClientMessage::Stop => match running {
            Some(session) => {
                session.stop();
                None
            }
            None => Some("nothing to stop: no recording or playback is running".into()),
        },
        ClientMessage::Record { .. } | ClientMessage::Play { .. } if running.is_some() => {
            Some("a session is already running on this connection; send STOP first".into())
        }
        request => match session::start(state, request, out.clone()) {
            Ok(handle) => {
                *running = Some(handle);
                None
            }
            Err(e) => Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            m
        };
        let none: Vec<String> = vec![];
        let cases: Vec<(HeaderMap, Vec<String>, bool)> = vec![
            (h(None, "localhost:8082"), none.clone(), true),
            (
                h(Some("http://localhost:8082"), "localhost:8082"),
                none.clone(),
                true,
            ),
            (
                h(Some("https://example.com"), "example.com"),
                none.clone(),
                true,
            ),
            (
                h(Some("http://evil.test"), "localhost:8082"),
                none.clone(),
                false,
            ),
            (
                h(Some("http://localhost:9999"), "localhost:8082"),
                none.clone(),
                false,
            ),
            (
                h(Some("http://evil.test"), "localhost:8082"),
                vec!["http://evil.test".into()],
                true,
            ),
            (
                h(Some("http://evil.test"), "localhost:8082"),
                vec!["*".into()],
                true,
            ),
        ];
        for (headers, allowed, ok) in cases {
            assert_eq!(
                check_origin(&headers, &allowed).is_ok(),
                ok,
                "{headers:?} {allowed:?}"
            );
        }
    }
}
