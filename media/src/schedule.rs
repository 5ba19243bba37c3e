//! Playback scheduler: frames of consecutive clips -> paced, continuous RTP (play path).
//!
//! The server plays recordings back to back to a viewer. For each recording it calls
//! [`Scheduler::start_clip`], feeds frames from the demuxer with [`Scheduler::push_frame`] while
//! [`Scheduler::wants_more`] says so, and calls [`Scheduler::end_clip`] at the end of the file.
//! Independently it calls [`Scheduler::poll`] with the current time until it returns `None`,
//! and sleeps until [`Scheduler::next_deadline`].
//!
//! What comes out is one continuous RTP stream per kind:
//!
//! * one SSRC per kind for the whole session, sequence numbers contiguous (wrapping `u16`),
//! * RTP timestamps continuous across clips: the next clip starts one frame duration after the
//!   end of the previous one, and the *same* offset (as a time) is applied to audio and video, so
//!   the two stay in sync,
//! * the payload type follows the clip's codec (it may change at a clip boundary, the SSRC
//!   does not),
//! * every clip starts on a video keyframe (earlier video frames, and audio older than the
//!   keyframe, are dropped),
//! * frames are paced by their recorded timestamps: a frame is due at
//!   `clip start on the wall clock + frame.ts / clock rate`; all of its packets leave together,
//! * except that a gap in a clip's timestamps is shortened to [`MAX_PLAY_GAP_US`] (on both
//!   kinds alike), so a file with a timestamp jump never stalls the viewer for long,
//! * what is buffered ahead is bounded by media time ([`BUFFER_TARGET_US`]) and by size
//!   ([`MAX_QUEUED_BYTES`], [`MAX_QUEUED_FRAMES`]).
//!
//! Internally every position is kept on a 720 kHz "media clock" (the least common multiple of
//! the 90 kHz video and 48 kHz audio clocks), so a clip offset is exact in both RTP clocks.
use std::collections::VecDeque;

use serde::Serialize;
use thiserror::Error;

use crate::container::TrackInfo;
use crate::rtp::RtpPacket;
use crate::{Codec, Frame, MediaKind, packetize};

/// [`Scheduler::wants_more`] is true while less than this much media (µs) is buffered ahead of
/// the play position.
pub const BUFFER_TARGET_US: u64 = 1_000_000;

/// A frame later than this (µs) behind its due time makes the scheduler rebase its clock
/// (the frame goes out now, the following ones are paced from it) and count a stall, instead
/// of bursting everything it is behind.
pub const STALL_THRESHOLD_US: u64 = 500_000;

/// Duration (90 kHz ticks) assumed for the last video frame of a clip when the clip has a
/// single video frame (otherwise the last frame interval is used). 3000 ticks = 1/30 s.
pub const DEFAULT_VIDEO_FRAME_TICKS: u64 = 3_000;

/// Duration (48 kHz ticks) assumed for the last audio frame of a clip: 20 ms of Opus.
pub const AUDIO_FRAME_TICKS: u64 = 960;

/// While a clip with a video track has no keyframe yet, audio is held back (its start depends
/// on the first keyframe) for at most this much audio (µs); after that the clip starts without
/// video and video joins at its first keyframe. The clip then starts at timestamp 0 if no video
/// frame was seen at all, or at the oldest held audio frame if non-keyframes were seen (audio
/// older than them was dropped, as it could never be played).
const AUDIO_HOLD_US: u64 = 1_000_000;

/// [`Scheduler::wants_more`] is false while the clips hold this many bytes of frame data (or
/// more), whatever their media time.
///
/// The read-ahead is otherwise measured in media time only ([`BUFFER_TARGET_US`]): a file whose
/// timestamps barely advance, or repeat, would make the caller push all of it into memory.
/// While the current clip waits for its first keyframe (nothing can be sent yet, so refusing
/// frames would stall the viewer forever), the scheduler keeps wanting frames and drops the
/// oldest held audio (counted in [`SchedulerStats::dropped_frames`]) to stay within the limits.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// [`Scheduler::wants_more`] is false while the clips hold this many frames (or more); see
/// [`MAX_QUEUED_BYTES`].
pub const MAX_QUEUED_FRAMES: usize = 4096;

/// Longest silence (µs) a gap in a clip's timestamps becomes on the wire.
///
/// A frame whose position is more than this after the latest frame seen before it on the same
/// clip (either track; a clip's first frame counts from the clip's timestamp 0) has the excess
/// removed from its position, and so has every later frame of the clip, on both tracks: audio
/// and video stay in sync, and an old or corrupt file, or one with a big timestamp jump (a
/// sender's clock reset), never stalls the viewer for hours.
pub const MAX_PLAY_GAP_US: u64 = 1_000_000;

/// [`MAX_PLAY_GAP_US`] in media-clock units.
const MAX_PLAY_GAP_UNITS: u64 = MAX_PLAY_GAP_US * MEDIA_CLOCK / 1_000_000;

/// Gaps remembered per clip to place late frames (of the other track) from before a gap. A
/// gap is more than [`MAX_PLAY_GAP_US`] of media, and frames are at most a cluster/fragment
/// out of order, so only the last few matter; the limit bounds memory on hostile files.
const MAX_GAP_BREAKS: usize = 16;

/// Ticks per second of the internal media clock: lcm(90 000, 48 000).
const MEDIA_CLOCK: u64 = 720_000;

/// Media-clock units per tick of `codec`'s RTP clock (8 for video, 15 for Opus).
const fn units_per_tick(codec: Codec) -> u64 {
    MEDIA_CLOCK / codec.clock_rate() as u64
}

/// Clip-local media-clock position of `frame` (saturating: timestamps come from files).
fn local_units(frame: &Frame) -> u64 {
    frame.ts.saturating_mul(units_per_tick(frame.codec))
}

/// Media-clock units -> µs (rounded down, saturating at `u64::MAX`).
fn units_to_us(units: u64) -> u64 {
    // 1 unit = 1e6 / 720 000 µs = 25/18 µs. u128 avoids any overflow on absurd inputs.
    u64::try_from(u128::from(units) * 25 / 18).unwrap_or(u64::MAX)
}

/// Configuration of a [`Scheduler`], fixed for one viewer session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// SSRC of the outgoing video stream (all clips).
    pub video_ssrc: u32,
    /// SSRC of the outgoing audio stream (all clips).
    pub audio_ssrc: u32,
    /// Largest RTP payload in bytes (RTP header and SRTP overhead already subtracted); passed
    /// as is to [`packetize::payloads`].
    pub mtu: usize,
    /// Payload type per codec, as negotiated with the viewer (from its offer). The first entry
    /// for a codec wins. A codec missing here cannot be played to this viewer.
    pub payload_types: Vec<(Codec, u8)>,
    /// Sequence number of the first video packet.
    pub initial_video_seq: u16,
    /// Sequence number of the first audio packet.
    pub initial_audio_seq: u16,
    /// RTP timestamp of the first video frame (of the first clip).
    pub initial_video_ts: u32,
    /// RTP timestamp of the first clip's start on the audio clock.
    pub initial_audio_ts: u32,
}

/// Why [`Scheduler::start_clip`] refused a clip. The caller moves on to the next recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Skip {
    /// The viewer did not negotiate this codec (the clip's video codec, or Opus for a clip
    /// that has audio only).
    #[error("viewer does not support codec {0:?}")]
    UnsupportedCodec(Codec),
}

/// What [`Scheduler::poll`] hands to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An RTP packet to send now on the track of `kind`.
    Packet {
        /// Which outgoing track the packet belongs to.
        kind: MediaKind,
        /// The packet (SSRC, sequence number, timestamp, payload type and marker filled in).
        packet: RtpPacket,
    },
    /// Emitted just before the first packet of a clip. `index` counts clips started in this
    /// session, from 0 (a clip played twice gets two indices). A clip with nothing playable
    /// (e.g. no keyframe) still gets `ClipStarted` immediately followed by `ClipEnded`.
    ClipStarted {
        /// The id given to [`Scheduler::start_clip`].
        id: String,
        /// 0-based number of this clip start in the session.
        index: u64,
    },
    /// Emitted right after the last packet of a clip (once [`Scheduler::end_clip`] was called
    /// and everything pushed for it went out).
    ClipEnded {
        /// The id given to [`Scheduler::start_clip`].
        id: String,
    },
}

/// Counters of a [`Scheduler`], for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerStats {
    /// Video RTP packets returned by [`Scheduler::poll`].
    pub video_packets: u64,
    /// Audio RTP packets returned by [`Scheduler::poll`].
    pub audio_packets: u64,
    /// Video frames sent (packetized).
    pub video_frames: u64,
    /// Audio frames sent.
    pub audio_frames: u64,
    /// Frames pushed but never sent: before a clip's first keyframe, audio older than it,
    /// frames of a codec/track the clip or the viewer does not have, frames pushed outside a clip.
    pub dropped_frames: u64,
    /// Times the caller fell more than [`STALL_THRESHOLD_US`] behind and the clock was rebased.
    pub stalls: u64,
    /// Clips refused by [`Scheduler::start_clip`].
    pub skipped_clips: u64,
    /// Clips started (`ClipStarted` events emitted).
    pub clips_started: u64,
}

/// A frame waiting to be sent, with its clip-local position (media-clock units, after gap
/// collapsing: see [`Gaps`]), fixed when it was pushed.
#[derive(Debug)]
struct Queued {
    frame: Frame,
    units: u64,
}

