//! Tracks onto one clock (record path). See DESIGN.md.
//!
//! # Arrival alignment
//!
//! Each track's RTP clock is tied to the receiver's clock by its *offset floor*: the minimum
//! of `arrival_us - media_us` over what was observed. Network jitter only ever delays packets,
//! so the minimum is the best estimate of "capture time + constant transit" and is not skewed by
//! jitter the way an average or the first packet would be.
//!
//! Within a segment (below), output times follow the RTP timestamps exactly (no jitter); only
//! the offset *between* tracks comes from arrivals (and, within limits, sender reports). The
//! earliest track start is time 0. The offset floors converge over the first packets, so early
//! on a track may shift by up to the jitter seen so far; consumers that need strictly
//! increasing timestamps should clamp. A track's start is fixed [`START_SETTLE_US`] after its
//! first observation (the floor has converged by then), so later floor changes of one track
//! (jitter, small timestamp jumps) only move that track, never the others.
//!
//! # Discontinuities: segments
//!
//! RTP timestamps come from the sender and may jump (a restart, a new encoder, a hostile
//! sender): a forward jump of 2^31 ticks is 6.6 h at 90 kHz. A floor over the whole track
//! would follow such a jump and move the track start, and with it every other track, by hours.
//! So each track is cut into *segments*. An observation starts a new segment when
//! - its media time runs more than [`MAX_AHEAD_US`] ahead of arrival compared with the first
//!   observation of the segment (`arrival - media` fell by more than that: a forward jump), or
//! - its timestamp is more than [`MAX_BACK_US`] before the highest one of the segment (a
//!   backward jump: frames leave the depacketizer in sequence order, so real media does not go
//!   back).
//!
//! The first frame of a new segment is placed after the end of the previous segment (the time
//! of its highest timestamp) by the arrival gap, clamped to `[0, MAX_GAP_US]`; the following
//! frames follow their timestamps and the floor keeps converging. A jump of any size thus
//! becomes a gap of at most [`MAX_GAP_US`] and no larger than arrival says (give or take the
//! jitter of the frames around it). The track's start is fixed when its first segment ends, so
//! a jump in one track never moves another; when the arrival gap is within `MAX_GAP_US`, the
//! new segment is aligned by arrival again, so the A/V offset is kept. (A longer arrival gap
//! is shortened to `MAX_GAP_US`, which then shifts this track against the others by the
//! difference; sender reports correct up to [`MAX_SR_SKEW_US`] of it.) Since the floor can
//! fall at most `MAX_AHEAD_US` below the first offset of its segment, repeated small jumps
//! cannot drag a track either.
//!
//! [`Timeline::to_common_us`] maps timestamps with the track's current segment: it is meant
//! for the frame just observed and later ones (observe each frame, then convert it), not for
//! timestamps of earlier segments.
//!
//! # Sender reports
//!
//! RTCP sender reports tie each track's RTP clock to the sender's NTP clock. They are not
//! trusted as absolute time (an absurd NTP time would move a track by years); they only correct
//! the A/V offset that arrival alignment gives (which is off when audio and video see different
//! delays). When both tracks have a report for their current segment, video is moved by the
//! difference of the two tracks' `NTP time - arrival-aligned time`, clamped to
//! ±[`MAX_SR_SKEW_US`]; audio is the reference. The correction is kept while a report is
//! missing (a track's report is dropped at a segment boundary, as it describes the old
//! timestamps), so a jump does not undo it. The session zero is the earliest *corrected* track
//! start, so when the correction changes, only the later-starting track moves (by at most
//! `MAX_SR_SKEW_US` from where arrival alignment puts it).
//!
//! # Arithmetic
//!
//! Times are `i128` µs: any `u64` timestamp or arrival and any clock rate fit with room to
//! spare (a span is below 2^84 µs); the sums that can accumulate saturate. No input makes
//! anything here overflow or panic.
use crate::MediaKind;

/// A new segment starts when media runs ahead of arrival by more than this (µs) compared with
/// the segment's first observation.
pub const MAX_AHEAD_US: u64 = 1_000_000;
/// A new segment starts when a timestamp is more than this (µs) before the segment's highest.
pub const MAX_BACK_US: u64 = 100_000;
/// Largest gap (µs) put between the end of a segment and the start of the next one.
pub const MAX_GAP_US: u64 = 1_000_000;
/// Largest A/V correction (µs) sender reports may apply to video, either way.
pub const MAX_SR_SKEW_US: u64 = 500_000;
/// A track's start is fixed this long (µs, arrival clock) after its first observation.
pub const START_SETTLE_US: u64 = 2_000_000;

// The constants widened for the arithmetic (u64 -> i128 is lossless).
const AHEAD: i128 = MAX_AHEAD_US as i128;
const BACK: i128 = MAX_BACK_US as i128;
const GAP: i128 = MAX_GAP_US as i128;
const SKEW: i128 = MAX_SR_SKEW_US as i128;
const SETTLE: i128 = START_SETTLE_US as i128;

