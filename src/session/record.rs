//! A recording session: RTP from the browser -> frames -> container file in the store.
use std::time::{Duration, Instant};

use app::protocol::{
    RecordingMeta, RecordingState, SessionDescription, SessionPhase, SessionState,
};
use media::container::{ContainerKind, Recorder, RecorderConfig};
use media::depack::Depacketizer;
use media::timeline::Timeline;
use media::{Codec, Frame, MediaKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Event, Events, Rejection, tell};
use crate::AppState;
use crate::metrics::{DepackFeed, EndReason, Metrics};
use crate::rtc::{PeerEvent, PeerState};
use crate::session::registry::{Progress, Registration};
use crate::store::writer::{Closer, WriteBehind};

/// Why a recording ended, when it is worth telling the user.
enum End {
    Stopped,
    PeerGone(&'static str),
    /// The peer never connected within `--connect-timeout`.
    NeverConnected,
    /// Connected, then no media for `--media-timeout`.
    NoMedia,
    Limit,
    WriteFailed(String),
    Shutdown,
}

/// The recording being written: its metadata and the muxer over its writer thread.
struct Open {
    meta: RecordingMeta,
    recorder: Recorder<WriteBehind>,
    written: Arc<AtomicU64>,
}

/// Where a recording's media comes from.
pub enum RecordFrom {
    /// A WebRTC offer (browser, WHIP), with the video codec rule.
    Offer {
        offer: SessionDescription,
        choice: super::VideoChoice,
    },
    /// Plain RTP to the ports of an ingest SDP.
    Rtp(crate::rtc::IngestPlan),
}

/// The recorder's connection: a WebRTC peer or the sockets of an RTP ingest.
enum Source {
    Peer(crate::rtc::RecorderPeer),
    Rtp(crate::gateway::ingest::RtpSource),
}

impl Source {
    /// Whether keyframes can be asked for: a WebRTC sender takes PLIs; plain RTP has no way
    /// back.
    fn takes_keyframe_requests(&self) -> bool {
        matches!(self, Source::Peer(_))
    }

    /// A PLI to a WebRTC sender (nothing for plain RTP).
    async fn request_keyframe(&self) {
        if let Source::Peer(peer) = self {
            peer.request_keyframe().await;
        }
    }

