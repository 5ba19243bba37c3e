//! One task per WebRTC session. The task owns its peer, its event channel and its recorder
//! or player; it talks to the websocket only through an outgoing message channel.
pub mod play;
pub mod record;

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
    request: ClientMessage,
    out: mpsc::Sender<ServerMessage>,
) -> Result<SessionHandle, String> {
    let permit = state.sessions.clone().try_acquire_owned().map_err(|_| {
        format!(
            "the server is busy: it already runs {} sessions (--max-sessions); try again later",
            state.config.max_sessions
        )
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = state.clone();
    let task = match request {
        ClientMessage::Record { offer } => tokio::spawn(async move {
            record::run(state, offer, out, stop_rx).await;
            drop(permit);
        }),
        ClientMessage::Play {
            offer,
            looping,
            recordings,
        } => tokio::spawn(async move {
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

/// Microseconds since `start`.
pub(crate) fn micros_since(start: std::time::Instant, t: std::time::Instant) -> u64 {
    t.saturating_duration_since(start).as_micros() as u64
}
