//! `GET /ws`: the signaling websocket (the Go demo's protocol, see `app::protocol`).
//!
//! One socket runs at most one session at a time; when it ends (STOP, peer gone, limit) the
//! same socket can start another. Closing the socket ends a running recording cleanly: the
//! file is finalized and kept.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::http::access::{Need, Who};
use crate::limits::Slot;
use crate::metrics::WsError;
use crate::session::{self, Event, Request, SessionHandle, VideoChoice};
use app::protocol::{ClientMessage, MAX_MESSAGE_BYTES, ServerMessage};

pub async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    // Browsers send `Origin`: it must be the page's own (scheme, host and port) or allowed by
    // `--allow-origin`. Clients that send none (scripts, tests) are not browsers.
    if !state.access.origin_allowed(&headers) {
        state.metrics.websocket_error(WsError::Refused);
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or_default();
        tracing::warn!(%origin, "websocket refused: foreign origin");
        return (
            StatusCode::FORBIDDEN,
            format!("websocket origin {origin} is not allowed (use --allow-origin to allow it)"),
        )
            .into_response();
    }
    let who = who.map(|Extension(w)| w).unwrap_or_default();
    if state.shutdown.is_cancelled() {
        state.metrics.websocket_error(WsError::Refused);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "the server is shutting down",
        )
            .into_response();
    }
    let Some(slot) = state.sockets_per_ip.try_acquire(peer.ip()) else {
        state.metrics.websocket_error(WsError::Refused);
        tracing::warn!(client = %peer.ip(), "websocket refused: too many from one address");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many websockets from your address: at most {} at once (--max-sockets-per-ip)",
                state.sockets_per_ip.max()
            ),
        )
            .into_response();
    };
    // Frames up to 4 MiB reach the handler, which answers anything over 1 MiB with an ERROR
    // instead of dropping the connection.
    let tasks = state.tasks.clone();
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| tasks.track_future(handle(socket, state, peer.ip(), who, slot)))
}

/// Messages waiting for the writer. Replies to the client's own messages are enqueued without
/// waiting: a client that lets this many pile up is not reading, and is disconnected.
const OUT_QUEUE: usize = 64;
/// A write (one frame to the kernel) that takes longer than this means the client stopped
/// reading: the socket is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the end of a connection waits to deliver its last messages and the close frame.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server ends a connection, sent in the close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Farewell {
    /// The client closed, or its session ended and it hung up.
    Normal,
    /// The client did not read what it was sent.
    NotReading,
    /// Nothing came from the client (not even a pong) for `--ws-idle-timeout`.
    Idle,
    /// The server is stopping.
    Shutdown,
    /// The client lacks the access token for what it asked.
    Refused,
}

