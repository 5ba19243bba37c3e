//! Readers for elementary streams as ffmpeg writes them: VP8 in IVF, H264 Annex B with access
//! unit delimiters, Opus in Ogg. They turn committed fixtures into [`Frame`]s for the
//! integration tests and the load generator (which send them as RTP without encoding).
use crate::depack::{h264, opus, vp8};
use crate::{Codec, Frame};
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElementaryError {
    #[error("not an IVF file")]
    NotIvf,
    #[error("IVF file is not VP8 (fourcc {0:?})")]
    NotVp8([u8; 4]),
    #[error("IVF frame {0} is truncated")]
    TruncatedIvf(usize),
    #[error("not an Ogg stream")]
    NotOgg,
    #[error("Ogg page at byte {0} is truncated")]
    TruncatedOgg(usize),
    #[error("no access units found (the stream needs access unit delimiters)")]
    NoAccessUnits,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// VP8 frames of an IVF file, timestamps in 90 kHz from the file's time base.
pub fn ivf_vp8(data: &[u8]) -> Result<Vec<Frame>, ElementaryError> {
    if data.len() < 32 || &data[..4] != b"DKIF" {
        return Err(ElementaryError::NotIvf);
    }
    let fourcc = [data[8], data[9], data[10], data[11]];
    if &fourcc != b"VP80" {
        return Err(ElementaryError::NotVp8(fourcc));
    }
    let header_len = usize::from(le_u16(data, 6)).max(32);
    let den = u64::from(le_u32(data, 16).max(1));
    let num = u64::from(le_u32(data, 20).max(1));
    let mut frames = Vec::new();
    let mut at = header_len;
    while at < data.len() {
        if data.len() - at < 12 {
            return Err(ElementaryError::TruncatedIvf(frames.len()));
        }
        let size = le_u32(data, at) as usize;
        let pts = u64::from_le_bytes(data[at + 4..at + 12].try_into().unwrap_or_default());
        let body = data
            .get(at + 12..at + 12 + size)
            .ok_or(ElementaryError::TruncatedIvf(frames.len()))?;
        // u128: `pts` is any u64 the file says; saturate instead of overflowing.
        let ts = u128::from(pts) * 90_000 * u128::from(num) / u128::from(den);
        frames.push(Frame {
            codec: Codec::Vp8,
            ts: u64::try_from(ts).unwrap_or(u64::MAX),
            keyframe: vp8::is_keyframe(body),
            data: Bytes::copy_from_slice(body),
        });
        at += 12 + size;
    }
    Ok(frames)
}

/// H264 access units of an Annex B stream split at access unit delimiters (NAL type 9, which
/// is dropped), stamped at `fps`.
pub fn annexb_h264(data: &[u8], fps: u32) -> Result<Vec<Frame>, ElementaryError> {
    let mut units: Vec<BytesMut> = Vec::new();
    for nal in h264::nal_units(data) {
        match h264::nal_type(nal) {
            Some(9) => units.push(BytesMut::new()),
            Some(_) => {
                if let Some(unit) = units.last_mut() {
                    unit.put_slice(&h264::START_CODE);
                    unit.put_slice(nal);
                }
            }
            None => {}
        }
    }
    units.retain(|u| !u.is_empty());
    if units.is_empty() {
        return Err(ElementaryError::NoAccessUnits);
    }
    let step = 90_000 / u64::from(fps.max(1));
    Ok(units
        .into_iter()
        .enumerate()
        .map(|(i, unit)| {
            let data = unit.freeze();
            Frame {
                codec: Codec::H264,
                ts: i as u64 * step,
                keyframe: h264::is_idr(&data),
                data,
            }
        })
        .collect())
}

/// Opus packets of an Ogg Opus stream (header packets skipped), timestamps in 48 kHz from
/// each packet's TOC.
pub fn ogg_opus(data: &[u8]) -> Result<Vec<Frame>, ElementaryError> {
    if data.len() < 27 || &data[..4] != b"OggS" {
        return Err(ElementaryError::NotOgg);
    }
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let page = &data[at..];
        if page.len() < 27 || &page[..4] != b"OggS" {
            return Err(ElementaryError::TruncatedOgg(at));
        }
        let segments = usize::from(page[26]);
        let table = page
            .get(27..27 + segments)
            .ok_or(ElementaryError::TruncatedOgg(at))?;
        let mut body_at = 27 + segments;
        for &lace in table {
            let lace = usize::from(lace);
            let chunk = page
                .get(body_at..body_at + lace)
                .ok_or(ElementaryError::TruncatedOgg(at))?;
            partial.extend_from_slice(chunk);
            body_at += lace;
            if lace < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        at += body_at;
    }
    let mut ts = 0u64;
    Ok(packets
        .into_iter()
        .filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags") && !p.is_empty())
        .map(|p| {
            let frame = Frame {
                codec: Codec::Opus,
                ts,
                keyframe: true,
                data: Bytes::from(p),
            };
            ts = ts.saturating_add(u64::from(opus::frame_samples(&frame.data)));
            frame
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_the_committed_fixtures() {
        let vp8 = ivf_vp8(&fixture("vp8_640x480_30fps_4s.ivf")).unwrap();
        assert_eq!(vp8.len(), 120);
        assert_eq!(vp8.iter().filter(|f| f.keyframe).count(), 4);
        assert_eq!(vp8[1].ts, 3000);
        assert_eq!(vp8::frame_dimensions(&vp8[0].data), Some((640, 480)));

        let h264 = annexb_h264(&fixture("h264_640x480_30fps_4s.h264"), 30).unwrap();
        assert_eq!(h264.len(), 120);
        assert_eq!(h264.iter().filter(|f| f.keyframe).count(), 4);
        assert!(h264[0].keyframe);
        let (sps, pps) = h264::parameter_sets(&h264[0].data);
        assert!(sps.is_some() && pps.is_some());
        assert_eq!(h264::sps_dimensions(sps.unwrap()), Some((640, 480)));
        assert!(
            h264.iter()
                .all(|f| h264::nal_units(&f.data).all(|n| h264::nal_type(n) != Some(9)))
        );

        let opus = ogg_opus(&fixture("opus_48k_stereo_4s.ogg")).unwrap();
        assert!((199..=201).contains(&opus.len()), "{}", opus.len());
        assert_eq!(opus[1].ts, 960);
    }

    #[test]
    fn rejects_garbage() {
        type Check = fn(&[u8]) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (b"", |d| ivf_vp8(d) == Err(ElementaryError::NotIvf)),
            (
                b"DKIF\0\0\x20\0VP90\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
                |d| matches!(ivf_vp8(d), Err(ElementaryError::NotVp8(_))),
            ),
            (b"OggS", |d| ogg_opus(d) == Err(ElementaryError::NotOgg)),
            (b"\0\0\0\x01\x67", |d| {
                annexb_h264(d, 30) == Err(ElementaryError::NoAccessUnits)
            }),
        ];
        for (input, ok) in cases {
            assert!(ok(input), "{input:?}");
        }
        // Truncation anywhere is an error or fewer frames, never a panic.
        let ivf = fixture("vp8_640x480_30fps_4s.ivf");
        for cut in (0..ivf.len()).step_by(997) {
            let _ = ivf_vp8(&ivf[..cut]);
        }
        let ogg = fixture("opus_48k_stereo_4s.ogg");
        for cut in 0..ogg.len().min(5000) {
            let _ = ogg_opus(&ogg[..cut]);
        }
    }

    /// A 32-byte VP8 IVF header with time base `num/den` s, then one 1-byte frame per pts.
    fn ivf(num: u32, den: u32, pts: &[u64]) -> Vec<u8> {
        let mut b = b"DKIF".to_vec();
        b.extend_from_slice(&0u16.to_le_bytes()); // version
        b.extend_from_slice(&32u16.to_le_bytes()); // header length
        b.extend_from_slice(b"VP80");
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(&48u16.to_le_bytes());
        b.extend_from_slice(&den.to_le_bytes()); // rate
        b.extend_from_slice(&num.to_le_bytes()); // scale
        b.extend_from_slice(&(pts.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for p in pts {
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&p.to_le_bytes());
            b.push(0x11);
        }
        b
    }

    #[test]
    fn ivf_timestamps_saturate_instead_of_overflowing() {
        // (time base num, den, pts, expected 90 kHz timestamps)
        let cases: &[(u32, u32, &[u64], &[u64])] = &[
            (1, 30, &[0, 1, 2], &[0, 3000, 6000]),
            (1, 90_000, &[u64::MAX], &[u64::MAX]),
            (
                1,
                30,
                &[u64::MAX, u64::MAX / 3000],
                &[u64::MAX, u64::MAX / 3000 * 3000],
            ),
            (u32::MAX, 1, &[1 << 40], &[u64::MAX]),
        ];
        for &(num, den, pts, want) in cases {
            let frames = ivf_vp8(&ivf(num, den, pts)).unwrap();
            let got: Vec<u64> = frames.iter().map(|f| f.ts).collect();
            assert_eq!(got, want, "{num}/{den} {pts:?}");
        }
    }
}
