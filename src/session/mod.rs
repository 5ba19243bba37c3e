//! One task per WebRTC session. The task owns its peer, its event channel and its recorder
//! or player; it talks to the websocket only through an outgoing message channel.
pub mod play;
pub mod record;

use std::net::IpAddr;

use app::protocol::{ClientMessage, ServerMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::AppState;

/// The websocket's handle on its running session.
pub struct SessionHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SessionHandle {
    /// Asks the session to end (a recording is finalized and kept).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves when the session task has ended.
    pub async fn finished(&mut self) {
        if let Some(task) = self.task.as_mut() {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "session task failed");
            }
            self.task = None;
        }
    }
}

/// Starts the session a RECORD or PLAY asks for; the error text goes back as an ERROR.
pub fn start(
    state: &AppState,
    client: IpAddr,
    request: ClientMessage,
    out: mpsc::Sender<ServerMessage>,
) -> Result<SessionHandle, String> {
    if state.shutdown.is_cancelled() {
        return Err("the server is shutting down; try again in a moment".into());
    }
    let per_ip = state.sessions_per_ip.try_acquire(client).ok_or_else(|| {
        format!(
            "too many sessions from your address: at most {} at once (--max-sessions-per-ip)",
            state.sessions_per_ip.max()
        )
    })?;
    let permit = state.sessions.clone().try_acquire_owned().map_err(|_| {
        format!(
            "the server is busy: it already runs {} sessions (--max-sessions); try again later",
            state.config.max_sessions
        )
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = state.clone();
    let sessions = state.sessions.clone();
    let max_sessions = state.config.max_sessions;
    // When the last session ends, hand freed memory back to the OS (see `release_free_memory`).
    let permit = IdleHook {
        _permit: permit,
        _per_ip: per_ip,
        sessions,
        max_sessions,
    };
    let tasks = state.tasks.clone();
    let task = match request {
        ClientMessage::Record { offer } => tasks.spawn(async move {
            record::run(state, offer, out, stop_rx).await;
            drop(permit);
        }),
        ClientMessage::Play {
            offer,
            looping,
            recordings,
        } => tasks.spawn(async move {
            play::run(state, offer, looping, recordings, out, stop_rx).await;
            drop(permit);
        }),
        ClientMessage::Stop => return Err("nothing to start".into()),
    };
    Ok(SessionHandle {
        stop: stop_tx,
        task: Some(task),
    })
}

/// Queues a message for the client without waiting: a session never blocks on a client that
/// does not read (its socket is closed for that, see `http::ws`). Returns false when the
/// message could not be queued.
pub(crate) fn tell(out: &mpsc::Sender<ServerMessage>, msg: ServerMessage) -> bool {
    match out.try_send(msg) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(msg)) => {
            tracing::debug!(?msg, "client queue full: message dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// A session permit that, when the last running session returns it, trims the heap.
struct IdleHook {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _per_ip: crate::limits::Slot,
    sessions: std::sync::Arc<tokio::sync::Semaphore>,
    max_sessions: usize,
}

impl Drop for IdleHook {
    fn drop(&mut self) {
        // Our permit is returned after this body runs, hence the `+ 1`.
        if self.sessions.available_permits() + 1 == self.max_sessions {
            release_free_memory();
        }
    }
}

/// glibc keeps the memory of freed sessions in its arenas (many threads, many arenas), so the
/// server's RSS would stay at its high-water mark after a busy period. Trimming when the server
/// goes idle returns it to the OS; it costs a few milliseconds and runs only then.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap structures under its locks; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Microseconds since `start`.
pub(crate) fn micros_since(start: std::time::Instant, t: std::time::Instant) -> u64 {
    t.saturating_duration_since(start).as_micros() as u64
}
