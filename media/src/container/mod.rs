//! WebM (VP8 + Opus) and fragmented MP4 (H264 + Opus). See DESIGN.md.
//!
//! - [`Recorder`] writes a file incrementally (a crash loses at most the open cluster/fragment,
//!   ~`max_fragment_ms`, and at most [`MAX_CLUSTER_BYTES`] / [`MAX_FRAGMENT_BYTES`] of media)
//!   and [`Recorder::finish`] patches durations and indexes.
//! - [`Demuxer`] reads frames back in decode order, tolerating truncation at any byte.
//! - [`recover`] turns a file left behind by a crash into a finished one.
//!
//! Memory held while recording is bounded by bytes and frame counts, not only by media time
//! (a sender controls the timestamps): the interleave queues by [`MAX_QUEUED_BYTES`] /
//! [`MAX_QUEUED_FRAMES`], the open WebM cluster by [`MAX_CLUSTER_BYTES`], the open MP4
//! fragment by [`MAX_FRAGMENT_BYTES`] / [`MAX_FRAGMENT_SAMPLES`].
//!
//! Sub-modules: `ebml` (EBML subset), `webm`, `mp4` (on `mp4-atom`), `recorder`.
use crate::{Codec, Frame};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Seek, SeekFrom, Write};

mod ebml;
mod helpers;
mod mp4;
mod recorder;
mod webm;
mod window;

#[cfg(test)]
mod tests;

pub use mp4::{MAX_FRAGMENT_BYTES, MAX_FRAGMENT_SAMPLES};
pub use recorder::{MAX_QUEUED_BYTES, MAX_QUEUED_FRAMES, Recorder, RecorderConfig, Summary};
pub use webm::MAX_CLUSTER_BYTES;

/// The container formats the server records to and plays from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    /// WebM: VP8 video, Opus audio.
    Webm,
    /// Fragmented MP4: H264 video, Opus audio.
    Mp4,
}

impl ContainerKind {
    /// The container used for a video codec: VP8 → WebM, H264 → MP4; `None` for audio codecs.
    pub const fn for_video(codec: Codec) -> Option<ContainerKind> {
        match codec {
            Codec::Vp8 => Some(ContainerKind::Webm),
            Codec::H264 => Some(ContainerKind::Mp4),
            Codec::Opus => None,
        }
    }

    /// File name extension without the dot: `webm` or `mp4`.
    pub const fn extension(self) -> &'static str {
        match self {
            ContainerKind::Webm => "webm",
            ContainerKind::Mp4 => "mp4",
        }
    }

    /// MIME type for HTTP responses: `video/webm` or `video/mp4`.
    pub const fn mime_type(self) -> &'static str {
        match self {
            ContainerKind::Webm => "video/webm",
            ContainerKind::Mp4 => "video/mp4",
        }
    }

    /// Whether this container can hold `codec`.
    pub const fn supports(self, codec: Codec) -> bool {
        matches!(
            (self, codec),
            (_, Codec::Opus)
                | (ContainerKind::Webm, Codec::Vp8)
                | (ContainerKind::Mp4, Codec::H264)
        )
    }
}

/// The tracks of a clip, as the demuxer found them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrackInfo {
    /// The video track, if any.
    pub video: Option<VideoTrack>,
    /// The audio track, if any.
    pub audio: Option<AudioTrack>,
}

/// A video track: codec and coded size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoTrack {
    /// `Codec::Vp8` or `Codec::H264`.
    pub codec: Codec,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// An (Opus) audio track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// Output channel count (2 for what the recorder writes).
    pub channels: u8,
    /// Sample rate in Hz (48000 for Opus).
    pub sample_rate: u32,
}