impl Farewell {
    fn frame(self) -> CloseFrame {
        let (code, reason) = match self {
            Farewell::Normal => (close_code::NORMAL, "bye"),
            Farewell::NotReading => (close_code::POLICY, "the client does not read its messages"),
            Farewell::Idle => (close_code::POLICY, "idle timeout"),
            Farewell::Shutdown => (close_code::AWAY, "the server is shutting down"),
            Farewell::Refused => (close_code::POLICY, "access token required"),
        };
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}

/// One socket: this task reads and runs the session; a writer task of its own drains the
/// outgoing queue, so writing to a client that does not read never blocks reading from it.
async fn handle(socket: WebSocket, state: AppState, client: IpAddr, who: Who, _slot: Slot) {
    let _open = state.metrics.websocket_opened();
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<ServerMessage>(OUT_QUEUE);
    let idle_timeout = Duration::from_secs(state.config.ws_idle_timeout);
    // Cancelled when the socket cannot be written to any more (or must be dropped at once).
    let dead = CancellationToken::new();
    let farewell = Arc::new(std::sync::OnceLock::<Farewell>::new());
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        idle_timeout / 3,
        dead.clone(),
        farewell.clone(),
    ));
    let mut running: Option<Running> = None;
    let shutdown = state.shutdown.clone();
    let mut last_heard = Instant::now();
    let mut idle_check = tokio::time::interval(idle_timeout / 3);

    let why = loop {
        tokio::select! {
            // First what the session said: its events, and its end (its channel closes when
            // its task returns), before the client's next message, which may want a new one.
            biased;
            event = async { running.as_mut().expect("guarded").events.recv().await }, if running.is_some() => {
                match event {
                    Some(event) => {
                        // A refused start is the session's last word: its task is returning.
                        // Wait for it before the client can read the ERROR and try again, or
                        // its next RECORD could find the session not yet gone (it runs on a
                        // media thread, so its end and this loop race).
                        let refused = matches!(event, Event::Rejected(_));
                        if refused && let Some(mut ended) = running.take() {
                            ended.handle.finished().await;
                        }
                        let Some(message) = to_wire(event) else { continue };
                        if out_tx.try_send(message).is_err() {
                            tracing::warn!(%client, "closing a websocket whose client does not read");
                            dead.cancel();
                            break Farewell::NotReading;
                        }
                    }
                    None => {
                        if let Some(mut ended) = running.take() {
                            ended.handle.finished().await;
                        }
                    }
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                let reply = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break Farewell::Normal,
                    Some(Ok(Message::Text(t))) => match on_text(&t, &state, client, &who, &mut running) {
                        Reply::None => None,
                        Reply::Error(e) => Some(e),
                        Reply::Refused(e) => {
                            // Refused for want of the token: say so, then close.
                            state.metrics.websocket_error(WsError::Refused);
                            let _ = out_tx.try_send(ServerMessage::Error(e));
                            break Farewell::Refused;
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        Some("binary messages are not supported; send JSON text".into())
                    }
                    Some(Ok(_)) => None, // ping/pong
                };
                if reply.is_some() {
                    state.metrics.websocket_error(WsError::BadMessage);
                }
                if let Some(reply) = reply
                    && out_tx.try_send(ServerMessage::Error(reply)).is_err()
                {
                    tracing::warn!(%client, "closing a websocket whose client does not read");
                    dead.cancel();
                    break Farewell::NotReading;
                }
            }
            _ = idle_check.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    tracing::info!(%client, "closing an idle websocket");
                    break Farewell::Idle;
                }
            }
            _ = dead.cancelled() => break Farewell::NotReading,
            _ = shutdown.cancelled() => break Farewell::Shutdown,
        }
    };
    match why {
        Farewell::NotReading => state.metrics.websocket_error(WsError::NotReading),
        Farewell::Idle => state.metrics.websocket_error(WsError::Idle),
        Farewell::Normal | Farewell::Shutdown | Farewell::Refused => {}
    }
    let _ = farewell.set(why);

    // The client went away (or the server is stopping): end the session cleanly. Sessions
    // never wait on the outgoing queue, so this is bounded by the session's own teardown.
    // What it said last (its recording, how it ended) goes out before the close.
    if let Some(mut session) = running.take() {
        session.handle.stop();
        while let Some(event) = session.events.recv().await {
            if let Some(message) = to_wire(event) {
                let _ = out_tx.try_send(message);
            }
        }
        session.handle.finished().await;
    }
    // The writer delivers what is still queued and the close frame, then ends.
    drop(out_tx);
    let mut writer = writer;
    if tokio::time::timeout(FAREWELL_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        dead.cancel();
        let _ = writer.await;
    }
}

/// Sends queued messages and keep-alive pings until the queue closes (then says goodbye) or
/// a write stalls.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<ServerMessage>,
    ping_every: Duration,
    dead: CancellationToken,
    farewell: Arc<std::sync::OnceLock<Farewell>>,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let message = tokio::select! {
            msg = out.recv() => match msg {
                Some(msg) => Message::Text(msg.to_json().into()),
                None => {
                    let frame = farewell.get().copied().unwrap_or(Farewell::Normal).frame();
                    tokio::select! {
                        _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))) => {}
                        _ = dead.cancelled() => {}
                    }
                    break;
                }
            },
            _ = ping.tick() => Message::Ping(Default::default()),
            _ = dead.cancelled() => break,
        };
        let sent = tokio::select! {
            sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)) => matches!(sent, Ok(Ok(()))),
            _ = dead.cancelled() => false,
        };
        if !sent {
            break;
        }
    }
    // Tell the reader that this socket is finished.
    dead.cancel();
}

