//! One task per session (recording, playback, live viewing). The task owns its peer (or an
//! RTP ingest's sockets), its event channel and its recorder or player. Sessions speak their
//! own [`Request`] and [`Event`] types; each way in (the `/ws` protocol in `http::ws`, WHIP
//! and WHEP in `http::whip`, RTP ingest in `http::ingest`, the session API) translates at its
//! edge. Every live session is in
//! the [`registry::SessionRegistry`], which also enforces the session limits.
pub mod live;
mod live_transcode;
pub mod play;
pub mod record;
pub mod registry;
pub mod transcode;

use std::net::IpAddr;

use app::protocol::{
    NowPlaying, RecordingMeta, SessionDescription, SessionKind, SessionState, Skipped,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// What starts a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Record the offer's camera and microphone.
    Record {
        offer: SessionDescription,
        /// The recording's name (WHIP `?name=`); `None` = the default.
        name: Option<String>,
        /// Which video codec to take.
        video: VideoChoice,
    },
    /// Play recordings (all of them, oldest first, or the chosen ones) to the offer's peer.
    Play {
        offer: SessionDescription,
        looping: bool,
        recordings: Option<Vec<String>>,
    },
    /// Record a plain-RTP stream sent to the ports an ingest SDP names.
    Ingest {
        plan: crate::rtc::IngestPlan,
        name: Option<String>,
    },
    /// Watch a recording in progress (by its session id or recording id).
    Watch {
        offer: SessionDescription,
        target: String,
    },
    /// Play recordings as plain RTP to an existing media service (`POST /api/forwards`).
    PlayRtp {
        to: std::net::SocketAddr,
        looping: bool,
        recordings: Option<Vec<String>>,
        /// The video codec to send; the first clip's when `None`.
        codec: Option<media::Codec>,
    },
}

/// The video codec a recorder takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoChoice {
    /// `--vcodec` (the browser pages: the server asks for its codec).
    Server,
    /// Whichever of H264 and VP8 the offer lists first (WHIP: encoders send what they have).
    OfferPreference,
}

impl Request {
    pub fn kind(&self) -> SessionKind {
        match self {
            Request::Record { .. } | Request::Ingest { .. } => SessionKind::Record,
            Request::Play { .. } | Request::Watch { .. } | Request::PlayRtp { .. } => {
                SessionKind::Play
            }
        }
    }
}

/// Why a session refused its request, so that each protocol can say it its way (`/ws`: an
/// `ERROR`; WHIP/WHEP: the HTTP status). The text is for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The offer is not valid SDP (HTTP 400).
    BadOffer(String),
    /// Valid SDP, but nothing in it can be used (HTTP 422).
    Unacceptable(String),
    /// What the request names does not exist (HTTP 404).
    NotFound(String),
    /// The server cannot take it now (HTTP 503).
    Unavailable(String),
    /// It conflicts with what is running (a port in use; HTTP 409).
    Conflict(String),
    /// The server failed (HTTP 500).
    Internal(String),
}

impl Rejection {
    pub fn message(&self) -> &str {
        match self {
            Rejection::BadOffer(m)
            | Rejection::Unacceptable(m)
            | Rejection::NotFound(m)
            | Rejection::Unavailable(m)
            | Rejection::Conflict(m)
            | Rejection::Internal(m) => m,
        }
    }

    pub(crate) fn from_rtc(e: &crate::rtc::RtcError) -> Rejection {
        use crate::rtc::RtcError as E;
        let text = e.to_string();
        match e {
            E::BadSdp(_) | E::NotAnOffer(_) => Rejection::BadOffer(text),
            E::NoMedia
            | E::NoVideo
            | E::VideoCodecNotOffered(_)
            | E::NoPlayableVideo
            | E::NoRecordableVideo
            | E::PayloadTypeNotNegotiated { .. } => Rejection::Unacceptable(text),
            E::NoFreePort { .. } => Rejection::Unavailable(text),
            _ => Rejection::Internal(text),
        }
    }

