//! A playback session: stored recordings -> frames -> paced RTP to the viewer.
//!
//! The clips play back to back through one [`media::schedule::Scheduler`], which keeps one
//! SSRC per kind, contiguous sequence numbers and timestamps across clips, and paces frames
//! by their recorded timestamps. This task only reads files, feeds the scheduler about a
//! second ahead, and sends what it says is due.
use std::time::{Duration, Instant};

use std::sync::Arc;

use app::protocol::{
    NO_RECORDINGS, NowPlaying, RecordingMeta, SessionDescription, SessionPhase, SessionState,
    Skipped,
};
use media::container::{Demuxer, TrackInfo};
use media::schedule::{Output, Scheduler, SchedulerConfig};
use media::{Frame, MediaKind};
use tokio::sync::{Semaphore, mpsc};

use super::{Event, Events, Rejection, tell};
use crate::AppState;
use crate::metrics::{EndReason, Metrics, SchedulerFeed};
use crate::rtc::{PeerEvent, PeerState};
use crate::session::registry::Registration;
use crate::store::container_kind;
use crate::store::{RecordingStore, StoreError};

pub async fn run(
    state: AppState,
    offer: SessionDescription,
    looping: bool,
    selection: Option<Vec<String>>,
    out: Events,
    registration: &Registration,
) -> EndReason {
    let Some(playlist) = open(&state, selection, &out).await else {
        return EndReason::Error;
    };
    let Some((peer, answer, mut events)) = accept_viewer(&state, &offer, &out).await else {
        return EndReason::Error;
    };
    tell(&out, Event::Answer(answer, Some(peer.trickle())));
    tracing::info!(clips = playlist.len(), looping, session = %registration.id, "playback session started");
    if let Err(reason) = wait_connected(&state, &mut events, &registration.stop, &out).await {
        peer.close().await;
        return reason;
    }
    // Video codecs the viewer takes, preferred first: a clip in another one is transcoded.
    let viewer_video: Vec<media::Codec> = peer
        .payload_types()
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| c.kind() == MediaKind::Video)
        .collect();
    let Some(feed) = start_reader(&state, &playlist, looping, viewer_video, &out) else {
        peer.close().await;
        return EndReason::Error;
    };
    let mut playing = Playing {
        state: &state,
        peer: Sink::Peer(&peer),
        out: &out,
        registration,
        playlist: &playlist,
        start: Instant::now(),
        sent_frames: 0,
    };
    let ended = playing.run_loop(feed, &mut events).await;
    peer.close().await;
    playing.conclude(ended);
    ended
}

/// Starts the playlist's reader thread (`viewer_video`: the codecs the receiver takes,
/// preferred first); on failure tells the client and gives `None`.
fn start_reader(
    state: &AppState,
    playlist: &[RecordingMeta],
    looping: bool,
    viewer_video: Vec<media::Codec>,
    out: &Events,
) -> Option<ReadAhead> {
    let reader = ReadAhead::spawn(
        state.store.clone(),
        playlist.to_vec(),
        looping,
        viewer_video,
        state.transcodes.clone(),
    );
    match reader {
        Ok(feed) => Some(feed),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a playback reader");
            tell(
                out,
                Event::Error("the server cannot start a playback reader".into()),
            );
            None
        }
    }
}

/// Where a playback's packets go: a WebRTC viewer, or plain RTP to an existing media
/// service (`gateway::forward`).
#[derive(Clone, Copy)]
enum Sink<'a> {
    Peer(&'a crate::rtc::ViewerPeer),
    Rtp(&'a crate::gateway::forward::RtpSink),
}

impl Sink<'_> {
    fn ssrc(&self, kind: MediaKind) -> u32 {
        match self {
            Sink::Peer(p) => p.ssrc(kind),
            Sink::Rtp(r) => r.ssrc(kind),
        }
    }

    fn payload_types(&self) -> Vec<(media::Codec, u8)> {
        match self {
            Sink::Peer(p) => p.payload_types(),
            Sink::Rtp(r) => r.payload_types(),
        }
    }

    async fn send(&self, kind: MediaKind, packet: &media::rtp::RtpPacket) {
        match self {
            Sink::Peer(p) => {
                if let Err(e) = p.send(kind, packet).await {
                    tracing::debug!(error = %e, "send failed");
                }
            }
            Sink::Rtp(r) => r.send(kind, packet).await,
        }
    }
}

