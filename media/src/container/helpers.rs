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
    fn rescale_rounds() {
        assert_eq!(rescale(3000, 90_000, 1000), 33);
        assert_eq!(rescale(90_000, 90_000, 48_000), 48_000);
        assert_eq!(rescale(u64::MAX, 1, 2), u64::MAX);
        assert_eq!(rescale(5, 0, 2), 0);
    }
}
