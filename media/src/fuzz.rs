//! Fuzz entry points: plain functions over untrusted bytes, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` and by the regression replay test (`tests/fuzz_regressions.rs`).
//!
//! Contract: none of these functions may panic, whatever the input. A panic (including an
//! arithmetic overflow, which fuzz builds check) or an abort is a bug in the code under test.
//! The few `assert!`s below state documented invariants of the APIs they call.
//!
//! Input layouts are documented on each function; every layout accepts every byte string
//! (missing bytes read as zero / end the stream), so the fuzzer never wastes inputs.
use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::container::{self, ContainerKind, Demuxer, Recorder, RecorderConfig};
use crate::depack::{Depacketizer, h264, opus, vp8};
use crate::rtp::RtpPacket;
use crate::{Codec, Frame};

/// Upper bound on frames read from one demuxer (keeps every run finite and fast).
pub const MAX_FRAMES: usize = 100_000;

/// A byte reader that never fails: past the end it yields zeros / empty slices.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// Reads every frame a `kind` demuxer finds in `bytes` (at most [`MAX_FRAMES`]).
fn demux_all(kind: ContainerKind, bytes: &[u8]) {
    let Ok(mut demuxer) = Demuxer::open(kind, Cursor::new(bytes)) else {
        return;
    };
    let _ = demuxer.info();
    for _ in 0..MAX_FRAMES {
        match demuxer.next_frame() {
            Ok(Some(frame)) => inspect_frame(&frame),
            Ok(None) | Err(_) => break,
        }
    }
}

/// Runs the public codec helpers over a frame that came out of the core.
fn inspect_frame(frame: &Frame) {
    match frame.codec {
        Codec::H264 => {
            let _ = h264::is_idr(&frame.data);
            let (sps, _pps) = h264::parameter_sets(&frame.data);
            if let Some(sps) = sps {
                let _ = h264::sps_dimensions(sps);
            }
        }
        Codec::Vp8 => {
            let _ = vp8::is_keyframe(&frame.data);
            let _ = vp8::frame_dimensions(&frame.data);
        }
        Codec::Opus => {
            let _ = opus::packet_samples(&frame.data);
            let _ = opus::is_stereo(&frame.data);
        }
    }
}

/// RTP -> frames: [`RtpPacket::parse`] and [`Depacketizer`] (push, pop, keyframe requests,
/// flush).
///
/// Layout: byte 0 picks the codec (`b % 3`: H264, VP8, Opus) and the reorder window
/// (`b >> 2`; 0 = the default window). Then records until the input ends, each starting with
/// a tag byte:
/// - tag bit 7 clear, *raw*: a big-endian `u16` length and that many bytes, given to
///   [`RtpPacket::parse`] as a whole RTP packet (dropped when it does not parse);
/// - tag bit 7 set, *structured*: a packet built from small deltas so the fuzzer easily makes
///   plausible streams (reordering, duplicates, loss, wrap-around):
///   tag bit 0 = marker; tag bits 1-2 = timestamp step (0 same, 1 `+ byte * 100`,
///   2 `- byte`, 3 absolute `u32`); then a sequence delta byte (`(b as i8) + 1`, so 0 is
///   the next packet), the timestamp byte(s), a payload length byte and the payload.
pub fn depack(data: &[u8]) {
    let mut input = Input::new(data);
    let first = input.u8();
    let codec = match first % 3 {
        0 => Codec::H264,
        1 => Codec::Vp8,
        _ => Codec::Opus,
    };
    let mut depacketizer = Depacketizer::new(codec);
    let window = usize::from(first >> 2);
    if window > 0 {
        depacketizer = depacketizer.with_reorder_window(window);
    }
    let mut seq: u16 = 0;
    let mut ts: u32 = 0;
    while !input.is_empty() {
        let tag = input.u8();
        let packet = if tag & 0x80 == 0 {
            let len = usize::from(input.u16());
            let raw = input.bytes(len);
            let parsed = RtpPacket::parse(raw);
            assert_eq!(
                parsed,
                RtpPacket::parse_bytes(Bytes::copy_from_slice(raw)),
                "RtpPacket::parse and parse_bytes disagree"
            );
            let Ok(packet) = parsed else {
                continue;
            };
            assert_eq!(
                RtpPacket::parse(&packet.to_bytes()).as_ref(),
                Ok(&packet),
                "RtpPacket::to_bytes does not round-trip"
            );
            packet
        } else {
            let delta = (input.u8() as i8).wrapping_add(1);
            seq = seq.wrapping_add_signed(i16::from(delta));
            ts = match (tag >> 1) & 0x03 {
                0 => ts,
                1 => ts.wrapping_add(u32::from(input.u8()) * 100),
                2 => ts.wrapping_sub(u32::from(input.u8())),
                _ => input.u32(),
            };
            let len = usize::from(input.u8());
            RtpPacket {
                payload_type: 96,
                sequence_number: seq,
                timestamp: ts,
                ssrc: 0x1234_5678,
                marker: tag & 0x01 != 0,
                payload: Bytes::copy_from_slice(input.bytes(len)),
            }
        };
        depacketizer.push(packet);
        drain(&mut depacketizer, codec);
        let _ = depacketizer.take_keyframe_request();
    }
    depacketizer.flush();
    drain(&mut depacketizer, codec);
    let _ = depacketizer.take_keyframe_request();
    let _ = depacketizer.stats();
}