/// The socket's running session and its events.
struct Running {
    handle: SessionHandle,
    events: mpsc::Receiver<Event>,
    /// STOP was sent to it: it is ending.
    stopping: bool,
}

/// What to answer a text message with.
enum Reply {
    None,
    /// An ERROR; the socket stays usable.
    Error(String),
    /// An ERROR, then the socket closes (the client lacks the access token).
    Refused(String),
}

/// Handles one text message.
fn on_text(
    text: &str,
    state: &AppState,
    client: IpAddr,
    who: &Who,
    running: &mut Option<Running>,
) -> Reply {
    let msg = match ClientMessage::parse(text) {
        Ok(m) => m,
        Err(e) => return Reply::Error(e.to_string()),
    };
    // RECORD and STOP change what is stored: writes; PLAY reads.
    let need = match msg {
        ClientMessage::Play { .. } | ClientMessage::Watch { .. } => Need::Read,
        ClientMessage::Record { .. } | ClientMessage::Stop => Need::Write,
    };
    if !state.access.ws_allowed(who, need) {
        return Reply::Refused(state.access.refusal(need));
    }
    let error = match msg {
        ClientMessage::Stop => match running {
            // Every STOP gets an answer: the first one the session's end, a repeated one
            // (sent before the end arrived) this.
            Some(session) if session.stopping => {
                Some("already stopping: the session is ending".into())
            }
            Some(session) => {
                session.handle.stop();
                session.stopping = true;
                None
            }
            None => Some("nothing to stop: no recording or playback is running".into()),
        },
        ClientMessage::Record { .. } | ClientMessage::Play { .. } | ClientMessage::Watch { .. }
            if running.is_some() =>
        {
            Some("a session is already running on this connection; send STOP first".into())
        }
        ClientMessage::Record { offer } => start(
            state,
            client,
            Request::Record {
                offer,
                name: None,
                video: VideoChoice::Server,
            },
            running,
        ),
        ClientMessage::Watch { offer, live } => start(
            state,
            client,
            Request::Watch {
                offer,
                target: live,
            },
            running,
        ),
        ClientMessage::Play {
            offer,
            looping,
            recordings,
        } => start(
            state,
            client,
            Request::Play {
                offer,
                looping,
                recordings,
            },
            running,
        ),
    };
    error.map_or(Reply::None, Reply::Error)
}

fn start(
    state: &AppState,
    client: IpAddr,
    request: Request,
    running: &mut Option<Running>,
) -> Option<String> {
    // Each session has its own event channel: when it closes, the session is over and
    // everything it said has been read.
    let (events_tx, events) = mpsc::channel::<Event>(OUT_QUEUE);
    match session::start(state, client, request, events_tx) {
        Ok(handle) => {
            *running = Some(Running {
                handle,
                events,
                stopping: false,
            });
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

/// A session's event as the `/ws` protocol says it (answers travel as base64 of the JSON
/// description, the seed's encoding).
fn to_wire(event: Event) -> Option<ServerMessage> {
    Some(match event {
        Event::Answer(answer, _) => ServerMessage::Answer(answer.encode()),
        Event::State(state) => ServerMessage::State(state),
        Event::NowPlaying(np) => ServerMessage::NowPlaying(np),
        Event::Skipped(skipped) => ServerMessage::Skipped(skipped),
        Event::RecordingFinished(meta) => ServerMessage::Recording(meta),
        Event::Rejected(why) => ServerMessage::Error(why.message().to_owned()),
        Event::Error(text) => ServerMessage::Error(text),
        // Only sessions started over HTTP say these (RTP ingests and playback forwards).
        Event::Ingesting | Event::Forwarding(_) => return None,
    })
}
