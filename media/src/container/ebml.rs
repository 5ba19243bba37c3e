//! The EBML subset WebM needs: element IDs, variable-size integers, and the element kinds
//! (unsigned, float, string, binary, master) — both writing into a `Vec<u8>` and reading
//! from byte slices. Every reader returns `Option`/`Result`; nothing panics on bad input.

/// Element IDs used by the WebM writer and readers (IDs keep their marker bits, as in the spec).
pub(crate) mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const VOID: u32 = 0xEC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const REFERENCE_BLOCK: u32 = 0xFB;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// Size value meaning "unknown" once encoded on 8 bytes (all value bits set).
pub(crate) const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Largest size an 8-byte vint can carry (all-ones is reserved for "unknown").
#[cfg(test)]
pub(crate) const MAX_SIZE: u64 = (1 << 56) - 2;

// ---------------------------------------------------------------- writing

/// Appends an element ID (1–4 bytes; the ID value already contains its length marker).
pub(crate) fn put_id(buf: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    buf.extend_from_slice(&bytes[skip..]);
}

/// Appends a data size as the shortest vint (values up to [`MAX_SIZE`]).
pub(crate) fn put_size(buf: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    put_size_fixed(buf, size, len);
}

/// Appends a data size as a vint of exactly `len` bytes (1..=8).
pub(crate) fn put_size_fixed(buf: &mut Vec<u8>, size: u64, len: usize) {
    debug_assert!((1..=8).contains(&len));
    let marked = size | (1u64 << (7 * len));
    buf.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// Appends a whole element with a binary payload.
pub(crate) fn put_bytes(buf: &mut Vec<u8>, id: u32, payload: &[u8]) {
    put_id(buf, id);
    put_size(buf, payload.len() as u64);
    buf.extend_from_slice(payload);
}

/// Appends an unsigned integer element (shortest big-endian form, at least one byte).
pub(crate) fn put_uint(buf: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_bytes(buf, id, &bytes[skip..]);
}

/// Appends an 8-byte float element.
pub(crate) fn put_float(buf: &mut Vec<u8>, id: u32, v: f64) {
    put_bytes(buf, id, &v.to_be_bytes());
}

/// Appends a string element.
pub(crate) fn put_str(buf: &mut Vec<u8>, id: u32, s: &str) {
    put_bytes(buf, id, s.as_bytes());
}

/// Appends a master element whose children `f` writes.
pub(crate) fn put_master(buf: &mut Vec<u8>, id: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    f(&mut body);
    put_bytes(buf, id, &body);
}

/// A Void element of exactly `total` bytes (header included). `total` must be at least 2.
pub(crate) fn void(total: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(total);
    put_id(&mut buf, id::VOID);
    if total < 2 {
        return buf; // caller bug; never produced by this crate
    }
    if total - 2 <= 126 {
        put_size_fixed(&mut buf, (total - 2) as u64, 1);
    } else {
        put_size_fixed(&mut buf, (total - 9) as u64, 8);
    }
    buf.resize(total, 0);
    buf
}

// ---------------------------------------------------------------- reading

/// Why a byte slice is not valid EBML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// More bytes are needed (the input ends inside the element).
    Incomplete,
    /// The bytes cannot be EBML (bad ID or size marker).
    Invalid,
}

/// Reads an element ID: `(id, length)`.
pub(crate) fn read_id(buf: &[u8]) -> Result<(u32, usize), ParseError> {
    let first = *buf.first().ok_or(ParseError::Incomplete)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(ParseError::Invalid);
    }
    if buf.len() < len {
        return Err(ParseError::Incomplete);
    }
    let id = buf[..len]
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    Ok((id, len))
}

/// Reads a data size: `(Some(size) | None for unknown, length)`.
pub(crate) fn read_size(buf: &[u8]) -> Result<(Option<u64>, usize), ParseError> {
    let first = *buf.first().ok_or(ParseError::Incomplete)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return Err(ParseError::Invalid);
    }
    if buf.len() < len {
        return Err(ParseError::Incomplete);
    }
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let mut v = u64::from(first & mask);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok((if v == all_ones { None } else { Some(v) }, len))
}

/// An element header: ID, data size (`None` = unknown) and the header's length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: u32,
    pub size: Option<u64>,
    pub len: usize,
}

/// Reads an element header from the start of `buf`.
pub(crate) fn read_header(buf: &[u8]) -> Result<Header, ParseError> {
    let (id, id_len) = read_id(buf)?;
    let (size, size_len) = read_size(&buf[id_len..])?;
    Ok(Header {
        id,
        size,
        len: id_len + size_len,
    })
}