/// A playback of stored recordings sent as plain RTP to `to` (video there, audio two ports
/// up) in one video codec, `codec` or the first clip's: clips in the other are transcoded,
/// since a plain-RTP receiver reads one SDP. The first event is `Forwarding` with where the
/// SDP is served; it ends when played through, on STOP/DELETE, or at shutdown.
pub async fn run_rtp(
    state: AppState,
    to: std::net::SocketAddr,
    looping: bool,
    selection: Option<Vec<String>>,
    codec: Option<media::Codec>,
    out: Events,
    registration: &Registration,
) -> EndReason {
    let Some(playlist) = open(&state, selection, &out).await else {
        return EndReason::Error;
    };
    let video = codec
        .or_else(|| {
            playlist
                .iter()
                .find_map(|m| m.video_codec.map(crate::store::codec_of))
        })
        .unwrap_or(media::Codec::H264);
    let forward = state
        .forwards
        .attach_playback(
            &state,
            &registration.id,
            to,
            video,
            registration.stop.clone(),
        )
        .await;
    let (sink, info) = match forward {
        Ok(x) => x,
        Err(e) => {
            tell(&out, Event::Rejected(Rejection::from_forward(&e)));
            return EndReason::Error;
        }
    };
    tell(&out, Event::Forwarding(info.clone()));
    tracing::info!(clips = playlist.len(), looping, session = %registration.id, %to, ?video, "playback forward started");
    let reader = start_reader(&state, &playlist, looping, vec![video], &out);
    let ended = match reader {
        Some(feed) => {
            let mut playing = Playing {
                state: &state,
                peer: Sink::Rtp(&sink),
                out: &out,
                registration,
                playlist: &playlist,
                start: Instant::now(),
                sent_frames: 0,
            };
            // No peer, so no peer events: a channel that stays open and silent.
            let (_open, mut events) = mpsc::channel(1);
            let ended = playing.run_loop(feed, &mut events).await;
            playing.conclude(ended);
            ended
        }
        None => EndReason::Error,
    };
    state.forwards.detach(&registration.id, info.id);
    ended
}

/// The recordings to play, read off the async workers; a refusal is told to the client.
async fn open(
    state: &AppState,
    selection: Option<Vec<String>>,
    out: &Events,
) -> Option<Vec<RecordingMeta>> {
    let store = state.store.clone();
    let listed = tokio::task::spawn_blocking(move || playlist(store.as_ref(), selection))
        .await
        .unwrap_or_else(|_| {
            Err(Rejection::Internal(
                "the recordings could not be listed".into(),
            ))
        });
    match listed {
        Ok(list) => Some(list),
        Err(why) => {
            tell(out, Event::Rejected(why));
            None
        }
    }
}

/// Time to first frame is what viewers feel: wait only for the connection (then the first
/// keyframe goes out at once), at most `--connect-timeout`.
pub(super) async fn wait_connected(
    state: &AppState,
    events: &mut mpsc::Receiver<PeerEvent>,
    stop: &tokio_util::sync::CancellationToken,
    out: &Events,
) -> Result<(), EndReason> {
    let connect_timeout = Duration::from_secs(state.config.connect_timeout);
    let connected = tokio::time::timeout(connect_timeout, async {
        loop {
            match events.recv().await {
                Some(PeerEvent::State(PeerState::Connected)) => return true,
                Some(PeerEvent::State(PeerState::Failed | PeerState::Closed)) | None => {
                    return false;
                }
                Some(_) => {}
            }
        }
    });
    let connected = tokio::select! {
        c = connected => c.unwrap_or(false),
        _ = stop.cancelled() => false,
        _ = state.shutdown.cancelled() => false,
    };
    if connected {
        return Ok(());
    }
    if stop.is_cancelled() {
        return Err(EndReason::Stopped);
    }
    if state.shutdown.is_cancelled() {
        return Err(EndReason::Shutdown);
    }
    tell(
        out,
        Event::Error(format!(
            "the viewer's connection did not come up within {} s",
            state.config.connect_timeout
        )),
    );
    Err(EndReason::NeverConnected)
}

