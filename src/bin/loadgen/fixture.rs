//! The committed fixtures, parsed once and packetized once, shared by every recorder (`Arc`).
//!
//! A recorder walks [`Fixture::items`] in a loop; loop `n` adds `n * period` to the send time
//! and `n * period_ts` to the RTP timestamps, so a stream of any length is continuous.
use std::path::Path;

use bytes::Bytes;
use media::{Codec, Frame, MediaKind};

/// Largest RTP payload the loadgen sends (what the integration tests use).
pub const MTU: usize = 1150;

/// One frame, ready to send: when (within a loop), its RTP timestamp offset and its payloads.
pub struct Item {
    pub at_us: u64,
    pub kind: MediaKind,
    /// RTP timestamp offset within the loop, codec clock.
    pub ts: u32,
    pub payloads: Vec<Bytes>,
}

pub struct Fixture {
    pub video: Codec,
    /// Audio and video interleaved in send order.
    pub items: Vec<Item>,
    /// Length of one loop in µs.
    pub period_us: u64,
    /// Length of one loop in RTP clock units: [video, audio].
    pub period_ts: [u32; 2],
    pub video_frames: usize,
    pub audio_frames: usize,
    pub packets: usize,
    pub bytes: usize,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Index into `[video, audio]` arrays.
pub fn kind_index(kind: MediaKind) -> usize {
    usize::from(kind == MediaKind::Audio)
}

impl Fixture {
    /// Reads `fixtures/` (VP8 IVF or H264 Annex B, plus the Opus Ogg) and packetizes it.
    pub fn load(dir: &Path, video: Codec) -> Result<Fixture, String> {
        let v: Vec<Frame> = match video {
            Codec::Vp8 => media::elementary::ivf_vp8(&read(dir, "vp8_640x480_30fps_4s.ivf")?),
            Codec::H264 => {
                media::elementary::annexb_h264(&read(dir, "h264_640x480_30fps_4s.h264")?, 30)
            }
            Codec::Opus => return Err("the video codec must be vp8 or h264".into()),
        }
        .map_err(|e| e.to_string())?;
        let a = media::elementary::ogg_opus(&read(dir, "opus_48k_stereo_4s.ogg")?)
            .map_err(|e| e.to_string())?;
        if v.len() < 2 || a.is_empty() {
            return Err("the fixtures hold too few frames".into());
        }
        let v_step = v[1].ts.saturating_sub(v[0].ts).max(1);
        let v_end_us = (v[v.len() - 1].ts + v_step) * 1_000_000 / 90_000;
        let a_last = &a[a.len() - 1];
        let a_step = u64::from(media::depack::opus::frame_samples(&a_last.data));
        let a_end_us = (a_last.ts + a_step) * 1_000_000 / 48_000;
        let period_us = v_end_us.max(a_end_us);
        let period_ts = [
            (period_us * 90_000 / 1_000_000) as u32,
            (period_us * 48_000 / 1_000_000) as u32,
        ];
        let mut items: Vec<Item> = v
            .iter()
            .map(|f| (f, MediaKind::Video, 90_000u64))
            .chain(a.iter().map(|f| (f, MediaKind::Audio, 48_000u64)))
            .map(|(f, kind, rate)| Item {
                at_us: f.ts * 1_000_000 / rate,
                kind,
                ts: f.ts as u32,
                payloads: media::packetize::payloads(f.codec, &f.data, MTU),
            })
            .collect();
        items.sort_by_key(|i| (i.at_us, i.kind == MediaKind::Video));
        let packets = items.iter().map(|i| i.payloads.len()).sum();
        let bytes = items
            .iter()
            .flat_map(|i| i.payloads.iter())
            .map(Bytes::len)
            .sum();
        Ok(Fixture {
            video,
            items,
            period_us,
            period_ts,
            video_frames: v.len(),
            audio_frames: a.len(),
            packets,
            bytes,
        })
    }
}
