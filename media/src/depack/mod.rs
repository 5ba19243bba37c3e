//! RTP -> frames (record path). See DESIGN.md.
//!
//! [`Depacketizer`] puts packets back in sequence order inside a reorder window, drops
//! duplicates, declares loss when a hole is not filled in time, and cuts the in-order packet
//! stream into frames (on the marker bit or a timestamp change). After a loss, video frames are
//! dropped until the next keyframe and [`Depacketizer::take_keyframe_request`] asks for one.
//!
//! Everything a sender controls is bounded:
//! - the reorder buffer never holds more than [`MAX_FRAME_PACKETS`] packets or
//!   [`MAX_FRAME_BYTES`] payload bytes, whatever the order, marker bits and timestamps (a sender
//!   that never ends a frame and keeps one hole open would otherwise grow it forever); when a
//!   bound is exceeded the head of the buffer is shed as if lost (holes declared lost, the
//!   incomplete frame at the head dropped, a keyframe requested);
//! - a frame with the same RTP timestamp as the frame returned just before it is dropped and
//!   counted in [`DepackStats::same_ts_dropped`] (a sender setting the marker bit on every packet
//!   of one timestamp would otherwise turn each packet into its own frame, and for VP8 each may
//!   look like a keyframe);
//! - extended sequence numbers come from [`SeqUnwrapper`], which moves its maximum by at most
//!   2^15 per packet: they stay below 2^17 + 2^15 * (packets pushed), so the `+ 1`s on them
//!   below cannot overflow; counters that add sender-controlled amounts saturate.
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::rtp::{RtpPacket, SeqUnwrapper, TsUnwrapper};
use crate::{Codec, Frame};

pub mod h264;
pub mod opus;
pub mod vp8;

#[cfg(test)]
mod tests;

/// Default reorder window in packets.
pub const DEFAULT_REORDER_WINDOW: usize = 128;

/// The reorder buffer never holds more than this many packets (padding included). A frame that
/// would need more is dropped. Checked after every push, with or without a hole in the buffer.
pub const MAX_FRAME_PACKETS: usize = 4096;

/// The reorder buffer never holds more than this many payload bytes (4 MiB; a large real
/// keyframe is well under 1 MiB). A frame that would need more is dropped. Checked after every
/// push, with or without a hole in the buffer.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// Before anything is consumed, how many packets to wait for a frame start that arrived
/// reordered (capped by the reorder window).
const STARTUP_WAIT: u64 = 16;

/// How many declared-lost ranges are remembered to tell late packets from duplicates.
const LOST_HISTORY: usize = 64;

/// Why the packets of one frame could not be turned into a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepackError {
    /// A payload (or a length inside it) ends early.
    #[error("payload truncated")]
    Truncated,
    /// The frame has no media bytes.
    #[error("empty frame")]
    Empty,
    /// The first packet does not start a frame (VP8 S bit / FU-A start missing).
    #[error("frame does not start at its first packet")]
    MissingStart,
    /// An H264 FU-A fragment sequence is interrupted or not ended.
    #[error("incomplete FU-A fragment")]
    IncompleteFragment,
    /// An H264 packetization type this depacketizer does not handle (STAP-B, MTAP, FU-B, ...).
    #[error("unsupported H264 packet type {0}")]
    Unsupported(u8),
}

/// Counters of a [`Depacketizer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepackStats {
    /// Packets pushed (all of them, including duplicates and padding).
    pub packets: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets declared lost (a hole not filled within the reorder window, or at flush).
    pub lost: u64,
    /// Padding-only or empty packets.
    pub padding: u64,
    /// Frames returned by [`Depacketizer::pop`].
    pub frames: u64,
    /// Frames discarded: incomplete, malformed, or waiting for a keyframe after loss.
    pub dropped_frames: u64,
    /// Keyframes returned by [`Depacketizer::pop`].
    pub keyframes: u64,
    /// Packets that arrived after their sequence number had been declared lost or had already
    /// been passed (they are discarded).
    pub late: u64,
    /// Complete frames discarded because their RTP timestamp equals that of the frame returned
    /// just before (a repeated timestamp is not a new frame; not counted in `dropped_frames`).
    pub same_ts_dropped: u64,
}