    async fn close(&self) {
        match self {
            Source::Peer(peer) => peer.close().await,
            Source::Rtp(rtp) => rtp.close(),
        }
    }
}

pub async fn run(
    state: AppState,
    from: RecordFrom,
    name: Option<String>,
    out: Events,
    registration: &Registration,
) -> EndReason {
    let started = match from {
        RecordFrom::Offer { offer, choice } => {
            accept(&state, &offer, choice)
                .await
                .map(|(video, peer, answer, events)| {
                    let trickle = peer.trickle();
                    (
                        video,
                        true,
                        Source::Peer(peer),
                        Event::Answer(answer, Some(trickle)),
                        events,
                    )
                })
        }
        RecordFrom::Rtp(plan) => {
            match crate::gateway::ingest::RtpSource::bind(state.config.ingest_bind, &plan).await {
                Ok((rtp, events)) => Ok((
                    plan.video.codec,
                    plan.audio.is_some(),
                    Source::Rtp(rtp),
                    Event::Ingesting,
                    events,
                )),
                // A port in use is the client's to resolve (another port); anything else
                // (no such address here, no permission) is the server's.
                Err(e) if e.in_use() => Err(Rejection::Conflict(e.to_string())),
                Err(e) => Err(Rejection::Unavailable(e.to_string())),
            }
        }
    };
    let (video, audio, peer, first_event, events) = match started {
        Ok(x) => x,
        Err(why) => {
            tell(&out, Event::Rejected(why));
            return EndReason::Error;
        }
    };
    let open = match open(&state, video, audio, name).await {
        Ok(x) => x,
        Err(e) => {
            state.metrics.store_errors.inc();
            tell(&out, Event::Rejected(Rejection::Internal(e)));
            peer.close().await;
            return EndReason::Error;
        }
    };
    tracing::info!(id = %open.meta.id, session = %registration.id, ?video, "recording session started");
    registration.progress.set_recording(&open.meta.id);
    // Viewers can watch from now on; the channel closes when this session ends.
    let publisher = state.live.open(&registration.id, &open.meta, video);
    // `--forward-rtp`: every recording goes to these services too.
    for to in &state.config.forward_rtp {
        if let Err(e) = state
            .forwards
            .start_to(&state, &registration.id, *to, None)
            .await
        {
            tracing::warn!(%to, error = %e, "RTP forward not started");
        }
    }
    tell(&out, first_event);
    let _ = state.changes.send(());

    let mut ingest = Ingest {
        video: Depacketizer::new(video),
        audio: Depacketizer::new(Codec::Opus),
        timeline: Timeline::new(),
        start: Instant::now(),
        frames: 0,
    };
    let Open {
        mut meta,
        mut recorder,
        written,
    } = open;
    let mut live = Live {
        peer: &peer,
        publisher,
        events,
        stop: registration.stop.clone(),
        progress: &registration.progress,
        out: &out,
        written,
        metrics: &state.metrics,
        feeds: [
            DepackFeed::new(MediaKind::Video),
            DepackFeed::new(MediaKind::Audio),
        ],
        reported_bytes: 0,
    };
    let (end, write_error) = live.record(&state, &mut ingest, &mut recorder).await;
    let write_error = match write_error {
        None if matches!(end, End::Stopped | End::Limit | End::Shutdown) => {
            live.drain_after_stop(&end, &mut ingest, &mut recorder)
                .await
        }
        other => other,
    };
    peer.close().await;
    let reason = end.reason();
    let write_failed = write_error.is_some();
    conclude(
        &state,
        &out,
        end,
        write_error,
        &mut ingest,
        recorder,
        &mut meta,
    )
    .await;
    live.report(&ingest);
    if write_failed || matches!(reason, EndReason::WriteFailed) {
        state.metrics.store_errors.inc();
        return EndReason::WriteFailed;
    }
    reason
}

/// Answers a WebRTC recorder's offer with the video codec `choice` picks.
async fn accept(
    state: &AppState,
    offer: &SessionDescription,
    choice: super::VideoChoice,
) -> Result<
    (
        Codec,
        crate::rtc::RecorderPeer,
        SessionDescription,
        mpsc::Receiver<PeerEvent>,
    ),
    Rejection,
> {
    let from_rtc = |e: crate::rtc::RtcError| Rejection::from_rtc(&e);
    let video = match choice {
        super::VideoChoice::Server => state.config.vcodec.codec(),
        super::VideoChoice::OfferPreference => {
            crate::rtc::preferred_video(offer).map_err(from_rtc)?
        }
    };
    let (peer, answer, events) = state
        .rtc
        .accept_recorder(offer, video)
        .await
        .map_err(from_rtc)?;
    Ok((video, peer, answer, events))
}

impl End {
    /// How the metrics name this end.
    fn reason(&self) -> EndReason {
        match self {
            End::Stopped => EndReason::Stopped,
            End::PeerGone(_) => EndReason::PeerGone,
            End::NeverConnected => EndReason::NeverConnected,
            End::NoMedia => EndReason::NoMedia,
            End::Limit => EndReason::Limit,
            End::WriteFailed(_) => EndReason::WriteFailed,
            End::Shutdown => EndReason::Shutdown,
        }
    }
}

/// Reserves the recording in the store (off the async workers) and starts its writer.
async fn open(
    state: &AppState,
    video: Codec,
    audio: bool,
    name: Option<String>,
) -> Result<Open, String> {
    let container =
        ContainerKind::for_video(video).ok_or_else(|| format!("{video:?} cannot be recorded"))?;
    let store = state.store.clone();
    let created = tokio::task::spawn_blocking(move || {
        let mut new = store.create(container, Some(video), audio).map_err(|e| {
            tracing::error!(error = %e, "cannot create a recording");
            format!("cannot start recording: {e}")
        })?;
        // The name was validated at the edge; a failure here keeps the default name.
        if let Some(name) = name {
            match store.rename(&new.meta.id, &name) {
                Ok(meta) => new.meta = meta,
                Err(e) => tracing::warn!(id = %new.meta.id, error = %e, "recording name not set"),
            }
        }
        let id = new.meta.id.clone();
        let abandoned = {
            let store = store.clone();
            let meta = new.meta.clone();
            move || {
                // The session ended without concluding (it panicked): repair what reached
                // the disk so that no entry stays in state `recording`.
                let meta = store.repair(meta, "the recording session failed".into());
                tracing::warn!(id = %meta.id, state = ?meta.state, "recording abandoned and repaired");
            }
        };
        let sink = WriteBehind::spawn(new.sink, &id, Some(Box::new(abandoned))).map_err(|e| {
            tracing::error!(%id, error = %e, "cannot start the recording's writer");
            "cannot start recording: the server cannot start a writer".to_owned()
        })?;
        Ok::<_, String>((new.meta, sink))
    })
    .await
    .map_err(|_| "cannot start recording: the store failed".to_owned())??;
    let (meta, sink) = created;
    let written = sink.written();
    let closer = sink.closer();
    let config = RecorderConfig {
        video: Some(video),
        audio,
        max_fragment_ms: 1000,
    };
    match Recorder::new(container, sink, config) {
        Ok(recorder) => Ok(Open {
            meta,
            recorder,
            written,
        }),
        Err(e) => {
            // Unreachable for the containers we pick, but never leave the entry behind.
            let _ = closer.close().await;
            let store = state.store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let mut meta = meta;
                meta.state = RecordingState::Failed;
                store.finish(meta).and_then(|m| store.delete(&m.id))
            })
            .await;
            Err(format!("cannot start recording: {e}"))
        }
    }
}

