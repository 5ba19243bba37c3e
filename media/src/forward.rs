//! Live forwarding: RTP from a recorder rewritten for each viewer.
//!
//! A live viewer receives the recorder's packets as they arrive, without depacketizing them.
//! Each viewer's connection has its own SSRC, payload types and a random starting sequence
//! number and timestamp, so every packet is rewritten ([`Rewriter`]). Packets the server drops
//! on purpose (a slow viewer, a viewer waiting for a keyframe) must not look like network loss
//! to the viewer, or it would ask for retransmissions nobody can send: after a deliberate gap
//! the sequence numbers continue where they stopped ([`Rewriter::rewrite`] with
//! `discontinuity`). A real loss upstream stays a gap, so the viewer notices it (and asks for
//! a keyframe, which the server forwards to the recorder).
//!
//! [`starts_keyframe`] tells where a viewer can start decoding: the first packet of a VP8 key
//! frame, or an H264 packet carrying an SPS or the first slice of an IDR picture.
use crate::Codec;
use crate::depack::{h264, vp8};
use crate::rtp::RtpPacket;

/// True when a viewer can start decoding at this packet.
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8::PayloadDescriptor::parse(payload).is_some_and(|d| {
            d.starts_frame() && vp8::is_keyframe(payload.get(d.len..).unwrap_or_default())
        }),
        Codec::H264 => h264_starts_keyframe(payload),
        Codec::Opus => true,
    }
}

/// An SPS (browsers send SPS and PPS right before each IDR), or the first slice of an IDR
/// picture: alone, aggregated in a STAP-A, or starting an FU-A.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let starts = |nal: &[u8]| match h264::nal_type(nal) {
        Some(h264::NAL_SPS) => true,
        Some(h264::NAL_IDR) => h264::first_mb_is_zero(nal.get(1)),
        _ => false,
    };
    match h264::nal_type(payload) {
        Some(h264::STAP_A) => h264::stap_a_units(payload)
            .map_while(Result::ok)
            .any(starts),
        Some(h264::FU_A) => match payload.get(1) {
            Some(h) if h & 0x80 != 0 && h & 0x1f == h264::NAL_IDR => {
                h264::first_mb_is_zero(payload.get(2))
            }
            _ => false,
        },
        _ => starts(payload),
    }
}

/// Rewrites one stream (one kind) of a source for one viewer.
#[derive(Clone, Debug)]
pub struct Rewriter {
    ssrc: u32,
    first_seq: u16,
    first_ts: u32,
    /// Timestamp step assumed between the last packet of one source and the first of the next
    /// (one video frame at 30 fps, or one 20 ms Opus frame).
    gap_ticks: u32,
    state: Option<Mapped>,
}

#[derive(Clone, Copy, Debug)]
struct Mapped {
    source_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// Packets before this source sequence number are not forwarded: it is the first packet
    /// after the last rebase (older ones are late copies of what was dropped), trailing the
    /// newest packet by at most [`FLOOR_LAG`] so that it never falls half the number space
    /// behind (which would make every packet look older than it).
    floor: u16,
    last_out_seq: u16,
    last_out_ts: u32,
}

/// How far the floor may trail the newest packet (a reordering window far beyond any real one).
const FLOOR_LAG: u16 = 0x1000;

/// True when `a` comes before `b` in sequence-number order (RFC 3550 wrap-around).
fn seq_before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

