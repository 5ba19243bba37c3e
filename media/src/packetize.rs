//! Frames -> RTP payloads (play path). See DESIGN.md.
//!
//! [`payloads`] splits one frame into RTP payloads no larger than `mtu` bytes. The caller builds
//! the RTP headers and sets the marker bit on the last payload of a video frame. Feeding the
//! payloads to [`crate::depack::Depacketizer`] gives the frame back.
use bytes::Bytes;

use crate::Codec;
use crate::depack::h264::{self, FU_A, NAL_PPS, NAL_SPS, STAP_A};

/// Splits one frame into RTP payloads of at most `mtu` bytes each.
///
/// `mtu` is the largest *payload* to produce (the caller has already subtracted the RTP
/// header and any SRTP/extension overhead). Values too small to make progress are raised to
/// the codec's minimum (2 bytes for VP8, 3 for H264).
///
/// - VP8: each payload gets a 1-byte payload descriptor, S bit set on the first one, partition
///   0, no picture id.
/// - H264: `frame` is Annex B (3- or 4-byte start codes). Each NAL unit is sent as a single NAL
///   unit packet when it fits, as FU-A fragments otherwise; consecutive SPS/PPS NAL units are
///   aggregated into one STAP-A when more than one fits.
/// - Opus: the packet as is (one payload, whatever `mtu` says).
///
/// An empty frame gives no payloads.
pub fn payloads(codec: Codec, frame: &[u8], mtu: usize) -> Vec<Bytes> {
    if frame.is_empty() {
        return Vec::new();
    }
    match codec {
        Codec::Opus => vec![Bytes::copy_from_slice(frame)],
        Codec::Vp8 => vp8(frame, mtu.max(2)),
        Codec::H264 => h264(frame, mtu.max(3)),
    }
}

fn vp8(frame: &[u8], mtu: usize) -> Vec<Bytes> {
    frame
        .chunks(mtu - 1)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = Vec::with_capacity(chunk.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(chunk);
            Bytes::from(p)
        })
        .collect()
}

fn is_parameter_set(nal: &[u8]) -> bool {
    matches!(h264::nal_type(nal), Some(NAL_SPS | NAL_PPS))
}