/// A connected playback.
struct Playing<'a> {
    state: &'a AppState,
    peer: Sink<'a>,
    out: &'a Events,
    registration: &'a Registration,
    playlist: &'a [RecordingMeta],
    start: Instant,
    sent_frames: u64,
}

impl Playing<'_> {
    /// Feeds the scheduler from the reader and sends what it says is due, until the playlist
    /// is played through, STOP, the viewer goes, or shutdown.
    async fn run_loop(
        &mut self,
        mut feed: ReadAhead,
        events: &mut mpsc::Receiver<PeerEvent>,
    ) -> EndReason {
        let (state, peer, out, registration) = (self.state, self.peer, self.out, self.registration);
        let playlist = self.playlist;
        let stop = registration.stop.clone();
        let metrics = &state.metrics;
        let mut sched = Scheduler::new(SchedulerConfig {
            video_ssrc: peer.ssrc(MediaKind::Video),
            audio_ssrc: peer.ssrc(MediaKind::Audio),
            mtu: 1200,
            payload_types: peer.payload_types(),
            initial_video_seq: crate::random::u16(),
            initial_audio_seq: crate::random::u16(),
            initial_video_ts: crate::random::u32(),
            initial_audio_ts: crate::random::u32(),
        });
        let mut sched_feed = SchedulerFeed::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // One timer, re-armed for each deadline (cheaper than a new `sleep_until` per packet).
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let ended = loop {
            let now_us = super::micros_since(self.start, Instant::now());
            // Keep about a second of media queued in the scheduler, from what was read.
            while sched.wants_more() && !feed.done {
                match feed.rx.try_recv() {
                    Ok(item) => feed.apply(item, &mut sched, playlist, out, metrics),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => feed.done = true,
                }
            }
            while let Some(output) = sched.poll(now_us) {
                match output {
                    Output::Packet { kind, packet } => {
                        if packet.marker || kind == MediaKind::Audio {
                            self.sent_frames += 1;
                        }
                        metrics.rtp_out(kind, packet.payload.len());
                        peer.send(kind, &packet).await;
                    }
                    Output::ClipStarted { id, index: _ } => {
                        registration.progress.set_recording(&id);
                        if let Some(np) = now_playing(playlist, &id) {
                            tell(out, Event::NowPlaying(np));
                        }
                    }
                    Output::ClipEnded { .. } => {}
                }
            }
            if feed.done && sched.next_deadline().is_none() {
                if let Some(why) = feed.ended_because.take() {
                    tell(out, Event::Error(why));
                }
                break EndReason::Finished;
            }
            let wake = sched
                .next_deadline()
                .and_then(|d| self.start.checked_add(Duration::from_micros(d)))
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(20));
            timer.as_mut().reset(wake.into());
            // The reader is only waited for when the scheduler wants more and nothing is queued.
            let hungry = sched.wants_more() && !feed.done;
            tokio::select! {
                _ = &mut timer => {}
                item = feed.rx.recv(), if hungry => match item {
                    Some(item) => feed.apply(item, &mut sched, playlist, out, metrics),
                    None => feed.done = true,
                },
                ev = events.recv() => match ev {
                    None | Some(PeerEvent::State(PeerState::Failed | PeerState::Closed)) => {
                        break EndReason::PeerGone;
                    }
                    Some(PeerEvent::State(PeerState::Disconnected)) => {
                        tracing::debug!("viewer disconnected; waiting for it to come back or fail");
                    }
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    registration.progress.set(0, self.sent_frames);
                    sched_feed.report(metrics, &sched.stats());
                    tell(out, Event::State(self.state_now(SessionPhase::Playing)));
                }
                _ = stop.cancelled() => break EndReason::Stopped,
                _ = state.shutdown.cancelled() => break EndReason::Shutdown,
            }
        };
        sched_feed.report(metrics, &sched.stats());
        ended
    }

    /// Tells the viewer how the playback ended: `finished` when played through, `stopped`
    /// otherwise (STOP, the viewer gone, shutdown; the socket may already be closed).
    fn conclude(&self, ended: EndReason) {
        tell(self.out, Event::State(self.state_now(end_phase(ended))));
        tracing::info!(frames = self.sent_frames, ?ended, "playback session ended");
    }

    fn state_now(&self, phase: SessionPhase) -> SessionState {
        viewer_state(phase, self.start, self.sent_frames)
    }
}

