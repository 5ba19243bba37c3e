//! Table-driven depacketizer tests: input packets -> expected frames, stats and keyframe request.
#![allow(clippy::type_complexity)] // test tables
use bytes::Bytes;

use super::*;
use crate::rtp::RtpPacket;

fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    RtpPacket {
        payload_type: 96,
        sequence_number: seq,
        timestamp: ts,
        ssrc: 1,
        marker,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// VP8 packet with a minimal 1-byte descriptor (S bit as given, partition 0).
fn vp8(seq: u16, ts: u32, marker: bool, start: bool, data: &[u8]) -> RtpPacket {
    let mut p = vec![if start { 0x10 } else { 0x00 }];
    p.extend_from_slice(data);
    pkt(seq, ts, marker, &p)
}

const KEY: u8 = 0x50; // VP8 frame tag with P=0
const DELTA: u8 = 0x51; // P=1

const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f];
const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
const IDR2: &[u8] = &[0x65, 0xb8, 0x00, 0x07];
const P_SLICE: &[u8] = &[0x41, 0x9a, 0x02];
const AUD: &[u8] = &[0x09, 0xf0];

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
    out
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x78];
    for n in nals {
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

fn fu_a(nal_header: u8, start: bool, end: bool, data: &[u8]) -> Vec<u8> {
    let mut out = vec![(nal_header & 0xe0) | 28, nal_header & 0x1f];
    if start {
        out[1] |= 0x80;
    }
    if end {
        out[1] |= 0x40;
    }
    out.extend_from_slice(data);
    out
}

struct Case {
    name: &'static str,
    codec: Codec,
    window: usize,
    packets: Vec<RtpPacket>,
    flush: bool,
    /// (ts, keyframe, data)
    frames: Vec<(u64, bool, Vec<u8>)>,
    stats: DepackStats,
    keyframe_request: bool,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            codec: Codec::Vp8,
            window: DEFAULT_REORDER_WINDOW,
            packets: vec![],
            flush: false,
            frames: vec![],
            stats: DepackStats::default(),
            keyframe_request: false,
        }
    }
}

fn stats(packets: u64, frames: u64, keyframes: u64) -> DepackStats {
    DepackStats {
        packets,
        frames,
        keyframes,
        ..DepackStats::default()
    }
}

fn run(case: &Case) {
    let mut d = Depacketizer::new(case.codec).with_reorder_window(case.window);
    let mut frames = Vec::new();
    for p in &case.packets {
        d.push(p.clone());
        while let Some(f) = d.pop() {
            frames.push(f);
        }
    }
    if case.flush {
        d.flush();
        while let Some(f) = d.pop() {
            frames.push(f);
        }
    }
    let got: Vec<(u64, bool, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            assert_eq!(f.codec, case.codec, "{}", case.name);
            (f.ts, f.keyframe, f.data.to_vec())
        })
        .collect();
    assert_eq!(got, case.frames, "{}: frames", case.name);
    assert_eq!(d.stats(), case.stats, "{}: stats", case.name);
    assert_eq!(
        d.take_keyframe_request(),
        case.keyframe_request,
        "{}: keyframe request",
        case.name
    );
    assert!(
        !d.take_keyframe_request(),
        "{}: request is raised once",
        case.name
    );
}