fn drain(depacketizer: &mut Depacketizer, codec: Codec) {
    while let Some(frame) = depacketizer.pop() {
        assert_eq!(frame.codec, codec, "a depacketizer returned another codec");
        inspect_frame(&frame);
    }
}

/// [`Demuxer`] over arbitrary bytes as WebM: every frame until the end or an error.
pub fn webm_demux(data: &[u8]) {
    demux_all(ContainerKind::Webm, data);
}

/// [`Demuxer`] over arbitrary bytes as fragmented MP4: every frame until the end or an error.
pub fn mp4_demux(data: &[u8]) {
    demux_all(ContainerKind::Mp4, data);
}

/// [`container::recover`] over arbitrary bytes, as WebM and as MP4 (each on its own copy);
/// what a successful recovery leaves is demuxed again.
pub fn recover(data: &[u8]) {
    for kind in [ContainerKind::Webm, ContainerKind::Mp4] {
        recover_and_demux(kind, data.to_vec());
    }
}

fn recover_and_demux(kind: ContainerKind, bytes: Vec<u8>) {
    let mut file = Cursor::new(bytes);
    if container::recover(kind, &mut file).is_ok() {
        demux_all(kind, file.get_ref());
    }
}

/// A VP8 key frame header for 64x48 (frame tag, start code, dimensions).
const VP8_KEY_HEADER: [u8; 10] = [0x50, 0x1a, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00];
/// An H264 SPS (constrained baseline, 64x48) and PPS, from `tests/fixtures/testsrc_64x48.h264`.
const H264_SPS: [u8; 21] = [
    0x67, 0x42, 0xc0, 0x0a, 0xda, 0x11, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00,
    0x0f, 0x03, 0xc4, 0x89, 0xa8,
];
const H264_PPS: [u8; 4] = [0x68, 0xce, 0x0f, 0xc8];
/// The NAL header of an IDR slice (nal_ref_idc 3, type 5).
const H264_IDR_HEADER: [u8; 1] = [0x65];

