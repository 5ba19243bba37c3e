//! Video decoding and encoding for pion-the-sky, sans-IO: encoded frames in, pictures out, and
//! back. H264 goes through the `openh264` crate (its bundled source, built with cc); VP8
//! through Debian's libvpx (`env-libvpx-sys`), wrapped in [`vpx`], the only module with
//! `unsafe` code: no crate wraps libvpx's VP8 encoder and decoder safely at the versions we
//! can build here, so the handful of calls are wrapped by hand, each with its invariants.
//!
//! - [`Decoder`]: a codec's frames (H264 Annex B access units, VP8 frames, as
//!   [`media::Frame::data`] holds them) to [`Picture`]s (I420).
//! - [`Encoder`]: pictures to frames; H264 is Constrained Baseline (what iOS Safari decodes).
//! - [`poster`]: a picture as a JPEG of at most a given width (recording thumbnails).
#![deny(unsafe_code)]

pub mod vpx;

use bytes::Bytes;
use media::Codec;

/// Why a codec call failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{0:?} is not a video codec")]
    NotVideo(Codec),
    #[error("H264 (openh264): {0}")]
    H264(String),
    #[error("VP8 (libvpx): {0}")]
    Vp8(String),
    #[error("picture of {width}x{height}: {why}")]
    BadPicture {
        width: usize,
        height: usize,
        why: &'static str,
    },
    #[error("JPEG: {0}")]
    Jpeg(String),
}

/// One decoded picture, I420: the Y plane (`width * height`), then U and V (each
/// `(width + 1) / 2 * (height + 1) / 2`), no padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Picture {
    /// Chroma plane size.
    pub fn chroma_dims(width: usize, height: usize) -> (usize, usize) {
        (width.div_ceil(2), height.div_ceil(2))
    }

    /// Bytes an I420 picture of this size holds.
    pub fn len_for(width: usize, height: usize) -> usize {
        let (cw, ch) = Picture::chroma_dims(width, height);
        width * height + 2 * cw * ch
    }

    /// Copies three planes with their strides into one packed I420 picture.
    pub fn from_planes(
        width: usize,
        height: usize,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Result<Picture, CodecError> {
        let bad = |why| CodecError::BadPicture { width, height, why };
        if width == 0 || height == 0 {
            return Err(bad("empty"));
        }
        let (cw, ch) = Picture::chroma_dims(width, height);
        let mut data = Vec::with_capacity(Picture::len_for(width, height));
        for (i, (w, h)) in [(width, height), (cw, ch), (cw, ch)]
            .into_iter()
            .enumerate()
        {
            if strides[i] < w {
                return Err(bad("a stride is shorter than a row"));
            }
            for row in 0..h {
                let start = row * strides[i];
                let line = planes[i]
                    .get(start..start + w)
                    .ok_or_else(|| bad("a plane is shorter than its rows"))?;
                data.extend_from_slice(line);
            }
        }
        Ok(Picture {
            width,
            height,
            data,
        })
    }

    pub fn y(&self) -> &[u8] {
        &self.data[..self.width * self.height]
    }

    pub fn u(&self) -> &[u8] {
        let (cw, ch) = Picture::chroma_dims(self.width, self.height);
        let y = self.width * self.height;
        &self.data[y..y + cw * ch]
    }

    pub fn v(&self) -> &[u8] {
        let (cw, ch) = Picture::chroma_dims(self.width, self.height);
        let y = self.width * self.height;
        &self.data[y + cw * ch..]
    }

    /// The picture without an odd last row or column (H264 encodes even sizes).
    pub fn cropped_even(self) -> Picture {
        let (w, h) = (self.width & !1, self.height & !1);
        if (w, h) == (self.width, self.height) || w == 0 || h == 0 {
            return self;
        }
        let (cw, ch) = Picture::chroma_dims(self.width, self.height);
        let planes = [self.y(), self.u(), self.v()];
        Picture::from_planes(w, h, planes, [self.width, cw, cw])
            .ok()
            .filter(|_| ch >= h / 2)
            .unwrap_or(self)
    }

    /// RGB (BT.601, limited range, as both codecs produce), 3 bytes a pixel.
    pub fn to_rgb(&self) -> Vec<u8> {
        let (cw, _) = Picture::chroma_dims(self.width, self.height);
        let (y, u, v) = (self.y(), self.u(), self.v());
        let mut out = Vec::with_capacity(self.width * self.height * 3);
        for row in 0..self.height {
            for col in 0..self.width {
                let yy = f32::from(y[row * self.width + col]) - 16.0;
                let c = (row / 2) * cw + col / 2;
                let uu = f32::from(u[c]) - 128.0;
                let vv = f32::from(v[c]) - 128.0;
                let px = |x: f32| x.round().clamp(0.0, 255.0) as u8;
                out.push(px(1.164 * yy + 1.596 * vv));
                out.push(px(1.164 * yy - 0.392 * uu - 0.813 * vv));
                out.push(px(1.164 * yy + 2.017 * uu));
            }
        }
        out
    }
}