    pub(crate) fn from_forward(e: &crate::gateway::forward::ForwardError) -> Rejection {
        use crate::gateway::forward::ForwardError as E;
        let text = e.to_string();
        match e {
            E::NoSuchSession(_) => Rejection::NotFound(text),
            // Bad input as for the HTTP API (which checks the destination before it starts a
            // session, so these are a safety net).
            E::BadHost(_) | E::BadPort(_) => Rejection::BadOffer(text),
            E::NotAllowed(_) | E::Transcode(_) => Rejection::Unacceptable(text),
            E::TooMany(_) => Rejection::Conflict(text),
            E::Socket(_) => Rejection::Internal(text),
        }
    }
}

/// What a session tells its client.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The SDP answer to the offer, with a handle to add the client's trickled ICE candidates.
    Answer(SessionDescription, Option<crate::rtc::Trickle>),
    /// An RTP ingest is listening on its ports (it has no answer).
    Ingesting,
    /// A playback goes out as plain RTP, as this forward says (it has no answer either).
    Forwarding(app::protocol::ForwardInfo),
    /// Progress, about once a second, and the end of a playback.
    State(SessionState),
    NowPlaying(NowPlaying),
    Skipped(Skipped),
    /// The recording this session wrote, finished.
    RecordingFinished(RecordingMeta),
    /// The request was refused before any answer (the session ends).
    Rejected(Rejection),
    /// Something the user should read: why a session ended early, what went wrong.
    Error(String),
}

/// Where a session sends its events.
pub type Events = mpsc::Sender<Event>;

/// A handle on a running session. Dropping it asks the session to end: whoever started a
/// session owns it (a websocket, an HTTP request and then the task that keeps it), and a
/// session nobody holds has nobody to end it.
pub struct SessionHandle {
    /// The session's id in the registry.
    pub id: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SessionHandle {
    /// What [`stop`](Self::stop) cancels, for whoever ends the session later.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Asks the session to end (a recording is finalized and kept).
    pub fn stop(&self) {
        self.stop.cancel();
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

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Why a session could not be started at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
    #[error(transparent)]
    Refused(#[from] registry::Refused),
}

/// Starts the session a request asks for.
pub fn start(
    state: &AppState,
    client: IpAddr,
    request: Request,
    out: Events,
) -> Result<SessionHandle, StartError> {
    if state.shutdown.is_cancelled() {
        return Err(StartError::ShuttingDown);
    }
    let registration = state.registry.register(request.kind(), client)?;
    let id = registration.id.clone();
    let stop = registration.stop.clone();
    let state = state.clone();
    // Counted as ended with `error` if the task panics before it says otherwise.
    let counted = state.metrics.session_started(request.kind());
    let (media, tasks) = (state.media.clone(), state.tasks.clone());
    let task = media.spawn(&tasks, async move {
        let reason = match request {
            Request::Record { offer, name, video } => {
                let from = record::RecordFrom::Offer {
                    offer,
                    choice: video,
                };
                record::run(state, from, name, out, &registration).await
            }
            Request::Ingest { plan, name } => {
                record::run(
                    state,
                    record::RecordFrom::Rtp(plan),
                    name,
                    out,
                    &registration,
                )
                .await
            }
            Request::Play {
                offer,
                looping,
                recordings,
            } => play::run(state, offer, looping, recordings, out, &registration).await,
            Request::Watch { offer, target } => {
                live::run(state, offer, target, out, &registration).await
            }
            Request::PlayRtp {
                to,
                looping,
                recordings,
                codec,
            } => play::run_rtp(state, to, looping, recordings, codec, out, &registration).await,
        };
        counted.end(reason);
        // The registration goes last: the session is listed until it has concluded.
        drop(registration);
    });
    Ok(SessionHandle {
        id,
        stop,
        task: Some(task),
    })
}

/// Queues an event for the client without waiting: a session never blocks on a client that
/// does not read (its socket is closed for that, see `http::ws`). Returns false when the
/// event could not be queued.
pub(crate) fn tell(out: &Events, event: Event) -> bool {
    match out.try_send(event) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(event)) => {
            tracing::debug!(?event, "client queue full: event dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// glibc keeps the memory of freed sessions in its arenas (many threads, many arenas), so the
/// server's RSS would stay at its high-water mark after a busy period. Trimming when the server
/// goes idle returns it to the OS; it costs a few milliseconds and runs only then.
pub(crate) fn release_free_memory() {
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
