//! VP8 RTP payload (RFC 7741) and VP8 frame header helpers.
use bytes::Bytes;

use super::DepackError;

/// The VP8 payload descriptor at the start of every VP8 RTP payload (RFC 7741 §4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadDescriptor {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start: bool,
    /// PID: the partition index (0..=7).
    pub partition: u8,
    /// Picture ID (7 or 15 bits), when the I bit is set.
    pub picture_id: Option<u16>,
    /// TL0PICIDX, when the L bit is set.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index, when the T bit is set.
    pub tid: Option<u8>,
    /// Y: layer sync bit (meaningful only when `tid` is present).
    pub layer_sync: bool,
    /// KEYIDX, when the K bit is set.
    pub key_idx: Option<u8>,
    /// Length of the descriptor in bytes; the VP8 data starts at this offset.
    pub len: usize,
}

impl PayloadDescriptor {
    /// Parses the descriptor at the start of `payload`; `None` when it is truncated.
    pub fn parse(payload: &[u8]) -> Option<PayloadDescriptor> {
        let mut it = payload.iter().copied();
        let b0 = it.next()?;
        let mut d = PayloadDescriptor {
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition: b0 & 0x07,
            len: 1,
            ..PayloadDescriptor::default()
        };
        if b0 & 0x80 != 0 {
            let x = it.next()?;
            d.len += 1;
            if x & 0x80 != 0 {
                let p0 = it.next()?;
                d.len += 1;
                if p0 & 0x80 != 0 {
                    let p1 = it.next()?;
                    d.len += 1;
                    d.picture_id = Some((u16::from(p0 & 0x7f) << 8) | u16::from(p1));
                } else {
                    d.picture_id = Some(u16::from(p0));
                }
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(it.next()?);
                d.len += 1;
            }
            if x & 0x30 != 0 {
                let b = it.next()?;
                d.len += 1;
                if x & 0x20 != 0 {
                    d.tid = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(b & 0x1f);
                }
            }
        }
        Some(d)
    }

    /// True when this packet carries the first bytes of a frame (S=1 and partition 0).
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// True when `payload` (an RTP payload) begins a VP8 frame.
pub(crate) fn starts_frame(payload: &[u8]) -> bool {
    PayloadDescriptor::parse(payload).is_some_and(|d| d.starts_frame())
}

/// Reassembles one frame from the RTP payloads of its packets (in sequence order, no padding).
///
/// Returns the VP8 frame and whether it is a keyframe.
pub(crate) fn assemble(payloads: &[Bytes]) -> Result<(Bytes, bool), DepackError> {
    let mut data = Vec::with_capacity(payloads.iter().map(Bytes::len).sum());
    for (i, p) in payloads.iter().enumerate() {
        let d = PayloadDescriptor::parse(p).ok_or(DepackError::Truncated)?;
        if i == 0 && !d.starts_frame() {
            return Err(DepackError::MissingStart);
        }
        data.extend_from_slice(p.get(d.len..).unwrap_or_default());
    }
    let first = *data.first().ok_or(DepackError::Empty)?;
    Ok((Bytes::from(data), first & 0x01 == 0))
}

/// True when `frame` is a VP8 key frame (P bit of the frame tag is 0).
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Width and height from a VP8 key frame header (frame tag, start code `9d 01 2a`, then
/// 14-bit width and height). `None` for inter frames, malformed input and a 0 size.
pub fn frame_dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    let h = frame.get(..10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let ht = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    (w > 0 && ht > 0).then_some((w, ht))
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;

    #[test]
    fn descriptor_table() {
        let base = PayloadDescriptor::default();
        let cases: Vec<(&str, &[u8], Option<PayloadDescriptor>)> = vec![
            ("empty", &[], None),
            (
                "minimal start",
                &[0x10, 0xaa],
                Some(PayloadDescriptor {
                    start: true,
                    len: 1,
                    ..base
                }),
            ),
            (
                "N bit, partition 3",
                &[0x23],
                Some(PayloadDescriptor {
                    non_reference: true,
                    partition: 3,
                    len: 1,
                    ..base
                }),
            ),
            (
                "7-bit picture id",
                &[0x90, 0x80, 0x55, 0xaa],
                Some(PayloadDescriptor {
                    start: true,
                    picture_id: Some(0x55),
                    len: 3,
                    ..base
                }),
            ),
            (
                "15-bit picture id",
                &[0x90, 0x80, 0x81, 0x23, 0xaa],
                Some(PayloadDescriptor {
                    start: true,
                    picture_id: Some(0x0123),
                    len: 4,
                    ..base
                }),
            ),
            (
                "I L T K",
                &[0x90, 0xf0, 0xff, 0xff, 0x07, 0b1010_0101, 0xaa],
                Some(PayloadDescriptor {
                    start: true,
                    picture_id: Some(0x7fff),
                    tl0_pic_idx: Some(7),
                    tid: Some(2),
                    layer_sync: true,
                    key_idx: Some(5),
                    len: 6,
                    ..base
                }),
            ),
            (
                "K only",
                &[0x80, 0x10, 0x1f],
                Some(PayloadDescriptor {
                    key_idx: Some(0x1f),
                    len: 3,
                    ..base
                }),
            ),
            (
                "T only",
                &[0x80, 0x20, 0x40],
                Some(PayloadDescriptor {
                    tid: Some(1),
                    len: 3,
                    ..base
                }),
            ),
            ("X without extension byte", &[0x80], None),
            ("I without picture id", &[0x80, 0x80], None),
            ("M without second byte", &[0x80, 0x80, 0x80], None),
            ("L without byte", &[0x80, 0x40], None),
            ("T/K without byte", &[0x80, 0x30], None),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(PayloadDescriptor::parse(bytes), expected, "{name}");
        }
    }

    #[test]
    fn dimensions_table() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        let scaled = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0xe0, 0xc1];
        let cases: Vec<(&str, &[u8], Option<(u16, u16)>)> = vec![
            ("640x480", &key, Some((640, 480))),
            ("scale bits ignored", &scaled, Some((640, 480))),
            (
                "inter frame",
                &[0x11, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01],
                None,
            ),
            (
                "bad start code",
                &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2b, 0x80, 0x02, 0xe0, 0x01],
                None,
            ),
            ("truncated", &key[..9], None),
            ("empty", &[], None),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(frame_dimensions(bytes), expected, "{name}");
        }
        assert!(is_keyframe(&key));
        assert!(!is_keyframe(&[0x01]));
        assert!(!is_keyframe(&[]));
    }

    #[test]
    fn vp8_header() {
        let key = [0x50, 0x1a, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00];
        let dims = frame_dimensions;
        assert_eq!(dims(&key), Some((64, 48)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(dims(&inter), None);
        assert_eq!(dims(&key[..9]), None);
        // A 0x0 header cannot start a file.
        let mut zero = key;
        zero[6..10].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(dims(&zero), None);
    }
}
