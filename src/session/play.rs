//! A playback session: stored recordings -> frames -> paced RTP to the viewer.
//!
//! The clips play back to back through one [`media::schedule::Scheduler`], which keeps one
//! SSRC per kind, contiguous sequence numbers and timestamps across clips, and paces frames
//! by their recorded timestamps. This task only reads files, feeds the scheduler about a
//! second ahead, and sends what it says is due.
use std::time::{Duration, Instant};

use app::protocol::{
    NO_RECORDINGS, NowPlaying, RecordingMeta, ServerMessage, SessionDescription, SessionState,
    Skipped,
};
use media::MediaKind;
use media::container::Demuxer;
use media::schedule::{Output, Scheduler, SchedulerConfig};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::rtc::{PeerEvent, PeerState};
use crate::store::{MediaSource, RecordingStore};

/// How long a viewer may take to connect before the session gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn run(
    state: AppState,
    offer: SessionDescription,
    looping: bool,
    selection: Option<Vec<String>>,
    out: mpsc::Sender<ServerMessage>,
    mut stop: watch::Receiver<bool>,
) {
    let playlist = match playlist(state.store.as_ref(), selection) {
        Ok(p) => p,
        Err(e) => {
            let _ = out.send(ServerMessage::Error(e)).await;
            return;
        }
    };
    let (peer, answer, mut events) = match state.rtc.accept_viewer(&offer).await {
        Ok(x) => x,
        Err(e) => {
            let _ = out.send(ServerMessage::Error(e.to_string())).await;
            return;
        }
    };
    let _ = out.send(ServerMessage::Answer(answer.encode())).await;
    tracing::info!(clips = playlist.len(), looping, "playback session started");

    // Time to first frame is what viewers feel: wait only for the connection, then send a
    // keyframe at once.
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
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
        _ = stop.changed() => false,
        _ = state.shutdown.cancelled() => false,
    };
    if !connected {
        let _ = out
            .send(ServerMessage::Error(
                "the viewer's connection did not come up".into(),
            ))
            .await;
        peer.close().await;
        return;
    }

    let mut sched = Scheduler::new(SchedulerConfig {
        video_ssrc: peer.ssrc(MediaKind::Video),
        audio_ssrc: peer.ssrc(MediaKind::Audio),
        mtu: 1200,
        payload_types: peer.payload_types(),
        initial_video_seq: rand_u16(),
        initial_audio_seq: rand_u16(),
        initial_video_ts: rand_u32(),
        initial_audio_ts: rand_u32(),
    });
    let mut feeder = Feeder::new(playlist, looping);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sent_frames: u64 = 0;
    let mut finished = false;
    // One timer, re-armed for each deadline (cheaper than a new `sleep_until` per packet).
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);

    loop {
        let now_us = super::micros_since(start, Instant::now());
        // Keep about a second of media queued in the scheduler.
        while sched.wants_more() && !feeder.exhausted() {
            feeder.feed(state.store.as_ref(), &mut sched, &out).await;
        }
        while let Some(output) = sched.poll(now_us) {
            match output {
                Output::Packet { kind, packet } => {
                    if packet.marker || kind == MediaKind::Audio {
                        sent_frames += 1;
                    }
                    if let Err(e) = peer.send(kind, &packet).await {
                        tracing::debug!(error = %e, "send failed");
                    }
                }
                Output::ClipStarted { id, index: _ } => {
                    if let Some(np) = feeder.now_playing(&id) {
                        let _ = out.send(ServerMessage::NowPlaying(np)).await;
                    }
                }
                Output::ClipEnded { .. } => {}
            }
        }
        if feeder.exhausted() && sched.next_deadline().is_none() {
            finished = true;
            if feeder.played == 0 {
                let _ = out
                    .send(ServerMessage::Error(
                        "none of the selected recordings can be played".into(),
                    ))
                    .await;
            }
            let _ = out
                .send(ServerMessage::State(SessionState {
                    phase: "finished".into(),
                    elapsed_ms: start.elapsed().as_millis() as u64,
                    bytes: 0,
                    frames: sent_frames,
                }))
                .await;
            break;
        }
        let wake = sched
            .next_deadline()
            .map(|d| start + Duration::from_micros(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(20));
        timer.as_mut().reset(wake.into());
        tokio::select! {
            _ = &mut timer => {}
            ev = events.recv() => match ev {
                None | Some(PeerEvent::State(PeerState::Failed | PeerState::Closed)) => break,
                Some(PeerEvent::State(PeerState::Disconnected)) => {
                    tracing::debug!("viewer disconnected; waiting for it to come back or fail");
                }
                Some(_) => {}
            },
            _ = tick.tick() => {
                let _ = out.try_send(ServerMessage::State(SessionState {
                    phase: "playing".into(),
                    elapsed_ms: start.elapsed().as_millis() as u64,
                    bytes: 0,
                    frames: sent_frames,
                }));
            }
            _ = stop.changed() => break,
            _ = state.shutdown.cancelled() => break,
        }
    }
    peer.close().await;
    if !finished {
        // STOP, the viewer gone, or shutdown: confirm the end the way "finished" does for a
        // playlist played through (the socket may already be closed).
        let _ = out.try_send(ServerMessage::State(SessionState {
            phase: "stopped".into(),
            elapsed_ms: start.elapsed().as_millis() as u64,
            bytes: 0,
            frames: sent_frames,
        }));
    }
    tracing::info!(frames = sent_frames, "playback session ended");
}

