//! What the containers need beyond the codec knowledge in `depack` (one place per codec: H264
//! NAL units and parameter sets in `depack::h264`, VP8 headers in `depack::vp8`, Opus TOC in
//! `depack::opus`): AVCC framing and timescale rescaling.

use crate::depack::h264::nal_units;

/// Converts Annex B to AVCC with 4-byte big-endian length prefixes.
pub(crate) fn annexb_to_avcc(data: &[u8]) -> Vec<u8> {
    let nals: Vec<&[u8]> = nal_units(data).collect();
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
            assert_eq!(nal_units(input).collect::<Vec<_>>(), *want, "{input:?}");
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
        ] {
            let got = crate::depack::opus::packet_samples(packet).unwrap_or(960);
            assert_eq!(got, want, "{packet:x?}");
        }
        // Over 120 ms: not a valid packet (the containers then assume 20 ms).
        assert_eq!(crate::depack::opus::packet_samples(&[0x1b, 0x3f]), None);
    }

    #[test]
    fn vp8_header() {
        let key = [0x50, 0x1a, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00];
        let dims = crate::depack::vp8::frame_dimensions;
        assert_eq!(dims(&key), Some((64, 48)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(dims(&inter), None);
        assert_eq!(dims(&key[..9]), None);
    }

    #[test]
    fn rescale_rounds() {
        assert_eq!(rescale(3000, 90_000, 1000), 33);
        assert_eq!(rescale(90_000, 90_000, 48_000), 48_000);
        assert_eq!(rescale(u64::MAX, 1, 2), u64::MAX);
        assert_eq!(rescale(5, 0, 2), 0);
    }
}