/// Answers a viewer's offer (stored or live playback); a refusal is told to the client.
pub(super) async fn accept_viewer(
    state: &AppState,
    offer: &SessionDescription,
    out: &Events,
) -> Option<(
    crate::rtc::ViewerPeer,
    SessionDescription,
    mpsc::Receiver<PeerEvent>,
)> {
    match state.rtc.accept_viewer(offer).await {
        Ok(x) => Some(x),
        Err(e) => {
            tell(out, Event::Rejected(Rejection::from_rtc(&e)));
            None
        }
    }
}

/// A viewer's progress: `frames` sent since `start`.
pub(super) fn viewer_state(phase: SessionPhase, start: Instant, frames: u64) -> SessionState {
    SessionState {
        phase,
        elapsed_ms: start.elapsed().as_millis() as u64,
        bytes: 0,
        frames,
    }
}

/// How a viewer's session ended, as its last `STATE` says: `finished` when played through (or
/// the live recording ended), `stopped` otherwise (STOP, the viewer gone, shutdown).
pub(super) fn end_phase(ended: EndReason) -> SessionPhase {
    if ended == EndReason::Finished {
        SessionPhase::Finished
    } else {
        SessionPhase::Stopped
    }
}

fn now_playing(playlist: &[RecordingMeta], id: &str) -> Option<NowPlaying> {
    let index = playlist.iter().position(|m| m.id == id)?;
    Some(NowPlaying {
        id: id.to_owned(),
        name: playlist[index].name.clone(),
        index,
        count: playlist.len(),
    })
}

/// The recordings to play, oldest first, or the message to send when there are none.
fn playlist(
    store: &dyn RecordingStore,
    selection: Option<Vec<String>>,
) -> Result<Vec<RecordingMeta>, Rejection> {
    let list = match selection {
        None => store
            .list()
            .into_iter()
            .filter(RecordingMeta::playable)
            .collect::<Vec<_>>(),
        Some(ids) if ids.is_empty() => {
            return Err(Rejection::BadOffer(
                "the \"recording\" list is empty".into(),
            ));
        }
        Some(ids) => {
            let mut list = Vec::with_capacity(ids.len());
            for id in ids {
                let meta = store.get(&id).map_err(|e| match e {
                    StoreError::NotFound(_) | StoreError::InvalidId(_) => {
                        Rejection::NotFound(e.to_string())
                    }
                    e => Rejection::Internal(e.to_string()),
                })?;
                if !meta.playable() {
                    return Err(Rejection::Unacceptable(format!(
                        "recording {id} cannot be played (state {:?})",
                        meta.state
                    )));
                }
                list.push(meta);
            }
            list
        }
    };
    if list.is_empty() {
        return Err(Rejection::NotFound(NO_RECORDINGS.into()));
    }
    Ok(list)
}

/// What the reader thread hands to the session, in playback order.
enum Feed {
    /// A clip opened; the session answers on the verdict channel whether the viewer can play
    /// it (its codecs).
    Clip {
        index: usize,
        info: TrackInfo,
    },
    Frame(Frame),
    /// The clip's last frame was sent; the session answers on the verdict channel once it has
    /// taken it.
    ClipEnd,
    Skipped(Skipped),
    /// Nothing more will come; with the reason to tell the viewer, if any.
    Done(Option<String>),
}

/// Most bytes of frames read ahead and not yet taken by the session (besides the scheduler's
/// own second of media).
pub const READ_AHEAD_BYTES: usize = 2 * 1024 * 1024;
/// Most frames read ahead (small frames: audio).
const READ_AHEAD_FRAMES: usize = 256;

/// The session's end of a reader thread that walks the playlist (looping or not), opening
/// each clip and reading its frames, so that no file I/O runs on an async worker. Dropping it
/// stops the thread.
struct ReadAhead {
    rx: mpsc::Receiver<Feed>,
    verdicts: std::sync::mpsc::Sender<bool>,
    budget: Arc<Semaphore>,
    done: bool,
    ended_because: Option<String>,
    /// Frames of the current clip handed to the scheduler, and its drop count at the clip's
    /// start.
    clip_frames: u64,
    dropped_before: u64,
}