/// Gap collapsing of one clip (see [`MAX_PLAY_GAP_US`]): maps raw clip-local positions
/// (`ts * units_per_tick`) to collapsed ones.
#[derive(Debug)]
struct Gaps {
    /// Largest raw position seen on the clip (starts at 0: the clip's timestamp 0).
    latest: u64,
    /// Largest collapsed position returned so far.
    latest_collapsed: u64,
    /// (raw position where a gap ended, units removed from positions at or after it), in
    /// increasing order of both; at most [`MAX_GAP_BREAKS`].
    breaks: VecDeque<(u64, u64)>,
    /// Units removed from positions before the oldest entry of `breaks`.
    base: u64,
}

impl Gaps {
    fn new() -> Self {
        Gaps {
            latest: 0,
            latest_collapsed: 0,
            breaks: VecDeque::new(),
            base: 0,
        }
    }

    /// Units removed from raw position `raw`.
    fn skip_at(&self, raw: u64) -> u64 {
        self.breaks
            .iter()
            .rev()
            .find(|(at, _)| *at <= raw)
            .map_or(self.base, |&(_, skip)| skip)
    }

    /// The collapsed position of a frame at raw position `raw`, noting a new gap if it starts
    /// more than [`MAX_PLAY_GAP_UNITS`] after everything seen so far.
    ///
    /// The result is never more than [`MAX_PLAY_GAP_UNITS`] after the largest one returned
    /// before: that only changes frames of a corrupt file that go back in time to inside a gap
    /// already collapsed (their raw position is before the gap's end, so its skip does not
    /// apply to them), which would otherwise be placed up to the whole gap later.
    fn collapse(&mut self, raw: u64) -> u64 {
        let gap = raw.saturating_sub(self.latest);
        if gap > MAX_PLAY_GAP_UNITS {
            let total = self
                .breaks
                .back()
                .map_or(self.base, |&(_, skip)| skip)
                .saturating_add(gap - MAX_PLAY_GAP_UNITS);
            self.breaks.push_back((raw, total));
            if self.breaks.len() > MAX_GAP_BREAKS
                && let Some((_, skip)) = self.breaks.pop_front()
            {
                self.base = skip;
            }
        }
        self.latest = self.latest.max(raw);
        let out = raw
            .saturating_sub(self.skip_at(raw))
            .min(self.latest_collapsed.saturating_add(MAX_PLAY_GAP_UNITS));
        self.latest_collapsed = self.latest_collapsed.max(out);
        out
    }
}

/// One clip between `start_clip` and its `ClipEnded`.
#[derive(Debug)]
struct Clip {
    id: String,
    /// Video codec and its payload type; `None`: the clip has no video track.
    video: Option<(Codec, u8)>,
    /// Opus payload type; `None`: audio is dropped (no track, or the viewer lacks Opus).
    audio_pt: Option<u8>,
    /// Session media position (media-clock units) of the clip's origin.
    offset: u64,
    /// Clip-local position (media-clock units, `ts * units_per_tick`, collapsed by `gaps`)
    /// that maps to `offset`: the first keyframe. `None` until known; audio waits meanwhile.
    origin: Option<u64>,
    /// A keyframe was accepted; later video frames are accepted too.
    keyed: bool,
    /// Any video frame was pushed (keyframe or not).
    video_seen: bool,
    video_q: VecDeque<Queued>,
    audio_q: VecDeque<Queued>,
    /// Bytes of frame data in `video_q` and `audio_q`.
    queued_bytes: usize,
    /// Timestamp gaps collapsed so far; every position below is collapsed.
    gaps: Gaps,
    /// Last accepted video frame: (largest position, interval to the previous one), in units.
    last_video: Option<(u64, u64)>,
    /// Largest position (units) of an accepted audio frame.
    last_audio: Option<u64>,
    /// Largest clip-local position (units) of an accepted frame.
    max_units: Option<u64>,
    /// `end_clip` was called; `len` is valid.
    ended: bool,
    /// Session length of the clip (units) from its origin to the end of its last frame.
    len: u64,
    /// `ClipStarted` was emitted.
    started: bool,
}

impl Clip {
    fn new(id: String, video: Option<(Codec, u8)>, audio_pt: Option<u8>, offset: u64) -> Self {
        Clip {
            id,
            video,
            audio_pt,
            offset,
            // Without video there is no keyframe to wait for: the clip starts at ts 0.
            origin: if video.is_none() { Some(0) } else { None },
            keyed: false,
            video_seen: false,
            video_q: VecDeque::new(),
            audio_q: VecDeque::new(),
            queued_bytes: 0,
            gaps: Gaps::new(),
            last_video: None,
            last_audio: None,
            max_units: None,
            ended: false,
            len: 0,
            started: false,
        }
    }

    /// Fixes the origin and drops held audio that is older than it; returns how many.
    fn resolve_origin(&mut self, origin: u64) -> u64 {
        self.origin = Some(origin);
        self.drop_audio_before(origin)
    }

    /// Drops queued audio older than clip-local position `units`; returns how many.
    fn drop_audio_before(&mut self, units: u64) -> u64 {
        let before = self.audio_q.len();
        let mut freed = 0usize;
        self.audio_q.retain(|q| {
            let keep = q.units >= units;
            if !keep {
                freed += q.frame.data.len();
            }
            keep
        });
        self.queued_bytes = self.queued_bytes.saturating_sub(freed);
        (before - self.audio_q.len()) as u64
    }

    /// While the origin is unknown: drops the oldest held audio until the clip holds at most
    /// [`MAX_QUEUED_FRAMES`] frames and [`MAX_QUEUED_BYTES`] bytes (the newest frame is always
    /// kept). Returns how many were dropped.
    fn trim_held_audio(&mut self) -> u64 {
        let mut dropped = 0;
        while self.audio_q.len() > 1
            && (self.audio_q.len() + self.video_q.len() > MAX_QUEUED_FRAMES
                || self.queued_bytes > MAX_QUEUED_BYTES)
        {
            if let Some(q) = self.audio_q.pop_front() {
                self.queued_bytes = self.queued_bytes.saturating_sub(q.frame.data.len());
                dropped += 1;
            }
        }
        dropped
    }

    fn note_accepted(&mut self, units: u64) {
        self.max_units = Some(self.max_units.map_or(units, |m| m.max(units)));
    }

    /// Queues an accepted frame of `kind` at clip-local position `units`.
    fn enqueue(&mut self, kind: MediaKind, frame: Frame, units: u64) {
        self.queued_bytes = self.queued_bytes.saturating_add(frame.data.len());
        let q = Queued { frame, units };
        match kind {
            MediaKind::Video => self.video_q.push_back(q),
            MediaKind::Audio => self.audio_q.push_back(q),
        }
    }

    /// Takes the front frame of `kind`.
    fn dequeue(&mut self, kind: MediaKind) -> Option<Frame> {
        let q = match kind {
            MediaKind::Video => self.video_q.pop_front(),
            MediaKind::Audio => self.audio_q.pop_front(),
        }?;
        self.queued_bytes = self.queued_bytes.saturating_sub(q.frame.data.len());
        Some(q.frame)
    }

    /// Frames queued (both tracks).
    fn queued_frames(&self) -> usize {
        self.video_q.len() + self.audio_q.len()
    }

    /// Session position (units) of a queued frame; the origin must be known and not after it.
    fn position(&self, q: &Queued) -> u64 {
        let local = q.units.saturating_sub(self.origin.unwrap_or(0));
        self.offset.saturating_add(local)
    }

    /// The kind and session position of the next frame to send (earliest position first).
    fn next_frame(&self) -> Option<(MediaKind, u64)> {
        self.origin?;
        let video = self.video_q.front().map(|q| self.position(q));
        let audio = self.audio_q.front().map(|q| self.position(q));
        match (video, audio) {
            (Some(v), Some(a)) if a < v => Some((MediaKind::Audio, a)),
            (Some(v), _) => Some((MediaKind::Video, v)),
            (None, Some(a)) => Some((MediaKind::Audio, a)),
            (None, None) => None,
        }
    }

    /// Ends the clip: fixes the origin if still unknown and computes the clip length.
    /// Returns how many held frames were dropped.
    fn end(&mut self) -> u64 {
        if self.ended {
            return 0;
        }
        self.ended = true;
        let mut dropped = 0;
        if self.origin.is_none() {
            if self.video_seen {
                // Video but never a keyframe: nothing of this clip can start on a keyframe.
                dropped = self.audio_q.len() as u64;
                self.audio_q.clear();
                self.queued_bytes = 0; // no keyframe, so nothing in video_q either
                self.last_audio = None;
                self.max_units = None;
            }
            dropped += self.resolve_origin(0);
        }
        let origin = self.origin.unwrap_or(0);
        let video_end = self
            .last_video
            .map(|(units, interval)| units.saturating_add(interval));
        let audio_end = self
            .last_audio
            .map(|units| units.saturating_add(AUDIO_FRAME_TICKS * units_per_tick(Codec::Opus)));
        self.len = video_end
            .into_iter()
            .chain(audio_end)
            .map(|end| end.saturating_sub(origin))
            .max()
            .unwrap_or(0);
        dropped
    }

    /// Everything pushed has been sent and no more will come.
    fn finished(&self) -> bool {
        self.ended && self.video_q.is_empty() && self.audio_q.is_empty()
    }
}