/// Iterates the children of a master element's payload: `(id, payload)`.
/// Stops at the first child that is incomplete or invalid (see [`Children::error`]).
pub(crate) struct Children<'a> {
    rest: &'a [u8],
    /// Set when iteration stopped early.
    pub error: Option<ParseError>,
}

/// Children of a master payload.
pub(crate) fn children(payload: &[u8]) -> Children<'_> {
    Children {
        rest: payload,
        error: None,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.error.is_some() {
            return None;
        }
        let h = match read_header(self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        };
        let Some(size) = h.size else {
            self.error = Some(ParseError::Invalid);
            return None;
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(h.len))
            .filter(|end| *end <= self.rest.len());
        let Some(end) = end else {
            self.error = Some(ParseError::Incomplete);
            return None;
        };
        let payload = &self.rest[h.len..end];
        self.rest = &self.rest[end..];
        Some((h.id, payload))
    }
}

/// Decodes an unsigned integer payload (0–8 bytes).
pub(crate) fn uint(payload: &[u8]) -> Option<u64> {
    (payload.len() <= 8).then(|| {
        payload
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    })
}

/// Decodes a float payload (0, 4 or 8 bytes).
pub(crate) fn float(payload: &[u8]) -> Option<f64> {
    match payload.len() {
        0 => Some(0.0),
        4 => Some(f64::from(f32::from_be_bytes(payload.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(payload.try_into().ok()?)),
        _ => None,
    }
}

/// Reads a track-number vint (as in a Block header): `(value, length)`.
pub(crate) fn read_vint_value(buf: &[u8]) -> Result<(u64, usize), ParseError> {
    match read_size(buf)? {
        (Some(v), len) => Ok((v, len)),
        (None, _) => Err(ParseError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_encoding_table() {
        for (size, bytes) in [
            (0u64, &[0x80][..]),
            (126, &[0xFE]),
            (127, &[0x40, 0x7F]),
            (16_382, &[0x7F, 0xFE]),
            (16_383, &[0x20, 0x3F, 0xFF]),
            (MAX_SIZE, &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]),
        ] {
            let mut buf = Vec::new();
            put_size(&mut buf, size);
            assert_eq!(buf, bytes, "size {size}");
            assert_eq!(read_size(&buf), Ok((Some(size), bytes.len())));
        }
        assert_eq!(read_size(&UNKNOWN_SIZE_8), Ok((None, 8)));
        assert_eq!(read_size(&[0xFF]), Ok((None, 1)));
        assert_eq!(read_size(&[0x00, 1]), Err(ParseError::Invalid));
        assert_eq!(read_size(&[0x40]), Err(ParseError::Incomplete));
        assert_eq!(read_size(&[]), Err(ParseError::Incomplete));
    }

    #[test]
    fn id_encoding_table() {
        for (id, len) in [
            (id::VOID, 1),
            (id::SEEK, 2),
            (id::TIMECODE_SCALE, 3),
            (id::SEGMENT, 4),
        ] {
            let mut buf = Vec::new();
            put_id(&mut buf, id);
            assert_eq!(buf.len(), len);
            assert_eq!(read_id(&buf), Ok((id, len)));
        }
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]), Err(ParseError::Invalid));
        assert_eq!(read_id(&[0x1A, 0x45]), Err(ParseError::Incomplete));
    }

    #[test]
    fn elements_and_children() {
        let mut buf = Vec::new();
        put_uint(&mut buf, id::TRACK_NUMBER, 0);
        put_uint(&mut buf, id::TRACK_UID, 0x0102_0304_0506);
        put_float(&mut buf, id::DURATION, 1234.5);
        put_str(&mut buf, id::CODEC_ID, "V_VP8");
        let got: Vec<_> = children(&buf).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (id::TRACK_NUMBER, &[0u8][..]));
        assert_eq!(uint(got[1].1), Some(0x0102_0304_0506));
        assert_eq!(float(got[2].1), Some(1234.5));
        assert_eq!(got[3].1, b"V_VP8");
        // Truncated last child: the complete ones come out, then the error is recorded.
        let mut it = children(&buf[..buf.len() - 1]);
        assert_eq!(it.by_ref().count(), 3);
        assert_eq!(it.error, Some(ParseError::Incomplete));
        assert_eq!(uint(&[0; 9]), None);
        assert_eq!(float(&[0; 3]), None);
    }

    #[test]
    fn void_sizes() {
        for total in [2usize, 3, 128, 129, 130, 200, 5000] {
            let v = void(total);
            assert_eq!(v.len(), total);
            let h = read_header(&v).unwrap();
            assert_eq!(h.id, id::VOID);
            assert_eq!(
                h.len as u64 + h.size.unwrap(),
                total as u64,
                "total {total}"
            );
        }
    }
}