/// Frames -> [`Recorder`] -> bytes: the recorder's timestamp arithmetic (rebasing, clamping,
/// durations, interleaving) and both muxers, then `finish`. The file as it was just before
/// `finish` (what a crash leaves) goes through `recover`, and both files are demuxed again.
///
/// Layout: byte 0 is the configuration: bit 0 the container (WebM with VP8 / MP4 with H264),
/// bit 1 a video track, bit 2 an audio track, bits 3-7 `max_fragment_ms / 100`. Then frames
/// until the input ends, each a flag byte, timestamp byte(s), a length byte and the data:
/// - flag bit 0: audio (Opus) instead of video;
/// - flag bit 1: keyframe;
/// - flag bits 2-3: timestamp, per track: 0 `previous + byte * step` (step 300 for video,
///   160 for audio), 1 `previous - byte`, 2 absolute `u64` (any value), 3 `previous`;
/// - flag bit 4: video data starts with a valid key frame header (VP8 frame header, or H264
///   SPS + PPS + IDR NAL header) so the recording can start;
/// - flag bit 5: video frames carry the other video codec (an unexpected track).
///
/// Like the server, the first error from `push` ends the recording without `finish` (what was
/// written is then only recovered, as the server's store repairs it).
pub fn recorder(data: &[u8]) {
    let mut input = Input::new(data);
    let conf = input.u8();
    let (kind, video) = if conf & 0x01 == 0 {
        (ContainerKind::Webm, Codec::Vp8)
    } else {
        (ContainerKind::Mp4, Codec::H264)
    };
    let config = RecorderConfig {
        video: (conf & 0x02 != 0).then_some(video),
        audio: conf & 0x04 != 0,
        max_fragment_ms: u32::from(conf >> 3) * 100,
    };
    let Ok(mut rec) = Recorder::new(kind, Cursor::new(Vec::new()), config) else {
        return;
    };
    // Previous timestamp per track: [video, audio].
    let mut prev: [u64; 2] = [0, 0];
    let mut failed = false;
    while !input.is_empty() {
        let flags = input.u8();
        let audio = flags & 0x01 != 0;
        let track = usize::from(audio);
        let step: u64 = if audio { 160 } else { 300 };
        let ts = match (flags >> 2) & 0x03 {
            0 => prev[track].saturating_add(u64::from(input.u8()) * step),
            1 => prev[track].saturating_sub(u64::from(input.u8())),
            2 => input.u64(),
            _ => prev[track],
        };
        prev[track] = ts;
        let len = usize::from(input.u8());
        let body = input.bytes(len);
        let codec = if audio {
            Codec::Opus
        } else if flags & 0x20 != 0 {
            match video {
                Codec::Vp8 => Codec::H264,
                _ => Codec::Vp8,
            }
        } else {
            video
        };
        let mut payload = Vec::with_capacity(body.len() + 40);
        if flags & 0x10 != 0 {
            match codec {
                Codec::Vp8 => payload.extend_from_slice(&VP8_KEY_HEADER),
                Codec::H264 => {
                    for nal in [&H264_SPS[..], &H264_PPS[..], &H264_IDR_HEADER[..]] {
                        payload.extend_from_slice(&h264::START_CODE);
                        payload.extend_from_slice(nal);
                    }
                }
                Codec::Opus => {}
            }
        }
        payload.extend_from_slice(body);
        let frame = Frame {
            codec,
            ts,
            keyframe: audio || flags & 0x02 != 0,
            data: Bytes::from(payload),
        };
        if rec.push(frame).is_err() {
            failed = true;
            break;
        }
    }
    let crash_image = rec.get_ref().get_ref().clone();
    if !failed && let Ok((summary, writer)) = rec.finish_into_inner() {
        let bytes = writer.into_inner();
        assert_eq!(
            summary.bytes,
            bytes.len() as u64,
            "Summary::bytes is not the file length"
        );
        demux_all(kind, &bytes);
    }
    demux_all(kind, &crash_image);
    recover_and_demux(kind, crash_image);
}

/// The files of `<root>/<target>/`, sorted; none when the directory does not exist.
fn regression_inputs(root: &Path, target: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = root.join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path()
            })
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    (dir, files)
}

/// Replays every input in `<root>/<target>/` (inputs that once crashed a fuzz target, see
/// `fuzz/README.md`) through `run`, for `cargo test`. Panics, listing every input that
/// panicked.
pub fn replay_regressions(root: &Path, target: &str, run: fn(&[u8])) {
    let (dir, files) = regression_inputs(root, target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    println!(
        "fuzz regressions {target}: replayed {} input(s) from {}",
        files.len(),
        dir.display()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {} regression input(s) panicked: {failed:#?}",
        failed.len(),
        files.len()
    );
}
