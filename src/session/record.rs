//! A recording session: RTP from the browser -> frames -> container file in the store.
use std::time::{Duration, Instant};

use app::protocol::{
    RecordingMeta, RecordingState, ServerMessage, SessionDescription, SessionState,
};
use media::container::{ContainerKind, Recorder, RecorderConfig};
use media::depack::Depacketizer;
use media::timeline::Timeline;
use media::{Codec, Frame, MediaKind};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::rtc::{PeerEvent, PeerState};
use crate::store::MediaSink;

/// Why a recording ended, when it is worth telling the user.
enum End {
    Stopped,
    PeerGone(&'static str),
    Limit,
    WriteFailed(String),
    Shutdown,
}

pub async fn run(
    state: AppState,
    offer: SessionDescription,
    out: mpsc::Sender<ServerMessage>,
    mut stop: watch::Receiver<bool>,
) {
    let video = state.config.vcodec.codec();
    let (peer, answer, mut events) = match state.rtc.accept_recorder(&offer, video).await {
        Ok(x) => x,
        Err(e) => {
            let _ = out.send(ServerMessage::Error(e.to_string())).await;
            return;
        }
    };
    let store = state.store.clone();
    let opened = (|| -> Result<_, String> {
        let container = ContainerKind::for_video(video)
            .ok_or_else(|| format!("{video:?} cannot be recorded"))?;
        let new = store
            .create(container, Some(video), true)
            .map_err(|e| format!("cannot start recording: {e}"))?;
        let counting = Counting::new(new.sink);
        let written = counting.written.clone();
        let sink: Box<dyn MediaSink> = Box::new(counting);
        let config = RecorderConfig {
            video: Some(video),
            audio: true,
            max_fragment_ms: 1000,
        };
        let recorder = Recorder::new(container, sink, config)
            .map_err(|e| format!("cannot start recording: {e}"))?;
        Ok((new.meta, recorder, written))
    })();
    let (mut meta, mut recorder, written) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = out.send(ServerMessage::Error(e)).await;
            peer.close().await;
            return;
        }
    };
    tracing::info!(id = %meta.id, ?video, "recording session started");
    let _ = out.send(ServerMessage::Answer(answer.encode())).await;

    let mut ingest = Ingest {
        video: Depacketizer::new(video),
        audio: Depacketizer::new(Codec::Opus),
        timeline: Timeline::new(),
        start: Instant::now(),
        frames: 0,
    };
    let start = ingest.start;
    let mut pli = tokio::time::interval(Duration::from_secs(state.config.pli_interval.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // One timer for the whole session: a `sleep_until` built inside `select!` would register
    // and cancel a timer entry for every packet.
    let limit = tokio::time::sleep(Duration::from_secs(state.config.max_record_seconds));
    tokio::pin!(limit);
    let disconnect_timeout = Duration::from_secs(state.config.disconnect_timeout);
    let mut disconnected_since: Option<Instant> = None;
    let mut write_error: Option<String> = None;

    let end = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => break End::PeerGone("the peer connection closed"),
                Some(PeerEvent::Rtp { kind, packet, arrival }) => {
                    if let Err(e) = ingest.rtp(kind, packet, arrival, &mut recorder) {
                        write_error = Some(e);
                        break End::WriteFailed(write_error.clone().unwrap_or_default());
                    }
                    if ingest.video.take_keyframe_request() {
                        peer.request_keyframe().await;
                    }
                }
                Some(PeerEvent::SenderReport { kind, ntp, rtp }) => ingest.timeline.on_sender_report(kind, ntp, rtp),
                Some(PeerEvent::State(PeerState::Connected)) => {
                    disconnected_since = None;
                    peer.request_keyframe().await;
                }
                Some(PeerEvent::State(PeerState::Disconnected)) => {
                    disconnected_since.get_or_insert_with(Instant::now);
                }
                Some(PeerEvent::State(PeerState::Failed)) => break End::PeerGone("the connection failed"),
                Some(PeerEvent::State(PeerState::Closed)) => break End::PeerGone("the browser closed the connection"),
                Some(_) => {}
            },
            _ = pli.tick() => peer.request_keyframe().await,
            _ = tick.tick() => {
                if disconnected_since.is_some_and(|t| t.elapsed() >= disconnect_timeout) {
                    break End::PeerGone("the connection was lost");
                }
                let _ = out.try_send(ServerMessage::State(SessionState {
                    phase: "recording".into(),
                    elapsed_ms: start.elapsed().as_millis() as u64,
                    bytes: written.load(std::sync::atomic::Ordering::Relaxed),
                    frames: ingest.frames,
                }));
            }
            _ = &mut limit => break End::Limit,
            _ = stop.changed() => break End::Stopped,
            _ = state.shutdown.cancelled() => break End::Shutdown,
        }
    };

    // STOP (or the limit) can overtake the last packets: they travel over UDP and through the
    // library while STOP comes over the websocket. Take what had arrived by then (`select!`
    // picks among ready branches at random, so some may still be queued) and what is still in
    // flight, but nothing captured after the stop.
    if write_error.is_none() && matches!(end, End::Stopped | End::Limit | End::Shutdown) {
        let stopped_at = Instant::now();
        let grace = if matches!(end, End::Shutdown) {
            Duration::ZERO
        } else {
            STOP_GRACE
        };
        while let Ok(Some(ev)) = tokio::time::timeout(
            STOP_QUIET.min(grace.saturating_sub(stopped_at.elapsed())),
            events.recv(),
        )
        .await
        {
            if let PeerEvent::Rtp {
                kind,
                packet,
                arrival,
            } = ev
            {
                if arrival > stopped_at + STOP_SLACK {
                    break;
                }
                if let Err(e) = ingest.rtp(kind, packet, arrival, &mut recorder) {
                    write_error = Some(e);
                    break;
                }
            }
        }
    }
    peer.close().await;

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
    let finished = if matches!(end, End::WriteFailed(_)) {
        // Finishing would write more to a failing disk (and patch sizes for data that never
        // landed): drop the writer and let `repair` work from what is really on disk.
        drop(recorder);
        Ok(())
    } else {
        finalize(recorder, &mut meta)
    };
    let note = match (&end, &finished) {
        (End::WriteFailed(e), _) => Some(format!("recording ended early: {e}")),
        (_, Err(e)) => Some(format!("the recording could not be finished: {e}")),
        (End::Limit, _) => Some(format!(
            "recording reached the {} s limit",
            state.config.max_record_seconds
        )),
        (End::PeerGone(why), _) => Some(format!("recording ended because {why}")),
        (End::Stopped | End::Shutdown, _) => None,
    };
    if frames == 0 && !matches!(end, End::WriteFailed(_)) {
        // Nothing arrived (stopped at once, or media never flowed): keep no empty entry.
        meta.state = RecordingState::Failed;
        let removed = tokio::task::spawn_blocking(move || {
            store.finish(meta).and_then(|m| store.delete(&m.id))
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(%id, error = %e, "could not remove an empty recording");
        }
        tracing::info!(%id, "recording session ended without media");
        let _ = out
            .send(ServerMessage::Error(
                "nothing was recorded: no media arrived from the browser".into(),
            ))
            .await;
        return;
    }
    let failed = finished.is_err() || matches!(end, End::WriteFailed(_));
    let saved = tokio::task::spawn_blocking(move || {
        if failed {
            // The writer failed (disk full, I/O error): keep what reached the disk, cut back
            // to its last complete cluster/fragment.
            Ok(store.repair(meta, note.unwrap_or_default()))
        } else {
            meta.note = note;
            store.finish(meta)
        }
    })
    .await;
    let meta = match saved {
        Ok(Ok(meta)) => meta,
        Ok(Err(e)) => {
            tracing::error!(%id, error = %e, "could not save recording metadata");
            let _ = out
                .send(ServerMessage::Error(format!(
                    "the recording could not be saved: {e}"
                )))
                .await;
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
    if let Some(note) = meta
        .note
        .clone()
        .filter(|_| failed || matches!(end, End::Limit))
    {
        let _ = out.send(ServerMessage::Error(note)).await;
    }
    let _ = out.send(ServerMessage::Recording(meta)).await;
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
        recorder: &mut Recorder<Box<dyn MediaSink>>,
    ) -> Result<(), String> {
        let at = super::micros_since(self.start, arrival);
        self.depack(kind).push(packet);
        self.drain(kind, at, recorder)
    }

    /// Whatever the depacketizers still hold that is complete goes into the file.
    fn flush(&mut self, recorder: &mut Recorder<Box<dyn MediaSink>>) -> Result<(), String> {
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
        recorder: &mut Recorder<Box<dyn MediaSink>>,
    ) -> Result<(), String> {
        while let Some(frame) = self.depack(kind).pop() {
            let clock = frame.codec.clock_rate();
            self.timeline.observe(kind, clock, frame.ts, arrival_us);
            let Some(us) = self.timeline.to_common_us(kind, frame.ts) else {
                continue;
            };
            let ts = us * u64::from(clock) / 1_000_000;
            recorder
                .push(Frame { ts, ..frame })
                .map_err(|e| e.to_string())?;
            self.frames += 1;
        }
        Ok(())
    }
}

/// Finishes the container and copies what it reports into the metadata.
fn finalize(
    recorder: Recorder<Box<dyn MediaSink>>,
    meta: &mut RecordingMeta,
) -> Result<(), String> {
    match recorder.finish_into_inner() {
        Ok((summary, mut sink)) => {
            if let Err(e) = sink.sync() {
                tracing::warn!(id = %meta.id, error = %e, "could not sync the recording to disk");
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
            meta.state = RecordingState::Failed;
            Err(e.to_string())
        }
    }
}

/// A sink that counts the bytes written through it (for the live `STATE` messages).
struct Counting {
    inner: Box<dyn MediaSink>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counting {
    fn new(inner: Box<dyn MediaSink>) -> Self {
        Counting {
            inner,
            written: Default::default(),
        }
    }
}

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl std::io::Seek for Counting {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl MediaSink for Counting {
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
}
