//! Watching a recording while it is made.
//!
//! A recording session opens a [`Channel`] in the [`LiveHub`] and hands every RTP packet it
//! receives to [`Publisher::publish`] before it depacketizes it, so viewers never wait for the
//! file. Each viewer has a bounded queue of its own; `publish` never waits: a viewer whose
//! queue is full loses video up to the next keyframe (and audio until it has room again), so a
//! slow viewer slows neither the recorder nor the other viewers. A viewer that joins, that
//! lost video, or that sends a PLI/FIR asks the recorder for a keyframe; the recorder sends at
//! most one PLI per [`KEYFRAME_REQUEST_INTERVAL`] for all of them together.
//!
//! The viewer's task ([`run`]) rewrites each packet for its connection (SSRC, sequence
//! number, timestamp, payload type: [`media::forward::Rewriter`]).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use app::protocol::{NowPlaying, RecordingMeta, SessionDescription, SessionPhase};
use media::forward::{Rewriter, starts_keyframe};
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::{Notify, mpsc};

use super::{Event, Events, Rejection, tell};
use crate::AppState;
use crate::metrics::EndReason;
use crate::rtc::{PeerEvent, PeerState};
use crate::session::play::{end_phase, viewer_state};
use crate::session::registry::Registration;

/// Packets queued for one viewer (about a second of 2.5 Mbit/s video with its audio). A
/// viewer further behind loses packets, never the recorder's time.
pub const VIEWER_QUEUE_PACKETS: usize = 512;
/// The recorder sends at most one keyframe request (PLI) per this interval for its viewers.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// One packet on its way to a viewer.
#[derive(Clone, Debug)]
pub struct LivePacket {
    pub kind: MediaKind,
    pub packet: RtpPacket,
    /// Packets of this kind were dropped for this viewer just before this one.
    pub discontinuity: bool,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<LivePacket>,
    /// Video is not forwarded until the next keyframe starts.
    waiting_for_keyframe: bool,
    /// Audio was dropped: the next audio packet carries `discontinuity`.
    audio_gap: bool,
    dropped: Arc<AtomicU64>,
}

/// A recording in progress that viewers can watch.
pub struct Channel {
    /// The recording session's id.
    pub session: String,
    /// The recording's id in the store.
    pub recording: String,
    /// Its name when it started.
    pub name: String,
    pub video: Codec,
    subscribers: Mutex<Vec<Subscriber>>,
    count: AtomicUsize,
    keyframe_wanted: Notify,
    /// Set by [`want_keyframe`](Self::want_keyframe) too, for a live transcoder that feeds
    /// this channel (it runs on a thread of its own and cannot wait for `keyframe_wanted`).
    pub(super) keyframe_asked: AtomicBool,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// The recording's video in other codecs for viewers that lack its own: one transcoder
    /// per output codec, shared by every viewer that needs it (`super::live_transcode`).
    pub(super) transcoded: Mutex<HashMap<Codec, Arc<Channel>>>,
}