/// Decodes one video codec's frames.
pub enum Decoder {
    H264(Box<openh264::decoder::Decoder>),
    Vp8(vpx::Vp8Decoder),
}

impl Decoder {
    pub fn new(codec: Codec) -> Result<Decoder, CodecError> {
        match codec {
            Codec::H264 => openh264::decoder::Decoder::new()
                .map(|d| Decoder::H264(Box::new(d)))
                .map_err(|e| CodecError::H264(e.to_string())),
            Codec::Vp8 => vpx::Vp8Decoder::new().map(Decoder::Vp8),
            Codec::Opus => Err(CodecError::NotVideo(codec)),
        }
    }

    /// Decodes one frame; `None` when it completes no picture (parameter sets only, or a
    /// frame the decoder could not use).
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture>, CodecError> {
        match self {
            Decoder::H264(d) => {
                use openh264::formats::YUVSource;
                let Some(yuv) = d
                    .decode(frame)
                    .map_err(|e| CodecError::H264(e.to_string()))?
                else {
                    return Ok(None);
                };
                let (w, h) = yuv.dimensions();
                let (sy, su, sv) = yuv.strides();
                Picture::from_planes(w, h, [yuv.y(), yuv.u(), yuv.v()], [sy, su, sv]).map(Some)
            }
            Decoder::Vp8(d) => d.decode(frame),
        }
    }
}

/// What an encoder is asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderConfig {
    pub bitrate_bps: u32,
    pub fps: f32,
    /// A keyframe at least this often (frames).
    pub keyframe_interval: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            bitrate_bps: 1_000_000,
            fps: 30.0,
            keyframe_interval: 90,
        }
    }
}

/// One encoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// H264: Annex B (SPS and PPS before every IDR); VP8: one frame.
    pub data: Bytes,
    pub keyframe: bool,
}

/// Encodes pictures into one video codec.
pub enum Encoder {
    H264(Box<openh264::encoder::Encoder>),
    Vp8(vpx::Vp8Encoder),
}

impl Encoder {
    /// `width` and `height` are the pictures' (even numbers for H264).
    pub fn new(
        codec: Codec,
        width: usize,
        height: usize,
        config: EncoderConfig,
    ) -> Result<Encoder, CodecError> {
        match codec {
            Codec::H264 => {
                use openh264::encoder::{
                    BitRate, EncoderConfig as H264Config, FrameRate, IntraFramePeriod, Profile,
                    RateControlMode, UsageType,
                };
                let cfg = H264Config::new()
                    .profile(Profile::Baseline)
                    .bitrate(BitRate::from_bps(config.bitrate_bps))
                    .max_frame_rate(FrameRate::from_hz(config.fps))
                    .rate_control_mode(RateControlMode::Bitrate)
                    .usage_type(UsageType::CameraVideoRealTime)
                    .skip_frames(false)
                    .intra_frame_period(IntraFramePeriod::from_num_frames(
                        config.keyframe_interval,
                    ));
                openh264::encoder::Encoder::with_api_config(
                    openh264::OpenH264API::from_source(),
                    cfg,
                )
                .map(|e| Encoder::H264(Box::new(e)))
                .map_err(|e| CodecError::H264(e.to_string()))
            }
            Codec::Vp8 => vpx::Vp8Encoder::new(width, height, config).map(Encoder::Vp8),
            Codec::Opus => Err(CodecError::NotVideo(codec)),
        }
    }