/// A stretch of a track without timestamp discontinuity.
#[derive(Clone, Debug)]
struct Segment {
    /// First observed unwrapped RTP timestamp: the reference for the offsets.
    ref_ts: u64,
    /// Highest observed unwrapped RTP timestamp (to detect backward jumps and to unwrap
    /// sender-report timestamps).
    max_ts: u64,
    /// `arrival - media(ref_ts)` of the first observation: the anchor for forward jumps.
    first_offset_us: i128,
    /// Minimum of `arrival_us - media_us(ts - ref_ts)` (never below `first_offset_us -
    /// MAX_AHEAD_US`): the arrival-clock time of `ref_ts`.
    raw_floor_us: i128,
    /// How much earlier than arrival alignment this segment is placed (0 for the first
    /// segment and after short gaps; positive when a long arrival gap was shortened).
    shift_us: i128,
    /// Latest sender report for this segment, as (NTP µs, unwrapped RTP timestamp).
    sr: Option<(i128, u64)>,
}

impl Segment {
    /// A segment starting at `ts`, observed at `arrival`, whose `ts` is placed at `start`.
    fn new(ts: u64, arrival: i128, start: i128) -> Segment {
        Segment {
            ref_ts: ts,
            max_ts: ts,
            first_offset_us: arrival,
            raw_floor_us: arrival,
            shift_us: arrival.saturating_sub(start),
            sr: None,
        }
    }

    /// Track time (µs, arrival clock) of `ref_ts`.
    fn floor_us(&self) -> i128 {
        self.raw_floor_us.saturating_sub(self.shift_us)
    }
}

/// Per-track state.
#[derive(Clone, Debug)]
struct Track {
    clock_rate: u32,
    seg: Segment,
    /// Arrival of the track's first observation.
    first_arrival_us: i128,
    /// Lowest timestamp of the first segment (the track's start until it is fixed).
    min_ts: u64,
    /// The track's start (µs, arrival clock), once fixed: [`START_SETTLE_US`] after the first
    /// observation or at the end of the first segment, whichever comes first.
    fixed_start_us: Option<i128>,
}

impl Track {
    fn new(clock_rate: u32, ts: u64, arrival: i128) -> Track {
        Track {
            clock_rate,
            seg: Segment::new(ts, arrival, arrival),
            first_arrival_us: arrival,
            min_ts: ts,
            fixed_start_us: None,
        }
    }

    /// µs from RTP timestamp `from` to `to` (negative when `to` is earlier). Cannot overflow:
    /// |to - from| < 2^64, times 10^6 < 2^84.
    fn span_us(&self, from: u64, to: u64) -> i128 {
        (i128::from(to) - i128::from(from)) * 1_000_000 / i128::from(self.clock_rate.max(1))
    }

    /// Track time (µs, arrival clock, before any sender-report correction) of `ts` in the
    /// current segment.
    fn time_us(&self, ts: u64) -> i128 {
        self.seg
            .floor_us()
            .saturating_add(self.span_us(self.seg.ref_ts, ts))
    }

    /// The track's start (µs, arrival clock).
    fn start_us(&self) -> i128 {
        self.fixed_start_us
            .unwrap_or_else(|| self.time_us(self.min_ts))
    }

    fn observe(&mut self, ts: u64, arrival: i128) {
        let offset = arrival.saturating_sub(self.span_us(self.seg.ref_ts, ts));
        let ahead = offset < self.seg.first_offset_us.saturating_sub(AHEAD);
        let back = self.span_us(self.seg.max_ts, ts) < -BACK;
        if ahead || back {
            // Discontinuity: continue after the end of the segment by the arrival gap (not
            // before the end: `arrival >= end` for a monotonic arrival clock, as no observed
            // frame is placed after its arrival). When the timestamps agree with that gap
            // (within the ahead margin: a pause the first, late frames of the segment made
            // look like a jump), it is real time and kept whole, so the track stays in sync
            // with the others; when they ran further (a jump), the gap is at most MAX_GAP_US.
            let end = self.time_us(self.seg.max_ts);
            self.fixed_start_us = Some(self.start_us());
            let wall = arrival.saturating_sub(end).max(0);
            let elapsed = self.span_us(self.seg.max_ts, ts);
            let gap = if !back && elapsed <= wall.saturating_add(AHEAD) {
                wall
            } else {
                wall.min(GAP)
            };
            let start = end.saturating_add(gap);
            self.seg = Segment::new(ts, arrival, start);
            return;
        }
        self.seg.raw_floor_us = self.seg.raw_floor_us.min(offset);
        self.seg.max_ts = self.seg.max_ts.max(ts);
        if self.fixed_start_us.is_none() {
            self.min_ts = self.min_ts.min(ts);
            if arrival.saturating_sub(self.first_arrival_us) >= SETTLE {
                self.fixed_start_us = Some(self.start_us());
            }
        }
    }

    fn set_sr(&mut self, ntp: u64, rtp_ts: u32) {
        let cycle = 1i128 << 32;
        let reference = i128::from(self.seg.max_ts);
        let mut ts = (reference & !(cycle - 1)) | i128::from(rtp_ts);
        if ts - reference > cycle / 2 {
            ts -= cycle;
        } else if reference - ts >= cycle / 2 {
            ts += cycle;
        }
        // Outside u64 (only next to 0 or u64::MAX): ignored.
        if let Ok(ts) = u64::try_from(ts) {
            self.seg.sr = Some((ntp_to_us(ntp), ts));
        }
    }

