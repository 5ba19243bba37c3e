//! The container-independent part of recording: waiting for the first keyframe, rebasing
//! timestamps to the recording start, clamping non-monotonic timestamps, computing frame
//! durations, and interleaving audio and video in time order before the muxer sees them.
use super::helpers::rescale;
use super::mp4::Mp4Muxer;
use super::webm::WebmMuxer;
use super::{ContainerKind, MuxError, Sample, StreamHeader, Track, VideoHeader};
use crate::depack::opus::frame_samples as opus_duration;
use crate::depack::{h264, vp8};
use crate::{Codec, Frame, MediaKind};
use std::collections::VecDeque;
use std::io::{Seek, Write};

/// How long one track waits for the other before its frames are written anyway (µs).
const REORDER_US: u64 = 200_000;
/// Audio frames held while waiting for the first video keyframe (~5 s of 20 ms packets).
const MAX_HELD_AUDIO: usize = 250;
/// Duration given to the last video frame when no frame interval is known (90 kHz, 30 fps).
const DEFAULT_VIDEO_DURATION: u32 = 3000;

/// Most frame bytes the recorder holds in its interleave queues (both tracks together) before
/// it writes the oldest ones without waiting for the other track.
///
/// The queues are otherwise bounded by media time only (a sample waits at most `REORDER_US`
/// behind the newest one). When timestamps barely advance (repeated timestamps are clamped to
/// the previous one + 1 tick, so 200 ms is 18 000 video frames) or one track stalls, that
/// bound is no bound at all, and a sender could make the server hold any amount of memory.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// Most frames the recorder holds in its interleave queues (both tracks together); see
/// [`MAX_QUEUED_BYTES`].
pub const MAX_QUEUED_FRAMES: usize = 1024;

/// What to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The video codec (VP8 for WebM, H264 for MP4), or `None` for audio only.
    pub video: Option<Codec>,
    /// Whether there is an Opus track.
    pub audio: bool,
    /// Longest cluster/fragment in ms: what a crash can lose at most (1000 recommended).
    pub max_fragment_ms: u32,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            video: None,
            audio: true,
            max_fragment_ms: 1000,
        }
    }
}

/// The result of a finished (or recovered) recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    /// Duration of the file in ms (end of its last frame).
    pub duration_ms: u64,
    /// Video frames written.
    pub video_frames: u64,
    /// Audio frames written.
    pub audio_frames: u64,
    /// Video width from the first keyframe (0 without video).
    pub width: u32,
    /// Video height from the first keyframe (0 without video).
    pub height: u32,
    /// File length in bytes.
    pub bytes: u64,
    /// Frames not written: video before the first keyframe, audio older than the recording
    /// start, audio beyond the hold limit while waiting for a keyframe.
    pub dropped_frames: u64,
    /// Frames whose timestamp went backwards (or repeated) on their track and was moved forward.
    pub clamped_timestamps: u64,
}

enum Muxer {
    Webm(Box<WebmMuxer>),
    Mp4(Box<Mp4Muxer>),
}

/// Writes frames into a WebM or fragmented MP4 file as they arrive.
///
/// Frames may be pushed before the first video keyframe: video is dropped and audio held
/// (bounded) until it arrives; that keyframe's timestamp is the file's t=0 (without video,
/// the first audio frame's). Audio older than t=0 is dropped, except the frame still sounding
/// at t=0, which starts the audio track at 0. `Frame.ts` is in codec clock
/// units on a timeline common to audio and video.
pub struct Recorder<W: Write + Seek> {
    kind: ContainerKind,
    config: RecorderConfig,
    w: W,
    muxer: Option<Muxer>,
    held_audio: VecDeque<Frame>,
    t0_video: u64,
    t0_audio: u64,
    last_ts: [Option<u64>; 2],
    pending: [Option<Sample>; 2],
    queues: [VecDeque<Sample>; 2],
    /// Frame bytes in `queues` (both tracks), bounded by [`MAX_QUEUED_BYTES`].
    queued_bytes: usize,
    newest_us: u64,
    last_video_duration: u32,
    summary: Summary,
}