/// The recordings to play, oldest first, or the message to send when there are none.
fn playlist(
    store: &dyn RecordingStore,
    selection: Option<Vec<String>>,
) -> Result<Vec<RecordingMeta>, String> {
    let list = match selection {
        None => store
            .list()
            .into_iter()
            .filter(RecordingMeta::playable)
            .collect::<Vec<_>>(),
        Some(ids) if ids.is_empty() => return Err("the \"recording\" list is empty".into()),
        Some(ids) => {
            let mut list = Vec::with_capacity(ids.len());
            for id in ids {
                let meta = store.get(&id).map_err(|e| e.to_string())?;
                if !meta.playable() {
                    return Err(format!(
                        "recording {id} cannot be played (state {:?})",
                        meta.state
                    ));
                }
                list.push(meta);
            }
            list
        }
    };
    if list.is_empty() {
        return Err(NO_RECORDINGS.into());
    }
    Ok(list)
}

/// Walks the playlist (looping or not), opening each clip and pushing its frames.
struct Feeder {
    playlist: Vec<RecordingMeta>,
    looping: bool,
    /// Index of the next clip to open.
    next: usize,
    current: Option<(usize, Demuxer<Box<dyn MediaSource>>)>,
    /// Clips that started in the current pass over the playlist.
    started_this_pass: usize,
    played: usize,
    done: bool,
}

impl Feeder {
    fn new(playlist: Vec<RecordingMeta>, looping: bool) -> Self {
        Feeder {
            playlist,
            looping,
            next: 0,
            current: None,
            started_this_pass: 0,
            played: 0,
            done: false,
        }
    }

    fn exhausted(&self) -> bool {
        self.done && self.current.is_none()
    }

    fn now_playing(&self, id: &str) -> Option<NowPlaying> {
        let index = self.playlist.iter().position(|m| m.id == id)?;
        Some(NowPlaying {
            id: id.to_owned(),
            name: self.playlist[index].name.clone(),
            index,
            count: self.playlist.len(),
        })
    }

    /// Pushes one frame, or opens the next clip.
    async fn feed(
        &mut self,
        store: &dyn RecordingStore,
        sched: &mut Scheduler,
        out: &mpsc::Sender<ServerMessage>,
    ) {
        if let Some((_, demux)) = self.current.as_mut() {
            match demux.next_frame() {
                Ok(Some(frame)) => {
                    sched.push_frame(frame);
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "clip ends early: unreadable data"),
            }
            sched.end_clip();
            self.current = None;
            return;
        }
        if self.next >= self.playlist.len() {
            if self.looping && self.started_this_pass > 0 {
                self.next = 0;
                self.started_this_pass = 0;
            } else {
                self.done = true;
                return;
            }
        }
        let index = self.next;
        self.next += 1;
        let meta = &self.playlist[index];
        let skip = |reason: String| Skipped {
            id: meta.id.clone(),
            reason,
        };
        let opened = store
            .open(&meta.id)
            .map_err(|e| e.to_string())
            .and_then(|(_, src)| {
                Demuxer::open(crate::store::fs::container_kind(&meta.container), src)
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok(demux) => match sched.start_clip(meta.id.clone(), demux.info()) {
                Ok(()) => {
                    self.started_this_pass += 1;
                    self.played += 1;
                    self.current = Some((index, demux));
                }
                Err(skip_reason) => {
                    let _ = out
                        .send(ServerMessage::Skipped(skip(skip_reason.to_string())))
                        .await;
                }
            },
            Err(e) => {
                let _ = out.send(ServerMessage::Skipped(skip(e))).await;
            }
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

fn rand_u16() -> u16 {
    rand_u32() as u16
}