    /// Encodes one picture (`pts` in 90 kHz ticks); `keyframe` forces one.
    pub fn encode(
        &mut self,
        picture: &Picture,
        pts: u64,
        keyframe: bool,
    ) -> Result<Option<Encoded>, CodecError> {
        match self {
            Encoder::H264(e) => {
                use openh264::encoder::FrameType;
                let yuv = openh264::formats::YUVBuffer::from_vec(
                    picture.data.clone(),
                    picture.width,
                    picture.height,
                );
                if keyframe {
                    e.force_intra_frame();
                }
                let bs = e
                    .encode_at(&yuv, openh264::Timestamp::from_millis(pts / 90))
                    .map_err(|err| CodecError::H264(err.to_string()))?;
                let data = bs.to_vec();
                if data.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Encoded {
                    keyframe: matches!(bs.frame_type(), FrameType::IDR | FrameType::I),
                    data: Bytes::from(data),
                }))
            }
            Encoder::Vp8(e) => e.encode(picture, pts, keyframe),
        }
    }
}

/// Re-encodes one video stream's frames into another codec (VP8 <-> H264), frame for frame:
/// timestamps are kept, and each source keyframe makes an output keyframe, so pacing, A/V sync
/// and seeking points stay what they were. The encoder is made for the first picture's size
/// (and again if the size changes; H264 takes even sizes, so an odd last row or column is
/// dropped).
pub struct Transcoder {
    to: Codec,
    config: EncoderConfig,
    decoder: Decoder,
    encoder: Option<(Encoder, usize, usize)>,
    /// The next output frame is to be a keyframe (a viewer asked for one).
    keyframe_wanted: bool,
}

impl Transcoder {
    pub fn new(from: Codec, to: Codec, config: EncoderConfig) -> Result<Transcoder, CodecError> {
        if to.kind() != media::MediaKind::Video {
            return Err(CodecError::NotVideo(to));
        }
        Ok(Transcoder {
            to,
            config,
            decoder: Decoder::new(from)?,
            encoder: None,
            keyframe_wanted: false,
        })
    }

    /// The output codec.
    pub fn output(&self) -> Codec {
        self.to
    }

    /// Makes the next output frame a keyframe, whatever the source's is (a viewer that joins
    /// or lost packets of a live transcode needs one before the source's next).
    pub fn request_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// One source frame in, its re-encoded frame out (`None` while the decoder has no picture,
    /// e.g. before the first keyframe).
    pub fn push(&mut self, frame: &media::Frame) -> Result<Option<media::Frame>, CodecError> {
        let Some(mut picture) = self.decoder.decode(&frame.data)? else {
            return Ok(None);
        };
        if self.to == Codec::H264 {
            picture = picture.cropped_even();
        }
        let (w, h) = (picture.width, picture.height);
        let mut fresh = false;
        if !matches!(&self.encoder, Some((_, ew, eh)) if (*ew, *eh) == (w, h)) {
            self.encoder = Some((Encoder::new(self.to, w, h, self.config)?, w, h));
            fresh = true;
        }
        let Some((encoder, _, _)) = self.encoder.as_mut() else {
            return Ok(None);
        };
        let force = frame.keyframe || fresh || self.keyframe_wanted;
        let Some(out) = encoder.encode(&picture, frame.ts, force)? else {
            return Ok(None);
        };
        if out.keyframe {
            self.keyframe_wanted = false;
        }
        Ok(Some(media::Frame {
            codec: self.to,
            ts: frame.ts,
            keyframe: out.keyframe,
            data: out.data,
        }))
    }
}

