//! Sans-IO media core of pion-the-sky.
//!
//! Everything here is a plain state machine over bytes and integers: no tokio, no sockets,
//! no files, no webrtc types. The server feeds it packets/frames and the current time and
//! writes what comes out.
//!
//! Data flows one way in each direction:
//!
//! ```text
//! record: RtpPacket -> depack::Depacketizer -> Frame -> timeline -> recorder/container -> bytes
//! play:   bytes -> container demuxer -> Frame -> schedule::Scheduler(now) -> packetize -> RtpPacket
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod container;
pub mod depack;
pub mod elementary;
pub mod forward;
pub mod fuzz;
pub mod packetize;
pub mod rtp;
pub mod schedule;
pub mod timeline;

pub use codec::{Codec, MediaKind};

use bytes::Bytes;

/// One encoded media frame (a video access unit or one Opus packet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub codec: Codec,
    /// Presentation timestamp in the codec's clock units (90 kHz for video, 48 kHz for Opus).
    /// When a frame comes out of the depacketizer this is the *unwrapped RTP timestamp*
    /// (first packet of the stream = its RTP timestamp, then monotonically extended past 2^32).
    /// After `timeline` it is relative to the recording's start (0 = start), which is what the
    /// containers store and return.
    pub ts: u64,
    /// Video: the frame is a keyframe (VP8 key frame / H264 IDR). Audio: always true.
    pub keyframe: bool,
    /// VP8: the raw VP8 frame. H264: Annex B byte stream (00 00 00 01 start codes) holding all
    /// NAL units of the access unit; keyframes carry SPS and PPS before the IDR.
    /// Opus: one Opus packet.
    pub data: Bytes,
}