const fn idx(t: Track) -> usize {
    match t {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

fn us(s: &Sample) -> u64 {
    rescale(s.ts, s.track.clock_rate(), 1_000_000)
}

impl<W: Write + Seek> Recorder<W> {
    /// A recorder writing `kind` into `writer` (from its current position).
    /// Fails when the video codec does not fit the container (WebM: VP8, MP4: H264).
    pub fn new(kind: ContainerKind, writer: W, config: RecorderConfig) -> Result<Self, MuxError> {
        if let Some(codec) = config.video
            && (codec.kind() != MediaKind::Video || !kind.supports(codec))
        {
            return Err(MuxError::UnsupportedCodec { kind, codec });
        }
        Ok(Self {
            kind,
            config,
            w: writer,
            muxer: None,
            held_audio: VecDeque::new(),
            t0_video: 0,
            t0_audio: 0,
            last_ts: [None; 2],
            pending: [None, None],
            queues: [VecDeque::new(), VecDeque::new()],
            queued_bytes: 0,
            newest_us: 0,
            last_video_duration: 0,
            summary: Summary::default(),
        })
    }

    /// Whether the header has been written (the first keyframe arrived).
    pub fn started(&self) -> bool {
        self.muxer.is_some()
    }

    /// The writer (e.g. to check how much has been written).
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// Gives the writer back *without* finishing the file: nothing more is written, and the
    /// frames still held (interleave queues, the open cluster/fragment, audio waiting for the
    /// first keyframe) are lost.
    ///
    /// For when the writer failed (e.g. the disk is full): finishing would write again, so the
    /// caller closes the file instead and repairs it later from what is on disk with
    /// [`recover`](super::recover), exactly as after a crash.
    pub fn into_inner(self) -> W {
        self.w
    }

    /// (bytes, frames) held in the interleave queues, for tests of their bounds.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> (usize, usize) {
        (
            self.queued_bytes,
            self.queues[0].len() + self.queues[1].len(),
        )
    }

    /// Adds a frame. Errors are I/O errors and frames of an unconfigured track; a frame that
    /// cannot be used (e.g. video before the first keyframe) is dropped and counted.
    pub fn push(&mut self, frame: Frame) -> Result<(), MuxError> {
        let is_video = match frame.codec.kind() {
            MediaKind::Video => {
                if self.config.video != Some(frame.codec) {
                    return Err(MuxError::UnexpectedTrack(frame.codec));
                }
                true
            }
            MediaKind::Audio => {
                if !self.config.audio {
                    return Err(MuxError::UnexpectedTrack(frame.codec));
                }
                false
            }
        };
        if self.muxer.is_none() {
            if self.config.video.is_none() {
                self.start(None)?;
                self.t0_audio = frame.ts;
            } else if !is_video {
                self.held_audio.push_back(frame);
                if self.held_audio.len() > MAX_HELD_AUDIO {
                    self.held_audio.pop_front();
                    self.summary.dropped_frames += 1;
                }
                return Ok(());
            } else {
                let header = if frame.keyframe {
                    video_header(frame.codec, &frame.data)
                } else {
                    None
                };
                let Some(header) = header else {
                    self.summary.dropped_frames += 1;
                    return Ok(());
                };
                self.summary.width = header.width;
                self.summary.height = header.height;
                self.start(Some(header))?;
                self.t0_video = frame.ts;
                self.t0_audio = rescale(frame.ts, 90_000, 48_000);
                // The keyframe first, so it opens the first cluster/fragment.
                self.ingest(frame, true)?;
                for a in std::mem::take(&mut self.held_audio) {
                    self.ingest(a, false)?;
                }
                return Ok(());
            }
        }
        self.ingest(frame, is_video)
    }

    fn start(&mut self, video: Option<VideoHeader>) -> Result<(), MuxError> {
        let header = StreamHeader {
            video,
            audio_channels: self.config.audio.then_some(2),
        };
        let max = u64::from(self.config.max_fragment_ms.max(1));
        self.muxer = Some(match self.kind {
            ContainerKind::Webm => {
                Muxer::Webm(Box::new(WebmMuxer::start(&mut self.w, &header, max)?))
            }
            ContainerKind::Mp4 => Muxer::Mp4(Box::new(Mp4Muxer::start(&mut self.w, &header, max)?)),
        });
        Ok(())
    }

    fn ingest(&mut self, frame: Frame, is_video: bool) -> Result<(), MuxError> {
        let (track, t0) = if is_video {
            (Track::Video, self.t0_video)
        } else {
            (Track::Audio, self.t0_audio)
        };
        let i = idx(track);
        // The audio frame that was still sounding at t=0 opens the audio track at 0: tracks
        // aligned by arrival time can put it a few ms before the keyframe, and dropping it
        // would lose the first 20 ms of sound. Older audio is dropped.
        let sounding_at_t0 = !is_video
            && self.last_ts[i].is_none()
            && t0 - frame.ts.min(t0) < u64::from(opus_duration(&frame.data));
        if frame.ts < t0 && !sounding_at_t0 {
            self.summary.dropped_frames += 1;
            return Ok(());
        }
        let mut ts = frame.ts.saturating_sub(t0);
        if let Some(last) = self.last_ts[i]
            && ts <= last
        {
            // Saturating: a corrupt or hostile timestamp near u64::MAX must not overflow.
            ts = last.saturating_add(1);
            self.summary.clamped_timestamps += 1;
        }
        self.last_ts[i] = Some(ts);
        let sample = Sample {
            track,
            ts,
            duration: if is_video {
                0
            } else {
                opus_duration(&frame.data)
            },
            keyframe: !is_video || frame.keyframe,
            data: frame.data,
        };
        if is_video {
            self.summary.video_frames += 1;
        } else {
            self.summary.audio_frames += 1;
        }
        self.newest_us = self.newest_us.max(us(&sample));
        if let Some(mut prev) = self.pending[i].replace(sample) {
            prev.duration = u32::try_from(ts.saturating_sub(prev.ts))
                .unwrap_or(u32::MAX)
                .max(1);
            if is_video {
                self.last_video_duration = prev.duration;
            }
            self.queued_bytes = self.queued_bytes.saturating_add(prev.data.len());
            self.queues[i].push_back(prev);
        }
        self.drain(false)
    }

    /// Writes queued samples in time order; without `force`, a sample waits until the other
    /// track has caught up or REORDER_US have passed.
    ///
    /// While the queues hold more than [`MAX_QUEUED_BYTES`] or [`MAX_QUEUED_FRAMES`], samples
    /// are written as if `force` were set: media time alone does not bound the queues (see
    /// [`MAX_QUEUED_BYTES`]). A sample written early only costs interleaving (the other
    /// track's late samples follow it in the file, which the muxers and demuxers accept).
    fn drain(&mut self, force: bool) -> Result<(), MuxError> {
        let Some(muxer) = self.muxer.as_mut() else {
            return Ok(());
        };
        let configured = [self.config.video.is_some(), self.config.audio];
        loop {
            let fronts = [
                self.queues[0].front().map(us),
                self.queues[1].front().map(us),
            ];
            let pick = match fronts {
                [Some(v), Some(a)] => usize::from(a < v),
                [Some(_), None] => 0,
                [None, Some(_)] => 1,
                [None, None] => break,
            };
            let t = fronts[pick].unwrap_or(0);
            let other = 1 - pick;
            let other_t = self.queues[other]
                .front()
                .or(self.pending[other].as_ref())
                .map(us);
            let wait = match other_t {
                Some(ot) => ot < t,
                None => configured[other],
            };
            let over = self.queued_bytes > MAX_QUEUED_BYTES
                || self.queues[0].len() + self.queues[1].len() > MAX_QUEUED_FRAMES;
            if wait && !force && !over && t.saturating_add(REORDER_US) > self.newest_us {
                break;
            }
            let Some(s) = self.queues[pick].pop_front() else {
                break;
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(s.data.len());
            match muxer {
                Muxer::Webm(m) => m.push(&mut self.w, &s)?,
                Muxer::Mp4(m) => m.push(&mut self.w, &s)?,
            }
        }
        Ok(())
    }

    /// Finalizes the file (durations, index, sizes) and returns what was recorded.
    /// `MuxError::Empty` when nothing could be written (the writer is then untouched).
    pub fn finish(self) -> Result<Summary, MuxError> {
        self.finish_into_inner().map(|(s, _)| s)
    }

    /// Like [`Recorder::finish`], also giving the writer back.
    pub fn finish_into_inner(mut self) -> Result<(Summary, W), MuxError> {
        if self.muxer.is_none() {
            return Err(MuxError::Empty);
        }
        for i in 0..2 {
            if let Some(mut p) = self.pending[i].take() {
                if p.track == Track::Video {
                    p.duration = if self.last_video_duration > 0 {
                        self.last_video_duration
                    } else {
                        DEFAULT_VIDEO_DURATION
                    };
                }
                self.queued_bytes = self.queued_bytes.saturating_add(p.data.len());
                self.queues[i].push_back(p);
            }
        }
        self.drain(true)?;
        let (bytes, duration_ms) = match self.muxer.as_mut() {
            Some(Muxer::Webm(m)) => m.finish(&mut self.w)?,
            Some(Muxer::Mp4(m)) => m.finish(&mut self.w)?,
            None => return Err(MuxError::Empty),
        };
        self.summary.bytes = bytes;
        self.summary.duration_ms = duration_ms;
        Ok((self.summary, self.w))
    }
}

/// Dimensions (and H264 parameter sets) from a keyframe; `None` if it cannot start a file.
fn video_header(codec: Codec, data: &[u8]) -> Option<VideoHeader> {
    match codec {
        Codec::Vp8 => {
            let (width, height) =
                vp8::frame_dimensions(data).map(|(w, h)| (u32::from(w), u32::from(h)))?;
            Some(VideoHeader {
                width,
                height,
                sps: Vec::new(),
                pps: Vec::new(),
            })
        }
        Codec::H264 => {
            let (sps, pps) = h264::parameter_sets(data);
            let (sps, pps) = (sps?, pps?);
            let (width, height) = h264::sps_dimensions(sps)?;
            (sps.len() >= 4).then(|| VideoHeader {
                width,
                height,
                sps: sps.to_vec(),
                pps: pps.to_vec(),
            })
        }
        Codec::Opus => None,
    }
}