impl Channel {
    pub(super) fn new(session: &str, recording: &str, name: &str, video: Codec) -> Channel {
        Channel {
            session: session.to_owned(),
            recording: recording.to_owned(),
            name: name.to_owned(),
            video,
            subscribers: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            keyframe_wanted: Notify::new(),
            keyframe_asked: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            transcoded: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the recorder for a keyframe (it rate-limits).
    pub fn want_keyframe(&self) {
        self.keyframe_asked.store(true, Ordering::Relaxed);
        self.keyframe_wanted.notify_one();
    }

    /// Adds a viewer; it gets video from the next keyframe on (and asks for one).
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE_PACKETS);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut subs = self.lock();
            // Checked under the lock: `close` empties the list under it too.
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            subs.push(Subscriber {
                id,
                tx,
                waiting_for_keyframe: true,
                audio_gap: false,
                dropped: dropped.clone(),
            });
            self.count.store(subs.len(), Ordering::Relaxed);
        }
        self.want_keyframe();
        Some(Subscription {
            channel: self.clone(),
            id,
            rx,
            dropped,
        })
    }

    /// Hands one packet to every viewer of this channel, without waiting (the recorder's, or
    /// a live transcoder's).
    pub(super) fn publish(&self, kind: MediaKind, packet: &RtpPacket) {
        self.publish_marked(kind, packet, false);
    }

    /// [`publish`](Self::publish) of a packet that follows a gap of its kind (a live
    /// transcoder passing on the recorder's audio after packets were dropped for it).
    pub(super) fn publish_marked(&self, kind: MediaKind, packet: &RtpPacket, gap: bool) {
        if self.viewers() == 0 {
            return;
        }
        let video = self.video;
        let mut lost_video = false;
        // Parsed once per packet, and only if someone waits for a keyframe.
        let mut keyframe: Option<bool> = None;
        let mut subs = self.lock();
        subs.retain_mut(|sub| {
            let discontinuity = match kind {
                MediaKind::Video if sub.waiting_for_keyframe => {
                    let starts =
                        *keyframe.get_or_insert_with(|| starts_keyframe(video, &packet.payload));
                    if !starts {
                        sub.dropped.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    true
                }
                MediaKind::Video => gap,
                MediaKind::Audio => sub.audio_gap || gap,
            };
            let item = LivePacket {
                kind,
                packet: packet.clone(),
                discontinuity,
            };
            match sub.tx.try_send(item) {
                Ok(()) => {
                    match kind {
                        MediaKind::Video => sub.waiting_for_keyframe = false,
                        MediaKind::Audio => sub.audio_gap = false,
                    }
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                    match kind {
                        MediaKind::Video => {
                            sub.waiting_for_keyframe = true;
                            lost_video = true;
                        }
                        MediaKind::Audio => sub.audio_gap = true,
                    }
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(subs.len(), Ordering::Relaxed);
        drop(subs);
        if lost_video {
            self.want_keyframe();
        }
    }

    /// Viewers watching now.
    pub fn viewers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn close(&self) {
        let mut subs = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        subs.clear();
        self.count.store(0, Ordering::Relaxed);
    }
}

/// A viewer's end of a channel; dropping it leaves.
pub struct Subscription {
    pub channel: Arc<Channel>,
    id: u64,
    pub rx: mpsc::Receiver<LivePacket>,
    /// Packets dropped for this viewer (its queue was full, or it waited for a keyframe).
    pub dropped: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.channel.lock();
        subs.retain(|s| s.id != self.id);
        self.channel.count.store(subs.len(), Ordering::Relaxed);
    }
}

/// Every recording that can be watched live, by recording session id; cheap to clone.
#[derive(Clone, Default)]
pub struct LiveHub {
    channels: Arc<Mutex<HashMap<String, Arc<Channel>>>>,
}

impl LiveHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the channel of a recording session; it closes when the publisher is dropped.
    pub fn open(&self, session: &str, recording: &RecordingMeta, video: Codec) -> Publisher {
        let channel = Arc::new(Channel::new(session, &recording.id, &recording.name, video));
        self.lock().insert(session.to_owned(), channel.clone());
        Publisher {
            hub: self.clone(),
            channel,
            last_request: None,
            pending_request: false,
            hold: None,
        }
    }

    /// The channel of a recording in progress, by its session id or by its recording id.
    pub fn find(&self, target: &str) -> Option<Arc<Channel>> {
        let channels = self.lock();
        channels
            .get(target)
            .or_else(|| channels.values().find(|c| c.recording == target))
            .cloned()
    }
}

/// The recorder's end of its channel.
pub struct Publisher {
    hub: LiveHub,
    channel: Arc<Channel>,
    /// When the last PLI for viewers went out.
    last_request: Option<TokioInstant>,
    pending_request: bool,
    /// The wait of a held request: one timer per request, kept across the recorder's loop
    /// turns (it polls [`keyframe_wanted`](Self::keyframe_wanted) once per packet).
    hold: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Publisher {
    /// Hands one received packet to every viewer, without waiting.
    pub fn publish(&self, kind: MediaKind, packet: &RtpPacket) {
        self.channel.publish(kind, packet);
    }

    /// Resolves when a viewer wants a keyframe and the recorder may send a PLI now: at most one
    /// per [`KEYFRAME_REQUEST_INTERVAL`] for all viewers together, whatever they ask (a viewer
    /// that sends PLIs without pause must not make the recorder send nothing but keyframes).
    /// The recorder's own periodic PLIs do not count: a viewer joining right after one would
    /// otherwise wait the whole interval.
    pub async fn keyframe_wanted(&mut self) {
        if !self.pending_request {
            self.channel.keyframe_wanted.notified().await;
            self.pending_request = true;
            let until = self
                .last_request
                .map(|last| last + KEYFRAME_REQUEST_INTERVAL);
            if let Some(until) = until.filter(|u| *u > TokioInstant::now()) {
                self.hold = Some(Box::pin(tokio::time::sleep_until(until)));
            }
        }
        if let Some(hold) = self.hold.as_mut() {
            hold.await;
        }
        self.hold = None;
        self.pending_request = false;
        self.last_request = Some(TokioInstant::now());
    }

    /// Whether [`keyframe_wanted`](Self::keyframe_wanted) can resolve: someone watches, or a
    /// request is held. The recorder polls it only then (it is in its per-packet loop).
    pub fn active(&self) -> bool {
        self.pending_request || self.channel.viewers() > 0
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut channels = self.hub.lock();
        if channels
            .get(&self.channel.session)
            .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
        {
            channels.remove(&self.channel.session);
        }
        drop(channels);
        // Viewers see their queue close and end.
        self.channel.close();
    }
}

/// A rewriter for one kind of a recorder's packets, to `ssrc`, from a random sequence number
/// and timestamp; between two sources of the recorder it steps one 30 fps frame or one 20 ms
/// Opus frame.
pub(crate) fn rewriter(ssrc: u32, kind: MediaKind) -> Rewriter {
    let gap = match kind {
        MediaKind::Video => 3000,
        MediaKind::Audio => 960,
    };
    Rewriter::new(ssrc, crate::random::u16(), crate::random::u32(), gap)
}

/// A live viewer's session: from the recorder's packets to the viewer, until the recording
/// ends, STOP, the viewer goes, or shutdown.
pub async fn run(
    state: AppState,
    offer: SessionDescription,
    target: String,
    out: Events,
    registration: &Registration,
) -> EndReason {
    let Some(channel) = state.live.find(&target) else {
        tell(
            &out,
            Event::Rejected(Rejection::NotFound(format!(
                "no recording in progress has the id {}",
                target.chars().take(64).collect::<String>()
            ))),
        );
        return EndReason::Error;
    };
    let Some((peer, answer, mut events)) = super::play::accept_viewer(&state, &offer, &out).await
    else {
        return EndReason::Error;
    };
    let payload_types = peer.payload_types();
    let pt_of = |codec: Codec| {
        payload_types
            .iter()
            .find(|(c, _)| *c == codec)
            .map(|(_, pt)| *pt)
    };
    // The recording's own codec if the viewer takes it, else the viewer's preferred one,
    // transcoded (`live_transcode`).
    let wanted = if pt_of(channel.video).is_some() {
        Some(channel.video)
    } else {
        payload_types
            .iter()
            .map(|(c, _)| *c)
            .find(|c| c.kind() == MediaKind::Video)
    };
    let Some((video_codec, video_pt)) = wanted.and_then(|c| pt_of(c).map(|pt| (c, pt))) else {
        peer.close().await;
        tell(
            &out,
            Event::Rejected(Rejection::Unacceptable(
                "the offer accepts no video codec this server sends".into(),
            )),
        );
        return EndReason::Error;
    };
    let audio_pt = pt_of(Codec::Opus);
    tell(&out, Event::Answer(answer, Some(peer.trickle())));
    registration.progress.set_recording(&channel.recording);
    tracing::info!(session = %registration.id, recording = %channel.recording, from = ?channel.video, to = ?video_codec, "live viewer started");
    if let Err(reason) =
        super::play::wait_connected(&state, &mut events, &registration.stop, &out).await
    {
        peer.close().await;
        return reason;
    }
    let sub = match channel.subscribe_in(video_codec) {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(error = %e, "cannot transcode for a live viewer");
            peer.close().await;
            tell(
                &out,
                Event::Error(format!("the server cannot transcode this recording: {e}")),
            );
            tell(
                &out,
                Event::State(viewer_state(end_phase(EndReason::Error), Instant::now(), 0)),
            );
            return EndReason::Error;
        }
    };
    let Some(mut sub) = sub else {
        peer.close().await;
        tell(&out, Event::Error("the recording has ended".into()));
        tell(
            &out,
            Event::State(viewer_state(SessionPhase::Finished, Instant::now(), 0)),
        );
        return EndReason::Finished;
    };
    tell(
        &out,
        Event::NowPlaying(NowPlaying {
            id: channel.recording.clone(),
            name: channel.name.clone(),
            index: 0,
            count: 1,
        }),
    );
    let start = Instant::now();
    let mut video = rewriter(peer.ssrc(MediaKind::Video), MediaKind::Video);
    let mut audio = rewriter(peer.ssrc(MediaKind::Audio), MediaKind::Audio);
    let mut frames = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let metrics = &state.metrics;
    let ended = loop {
        tokio::select! {
            item = sub.rx.recv() => {
                let Some(item) = item else { break EndReason::Finished };
                let (rewriter, pt) = match item.kind {
                    MediaKind::Video => (&mut video, video_pt),
                    MediaKind::Audio => match audio_pt {
                        Some(pt) => (&mut audio, pt),
                        None => continue,
                    },
                };
                let Some(packet) = rewriter.rewrite(&item.packet, pt, item.discontinuity) else {
                    continue;
                };
                if packet.marker || item.kind == MediaKind::Audio {
                    frames += 1;
                }
                metrics.rtp_out(item.kind, packet.payload.len());
                if let Err(e) = peer.send(item.kind, &packet).await {
                    tracing::debug!(error = %e, "live send failed");
                }
            }
            ev = events.recv() => match ev {
                None | Some(PeerEvent::State(PeerState::Failed | PeerState::Closed)) => {
                    break EndReason::PeerGone;
                }
                // To the channel the viewer is on: the recorder, or its transcoder.
                Some(PeerEvent::KeyframeRequested) => sub.channel.want_keyframe(),
                Some(_) => {}
            },
            _ = tick.tick() => {
                registration.progress.set(0, frames);
                tell(&out, Event::State(viewer_state(SessionPhase::Playing, start, frames)));
            }
            _ = registration.stop.cancelled() => break EndReason::Stopped,
            _ = state.shutdown.cancelled() => break EndReason::Shutdown,
        }
    };
    let dropped = sub.dropped.load(Ordering::Relaxed);
    drop(sub);
    peer.close().await;
    tell(
        &out,
        Event::State(viewer_state(end_phase(ended), start, frames)),
    );
    tracing::info!(frames, dropped, ?ended, "live viewer ended");
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn vp8(seq: u16, key: bool) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ssrc: 1,
            marker: true,
            payload: Bytes::from(vec![0x10, if key { 0x50 } else { 0x51 }]),
        }
    }

    fn meta(id: &str) -> RecordingMeta {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": "n", "created": "", "duration_ms": 0, "video_codec": "vp8",
            "width": 0, "height": 0, "video_frames": 0, "audio": true, "audio_frames": 0,
            "bytes": 0, "state": "recording", "container": "webm"
        }))
        .expect("meta")
    }

    fn opus(seq: u16) -> RtpPacket {
        RtpPacket {
            payload_type: 111,
            payload: Bytes::from_static(&[0xfc]),
            ..vp8(seq, false)
        }
    }

    #[tokio::test]
    async fn a_viewer_starts_at_a_keyframe_and_a_full_queue_drops_to_the_next() {
        let hub = LiveHub::default();
        let publisher = hub.open("s1", &meta("r1"), Codec::Vp8);
        assert!(hub.find("s1").is_some() && hub.find("r1").is_some());
        let channel = hub.find("s1").expect("open");
        let mut fast = channel.subscribe().expect("open channel");
        let mut slow = channel.subscribe().expect("open channel");
        // Delta frames before any keyframe reach nobody; audio does.
        publisher.publish(MediaKind::Video, &vp8(1, false));
        publisher.publish(MediaKind::Audio, &opus(1));
        let first = fast.rx.recv().await.expect("audio");
        assert_eq!(first.kind, MediaKind::Audio);
        assert_eq!(slow.rx.recv().await.expect("audio").kind, MediaKind::Audio);
        publisher.publish(MediaKind::Video, &vp8(2, true));
        let key = fast.rx.recv().await.expect("keyframe");
        assert_eq!((key.packet.sequence_number, key.discontinuity), (2, true));
        // The slow viewer reads nothing: its queue fills, the fast one still gets everything.
        let _ = slow.rx.recv().await.expect("keyframe");
        for seq in 3..(3 + VIEWER_QUEUE_PACKETS as u16 + 10) {
            publisher.publish(MediaKind::Video, &vp8(seq, false));
            let got = fast.rx.recv().await.expect("delta");
            assert_eq!(
                (got.packet.sequence_number, got.discontinuity),
                (seq, false)
            );
        }
        assert!(slow.dropped.load(Ordering::Relaxed) >= 10);
        // Once the slow viewer has room again it resumes at a keyframe, marked as a gap.
        while slow.rx.try_recv().is_ok() {}
        publisher.publish(MediaKind::Video, &vp8(2000, false));
        assert!(
            slow.rx.try_recv().is_err(),
            "a delta frame after a drop is held back"
        );
        publisher.publish(MediaKind::Video, &vp8(2001, true));
        let resumed = slow.rx.try_recv().expect("keyframe after the gap");
        assert_eq!(
            (resumed.packet.sequence_number, resumed.discontinuity),
            (2001, true)
        );
        // The recorder ends: viewers see the end, the hub forgets the channel.
        drop(publisher);
        while fast.rx.try_recv().is_ok() {}
        assert!(fast.rx.recv().await.is_none());
        assert!(hub.find("s1").is_none());
        assert!(channel.subscribe().is_none());
    }

    #[tokio::test]
    async fn keyframe_requests_from_many_viewers_are_one_pli_per_interval() {
        let hub = LiveHub::default();
        let mut publisher = hub.open("s1", &meta("r1"), Codec::H264);
        let channel = hub.find("s1").expect("open");
        for _ in 0..5 {
            channel.want_keyframe();
        }
        let t0 = TokioInstant::now();
        publisher.keyframe_wanted().await;
        channel.want_keyframe();
        channel.want_keyframe();
        publisher.keyframe_wanted().await;
        assert!(
            t0.elapsed() >= KEYFRAME_REQUEST_INTERVAL,
            "the second request waits for the interval"
        );
        // The five and the two were one request each: nothing is pending now.
        let pending =
            tokio::time::timeout(Duration::from_millis(500), publisher.keyframe_wanted()).await;
        assert!(pending.is_err());
        // A viewer asking without pause still gets one PLI per interval (the first of these
        // goes at once: the last was more than an interval ago).
        let t1 = TokioInstant::now();
        for _ in 0..3 {
            channel.want_keyframe();
            publisher.keyframe_wanted().await;
        }
        assert!(t1.elapsed() >= KEYFRAME_REQUEST_INTERVAL * 2);
    }
}