/// What the record loop listens to.
struct Live<'a> {
    peer: &'a Source,
    /// Live viewers' feed.
    publisher: super::live::Publisher,
    events: mpsc::Receiver<PeerEvent>,
    stop: CancellationToken,
    progress: &'a Progress,
    out: &'a Events,
    written: Arc<AtomicU64>,
    metrics: &'a Metrics,
    /// What of the depacketizers' counters the metrics have seen (video, audio).
    feeds: [DepackFeed; 2],
    /// Bytes written that the metrics have seen.
    reported_bytes: u64,
}

impl Live<'_> {
    /// Records until STOP, the peer going away, a limit or a timeout, or a write error.
    async fn record(
        &mut self,
        state: &AppState,
        ingest: &mut Ingest,
        recorder: &mut Recorder<WriteBehind>,
    ) -> (End, Option<String>) {
        let config = &state.config;
        let start = ingest.start;
        let mut pli = tokio::time::interval(Duration::from_secs(config.pli_interval.max(1)));
        // Keyframe requests (periodic, and for live viewers) go only to a sender that takes them.
        let asks = self.peer.takes_keyframe_requests();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // One timer for the whole session: a `sleep_until` built inside `select!` would
        // register and cancel a timer entry for every packet.
        let limit = tokio::time::sleep(Duration::from_secs(config.max_record_seconds));
        tokio::pin!(limit);
        let connect_by = start + Duration::from_secs(config.connect_timeout);
        let media_timeout = Duration::from_secs(config.media_timeout);
        let disconnect_timeout = Duration::from_secs(config.disconnect_timeout);
        let mut connected = false;
        let mut disconnected_since: Option<Instant> = None;
        // When media last arrived (or the connection came up).
        let mut last_media = start;

        let end = loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    None => break End::PeerGone("the peer connection closed"),
                    Some(PeerEvent::Rtp { kind, packet, arrival }) => {
                        last_media = arrival;
                        // Viewers first: they never wait for the file.
                        self.publisher.publish(kind, &packet);
                        self.metrics.rtp_in(kind, packet.payload.len());
                        if let Err(e) = ingest.rtp(kind, packet, arrival, recorder) {
                            return (End::WriteFailed(e.clone()), Some(e));
                        }
                        if ingest.video.take_keyframe_request() {
                            self.keyframe().await;
                        }
                    }
                    Some(PeerEvent::SenderReport { kind, ntp, rtp }) => {
                        ingest.timeline.on_sender_report(kind, ntp, rtp)
                    }
                    Some(PeerEvent::State(PeerState::Connected)) => {
                        if !connected {
                            last_media = Instant::now();
                        }
                        connected = true;
                        disconnected_since = None;
                        self.keyframe().await;
                    }
                    Some(PeerEvent::State(PeerState::Disconnected)) => {
                        disconnected_since.get_or_insert_with(Instant::now);
                    }
                    Some(PeerEvent::State(PeerState::Failed)) => break End::PeerGone("the connection failed"),
                    Some(PeerEvent::State(PeerState::Closed)) => break End::PeerGone("the browser closed the connection"),
                    Some(_) => {}
                },
                _ = pli.tick(), if asks => self.keyframe().await,
                _ = self.publisher.keyframe_wanted(), if asks && self.publisher.active() => {
                    self.keyframe().await;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if !connected && now >= connect_by {
                        break End::NeverConnected;
                    }
                    if connected && now.saturating_duration_since(last_media) >= media_timeout {
                        break End::NoMedia;
                    }
                    if disconnected_since.is_some_and(|t| t.elapsed() >= disconnect_timeout) {
                        break End::PeerGone("the connection was lost");
                    }
                    let bytes = self.written.load(Ordering::Relaxed);
                    self.progress.set(bytes, ingest.frames);
                    self.report(ingest);
                    tell(self.out, Event::State(SessionState {
                        phase: SessionPhase::Recording,
                        elapsed_ms: start.elapsed().as_millis() as u64,
                        bytes,
                        frames: ingest.frames,
                    }));
                }
                _ = &mut limit => break End::Limit,
                _ = self.stop.cancelled() => break End::Stopped,
                _ = state.shutdown.cancelled() => break End::Shutdown,
            }
        };
        (end, None)
    }

    /// A PLI to the sender, counted (only a sender that takes them is asked).
    async fn keyframe(&self) {
        if self.peer.takes_keyframe_requests() {
            self.metrics.plis_sent.inc();
            self.peer.request_keyframe().await;
        }
    }

    /// Adds what the depacketizers and the writer did since the last report to the metrics.
    fn report(&mut self, ingest: &Ingest) {
        self.feeds[0].report(self.metrics, &ingest.video.stats());
        self.feeds[1].report(self.metrics, &ingest.audio.stats());
        let bytes = self.written.load(Ordering::Relaxed);
        self.metrics
            .recording_bytes_written
            .inc_by(bytes.saturating_sub(self.reported_bytes));
        self.reported_bytes = self.reported_bytes.max(bytes);
    }

    /// STOP (or the limit) can overtake the last packets: they travel over UDP and through the
    /// library while STOP comes over the websocket. Take what had arrived by then (`select!`
    /// picks among ready branches at random, so some may still be queued) and what is still in
    /// flight, but nothing captured after the stop.
    async fn drain_after_stop(
        &mut self,
        end: &End,
        ingest: &mut Ingest,
        recorder: &mut Recorder<WriteBehind>,
    ) -> Option<String> {
        let stopped_at = Instant::now();
        let grace = if matches!(end, End::Shutdown) {
            Duration::ZERO
        } else {
            STOP_GRACE
        };
        while let Ok(Some(ev)) = tokio::time::timeout(
            STOP_QUIET.min(grace.saturating_sub(stopped_at.elapsed())),
            self.events.recv(),
        )
        .await
        {
            if let PeerEvent::Rtp {
                kind,
                packet,
                arrival,
            } = ev
            {
                self.metrics.rtp_in(kind, packet.payload.len());
                if arrival > stopped_at + STOP_SLACK {
                    break;
                }
                if let Err(e) = ingest.rtp(kind, packet, arrival, recorder) {
                    return Some(e);
                }
            }
        }
        None
    }
}