/// One buffered packet.
#[derive(Clone, Debug)]
struct Slot {
    ts: u32,
    marker: bool,
    /// Empty for padding-only / empty packets.
    payload: Bytes,
}

/// RTP -> frame state machine for one stream (one SSRC, one codec).
#[derive(Debug)]
pub struct Depacketizer {
    codec: Codec,
    window: u64,
    seq: SeqUnwrapper,
    ts: TsUnwrapper,
    /// Packets at or after `next`, by extended sequence number.
    buf: BTreeMap<u64, Slot>,
    /// Sum of the payload lengths in `buf` (kept in step with every insert and removal).
    buf_bytes: usize,
    /// Next extended sequence number to consume; `None` before anything was consumed.
    next: Option<u64>,
    /// Recently declared-lost ranges `[start, end)`.
    lost_ranges: VecDeque<(u64, u64)>,
    /// RTP timestamp of the last consumed media packet.
    last_ts: Option<u32>,
    /// Set after a hole: the RTP timestamp of the media before it (if any). The next frame
    /// may have lost its beginning and is checked before use.
    after_gap: Option<Option<u32>>,
    /// Progress of the scan for the end of the frame at the head: (start, first sequence
    /// number not yet scanned, last media packet seen). Avoids rescanning long frames.
    scan: Option<(u64, u64, u64)>,
    /// Timestamp of the last frame counted as dropped (a frame split by a hole counts once).
    last_dropped_ts: Option<u32>,
    /// RTP timestamp of the last frame returned by `pop` (queued in `out`).
    last_emitted_ts: Option<u32>,
    /// Packets in a row that were older than `next` (a sender restart when it gets large).
    old_in_a_row: u64,
    need_keyframe: bool,
    requested: bool,
    request_pending: bool,
    h264: h264::Assembler,
    out: VecDeque<Frame>,
    stats: DepackStats,
}

impl Depacketizer {
    /// A depacketizer for `codec` with the default reorder window of
    /// [`DEFAULT_REORDER_WINDOW`] packets.
    pub fn new(codec: Codec) -> Self {
        Depacketizer {
            codec,
            window: DEFAULT_REORDER_WINDOW as u64,
            seq: SeqUnwrapper::new(),
            ts: TsUnwrapper::new(),
            buf: BTreeMap::new(),
            buf_bytes: 0,
            next: None,
            lost_ranges: VecDeque::new(),
            last_ts: None,
            after_gap: None,
            last_dropped_ts: None,
            last_emitted_ts: None,
            scan: None,
            old_in_a_row: 0,
            need_keyframe: codec != Codec::Opus,
            requested: false,
            request_pending: false,
            h264: h264::Assembler::default(),
            out: VecDeque::new(),
            stats: DepackStats::default(),
        }
    }

    /// Sets the reorder window: how many packets may arrive after a missing one before it is
    /// declared lost (at least 1).
    pub fn with_reorder_window(mut self, packets: usize) -> Self {
        self.window = u64::try_from(packets.max(1)).unwrap_or(u64::MAX);
        self
    }

