//! VP8 through libvpx (Debian's `libvpx-dev`, bound by `env-libvpx-sys`): the crate's only
//! `unsafe` code. Each context is boxed (libvpx keeps pointers into it), initialized once,
//! used from one owner (`&mut self`), and destroyed exactly once in `Drop`. libvpx's config
//! structs are filled by `vpx_codec_enc_config_default` into `MaybeUninit`, never zeroed by
//! hand, and images are only read between the call that produced them and the next call.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_long, c_ulong};
use std::ptr;

use bytes::Bytes;
use vpx_sys::*;

use crate::{CodecError, Encoded, EncoderConfig, Picture};

fn check(what: &str, err: vpx_codec_err_t) -> Result<(), CodecError> {
    if err == vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(CodecError::Vp8(format!("{what}: {err:?}")))
    }
}

/// A VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: the context is owned by this value alone and used only through `&mut self`; libvpx
// contexts may move between threads (they are not tied to the creating thread).
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Result<Vp8Decoder, CodecError> {
        // SAFETY: an all-zero context is libvpx's documented "not yet initialized" state; it is
        // boxed so its address stays fixed; init reads the config only during the call.
        unsafe {
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(MaybeUninit::zeroed().assume_init());
            let cfg = vpx_codec_dec_cfg_t {
                threads: 1,
                w: 0,
                h: 0,
            };
            check(
                "decoder init",
                vpx_codec_dec_init_ver(
                    &mut *ctx,
                    vpx_codec_vp8_dx(),
                    &cfg,
                    0,
                    VPX_DECODER_ABI_VERSION as c_int,
                ),
            )?;
            Ok(Vp8Decoder { ctx })
        }
    }

    /// Decodes one VP8 frame; the picture it completes, if any.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<Picture>, CodecError> {
        if frame.is_empty() {
            return Ok(None);
        }
        let len =
            u32::try_from(frame.len()).map_err(|_| CodecError::Vp8("a frame over 4 GiB".into()))?;
        // SAFETY: the context was initialized in `new`; `frame` outlives the call; the image
        // libvpx returns is read (copied out) before any other call on the context.
        unsafe {
            check(
                "decode",
                vpx_codec_decode(
                    &mut *self.ctx,
                    frame.as_ptr(),
                    len,
                    ptr::null_mut(),
                    0 as c_long,
                ),
            )?;
            let mut iter: vpx_codec_iter_t = ptr::null();
            let mut picture = None;
            loop {
                let img = vpx_codec_get_frame(&mut *self.ctx, &mut iter);
                if img.is_null() {
                    break;
                }
                let img = &*img;
                if img.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
                    return Err(CodecError::Vp8(format!(
                        "unexpected image format {:?}",
                        img.fmt
                    )));
                }
                let (w, h) = (img.d_w as usize, img.d_h as usize);
                let (cw, ch) = Picture::chroma_dims(w, h);
                let strides =
                    [img.stride[0], img.stride[1], img.stride[2]].map(|s| s.max(0) as usize);
                let rows = [h, ch, ch];
                let mut planes: [&[u8]; 3] = [&[], &[], &[]];
                for i in 0..3 {
                    if img.planes[i].is_null() {
                        return Err(CodecError::Vp8("an image without a plane".into()));
                    }
                    let width = if i == 0 { w } else { cw };
                    let len = strides[i] * rows[i].saturating_sub(1) + width;
                    planes[i] = std::slice::from_raw_parts(img.planes[i], len);
                }
                picture = Some(Picture::from_planes(w, h, planes, strides)?);
            }
            Ok(picture)
        }
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a failed init never builds the value); destroyed once.
        unsafe {
            vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// A VP8 encoder for pictures of one size (real time, one pass, CBR, no lag).
pub struct Vp8Encoder {
    ctx: Box<vpx_codec_ctx_t>,
    width: usize,
    height: usize,
}

// SAFETY: as for `Vp8Decoder`.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    pub fn new(
        width: usize,
        height: usize,
        config: EncoderConfig,
    ) -> Result<Vp8Encoder, CodecError> {
        let (w, h) = (
            u32::try_from(width).map_err(|_| CodecError::Vp8("width".into()))?,
            u32::try_from(height).map_err(|_| CodecError::Vp8("height".into()))?,
        );
        if w == 0 || h == 0 || w > 16_383 || h > 16_383 {
            return Err(CodecError::BadPicture {
                width,
                height,
                why: "VP8 takes 1 to 16383 pixels a side",
            });
        }
        // SAFETY: `vpx_codec_enc_config_default` fills the whole struct (it is never read
        // before); the context starts zeroed (uninitialized state) and is boxed; init copies
        // what it needs from `cfg`.
        unsafe {
            let iface = vpx_codec_vp8_cx();
            let mut cfg = MaybeUninit::<vpx_codec_enc_cfg_t>::uninit();
            check(
                "encoder config",
                vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0),
            )?;
            let mut cfg = cfg.assume_init();
            cfg.g_w = w;
            cfg.g_h = h;
            cfg.g_timebase = vpx_rational {
                num: 1,
                den: 90_000,
            };
            cfg.rc_target_bitrate = (config.bitrate_bps / 1000).max(50);
            cfg.g_lag_in_frames = 0;
            cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
            cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
            cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = config.keyframe_interval.max(1);
            cfg.g_threads = 1;
            cfg.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
            cfg.rc_dropframe_thresh = 0;
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(MaybeUninit::zeroed().assume_init());
            check(
                "encoder init",
                vpx_codec_enc_init_ver(&mut *ctx, iface, &cfg, 0, VPX_ENCODER_ABI_VERSION as c_int),
            )?;
            // Real time: fastest presets (negative CPUUSED = real-time speed levels).
            let _ = vpx_codec_control_(
                &mut *ctx,
                vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int,
                -8 as c_int,
            );
            Ok(Vp8Encoder { ctx, width, height })
        }
    }

    /// Encodes one picture of the encoder's size (`pts` in 90 kHz ticks).
    pub fn encode(
        &mut self,
        picture: &Picture,
        pts: u64,
        keyframe: bool,
    ) -> Result<Option<Encoded>, CodecError> {
        if (picture.width, picture.height) != (self.width, self.height)
            || picture.data.len() != Picture::len_for(picture.width, picture.height)
        {
            return Err(CodecError::BadPicture {
                width: picture.width,
                height: picture.height,
                why: "not the size the VP8 encoder was made for",
            });
        }
        // SAFETY: `vpx_img_wrap` only records pointers into `picture.data`, which is a packed
        // I420 picture of the encoder's size (checked above) and outlives the encode call;
        // libvpx copies the frame during `vpx_codec_encode` and never writes to it. Packets
        // returned by `vpx_codec_get_cx_data` are copied out before the next call.
        unsafe {
            let mut img = MaybeUninit::<vpx_image_t>::zeroed();
            let wrapped = vpx_img_wrap(
                img.as_mut_ptr(),
                vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width as u32,
                self.height as u32,
                1,
                picture.data.as_ptr() as *mut u8,
            );
            if wrapped.is_null() {
                return Err(CodecError::Vp8("vpx_img_wrap failed".into()));
            }
            let flags = if keyframe {
                VPX_EFLAG_FORCE_KF as vpx_enc_frame_flags_t
            } else {
                0
            };
            check(
                "encode",
                vpx_codec_encode(
                    &mut *self.ctx,
                    wrapped,
                    pts as vpx_codec_pts_t,
                    3000 as c_ulong,
                    flags,
                    VPX_DL_REALTIME as c_ulong,
                ),
            )?;
            let mut iter: vpx_codec_iter_t = ptr::null();
            let mut out: Option<Encoded> = None;
            loop {
                let pkt = vpx_codec_get_cx_data(&mut *self.ctx, &mut iter);
                if pkt.is_null() {
                    break;
                }
                if (*pkt).kind == vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let frame = (*pkt).data.frame;
                    let bytes =
                        std::slice::from_raw_parts(frame.buf as *const u8, frame.sz as usize);
                    out = Some(Encoded {
                        data: Bytes::copy_from_slice(bytes),
                        keyframe: frame.flags & VPX_FRAME_IS_KEY != 0,
                    });
                }
            }
            Ok(out)
        }
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`; destroyed once.
        unsafe {
            vpx_codec_destroy(&mut *self.ctx);
        }
    }
}