fn vp8_cases() -> Vec<Case> {
    let k0 = (0, true, vec![KEY, 1, 2]);
    let d1 = (3000, false, vec![DELTA, 3]);
    vec![
        Case {
            name: "vp8 in order",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
            ],
            frames: vec![k0.clone(), d1.clone()],
            stats: stats(3, 2, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 reordered, including before the first arrival",
            packets: vec![
                vp8(2, 0, true, false, &[2]),
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(4, 3000, true, false, &[4]),
                vp8(3, 3000, false, true, &[DELTA, 3]),
            ],
            frames: vec![k0.clone(), (3000, false, vec![DELTA, 3, 4])],
            stats: stats(4, 2, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 duplicates in the buffer and after consumption",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(2, 0, true, false, &[2]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
                vp8(1, 0, false, true, &[KEY, 1]),
            ],
            frames: vec![k0.clone(), d1.clone()],
            stats: DepackStats {
                duplicates: 3,
                ..stats(6, 2, 1)
            },
            ..Case::default()
        },
        Case {
            name: "vp8 loss, drop until keyframe, request once",
            window: 4,
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
                // seq 4 (start of the frame at 6000) lost
                vp8(5, 6000, true, false, &[5]),
                vp8(6, 9000, true, true, &[DELTA, 6]),
                vp8(7, 12000, false, true, &[KEY, 7]),
                vp8(8, 12000, true, false, &[8]),
                vp8(9, 15000, true, true, &[DELTA, 9]),
            ],
            frames: vec![
                k0.clone(),
                d1.clone(),
                (12000, true, vec![KEY, 7, 8]),
                (15000, false, vec![DELTA, 9]),
            ],
            stats: DepackStats {
                lost: 1,
                dropped_frames: 2,
                ..stats(8, 4, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 loss found at flush",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
                vp8(5, 9000, true, true, &[DELTA, 5]),
            ],
            flush: true,
            frames: vec![k0.clone(), d1.clone()],
            stats: DepackStats {
                lost: 1,
                dropped_frames: 1,
                ..stats(4, 2, 1)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 no loss without flush while the hole is inside the window",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(4, 6000, true, true, &[DELTA, 4]),
            ],
            frames: vec![k0.clone()],
            stats: stats(3, 1, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 late packet after loss was declared",
            window: 2,
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(4, 6000, true, true, &[DELTA, 4]),
                vp8(5, 9000, true, true, &[DELTA, 5]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
                vp8(3, 3000, true, true, &[DELTA, 3]),
                vp8(6, 12000, true, true, &[KEY, 6]),
            ],
            frames: vec![k0.clone(), (12000, true, vec![KEY, 6])],
            stats: DepackStats {
                lost: 1,
                late: 1,
                duplicates: 1,
                dropped_frames: 2,
                ..stats(7, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 padding-only and empty packets advance the sequence",
            packets: vec![
                pkt(1, 0, false, &[]),
                vp8(2, 0, false, true, &[KEY, 1]),
                pkt(3, 99_999, false, &[]),
                vp8(4, 0, true, false, &[2]),
                pkt(5, 0, true, &[]),
                vp8(6, 3000, true, true, &[DELTA, 3]),
            ],
            frames: vec![k0.clone(), d1.clone()],
            stats: DepackStats {
                padding: 3,
                ..stats(6, 2, 1)
            },
            ..Case::default()
        },
        Case {
            name: "vp8 only padding",
            packets: vec![pkt(7, 0, false, &[]), pkt(8, 0, false, &[])],
            flush: true,
            stats: DepackStats {
                padding: 2,
                ..stats(2, 0, 0)
            },
            ..Case::default()
        },
        Case {
            name: "vp8 sequence wrap with reordering",
            packets: vec![
                vp8(65535, 0, true, false, &[2]),
                vp8(65534, 0, false, true, &[KEY, 1]),
                vp8(1, 6000, true, true, &[DELTA, 4]),
                vp8(0, 3000, true, true, &[DELTA, 3]),
                vp8(2, 9000, true, true, &[DELTA, 5]),
            ],
            frames: vec![
                k0.clone(),
                d1.clone(),
                (6000, false, vec![DELTA, 4]),
                (9000, false, vec![DELTA, 5]),
            ],
            stats: stats(5, 4, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 timestamp wrap",
            packets: vec![
                vp8(10, u32::MAX - 1499, true, true, &[KEY, 1]),
                vp8(11, 1500, true, true, &[DELTA, 2]),
                vp8(12, 4500, true, true, &[DELTA, 3]),
            ],
            frames: vec![
                (u64::from(u32::MAX) - 1499, true, vec![KEY, 1]),
                ((1 << 32) + 1500, false, vec![DELTA, 2]),
                ((1 << 32) + 4500, false, vec![DELTA, 3]),
            ],
            stats: stats(3, 3, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 frames completed by timestamp change (no marker)",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, false, false, &[2]),
                vp8(3, 3000, false, true, &[DELTA, 3]),
                vp8(4, 6000, true, true, &[DELTA, 4]),
            ],
            frames: vec![k0.clone(), d1.clone(), (6000, false, vec![DELTA, 4])],
            stats: stats(4, 3, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 trailing frame without marker dropped at flush, no request",
            packets: vec![
                vp8(1, 0, false, true, &[KEY, 1]),
                vp8(2, 0, true, false, &[2]),
                vp8(3, 3000, false, true, &[DELTA, 3]),
            ],
            flush: true,
            frames: vec![k0.clone()],
            stats: DepackStats {
                dropped_frames: 1,
                ..stats(3, 1, 1)
            },
            ..Case::default()
        },
        Case {
            name: "vp8 descriptor variants (X/I 7 and 15 bit/L/T/K, N)",
            packets: vec![
                pkt(1, 0, false, &[0x90, 0xf0, 0x81, 0x23, 0x05, 0x40, KEY, 1]),
                pkt(2, 0, true, &[0x80, 0x80, 0x12, 2]),
                pkt(3, 3000, true, &[0xb0, 0x20, 0x80, DELTA, 3]),
                pkt(4, 6000, false, &[0x90, 0x80, 0x14, DELTA]),
                pkt(5, 6000, true, &[0x81, 0x10, 0x02, 4]),
            ],
            frames: vec![k0.clone(), d1.clone(), (6000, false, vec![DELTA, 4])],
            stats: stats(5, 3, 1),
            ..Case::default()
        },
        Case {
            name: "vp8 stream starting with a delta frame requests a keyframe",
            packets: vec![
                vp8(1, 0, true, true, &[DELTA, 1]),
                vp8(2, 3000, true, true, &[KEY, 2]),
                vp8(3, 6000, true, true, &[DELTA, 3]),
            ],
            frames: vec![(3000, true, vec![KEY, 2]), (6000, false, vec![DELTA, 3])],
            stats: DepackStats {
                dropped_frames: 1,
                ..stats(3, 2, 1)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 stream joined mid-frame",
            packets: vec![
                vp8(1, 0, true, false, &[9]),
                vp8(2, 3000, false, true, &[KEY, 1]),
                vp8(3, 3000, true, false, &[2]),
            ],
            flush: true,
            frames: vec![(3000, true, vec![KEY, 1, 2])],
            stats: DepackStats {
                dropped_frames: 1,
                ..stats(3, 1, 1)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 frame starting at partition 1 is malformed",
            packets: vec![
                vp8(1, 0, true, true, &[KEY, 1, 2]),
                pkt(2, 3000, true, &[0x11, DELTA, 3]),
                vp8(3, 6000, false, true, &[KEY, 4]),
                pkt(4, 6000, true, &[0x11, 5]),
            ],
            frames: vec![k0.clone(), (6000, true, vec![KEY, 4, 5])],
            stats: DepackStats {
                dropped_frames: 1,
                ..stats(4, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "vp8 truncated descriptor and empty frame are dropped",
            packets: vec![
                vp8(1, 0, true, true, &[KEY, 1, 2]),
                pkt(2, 3000, true, &[0x80]),
                pkt(3, 6000, true, &[0x10]),
                pkt(4, 9000, true, &[0x90, 0x80, 0x80]),
                vp8(5, 12000, true, true, &[KEY, 6]),
            ],
            frames: vec![k0.clone(), (12000, true, vec![KEY, 6])],
            stats: DepackStats {
                dropped_frames: 3,
                ..stats(5, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        {
            // A keyframe of 200 packets in a window of 16: in order, it must not be cut.
            let mut packets = vec![];
            let mut data = vec![KEY];
            for i in 0..200u16 {
                let byte = (i % 251) as u8;
                data.push(byte);
                let body: Vec<u8> = if i == 0 { vec![KEY, byte] } else { vec![byte] };
                packets.push(vp8(100 + i, 0, i == 199, i == 0, &body));
            }
            // Swap two packets (reordering inside a long frame).
            packets.swap(50, 52);
            Case {
                name: "vp8 frame longer than the reorder window",
                window: 16,
                packets,
                frames: vec![(0, true, data)],
                stats: stats(200, 1, 1),
                ..Case::default()
            }
        },
        {
            // A 3.6 MB keyframe of 3000 packets: within MAX_FRAME_BYTES and
            // MAX_FRAME_PACKETS, so the bounds leave it whole.
            let mut packets = vec![];
            let mut data = vec![];
            for i in 0..3000u16 {
                let mut body: Vec<u8> = (0..1199u32)
                    .map(|j| ((u32::from(i) * 7 + j) % 251) as u8)
                    .collect();
                if i == 0 {
                    body[0] = KEY;
                }
                data.extend_from_slice(&body);
                packets.push(vp8(1000 + i, 0, i == 2999, i == 0, &body));
            }
            Case {
                name: "vp8 3.6 MB keyframe within the buffer bounds",
                packets,
                frames: vec![(0, true, data)],
                stats: stats(3000, 1, 1),
                ..Case::default()
            }
        },
    ]
}

fn opus_cases() -> Vec<Case> {
    vec![
        Case {
            name: "opus reorder and loss: no keyframe logic",
            codec: Codec::Opus,
            packets: vec![
                pkt(1, 0, true, &[0xf8, 1]),
                pkt(3, 1920, false, &[0xf8, 3]),
                pkt(2, 960, false, &[0xf8, 2]),
                pkt(5, 3840, false, &[0xf8, 5]),
                pkt(6, 4800, false, &[]),
                pkt(7, 5760, false, &[0xf8, 7]),
            ],
            flush: true,
            frames: vec![
                (0, true, vec![0xf8, 1]),
                (960, true, vec![0xf8, 2]),
                (1920, true, vec![0xf8, 3]),
                (3840, true, vec![0xf8, 5]),
                (5760, true, vec![0xf8, 7]),
            ],
            stats: DepackStats {
                lost: 1,
                padding: 1,
                ..stats(6, 5, 5)
            },
            ..Case::default()
        },
        Case {
            name: "opus window overflow declares loss",
            codec: Codec::Opus,
            window: 2,
            packets: vec![
                pkt(10, 0, false, &[1]),
                pkt(12, 1920, false, &[3]),
                pkt(13, 2880, false, &[4]),
                pkt(11, 960, false, &[2]),
            ],
            frames: vec![
                (0, true, vec![1]),
                (1920, true, vec![3]),
                (2880, true, vec![4]),
            ],
            stats: DepackStats {
                lost: 1,
                late: 1,
                ..stats(4, 3, 3)
            },
            ..Case::default()
        },
    ]
}

fn h264_cases() -> Vec<Case> {
    let key0 = (0, true, annexb(&[SPS, PPS, IDR]));
    let mut cases = vec![
        Case {
            name: "h264 single NAL packets",
            codec: Codec::H264,
            packets: vec![
                pkt(1, 0, false, SPS),
                pkt(2, 0, false, PPS),
                pkt(3, 0, true, IDR),
                pkt(4, 3000, true, P_SLICE),
            ],
            frames: vec![key0.clone(), (3000, false, annexb(&[P_SLICE]))],
            stats: stats(4, 2, 1),
            ..Case::default()
        },
        Case {
            name: "h264 STAP-A with SPS/PPS, FU-A start/middle/end",
            codec: Codec::H264,
            packets: vec![
                pkt(1, 0, false, &stap_a(&[SPS, PPS])),
                pkt(2, 0, false, &fu_a(0x65, true, false, &[0x88])),
                pkt(3, 0, false, &fu_a(0x65, false, false, &[0x84])),
                pkt(4, 0, true, &fu_a(0x65, false, true, &[0x21])),
                pkt(5, 3000, false, &fu_a(0x41, true, false, &[0x9a])),
                pkt(6, 3000, true, &fu_a(0x41, false, true, &[0x02])),
            ],
            frames: vec![key0.clone(), (3000, false, annexb(&[P_SLICE]))],
            stats: stats(6, 2, 1),
            ..Case::default()
        },
        Case {
            name: "h264 SPS/PPS remembered and prepended (after AUD)",
            codec: Codec::H264,
            packets: vec![
                pkt(1, 0, false, &stap_a(&[SPS, PPS])),
                pkt(2, 0, true, IDR),
                pkt(3, 3000, true, P_SLICE),
                pkt(4, 6000, true, IDR2),
                pkt(5, 9000, false, AUD),
                pkt(6, 9000, true, IDR2),
                pkt(7, 12000, false, SPS),
                pkt(8, 12000, true, IDR2),
                pkt(9, 15000, false, PPS),
                pkt(10, 15000, true, IDR2),
            ],
            frames: vec![
                key0.clone(),
                (3000, false, annexb(&[P_SLICE])),
                (6000, true, annexb(&[SPS, PPS, IDR2])),
                (9000, true, annexb(&[AUD, SPS, PPS, IDR2])),
                (12000, true, annexb(&[SPS, PPS, IDR2])),
                (15000, true, annexb(&[SPS, PPS, IDR2])),
            ],
            stats: stats(10, 6, 5),
            ..Case::default()
        },
        Case {
            // Before: the parameter sets were frames of their own (dropped while waiting for
            // a keyframe, returned as delta frames after), and with one frame per timestamp
            // the IDR sharing their timestamp would have been lost.
            name: "h264 parameter sets with their own marker bit are not frames",
            codec: Codec::H264,
            packets: vec![
                pkt(1, 0, true, SPS),
                pkt(2, 0, true, PPS),
                pkt(3, 0, true, IDR),
                pkt(4, 3000, true, P_SLICE),
                pkt(5, 6000, true, SPS),
                pkt(6, 6000, true, PPS),
                pkt(7, 6000, true, IDR2),
                pkt(8, 9000, true, P_SLICE),
            ],
            frames: vec![
                key0.clone(),
                (3000, false, annexb(&[P_SLICE])),
                (6000, true, annexb(&[SPS, PPS, IDR2])),
                (9000, false, annexb(&[P_SLICE])),
            ],
            stats: stats(8, 4, 2),
            ..Case::default()
        },
        Case {
            name: "h264 IDR without any known SPS/PPS is passed as is",
            codec: Codec::H264,
            packets: vec![pkt(1, 0, true, IDR)],
            frames: vec![(0, true, annexb(&[IDR]))],
            stats: stats(1, 1, 1),
            ..Case::default()
        },
        Case {
            name: "h264 FU-A middle lost, rest of frame dropped, recovery on IDR",
            codec: Codec::H264,
            window: 2,
            packets: vec![
                pkt(1, 0, false, &stap_a(&[SPS, PPS])),
                pkt(2, 0, true, IDR),
                pkt(3, 3000, false, &fu_a(0x41, true, false, &[0x9a])),
                // seq 4 lost
                pkt(5, 3000, true, &fu_a(0x41, false, true, &[0x02])),
                pkt(6, 6000, true, P_SLICE),
                pkt(7, 9000, true, IDR2),
            ],
            frames: vec![key0.clone(), (9000, true, annexb(&[SPS, PPS, IDR2]))],
            stats: DepackStats {
                lost: 1,
                dropped_frames: 2,
                ..stats(6, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "h264 after a hole a slice not starting the picture is dropped",
            codec: Codec::H264,
            window: 1,
            packets: vec![
                pkt(1, 0, true, IDR),
                // seq 2 (first slice of the IDR at 3000) lost; seq 3 is its second slice
                pkt(3, 3000, true, &[0x65, 0x40, 0x11]),
                pkt(4, 6000, true, IDR2),
            ],
            frames: vec![(0, true, annexb(&[IDR])), (6000, true, annexb(&[IDR2]))],
            stats: DepackStats {
                lost: 1,
                dropped_frames: 1,
                ..stats(3, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
        Case {
            name: "h264 rest of a frame after a hole is dropped even if it looks like a start",
            codec: Codec::H264,
            window: 1,
            packets: vec![
                pkt(1, 0, false, &stap_a(&[SPS, PPS])),
                pkt(2, 0, true, IDR),
                pkt(3, 3000, false, SPS),
                // seq 4 (PPS of the frame at 3000) lost
                pkt(5, 3000, true, IDR2),
                pkt(6, 6000, true, P_SLICE),
                pkt(7, 9000, true, IDR2),
            ],
            frames: vec![key0.clone(), (9000, true, annexb(&[SPS, PPS, IDR2]))],
            stats: DepackStats {
                lost: 1,
                dropped_frames: 2,
                ..stats(6, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        },
    ];
    // Malformed payloads: each one in a frame between two good keyframes.
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("FU-A middle without start", fu_a(0x41, false, true, &[1])),
        ("FU-A without header", vec![0x7c]),
        ("FU-A start never ended", fu_a(0x41, true, false, &[1])),
        ("STAP-A size past end", vec![0x78, 0x00, 0x09, 0x41, 0x9a]),
        ("STAP-A zero size", vec![0x78, 0x00, 0x00]),
        ("STAP-A size byte cut", vec![0x78, 0x00]),
        ("STAP-A empty", vec![0x78]),
        (
            "STAP-B unsupported",
            vec![0x79, 0x00, 0x01, 0x00, 0x01, 0x41],
        ),
        ("type 0", vec![0x00, 0x01]),
        ("type 31", vec![0x1f, 0x01]),
    ];
    for (name, bad) in malformed {
        cases.push(Case {
            name: Box::leak(format!("h264 malformed: {name}").into_boxed_str()),
            codec: Codec::H264,
            packets: vec![
                pkt(1, 0, false, &stap_a(&[SPS, PPS])),
                pkt(2, 0, true, IDR),
                pkt(3, 3000, true, &bad),
                pkt(4, 6000, true, P_SLICE),
                pkt(5, 9000, true, IDR2),
            ],
            frames: vec![key0.clone(), (9000, true, annexb(&[SPS, PPS, IDR2]))],
            stats: DepackStats {
                dropped_frames: 2,
                ..stats(5, 2, 2)
            },
            keyframe_request: true,
            ..Case::default()
        });
    }
    cases
}

#[test]
fn vp8_table() {
    for case in vp8_cases() {
        run(&case);
    }
}

#[test]
fn opus_table() {
    for case in opus_cases() {
        run(&case);
    }
}

#[test]
fn h264_table() {
    for case in h264_cases() {
        run(&case);
    }
}

#[test]
fn sequence_numbers_jumping_back_for_good_resync() {
    let mut d = Depacketizer::new(Codec::Opus).with_reorder_window(4);
    for i in 0..10u16 {
        d.push(pkt(40_000 + i, u32::from(i) * 960, false, &[i as u8]));
    }
    // Sender restart: sequence numbers 20000.. with later timestamps.
    for i in 0..10u16 {
        d.push(pkt(
            20_000 + i,
            9600 + u32::from(i) * 960,
            false,
            &[100 + i as u8],
        ));
    }
    d.flush();
    let data: Vec<u8> = std::iter::from_fn(|| d.pop()).map(|f| f.data[0]).collect();
    let mut expected: Vec<u8> = (0..10).collect();
    // The first `window` packets after the jump are discarded before the resync.
    expected.extend(104..110);
    assert_eq!(data, expected);
    assert_eq!(d.stats().duplicates, 4);
}

#[test]
fn request_is_raised_again_after_recovery() {
    let mut d = Depacketizer::new(Codec::Vp8).with_reorder_window(1);
    d.push(vp8(1, 0, true, true, &[KEY, 1]));
    d.push(vp8(3, 6000, true, true, &[DELTA, 3])); // 2 lost
    assert!(d.take_keyframe_request());
    d.push(vp8(4, 9000, true, true, &[DELTA, 4]));
    assert!(!d.take_keyframe_request(), "once per loss episode");
    d.push(vp8(5, 12000, true, true, &[KEY, 5]));
    d.push(vp8(7, 18000, true, true, &[DELTA, 7])); // 6 lost
    assert!(
        d.take_keyframe_request(),
        "a new loss after recovery asks again"
    );
    let keys: Vec<u64> = std::iter::from_fn(|| d.pop()).map(|f| f.ts).collect();
    assert_eq!(keys, vec![0, 12000]);
}

/// Pseudo-random bytes, packets and orders: nothing may panic, and counters stay consistent.
#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x1234_5678;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for codec in [Codec::Vp8, Codec::H264, Codec::Opus] {
        for round in 0..40 {
            let mut d = Depacketizer::new(codec).with_reorder_window(1 + round % 20);
            let mut pushed = 0;
            for _ in 0..300 {
                let r = rnd();
                let len = (r % 24) as usize;
                let mut payload: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                // Bias towards plausible headers so deeper paths run.
                if let Some(first) = payload.first_mut() {
                    match (r >> 8) % 4 {
                        0 if codec == Codec::H264 => *first = 0x7c,
                        1 if codec == Codec::H264 => *first = 0x78,
                        0 | 1 if codec == Codec::Vp8 => *first = 0x90,
                        _ => {}
                    }
                }
                let seq = (r >> 16) as u16 % 64;
                let ts = ((r >> 32) as u32 % 8) * 3000;
                d.push(pkt(
                    seq.wrapping_add(round as u16 * 1000),
                    ts,
                    r & 1 == 1,
                    &payload,
                ));
                pushed += 1;
                while d.pop().is_some() {}
            }
            d.flush();
            while d.pop().is_some() {}
            let s = d.stats();
            assert_eq!(s.packets, pushed);
            assert!(s.frames <= s.packets);
            assert!(s.keyframes <= s.frames);
        }
    }
}

/// Arrival order 0, 2, 4, 1, 6, 3, 8, 5, ...: one hole is always open just behind the newest
/// packet, so no hole ever gets a reorder window old.
fn one_hole_open(count: usize) -> Vec<u16> {
    let mut order = vec![0u16, 2];
    let mut k = 2u16;
    while order.len() < count {
        order.push(2 * k);
        order.push(2 * k - 3);
        k += 1;
    }
    order.truncate(count);
    order
}

#[test]
fn reorder_buffer_is_bounded_with_a_hole_always_open() {
    // (name, codec, payload bytes per packet). One timestamp and no marker bit: the frame
    // never ends. The bounds used to be checked only without a hole, so the buffer kept
    // every packet (24 MB here).
    let cases: Vec<(&str, Codec, usize)> = vec![
        ("vp8 1200-byte packets: byte bound", Codec::Vp8, 1200),
        ("h264 1200-byte FU-A packets: byte bound", Codec::H264, 1200),
        ("vp8 4-byte packets: packet bound", Codec::Vp8, 4),
    ];
    for (name, codec, size) in cases {
        let mut d = Depacketizer::new(codec);
        let mut frames = 0;
        for (n, off) in one_hole_open(20_000).into_iter().enumerate() {
            let mut payload = match codec {
                Codec::H264 => fu_a(0x65, off == 0, false, &[]),
                _ => vec![if off == 0 { 0x10 } else { 0x00 }, KEY],
            };
            payload.resize(size, 0xaa);
            d.push(pkt(60_000u16.wrapping_add(off), 0, false, &payload));
            frames += std::iter::from_fn(|| d.pop()).count();
            assert!(
                d.buffered_bytes() <= MAX_FRAME_BYTES + size,
                "{name}: {} bytes after {n} packets",
                d.buffered_bytes()
            );
            assert!(
                d.buf.len() <= MAX_FRAME_PACKETS + 1,
                "{name}: {} packets after {n} packets",
                d.buf.len()
            );
        }
        // The count matches what is really held.
        let held: usize = d.buf.values().map(|s| s.payload.len()).sum();
        assert_eq!(d.buffered_bytes(), held, "{name}");
        assert_eq!(frames, 0, "{name}");
        let s = d.stats();
        assert!(s.dropped_frames >= 1, "{name}: {s:?}");
        assert!(d.take_keyframe_request(), "{name}");
        d.flush();
        assert_eq!(d.buffered_bytes(), 0, "{name}: after flush");
    }
}

#[test]
fn one_timestamp_flood_gives_at_most_one_frame() {
    // (name, codec, payload): every packet has the marker bit and the same timestamp, so each
    // is a complete frame on its own (for VP8 and H264 a keyframe).
    let cases: Vec<(&str, Codec, Vec<u8>)> = vec![
        ("vp8 keyframes", Codec::Vp8, vec![0x10, KEY, 1, 2]),
        ("h264 IDRs", Codec::H264, IDR.to_vec()),
        ("opus packets", Codec::Opus, vec![0xf8, 1]),
    ];
    for (name, codec, payload) in cases {
        let mut d = Depacketizer::new(codec);
        let mut frames = 0;
        for seq in 0..10_000u16 {
            d.push(pkt(seq, 1234, true, &payload));
            frames += std::iter::from_fn(|| d.pop()).count();
        }
        d.flush();
        frames += std::iter::from_fn(|| d.pop()).count();
        assert_eq!(frames, 1, "{name}");
        let s = d.stats();
        assert_eq!(
            (s.frames, s.same_ts_dropped, s.dropped_frames, s.lost),
            (1, 9_999, 0, 0),
            "{name}"
        );
        assert!(!d.take_keyframe_request(), "{name}");
        // The next timestamp is a new frame again.
        d.push(pkt(10_000, 4234, true, &payload));
        assert_eq!(d.pop().map(|f| f.ts), Some(4234), "{name}: next frame");
    }
}