/// Finishes the file, saves the metadata (or removes an empty recording) and tells the client.
async fn conclude(
    state: &AppState,
    out: &Events,
    end: End,
    mut write_error: Option<String>,
    ingest: &mut Ingest,
    mut recorder: Recorder<WriteBehind>,
    meta: &mut RecordingMeta,
) {
    // The writer is closed (and waited for) on every path below before the store touches the
    // file, also when the muxer drops the sink on a failed finish.
    let closer = recorder.get_ref().closer();
    // Whatever the depacketizers still hold that is complete goes into the file.
    if write_error.is_none()
        && let Err(e) = ingest.flush(&mut recorder)
    {
        write_error = Some(e);
    }
    let frames = ingest.frames;
    let id = meta.id.clone();
    let end = match (end, write_error) {
        (End::WriteFailed(e), _) | (_, Some(e)) => End::WriteFailed(e),
        (end, None) => end,
    };
    let store = state.store.clone();
    if (frames == 0 || !recorder.started()) && !matches!(end, End::WriteFailed(_)) {
        // Nothing arrived (stopped at once, or media never flowed), or nothing could start a
        // file (no keyframe): keep no empty entry.
        drop(recorder);
        let _ = closer.close().await;
        meta.state = RecordingState::Failed;
        let meta = meta.clone();
        let removed = tokio::task::spawn_blocking(move || {
            store.finish(meta).and_then(|m| store.delete(&m.id))
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(%id, error = %e, "could not remove an empty recording");
        }
        tracing::info!(%id, "recording session ended without media");
        let why = end_note(&end, &state.config)
            .unwrap_or_else(|| "no media arrived from the browser".into());
        tell(out, Event::Error(format!("nothing was recorded: {why}")));
        return;
    }
    let finished = if matches!(end, End::WriteFailed(_)) {
        // Finishing would write more to a failing disk (and patch sizes for data that never
        // landed): stop the writer and let `repair` work from what is really on disk.
        drop(recorder);
        let _ = closer.close().await;
        Ok(())
    } else {
        finalize(recorder, closer, meta).await
    };
    let note = match (&end, &finished) {
        (End::WriteFailed(e), _) => Some(format!("recording ended early: {e}")),
        (_, Err(e)) => Some(format!("the recording could not be finished: {e}")),
        (end, Ok(())) => end_note(end, &state.config).map(|why| match end {
            End::Limit => why,
            _ => format!("recording ended because {why}"),
        }),
    };
    let failed = finished.is_err() || matches!(end, End::WriteFailed(_));
    let to_save = meta.clone();
    let saved = tokio::task::spawn_blocking(move || {
        if failed {
            // The writer failed (disk full, I/O error): keep what reached the disk, cut back
            // to its last complete cluster/fragment.
            Ok(store.repair(to_save, note.unwrap_or_default()))
        } else {
            let mut meta = to_save;
            meta.note = note;
            store.finish(meta)
        }
    })
    .await;
    let meta = match saved {
        Ok(Ok(meta)) => meta,
        Ok(Err(e)) => {
            state.metrics.store_errors.inc();
            tracing::error!(%id, error = %e, "could not save recording metadata");
            tell(
                out,
                Event::Error(format!("the recording could not be saved: {e}")),
            );
            return;
        }
        Err(e) => {
            tracing::error!(%id, error = %e, "metadata task failed");
            return;
        }
    };
    tracing::info!(
        id = %meta.id,
        duration_ms = meta.duration_ms,
        video_frames = meta.video_frames,
        audio_frames = meta.audio_frames,
        state = ?meta.state,
        video_lost = ingest.video.stats().lost,
        "recording session ended"
    );
    let _ = state.changes.send(());
    // Its poster, off this task (decoding a keyframe takes a few milliseconds of CPU), tracked
    // so that a shutdown waits for it.
    if meta.playable() {
        let (store, id) = (state.store.clone(), meta.id.clone());
        state.tasks.spawn_blocking(move || {
            if let Err(e) = crate::thumbnail::get_or_make(store.as_ref(), &id) {
                tracing::info!(%id, error = %e, "no poster");
            }
        });
    }
    if let Some(note) = meta
        .note
        .clone()
        .filter(|_| failed || !matches!(end, End::Stopped | End::Shutdown))
    {
        tell(out, Event::Error(note));
    }
    tell(out, Event::RecordingFinished(meta));
}

/// After STOP: wait at most this long for packets that were already on their way.
const STOP_GRACE: Duration = Duration::from_millis(300);
/// ... and stop waiting once nothing has come for this long.
const STOP_QUIET: Duration = Duration::from_millis(50);
/// Packets reaching us up to this long after STOP count as captured before the click (still in
/// the sender's encoder, pacer or the network); later ones are not recorded.
const STOP_SLACK: Duration = Duration::from_millis(100);

/// The receive half of a recording: depacketizers and the common timeline.
struct Ingest {
    video: Depacketizer,
    audio: Depacketizer,
    timeline: Timeline,
    start: Instant,
    frames: u64,
}

impl Ingest {
    fn rtp(
        &mut self,
        kind: MediaKind,
        packet: media::rtp::RtpPacket,
        arrival: Instant,
        recorder: &mut Recorder<WriteBehind>,
    ) -> Result<(), String> {
        let at = super::micros_since(self.start, arrival);
        self.depack(kind).push(packet);
        self.drain(kind, at, recorder)
    }

    /// Whatever the depacketizers still hold that is complete goes into the file.
    fn flush(&mut self, recorder: &mut Recorder<WriteBehind>) -> Result<(), String> {
        let at = super::micros_since(self.start, Instant::now());
        for kind in [MediaKind::Video, MediaKind::Audio] {
            self.depack(kind).flush();
            self.drain(kind, at, recorder)?;
        }
        Ok(())
    }

    fn depack(&mut self, kind: MediaKind) -> &mut Depacketizer {
        match kind {
            MediaKind::Video => &mut self.video,
            MediaKind::Audio => &mut self.audio,
        }
    }

    /// Moves every complete frame from a depacketizer onto the common timeline and into the
    /// file.
    fn drain(
        &mut self,
        kind: MediaKind,
        arrival_us: u64,
        recorder: &mut Recorder<WriteBehind>,
    ) -> Result<(), String> {
        while let Some(frame) = self.depack(kind).pop() {
            let clock = frame.codec.clock_rate();
            self.timeline.observe(kind, clock, frame.ts, arrival_us);
            let Some(us) = self.timeline.to_common_us(kind, frame.ts) else {
                continue;
            };
            // u128: `us` can be anything a sender's timestamps make of it.
            let ts =
                u64::try_from(u128::from(us) * u128::from(clock) / 1_000_000).unwrap_or(u64::MAX);
            recorder
                .push(Frame { ts, ..frame })
                .map_err(|e| e.to_string())?;
            self.frames += 1;
        }
        Ok(())
    }
}

/// Why the recording ended, for the user; `None` when the user ended it (or the server
/// stopped).
fn end_note(end: &End, config: &crate::config::Config) -> Option<String> {
    match end {
        End::Stopped | End::Shutdown => None,
        End::WriteFailed(e) => Some(e.clone()),
        End::Limit => Some(format!(
            "recording reached the {} s limit",
            config.max_record_seconds
        )),
        End::PeerGone(why) => Some((*why).to_owned()),
        End::NeverConnected => Some(format!(
            "the connection did not come up within {} s",
            config.connect_timeout
        )),
        End::NoMedia => Some(format!("no media arrived for {} s", config.media_timeout)),
    }
}

/// Finishes the container, waits for the writer to make it durable, and copies what the
/// muxer reports into the metadata.
async fn finalize(
    recorder: Recorder<WriteBehind>,
    closer: Closer,
    meta: &mut RecordingMeta,
) -> Result<(), String> {
    match recorder.finish_into_inner() {
        Ok((summary, sink)) => {
            drop(sink);
            if let Err(e) = closer.close().await {
                meta.state = RecordingState::Failed;
                return Err(e.to_string());
            }
            crate::store::fs::apply_summary(meta, &summary);
            meta.state = if summary.duration_ms > 0 {
                RecordingState::Complete
            } else {
                RecordingState::Failed
            };
            Ok(())
        }
        Err(e) => {
            // The muxer dropped the sink; the writer must be done before a repair reads the
            // file.
            let _ = closer.close().await;
            meta.state = RecordingState::Failed;
            Err(e.to_string())
        }
    }
}
