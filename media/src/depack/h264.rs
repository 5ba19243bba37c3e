//! H264 RTP payload (RFC 6184: single NAL unit, STAP-A, FU-A) and Annex B helpers.
use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

use super::DepackError;

/// NAL unit type of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// RTP packetization type: single-time aggregation packet (RFC 6184 §5.7.1).
pub const STAP_A: u8 = 24;
/// RTP packetization type: fragmentation unit (RFC 6184 §5.8).
pub const FU_A: u8 = 28;

/// The 4-byte Annex B start code written in front of every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The `nal_unit_type` (low 5 bits of the first byte) of a NAL unit; `None` when empty.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Iterator over the NAL units of an Annex B byte stream; see [`nal_units`].
#[derive(Clone, Debug)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Position of the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|p| p + from)
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.data.len() {
            let end = find_start_code(self.data, self.pos).unwrap_or(self.data.len());
            let mut nal = self.data.get(self.pos..end).unwrap_or_default();
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            self.pos = end.saturating_add(3);
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// The NAL units (without start codes) of an Annex B byte stream.
///
/// Accepts 3- and 4-byte start codes; trailing zero bytes before a start code are dropped and
/// empty NAL units are skipped. Bytes before the first start code, if any, are returned as a
/// NAL unit so a single NAL unit without a start code is also accepted.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits { data, pos: 0 }
}

fn has_start_code(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 1]) || data.starts_with(&START_CODE)
}

/// True when `data` holds an IDR slice (NAL type 5).
///
/// `data` is either an Annex B access unit (starting with a start code), in which case every
/// NAL unit is checked, or a single NAL unit without start code.
pub fn is_idr(data: &[u8]) -> bool {
    if has_start_code(data) {
        nal_units(data).any(|n| nal_type(n) == Some(NAL_IDR))
    } else {
        nal_type(data) == Some(NAL_IDR)
    }
}

/// The first SPS and PPS NAL units (without start codes) of an Annex B access unit.
pub fn parameter_sets(data: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(data) {
        match nal_type(nal) {
            Some(NAL_SPS) if sps.is_none() => sps = Some(nal),
            Some(NAL_PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    (sps, pps)
}

/// Display width and height (after cropping) from an SPS NAL unit (header byte included; a
/// leading start code is tolerated). `None` when it is not a parseable SPS or says 0.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let nal = nal_units(sps).next()?;
    if nal_type(nal) != Some(NAL_SPS) {
        return None;
    }
    let rbsp = decode_nal(nal).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    sps.pixel_dimensions()
        .ok()
        .filter(|(w, h)| *w > 0 && *h > 0)
}

/// True when a slice NAL unit's `first_mb_in_slice` is 0 (the slice starts the picture).
/// `first` is the first byte after the NAL header; ue(v) 0 is a single `1` bit.
pub(crate) fn first_mb_is_zero(first: Option<&u8>) -> bool {
    first.is_some_and(|b| b & 0x80 != 0)
}

/// True when `payload` (an RTP payload) can be the first packet of an access unit: not an FU-A
/// continuation, and a slice that starts the picture if it carries one.
pub(crate) fn starts_frame(payload: &[u8]) -> bool {
    match nal_type(payload) {
        Some(NAL_SLICE | NAL_IDR) => first_mb_is_zero(payload.get(1)),
        Some(FU_A) => match payload.get(1) {
            Some(h) if h & 0x80 != 0 => match h & 0x1f {
                NAL_SLICE | NAL_IDR => first_mb_is_zero(payload.get(2)),
                _ => true,
            },
            _ => false,
        },
        Some(1..=24) => true,
        _ => false,
    }
}

/// The NAL units aggregated in a STAP-A payload (RFC 6184 §5.7.1: after the STAP-A header
/// byte, each unit has a 16-bit size); an `Err` at the first truncated or empty one.
pub(crate) fn stap_a_units(payload: &[u8]) -> impl Iterator<Item = Result<&[u8], DepackError>> {
    let mut rest = payload.get(1..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let unit = match rest {
            [hi, lo, tail @ ..] => {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                match tail.get(..size).filter(|u| !u.is_empty()) {
                    Some(unit) => {
                        rest = &tail[size..];
                        Ok(unit)
                    }
                    None => Err(DepackError::Truncated),
                }
            }
            _ => Err(DepackError::Truncated),
        };
        if unit.is_err() {
            rest = &[];
        }
        Some(unit)
    })
}

/// Reassembles H264 access units and remembers the latest SPS/PPS.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assembler {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
}