/// Errors while recording or recovering a file.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The writer failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The configuration asks for a codec the container cannot hold (e.g. H264 in WebM).
    #[error("{codec:?} cannot be stored in {kind:?}")]
    UnsupportedCodec {
        /// The container.
        kind: ContainerKind,
        /// The codec it cannot hold.
        codec: Codec,
    },
    /// A frame of a codec the recorder was not configured for.
    #[error("the recorder is not configured for {0:?} frames")]
    UnexpectedTrack(Codec),
    /// `finish` before anything could be written (no video keyframe arrived, or no frame at all).
    #[error("nothing was recorded (no usable first keyframe)")]
    Empty,
    /// A fragment or the file grew past what the format's size fields can hold.
    #[error("fragment too large for the container")]
    TooLarge,
    /// Building an MP4 box failed.
    #[error("mp4 box encoding failed: {0}")]
    Mp4(#[from] mp4_atom::Error),
    /// [`recover`] could not read the file's header.
    #[error("cannot recover: {0}")]
    Damaged(#[from] DemuxError),
    /// [`recover`] found a file it cannot repair in place (not written by this recorder).
    #[error("cannot recover: {0}")]
    Unrecoverable(&'static str),
}

/// Errors while reading a file.
#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    /// The reader failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The bytes do not start like a file of this kind.
    #[error("not a {0:?} file")]
    NotRecognized(ContainerKind),
    /// The file ends before its header (tracks) is complete.
    #[error("file ends before its header is complete")]
    Truncated,
    /// Structurally invalid data.
    #[error("invalid data: {0}")]
    Invalid(&'static str),
    /// Valid but not supported here (laced blocks, non-fragmented MP4, ...).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// No track with a codec we can play.
    #[error("no track with a supported codec")]
    NoTracks,
    /// An MP4 box did not decode.
    #[error("mp4 box decoding failed: {0}")]
    Mp4(#[from] mp4_atom::Error),
}

/// Files that can be cut to a length: what [`recover`] needs beyond `Read + Write + Seek`.
pub trait Truncate {
    /// Sets the length to `len` bytes, dropping everything after.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Truncate for std::fs::File {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

impl Truncate for io::Cursor<Vec<u8>> {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.get_mut().truncate(len);
        if self.position() > len as u64 {
            self.set_position(len as u64);
        }
        Ok(())
    }
}

impl<T: Truncate + ?Sized> Truncate for &mut T {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        (**self).truncate(len)
    }
}

/// Reads a recorded file back as frames.
pub struct Demuxer<R: Read + Seek> {
    inner: DemuxInner<window::WindowReader<R>>,
}

enum DemuxInner<R> {
    Webm(webm::WebmDemuxer<R>),
    Mp4(mp4::Mp4Demuxer<R>),
}

impl<R: Read + Seek> Demuxer<R> {
    /// Reads the header (tracks) of a `kind` file. Fails on anything that is not such a file,
    /// or when the file ends before its tracks are described.
    pub fn open(kind: ContainerKind, reader: R) -> Result<Self, DemuxError> {
        let reader = window::WindowReader::new(reader);
        let inner = match kind {
            ContainerKind::Webm => DemuxInner::Webm(webm::WebmDemuxer::open(reader)?),
            ContainerKind::Mp4 => DemuxInner::Mp4(mp4::Mp4Demuxer::open(reader)?),
        };
        Ok(Self { inner })
    }

    /// The tracks found in the header.
    pub fn info(&self) -> &TrackInfo {
        match &self.inner {
            DemuxInner::Webm(d) => d.info(),
            DemuxInner::Mp4(d) => d.info(),
        }
    }

    /// The next frame in decode order, `ts` in codec clock units from the clip start
    /// (WebM stores milliseconds, so its timestamps are quantized to 1 ms).
    /// H264 frames are Annex B, IDR frames carry SPS/PPS. `Ok(None)` at the end of the file,
    /// including a file truncated anywhere: every complete frame before the cut comes out first.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DemuxError> {
        match &mut self.inner {
            DemuxInner::Webm(d) => d.next_frame(),
            DemuxInner::Mp4(d) => d.next_frame(),
        }
    }
}

/// Repairs a file left behind by a crash (recording state on startup): cuts it back to its last
/// complete cluster/fragment, writes the index (Cues / mfra), patches durations and sizes, and
/// truncates what is left. Also works on a finished file (re-finalizes it).
/// `Summary::bytes` is the new file length.
pub fn recover<F: Read + Write + Seek + Truncate>(
    kind: ContainerKind,
    file: &mut F,
) -> Result<Summary, MuxError> {
    let s = match kind {
        ContainerKind::Webm => {
            let r = webm::recover(file)?;
            (
                r.end,
                r.duration_ms,
                r.video_frames,
                r.audio_frames,
                r.width,
                r.height,
            )
        }
        ContainerKind::Mp4 => {
            let r = mp4::recover(file)?;
            (
                r.end,
                r.duration_ms,
                r.video_frames,
                r.audio_frames,
                r.width,
                r.height,
            )
        }
    };
    file.truncate(s.0)?;
    file.flush()?;
    Ok(Summary {
        duration_ms: s.1,
        video_frames: s.2,
        audio_frames: s.3,
        width: s.4,
        height: s.5,
        bytes: s.0,
        dropped_frames: 0,
        clamped_timestamps: 0,
    })
}

// ------------------------------------------------------------ shared internals

/// Which track of a recording a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Track {
    Video,
    Audio,
}

impl Track {
    pub(crate) const fn clock_rate(self) -> u32 {
        match self {
            Track::Video => 90_000,
            Track::Audio => 48_000,
        }
    }
}

/// A frame ready for a muxer: timestamp relative to the recording start, with a duration.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub track: Track,
    pub ts: u64,
    pub duration: u32,
    pub keyframe: bool,
    pub data: bytes::Bytes,
}

/// What a muxer needs to write the header.
#[derive(Clone, Debug)]
pub(crate) struct StreamHeader {
    pub video: Option<VideoHeader>,
    pub audio_channels: Option<u8>,
}

#[derive(Clone, Debug)]
pub(crate) struct VideoHeader {
    pub width: u32,
    pub height: u32,
    /// H264 only: first SPS and PPS NAL units (without start codes).
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// Length of a seekable stream (restores nothing: callers seek before every read).
pub(crate) fn stream_len<S: Seek>(s: &mut S) -> io::Result<u64> {
    s.seek(SeekFrom::End(0))
}

/// Reads exactly `n` bytes at `pos`.
pub(crate) fn read_at<R: Read + Seek>(r: &mut R, pos: u64, n: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0; n];
    r.read_exact(&mut buf)?;
    Ok(buf)
}