    /// NTP time minus track time of the same instant, from the segment's sender report.
    fn sr_delta_us(&self) -> Option<i128> {
        let (ntp_us, sr_ts) = self.seg.sr?;
        Some(ntp_us.saturating_sub(self.time_us(sr_ts)))
    }
}

/// A 64-bit NTP timestamp (32.32 fixed point seconds) in µs.
fn ntp_to_us(ntp: u64) -> i128 {
    let secs = i128::from(ntp >> 32);
    let frac = i128::from(ntp & 0xffff_ffff);
    secs * 1_000_000 + ((frac * 1_000_000) >> 32)
}

/// Puts an audio and a video track onto one session clock in µs (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    audio: Option<Track>,
    video: Option<Track>,
    /// Sender reports received before the track's first packet: (kind, NTP, RTP timestamp).
    pending_sr: Vec<(MediaKind, u64, u32)>,
    /// µs added to video times: the A/V correction from sender reports, within
    /// ±[`MAX_SR_SKEW_US`]. Kept while a report is missing.
    video_correction_us: i128,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    fn track(&self, kind: MediaKind) -> Option<&Track> {
        match kind {
            MediaKind::Audio => self.audio.as_ref(),
            MediaKind::Video => self.video.as_ref(),
        }
    }

    fn track_mut(&mut self, kind: MediaKind) -> &mut Option<Track> {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }

    /// The sender-report correction added to `kind`'s times.
    fn correction_us(&self, kind: MediaKind) -> i128 {
        match kind {
            MediaKind::Audio => 0,
            MediaKind::Video => self.video_correction_us,
        }
    }

    /// Records that media at `rtp_ts_unwrapped` (in `clock_rate` units) arrived at
    /// `arrival_us` (any monotonic µs clock, the same for all tracks). Call it for every frame
    /// in the order they leave the depacketizer (or for every packet), then convert that
    /// frame with [`to_common_us`](Self::to_common_us). The first call for a track fixes its
    /// clock rate; `clock_rate == 0` is ignored. A timestamp discontinuity starts a new segment
    /// (see the module docs).
    pub fn observe(
        &mut self,
        kind: MediaKind,
        clock_rate: u32,
        rtp_ts_unwrapped: u64,
        arrival_us: u64,
    ) {
        if clock_rate == 0 {
            return;
        }
        let arrival = i128::from(arrival_us);
        let slot = self.track_mut(kind);
        if let Some(track) = slot.as_mut() {
            track.observe(rtp_ts_unwrapped, arrival);
        } else {
            *slot = Some(Track::new(clock_rate, rtp_ts_unwrapped, arrival));
        }
        if let Some(i) = self.pending_sr.iter().position(|p| p.0 == kind) {
            let (_, ntp, rtp_ts) = self.pending_sr.remove(i);
            self.on_sender_report(kind, ntp, rtp_ts);
        }
        self.update_correction();
    }

    /// Records an RTCP sender report for a track: NTP time `ntp` (64-bit 32.32 format)
    /// corresponds to RTP timestamp `rtp_ts`. Once both tracks have one, they correct the A/V
    /// offset by up to [`MAX_SR_SKEW_US`] (see the module docs).
    pub fn on_sender_report(&mut self, kind: MediaKind, ntp: u64, rtp_ts: u32) {
        match self.track_mut(kind) {
            Some(track) => track.set_sr(ntp, rtp_ts),
            None => {
                // Kept until the first packet gives the clock rate and the wrap cycle.
                self.pending_sr.retain(|p| p.0 != kind);
                self.pending_sr.push((kind, ntp, rtp_ts));
                return;
            }
        }
        self.update_correction();
    }

    /// Recomputes the video correction when both tracks have a current sender report.
    fn update_correction(&mut self) {
        let (Some(audio), Some(video)) = (self.audio.as_ref(), self.video.as_ref()) else {
            return;
        };
        let (Some(a), Some(v)) = (audio.sr_delta_us(), video.sr_delta_us()) else {
            return;
        };
        self.video_correction_us = v.saturating_sub(a).clamp(-SKEW, SKEW);
    }

    /// True when every observed track has a sender report for its current segment (with two
    /// tracks, the A/V offset is then corrected by them).
    pub fn uses_sender_reports(&self) -> bool {
        let tracks = [self.audio.as_ref(), self.video.as_ref()];
        let present: Vec<&Track> = tracks.into_iter().flatten().collect();
        !present.is_empty() && present.iter().all(|t| t.seg.sr.is_some())
    }

    /// Media time of `rtp_ts_unwrapped` on the session timeline in µs: the same zero for audio
    /// and video (the earliest track start), A/V offset as captured. `None` until `kind` has
    /// been observed. Meant for the frame just observed and later ones of the track's current
    /// segment. Times before the session start saturate to 0.
    pub fn to_common_us(&self, kind: MediaKind, rtp_ts_unwrapped: u64) -> Option<u64> {
        let track = self.track(kind)?;
        let zero = [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .filter_map(|k| {
                let t = self.track(k)?;
                Some(t.start_us().saturating_add(self.correction_us(k)))
            })
            .min()?;
        let t = track
            .time_us(rtp_ts_unwrapped)
            .saturating_add(self.correction_us(kind))
            .saturating_sub(zero);
        Some(u64::try_from(t.max(0)).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;
    use crate::rtp::TsUnwrapper;

    /// Deterministic jitter in `0..max_us`, with every 7th packet on time.
    fn jitter(i: u64, seed: u64, max_us: u64) -> u64 {
        if i % 7 == 3 {
            return 0;
        }
        let mut x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x % max_us
    }

    /// One simulated track: frames every `frame_us` from capture time `start_us`, RTP clock
    /// `rate` starting at `rtp0`, arriving after `transit_us` plus jitter.
    struct Sim {
        kind: MediaKind,
        rate: u32,
        rtp0: u64,
        start_us: u64,
        frame_us: u64,
        transit_us: u64,
        first_jitter_us: u64,
        seed: u64,
    }

    impl Sim {
        fn capture_us(&self, i: u64) -> u64 {
            self.start_us + i * self.frame_us
        }
        fn rtp(&self, i: u64) -> u64 {
            self.rtp0 + (i * self.frame_us) * u64::from(self.rate) / 1_000_000
        }
        fn arrival(&self, i: u64) -> u64 {
            let j = if i == 0 {
                self.first_jitter_us
            } else {
                jitter(i, self.seed, 30_000)
            };
            1_000_000_000 + self.capture_us(i) + self.transit_us + j
        }
    }

    fn audio(transit_us: u64) -> Sim {
        Sim {
            kind: MediaKind::Audio,
            rate: 48_000,
            rtp0: 5_000,
            start_us: 0,
            frame_us: 20_000,
            transit_us,
            first_jitter_us: 25_000,
            seed: 1,
        }
    }

    fn video(transit_us: u64) -> Sim {
        Sim {
            kind: MediaKind::Video,
            rate: 90_000,
            // Past 2^32: the timeline works on unwrapped timestamps.
            rtp0: (1 << 32) + 3_000_000,
            start_us: 100_000,
            frame_us: 40_000,
            transit_us,
            first_jitter_us: 28_000,
            seed: 2,
        }
    }

    /// Feeds the tracks interleaved by arrival (so jitter also reorders frames); returns the
    /// worst |output - (capture - session start)| in µs over all frames, queried after
    /// everything was observed.
    fn max_error(tl: &mut Timeline, sims: &[Sim], frames: u64) -> u64 {
        feed(tl, sims, frames);
        error(tl, sims, frames)
    }

    /// Observes every frame of the tracks, interleaved by arrival.
    fn feed(tl: &mut Timeline, sims: &[Sim], frames: u64) {
        let mut events: Vec<(u64, usize, u64)> = Vec::new();
        for (s, sim) in sims.iter().enumerate() {
            for i in 0..frames {
                events.push((sim.arrival(i), s, i));
            }
        }
        events.sort();
        for &(arrival, s, i) in &events {
            let sim = &sims[s];
            tl.observe(sim.kind, sim.rate, sim.rtp(i), arrival);
        }
    }

    /// Worst |output - (capture - session start)| in µs over all frames (already observed).
    fn error(tl: &Timeline, sims: &[Sim], frames: u64) -> u64 {
        // Session zero: the earliest capture among the tracks.
        let zero = sims.iter().map(|s| s.start_us).min().unwrap_or(0);
        let mut worst = 0;
        for sim in sims {
            for i in 0..frames {
                let got = tl.to_common_us(sim.kind, sim.rtp(i)).expect("observed");
                worst = worst.max(got.abs_diff(sim.capture_us(i) - zero));
            }
        }
        worst
    }

    #[test]
    fn arrival_alignment_table() {
        // (name, tracks, max error in µs). Both tracks share the network path (same transit),
        // so arrival alignment recovers capture times; first packets are delayed by jitter.
        let cases: Vec<(&str, Vec<Sim>, u64)> = vec![
            (
                "audio and video with jitter",
                vec![audio(50_000), video(50_000)],
                100,
            ),
            (
                "video first in the list",
                vec![video(50_000), audio(50_000)],
                100,
            ),
            ("audio only", vec![audio(10_000)], 100),
            ("video only", vec![video(10_000)], 100),
        ];
        for (name, sims, tolerance) in cases {
            let mut tl = Timeline::new();
            let err = max_error(&mut tl, &sims, 200);
            assert!(err <= tolerance, "{name}: error {err} µs");
            assert!(!tl.uses_sender_reports(), "{name}");
        }
    }

    #[test]
    fn first_frame_defines_zero_and_av_offset_is_kept() {
        let mut tl = Timeline::new();
        let (a, v) = (audio(50_000), video(50_000));
        max_error(&mut tl, &[audio(50_000), video(50_000)], 50);
        assert_eq!(tl.to_common_us(MediaKind::Audio, a.rtp(0)), Some(0));
        // Video was captured 100 ms after audio started; its first packet's 28 ms jitter and
        // audio's 25 ms must not leak into the offset.
        assert_eq!(tl.to_common_us(MediaKind::Video, v.rtp(0)), Some(100_000));
        assert_eq!(
            tl.to_common_us(MediaKind::Video, v.rtp(25)),
            Some(1_100_000)
        );
        // Before the session start saturates to 0.
        assert_eq!(tl.to_common_us(MediaKind::Audio, a.rtp0 - 480), Some(0));
    }

    #[test]
    fn sender_reports_correct_arrival() {
        // Audio goes through a path 80 ms slower: arrival alignment is off by 80 ms, NTP is not
        // (the correction is within MAX_SR_SKEW_US, so it is applied in full).
        let sims = [audio(130_000), video(50_000)];
        let mut tl = Timeline::new();
        let err = max_error(&mut tl, &sims, 100);
        assert!(
            err > 70_000,
            "arrival-only alignment should be off, got {err}"
        );

        // Sender reports: NTP = 3_900_000_000 s + capture time.
        let ntp = |capture_us: u64| {
            let secs = 3_900_000_000u64 + capture_us / 1_000_000;
            let frac = ((capture_us % 1_000_000) << 32) / 1_000_000;
            (secs << 32) | frac
        };
        let (a, v) = (&sims[0], &sims[1]);
        tl.on_sender_report(MediaKind::Audio, ntp(a.capture_us(60)), a.rtp(60) as u32);
        assert!(!tl.uses_sender_reports(), "only one track has a report");
        tl.on_sender_report(MediaKind::Video, ntp(v.capture_us(30)), v.rtp(30) as u32);
        assert!(tl.uses_sender_reports());
        // Not observed again: going back to the first frames would be a backward jump (a new
        // segment); the server never re-observes old frames.
        let err = error(&tl, &sims, 100);
        assert!(err <= 100, "NTP alignment error {err} µs");
    }

    #[test]
    fn sender_report_before_first_packet_and_unknown_tracks() {
        // (name, audio arrival µs, expected audio first frame, expected audio 200 ms later).
        // Video's first frame arrives at 5 s. Sender reports only correct the A/V offset
        // given by arrival, by at most MAX_SR_SKEW_US (they used to replace it with NTP).
        let cases: Vec<(&str, u64, u64, u64)> = vec![
            // Arrival says audio starts 800 ms after video, NTP says 500 ms: video moves 300 ms
            // later.
            ("correction within the bound", 5_800_000, 500_000, 700_000),
            // Arrival says 4 s, NTP 500 ms: the correction is clamped to 500 ms.
            ("correction clamped", 9_000_000, 3_500_000, 3_700_000),
        ];
        for (name, audio_arrival, audio0, audio1) in cases {
            let mut tl = Timeline::new();
            assert_eq!(tl.to_common_us(MediaKind::Audio, 0), None);
            tl.observe(MediaKind::Video, 0, 1, 1); // clock rate 0 is ignored
            assert_eq!(tl.to_common_us(MediaKind::Video, 1), None);

            // Audio SR arrives first; its NTP says audio started 500 ms after video.
            tl.on_sender_report(MediaKind::Audio, (10 << 32) | (1 << 31), 48_000);
            tl.on_sender_report(MediaKind::Video, 10 << 32, 90_000 * 2);
            tl.observe(MediaKind::Video, 90_000, 90_000 * 2 - 18_000, 5_000_000);
            tl.observe(MediaKind::Audio, 48_000, 48_000 - 9_600, audio_arrival);
            assert!(tl.uses_sender_reports(), "{name}");
            // Video: first ts is 200 ms before its SR point (NTP 10.0 s) -> 9.8 s.
            // Audio: first ts is 200 ms before its SR point (NTP 10.5 s) -> 10.3 s.
            assert_eq!(
                tl.to_common_us(MediaKind::Video, 90_000 * 2 - 18_000),
                Some(0),
                "{name}"
            );
            assert_eq!(
                tl.to_common_us(MediaKind::Audio, 48_000 - 9_600),
                Some(audio0),
                "{name}"
            );
            assert_eq!(
                tl.to_common_us(MediaKind::Audio, 48_000),
                Some(audio1),
                "{name}"
            );
        }
    }

    // ---- Discontinuities, sender-report bounds and extreme inputs ----
    // Frames are observed and converted right away, in arrival order, as the server does.

    /// Video frame index where the discontinuity tests jump (6 s into the stream).
    const K: u64 = 180;
    /// One 30 fps video frame in µs (rounded up).
    const FRAME: u64 = 33_334;

    fn rate(kind: MediaKind) -> u32 {
        match kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        }
    }

    /// One frame as the server sees it.
    #[derive(Clone, Copy, Debug)]
    struct Obs {
        kind: MediaKind,
        /// Frame index within its track.
        i: u64,
        /// Unwrapped RTP timestamp.
        ts: u64,
        /// Arrival in µs.
        at: u64,
    }

    /// `secs` of 50 Hz audio captured from 0 and 30 fps video captured from 100 ms, RTP
    /// timestamps from `ts0`, arriving from `at0` after `audio_transit_us` (audio) or 50 ms
    /// (video) plus up to `jitter_us`; in arrival order.
    fn av(secs: u64, ts0: u64, at0: u64, audio_transit_us: u64, jitter_us: u64) -> Vec<Obs> {
        let j = |i: u64, seed: u64| -> u64 {
            if jitter_us == 0 {
                0
            } else {
                jitter(i, seed, jitter_us)
            }
        };
        let mut out = Vec::new();
        for i in 0..secs * 50 {
            out.push(Obs {
                kind: MediaKind::Audio,
                i,
                ts: ts0 + i * 960,
                at: at0 + i * 20_000 + audio_transit_us + j(i, 1),
            });
        }
        for i in 0..secs * 30 {
            out.push(Obs {
                kind: MediaKind::Video,
                i,
                ts: ts0 + i * 3000,
                at: at0 + 100_000 + i * 100_000 / 3 + 50_000 + j(i, 2),
            });
        }
        out.sort_by_key(|o| (o.at, o.kind == MediaKind::Video));
        out
    }

    /// Observes each frame and converts it right away.
    fn outputs(tl: &mut Timeline, obs: &[Obs]) -> Vec<u64> {
        obs.iter()
            .map(|o| {
                tl.observe(o.kind, rate(o.kind), o.ts, o.at);
                tl.to_common_us(o.kind, o.ts).expect("observed")
            })
            .collect()
    }

    /// (first RTP timestamp, first arrival) pairs every scenario runs with, extremes included.
    fn starts() -> Vec<(u64, u64)> {
        let ts = [(1 << 31) + 1_000_000, 1 << 40, u64::MAX - (1 << 34)];
        let at = [0, 1_000_000_000, u64::MAX - 100_000_000];
        ts.iter()
            .flat_map(|&t| at.iter().map(move |&a| (t, a)))
            .collect()
    }

    /// What a sender does to its video frames with index in `from..to`.
    #[derive(Clone, Copy, Debug)]
    enum Edit {
        /// Adds this many ticks to the timestamps.
        Shift(u64, u64, i64),
        /// Does not send them.
        Skip(u64, u64),
    }

    fn edit(obs: &[Obs], edits: &[Edit]) -> Vec<Obs> {
        obs.iter()
            .filter_map(|&o| {
                let mut o = o;
                if o.kind != MediaKind::Video {
                    return Some(o);
                }
                for e in edits {
                    match *e {
                        Edit::Shift(from, to, by) if (from..to).contains(&o.i) => {
                            o.ts = o.ts.checked_add_signed(by).expect("test timestamps fit");
                        }
                        Edit::Skip(from, to) if (from..to).contains(&o.i) => return None,
                        _ => {}
                    }
                }
                Some(o)
            })
            .collect()
    }

    #[test]
    fn timestamp_jump_table() {
        use Edit::{Shift, Skip};
        const END: u64 = u64::MAX;
        const TWO_31: i64 = 1 << 31;
        // (name, edits to video, expected shift of video output from frame K on, in µs,
        // against the same stream without the edits). Audio must not move at all, video
        // before K neither, video from K on must be within a frame of the expectation (so the
        // A/V offset is kept within a frame unless a long gap is shortened).
        let cases: Vec<(&str, Vec<Edit>, i128)> = vec![
            (
                "(a) forward 2^31 ticks for good",
                vec![Shift(K, END, TWO_31)],
                0,
            ),
            (
                "(b) one frame 2^31 ticks ahead",
                vec![Shift(K, K + 1, TWO_31)],
                0,
            ),
            ("(c) back 10 s for good", vec![Shift(K, END, -900_000)], 0),
            (
                "(c) back 2^31 ticks for good",
                vec![Shift(K, END, -TWO_31)],
                0,
            ),
            (
                "(c) one frame 2^31 ticks back",
                vec![Shift(K, K + 1, -TWO_31)],
                0,
            ),
            (
                // Not a discontinuity (under MAX_AHEAD_US): absorbed by the floor, and the
                // video start is already fixed, so audio does not move.
                "forward 0.5 s for good",
                vec![Shift(K, END, 45_000)],
                0,
            ),
            (
                // Not a discontinuity (under MAX_BACK_US): followed as the timestamps say.
                "back 50 ms for good",
                vec![Shift(K, END, -4_500)],
                -50_000,
            ),
            (
                "(e) 200 ms pause then 10 s ahead: 200 ms gap",
                vec![Skip(K - 6, K), Shift(K, END, 900_000)],
                0,
            ),
            (
                // The arrival gap (5 s) is shortened to MAX_GAP_US: 151 frames of 33.3 ms
                // between the frames around the gap become 1 s.
                "(e) 5 s pause then 10 s ahead: gap shortened to 1 s",
                vec![Skip(K - 150, K), Shift(K, END, 900_000)],
                1_000_000 - 5_033_333,
            ),
            (
                "5 s pause without a jump: real gap kept",
                vec![Skip(K - 150, K)],
                0,
            ),
        ];
        for (name, edits, shift) in cases {
            for (ts0, at0) in starts() {
                let name = format!("{name} (ts0 {ts0}, at0 {at0})");
                let obs = av(10, ts0, at0, 50_000, 30_000);
                let base: std::collections::HashMap<(MediaKind, u64), u64> = obs
                    .iter()
                    .map(|o| (o.kind, o.i))
                    .zip(outputs(&mut Timeline::new(), &obs))
                    .collect();
                let edited = edit(&obs, &edits);
                let mut tl = Timeline::new();
                let got = outputs(&mut tl, &edited);
                assert!(!tl.uses_sender_reports(), "{name}");
                for (o, got) in edited.iter().zip(got) {
                    let want = base[&(o.kind, o.i)];
                    if o.kind == MediaKind::Audio || o.i < K {
                        assert_eq!(got, want, "{name}: {o:?}");
                    } else {
                        let want = i128::from(want) + shift;
                        let off = (i128::from(got) - want).abs();
                        assert!(off <= i128::from(FRAME), "{name}: {o:?} off by {off} µs");
                    }
                }
            }
        }
    }

    /// A 64-bit NTP time for `capture_us` after an arbitrary wall-clock instant.
    fn ntp(capture_us: u64) -> u64 {
        let secs = 3_900_000_000u64 + capture_us / 1_000_000;
        let frac = ((capture_us % 1_000_000) << 32) / 1_000_000;
        (secs << 32) | frac
    }

    /// What a sender report says, from the true (NTP, RTP) pair.
    #[derive(Clone, Copy, Debug)]
    enum Report {
        True,
        Ntp(u64),
        /// NTP seconds this far in the past.
        EarlySecs(u64),
        Rtp(u32),
    }

    impl Report {
        fn apply(self, ntp: u64, rtp: u32) -> (u64, u32) {
            match self {
                Report::True => (ntp, rtp),
                Report::Ntp(n) => (n, rtp),
                Report::EarlySecs(s) => (ntp - (s << 32), rtp),
                Report::Rtp(r) => (ntp, r),
            }
        }
    }

    /// Feeds `obs`; before the first frame arriving `sr_after_us` after `at0`, delivers the
    /// reports (audio about audio frame 100, video about video frame 50, each edited).
    fn outputs_with_reports(
        tl: &mut Timeline,
        obs: &[Obs],
        ts0: u64,
        at0: u64,
        sr_after_us: u64,
        reports: Option<(Report, Report)>,
    ) -> Vec<u64> {
        let mut pending = reports;
        obs.iter()
            .map(|o| {
                if o.at >= at0 + sr_after_us
                    && let Some((audio, video)) = pending.take()
                {
                    // The RTP timestamp on the wire: the low 32 bits.
                    let (n, r) = audio.apply(ntp(100 * 20_000), (ts0 + 100 * 960) as u32);
                    tl.on_sender_report(MediaKind::Audio, n, r);
                    let capture = 100_000 + 50 * 100_000 / 3;
                    let (n, r) = video.apply(ntp(capture), (ts0 + 50 * 3000) as u32);
                    tl.on_sender_report(MediaKind::Video, n, r);
                }
                tl.observe(o.kind, rate(o.kind), o.ts, o.at);
                tl.to_common_us(o.kind, o.ts).expect("observed")
            })
            .collect()
    }

    #[test]
    fn sender_report_bounds_table() {
        use Report::{EarlySecs, Ntp, Rtp, True};
        let skew = i128::from(MAX_SR_SKEW_US);
        // (name, audio report, video report, exact expected change of the A/V offset in µs).
        // Audio takes a path 80 ms slower than video. Whatever the reports say, each track
        // moves by at most MAX_SR_SKEW_US from where arrival alignment puts it, and so does
        // the A/V offset.
        let cases: Vec<(&str, Report, Report, Option<i128>)> = vec![
            ("true reports: video moves 80 ms", True, True, Some(80_000)),
            ("video NTP 0", True, Ntp(0), Some(-skew)),
            ("video NTP u64::MAX", True, Ntp(u64::MAX), Some(skew)),
            (
                "video NTP 100 years early",
                True,
                EarlySecs(3_155_760_000),
                Some(-skew),
            ),
            ("audio NTP 0", Ntp(0), True, Some(skew)),
            ("both NTP u64::MAX", Ntp(u64::MAX), Ntp(u64::MAX), None),
            ("both NTP 0", Ntp(0), Ntp(0), None),
            ("video RTP timestamp 0", True, Rtp(0), None),
            ("audio RTP timestamp u32::MAX", Rtp(u32::MAX), True, None),
        ];
        for (name, audio, video, exact) in cases {
            for (ts0, at0) in starts() {
                let name = format!("{name} (ts0 {ts0}, at0 {at0})");
                let obs = av(6, ts0, at0, 130_000, 30_000);
                let base = outputs(&mut Timeline::new(), &obs);
                let mut tl = Timeline::new();
                let got =
                    outputs_with_reports(&mut tl, &obs, ts0, at0, 3_000_000, Some((audio, video)));
                assert!(tl.uses_sender_reports(), "{name}");
                let mut shifts = [Vec::new(), Vec::new()];
                for ((o, got), base) in obs.iter().zip(got).zip(base) {
                    if o.at >= at0 + 3_000_000 {
                        let shift = i128::from(got) - i128::from(base);
                        shifts[usize::from(o.kind == MediaKind::Video)].push(shift);
                    }
                }
                let [a, v] = shifts.map(|s| {
                    assert!(s.windows(2).all(|w| w[0] == w[1]), "{name}: {s:?}");
                    s[0]
                });
                assert!(a.abs() <= skew && v.abs() <= skew, "{name}: {a} {v}");
                assert!((v - a).abs() <= skew, "{name}: {a} {v}");
                if let Some(exact) = exact {
                    assert!((v - a - exact).abs() <= 2, "{name}: {a} {v}");
                }
            }
        }
    }

    #[test]
    fn sender_report_is_dropped_at_a_segment_boundary_but_its_correction_kept() {
        // (name, video edits from frame K on). The true reports move video by 80 ms; a jump
        // afterwards must neither undo that nor keep the stale report.
        let cases: Vec<(&str, i64)> =
            vec![("forward 2^31 ticks", 1 << 31), ("back 10 s", -900_000)];
        for (name, by) in cases {
            for (ts0, at0) in starts() {
                let name = format!("{name} (ts0 {ts0}, at0 {at0})");
                let obs = av(10, ts0, at0, 130_000, 30_000);
                let reports = Some((Report::True, Report::True));
                let base =
                    outputs_with_reports(&mut Timeline::new(), &obs, ts0, at0, 3_000_000, reports);
                let edited = edit(&obs, &[Edit::Shift(K, u64::MAX, by)]);
                let mut tl = Timeline::new();
                let got = outputs_with_reports(&mut tl, &edited, ts0, at0, 3_000_000, reports);
                assert!(!tl.uses_sender_reports(), "{name}: stale video report kept");
                for ((o, got), base) in edited.iter().zip(got).zip(base) {
                    if o.kind == MediaKind::Audio || o.i < K {
                        assert_eq!(got, base, "{name}: {o:?}");
                    } else {
                        assert!(got.abs_diff(base) <= FRAME, "{name}: {o:?} {got} {base}");
                    }
                }
            }
        }
    }

    #[test]
    fn unwrapped_jumps_stay_continuous() {
        // Raw 32-bit timestamps through the depacketizer's unwrapper (which places a step of
        // 2^31 + 1 in the first cycle forward), no jitter: whatever the jump, persistent or a
        // one-frame spike, video keeps one-frame steps and audio is untouched.
        let firsts: [u32; 4] = [0, 1000, u32::MAX - 5000, 1 << 31];
        let jumps: [u32; 7] = [
            1 << 31,
            (1 << 31) + 1,
            (1 << 31) - 1,
            u32::MAX, // one tick back
            900_000,
            0u32.wrapping_sub(900_000),
            0u32.wrapping_sub(1 << 30),
        ];
        for first in firsts {
            for jump in jumps {
                for spike in [false, true] {
                    let name = format!("first {first} jump {jump} spike {spike}");
                    let mut tl = Timeline::new();
                    let mut unwrappers = [TsUnwrapper::new(), TsUnwrapper::new()];
                    let mut last: [Option<u64>; 2] = [None, None];
                    for o in av(10, 0, 1_000_000_000, 50_000, 0) {
                        let video = o.kind == MediaKind::Video;
                        let mut raw = first.wrapping_add(u32::try_from(o.ts).expect("small"));
                        if video && (o.i == K || (!spike && o.i > K)) {
                            raw = raw.wrapping_add(jump);
                        }
                        let ts = unwrappers[usize::from(video)].unwrap(raw);
                        tl.observe(o.kind, rate(o.kind), ts, o.at);
                        let out = tl.to_common_us(o.kind, ts).expect("observed");
                        if let Some(prev) = last[usize::from(video)] {
                            let step = out.abs_diff(prev);
                            if video {
                                assert!(
                                    (33_000..=34_000).contains(&step) && out > prev,
                                    "{name}: {o:?} step {step}"
                                );
                            } else {
                                assert_eq!(out, prev + 20_000, "{name}: {o:?}");
                            }
                        }
                        last[usize::from(video)] = Some(out);
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let kinds = [MediaKind::Audio, MediaKind::Video];
        let rates = [0, 1, 8_000, 90_000, u32::MAX];
        let ts = [
            0,
            1,
            1 << 31,
            (1 << 31) + 1,
            1 << 32,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        let at = [0, 1, 1 << 62, u64::MAX - 1, u64::MAX];
        let ntps = [0, 1, 1 << 63, u64::MAX];
        let rtps = [0, 1, 1 << 31, u32::MAX];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move |n: usize| -> usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_003) as usize % n
        };
        for _ in 0..100 {
            let mut tl = Timeline::new();
            for _ in 0..300 {
                let kind = kinds[rnd(2)];
                match rnd(4) {
                    0 => tl.on_sender_report(kind, ntps[rnd(ntps.len())], rtps[rnd(rtps.len())]),
                    _ => tl.observe(
                        kind,
                        rates[rnd(rates.len())],
                        ts[rnd(ts.len())],
                        at[rnd(at.len())],
                    ),
                }
                for k in kinds {
                    for t in ts {
                        let _ = tl.to_common_us(k, t);
                    }
                }
                let _ = tl.uses_sender_reports();
            }
        }
        // Every combination once, on a fresh timeline and on one that saw them all.
        let mut all = Timeline::new();
        for kind in kinds {
            for rate in rates {
                for t in ts {
                    for a in at {
                        let mut tl = Timeline::new();
                        tl.observe(kind, rate, t, a);
                        all.observe(kind, rate, t, a);
                        assert_eq!(tl.to_common_us(kind, t).is_some(), rate != 0);
                        for n in ntps {
                            for r in rtps {
                                tl.on_sender_report(kind, n, r);
                                all.on_sender_report(kind, n, r);
                                let _ = tl.to_common_us(kind, t);
                                let _ = all.to_common_us(kind, t);
                            }
                        }
                    }
                }
            }
        }
    }
}