fn h264(frame: &[u8], mtu: usize) -> Vec<Bytes> {
    let nals: Vec<&[u8]> = h264::nal_units(frame).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&nal) = nals.get(i) {
        // Aggregate a run of parameter sets that fits into one STAP-A.
        if is_parameter_set(nal) {
            let mut size = 1;
            let mut n = 0;
            while let Some(&next) = nals.get(i + n) {
                let grown = size + 2 + next.len();
                if !is_parameter_set(next) || grown > mtu || next.len() > usize::from(u16::MAX) {
                    break;
                }
                size = grown;
                n += 1;
            }
            if n >= 2 {
                let mut p = Vec::with_capacity(size);
                // F bit: OR of the aggregated units; NRI: their maximum.
                let f = nals[i..i + n].iter().fold(0, |a, n| a | (n[0] & 0x80));
                let nri = nals[i..i + n].iter().map(|n| n[0] & 0x60).max();
                p.push(f | nri.unwrap_or(0) | STAP_A);
                for unit in &nals[i..i + n] {
                    p.extend_from_slice(&(unit.len() as u16).to_be_bytes());
                    p.extend_from_slice(unit);
                }
                out.push(Bytes::from(p));
                i += n;
                continue;
            }
        }
        if nal.len() <= mtu {
            out.push(Bytes::copy_from_slice(nal));
        } else {
            let header = nal[0];
            let indicator = (header & 0xe0) | FU_A;
            let body = &nal[1..];
            let chunks = body.chunks(mtu - 2);
            let last = chunks.len().saturating_sub(1);
            for (j, chunk) in chunks.enumerate() {
                let mut fu_header = header & 0x1f;
                if j == 0 {
                    fu_header |= 0x80;
                }
                if j == last {
                    fu_header |= 0x40;
                }
                let mut p = Vec::with_capacity(chunk.len() + 2);
                p.extend_from_slice(&[indicator, fu_header]);
                p.extend_from_slice(chunk);
                out.push(Bytes::from(p));
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;
    use crate::Frame;
    use crate::depack::Depacketizer;
    use crate::rtp::RtpPacket;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    fn pattern(first: u8, len: usize) -> Vec<u8> {
        std::iter::once(first)
            .chain((1..len).map(|i| (i * 7 % 253) as u8 + 1))
            .collect()
    }

    #[test]
    fn payload_layout_table() {
        let sps = [0x67, 0x42, 0xc0, 0x1f];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let idr = pattern(0x65, 10);
        let key = annexb(&[&sps, &pps, &idr]);
        // (name, codec, frame, mtu, expected payloads)
        let cases: Vec<(&str, Codec, Vec<u8>, usize, Vec<Vec<u8>>)> = vec![
            (
                "opus as is",
                Codec::Opus,
                vec![0xf8, 1, 2],
                2,
                vec![vec![0xf8, 1, 2]],
            ),
            ("empty frame", Codec::Vp8, vec![], 100, vec![]),
            (
                "vp8 one packet",
                Codec::Vp8,
                vec![0x50, 1, 2],
                100,
                vec![vec![0x10, 0x50, 1, 2]],
            ),
            (
                "vp8 split",
                Codec::Vp8,
                vec![0x50, 1, 2, 3, 4],
                3,
                vec![vec![0x10, 0x50, 1], vec![0x00, 2, 3], vec![0x00, 4]],
            ),
            (
                "vp8 mtu below minimum",
                Codec::Vp8,
                vec![0x50, 1],
                0,
                vec![vec![0x10, 0x50], vec![0x00, 1]],
            ),
            (
                "h264 SPS+PPS as STAP-A, IDR single",
                Codec::H264,
                key.clone(),
                100,
                vec![
                    [&[0x78, 0, 4][..], &sps, &[0, 4], &pps].concat(),
                    idr.clone(),
                ],
            ),
            (
                "h264 STAP-A too big: single NALs, IDR as FU-A",
                Codec::H264,
                key.clone(),
                6,
                vec![
                    sps.to_vec(),
                    pps.to_vec(),
                    [&[0x7c, 0x85][..], &idr[1..5]].concat(),
                    [&[0x7c, 0x05][..], &idr[5..9]].concat(),
                    [&[0x7c, 0x45][..], &idr[9..]].concat(),
                ],
            ),
            (
                "h264 3-byte start codes in",
                Codec::H264,
                vec![0, 0, 1, 0x41, 0x9a, 0, 0, 1, 0x41, 0x9b],
                100,
                vec![vec![0x41, 0x9a], vec![0x41, 0x9b]],
            ),
            (
                "h264 lone SPS stays single",
                Codec::H264,
                annexb(&[&sps, &idr]),
                100,
                vec![sps.to_vec(), idr.clone()],
            ),
        ];
        for (name, codec, frame, mtu, expected) in cases {
            let got: Vec<Vec<u8>> = payloads(codec, &frame, mtu)
                .iter()
                .map(|b| b.to_vec())
                .collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    /// Frames -> payloads -> RTP packets (optionally reordered) -> depacketizer == frames.
    fn round_trip(codec: Codec, frames: &[Frame], mtu: usize, shuffle: bool) {
        let mut packets = Vec::new();
        let mut seq: u16 = 65_500; // wraps during the test
        for f in frames {
            let ps = payloads(codec, &f.data, mtu);
            assert!(!ps.is_empty());
            let last = ps.len() - 1;
            for (i, p) in ps.into_iter().enumerate() {
                if codec != Codec::Opus {
                    assert!(p.len() <= mtu.max(3), "{codec:?} mtu {mtu}: {}", p.len());
                }
                packets.push(RtpPacket {
                    payload_type: 96,
                    sequence_number: seq,
                    timestamp: f.ts as u32,
                    ssrc: 7,
                    marker: i == last,
                    payload: p,
                });
                seq = seq.wrapping_add(1);
            }
        }
        if shuffle {
            // Deterministic local reordering: reverse every block of 5 packets after the
            // first one (the depacketizer starts at the first frame start it sees).
            for block in packets[1..].chunks_mut(5) {
                block.reverse();
            }
        }
        let mut d = Depacketizer::new(codec);
        let mut out = Vec::new();
        for p in packets {
            d.push(p);
            out.extend(std::iter::from_fn(|| d.pop()));
        }
        d.flush();
        out.extend(std::iter::from_fn(|| d.pop()));
        assert_eq!(out, frames, "{codec:?} mtu {mtu} shuffle {shuffle}");
        assert_eq!(d.stats().lost, 0);
        assert!(!d.take_keyframe_request());
    }

    fn frame(codec: Codec, ts: u64, keyframe: bool, data: Vec<u8>) -> Frame {
        Frame {
            codec,
            ts,
            keyframe,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn round_trips_at_several_mtus() {
        let sps = crate::depack::h264::tests::make_sps(40, 30, None);
        let pps = vec![0x68, 0xce, 0x3c, 0x80];
        let h264 = vec![
            frame(
                Codec::H264,
                0,
                true,
                annexb(&[&sps, &pps, &pattern(0x65, 3000), &pattern(0x65, 40)]),
            ),
            frame(Codec::H264, 3000, false, annexb(&[&pattern(0x41, 700)])),
            frame(Codec::H264, 6000, false, annexb(&[&pattern(0x41, 5)])),
            frame(
                Codec::H264,
                9000,
                true,
                annexb(&[&[0x09, 0xf0], &sps, &pps, &pattern(0x65, 1500)]),
            ),
        ];
        let mut vp8_key = vec![0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        vp8_key.extend(pattern(1, 2500));
        let vp8 = vec![
            frame(Codec::Vp8, 90_000, true, vp8_key),
            frame(Codec::Vp8, 93_000, false, pattern(0x51, 1)),
            frame(Codec::Vp8, 96_000, false, pattern(0x51, 900)),
        ];
        let opus: Vec<Frame> = (0..10)
            .map(|i| {
                frame(
                    Codec::Opus,
                    960 * i,
                    true,
                    pattern(0xf8, 3 + i as usize * 30),
                )
            })
            .collect();
        for mtu in [3, 7, 100, 1200, 4000] {
            for shuffle in [false, true] {
                round_trip(Codec::H264, &h264, mtu, shuffle);
                round_trip(Codec::Vp8, &vp8, mtu, shuffle);
                round_trip(Codec::Opus, &opus, mtu, shuffle);
            }
        }
    }
}