impl Assembler {
    /// Builds one Annex B access unit from the RTP payloads of its packets (in sequence order,
    /// no padding). Returns the data and whether it holds an IDR slice.
    ///
    /// `Ok(None)` when the access unit holds no picture (no VCL NAL unit, types 1-5: only
    /// parameter sets, SEI, AUD, ...). Its SPS/PPS are still remembered, so they go in front of
    /// the next IDR; some senders put the marker bit on their parameter set packets, which
    /// share the IDR's timestamp.
    pub(crate) fn assemble(
        &mut self,
        payloads: &[Bytes],
    ) -> Result<Option<(Bytes, bool)>, DepackError> {
        let mut nals: Vec<Bytes> = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in payloads {
            let header = *p.first().ok_or(DepackError::Empty)?;
            let kind = header & 0x1f;
            if fu.is_some() && kind != FU_A {
                return Err(DepackError::IncompleteFragment);
            }
            match kind {
                1..=23 => nals.push(p.clone()),
                STAP_A => {
                    let before = nals.len();
                    for unit in stap_a_units(p) {
                        nals.push(p.slice_ref(unit?));
                    }
                    if nals.len() == before {
                        return Err(DepackError::Truncated);
                    }
                }
                FU_A => {
                    let fu_header = *p.get(1).ok_or(DepackError::Truncated)?;
                    let data = p.get(2..).unwrap_or_default();
                    if fu_header & 0x80 != 0 {
                        if fu.is_some() {
                            return Err(DepackError::IncompleteFragment);
                        }
                        let mut nal = Vec::with_capacity(1 + data.len());
                        nal.push((header & 0xe0) | (fu_header & 0x1f));
                        fu = Some(nal);
                    }
                    let nal = fu.as_mut().ok_or(DepackError::MissingStart)?;
                    nal.extend_from_slice(data);
                    if fu_header & 0x40 != 0 {
                        nals.extend(fu.take().map(Bytes::from));
                    }
                }
                other => return Err(DepackError::Unsupported(other)),
            }
        }
        if fu.is_some() {
            return Err(DepackError::IncompleteFragment);
        }
        if nals.is_empty() {
            return Err(DepackError::Empty);
        }

        let has = |t: u8| nals.iter().any(|n| nal_type(n) == Some(t));
        let (has_sps, has_pps, idr) = (has(NAL_SPS), has(NAL_PPS), has(NAL_IDR));
        for n in &nals {
            match nal_type(n) {
                Some(NAL_SPS) => self.sps = Some(n.clone()),
                Some(NAL_PPS) => self.pps = Some(n.clone()),
                _ => {}
            }
        }
        if !nals
            .iter()
            .any(|n| matches!(nal_type(n), Some(NAL_SLICE..=NAL_IDR)))
        {
            return Ok(None);
        }
        if idr {
            // Prepend missing parameter sets, after an access unit delimiter if there is one.
            let at = usize::from(nals.first().and_then(|n| nal_type(n)) == Some(NAL_AUD));
            match (has_sps, has_pps) {
                (false, false) => {
                    let sets = [self.sps.clone(), self.pps.clone()];
                    let sets = sets.into_iter().flatten();
                    nals.splice(at..at, sets);
                }
                (true, false) => {
                    let after = nals
                        .iter()
                        .rposition(|n| nal_type(n) == Some(NAL_SPS))
                        .map_or(at, |i| i + 1);
                    nals.splice(after..after, self.pps.clone());
                }
                (false, true) => {
                    let before = nals
                        .iter()
                        .position(|n| nal_type(n) == Some(NAL_PPS))
                        .unwrap_or(at);
                    nals.splice(before..before, self.sps.clone());
                }
                (true, true) => {}
            }
        }
        let mut out = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
        for n in &nals {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(n);
        }
        Ok(Some((Bytes::from(out), idr)))
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // test tables
pub(crate) mod tests {
    use super::*;

    /// Minimal bit writer for building SPS NAL units in tests.
    struct Bits {
        out: Vec<u8>,
        bit: u32,
    }

    impl Bits {
        fn new() -> Self {
            Bits {
                out: Vec::new(),
                bit: 0,
            }
        }
        fn u(&mut self, n: u32, v: u32) {
            for i in (0..n).rev() {
                if self.bit.is_multiple_of(8) {
                    self.out.push(0);
                }
                if (v >> i) & 1 == 1 {
                    let last = self.out.len() - 1;
                    self.out[last] |= 0x80 >> (self.bit % 8);
                }
                self.bit += 1;
            }
        }
        fn ue(&mut self, v: u32) {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.u(len - 1, 0);
            self.u(len, x);
        }
    }

    /// A baseline-profile SPS NAL unit (header included, emulation prevention applied) for a
    /// picture of `mbs_w` x `mbs_h` macroblocks with optional (left, right, top, bottom) crop.
    pub(crate) fn make_sps(mbs_w: u32, mbs_h: u32, crop: Option<(u32, u32, u32, u32)>) -> Vec<u8> {
        let mut b = Bits::new();
        b.u(8, 66); // profile_idc baseline
        b.u(8, 0xc0); // constraint flags
        b.u(8, 51); // level_idc 5.1 (large enough for 1080p)
        b.ue(0); // seq_parameter_set_id
        b.ue(0); // log2_max_frame_num_minus4
        b.ue(2); // pic_order_cnt_type
        b.ue(1); // max_num_ref_frames
        b.u(1, 0); // gaps_in_frame_num_value_allowed_flag
        b.ue(mbs_w - 1);
        b.ue(mbs_h - 1);
        b.u(1, 1); // frame_mbs_only_flag
        b.u(1, 1); // direct_8x8_inference_flag
        match crop {
            Some((l, r, t, bo)) => {
                b.u(1, 1);
                b.ue(l);
                b.ue(r);
                b.ue(t);
                b.ue(bo);
            }
            None => b.u(1, 0),
        }
        b.u(1, 0); // vui_parameters_present_flag
        b.u(1, 1); // rbsp_stop_one_bit
        while !b.bit.is_multiple_of(8) {
            b.u(1, 0);
        }
        let mut nal = vec![0x67];
        let mut zeros = 0;
        for byte in b.out {
            if zeros >= 2 && byte <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            nal.push(byte);
        }
        nal
    }

    #[test]
    fn sps_dimensions_table() {
        let cases: Vec<(&str, Vec<u8>, Option<(u32, u32)>)> = vec![
            ("640x480", make_sps(40, 30, None), Some((640, 480))),
            (
                "1920x1080 cropped",
                make_sps(120, 68, Some((0, 0, 0, 4))),
                Some((1920, 1080)),
            ),
            (
                "cropped left/right",
                make_sps(20, 15, Some((2, 3, 0, 0))),
                Some((310, 240)),
            ),
            (
                "with start code",
                [&START_CODE[..], &make_sps(40, 30, None)].concat(),
                Some((640, 480)),
            ),
            ("PPS is not an SPS", vec![0x68, 0xce, 0x38, 0x80], None),
            ("header only", vec![0x67], None),
            ("truncated", make_sps(40, 30, None)[..4].to_vec(), None),
            ("empty", vec![], None),
            (
                "crop larger than picture",
                make_sps(1, 1, Some((0, 0, 0, 100))),
                None,
            ),
        ];
        for (name, sps, expected) in cases {
            assert_eq!(sps_dimensions(&sps), expected, "{name}");
        }
        // Arbitrary bytes behind an SPS header never panic.
        let mut x: u32 = 99;
        for _ in 0..3000 {
            let mut nal = vec![0x67];
            for _ in 0..(x % 24) {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                nal.push((x >> 24) as u8);
            }
            let _ = sps_dimensions(&nal);
        }
    }

    #[test]
    fn nal_units_table() {
        let cases: Vec<(&str, &[u8], Vec<&[u8]>)> = vec![
            (
                "4-byte",
                &[0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2],
                vec![&[0x67, 1], &[0x68, 2]],
            ),
            (
                "3-byte",
                &[0, 0, 1, 0x65, 1, 2, 0, 0, 1, 0x41, 3],
                vec![&[0x65, 1, 2], &[0x41, 3]],
            ),
            (
                "mixed",
                &[0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 7],
                vec![&[0x09, 0xf0], &[0x65, 7]],
            ),
            (
                "trailing zeros",
                &[0, 0, 1, 0x65, 7, 0, 0],
                vec![&[0x65, 7]],
            ),
            (
                "empty NALs skipped",
                &[0, 0, 1, 0, 0, 1, 0x65],
                vec![&[0x65]],
            ),
            ("no start code", &[0x65, 1, 2], vec![&[0x65, 1, 2]]),
            ("empty", &[], vec![]),
            ("only start codes", &[0, 0, 0, 1, 0, 0, 1], vec![]),
        ];
        for (name, data, expected) in cases {
            assert_eq!(nal_units(data).collect::<Vec<_>>(), expected, "{name}");
        }
    }

    #[test]
    fn is_idr_and_parameter_sets() {
        let au = [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        assert!(is_idr(&au));
        assert!(is_idr(&[0x65, 0x88]));
        assert!(!is_idr(&[0x41, 0x88]));
        assert!(!is_idr(&[0, 0, 0, 1, 0x41, 0x9a]));
        assert!(!is_idr(&[]));
        assert_eq!(
            parameter_sets(&au),
            (Some(&[0x67, 1][..]), Some(&[0x68, 2][..]))
        );
        assert_eq!(parameter_sets(&[0, 0, 1, 0x41]), (None, None));
    }

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
}
