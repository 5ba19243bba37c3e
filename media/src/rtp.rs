//! RTP packets and sequence/timestamp arithmetic. See DESIGN.md.
//!
//! [`RtpPacket::parse`] reads an RTP packet (RFC 3550) from untrusted bytes: it skips the CSRC list
//! and any header extension and strips padding, keeping only what the core needs.
//! [`SeqUnwrapper`] and [`TsUnwrapper`] extend the 16-bit sequence number and the 32-bit RTP
//! timestamp to `u64` so that wrap-around never needs special casing downstream.
use bytes::Bytes;

/// An RTP packet as the core sees it: header fields it needs and the payload (padding removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    /// RTP payload type (7 bits).
    pub payload_type: u8,
    /// RTP sequence number.
    pub sequence_number: u16,
    /// RTP timestamp in the codec clock.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Marker bit (video: last packet of a frame).
    pub marker: bool,
    /// Payload after the header, CSRCs and extension, without padding (empty for a
    /// padding-only packet).
    pub payload: Bytes,
}

/// Why bytes could not be read as an RTP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed 12-byte header.
    #[error("packet of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    /// The CSRC count points past the end of the packet.
    #[error("CSRC list runs past the end of the packet")]
    CsrcTruncated,
    /// The header extension length points past the end of the packet.
    #[error("header extension runs past the end of the packet")]
    ExtensionTruncated,
    /// The padding bit is set but the padding count is zero or larger than the payload.
    #[error("invalid padding length")]
    BadPadding,
}

/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

impl RtpPacket {
    /// Parses an RTP packet, copying the payload out of `buf`.
    ///
    /// Handles the CSRC list, a header extension (skipped) and padding (removed: a padding-only
    /// packet yields an empty payload). Never panics on arbitrary input.
    pub fn parse(buf: &[u8]) -> Result<RtpPacket, RtpError> {
        let (header, range) = parse_header(buf)?;
        let payload = Bytes::copy_from_slice(buf.get(range).unwrap_or_default());
        Ok(header.with_payload(payload))
    }

    /// Like [`RtpPacket::parse`] but the payload shares `buf`'s memory instead of copying it.
    pub fn parse_bytes(buf: Bytes) -> Result<RtpPacket, RtpError> {
        let (header, range) = parse_header(&buf)?;
        let payload = buf.slice(range);
        Ok(header.with_payload(payload))
    }