    /// The codec this depacketizer was made for.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Feeds one received packet (any order; duplicates and padding are handled).
    pub fn push(&mut self, pkt: RtpPacket) {
        self.stats.packets += 1;
        if pkt.payload.is_empty() {
            self.stats.padding += 1;
        }
        let mut ext = self.seq.unwrap(pkt.sequence_number);
        if self.next.is_some_and(|next| ext < next) && self.old_in_a_row >= self.window {
            // The sender's sequence numbers jumped backwards for good (a restart): start over.
            self.resync();
            ext = self.seq.unwrap(pkt.sequence_number);
        }
        if let Some(next) = self.next
            && ext < next
        {
            self.old_in_a_row = self.old_in_a_row.saturating_add(1);
            if let Some(i) = self
                .lost_ranges
                .iter()
                .position(|&(s, e)| (s..e).contains(&ext))
            {
                self.stats.late += 1;
                // Count each lost packet at most once as late.
                let (s, e) = self.lost_ranges[i];
                self.lost_ranges.remove(i);
                if s < ext {
                    self.lost_ranges.push_back((s, ext));
                }
                if ext + 1 < e {
                    self.lost_ranges.push_back((ext + 1, e));
                }
                while self.lost_ranges.len() > LOST_HISTORY {
                    self.lost_ranges.pop_front();
                }
            } else {
                self.stats.duplicates += 1;
            }
            return;
        }
        self.old_in_a_row = 0;
        if self.buf.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.buf_bytes = self.buf_bytes.saturating_add(pkt.payload.len());
        self.buf.insert(
            ext,
            Slot {
                ts: pkt.timestamp,
                marker: pkt.marker,
                payload: pkt.payload,
            },
        );
        self.drain();
        // Terminates: each round sets `next`, or removes at least one packet, or moves `next`
        // to the first buffered packet (which the following round removes).
        while self.overflowing() {
            self.force_advance(false);
            self.drain();
        }
    }

    /// The next complete frame, in sequence order.
    pub fn pop(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    /// End of stream: every hole is declared lost and every complete frame is released (to
    /// [`pop`](Self::pop)). A trailing video frame without its marker bit is incomplete and
    /// dropped.
    pub fn flush(&mut self) {
        loop {
            self.drain();
            if self.buf.is_empty() {
                break;
            }
            self.force_advance(true);
        }
    }

    /// True (once per loss episode) when loss means a keyframe is needed: the server should
    /// send a PLI. Cleared when a keyframe arrives.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.request_pending)
    }

    /// Counters so far.
    pub fn stats(&self) -> DepackStats {
        self.stats
    }