impl Rewriter {
    /// `ssrc` is the viewer's; `first_seq` and `first_ts` are what the first packet gets.
    /// `gap_ticks` is the timestamp step put between two sources (a new sender SSRC).
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32, gap_ticks: u32) -> Rewriter {
        Rewriter {
            ssrc,
            first_seq,
            first_ts,
            gap_ticks,
            state: None,
        }
    }

    /// The packet as the viewer gets it, with payload type `pt`, or `None` when it must not be
    /// sent (older than a deliberate gap). `discontinuity`: packets were dropped on purpose
    /// before this one; its sequence number follows the last one sent.
    pub fn rewrite(
        &mut self,
        packet: &RtpPacket,
        pt: u8,
        discontinuity: bool,
    ) -> Option<RtpPacket> {
        let seq = packet.sequence_number;
        let ts = packet.timestamp;
        let mapped = match self.state {
            None => Mapped {
                source_ssrc: packet.ssrc,
                seq_offset: self.first_seq.wrapping_sub(seq),
                ts_offset: self.first_ts.wrapping_sub(ts),
                floor: seq,
                last_out_seq: self.first_seq,
                last_out_ts: self.first_ts,
            },
            Some(m) if m.source_ssrc != packet.ssrc => {
                // A new source (the sender restarted its track): continue after what was sent.
                let out_ts = m.last_out_ts.wrapping_add(self.gap_ticks);
                Mapped {
                    source_ssrc: packet.ssrc,
                    seq_offset: m.last_out_seq.wrapping_add(1).wrapping_sub(seq),
                    ts_offset: out_ts.wrapping_sub(ts),
                    floor: seq,
                    ..m
                }
            }
            Some(m) if discontinuity => Mapped {
                seq_offset: m.last_out_seq.wrapping_add(1).wrapping_sub(seq),
                floor: seq,
                ..m
            },
            Some(m) => {
                if seq_before(seq, m.floor) {
                    return None;
                }
                m
            }
        };
        let out_seq = seq.wrapping_add(mapped.seq_offset);
        let out_ts = ts.wrapping_add(mapped.ts_offset);
        let newest = match self.state {
            Some(m) if m.source_ssrc == mapped.source_ssrc && !discontinuity => {
                !seq_before(out_seq, m.last_out_seq)
            }
            _ => true,
        };
        self.state = Some(if newest {
            let floor = if seq.wrapping_sub(mapped.floor) > FLOOR_LAG {
                seq.wrapping_sub(FLOOR_LAG)
            } else {
                mapped.floor
            };
            Mapped {
                last_out_seq: out_seq,
                last_out_ts: out_ts,
                floor,
                ..mapped
            }
        } else {
            mapped
        });
        Some(RtpPacket {
            payload_type: pt,
            sequence_number: out_seq,
            timestamp: out_ts,
            ssrc: self.ssrc,
            marker: packet.marker,
            payload: packet.payload.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pkt(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
        RtpPacket {
            payload_type: 100,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            marker: false,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn keyframe_starts_table() {
        let cases: &[(&str, Codec, &[u8], bool)] = &[
            ("vp8 key frame start", Codec::Vp8, &[0x10, 0x50, 0, 0], true),
            ("vp8 delta frame start", Codec::Vp8, &[0x10, 0x51], false),
            (
                "vp8 key frame, not the start",
                Codec::Vp8,
                &[0x00, 0x50],
                false,
            ),
            (
                "vp8 key frame, partition 1",
                Codec::Vp8,
                &[0x11, 0x50],
                false,
            ),
            // X=1, I=1, 15-bit picture id: the frame tag is at offset 4.
            (
                "vp8 extended descriptor",
                Codec::Vp8,
                &[0x90, 0x80, 0x80, 0x01, 0x50],
                true,
            ),
            (
                "vp8 extended, delta",
                Codec::Vp8,
                &[0x90, 0x80, 0x80, 0x01, 0x51],
                false,
            ),
            ("vp8 descriptor only", Codec::Vp8, &[0x10], false),
            ("vp8 empty", Codec::Vp8, &[], false),
            ("h264 sps", Codec::H264, &[0x67, 0x42], true),
            (
                "h264 single idr, first slice",
                Codec::H264,
                &[0x65, 0x88],
                true,
            ),
            (
                "h264 single idr, later slice",
                Codec::H264,
                &[0x65, 0x48],
                false,
            ),
            ("h264 p slice", Codec::H264, &[0x41, 0x9a], false),
            ("h264 pps alone", Codec::H264, &[0x68, 0xce], false),
            (
                "h264 stap-a sps+pps",
                Codec::H264,
                &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce],
                true,
            ),
            (
                "h264 stap-a with idr",
                Codec::H264,
                &[0x78, 0, 2, 0x09, 0xf0, 0, 2, 0x65, 0x88],
                true,
            ),
            (
                "h264 stap-a p slices",
                Codec::H264,
                &[0x78, 0, 2, 0x41, 0x9a],
                false,
            ),
            (
                "h264 stap-a truncated",
                Codec::H264,
                &[0x78, 0, 9, 0x67],
                false,
            ),
            (
                "h264 fu-a idr start",
                Codec::H264,
                &[0x7c, 0x85, 0x88],
                true,
            ),
            (
                "h264 fu-a idr middle",
                Codec::H264,
                &[0x7c, 0x05, 0x88],
                false,
            ),
            ("h264 fu-a p start", Codec::H264, &[0x5c, 0x81, 0x9a], false),
            ("h264 fu-a truncated", Codec::H264, &[0x7c], false),
            ("h264 empty", Codec::H264, &[], false),
            ("opus always", Codec::Opus, &[0xfc], true),
        ];
        for (name, codec, payload, want) in cases {
            assert_eq!(starts_keyframe(*codec, payload), *want, "{name}");
        }
    }

    /// (source ssrc, seq, ts, discontinuity) -> Some((out seq, out ts)) or None.
    type Step = (u32, u16, u32, bool, Option<(u16, u32)>);

    /// A long healthy stream: every packet goes out, however many times the numbers wrap.
    #[test]
    fn a_long_stream_is_forwarded_whole() {
        let mut r = Rewriter::new(1, 0, 0, 3000);
        let mut expect = 0u16;
        for i in 0..200_000u32 {
            let seq = (i + 12_345) as u16;
            let out = r.rewrite(&pkt(7, seq, i * 10), 96, false);
            assert_eq!(out.map(|p| p.sequence_number), Some(expect), "packet {i}");
            expect = expect.wrapping_add(1);
        }
        // A late packet from long ago is still refused; a reordered recent one is not.
        assert!(
            r.rewrite(&pkt(7, (200_000u32 + 12_345 - 3) as u16, 0), 96, false)
                .is_some()
        );
    }

    #[test]
    fn rewrite_table() {
        let cases: &[(&str, &[Step])] = &[
            (
                "first packet maps to the chosen start, then follows the source",
                &[
                    (7, 5000, 90_000, false, Some((100, 1000))),
                    (7, 5001, 90_000, false, Some((101, 1000))),
                    (7, 5002, 93_000, false, Some((102, 4000))),
                ],
            ),
            (
                "a loss upstream stays a gap",
                &[
                    (7, 10, 0, false, Some((100, 1000))),
                    (7, 13, 3000, false, Some((103, 4000))),
                ],
            ),
            (
                "a deliberate gap is closed, timestamps keep their spacing",
                &[
                    (7, 10, 0, false, Some((100, 1000))),
                    (7, 11, 0, false, Some((101, 1000))),
                    (7, 60, 90_000, true, Some((102, 91_000))),
                    (7, 61, 93_000, false, Some((103, 94_000))),
                ],
            ),
            (
                "a late packet from before the gap is not sent",
                &[
                    (7, 10, 0, false, Some((100, 1000))),
                    (7, 60, 90_000, true, Some((101, 91_000))),
                    (7, 30, 45_000, false, None),
                    (7, 61, 93_000, false, Some((102, 94_000))),
                ],
            ),
            (
                "reordering upstream passes through",
                &[
                    (7, 10, 0, false, Some((100, 1000))),
                    (7, 12, 0, false, Some((102, 1000))),
                    (7, 11, 0, false, Some((101, 1000))),
                    (7, 13, 0, false, Some((103, 1000))),
                ],
            ),
            (
                "sequence and timestamp wrap",
                &[
                    (7, 65_535, u32::MAX, false, Some((100, 1000))),
                    (7, 0, 2999, false, Some((101, 4000))),
                ],
            ),
            (
                "a deliberate gap across the source's wrap",
                &[
                    (7, 1, 0, false, Some((100, 1000))),
                    (7, 65_500, 0, true, Some((101, 1000))),
                    (7, 65_535, 0, false, Some((136, 1000))),
                    (7, 0, 0, false, Some((137, 1000))),
                ],
            ),
            (
                "a new source continues after the last packet",
                &[
                    (7, 10, 0, false, Some((100, 1000))),
                    (7, 11, 3000, false, Some((101, 4000))),
                    (9, 777, 123_456, false, Some((102, 7000))),
                    (9, 778, 126_456, false, Some((103, 10_000))),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut r = Rewriter::new(0xabc, 100, 1000, 3000);
            for (i, (ssrc, seq, ts, disc, want)) in steps.iter().enumerate() {
                let got = r.rewrite(&pkt(*ssrc, *seq, *ts), 96, *disc);
                let got_pair = got.as_ref().map(|p| (p.sequence_number, p.timestamp));
                assert_eq!(got_pair, *want, "{name}: step {i}");
                if let Some(p) = got {
                    assert_eq!((p.ssrc, p.payload_type), (0xabc, 96), "{name}: step {i}");
                }
            }
        }
    }
}