impl ReadAhead {
    fn spawn(
        store: Arc<dyn RecordingStore>,
        playlist: Vec<RecordingMeta>,
        looping: bool,
        viewer_video: Vec<media::Codec>,
        transcodes: super::transcode::Transcodes,
    ) -> std::io::Result<ReadAhead> {
        let (tx, rx) = mpsc::channel(READ_AHEAD_FRAMES);
        let (verdicts, verdict_rx) = std::sync::mpsc::channel();
        let budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES));
        let reader = Reader {
            store,
            playlist,
            looping,
            viewer_video,
            transcodes,
            tx,
            verdicts: verdict_rx,
            budget: budget.clone(),
        };
        std::thread::Builder::new()
            .name("play-reader".into())
            .spawn(move || reader.run())?;
        Ok(ReadAhead {
            rx,
            verdicts,
            budget,
            done: false,
            ended_because: None,
            clip_frames: 0,
            dropped_before: 0,
        })
    }

    /// Hands one item to the scheduler.
    fn apply(
        &mut self,
        item: Feed,
        sched: &mut Scheduler,
        playlist: &[RecordingMeta],
        out: &Events,
        metrics: &Metrics,
    ) {
        match item {
            Feed::Clip { index, info } => {
                let id = playlist[index].id.clone();
                self.clip_frames = 0;
                self.dropped_before = sched.stats().dropped_frames;
                let verdict = match sched.start_clip(id.clone(), &info) {
                    Ok(()) => true,
                    Err(skip) => {
                        metrics.playback_skips.inc();
                        tell(
                            out,
                            Event::Skipped(Skipped {
                                id,
                                reason: skip.to_string(),
                            }),
                        );
                        false
                    }
                };
                let _ = self.verdicts.send(verdict);
            }
            Feed::Frame(frame) => {
                self.budget.add_permits(frame_cost(&frame));
                self.clip_frames += 1;
                sched.push_frame(frame);
            }
            Feed::ClipEnd => {
                sched.end_clip();
                // Whether the scheduler kept any of the clip's frames (it drops video before
                // a keyframe, tracks the viewer lacks...): a clip it kept nothing of was not
                // played, and a looping pass of such clips must end, not spin.
                let dropped = sched.stats().dropped_frames - self.dropped_before;
                let played = self.clip_frames > dropped;
                // The reader opens the next clip now, as late as a clip was opened before
                // there was a reader: a recording deleted until then is not played.
                let _ = self.verdicts.send(played);
            }
            Feed::Skipped(skipped) => {
                metrics.playback_skips.inc();
                tell(out, Event::Skipped(skipped));
            }
            Feed::Done(why) => {
                self.done = true;
                self.ended_because = why;
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Wakes a reader waiting for budget; it sees the closed channel and ends.
        self.budget.close();
    }
}

/// What a frame takes of the read-ahead budget (a frame larger than the budget takes all of
/// it, so it still passes, alone).
fn frame_cost(frame: &Frame) -> usize {
    frame.data.len().clamp(1, READ_AHEAD_BYTES)
}

/// The reader thread.
struct Reader {
    store: Arc<dyn RecordingStore>,
    playlist: Vec<RecordingMeta>,
    looping: bool,
    /// The viewer's video codecs, preferred first (a clip in none of them is transcoded).
    viewer_video: Vec<media::Codec>,
    transcodes: super::transcode::Transcodes,
    tx: mpsc::Sender<Feed>,
    verdicts: std::sync::mpsc::Receiver<bool>,
    budget: Arc<Semaphore>,
}

/// The session is gone: the reader stops.
struct Gone;

/// A clip as the reader reads it: from the store, or through a shared transcode.
enum Clip {
    Direct(Demuxer<Box<dyn crate::store::MediaSource>>),
    Transcoded(super::transcode::SharedClip),
}

impl Clip {
    fn info(&self) -> &TrackInfo {
        match self {
            Clip::Direct(d) => d.info(),
            Clip::Transcoded(t) => t.info(),
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        match self {
            Clip::Direct(d) => d.next_frame().map_err(|e| e.to_string()),
            Clip::Transcoded(t) => t.next_frame(),
        }
    }
}

impl Reader {
    fn run(self) {
        let why = match self.passes() {
            Ok(why) => why,
            Err(Gone) => return,
        };
        let _ = self.tx.blocking_send(Feed::Done(why));
    }

    fn send(&self, item: Feed) -> Result<(), Gone> {
        self.tx.blocking_send(item).map_err(|_| Gone)
    }

    /// Plays the playlist once, or until a pass plays nothing when looping. Returns what to
    /// tell the viewer when nothing at all could be played.
    fn passes(&self) -> Result<Option<String>, Gone> {
        let mut played_ever = false;
        loop {
            let mut played = false;
            for index in 0..self.playlist.len() {
                played |= self.clip(index)?;
            }
            played_ever |= played;
            if !played {
                // A pass that plays nothing would only spin: end, whether looping or not.
                return Ok((!played_ever)
                    .then(|| "none of the selected recordings can be played".to_owned()));
            }
            if !self.looping {
                return Ok(None);
            }
        }
    }

    /// Opens and reads one clip; true when at least one of its frames went to the viewer.
    fn clip(&self, index: usize) -> Result<bool, Gone> {
        let meta = &self.playlist[index];
        let skipped = |reason: String| {
            Feed::Skipped(Skipped {
                id: meta.id.clone(),
                reason,
            })
        };
        // A clip in a codec the viewer lacks is read through a shared transcode (one encoder
        // per recording and codec for every viewer that plays it now: `super::transcode`),
        // into the viewer's preferred codec, its keyframes and timestamps kept.
        let store = &self.store;
        let open_source = || {
            store
                .open(&meta.id)
                .map(|(_, src)| src)
                .map_err(|e| e.to_string())
        };
        let wants_transcode = meta
            .video_codec
            .map(crate::store::codec_of)
            .zip(self.viewer_video.first().copied())
            .filter(|(codec, _)| !self.viewer_video.contains(codec));
        let opened = match wants_transcode {
            // Still in the store (joining a running transcode opens no file of its own): a
            // recording deleted until now is not played, as without transcoding.
            Some(_) if let Err(e) = store.get(&meta.id) => Err(e.to_string()),
            Some((from, to)) => match self.transcodes.open(meta, to, open_source) {
                Ok(clip) => Ok(Clip::Transcoded(clip)),
                Err(e) => {
                    tracing::warn!(id = %meta.id, ?from, ?to, error = %e, "cannot transcode; the clip is skipped");
                    Err(e)
                }
            },
            None => open_source().and_then(|src| {
                Demuxer::open(container_kind(meta.container), src)
                    .map(Clip::Direct)
                    .map_err(|e| e.to_string())
            }),
        };
        let mut demux = match opened {
            Ok(d) => d,
            Err(e) => {
                self.send(skipped(e))?;
                return Ok(false);
            }
        };
        let info = demux.info().clone();
        self.send(Feed::Clip { index, info })?;
        if !self.verdicts.recv().map_err(|_| Gone)? {
            return Ok(false);
        }
        let mut frames = 0u64;
        loop {
            match demux.next_frame() {
                Ok(Some(frame)) => {
                    // Waits for room in the read-ahead budget (the session gives it back as
                    // it takes frames).
                    let permit = futures::executor::block_on(
                        self.budget.acquire_many(frame_cost(&frame) as u32),
                    );
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => return Err(Gone),
                    }
                    self.send(Feed::Frame(frame))?;
                    frames += 1;
                }
                Ok(None) if frames == 0 => {
                    let _ = self.end_clip()?;
                    self.send(skipped(
                        "the recording has no frames that can be read".into(),
                    ))?;
                    return Ok(false);
                }
                Ok(None) => break,
                Err(e) if frames == 0 => {
                    let _ = self.end_clip()?;
                    self.send(skipped(format!("the recording cannot be read: {e}")))?;
                    return Ok(false);
                }
                Err(e) => {
                    tracing::warn!(id = %meta.id, error = %e, "clip ends early: unreadable data");
                    break;
                }
            }
        }
        self.end_clip()
    }

    /// Ends the clip and waits until the session has taken everything before the end; true
    /// when the scheduler kept any of the clip's frames.
    fn end_clip(&self) -> Result<bool, Gone> {
        self.send(Feed::ClipEnd)?;
        self.verdicts.recv().map_err(|_| Gone)
    }
}