/// A picture as a JPEG (quality 80), scaled down to at most `max_width` pixels wide.
pub fn poster(picture: &Picture, max_width: u32) -> Result<Vec<u8>, CodecError> {
    use image::codecs::jpeg::JpegEncoder;
    use image::imageops::FilterType;
    use image::{ExtendedColorType, RgbImage};
    let (w, h) = (picture.width as u32, picture.height as u32);
    let rgb = RgbImage::from_raw(w, h, picture.to_rgb())
        .ok_or_else(|| CodecError::Jpeg("the picture has the wrong size".into()))?;
    let img = if w > max_width {
        let nh = ((u64::from(h) * u64::from(max_width)) / u64::from(w)).max(1) as u32;
        image::imageops::resize(&rgb, max_width, nh, FilterType::Triangle)
    } else {
        rgb
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 80)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| CodecError::Jpeg(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moving test pattern: a gradient with a bright square at a frame-dependent place.
    fn pattern(width: usize, height: usize, n: usize) -> Picture {
        let (cw, ch) = Picture::chroma_dims(width, height);
        let mut data = Vec::with_capacity(Picture::len_for(width, height));
        for row in 0..height {
            for col in 0..width {
                let in_square = (col + 4 * n) % width < 64 && row < 64;
                data.push(if in_square {
                    235
                } else {
                    (16 + (col * 200 / width)) as u8
                });
            }
        }
        data.extend(std::iter::repeat_n(100u8, cw * ch));
        data.extend(std::iter::repeat_n(160u8, cw * ch));
        Picture {
            width,
            height,
            data,
        }
    }

    /// Mean absolute difference of the luma planes.
    fn luma_error(a: &Picture, b: &Picture) -> f64 {
        let sum: u64 = a
            .y()
            .iter()
            .zip(b.y())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.y().len() as f64
    }

    #[test]
    fn each_codec_round_trips_through_its_own_decoder() {
        for codec in [Codec::H264, Codec::Vp8] {
            let (w, h) = (320, 240);
            let mut enc = Encoder::new(codec, w, h, EncoderConfig::default()).unwrap();
            let mut dec = Decoder::new(codec).unwrap();
            let mut decoded = 0;
            for n in 0..30 {
                let src = pattern(w, h, n);
                let Some(frame) = enc.encode(&src, n as u64 * 3000, n == 0).unwrap() else {
                    continue;
                };
                if n == 0 {
                    assert!(frame.keyframe, "{codec:?}: the first frame is a keyframe");
                    if codec == Codec::Vp8 {
                        assert!(media::depack::vp8::is_keyframe(&frame.data));
                    } else {
                        assert!(media::depack::h264::is_idr(&frame.data));
                        let (sps, pps) = media::depack::h264::parameter_sets(&frame.data);
                        assert!(sps.is_some() && pps.is_some(), "SPS/PPS before the IDR");
                        // Constrained Baseline: profile_idc 66, constraint_set1 set.
                        let sps = sps.unwrap();
                        assert_eq!(sps[1], 66, "profile_idc");
                        assert!(sps[2] & 0x40 != 0, "constraint_set1_flag");
                    }
                }
                let pic = dec.decode(&frame.data).unwrap().expect("a picture");
                assert_eq!((pic.width, pic.height), (w, h), "{codec:?}");
                let err = luma_error(&src, &pic);
                assert!(err < 12.0, "{codec:?} frame {n}: mean luma error {err}");
                decoded += 1;
            }
            assert!(decoded >= 29, "{codec:?}: {decoded} pictures");
        }
    }

    #[test]
    fn a_transcoder_keeps_timestamps_and_keyframes_and_its_output_decodes() {
        for (from, to) in [(Codec::Vp8, Codec::H264), (Codec::H264, Codec::Vp8)] {
            let (w, h) = (320, 240);
            let mut source = Encoder::new(from, w, h, EncoderConfig::default()).unwrap();
            let mut t = Transcoder::new(from, to, EncoderConfig::default()).unwrap();
            let mut check = Decoder::new(to).unwrap();
            let mut out = 0;
            for n in 0..40u64 {
                let src = pattern(w, h, n as usize);
                // A keyframe every 15 frames in the source.
                let Some(e) = source.encode(&src, n * 3000, n % 15 == 0).unwrap() else {
                    continue;
                };
                let frame = media::Frame {
                    codec: from,
                    ts: n * 3000,
                    keyframe: e.keyframe,
                    data: e.data,
                };
                let Some(o) = t.push(&frame).unwrap() else {
                    continue;
                };
                assert_eq!(
                    (o.codec, o.ts),
                    (to, frame.ts),
                    "{from:?}->{to:?} frame {n}"
                );
                if frame.keyframe {
                    assert!(
                        o.keyframe,
                        "{from:?}->{to:?}: source keyframe {n} stays one"
                    );
                }
                let pic = check.decode(&o.data).unwrap().expect("decodes");
                assert!(luma_error(&src, &pic) < 16.0, "{from:?}->{to:?} frame {n}");
                out += 1;
            }
            assert_eq!(out, 40, "{from:?}->{to:?}: every frame");
        }
        let odd = Picture {
            width: 5,
            height: 3,
            data: vec![50; Picture::len_for(5, 3)],
        }
        .cropped_even();
        assert_eq!(
            (odd.width, odd.height, odd.data.len()),
            (4, 2, Picture::len_for(4, 2))
        );
    }

    #[test]
    fn a_requested_keyframe_comes_out_on_the_next_frame_only() {
        for (from, to) in [(Codec::Vp8, Codec::H264), (Codec::H264, Codec::Vp8)] {
            let (w, h) = (320, 240);
            let mut source = Encoder::new(from, w, h, EncoderConfig::default()).unwrap();
            let mut t = Transcoder::new(from, to, EncoderConfig::default()).unwrap();
            let mut keys = Vec::new();
            for n in 0..20u64 {
                // One source keyframe, at the start.
                let e = source
                    .encode(&pattern(w, h, n as usize), n * 3000, n == 0)
                    .unwrap()
                    .expect("encoded");
                if n == 10 {
                    t.request_keyframe();
                }
                let frame = media::Frame {
                    codec: from,
                    ts: n * 3000,
                    keyframe: e.keyframe,
                    data: e.data,
                };
                let o = t.push(&frame).unwrap().expect("transcoded");
                if o.keyframe {
                    keys.push(n);
                }
            }
            assert_eq!(keys, vec![0, 10], "{from:?}->{to:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_crash() {
        for codec in [Codec::H264, Codec::Vp8] {
            let mut dec = Decoder::new(codec).unwrap();
            for junk in [
                &b""[..],
                b"\x00\x00\x00\x01\x65\xff\xff",
                &[0x55; 300],
                b"\x9d\x01\x2a",
            ] {
                let _ = dec.decode(junk);
            }
        }
        assert!(Decoder::new(Codec::Opus).is_err());
    }

    #[test]
    fn posters_are_jpegs_of_the_picture() {
        let jpeg = poster(&pattern(640, 480, 0), 320).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG SOI");
        let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (320, 240));
    }

    #[test]
    fn planes_with_strides_are_packed() {
        let y: Vec<u8> = (0..8 * 2).map(|i| i as u8).collect(); // stride 8, width 4
        let u = vec![7u8; 4];
        let v = vec![9u8; 4];
        let p = Picture::from_planes(4, 2, [&y, &u, &v], [8, 4, 4]).unwrap();
        assert_eq!(p.y(), &[0, 1, 2, 3, 8, 9, 10, 11]);
        assert_eq!((p.u(), p.v()), (&[7u8, 7][..], &[9u8, 9][..]));
        assert!(Picture::from_planes(4, 2, [&y[..10], &u, &v], [8, 4, 4]).is_err());
        assert!(Picture::from_planes(4, 2, [&y, &u, &v], [3, 4, 4]).is_err());
    }
}