    /// Serializes the packet: version 2, no padding, no extension, no CSRCs.
    ///
    /// `payload_type` is masked to its 7 bits. `parse(&p.to_bytes()) == Ok(p)` for every packet
    /// whose payload type fits in 7 bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + self.payload.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Header fields before the payload is attached.
struct Header {
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
}

impl Header {
    fn with_payload(self, payload: Bytes) -> RtpPacket {
        RtpPacket {
            payload_type: self.payload_type,
            sequence_number: self.sequence_number,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            marker: self.marker,
            payload,
        }
    }
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the header and returns the payload's byte range within `buf`.
fn parse_header(buf: &[u8]) -> Result<(Header, std::ops::Range<usize>), RtpError> {
    let too_short = RtpError::TooShort(buf.len());
    let (&b0, &b1) = match buf {
        [b0, b1, ..] if buf.len() >= RTP_HEADER_LEN => (b0, b1),
        _ => return Err(too_short),
    };
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let header = Header {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence_number: be_u16(buf, 2).ok_or(RtpError::TooShort(buf.len()))?,
        timestamp: be_u32(buf, 4).ok_or(RtpError::TooShort(buf.len()))?,
        ssrc: be_u32(buf, 8).ok_or(RtpError::TooShort(buf.len()))?,
    };
    let mut start = RTP_HEADER_LEN + 4 * csrc_count;
    if start > buf.len() {
        return Err(RtpError::CsrcTruncated);
    }
    if has_extension {
        let words = be_u16(buf, start + 2).ok_or(RtpError::ExtensionTruncated)?;
        start += 4 + 4 * usize::from(words);
        if start > buf.len() {
            return Err(RtpError::ExtensionTruncated);
        }
    }
    let mut end = buf.len();
    if has_padding {
        let pad = usize::from(*buf.last().ok_or(RtpError::BadPadding)?);
        if pad == 0 || pad > end - start {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok((header, start..end))
}

/// Nearest extension of `value` (taken modulo `2^bits`, `bits < 64`) to `reference`: a step of
/// exactly half a cycle counts as forward.
///
/// When the nearest extension does not fit in `u64` (it would fall before zero, or past
/// `u64::MAX`), the extension on the other side of `reference` is returned instead. So a jump
/// of just over half a cycle near zero (e.g. an RTP timestamp stepping by 2^31 + 1 early in a
/// stream, which a sender restart can do) counts as a forward step and the values after it
/// keep increasing, instead of every later value collapsing onto 0.
fn nearest(reference: u64, value: u64, bits: u32) -> u64 {
    let cycle = 1u64 << bits;
    let half = cycle / 2;
    let candidate = (reference & !(cycle - 1)) | (value & (cycle - 1));
    if candidate > reference && candidate - reference > half {
        candidate.checked_sub(cycle).unwrap_or(candidate)
    } else if candidate < reference && reference - candidate >= half {
        candidate.checked_add(cycle).unwrap_or(candidate)
    } else {
        candidate
    }
}

/// Extends 16-bit RTP sequence numbers to a monotonic `u64` across wrap-around.
///
/// Each value is placed in the 2^16 cycle that puts it nearest to the highest value seen so
/// far, so packets reordered around the wrap (…65534, 1, 65535, 0…) get the right order.
/// The first value is mapped into cycle 1 (`seq + 65536`), so packets that arrive reordered
/// *before* the first one still get distinct, smaller values. Only differences and order of the
/// results are meaningful.
#[derive(Clone, Debug, Default)]
pub struct SeqUnwrapper {
    max: Option<u64>,
}

impl SeqUnwrapper {
    /// A fresh unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends `seq`. Never panics; the maximum grows by at most 2^15 per call, so the values
    /// stay far from `u64::MAX` (below 2^17 + 2^15 * calls).
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let value = u64::from(seq);
        let extended = match self.max {
            None => value + (1 << 16),
            Some(max) => nearest(max, value, 16),
        };
        self.max = Some(self.max.map_or(extended, |m| m.max(extended)));
        extended
    }
}

/// Extends 32-bit RTP timestamps to a monotonic `u64` across wrap-around.
///
/// The first value is returned unchanged; later values are placed in the 2^32 cycle nearest
/// to the highest value seen so far (a step of exactly 2^31 counts as forward). A value whose
/// nearest extension would fall before zero (a step back across the wrap from the first cycle,
/// e.g. a jump of 2^31 + 1 early in a stream) is placed forward instead, and later values follow
/// it: results never collapse onto 0. Each call moves the maximum by at most 2^31, so values
/// stay far from `u64::MAX`.
#[derive(Clone, Debug, Default)]
pub struct TsUnwrapper {
    max: Option<u64>,
}

impl TsUnwrapper {
    /// A fresh unwrapper that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends `ts`.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let value = u64::from(ts);
        let extended = match self.max {
            None => value,
            Some(max) => nearest(max, value, 32),
        };
        self.max = Some(self.max.map_or(extended, |m| m.max(extended)));
        extended
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;

    /// Builds raw RTP bytes with optional CSRCs, a header extension and padding.
    fn raw(
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        csrcs: &[u32],
        ext: Option<&[u8]>,
        payload: &[u8],
        pad: u8,
    ) -> Vec<u8> {
        let mut b0 = 0x80 | csrcs.len() as u8;
        if ext.is_some() {
            b0 |= 0x10;
        }
        if pad > 0 {
            b0 |= 0x20;
        }
        let mut out = vec![b0, (u8::from(marker) << 7) | pt];
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&ssrc.to_be_bytes());
        for c in csrcs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(ext) = ext {
            assert_eq!(ext.len() % 4, 0);
            out.extend_from_slice(&[0xbe, 0xde]);
            out.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(ext);
        }
        out.extend_from_slice(payload);
        if pad > 0 {
            out.extend(std::iter::repeat_n(0u8, usize::from(pad) - 1));
            out.push(pad);
        }
        out
    }

    #[test]
    fn parse_table() {
        let ext = [0x10, 0xaa, 0xbb, 0xcc];
        // (name, bytes, expected payload or error)
        let cases: Vec<(&str, Vec<u8>, Result<&[u8], RtpError>)> = vec![
            (
                "plain",
                raw(true, 96, 7, 9, 5, &[], None, b"abc", 0),
                Ok(b"abc"),
            ),
            (
                "csrc",
                raw(true, 96, 7, 9, 5, &[1, 2, 3], None, b"abc", 0),
                Ok(b"abc"),
            ),
            (
                "extension",
                raw(true, 96, 7, 9, 5, &[], Some(&ext), b"abc", 0),
                Ok(b"abc"),
            ),
            (
                "padding",
                raw(true, 96, 7, 9, 5, &[], None, b"abc", 4),
                Ok(b"abc"),
            ),
            (
                "all three",
                raw(true, 96, 7, 9, 5, &[9], Some(&ext), b"abc", 1),
                Ok(b"abc"),
            ),
            (
                "padding only",
                raw(true, 96, 7, 9, 5, &[], None, b"", 200),
                Ok(b""),
            ),
            ("empty", raw(true, 96, 7, 9, 5, &[], None, b"", 0), Ok(b"")),
            (
                "too short",
                vec![0x80, 96, 0, 1],
                Err(RtpError::TooShort(4)),
            ),
            (
                "version 1",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], None, b"abc", 0);
                    v[0] = 0x40;
                    v
                },
                Err(RtpError::BadVersion(1)),
            ),
            (
                "csrc truncated",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], None, b"abc", 0);
                    v[0] |= 0x02;
                    v
                },
                Err(RtpError::CsrcTruncated),
            ),
            (
                "extension header truncated",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], None, b"ab", 0);
                    v[0] |= 0x10;
                    v
                },
                Err(RtpError::ExtensionTruncated),
            ),
            (
                "extension body truncated",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], Some(&ext), b"", 0);
                    v[15] = 9; // claims 9 words
                    v
                },
                Err(RtpError::ExtensionTruncated),
            ),
            (
                "padding zero",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], None, b"abc", 0);
                    v[0] |= 0x20;
                    v.push(0);
                    v
                },
                Err(RtpError::BadPadding),
            ),
            (
                "padding too long",
                {
                    let mut v = raw(true, 96, 7, 9, 5, &[], None, b"abc", 0);
                    v[0] |= 0x20;
                    v.push(5);
                    v
                },
                Err(RtpError::BadPadding),
            ),
        ];
        for (name, bytes, expected) in cases {
            let got = RtpPacket::parse(&bytes);
            let got_shared = RtpPacket::parse_bytes(Bytes::from(bytes.clone()));
            assert_eq!(got, got_shared, "{name}: parse and parse_bytes disagree");
            match expected {
                Ok(payload) => {
                    let p = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(&p.payload[..], payload, "{name}");
                    assert_eq!(
                        (
                            p.marker,
                            p.payload_type,
                            p.sequence_number,
                            p.timestamp,
                            p.ssrc
                        ),
                        (true, 96, 7, 9, 5),
                        "{name}"
                    );
                    // Round trip through the canonical form.
                    assert_eq!(RtpPacket::parse(&p.to_bytes()), Ok(p.clone()), "{name}");
                }
                Err(e) => assert_eq!(got, Err(e), "{name}"),
            }
        }
    }

    #[test]
    fn to_bytes_layout_and_round_trip() {
        let p = RtpPacket {
            payload_type: 111,
            sequence_number: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            marker: false,
            payload: Bytes::from_static(b"\x01\x02"),
        };
        let bytes = p.to_bytes();
        assert_eq!(
            bytes,
            [
                0x80, 111, 0xff, 0xfe, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 1, 2
            ]
        );
        assert_eq!(RtpPacket::parse(&bytes), Ok(p.clone()));
        let m = RtpPacket { marker: true, ..p };
        assert_eq!(m.to_bytes()[1], 0x80 | 111);
        assert_eq!(RtpPacket::parse(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn parse_never_panics_on_prefixes_and_garbage() {
        let full = raw(true, 96, 7, 9, 5, &[1, 2], Some(&[1, 2, 3, 4]), b"hello", 3);
        for n in 0..=full.len() {
            let _ = RtpPacket::parse(&full[..n]);
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = (x >> 16) as usize % 40;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32) as u8) | 0x80)
                .collect();
            let _ = RtpPacket::parse(&bytes);
        }
    }

    #[test]
    fn seq_unwrap_table() {
        // (input sequence, expected extended values relative to the first one)
        let cases: Vec<(&str, Vec<u16>, Vec<i64>)> = vec![
            ("in order", vec![1, 2, 3], vec![0, 1, 2]),
            ("wrap", vec![65534, 65535, 0, 1], vec![0, 1, 2, 3]),
            (
                "reordered around wrap",
                vec![65534, 0, 65535, 1],
                vec![0, 2, 1, 3],
            ),
            ("before the first", vec![10, 8, 11], vec![0, -2, 1]),
            ("first before wrap", vec![0, 65535, 1], vec![0, -1, 1]),
            ("duplicate", vec![5, 5, 6], vec![0, 0, 1]),
            (
                "large forward jump then old",
                vec![0, 30000, 60000, 100, 1000],
                vec![0, 30000, 60000, 65636, 66536],
            ),
        ];
        for (name, input, expected) in cases {
            let mut u = SeqUnwrapper::new();
            let out: Vec<u64> = input.iter().map(|s| u.unwrap(*s)).collect();
            let base = out[0] as i64;
            let rel: Vec<i64> = out.iter().map(|v| *v as i64 - base).collect();
            assert_eq!(rel, expected, "{name}");
        }
    }

    #[test]
    fn ts_unwrap_table() {
        let cases: Vec<(&str, Vec<u32>, Vec<u64>)> = vec![
            ("first unchanged", vec![1000, 4000], vec![1000, 4000]),
            (
                "wrap",
                vec![u32::MAX - 2999, 1000, 4000],
                vec![u32::MAX as u64 - 2999, (1 << 32) + 1000, (1 << 32) + 4000],
            ),
            (
                "reordered across wrap",
                vec![u32::MAX - 100, 50, u32::MAX - 10, 100],
                vec![
                    u32::MAX as u64 - 100,
                    (1 << 32) + 50,
                    u32::MAX as u64 - 10,
                    (1 << 32) + 100,
                ],
            ),
            (
                // Used to saturate to 0 (then 20 stayed 20); now the step counts as forward
                // and 20 follows it into the next cycle (differences stay right).
                "older than first across the wrap goes forward",
                vec![10, u32::MAX - 5, 20],
                vec![10, u32::MAX as u64 - 5, (1 << 32) + 20],
            ),
            (
                // Used to give [10, 0, 0]: every frame after the jump collapsed onto 0.
                "jump of 2^31 + 1 in the first cycle goes forward and stays monotonic",
                vec![10, 10 + (1 << 31) + 1, 10 + (1 << 31) + 3001],
                vec![10, (1 << 31) + 11, (1 << 31) + 3011],
            ),
            (
                "jump of 2^31 + 1 after a wrap counts as backward",
                vec![u32::MAX - 10, 20, 20 + (1 << 31) + 1],
                vec![u32::MAX as u64 - 10, (1 << 32) + 20, (1 << 31) + 21],
            ),
            (
                "jump of exactly 2^31 counts as forward",
                vec![10, 10 + (1 << 31), 10],
                vec![10, (1 << 31) + 10, (1 << 32) + 10],
            ),
            (
                "two wraps",
                vec![0, 1 << 31, u32::MAX, 5, 1 << 31, u32::MAX, 7],
                vec![
                    0,
                    1 << 31,
                    u32::MAX as u64,
                    (1 << 32) + 5,
                    (1 << 32) + (1 << 31),
                    (1 << 32) + u32::MAX as u64,
                    (2 << 32) + 7,
                ],
            ),
        ];
        for (name, input, expected) in cases {
            let mut u = TsUnwrapper::new();
            let out: Vec<u64> = input.iter().map(|t| u.unwrap(*t)).collect();
            assert_eq!(out, expected, "{name}");
        }
    }

    #[test]
    fn nearest_table() {
        // (name, reference, value, bits, expected)
        let cases: Vec<(&str, u64, u64, u32, u64)> = vec![
            ("same cycle", 1000, 1005, 32, 1005),
            (
                "forward across wrap",
                u64::from(u32::MAX),
                3,
                32,
                (1 << 32) + 3,
            ),
            (
                "back across wrap",
                (1 << 32) + 3,
                u64::from(u32::MAX),
                32,
                u64::from(u32::MAX),
            ),
            (
                "back before zero goes forward",
                10,
                u64::from(u32::MAX),
                32,
                u64::from(u32::MAX),
            ),
            (
                "forward past u64::MAX goes back",
                u64::MAX - 5,
                0,
                32,
                u64::MAX - u64::from(u32::MAX),
            ),
            (
                "u64::MAX itself",
                u64::MAX,
                u64::from(u32::MAX),
                32,
                u64::MAX,
            ),
            (
                "16-bit forward past u64::MAX",
                u64::MAX,
                0,
                16,
                u64::MAX - 0xffff,
            ),
            ("value wider than the cycle is masked", 0, 0x1_0005, 16, 5),
        ];
        for (name, reference, value, bits, expected) in cases {
            assert_eq!(nearest(reference, value, bits), expected, "{name}");
        }
        // Extremes never panic.
        for reference in [0, 1, 1 << 31, 1 << 32, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            for value in [0, 1, 1 << 15, 1 << 31, u64::from(u32::MAX)] {
                for bits in [16, 32] {
                    let _ = nearest(reference, value, bits);
                }
            }
        }
    }
}