/// Turns the frames of consecutive clips into paced RTP packets (sans-IO). See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    /// Clips queued for playing, front = playing now, back = the one frames are pushed to.
    clips: VecDeque<Clip>,
    /// Outputs ready to be returned by `poll`.
    out: VecDeque<Output>,
    /// Wall time (µs) of session media position 0; `None` until the first frame goes out.
    wall_base: Option<i128>,
    /// Latest `now_us` seen by `poll`.
    now: u64,
    /// Session position (units) where the next clip starts.
    next_offset: u64,
    video_seq: u16,
    audio_seq: u16,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler for one viewer session. Nothing is sent before the first clip is started
    /// and the first [`poll`](Self::poll) finds a frame: that frame goes out immediately.
    pub fn new(cfg: SchedulerConfig) -> Self {
        Scheduler {
            video_seq: cfg.initial_video_seq,
            audio_seq: cfg.initial_audio_seq,
            cfg,
            clips: VecDeque::new(),
            out: VecDeque::new(),
            wall_base: None,
            now: 0,
            next_offset: 0,
            stats: SchedulerStats::default(),
        }
    }

    /// The session configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.cfg
            .payload_types
            .iter()
            .find(|(c, _)| *c == codec)
            .map(|&(_, pt)| pt)
    }

    /// Starts a new clip; the frames pushed from now on belong to it. It plays right after the
    /// previous clip (which is ended implicitly if [`end_clip`](Self::end_clip) was not called),
    /// one frame duration after that clip's end on both RTP clocks.
    ///
    /// Fails with [`Skip::UnsupportedCodec`] when the viewer lacks the clip's video codec (or
    /// Opus, for a clip with audio only); frames pushed until the next `start_clip` are then
    /// ignored. Audio of a clip with video is silently dropped if the viewer lacks Opus.
    pub fn start_clip(&mut self, id: String, info: &TrackInfo) -> Result<(), Skip> {
        self.end_clip();
        let video = match info.video {
            Some(v) => match self.payload_type(v.codec) {
                Some(pt) if v.codec.kind() == MediaKind::Video => Some((v.codec, pt)),
                _ => return Err(self.skip(v.codec)),
            },
            None => None,
        };
        let audio_pt = match info.audio {
            Some(_) => self.payload_type(Codec::Opus),
            None => None,
        };
        if video.is_none() && info.audio.is_some() && audio_pt.is_none() {
            return Err(self.skip(Codec::Opus));
        }
        self.clips
            .push_back(Clip::new(id, video, audio_pt, self.next_offset));
        Ok(())
    }

    fn skip(&mut self, codec: Codec) -> Skip {
        self.stats.skipped_clips += 1;
        Skip::UnsupportedCodec(codec)
    }

    /// Adds the next frame of the current clip (video in decode order, `ts` relative to the
    /// clip start in the codec clock). Video frames before the clip's first keyframe, audio
    /// older than that keyframe, and frames of a track the clip (or the viewer) lacks are
    /// dropped and counted in [`SchedulerStats::dropped_frames`].
    pub fn push_frame(&mut self, frame: Frame) {
        let dropped = &mut self.stats.dropped_frames;
        let accepted = match self.clips.back_mut() {
            // After a refused `start_clip` the back clip is the previous one, already ended.
            Some(clip) if !clip.ended => match frame.codec.kind() {
                MediaKind::Video => Self::push_video(clip, frame, dropped),
                MediaKind::Audio => Self::push_audio(clip, frame, dropped),
            },
            _ => false,
        };
        if !accepted {
            *dropped += 1;
        }
    }

    /// Queues a video frame; false if it is dropped. Held audio evicted meanwhile is added to
    /// `dropped`.
    fn push_video(clip: &mut Clip, frame: Frame, dropped: &mut u64) -> bool {
        match clip.video {
            Some((codec, _)) if codec == frame.codec => {}
            _ => return false,
        }
        clip.video_seen = true;
        let units = clip.gaps.collapse(local_units(&frame));
        if !clip.keyed {
            // A keyframe before an origin fixed by held audio cannot start the video either.
            if !frame.keyframe || clip.origin.is_some_and(|origin| units < origin) {
                if clip.origin.is_none() {
                    // The keyframe comes later in decode order, so held audio older than this
                    // frame can never be played: drop it now to bound what is held.
                    *dropped += clip.drop_audio_before(units);
                }
                return false;
            }
            clip.keyed = true;
            if clip.origin.is_none() {
                *dropped += clip.resolve_origin(units);
            }
        }
        if units < clip.origin.unwrap_or(0) {
            return false;
        }
        let interval = match clip.last_video {
            Some((prev, _)) if units > prev => units - prev,
            Some((_, interval)) => interval,
            None => DEFAULT_VIDEO_FRAME_TICKS * units_per_tick(frame.codec),
        };
        let last = clip.last_video.map_or(units, |(prev, _)| prev.max(units));
        clip.last_video = Some((last, interval));
        clip.note_accepted(units);
        clip.enqueue(MediaKind::Video, frame, units);
        true
    }

    /// Queues an audio frame; false if it is dropped.
    fn push_audio(clip: &mut Clip, frame: Frame, dropped: &mut u64) -> bool {
        if clip.audio_pt.is_none() {
            return false;
        }
        let units = clip.gaps.collapse(local_units(&frame));
        if let Some(origin) = clip.origin
            && units < origin
        {
            return false;
        }
        clip.last_audio = Some(clip.last_audio.map_or(units, |t| t.max(units)));
        clip.note_accepted(units);
        clip.enqueue(MediaKind::Audio, frame, units);
        if clip.origin.is_none() {
            // Held for a keyframe: at most AUDIO_HOLD_US of audio (and the queue limits), so a
            // clip whose video never starts (or only later) still plays its audio.
            let first = clip.audio_q.front().map_or(units, |q| q.units);
            if units_to_us(units.saturating_sub(first)) >= AUDIO_HOLD_US {
                let origin = if clip.video_seen { first } else { 0 };
                *dropped += clip.resolve_origin(origin);
            } else {
                *dropped += clip.trim_held_audio();
            }
        }
        true
    }

    /// Marks the end of the current clip. Its `ClipEnded` follows its last packet. Calling it
    /// twice, or without a clip, does nothing.
    pub fn end_clip(&mut self) {
        if let Some(clip) = self.clips.back_mut()
            && !clip.ended
        {
            self.stats.dropped_frames += clip.end();
            self.next_offset = clip.offset.saturating_add(clip.len);
        }
    }

    /// True while less than [`BUFFER_TARGET_US`] of media is pushed ahead of the play position
    /// (as of the last [`poll`](Self::poll)), or while the current clip still waits for its
    /// first keyframe. The caller pushes frames (or starts the next clip) while this is true.
    ///
    /// Always false while the clips hold [`MAX_QUEUED_BYTES`] or [`MAX_QUEUED_FRAMES`] (or
    /// more), except when the only clip still waits for its first keyframe: nothing could be
    /// sent to make room, so it keeps wanting frames and drops its oldest held audio instead.
    /// Always true while nothing at all is queued.
    pub fn wants_more(&self) -> bool {
        let Some(back) = self.clips.back() else {
            return true;
        };
        let (bytes, frames) = self.queued();
        if bytes >= MAX_QUEUED_BYTES || frames >= MAX_QUEUED_FRAMES {
            // Only the back clip can lack an origin (earlier clips are ended, which fixes it).
            // With an earlier clip still queued, that clip plays and makes room.
            return back.origin.is_none() && self.clips.len() == 1;
        }
        if frames == 0 {
            // Nothing to send, so no deadline: refusing frames now could only stall. (With
            // frames out of order, a corrupt file can leave the write head far ahead of the
            // play head although everything pushed has been sent.)
            return true;
        }
        let Some(origin) = back.origin else {
            return true;
        };
        let write_head = if back.ended {
            back.offset.saturating_add(back.len)
        } else {
            let ahead = back.max_units.map_or(0, |m| m.saturating_sub(origin));
            back.offset.saturating_add(ahead)
        };
        let play_head_us: i128 = match self.wall_base {
            Some(base) => self.now as i128 - base,
            None => units_to_us(self.clips.front().map_or(0, |c| c.offset)) as i128,
        };
        (units_to_us(write_head) as i128) < play_head_us + BUFFER_TARGET_US as i128
    }

    /// When [`poll`](Self::poll) should be called next (µs, same clock as `now_us`). A value at
    /// or before the last `now_us` means "poll again now". `None`: nothing is due until more
    /// frames are pushed (or a clip is started/ended).
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.out.is_empty() {
            return Some(self.now);
        }
        let clip = self.clips.front()?;
        match clip.next_frame() {
            Some((_, pos)) => match self.wall_base {
                Some(base) => {
                    let due = (base + units_to_us(pos) as i128).max(0);
                    Some(u64::try_from(due).unwrap_or(u64::MAX))
                }
                None => Some(self.now),
            },
            None if clip.finished() => Some(self.now),
            None => None,
        }
    }

    /// Returns the next output due at `now_us`, or `None` when nothing is due yet. Call it in
    /// a loop until `None`, then wait for [`next_deadline`](Self::next_deadline) or for new
    /// frames. `now_us` must not go backwards (a smaller value is treated as the latest one).
    pub fn poll(&mut self, now_us: u64) -> Option<Output> {
        self.now = self.now.max(now_us);
        loop {
            if let Some(out) = self.out.pop_front() {
                if let Output::Packet { kind, .. } = &out {
                    match kind {
                        MediaKind::Video => self.stats.video_packets += 1,
                        MediaKind::Audio => self.stats.audio_packets += 1,
                    }
                }
                return Some(out);
            }
            let clip = self.clips.front()?;
            let Some((kind, pos)) = clip.next_frame() else {
                if !clip.finished() {
                    return None;
                }
                let clip = self.clips.pop_front()?;
                if !clip.started {
                    self.announce(clip.id.clone());
                }
                self.out.push_back(Output::ClipEnded { id: clip.id });
                continue;
            };
            let now = self.now as i128;
            let pos_us = units_to_us(pos) as i128;
            let base = *self.wall_base.get_or_insert(now - pos_us);
            let due = base + pos_us;
            if due > now {
                return None;
            }
            if now - due > STALL_THRESHOLD_US as i128 {
                // The caller fell behind: play this frame now and pace the rest from it.
                self.wall_base = Some(base + (now - due));
                self.stats.stalls += 1;
            }
            self.send_frame(kind, pos);
        }
    }

    fn announce(&mut self, id: String) {
        let index = self.stats.clips_started;
        self.stats.clips_started += 1;
        self.out.push_back(Output::ClipStarted { id, index });
    }

    /// Packetizes the front frame of `kind` of the front clip (at session position `pos`).
    fn send_frame(&mut self, kind: MediaKind, pos: u64) {
        let Some(clip) = self.clips.front_mut() else {
            return;
        };
        let pt = match kind {
            MediaKind::Video => clip.video.map(|(_, pt)| pt),
            MediaKind::Audio => clip.audio_pt,
        };
        let frame = clip.dequeue(kind);
        let (Some(frame), Some(pt)) = (frame, pt) else {
            return;
        };
        if !clip.started {
            clip.started = true;
            let id = clip.id.clone();
            self.announce(id);
        }
        let (ssrc, seq, base_ts) = match kind {
            MediaKind::Video => {
                self.stats.video_frames += 1;
                (
                    self.cfg.video_ssrc,
                    &mut self.video_seq,
                    self.cfg.initial_video_ts,
                )
            }
            MediaKind::Audio => {
                self.stats.audio_frames += 1;
                (
                    self.cfg.audio_ssrc,
                    &mut self.audio_seq,
                    self.cfg.initial_audio_ts,
                )
            }
        };
        // Truncation to u32 is the RTP timestamp wrap.
        let timestamp = base_ts.wrapping_add((pos / units_per_tick(frame.codec)) as u32);
        let payloads = packetize::payloads(frame.codec, &frame.data, self.cfg.mtu);
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.into_iter().enumerate() {
            let packet = RtpPacket {
                payload_type: pt,
                sequence_number: *seq,
                timestamp,
                ssrc,
                marker: kind == MediaKind::Video && i == last,
                payload,
            };
            *seq = seq.wrapping_add(1);
            self.out.push_back(Output::Packet { kind, packet });
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// (bytes of frame data, frames) queued in all clips.
    fn queued(&self) -> (usize, usize) {
        self.clips.iter().fold((0, 0), |(bytes, frames), c| {
            (
                bytes.saturating_add(c.queued_bytes),
                frames + c.queued_frames(),
            )
        })
    }

    /// True when every clip has been played out (`ClipEnded` returned) and nothing is pending.
    pub fn is_idle(&self) -> bool {
        self.clips.is_empty() && self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{AudioTrack, VideoTrack};
    use bytes::Bytes;

    const VSSRC: u32 = 0x1111_1111;
    const ASSRC: u32 = 0x2222_2222;
    const PT_VP8: u8 = 96;
    const PT_H264: u8 = 102;
    const PT_OPUS: u8 = 111;

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            video_ssrc: VSSRC,
            audio_ssrc: ASSRC,
            mtu: 1200,
            payload_types: vec![
                (Codec::Vp8, PT_VP8),
                (Codec::H264, PT_H264),
                (Codec::Opus, PT_OPUS),
            ],
            initial_video_seq: 1000,
            initial_audio_seq: 2000,
            initial_video_ts: 10_000,
            initial_audio_ts: 20_000,
        }
    }

    fn info(video: Option<Codec>, audio: bool) -> TrackInfo {
        TrackInfo {
            video: video.map(|codec| VideoTrack {
                codec,
                width: 640,
                height: 480,
            }),
            audio: audio.then_some(AudioTrack {
                channels: 2,
                sample_rate: 48_000,
            }),
        }
    }

    /// Frame bytes of about `size` whose last byte is `tag`, so the last payload byte of a
    /// frame's last packet identifies the frame whatever the packetizer prepends.
    fn frame_data(codec: Codec, key: bool, tag: u8, size: usize) -> Bytes {
        let mut d: Vec<u8> = match codec {
            Codec::Vp8 => vec![if key { 0x10 } else { 0x11 }, 0x02, 0x00],
            Codec::H264 if key => vec![
                0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40, // SPS
                0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, // PPS
                0, 0, 0, 1, 0x65, 0x88, // IDR slice
            ],
            Codec::H264 => vec![0, 0, 0, 1, 0x41, 0x9a],
            Codec::Opus => vec![0xfc],
        };
        let len = d.len().max(size.saturating_sub(1));
        d.resize(len, 0x55);
        d.push(tag);
        Bytes::from(d)
    }

    fn tag_of(i: usize) -> u8 {
        (i % 250) as u8 + 1
    }

    fn video(codec: Codec, ts: &[u64], key: impl Fn(usize) -> bool, size: usize) -> Vec<Frame> {
        ts.iter()
            .enumerate()
            .map(|(i, &ts)| Frame {
                codec,
                ts,
                keyframe: key(i),
                data: frame_data(codec, key(i), tag_of(i), size),
            })
            .collect()
    }

    fn audio(n: usize) -> Vec<Frame> {
        (0..n)
            .map(|i| Frame {
                codec: Codec::Opus,
                ts: i as u64 * AUDIO_FRAME_TICKS,
                keyframe: true,
                data: frame_data(Codec::Opus, true, tag_of(i), 60),
            })
            .collect()
    }

    /// Timestamps of `n` frames `interval` ticks apart.
    fn cfr(n: usize, interval: u64) -> Vec<u64> {
        (0..n as u64).map(|i| i * interval).collect()
    }

    fn first_key(i: usize) -> bool {
        i == 0
    }

    #[derive(Clone, Debug)]
    enum Step {
        Start(String, TrackInfo),
        Push(Frame),
        End,
    }

    /// A clip as the caller feeds it: start, frames merged by time (audio first on ties, so
    /// audio regularly arrives before the video frame it belongs with), end.
    fn clip_steps(id: &str, info: TrackInfo, video: Vec<Frame>, audio: Vec<Frame>) -> Vec<Step> {
        let mut frames: Vec<(u64, u8, Frame)> = audio
            .into_iter()
            .map(|f| (f.ts * units_per_tick(f.codec), 0, f))
            .chain(
                video
                    .into_iter()
                    .map(|f| (f.ts * units_per_tick(f.codec), 1, f)),
            )
            .collect();
        frames.sort_by_key(|(units, order, _)| (*units, *order));
        let mut steps = vec![Step::Start(id.to_string(), info)];
        steps.extend(frames.into_iter().map(|(_, _, f)| Step::Push(f)));
        steps.push(Step::End);
        steps
    }

    /// A simple VP8 (or other codec) + Opus clip at a constant frame interval.
    fn av_clip(id: &str, codec: Codec, n_video: usize, interval: u64, n_audio: usize) -> Vec<Step> {
        clip_steps(
            id,
            info(Some(codec), n_audio > 0),
            video(codec, &cfr(n_video, interval), first_key, 100),
            audio(n_audio),
        )
    }

    struct Run {
        log: Vec<(u64, Output)>,
        skips: Vec<(String, Skip)>,
        sched: Scheduler,
    }

    /// Drives a scheduler with a fake clock that jumps from deadline to deadline, feeding
    /// steps whenever `wants_more` says so, until everything has been played out.
    fn run(cfg: SchedulerConfig, steps: Vec<Step>, start_us: u64) -> Run {
        let mut steps: VecDeque<Step> = steps.into();
        let mut sched = Scheduler::new(cfg);
        let mut log = Vec::new();
        let mut skips = Vec::new();
        let mut now = start_us;
        for _ in 0..1_000_000 {
            while sched.wants_more() {
                match steps.pop_front() {
                    Some(Step::Start(id, info)) => {
                        if let Err(e) = sched.start_clip(id.clone(), &info) {
                            skips.push((id, e));
                        }
                    }
                    Some(Step::Push(f)) => sched.push_frame(f),
                    Some(Step::End) => sched.end_clip(),
                    None => break,
                }
            }
            while let Some(out) = sched.poll(now) {
                log.push((now, out));
            }
            if steps.is_empty() && sched.is_idle() {
                return Run { log, skips, sched };
            }
            match sched.next_deadline() {
                Some(d) => {
                    assert!(d > now, "deadline {d} <= now {now} but poll returned None");
                    now = d;
                }
                None => assert!(
                    sched.wants_more() && !steps.is_empty(),
                    "stuck at {now}: no deadline, wants_more={}",
                    sched.wants_more()
                ),
            }
        }
        panic!("run did not finish");
    }

    /// One sent frame, reassembled from the log.
    #[derive(Clone, Debug)]
    struct Sent {
        at: u64,
        kind: MediaKind,
        clip: String,
        ts: u32,
        pt: u8,
        tag: u8,
    }

    /// Reassembles frames (video: up to the marker; audio: one packet each) and checks the
    /// invariants every test relies on: packets only inside ClipStarted/ClipEnded, all packets
    /// of a frame at the same time with the same timestamp/PT/SSRC, contiguous sequence numbers
    /// from the configured initial ones, one SSRC per kind.
    fn sent_frames(run: &Run) -> Vec<Sent> {
        let cfg = run.sched.config();
        let mut frames = Vec::new();
        let mut current: Option<String> = None;
        let mut open_video: Option<(Sent, u32)> = None;
        let mut next_seq = [cfg.initial_video_seq, cfg.initial_audio_seq];
        for (at, out) in &run.log {
            match out {
                Output::ClipStarted { id, .. } => {
                    assert!(current.is_none(), "ClipStarted {id} inside another clip");
                    current = Some(id.clone());
                }
                Output::ClipEnded { id } => {
                    assert_eq!(current.as_deref(), Some(id.as_str()), "ClipEnded mismatch");
                    assert!(open_video.is_none(), "clip ended inside a video frame");
                    current = None;
                }
                Output::Packet { kind, packet } => {
                    let clip = current.clone().expect("packet outside a clip");
                    let (idx, ssrc) = match kind {
                        MediaKind::Video => (0, cfg.video_ssrc),
                        MediaKind::Audio => (1, cfg.audio_ssrc),
                    };
                    assert_eq!(packet.ssrc, ssrc, "{kind:?} SSRC");
                    assert_eq!(packet.sequence_number, next_seq[idx], "{kind:?} seq gap");
                    next_seq[idx] = next_seq[idx].wrapping_add(1);
                    let sent = Sent {
                        at: *at,
                        kind: *kind,
                        clip,
                        ts: packet.timestamp,
                        pt: packet.payload_type,
                        tag: packet.payload.last().copied().unwrap_or(0),
                    };
                    match kind {
                        MediaKind::Audio => {
                            assert!(open_video.is_none(), "audio inside a video frame");
                            assert!(!packet.marker);
                            frames.push(sent);
                        }
                        MediaKind::Video => {
                            if let Some((first, _)) = &open_video {
                                assert_eq!(
                                    (first.at, first.ts, first.pt),
                                    (sent.at, sent.ts, sent.pt)
                                );
                            }
                            open_video.get_or_insert((sent.clone(), 0)).1 += 1;
                            if packet.marker {
                                let (mut first, _) = open_video.take().unwrap();
                                first.tag = sent.tag;
                                frames.push(first);
                            }
                        }
                    }
                }
            }
        }
        assert!(current.is_none(), "last clip not ended");
        assert!(open_video.is_none(), "video frame without marker");
        frames
    }

    fn of_kind(frames: &[Sent], kind: MediaKind) -> Vec<Sent> {
        frames.iter().filter(|f| f.kind == kind).cloned().collect()
    }

    fn events(run: &Run) -> Vec<Output> {
        run.log
            .iter()
            .filter(|(_, o)| !matches!(o, Output::Packet { .. }))
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn started(id: &str, index: u64) -> Output {
        Output::ClipStarted {
            id: id.to_string(),
            index,
        }
    }

    fn ended(id: &str) -> Output {
        Output::ClipEnded { id: id.to_string() }
    }

    /// RTP timestamps strictly increase (mod 2^32) from one frame to the next.
    fn assert_increasing(frames: &[Sent]) {
        for w in frames.windows(2) {
            let d = w[1].ts.wrapping_sub(w[0].ts) as i32;
            assert!(d > 0, "timestamp not increasing: {:?} -> {:?}", w[0], w[1]);
        }
    }

    /// Microseconds of `ticks` at `clock` Hz.
    fn us(ticks: u64, clock: u64) -> u64 {
        ticks * 1_000_000 / clock
    }

    #[test]
    fn continuity_across_three_clips() {
        // (name, video seq, audio seq, video ts, audio ts, video frame size)
        let cases: &[(&str, u16, u16, u32, u32, usize)] = &[
            ("plain", 0, 0, 0, 0, 100),
            ("seq wrap", 65_500, 65_530, 1_000, 2_000, 100),
            ("seq wrap, multi-packet frames", 65_000, 65_530, 7, 9, 3_000),
            (
                "ts wrap",
                10,
                20,
                u32::MAX - 100_000,
                u32::MAX - 50_000,
                100,
            ),
        ];
        for &(name, vseq, aseq, vts, ats, size) in cases {
            let cfg = SchedulerConfig {
                initial_video_seq: vseq,
                initial_audio_seq: aseq,
                initial_video_ts: vts,
                initial_audio_ts: ats,
                ..config()
            };
            let vp8 = |n, interval| video(Codec::Vp8, &cfr(n, interval), first_key, size);
            let mut steps = clip_steps("a", info(Some(Codec::Vp8), true), vp8(30, 3000), audio(50));
            // Audio longer than video: the clip ends with its audio.
            steps.extend(clip_steps(
                "b",
                info(Some(Codec::Vp8), true),
                vp8(20, 3000),
                audio(50),
            ));
            steps.extend(clip_steps(
                "c",
                info(Some(Codec::Vp8), true),
                vp8(45, 3600),
                audio(40),
            ));
            let run = run(cfg, steps, 0);
            let frames = sent_frames(&run);
            let v = of_kind(&frames, MediaKind::Video);
            let a = of_kind(&frames, MediaKind::Audio);
            assert_eq!((v.len(), a.len()), (95, 140), "{name}");
            assert_increasing(&v);
            assert_increasing(&a);
            // Clip offsets: a at 0 s, b at 1 s (30 frames * 3000), c at 2 s (b's audio: 50 * 960).
            for (clip, offset_s) in [("a", 0), ("b", 1), ("c", 2)] {
                let first_v = v.iter().find(|f| f.clip == clip).unwrap();
                let first_a = a.iter().find(|f| f.clip == clip).unwrap();
                assert_eq!(
                    first_v.ts,
                    vts.wrapping_add(offset_s * 90_000),
                    "{name} {clip} video"
                );
                assert_eq!(
                    first_a.ts,
                    ats.wrapping_add(offset_s * 48_000),
                    "{name} {clip} audio"
                );
            }
            // Boundary a -> b: one video frame interval / one audio frame after the last frame.
            assert_eq!(v[30].ts.wrapping_sub(v[29].ts), 3000, "{name}");
            assert_eq!(a[50].ts.wrapping_sub(a[49].ts), 960, "{name}");
            assert!(v.iter().all(|f| f.pt == PT_VP8) && a.iter().all(|f| f.pt == PT_OPUS));
            let stats = run.sched.stats();
            assert_eq!(
                (stats.video_frames, stats.audio_frames),
                (95, 140),
                "{name}"
            );
            let packets = |kind| {
                run.log
                    .iter()
                    .filter(|(_, o)| matches!(o, Output::Packet { kind: k, .. } if *k == kind))
                    .count() as u64
            };
            assert_eq!(stats.video_packets, packets(MediaKind::Video), "{name}");
            assert_eq!(stats.audio_packets, packets(MediaKind::Audio), "{name}");
            if size > 1200 {
                assert!(
                    stats.video_packets > stats.video_frames,
                    "{name}: multi-packet frames"
                );
            }
        }
    }

    #[test]
    fn pacing_follows_frame_timestamps() {
        // Variable frame rate: intervals cycle through these (90 kHz ticks).
        let vfr: Vec<u64> = {
            let pattern = [2000, 3000, 4500, 6000, 1500, 3000];
            let mut ts = vec![0];
            let mut i = 0;
            while *ts.last().unwrap() + pattern[i % pattern.len()] < 450_000 {
                ts.push(ts.last().unwrap() + pattern[i % pattern.len()]);
                i += 1;
            }
            ts
        };
        // (name, video timestamps, frame interval used for the ± tolerance)
        let cases: Vec<(&str, Vec<u64>, u64)> = vec![
            ("30 fps", cfr(150, 3000), 3000),
            ("25 fps", cfr(125, 3600), 3600),
            ("variable", vfr, 6000),
        ];
        for (name, ts, tolerance) in cases {
            let start = 1_234_567;
            let steps = clip_steps(
                "clip",
                info(Some(Codec::Vp8), true),
                video(Codec::Vp8, &ts, first_key, 100),
                audio(250), // 5 s
            );
            let run = run(config(), steps, start);
            let frames = sent_frames(&run);
            let v = of_kind(&frames, MediaKind::Video);
            let a = of_kind(&frames, MediaKind::Audio);
            assert_eq!(v.len(), ts.len(), "{name}");
            assert_eq!(v[0].at, start, "{name}: first frame at the first poll");
            for (f, &t) in v.iter().zip(&ts) {
                let due = start + us(t, 90_000);
                assert!(
                    f.at.abs_diff(due) <= 1,
                    "{name}: video ts {t} sent at {} not {due}",
                    f.at
                );
            }
            for (i, f) in a.iter().enumerate() {
                let due = start + us(i as u64 * 960, 48_000);
                assert!(
                    f.at.abs_diff(due) <= 1,
                    "{name}: audio {i} sent at {} not {due}",
                    f.at
                );
            }
            let last = v.last().unwrap().at - start;
            assert!(
                last.abs_diff(5_000_000) <= us(tolerance, 90_000) + 1,
                "{name}: last frame at {last} µs"
            );
        }
    }

    #[test]
    fn av_offset_preserved_across_clips() {
        let vp8 = |ts: &[u64], key: &dyn Fn(usize) -> bool| video(Codec::Vp8, ts, key, 100);
        let mut steps = Vec::new();
        // Video 1.0333 s, audio 0.6 s: the next clip starts after the video (93 000 ticks,
        // not a whole number of 48 kHz ticks).
        steps.extend(clip_steps(
            "a",
            info(Some(Codec::Vp8), true),
            vp8(&cfr(31, 3001), &first_key),
            audio(30),
        ));
        // Audio longer than video.
        steps.extend(clip_steps(
            "b",
            info(Some(Codec::Vp8), true),
            vp8(&cfr(10, 3000), &first_key),
            audio(75),
        ));
        // First keyframe at 0.1 s: audio before it is dropped, the rest stays in sync.
        steps.extend(clip_steps(
            "c",
            info(Some(Codec::Vp8), true),
            vp8(&cfr(30, 3000), &|i| i == 3),
            audio(50),
        ));
        steps.extend(clip_steps(
            "d",
            info(Some(Codec::Vp8), true),
            vp8(&cfr(30, 3000), &first_key),
            audio(50),
        ));
        let start = 5_000;
        let cfg = config();
        let run = run(cfg.clone(), steps, start);
        let frames = sent_frames(&run);
        // Every frame of either kind goes out when its RTP time (from the initial timestamp)
        // says: one timeline for both kinds, across all clips.
        for f in &frames {
            let (base, clock) = match f.kind {
                MediaKind::Video => (cfg.initial_video_ts, 90_000),
                MediaKind::Audio => (cfg.initial_audio_ts, 48_000),
            };
            let media_us = us(f.ts.wrapping_sub(base) as u64, clock);
            assert!(
                (f.at - start).abs_diff(media_us) <= 21,
                "{f:?}: sent at {} but RTP time says {media_us}",
                f.at - start
            );
        }
        // Each clip's first audio and video frame share the same instant.
        for clip in ["a", "b", "c", "d"] {
            let fv = frames
                .iter()
                .find(|f| f.clip == clip && f.kind == MediaKind::Video)
                .unwrap();
            let fa = frames
                .iter()
                .find(|f| f.clip == clip && f.kind == MediaKind::Audio)
                .unwrap();
            assert_eq!(fv.at, fa.at, "clip {clip}");
            let v_us = us(fv.ts.wrapping_sub(cfg.initial_video_ts) as u64, 90_000);
            let a_us = us(fa.ts.wrapping_sub(cfg.initial_audio_ts) as u64, 48_000);
            assert!(
                v_us.abs_diff(a_us) <= 21,
                "clip {clip}: video {v_us} µs, audio {a_us} µs"
            );
        }
        // Offsets: b at 31 * 3001 ticks, c at b + 75 * 960 audio ticks, d at c + 27 frames.
        let first_ts = |clip: &str, kind| {
            frames
                .iter()
                .find(|f| f.clip == clip && f.kind == kind)
                .unwrap()
                .ts
        };
        assert_eq!(
            first_ts("b", MediaKind::Video) - cfg.initial_video_ts,
            93_031
        );
        assert_eq!(
            first_ts("c", MediaKind::Video) - first_ts("b", MediaKind::Video),
            135_000
        );
        assert_eq!(
            first_ts("c", MediaKind::Audio) - first_ts("b", MediaKind::Audio),
            72_000
        );
        assert_eq!(
            first_ts("d", MediaKind::Video) - first_ts("c", MediaKind::Video),
            27 * 3000
        );
    }

    #[test]
    fn loop_same_clip_twice() {
        let mut steps = av_clip("rec-1", Codec::Vp8, 30, 3000, 50);
        steps.extend(av_clip("rec-1", Codec::Vp8, 30, 3000, 50));
        let cfg = config();
        let run = run(cfg.clone(), steps, 0);
        assert_eq!(
            events(&run),
            [
                started("rec-1", 0),
                ended("rec-1"),
                started("rec-1", 1),
                ended("rec-1")
            ]
        );
        let frames = sent_frames(&run);
        let v = of_kind(&frames, MediaKind::Video);
        let a = of_kind(&frames, MediaKind::Audio);
        assert_eq!((v.len(), a.len()), (60, 100));
        for i in 0..30 {
            assert_eq!(v[i + 30].ts - v[i].ts, 90_000, "video frame {i}");
            assert_eq!(v[i + 30].at - v[i].at, 1_000_000, "video frame {i}");
            assert_eq!(v[i + 30].tag, v[i].tag);
        }
        for i in 0..50 {
            assert_eq!(a[i + 50].ts - a[i].ts, 48_000, "audio frame {i}");
        }
        assert_increasing(&v);
        assert_increasing(&a);
    }

    #[test]
    fn start_clip_skips_unsupported_codecs() {
        let vp8_opus = vec![(Codec::Vp8, PT_VP8), (Codec::Opus, PT_OPUS)];
        let h264_only = vec![(Codec::H264, PT_H264)];
        // (viewer payload types, clip video, clip audio, expected)
        let cases = [
            (
                vp8_opus.clone(),
                Some(Codec::H264),
                true,
                Err(Skip::UnsupportedCodec(Codec::H264)),
            ),
            (vp8_opus.clone(), Some(Codec::Vp8), true, Ok(())),
            (vp8_opus.clone(), None, true, Ok(())),
            (
                h264_only.clone(),
                Some(Codec::Vp8),
                false,
                Err(Skip::UnsupportedCodec(Codec::Vp8)),
            ),
            (
                h264_only.clone(),
                None,
                true,
                Err(Skip::UnsupportedCodec(Codec::Opus)),
            ),
            // Video plays, the audio is dropped.
            (h264_only.clone(), Some(Codec::H264), true, Ok(())),
        ];
        for (pts, vcodec, has_audio, expected) in cases {
            let mut s = Scheduler::new(SchedulerConfig {
                payload_types: pts.clone(),
                ..config()
            });
            let got = s.start_clip("x".into(), &info(vcodec, has_audio));
            assert_eq!(got, expected, "{pts:?} {vcodec:?} audio={has_audio}");
            assert_eq!(s.stats().skipped_clips, u64::from(expected.is_err()));
        }
    }

    #[test]
    fn skipped_clip_leaves_no_trace() {
        let cfg = SchedulerConfig {
            payload_types: vec![(Codec::Vp8, PT_VP8), (Codec::Opus, PT_OPUS)],
            ..config()
        };
        let mut steps = av_clip("a", Codec::Vp8, 30, 3000, 50);
        // The caller (wrongly) pushes the skipped clip's frames anyway: they are dropped.
        steps.extend(av_clip("h264", Codec::H264, 30, 3000, 50));
        steps.extend(av_clip("c", Codec::Vp8, 30, 3000, 50));
        let run = run(cfg.clone(), steps, 0);
        assert_eq!(
            run.skips,
            [("h264".to_string(), Skip::UnsupportedCodec(Codec::H264))]
        );
        assert_eq!(
            events(&run),
            [started("a", 0), ended("a"), started("c", 1), ended("c")]
        );
        let frames = sent_frames(&run);
        let v = of_kind(&frames, MediaKind::Video);
        assert_eq!(v.len(), 60);
        assert!(v.iter().all(|f| f.pt == PT_VP8));
        // c follows a directly.
        assert_eq!(v[30].ts - v[29].ts, 3000);
        assert!((v[30].at - v[29].at).abs_diff(33_333) <= 1);
        let stats = run.sched.stats();
        assert_eq!((stats.skipped_clips, stats.dropped_frames), (1, 80));
    }

    #[test]
    fn codec_switch_changes_payload_type_at_boundary() {
        for (first, second) in [(Codec::Vp8, Codec::H264), (Codec::H264, Codec::Vp8)] {
            let pt = |c| if c == Codec::Vp8 { PT_VP8 } else { PT_H264 };
            let mut steps = av_clip("one", first, 30, 3000, 50);
            steps.extend(av_clip("two", second, 30, 3000, 50));
            let run = run(config(), steps, 0);
            // sent_frames checks SSRC and sequence continuity across the switch.
            let frames = sent_frames(&run);
            let v = of_kind(&frames, MediaKind::Video);
            assert_eq!(v.len(), 60);
            for f in &v {
                let codec = if f.clip == "one" { first } else { second };
                assert_eq!(f.pt, pt(codec), "{first:?} -> {second:?}: {f:?}");
            }
            // The first packet after ClipStarted{two} already carries the new PT.
            let pos = run
                .log
                .iter()
                .position(|(_, o)| *o == started("two", 1))
                .unwrap();
            let next_video = run.log[pos..].iter().find_map(|(_, o)| match o {
                Output::Packet {
                    kind: MediaKind::Video,
                    packet,
                } => Some(packet.clone()),
                _ => None,
            });
            assert_eq!(next_video.unwrap().payload_type, pt(second));
            assert_eq!(v[30].ts - v[29].ts, 3000);
            assert!(
                of_kind(&frames, MediaKind::Audio)
                    .iter()
                    .all(|f| f.pt == PT_OPUS)
            );
        }
    }

    #[test]
    fn clip_starts_on_keyframe() {
        // (codec, leading non-keyframes, first audio frame expected to be sent)
        let cases = [
            (Codec::Vp8, 0, 0),
            (Codec::Vp8, 3, 5), // keyframe at 9000 ticks = 0.1 s = audio frame 5
            (Codec::H264, 3, 5),
            (Codec::H264, 4, 7), // keyframe at 0.1333 s: audio 7 (0.14 s) is the first not older
        ];
        for (codec, lead, first_audio) in cases {
            let key = |i: usize| i == lead || i == lead + 15;
            let clip = |id| {
                clip_steps(
                    id,
                    info(Some(codec), true),
                    video(codec, &cfr(30, 3000), key, 500),
                    audio(50),
                )
            };
            let mut steps = clip("a");
            steps.extend(clip("b"));
            let start = 77;
            let cfg = config();
            let run = run(cfg.clone(), steps, start);
            let frames = sent_frames(&run);
            for id in ["a", "b"] {
                let v: Vec<_> = frames
                    .iter()
                    .filter(|f| f.clip == id && f.kind == MediaKind::Video)
                    .collect();
                let a: Vec<_> = frames
                    .iter()
                    .filter(|f| f.clip == id && f.kind == MediaKind::Audio)
                    .collect();
                assert_eq!(v.len(), 30 - lead, "{codec:?} {lead} {id}");
                assert_eq!(
                    v[0].tag,
                    tag_of(lead),
                    "{codec:?} {lead} {id}: first video frame is the keyframe"
                );
                assert_eq!(
                    a[0].tag,
                    tag_of(first_audio),
                    "{codec:?} {lead} {id}: first audio"
                );
                assert_eq!(a.len(), 50 - first_audio);
                // The keyframe is the clip's time zero: first clip at the first poll.
                if id == "a" {
                    assert_eq!(v[0].at, start);
                    assert_eq!(v[0].ts, cfg.initial_video_ts);
                }
                // Audio keeps its distance to the keyframe.
                let key_s = lead as f64 * 3000.0 / 90_000.0;
                let audio_s = first_audio as f64 * 960.0 / 48_000.0;
                let expect_us = ((audio_s - key_s) * 1e6) as u64;
                assert!(
                    (a[0].at - v[0].at).abs_diff(expect_us) <= 1,
                    "{codec:?} {lead} {id}"
                );
            }
            let dropped = 2 * (lead + first_audio) as u64;
            assert_eq!(
                run.sched.stats().dropped_frames,
                dropped,
                "{codec:?} {lead}"
            );
        }
    }

    #[test]
    fn stall_rebases_the_clock() {
        // (gap after the first batch's last frame, stalls, frames sent at the resume time)
        let cases = [(2_000_000, 1, 1), (200_000, 0, 6), (600_000, 1, 1)];
        for (gap, stalls, burst) in cases {
            let mut s = Scheduler::new(config());
            s.start_clip("a".into(), &info(Some(Codec::Vp8), false))
                .unwrap();
            let frames = video(Codec::Vp8, &cfr(20, 3000), first_key, 100);
            for f in &frames[..10] {
                s.push_frame(f.clone());
            }
            let mut now = 0;
            let mut sent = Vec::new();
            loop {
                while let Some(out) = s.poll(now) {
                    if let Output::Packet { packet, .. } = out {
                        sent.push((now, packet.timestamp));
                    }
                }
                match s.next_deadline() {
                    Some(d) => now = d,
                    None => break,
                }
            }
            assert_eq!(sent.len(), 10);
            assert!(s.wants_more(), "drained buffer wants more");
            // Frames 10.. are pushed late.
            let resume = 300_000 + gap;
            for f in &frames[10..] {
                s.push_frame(f.clone());
            }
            s.end_clip();
            now = resume;
            loop {
                while let Some(out) = s.poll(now) {
                    if let Output::Packet { packet, .. } = out {
                        sent.push((now, packet.timestamp));
                    }
                }
                match s.next_deadline() {
                    Some(d) => {
                        assert!(d > now);
                        now = d;
                    }
                    None => break,
                }
            }
            assert_eq!(s.stats().stalls, stalls, "gap {gap}");
            assert_eq!(sent.len(), 20, "gap {gap}");
            assert_eq!(
                sent.iter().filter(|(at, _)| *at == resume).count(),
                burst,
                "gap {gap}"
            );
            // After the resume, frames are paced again (no further burst), timestamps continue.
            for w in sent[10 + burst - 1..].windows(2) {
                assert!(w[1].0 - w[0].0 >= 33_333, "gap {gap}: {w:?}");
                assert_eq!(w[1].1 - w[0].1, 3000);
            }
            let last = sent.last().unwrap().0;
            let expected_last = if stalls == 1 {
                resume + 9 * 33_333
            } else {
                633_333
            };
            assert!(
                last.abs_diff(expected_last) <= 10,
                "gap {gap}: last at {last}"
            );
        }
    }

    #[test]
    fn events_order() {
        let mut steps = av_clip("a", Codec::Vp8, 10, 3000, 10);
        steps.extend(av_clip("b", Codec::H264, 10, 3000, 10));
        let run = run(config(), steps, 0);
        assert_eq!(
            events(&run),
            [started("a", 0), ended("a"), started("b", 1), ended("b")]
        );
        // First output is ClipStarted, last is ClipEnded; each ClipEnded comes at the same
        // time as the clip's last packet, before the next clip's first packet.
        assert_eq!(run.log.first().unwrap().1, started("a", 0));
        assert_eq!(run.log.last().unwrap().1, ended("b"));
        let ended_a = run.log.iter().position(|(_, o)| *o == ended("a")).unwrap();
        assert!(matches!(run.log[ended_a - 1].1, Output::Packet { .. }));
        assert_eq!(run.log[ended_a - 1].0, run.log[ended_a].0);
        assert_eq!(run.log[ended_a + 1].1, started("b", 1));
        assert!(matches!(run.log[ended_a + 2].1, Output::Packet { .. }));
        assert!(
            run.log[ended_a + 1].0 > run.log[ended_a].0,
            "b starts one frame later"
        );
        // sent_frames asserts no packet lies outside ClipStarted..ClipEnded.
        let frames = sent_frames(&run);
        assert_eq!(frames.iter().filter(|f| f.clip == "a").count(), 20);
        assert_eq!(frames.iter().filter(|f| f.clip == "b").count(), 20);
        assert_eq!(run.sched.stats().clips_started, 2);
    }

    #[test]
    fn wants_more_keeps_about_one_second_buffered() {
        let mut s = Scheduler::new(config());
        assert!(s.wants_more());
        s.start_clip("a".into(), &info(Some(Codec::Vp8), false))
            .unwrap();
        let frames = video(Codec::Vp8, &cfr(300, 3000), |i| i % 60 == 0, 100);
        let mut frames = frames.into_iter();
        let mut pushed = 0;
        while s.wants_more() {
            s.push_frame(frames.next().unwrap());
            pushed += 1;
        }
        assert_eq!(pushed, 31, "0 .. 1 s inclusive before playing");
        assert_eq!(s.next_deadline(), Some(0), "first frame is due immediately");
        while s.poll(0).is_some() {}
        assert!(!s.wants_more());
        while s.poll(500_000).is_some() {}
        assert!(s.wants_more());
        while s.wants_more() {
            s.push_frame(frames.next().unwrap());
            pushed += 1;
        }
        assert_eq!(pushed, 46, "up to 1.5 s");
        assert_eq!(s.next_deadline(), Some(533_333));
    }

    #[test]
    fn waiting_for_a_keyframe_keeps_wanting_frames() {
        let mut s = Scheduler::new(config());
        s.start_clip("a".into(), &info(Some(Codec::Vp8), true))
            .unwrap();
        // 3 s of non-keyframes (with audio): nothing is playable, the caller must keep pushing.
        let ts = cfr(120, 3000);
        for (i, f) in video(Codec::Vp8, &ts, |i| i == 90, 100)
            .into_iter()
            .enumerate()
        {
            if i == 90 {
                assert!(s.wants_more());
                assert_eq!(s.next_deadline(), None);
                assert!(s.poll(0).is_none());
            }
            for a in audio(150)
                .into_iter()
                .filter(|a| a.ts * 15 / 8 / 3000 == i as u64)
            {
                s.push_frame(a);
            }
            s.push_frame(f);
        }
        assert_eq!(s.poll(0), Some(started("a", 0)));
        match s.poll(0) {
            Some(Output::Packet {
                kind: MediaKind::Video,
                packet,
            }) => {
                assert_eq!(packet.payload.last(), Some(&tag_of(90)));
            }
            other => panic!("expected the keyframe, got {other:?}"),
        }
    }

    #[test]
    fn clip_without_playable_frames_and_audio_only_clips() {
        let mut steps = av_clip("a", Codec::Vp8, 30, 3000, 50);
        // Only non-keyframes: nothing playable, the timeline does not move.
        steps.extend(clip_steps(
            "no-key",
            info(Some(Codec::Vp8), true),
            video(Codec::Vp8, &cfr(30, 3000), |_| false, 100),
            audio(50),
        ));
        // Audio only, 0.5 s: video timestamps still advance by it.
        steps.extend(clip_steps("voice", info(None, true), vec![], audio(25)));
        steps.extend(av_clip("d", Codec::Vp8, 30, 3000, 50));
        let run = run(config(), steps, 0);
        assert_eq!(
            events(&run),
            [
                started("a", 0),
                ended("a"),
                started("no-key", 1),
                ended("no-key"),
                started("voice", 2),
                ended("voice"),
                started("d", 3),
                ended("d"),
            ]
        );
        let frames = sent_frames(&run);
        let v = of_kind(&frames, MediaKind::Video);
        let a = of_kind(&frames, MediaKind::Audio);
        assert_eq!((v.len(), a.len()), (60, 125));
        assert_eq!(v[30].ts - v[29].ts, 3000 + 45_000);
        assert_eq!(a[50].ts - a[49].ts, 960);
        assert_eq!(a[75].ts - a[74].ts, 960);
        assert_eq!(run.sched.stats().dropped_frames, 80);
    }

    #[test]
    fn audio_without_any_video_does_not_wait_forever() {
        // A clip that declares video but whose video only starts at 1.5 s: after holding ~1 s
        // of audio the clip starts at 0 and video joins at its keyframe, in sync.
        let ts: Vec<u64> = (45..90).map(|i| i * 3000).collect();
        let steps = clip_steps(
            "late-video",
            info(Some(Codec::Vp8), true),
            video(Codec::Vp8, &ts, first_key, 100),
            audio(150),
        );
        let run = run(config(), steps, 0);
        let frames = sent_frames(&run);
        let v = of_kind(&frames, MediaKind::Video);
        let a = of_kind(&frames, MediaKind::Audio);
        assert_eq!((v.len(), a.len()), (45, 150));
        assert_eq!(a[0].at, 0);
        assert_eq!(v[0].at, 1_500_000);
        assert_eq!(v[0].ts - config().initial_video_ts, 135_000);
    }

    /// Opus frames at the given timestamps (tags by index, `size` bytes each).
    fn audio_at(ts: &[u64], size: usize) -> Vec<Frame> {
        ts.iter()
            .enumerate()
            .map(|(i, &ts)| Frame {
                codec: Codec::Opus,
                ts,
                keyframe: true,
                data: frame_data(Codec::Opus, true, tag_of(i), size),
            })
            .collect()
    }

    #[test]
    fn read_ahead_is_bounded_by_bytes_and_frames() {
        let non_key = |ts: u64| video(Codec::Vp8, &[ts], |_| false, 100);
        // (name, clip tracks, frames offered, frames pushed while `wants_more`, a deadline
        // exists afterwards, dropped frames)
        let cases: Vec<(&str, TrackInfo, Vec<Frame>, usize, bool, u64)> = vec![
            (
                "frozen video timestamps: frame limit",
                info(Some(Codec::Vp8), false),
                video(Codec::Vp8, &[0; 10_000], first_key, 100),
                MAX_QUEUED_FRAMES,
                true,
                0,
            ),
            (
                "frozen video timestamps: byte limit",
                info(Some(Codec::Vp8), false),
                video(Codec::Vp8, &[0; 300], first_key, 65_536),
                MAX_QUEUED_BYTES / 65_536,
                true,
                0,
            ),
            (
                // Video was seen but no keyframe follows: after AUDIO_HOLD_US of audio the clip
                // starts without video instead of holding all of its audio.
                "non-keyframe then only audio",
                info(Some(Codec::Vp8), true),
                [non_key(0), audio(100)].concat(),
                1 + 51,
                true,
                1,
            ),
            (
                // Waiting for a keyframe that never comes, with audio whose timestamp never
                // advances: keeps wanting frames, holds at most MAX_QUEUED_FRAMES of audio.
                "held audio with a frozen timestamp: frame limit",
                info(Some(Codec::Vp8), true),
                [non_key(0), audio_at(&[0; 6000], 60)].concat(),
                6001,
                false,
                1 + (6000 - MAX_QUEUED_FRAMES as u64),
            ),
            (
                "held audio with a frozen timestamp: byte limit",
                info(Some(Codec::Vp8), true),
                audio_at(&[0; 300], 65_536),
                300,
                false,
                300 - (MAX_QUEUED_BYTES / 65_536) as u64,
            ),
        ];
        for (name, tracks, frames, want_pushed, want_deadline, want_dropped) in cases {
            let mut s = Scheduler::new(config());
            s.start_clip("x".into(), &tracks).unwrap();
            let mut pushed = 0;
            for f in frames {
                if !s.wants_more() {
                    break;
                }
                s.push_frame(f);
                pushed += 1;
                let (bytes, queued) = s.queued();
                assert!(
                    queued <= MAX_QUEUED_FRAMES,
                    "{name}: {queued} frames queued"
                );
                assert!(
                    bytes <= MAX_QUEUED_BYTES + 65_536,
                    "{name}: {bytes} bytes queued"
                );
            }
            assert_eq!(pushed, want_pushed, "{name}: frames pushed");
            assert_eq!(
                s.next_deadline().is_some(),
                want_deadline,
                "{name}: deadline"
            );
            assert_eq!(s.stats().dropped_frames, want_dropped, "{name}: dropped");
            if want_deadline {
                // What is queued plays, and then more is wanted again.
                let mut now = 0;
                while let Some(d) = s.next_deadline() {
                    now = now.max(d);
                    while s.poll(now).is_some() {}
                    if s.queued() == (0, 0) {
                        break;
                    }
                }
                assert_eq!(s.queued(), (0, 0), "{name}");
                assert!(s.wants_more(), "{name}");
            }
        }
    }

    #[test]
    fn timestamp_gaps_play_as_at_most_one_second() {
        const H6_MS: u64 = 6 * 3600 * 1000;
        // (name, clip has video, first timestamp (ms), gap after its first second (ms),
        // largest interval between two consecutive frames sent, µs)
        let cases: &[(&str, bool, u64, u64, u64)] = &[
            ("0.5 s gap is kept", true, 0, 500, 520_000),
            ("2 s gap", true, 0, 2_000, MAX_PLAY_GAP_US),
            ("6 h gap", true, 0, H6_MS, MAX_PLAY_GAP_US),
            ("6 h gap, audio only", false, 0, H6_MS, MAX_PLAY_GAP_US),
            // The clip's timestamp 0 counts as the frame before its first one (+ the 20 ms
            // of the previous clip's last audio frame).
            (
                "audio-only clip starting at 6 h",
                false,
                H6_MS,
                0,
                MAX_PLAY_GAP_US + 20_000,
            ),
            // A video clip starts at its first keyframe anyway.
            ("video clip starting at 6 h", true, H6_MS, 0, 20_000),
        ];
        for &(name, has_video, lead_ms, gap_ms, want_gap) in cases {
            // 1 s of media, the gap, 1 s more.
            let two_parts = |clock: u64, step: u64, n: u64| -> Vec<u64> {
                let lead = lead_ms * clock / 1000;
                let second = lead + clock + gap_ms * clock / 1000;
                (0..n)
                    .map(|i| lead + i * step)
                    .chain((0..n).map(|i| second + i * step))
                    .collect()
            };
            let v = if has_video {
                video(Codec::Vp8, &two_parts(90_000, 3000, 30), first_key, 100)
            } else {
                Vec::new()
            };
            let a = audio_at(&two_parts(48_000, 960, 50), 60);
            let vcodec = has_video.then_some(Codec::Vp8);
            let mut steps = av_clip("a", Codec::Vp8, 30, 3000, 50);
            steps.extend(clip_steps("b", info(vcodec, true), v, a));
            let start = 1_000;
            let cfg = config();
            let run = run(cfg.clone(), steps, start);
            let frames = sent_frames(&run);
            let n_video = if has_video { 90 } else { 30 };
            assert_eq!(
                (
                    of_kind(&frames, MediaKind::Video).len(),
                    of_kind(&frames, MediaKind::Audio).len()
                ),
                (n_video, 150),
                "{name}"
            );
            let largest = frames.windows(2).map(|w| w[1].at - w[0].at).max();
            assert_eq!(largest, Some(want_gap), "{name}");
            // Both tracks lost the same time: every frame still goes out when its RTP
            // timestamp says, on one timeline.
            for f in &frames {
                let (base, clock) = match f.kind {
                    MediaKind::Video => (cfg.initial_video_ts, 90_000),
                    MediaKind::Audio => (cfg.initial_audio_ts, 48_000),
                };
                let media_us = us(f.ts.wrapping_sub(base) as u64, clock);
                assert!(
                    (f.at - start).abs_diff(media_us) <= 21,
                    "{name}: {f:?} sent at {} but RTP time says {media_us}",
                    f.at - start
                );
            }
            let first_of =
                |kind: MediaKind| frames.iter().find(|f| f.clip == "b" && f.kind == kind);
            if has_video {
                let (fv, fa) = (first_of(MediaKind::Video), first_of(MediaKind::Audio));
                assert_eq!(
                    fv.map(|f| f.at),
                    fa.map(|f| f.at),
                    "{name}: b starts in sync"
                );
            }
        }
    }

    #[test]
    fn extreme_timestamps_never_panic() {
        assert_eq!(units_to_us(u64::MAX), u64::MAX);
        assert_eq!(units_to_us(18), 25);
        const M: u64 = u64::MAX;
        // (video timestamps, audio timestamps); the first video frame is the keyframe.
        let cases: &[(&[u64], &[u64])] = &[
            (&[0, M, M, 5, M - 1], &[0, M, 3, M]),
            (&[M, M, M], &[M, M - 960, M]),
            (&[1 << 63, 0, 1 << 40, M], &[1 << 62, 1 << 63, 0]),
            (&[M - 3000, M - 1, M], &[]),
            (&[], &[M, 0, M]),
        ];
        for &(vts, ats) in cases {
            let ctx = format!("{vts:?} {ats:?}");
            let mut steps = av_clip("before", Codec::Vp8, 3, 3000, 3);
            let mut b = vec![Step::Start("x".into(), info(Some(Codec::Vp8), true))];
            // In the given order (not sorted by time): as a corrupt file would give them.
            for f in video(Codec::Vp8, vts, first_key, 100)
                .into_iter()
                .chain(audio_at(ats, 60))
            {
                b.push(Step::Push(f));
            }
            b.push(Step::End);
            steps.extend(b);
            steps.extend(av_clip("after", Codec::Vp8, 3, 3000, 3));
            let pushed = (vts.len() + ats.len() + 12) as u64;
            let run = run(config(), steps, 0);
            let frames = sent_frames(&run);
            let stats = run.sched.stats();
            assert_eq!(
                stats.video_frames + stats.audio_frames + stats.dropped_frames,
                pushed,
                "{ctx}: every frame is sent or dropped"
            );
            assert_eq!(frames.len() as u64, stats.video_frames + stats.audio_frames);
        }
    }
}
