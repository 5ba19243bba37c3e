//! Small codec-header helpers the containers need (private; the `depack` module has public
//! equivalents, to be deduplicated later).

/// NAL unit type of an H264 SPS.
pub(crate) const NAL_SPS: u8 = 7;
/// NAL unit type of an H264 PPS.
pub(crate) const NAL_PPS: u8 = 8;
/// NAL unit type of an H264 IDR slice.
pub(crate) const NAL_IDR: u8 = 5;

/// Splits an Annex B byte stream into NAL units (without start codes). Empty units are skipped.
pub(crate) fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                let mut end = i;
                // A 4-byte start code's leading zero belongs to the start code, not the NAL.
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    nals.push(&data[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    match start {
        Some(s) if s < data.len() => nals.push(&data[s..]),
        None if !data.is_empty() => nals.push(data), // no start code: one bare NAL
        _ => {}
    }
    nals
}

/// The NAL unit type (low 5 bits of the first byte).
pub(crate) fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The first SPS and PPS of an Annex B access unit.
pub(crate) fn find_sps_pps(data: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let nals = annexb_nals(data);
    let sps = nals.iter().copied().find(|n| nal_type(n) == NAL_SPS);
    let pps = nals.iter().copied().find(|n| nal_type(n) == NAL_PPS);
    (sps, pps)
}

/// Picture dimensions from an SPS NAL unit (with its 1-byte header).
pub(crate) fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    use h264_reader::nal::sps::SeqParameterSet;
    let rbsp = h264_reader::rbsp::decode_nal(sps).ok()?;
    let sps = SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(&rbsp[..])).ok()?;
    let (w, h) = sps.pixel_dimensions().ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

/// Dimensions from a VP8 key frame header (RFC 6386 §9.1); `None` for inter frames or junk.
pub(crate) fn vp8_dimensions(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1).
/// Falls back to 960 (20 ms) for an empty packet and caps at 120 ms.
pub(crate) fn opus_duration(packet: &[u8]) -> u32 {
    let Some(&toc) = packet.first() else {
        return 960;
    };
    let config = toc >> 3;
    // Samples per frame at 48 kHz.
    let frame_samples: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(1, |b| u32::from(b & 0x3f)).max(1),
    };
    (frame_samples * frames).min(5760)
}

/// Converts Annex B to AVCC with 4-byte big-endian length prefixes.
pub(crate) fn annexb_to_avcc(data: &[u8]) -> Vec<u8> {
    let nals = annexb_nals(data);
    let mut out = Vec::with_capacity(data.len() + 4 * nals.len());
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// Splits AVCC (`length_size`-byte length prefixes) into NAL units; `None` if malformed.
pub(crate) fn avcc_nals(data: &[u8], length_size: usize) -> Option<Vec<&[u8]>> {
    if !(1..=4).contains(&length_size) {
        return None;
    }
    let mut nals = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return None;
        }
        let len = rest[..length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[length_size..];
        if len > rest.len() {
            return None;
        }
        if len > 0 {
            nals.push(&rest[..len]);
        }
        rest = &rest[len..];
    }
    Some(nals)
}

/// Joins NAL units into Annex B with 4-byte start codes.
pub(crate) fn to_annexb<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// Rescales `v` from `from` units per second to `to`, rounding to nearest (no overflow).
pub(crate) fn rescale(v: u64, from: u32, to: u32) -> u64 {
    if from == 0 {
        return 0;
    }
    let r = (u128::from(v) * u128::from(to) + u128::from(from) / 2) / u128::from(from);
    u64::try_from(r).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_split_table() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (
                &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3],
                &[&[0x67, 1, 2], &[0x68, 3]],
            ),
            (
                &[0, 0, 1, 0x65, 9, 0, 0, 0, 1, 0x41],
                &[&[0x65, 9], &[0x41]],
            ),
            (&[0x65, 1, 2], &[&[0x65, 1, 2]]),
            (&[], &[]),
            (&[0, 0, 1], &[]),
        ];
        for (input, want) in cases {
            assert_eq!(annexb_nals(input), *want, "{input:?}");
        }
    }

    #[test]
    fn avcc_round_trip_and_malformed() {
        let annexb = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 7];
        let avcc = annexb_to_avcc(&annexb);
        assert_eq!(avcc, [0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x65, 7]);
        let nals = avcc_nals(&avcc, 4).unwrap();
        assert_eq!(to_annexb(nals), annexb);
        assert!(avcc_nals(&[0, 0, 0, 9, 1], 4).is_none());
        assert!(avcc_nals(&[0, 0], 4).is_none());
        assert!(avcc_nals(&[1], 0).is_none());
    }

    #[test]
    fn opus_toc_durations() {
        for (packet, want) in [
            (&[][..], 960),
            (&[0xf8][..], 960),        // CELT FB 20 ms, code 0
            (&[0xf9][..], 1920),       // 2 frames
            (&[0xe0][..], 120),        // CELT 2.5 ms
            (&[0x08][..], 960),        // SILK NB 20 ms
            (&[0x18][..], 2880),       // SILK 60 ms
            (&[0x7b, 0x03][..], 2880), // hybrid FB 20 ms, code 3 with 3 frames
            (&[0x1b, 0x3f][..], 5760), // capped at 120 ms
        ] {
            assert_eq!(opus_duration(packet), want, "{packet:x?}");
        }
    }

    #[test]
    fn vp8_header() {
        let key = [0x50, 0x1a, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00];
        assert_eq!(vp8_dimensions(&key), Some((64, 48)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(vp8_dimensions(&inter), None);
        assert_eq!(vp8_dimensions(&key[..9]), None);
    }

    #[test]
    fn rescale_rounds() {
        assert_eq!(rescale(3000, 90_000, 1000), 33);
        assert_eq!(rescale(90_000, 90_000, 48_000), 48_000);
        assert_eq!(rescale(u64::MAX, 1, 2), u64::MAX);
        assert_eq!(rescale(5, 0, 2), 0);
    }
}
