//! Tracks onto one clock (record path). See DESIGN.md.
//!
//! Each track's RTP clock is tied to the receiver's clock by its *offset floor*: the minimum
//! of `arrival_us - media_us` over everything observed. Network jitter only ever delays packets,
//! so the minimum is the best estimate of "capture time + constant transit" and is not skewed by
//! jitter the way an average or the first packet would be. When every track has an RTCP sender
//! report, the sender's NTP clock ties the tracks together instead (exact capture sync).
//!
//! Within a track, output times follow the RTP timestamps exactly (no jitter); only the offset
//! *between* tracks comes from arrivals or NTP. The earliest track start is time 0. The offset
//! floors converge over the first packets, so early on a track may shift by up to the jitter
//! seen so far; consumers that need strictly increasing timestamps should clamp.
use crate::MediaKind;

/// Per-track state.
#[derive(Clone, Debug)]
struct Track {
    clock_rate: u32,
    /// First observed unwrapped RTP timestamp: the reference for `floor_us`.
    ref_ts: u64,
    /// Lowest observed unwrapped RTP timestamp: the track's start.
    min_ts: u64,
    /// Highest observed unwrapped RTP timestamp (to unwrap sender-report timestamps).
    max_ts: u64,
    /// Minimum of `arrival_us - media_us(ts - ref_ts)`: the arrival-clock time of `ref_ts`.
    floor_us: i128,
    /// Latest sender report, as (NTP µs, unwrapped RTP timestamp).
    sr: Option<(i128, u64)>,
}

impl Track {
    /// µs from RTP timestamp `from` to `to` (negative when `to` is earlier).
    fn span_us(&self, from: u64, to: u64) -> i128 {
        (i128::from(to) - i128::from(from)) * 1_000_000 / i128::from(self.clock_rate)
    }

    fn set_sr(&mut self, ntp: u64, rtp_ts: u32) {
        let cycle = 1i128 << 32;
        let reference = i128::from(self.max_ts);
        let mut ts = (reference & !(cycle - 1)) | i128::from(rtp_ts);
        if ts - reference > cycle / 2 {
            ts -= cycle;
        } else if reference - ts >= cycle / 2 {
            ts += cycle;
        }
        if let Ok(ts) = u64::try_from(ts) {
            self.sr = Some((ntp_to_us(ntp), ts));
        }
    }

    /// Time of RTP timestamp `ts` on the reference clock: NTP (µs) from the sender report
    /// when `ntp` and one is known, else the receiver's arrival clock.
    fn time_us(&self, ts: u64, ntp: bool) -> i128 {
        match self.sr {
            Some((ntp_us, sr_ts)) if ntp => ntp_us + self.span_us(sr_ts, ts),
            _ => self.floor_us + self.span_us(self.ref_ts, ts),
        }
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

    /// Records that media at `rtp_ts_unwrapped` (in `clock_rate` units) arrived at
    /// `arrival_us` (any monotonic µs clock, the same for all tracks). Call it for every packet
    /// or every frame. The first call for a track fixes its clock rate; `clock_rate == 0` is
    /// ignored.
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
        let slot = self.track_mut(kind);
        let track = slot.get_or_insert_with(|| Track {
            clock_rate,
            ref_ts: rtp_ts_unwrapped,
            min_ts: rtp_ts_unwrapped,
            max_ts: rtp_ts_unwrapped,
            floor_us: i128::from(arrival_us),
            sr: None,
        });
        let offset = i128::from(arrival_us) - track.span_us(track.ref_ts, rtp_ts_unwrapped);
        track.floor_us = track.floor_us.min(offset);
        track.min_ts = track.min_ts.min(rtp_ts_unwrapped);
        track.max_ts = track.max_ts.max(rtp_ts_unwrapped);
        if let Some(i) = self.pending_sr.iter().position(|p| p.0 == kind) {
            let (_, ntp, rtp_ts) = self.pending_sr.remove(i);
            self.on_sender_report(kind, ntp, rtp_ts);
        }
    }

    /// Records an RTCP sender report for a track: NTP time `ntp` (64-bit 32.32 format)
    /// corresponds to RTP timestamp `rtp_ts`. Once every observed track has one, tracks are
    /// aligned by NTP instead of by arrival.
    pub fn on_sender_report(&mut self, kind: MediaKind, ntp: u64, rtp_ts: u32) {
        match self.track_mut(kind) {
            Some(track) => track.set_sr(ntp, rtp_ts),
            None => {
                // Kept until the first packet gives the clock rate and the wrap cycle.
                self.pending_sr.retain(|p| p.0 != kind);
                self.pending_sr.push((kind, ntp, rtp_ts));
            }
        }
    }

    /// True when tracks are currently aligned by sender reports (every observed track has one).
    pub fn uses_sender_reports(&self) -> bool {
        let tracks = [self.audio.as_ref(), self.video.as_ref()];
        let present: Vec<&Track> = tracks.into_iter().flatten().collect();
        !present.is_empty() && present.iter().all(|t| t.sr.is_some())
    }

    /// Media time of `rtp_ts_unwrapped` on the session timeline in µs: the same zero for audio
    /// and video (the earliest track start), A/V offset as captured. `None` until `kind` has
    /// been observed. Times before the session start saturate to 0.
    pub fn to_common_us(&self, kind: MediaKind, rtp_ts_unwrapped: u64) -> Option<u64> {
        let track = self.track(kind)?;
        let ntp = self.uses_sender_reports();
        let zero = [self.audio.as_ref(), self.video.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.time_us(t.min_ts, ntp))
            .min()?;
        let t = track.time_us(rtp_ts_unwrapped, ntp) - zero;
        Some(u64::try_from(t.max(0)).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;

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
    fn sender_reports_override_arrival() {
        // Audio goes through a path 80 ms slower: arrival alignment is off by 80 ms, NTP is not.
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
        let err = max_error(&mut tl, &sims, 100);
        assert!(err <= 100, "NTP alignment error {err} µs");
    }

    #[test]
    fn sender_report_before_first_packet_and_unknown_tracks() {
        let mut tl = Timeline::new();
        assert_eq!(tl.to_common_us(MediaKind::Audio, 0), None);
        tl.observe(MediaKind::Video, 0, 1, 1); // clock rate 0 is ignored
        assert_eq!(tl.to_common_us(MediaKind::Video, 1), None);

        // Audio SR arrives first; its NTP says audio started 300 ms after video.
        tl.on_sender_report(MediaKind::Audio, (10 << 32) | (1 << 31), 48_000);
        tl.on_sender_report(MediaKind::Video, 10 << 32, 90_000 * 2);
        tl.observe(MediaKind::Video, 90_000, 90_000 * 2 - 18_000, 5_000_000);
        tl.observe(MediaKind::Audio, 48_000, 48_000 - 9_600, 9_000_000);
        assert!(tl.uses_sender_reports());
        // Video: first ts is 200 ms before its SR point (NTP 10.0 s) -> 9.8 s.
        // Audio: first ts is 200 ms before its SR point (NTP 10.5 s) -> 10.3 s.
        assert_eq!(
            tl.to_common_us(MediaKind::Video, 90_000 * 2 - 18_000),
            Some(0)
        );
        assert_eq!(
            tl.to_common_us(MediaKind::Audio, 48_000 - 9_600),
            Some(500_000)
        );
        assert_eq!(tl.to_common_us(MediaKind::Audio, 48_000), Some(700_000));
    }
}