    /// Payload bytes currently held in the reorder buffer (at most [`MAX_FRAME_BYTES`] between
    /// calls). For tests and metrics.
    pub fn buffered_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Releases what is buffered and forgets the sequence number space (after a backwards
    /// jump of the sender's sequence numbers). Video then waits for a keyframe.
    fn resync(&mut self) {
        self.flush();
        self.seq = SeqUnwrapper::new();
        self.next = None;
        self.scan = None;
        self.lost_ranges.clear();
        self.after_gap = Some(self.last_ts);
        self.old_in_a_row = 0;
        self.need_keyframe |= self.is_video();
    }

    fn is_video(&self) -> bool {
        self.codec != Codec::Opus
    }

    /// The first sequence number to consume: `next`, or before anything was consumed the
    /// lowest buffered one (so packets reordered before the first arrival are still used).
    fn start(&self) -> Option<u64> {
        self.next.or_else(|| self.buf.keys().next().copied())
    }

    /// First missing sequence number at or after `start` that has buffered packets after it,
    /// together with the highest buffered sequence number.
    fn hole(&self) -> Option<(u64, u64)> {
        let start = self.start()?;
        let max = *self.buf.keys().next_back()?;
        if !self.buf.contains_key(&start) {
            return Some((start, max));
        }
        if let Some((s, e, _)) = self.scan
            && s == start
        {
            return (max >= e).then_some((e, max));
        }
        (start..)
            .zip(self.buf.keys())
            .find(|(expect, k)| *expect != **k)
            .map(|(expect, _)| (expect, max))
    }

    /// True when the buffer holds more than [`MAX_FRAME_PACKETS`] packets or
    /// [`MAX_FRAME_BYTES`] bytes, or a hole has been outstanding for more than the reorder window.
    ///
    /// The size bounds hold whether or not there is a hole: a sender that keeps one hole open
    /// just behind the newest packet (N, N+2, N+4, N+1, N+6, N+3, ...) never lets a hole get
    /// `window` old, and its head frame would otherwise grow without limit.
    fn overflowing(&self) -> bool {
        if self.buf.len() > MAX_FRAME_PACKETS || self.buf_bytes > MAX_FRAME_BYTES {
            return true;
        }
        if self.next.is_none() {
            let span = match (self.buf.keys().next(), self.buf.keys().next_back()) {
                (Some(min), Some(max)) => max.saturating_sub(*min).saturating_add(1),
                _ => 0,
            };
            return span >= self.window.min(STARTUP_WAIT);
        }
        match self.hole() {
            Some((hole, max)) => max.saturating_sub(hole) >= self.window,
            None => false,
        }
    }

    /// Emits every complete frame at the head of the buffer.
    fn drain(&mut self) {
        while let Some(start) = self.start() {
            let Some(first) = self.buf.get(&start) else {
                break;
            };
            if first.payload.is_empty() {
                // Padding: no bytes to take off `buf_bytes`.
                self.buf.remove(&start);
                self.next = Some(start + 1);
                continue;
            }
            if self.next.is_none() && !self.starts_frame(&first.payload) {
                // Nothing consumed yet and the lowest packet is not a frame start: its
                // beginning may still arrive reordered. Wait (bounded by `overflowing`).
                break;
            }
            let ts0 = first.ts;
            let opus = self.codec == Codec::Opus;
            // Find the last packet of the frame starting at `start`, resuming the previous
            // scan of this frame (packets before `expect` are contiguous and cannot change).
            let mut end = None;
            let (mut expect, mut last_media) = match self.scan {
                Some((s, e, l)) if s == start => (e, l),
                _ => (start, start),
            };
            for (&k, slot) in self.buf.range(expect..) {
                if k != expect {
                    break; // hole: the frame may continue in a missing packet
                }
                expect += 1;
                if slot.payload.is_empty() {
                    continue;
                }
                if slot.ts != ts0 {
                    end = Some(last_media);
                    break;
                }
                last_media = k;
                if slot.marker || opus {
                    end = Some(k);
                    break;
                }
            }
            let Some(end) = end else {
                self.scan = Some((start, expect, last_media));
                break;
            };
            let (payloads, _) = self.take_range(start, end);
            self.next = Some(end + 1);
            self.emit(payloads, ts0);
        }
    }

    /// Removes packets `start..=end` from the buffer; returns the media payloads and the RTP
    /// timestamp of the first media packet.
    fn take_range(&mut self, start: u64, end: u64) -> (Vec<Bytes>, Option<u32>) {
        let rest = self.buf.split_off(&(end + 1));
        let taken = std::mem::replace(&mut self.buf, rest);
        let removed = taken
            .values()
            .fold(0usize, |n, s| n.saturating_add(s.payload.len()));
        self.buf_bytes = self.buf_bytes.saturating_sub(removed);
        let mut ts = None;
        let payloads = taken
            .into_iter()
            .filter(|(k, s)| *k >= start && !s.payload.is_empty())
            .map(|(_, s)| {
                ts.get_or_insert(s.ts);
                s.payload
            })
            .collect();
        (payloads, ts)
    }

    /// Gives up on the head of the buffer: drops an incomplete frame there, or declares the
    /// hole there lost.
    fn force_advance(&mut self, flushing: bool) {
        let Some(start) = self.start() else {
            return;
        };
        if self.next.is_none() {
            // Stop waiting for packets reordered before the first one.
            self.next = Some(start);
            return;
        }
        if self.buf.contains_key(&start) {
            // An incomplete frame at the head (drain() emits complete ones): drop its run.
            let mut end = start;
            while self.buf.contains_key(&(end + 1)) {
                end += 1;
            }
            let trailing = self.buf.range(end + 1..).next().is_none();
            let (_, ts) = self.take_range(start, end);
            self.next = Some(end + 1);
            if let Some(ts) = ts {
                self.last_ts = Some(ts);
                self.drop_frame(ts);
                if flushing && trailing {
                    // End of stream cut the last frame short; nothing to ask the sender for.
                    self.need_keyframe |= self.is_video();
                } else {
                    self.on_loss();
                }
            }
            self.after_gap = Some(self.last_ts);
        } else if let Some(&first) = self.buf.keys().next() {
            let first = first.max(start);
            self.stats.lost = self.stats.lost.saturating_add(first - start);
            if self.lost_ranges.len() >= LOST_HISTORY {
                self.lost_ranges.pop_front();
            }
            self.lost_ranges.push_back((start, first));
            self.next = Some(first);
            self.after_gap = Some(self.last_ts);
            self.on_loss();
        }
    }

    /// Loss: video needs a keyframe; ask for one once per episode.
    fn on_loss(&mut self) {
        if self.is_video() {
            self.need_keyframe = true;
            self.request_keyframe();
        }
    }

    fn request_keyframe(&mut self) {
        if !self.requested {
            self.requested = true;
            self.request_pending = true;
        }
    }

    fn drop_frame(&mut self, ts: u32) {
        if self.last_dropped_ts != Some(ts) {
            self.stats.dropped_frames += 1;
            self.last_dropped_ts = Some(ts);
        }
    }

    /// True when `payload` can be the first packet of a frame.
    fn starts_frame(&self, payload: &[u8]) -> bool {
        match self.codec {
            Codec::Vp8 => vp8::starts_frame(payload),
            Codec::H264 => h264::starts_frame(payload),
            Codec::Opus => true,
        }
    }

    /// Turns the payloads of one complete run into a frame (or drops it).
    ///
    /// A run with the RTP timestamp of the frame returned just before it is dropped (counted in
    /// [`DepackStats::same_ts_dropped`]): real senders give each frame (and each Opus packet)
    /// its own timestamp, while a sender setting the marker bit on every packet of one
    /// timestamp would otherwise produce a frame per packet. H264 runs without a picture
    /// (parameter sets, SEI or AUD sent with their own marker bit) are not frames: their SPS/PPS
    /// are remembered and go in front of the next IDR, so such a sender's IDR, which shares
    /// their timestamp, is still returned.
    fn emit(&mut self, payloads: Vec<Bytes>, raw_ts: u32) {
        let ts = self.ts.unwrap(raw_ts);
        let after_gap = self.after_gap.take();
        self.last_ts = Some(raw_ts);
        if self.is_video()
            && let Some(prev) = after_gap
        {
            let starts = payloads.first().is_some_and(|p| self.starts_frame(p));
            if prev == Some(raw_ts) || !starts {
                // The rest of a frame whose beginning was lost.
                self.drop_frame(raw_ts);
                self.need_keyframe = true;
                self.request_keyframe();
                return;
            }
        }
        if self.last_emitted_ts == Some(raw_ts) {
            self.stats.same_ts_dropped = self.stats.same_ts_dropped.saturating_add(1);
            return;
        }
        let assembled = match self.codec {
            Codec::Vp8 => vp8::assemble(&payloads).map(Some),
            Codec::H264 => self.h264.assemble(&payloads),
            Codec::Opus => match payloads.as_slice() {
                [p] => Ok(Some((p.clone(), true))),
                _ => Err(DepackError::Empty),
            },
        };
        let (data, keyframe) = match assembled {
            Ok(Some(x)) => x,
            // H264 parameter sets / SEI without a picture: remembered, not a frame.
            Ok(None) => return,
            Err(_) => {
                self.drop_frame(raw_ts);
                self.on_loss();
                return;
            }
        };
        if self.is_video() {
            if keyframe {
                self.need_keyframe = false;
                self.requested = false;
            } else if self.need_keyframe {
                self.drop_frame(raw_ts);
                self.request_keyframe();
                return;
            }
        }
        self.stats.frames += 1;
        if keyframe {
            self.stats.keyframes += 1;
        }
        self.last_emitted_ts = Some(raw_ts);
        self.out.push_back(Frame {
            codec: self.codec,
            ts,
            keyframe,
            data,
        });
    }
}
