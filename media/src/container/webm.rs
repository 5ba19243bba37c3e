//! WebM (Matroska subset) for VP8 + Opus: writer, reader and crash recovery.
//!
//! # Why hand-written
//! The EBML subset WebM needs is small (see `ebml.rs`), and recording needs control no crate
//! offered in one piece: an unknown-size Segment while recording, each Cluster buffered and
//! written whole with a known size (a crash loses at most the open cluster), a reserved
//! SeekHead/Duration patched in place at finish, and a reader that tolerates truncation at
//! any byte. `webm-iterable` (a tag iterator/writer) would still leave all of that to us, and
//! `webm`/`libwebm` bindings need C code. So: ~300 lines of writer/reader, unit tested.
//!
//! # Layout written
//! ```text
//! EBML header (DocType webm, DocTypeVersion 4)
//! Segment (size: 8-byte vint, "unknown" while recording, patched at finish)
//!   Void (reserved; a SeekHead to Info/Tracks/Cues is written into it at finish)
//!   Info   (TimecodeScale 1 ms, Duration f64 patched at finish, MuxingApp/WritingApp)
//!   Tracks (1: V_VP8 + PixelWidth/Height, 2: A_OPUS + OpusHead, CodecDelay 0, SeekPreRoll 80 ms)
//!   Cluster* (known size; Timecode + SimpleBlocks, keyframe flag on video keyframes and audio)
//!   Cues   (written at finish: one CuePoint per cluster that starts with a video keyframe)
//! ```
//! Timestamps are stored in milliseconds (rounded), so the reader returns them quantized to
//! 1 ms in codec clock units.
//!
//! OpusHead pre-skip is 0 (and so CodecDelay is 0): recordings join a live WebRTC stream, so
//! the encoder's start-up delay was consumed long before our first packet, and a non-zero
//! pre-skip would make players drop the first 6.5 ms and shift audio against video.
use super::ebml::{self, id};
use super::helpers::rescale;
use super::{DemuxError, MuxError, Sample, StreamHeader, Track, read_at, stream_len};
use crate::Codec;
use crate::Frame;
use crate::container::{AudioTrack, TrackInfo, VideoTrack};
use bytes::Bytes;
use std::io::{Read, Seek, SeekFrom, Write};

/// Bytes reserved after the Segment header for the SeekHead written at finish.
const SEEK_RESERVE: usize = 96;
/// A video keyframe starts a new cluster once the open one is at least this long.
const MIN_KEYFRAME_CLUSTER_MS: u64 = 250;
/// Opus SeekPreRoll recommended by the WebM spec (ns).
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;
/// Largest element the reader loads into memory (a block or a header master).
const MAX_ELEMENT: u64 = 64 << 20;
/// Largest TimecodeScale (ns per timestamp unit) the reader accepts: 1000 s per unit. Larger
/// values are clamped to it so timestamp arithmetic stays far from overflow.
const MAX_TIMECODE_SCALE: u64 = 1_000_000_000_000;
/// Upper bound of the bytes a SimpleBlock element adds beyond its frame data (element ID,
/// size vint, track number, relative timecode, flags).
const BLOCK_OVERHEAD: usize = 16;

/// Most SimpleBlock bytes one cluster holds: the muxer starts a new cluster before a block
/// that would take the open one past this (a cluster always holds at least one block).
///
/// Clusters are otherwise cut by media time only (`max_fragment_ms`, a keyframe after 250 ms,
/// or the 16-bit relative timecode). The recorder clamps repeated timestamps to the previous
/// one + 1 tick, so when a sender's timestamps barely advance one cluster could hold tens of
/// thousands of frames of any size, all buffered in memory until the cluster is written, and
/// all lost by a crash. A new cluster cut this way may repeat the previous cluster's Timecode,
/// which Matroska allows and which the demuxer and `recover` accept.
pub const MAX_CLUSTER_BYTES: usize = 8 << 20;
const APP: &str = "pion-the-sky";

/// Where the patchable parts of a WebM file are (absolute byte offsets).
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    segment_size_pos: u64,
    segment_data_start: u64,
    seek_reserve_pos: u64,
    seek_reserve_len: usize,
    info_pos: u64,
    tracks_pos: u64,
    duration_pos: u64,
    duration_len: usize,
}

/// A cue: a cluster that starts with a keyframe of `track`.
#[derive(Clone, Copy, Debug)]
struct Cue {
    time_ms: u64,
    track: u64,
    cluster_rel_pos: u64,
}

struct OpenCluster {
    tc: u64,
    blocks: Vec<u8>,
    /// (time, track) of the cue pointing at this cluster, if any.
    cue: Option<(u64, u64)>,
    has_video: bool,
}

/// Writes a WebM file incrementally: header, then clusters, then cues at finish.
pub(crate) struct WebmMuxer {
    max_fragment_ms: u64,
    layout: Layout,
    video_track: Option<u64>,
    audio_track: Option<u64>,
    cluster: Option<OpenCluster>,
    last_cluster_tc: u64,
    cues: Vec<Cue>,
    pos: u64,
    end_us: u64,
    /// The buffer of the last cluster written, kept for the next (no allocation and no
    /// fresh pages per cluster).
    spare: Vec<u8>,
}

fn track_numbers(has_video: bool, has_audio: bool) -> (Option<u64>, Option<u64>) {
    let video = has_video.then_some(1);
    let audio = has_audio.then_some(if has_video { 2 } else { 1 });
    (video, audio)
}

/// The 19-byte OpusHead (RFC 7845 §5.1) used as A_OPUS CodecPrivate.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(channels);
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip (see module docs)
    h.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family 0 (mono/stereo)
    h
}

impl WebmMuxer {
    /// Writes the EBML header, the Segment start, Info and Tracks.
    pub(crate) fn start<W: Write + Seek>(
        w: &mut W,
        header: &StreamHeader,
        max_fragment_ms: u64,
    ) -> Result<Self, MuxError> {
        let base = w.stream_position()?;
        let (video_track, audio_track) =
            track_numbers(header.video.is_some(), header.audio_channels.is_some());
        let mut buf = Vec::new();
        ebml::put_master(&mut buf, id::EBML, |b| {
            ebml::put_uint(b, id::EBML_VERSION, 1);
            ebml::put_uint(b, id::EBML_READ_VERSION, 1);
            ebml::put_uint(b, id::EBML_MAX_ID_LENGTH, 4);
            ebml::put_uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
            ebml::put_str(b, id::DOC_TYPE, "webm");
            ebml::put_uint(b, id::DOC_TYPE_VERSION, 4);
            ebml::put_uint(b, id::DOC_TYPE_READ_VERSION, 2);
        });
        let mut layout = Layout::default();
        ebml::put_id(&mut buf, id::SEGMENT);
        layout.segment_size_pos = base + buf.len() as u64;
        buf.extend_from_slice(&ebml::UNKNOWN_SIZE_8);
        layout.segment_data_start = base + buf.len() as u64;
        layout.seek_reserve_pos = base + buf.len() as u64;
        layout.seek_reserve_len = SEEK_RESERVE;
        buf.extend_from_slice(&ebml::void(SEEK_RESERVE));

        layout.info_pos = base + buf.len() as u64;
        let mut info = Vec::new();
        ebml::put_uint(&mut info, id::TIMECODE_SCALE, 1_000_000);
        // Duration payload offset: after its 2-byte ID and 1-byte size.
        let duration_off = info.len() + 3;
        ebml::put_float(&mut info, id::DURATION, 0.0);
        ebml::put_str(&mut info, id::MUXING_APP, APP);
        ebml::put_str(&mut info, id::WRITING_APP, APP);
        let before = buf.len();
        ebml::put_bytes(&mut buf, id::INFO, &info);
        let info_header_len = buf.len() - before - info.len();
        layout.duration_pos = layout.info_pos + (info_header_len + duration_off) as u64;
        layout.duration_len = 8;

        layout.tracks_pos = base + buf.len() as u64;
        ebml::put_master(&mut buf, id::TRACKS, |b| {
            if let (Some(n), Some(v)) = (video_track, &header.video) {
                ebml::put_master(b, id::TRACK_ENTRY, |t| {
                    ebml::put_uint(t, id::TRACK_NUMBER, n);
                    ebml::put_uint(t, id::TRACK_UID, 0x7069_6f6e_0000 + n);
                    ebml::put_uint(t, id::TRACK_TYPE, 1);
                    ebml::put_uint(t, id::FLAG_LACING, 0);
                    ebml::put_str(t, id::CODEC_ID, "V_VP8");
                    ebml::put_master(t, id::VIDEO, |vb| {
                        ebml::put_uint(vb, id::PIXEL_WIDTH, u64::from(v.width));
                        ebml::put_uint(vb, id::PIXEL_HEIGHT, u64::from(v.height));
                    });
                });
            }
            if let (Some(n), Some(ch)) = (audio_track, header.audio_channels) {
                ebml::put_master(b, id::TRACK_ENTRY, |t| {
                    ebml::put_uint(t, id::TRACK_NUMBER, n);
                    ebml::put_uint(t, id::TRACK_UID, 0x7069_6f6e_0000 + n);
                    ebml::put_uint(t, id::TRACK_TYPE, 2);
                    ebml::put_uint(t, id::FLAG_LACING, 0);
                    ebml::put_str(t, id::CODEC_ID, "A_OPUS");
                    ebml::put_bytes(t, id::CODEC_PRIVATE, &opus_head(ch));
                    ebml::put_uint(t, id::CODEC_DELAY, 0);
                    ebml::put_uint(t, id::SEEK_PRE_ROLL, OPUS_SEEK_PRE_ROLL_NS);
                    ebml::put_master(t, id::AUDIO, |ab| {
                        ebml::put_float(ab, id::SAMPLING_FREQUENCY, 48_000.0);
                        ebml::put_uint(ab, id::CHANNELS, u64::from(ch));
                    });
                });
            }
        });
        w.write_all(&buf)?;
        w.flush()?;
        Ok(Self {
            max_fragment_ms,
            layout,
            video_track,
            audio_track,
            cluster: None,
            last_cluster_tc: 0,
            cues: Vec::new(),
            spare: Vec::new(),
            pos: base + buf.len() as u64,
            end_us: 0,
        })
    }

    /// Adds one sample (samples arrive roughly interleaved in time order).
    pub(crate) fn push<W: Write + Seek>(&mut self, w: &mut W, s: &Sample) -> Result<(), MuxError> {
        let rate = s.track.clock_rate();
        let ms = rescale(s.ts, rate, 1000);
        let end = rescale(s.ts.saturating_add(u64::from(s.duration)), rate, 1_000_000);
        self.end_us = self.end_us.max(end);
        let video_key = s.track == Track::Video && s.keyframe;
        if let Some(c) = &self.cluster {
            let elapsed = ms.saturating_sub(c.tc);
            let too_big = !c.blocks.is_empty()
                && c.blocks.len().saturating_add(s.data.len() + BLOCK_OVERHEAD) > MAX_CLUSTER_BYTES;
            let cut = ms >= c.tc.saturating_add(i16::MAX as u64)
                || (video_key && elapsed >= MIN_KEYFRAME_CLUSTER_MS)
                || elapsed >= self.max_fragment_ms
                || too_big;
            if cut {
                self.flush_cluster(w)?;
            }
        }
        let track = match s.track {
            Track::Video => self.video_track,
            Track::Audio => self.audio_track,
        }
        .unwrap_or(1);
        let audio_only = self.video_track.is_none();
        let c = self.cluster.get_or_insert_with(|| {
            // Never let cluster timecodes go backwards (a late frame of the other track).
            let tc = ms.max(self.last_cluster_tc);
            self.last_cluster_tc = tc;
            OpenCluster {
                tc,
                // The last cluster's buffer, emptied: a cluster reuses its capacity.
                blocks: std::mem::take(&mut self.spare),
                cue: audio_only.then_some((tc, track)),
                has_video: false,
            }
        });
        // Cue the first video block of a cluster when it is a keyframe (audio only: every cluster).
        if s.track == Track::Video && !c.has_video {
            c.has_video = true;
            if s.keyframe && c.cue.is_none() {
                c.cue = Some((ms.max(c.tc), track));
            }
        }
        let rel = (i128::from(ms) - i128::from(c.tc))
            .clamp(i128::from(i16::MIN), i128::from(i16::MAX)) as i16;
        // A SimpleBlock written in place (the frame is copied once, into the cluster).
        let mut head = Vec::with_capacity(12);
        ebml::put_size(&mut head, track); // track number as a vint
        head.extend_from_slice(&rel.to_be_bytes());
        head.push(if s.keyframe { 0x80 } else { 0 });
        ebml::put_id(&mut c.blocks, id::SIMPLE_BLOCK);
        ebml::put_size(&mut c.blocks, (head.len() + s.data.len()) as u64);
        c.blocks.extend_from_slice(&head);
        c.blocks.extend_from_slice(&s.data);
        Ok(())
    }

    fn flush_cluster<W: Write + Seek>(&mut self, w: &mut W) -> Result<(), MuxError> {
        let Some(c) = self.cluster.take() else {
            return Ok(());
        };
        // The Cluster's header and Timecode, then its blocks as they are (no copy).
        let mut timecode = Vec::with_capacity(12);
        ebml::put_uint(&mut timecode, id::TIMECODE, c.tc);
        let mut head = Vec::with_capacity(32);
        ebml::put_id(&mut head, id::CLUSTER);
        ebml::put_size(&mut head, (timecode.len() + c.blocks.len()) as u64);
        head.extend_from_slice(&timecode);
        if let Some((time_ms, track)) = c.cue {
            self.cues.push(Cue {
                time_ms,
                track,
                cluster_rel_pos: self.pos - self.layout.segment_data_start,
            });
        }
        w.seek(SeekFrom::Start(self.pos))?;
        w.write_all(&head)?;
        w.write_all(&c.blocks)?;
        w.flush()?;
        self.pos += (head.len() + c.blocks.len()) as u64;
        let mut blocks = c.blocks;
        blocks.clear();
        self.spare = blocks;
        Ok(())
    }

    /// Writes the open cluster and the Cues, then patches sizes and duration.
    /// Returns the file length and the duration in ms.
    pub(crate) fn finish<W: Write + Seek>(&mut self, w: &mut W) -> Result<(u64, u64), MuxError> {
        self.flush_cluster(w)?;
        let duration_ms = self.end_us as f64 / 1000.0;
        let end = finalize(w, &self.layout, &self.cues, duration_ms, self.pos)?;
        Ok((end, self.end_us.div_ceil(1000)))
    }
}

/// Writes Cues at `pos` (the end of the last cluster) and patches Segment size, Duration
/// and the SeekHead. Returns the end of the file.
fn finalize<W: Write + Seek>(
    w: &mut W,
    layout: &Layout,
    cues: &[Cue],
    duration_ms: f64,
    pos: u64,
) -> Result<u64, MuxError> {
    let mut buf = Vec::new();
    ebml::put_master(&mut buf, id::CUES, |b| {
        for cue in cues {
            ebml::put_master(b, id::CUE_POINT, |p| {
                ebml::put_uint(p, id::CUE_TIME, cue.time_ms);
                ebml::put_master(p, id::CUE_TRACK_POSITIONS, |t| {
                    ebml::put_uint(t, id::CUE_TRACK, cue.track);
                    ebml::put_uint(t, id::CUE_CLUSTER_POSITION, cue.cluster_rel_pos);
                });
            });
        }
    });
    let cues_pos = pos;
    w.seek(SeekFrom::Start(pos))?;
    if !cues.is_empty() {
        w.write_all(&buf)?;
    }
    let end = if cues.is_empty() {
        pos
    } else {
        pos + buf.len() as u64
    };

    // Segment size.
    let mut size = Vec::new();
    ebml::put_size_fixed(&mut size, end - layout.segment_data_start, 8);
    w.seek(SeekFrom::Start(layout.segment_size_pos))?;
    w.write_all(&size)?;

    // Duration.
    w.seek(SeekFrom::Start(layout.duration_pos))?;
    if layout.duration_len == 4 {
        w.write_all(&(duration_ms as f32).to_be_bytes())?;
    } else {
        w.write_all(&duration_ms.to_be_bytes())?;
    }

    // SeekHead into the reserved space, the rest stays Void.
    let rel = |p: u64| p - layout.segment_data_start;
    let mut seek = Vec::new();
    ebml::put_master(&mut seek, id::SEEK_HEAD, |b| {
        let mut entries = vec![
            (id::INFO, rel(layout.info_pos)),
            (id::TRACKS, rel(layout.tracks_pos)),
        ];
        if !cues.is_empty() {
            entries.push((id::CUES, rel(cues_pos)));
        }
        for (eid, p) in entries {
            ebml::put_master(b, id::SEEK, |s| {
                let mut idb = Vec::new();
                ebml::put_id(&mut idb, eid);
                ebml::put_bytes(s, id::SEEK_ID, &idb);
                ebml::put_uint(s, id::SEEK_POSITION, p);
            });
        }
    });
    if seek.len() + 2 <= layout.seek_reserve_len || seek.len() == layout.seek_reserve_len {
        let rest = layout.seek_reserve_len - seek.len();
        if rest > 0 {
            seek.extend_from_slice(&ebml::void(rest));
        }
        w.seek(SeekFrom::Start(layout.seek_reserve_pos))?;
        w.write_all(&seek)?;
    }
    w.seek(SeekFrom::Start(end))?;
    w.flush()?;
    Ok(end)
}

// ------------------------------------------------------------------ reading

/// One TrackEntry as far as we care.
#[derive(Clone, Debug, Default)]
struct TrackDesc {
    number: u64,
    codec: Option<Codec>,
    width: u32,
    height: u32,
    channels: u8,
    sample_rate: u32,
}

fn parse_tracks(payload: &[u8]) -> Vec<TrackDesc> {
    let mut out = Vec::new();
    for (eid, entry) in ebml::children(payload) {
        if eid != id::TRACK_ENTRY {
            continue;
        }
        let mut t = TrackDesc {
            channels: 1,
            sample_rate: 48_000,
            ..Default::default()
        };
        for (cid, p) in ebml::children(entry) {
            match cid {
                id::TRACK_NUMBER => t.number = ebml::uint(p).unwrap_or(0),
                id::CODEC_ID => {
                    t.codec = match p {
                        b"V_VP8" => Some(Codec::Vp8),
                        b"A_OPUS" => Some(Codec::Opus),
                        b"V_MPEG4/ISO/AVC" => Some(Codec::H264),
                        _ => None,
                    }
                }
                id::VIDEO => {
                    for (vid, v) in ebml::children(p) {
                        let val = ebml::uint(v).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
                        match vid {
                            id::PIXEL_WIDTH => t.width = val,
                            id::PIXEL_HEIGHT => t.height = val,
                            _ => {}
                        }
                    }
                }
                id::AUDIO => {
                    for (aid, a) in ebml::children(p) {
                        match aid {
                            id::CHANNELS => {
                                t.channels = ebml::uint(a).unwrap_or(1).clamp(1, 255) as u8
                            }
                            id::SAMPLING_FREQUENCY => {
                                let f = ebml::float(a).unwrap_or(48_000.0);
                                if f.is_finite() && (1.0..=1e6).contains(&f) {
                                    t.sample_rate = f.round() as u32;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // H264 in Matroska uses AVCC; not produced by us and not supported for playback.
        if t.codec == Some(Codec::H264) {
            t.codec = None;
        }
        if t.number > 0 {
            out.push(t);
        }
    }
    out
}

fn track_info(tracks: &[TrackDesc]) -> TrackInfo {
    let video = tracks
        .iter()
        .find(|t| t.codec == Some(Codec::Vp8))
        .map(|t| VideoTrack {
            codec: Codec::Vp8,
            width: t.width,
            height: t.height,
        });
    let audio = tracks
        .iter()
        .find(|t| t.codec == Some(Codec::Opus))
        .map(|t| AudioTrack {
            channels: t.channels,
            sample_rate: t.sample_rate,
        });
    TrackInfo { video, audio }
}

fn invalid(reason: &'static str) -> DemuxError {
    DemuxError::Invalid(reason)
}

/// Reads an element header at `pos`; `Ok(None)` when the file ends inside it.
fn header_at<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    len: u64,
) -> Result<Option<ebml::Header>, DemuxError> {
    if pos >= len {
        return Ok(None);
    }
    let n = (len - pos).min(12) as usize;
    let buf = read_at(r, pos, n)?;
    match ebml::read_header(&buf) {
        Ok(h) => Ok(Some(h)),
        Err(ebml::ParseError::Incomplete) => Ok(None),
        Err(ebml::ParseError::Invalid) => Err(invalid("bad EBML element header")),
    }
}

/// Reads the payload of the element at `pos`; `Ok(None)` when the file ends inside it.
fn payload_at<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    h: &ebml::Header,
    len: u64,
) -> Result<Option<Vec<u8>>, DemuxError> {
    let size = h
        .size
        .ok_or_else(|| invalid("unknown size where a size is required"))?;
    if size > MAX_ELEMENT {
        return Err(invalid("element too large"));
    }
    let start = pos + h.len as u64;
    if start + size > len {
        return Ok(None);
    }
    Ok(Some(read_at(r, start, size as usize)?))
}

/// The parsed EBML header + Segment start + Info/Tracks, shared by the reader and recovery.
struct Head {
    layout: Layout,
    timecode_scale: u64,
    tracks: Vec<TrackDesc>,
    segment_end: u64,
    /// Position of the first element after Info/Tracks (normally the first Cluster).
    first_cluster: u64,
    /// Whether the Segment size field is 8 bytes wide (patchable).
    size_patchable: bool,
    has_duration: bool,
}

fn read_head<R: Read + Seek>(r: &mut R, len: u64) -> Result<Head, DemuxError> {
    let not_webm = DemuxError::NotRecognized(super::ContainerKind::Webm);
    let h = match header_at(r, 0, len) {
        Ok(Some(h)) if h.id == id::EBML => h,
        Ok(None) if len < 4 => return Err(DemuxError::Truncated),
        _ => return Err(not_webm),
    };
    if h.size.is_none_or(|s| s > 4096) {
        return Err(not_webm);
    }
    let payload = payload_at(r, 0, &h, len)?.ok_or(DemuxError::Truncated)?;
    let doc_type = ebml::children(&payload)
        .find(|(i, _)| *i == id::DOC_TYPE)
        .map(|(_, p)| p.to_vec());
    match doc_type.as_deref() {
        Some(b"webm") | Some(b"matroska") => {}
        _ => return Err(not_webm),
    }
    let mut pos = h.len as u64 + h.size.unwrap_or(0);
    let seg = header_at(r, pos, len)?.ok_or(DemuxError::Truncated)?;
    if seg.id != id::SEGMENT {
        return Err(invalid("no Segment after the EBML header"));
    }
    let mut layout = Layout {
        segment_size_pos: pos + 4,
        segment_data_start: pos + seg.len as u64,
        ..Default::default()
    };
    let size_patchable = seg.len == 12;
    let segment_end = seg.size.map_or(len, |s| {
        (layout.segment_data_start.saturating_add(s)).min(len)
    });
    pos = layout.segment_data_start;
    let mut timecode_scale = 1_000_000;
    let mut tracks = None;
    let mut has_duration = false;
    while let Some(h) = header_at(r, pos, segment_end)? {
        match h.id {
            id::CLUSTER => break,
            id::INFO | id::TRACKS => {
                let p = payload_at(r, pos, &h, segment_end)?.ok_or(DemuxError::Truncated)?;
                if h.id == id::INFO {
                    layout.info_pos = pos;
                    let mut off = 0usize;
                    for (cid, cp) in ebml::children(&p) {
                        let child_len = ebml::read_header(&p[off..]).map(|ch| ch.len).unwrap_or(0);
                        match cid {
                            id::TIMECODE_SCALE => {
                                timecode_scale = ebml::uint(cp)
                                    .filter(|s| *s > 0)
                                    .unwrap_or(1_000_000)
                                    .min(MAX_TIMECODE_SCALE)
                            }
                            id::DURATION if cp.len() == 8 || cp.len() == 4 => {
                                has_duration = true;
                                layout.duration_pos = pos + (h.len + off + child_len) as u64;
                                layout.duration_len = cp.len();
                            }
                            _ => {}
                        }
                        off += child_len + cp.len();
                    }
                } else {
                    layout.tracks_pos = pos;
                    tracks = Some(parse_tracks(&p));
                }
                pos += h.len as u64 + p.len() as u64;
            }
            _ => {
                let size = h
                    .size
                    .ok_or_else(|| invalid("unknown-size element before clusters"))?;
                if layout.seek_reserve_len == 0
                    && (h.id == id::VOID || h.id == id::SEEK_HEAD)
                    && pos == layout.segment_data_start
                {
                    layout.seek_reserve_pos = pos;
                    layout.seek_reserve_len = usize::try_from(h.len as u64 + size).unwrap_or(0);
                }
                pos = pos.saturating_add(h.len as u64).saturating_add(size);
            }
        }
    }
    let tracks = tracks.ok_or(DemuxError::Truncated)?;
    Ok(Head {
        layout,
        timecode_scale,
        tracks,
        segment_end,
        first_cluster: pos,
        size_patchable,
        has_duration,
    })
}

/// A parsed (Simple)Block.
struct Block<'a> {
    track: u64,
    rel: i16,
    keyframe: bool,
    data: &'a [u8],
}

fn parse_block(p: &[u8], simple: bool) -> Result<Block<'_>, DemuxError> {
    let (track, n) = ebml::read_vint_value(p).map_err(|_| invalid("bad block track number"))?;
    if p.len() < n + 3 {
        return Err(invalid("short block"));
    }
    let rel = i16::from_be_bytes([p[n], p[n + 1]]);
    let flags = p[n + 2];
    if flags & 0x06 != 0 {
        return Err(DemuxError::Unsupported("laced blocks"));
    }
    Ok(Block {
        track,
        rel,
        keyframe: simple && flags & 0x80 != 0,
        data: &p[n + 3..],
    })
}

fn is_top_level(eid: u32) -> bool {
    matches!(
        eid,
        id::CLUSTER | id::CUES | id::INFO | id::TRACKS | id::SEEK_HEAD | id::EBML | id::SEGMENT
            | 0x1254_C367 // Tags
            | 0x1043_A770 // Chapters
            | 0x1941_A469 // Attachments
    )
}

struct ClusterState {
    end: Option<u64>,
    tc: u64,
}

/// Reads frames from a WebM file in file order.
pub(crate) struct WebmDemuxer<R> {
    r: R,
    pos: u64,
    segment_end: u64,
    timecode_scale: u64,
    tracks: Vec<TrackDesc>,
    info: TrackInfo,
    cluster: Option<ClusterState>,
    done: bool,
}

impl<R: Read + Seek> WebmDemuxer<R> {
    pub(crate) fn open(mut r: R) -> Result<Self, DemuxError> {
        let len = stream_len(&mut r)?;
        let head = read_head(&mut r, len)?;
        let info = track_info(&head.tracks);
        if info.video.is_none() && info.audio.is_none() {
            return Err(DemuxError::NoTracks);
        }
        Ok(Self {
            r,
            pos: head.first_cluster,
            segment_end: head.segment_end,
            timecode_scale: head.timecode_scale,
            tracks: head.tracks,
            info,
            cluster: None,
            done: false,
        })
    }

    pub(crate) fn info(&self) -> &TrackInfo {
        &self.info
    }

    fn frame(&self, tc: u64, b: &Block<'_>) -> Option<Frame> {
        let t = self.tracks.iter().find(|t| t.number == b.track)?;
        let codec = t.codec?;
        let units = (i128::from(tc) + i128::from(b.rel)).max(0);
        let ns = units.saturating_mul(i128::from(self.timecode_scale));
        // Saturating: corrupt files can hold any Timecode (u64) and TimecodeScale.
        let ts = ns
            .saturating_mul(i128::from(codec.clock_rate()))
            .saturating_add(500_000_000)
            / 1_000_000_000;
        Some(Frame {
            codec,
            ts: u64::try_from(ts).unwrap_or(u64::MAX),
            keyframe: if codec == Codec::Opus {
                true
            } else {
                b.keyframe
            },
            data: Bytes::copy_from_slice(b.data),
        })
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, DemuxError> {
        loop {
            if self.done || self.pos >= self.segment_end {
                self.done = true;
                return Ok(None);
            }
            if let Some(end) = self.cluster.as_ref().and_then(|c| c.end)
                && self.pos >= end
            {
                self.cluster = None;
                continue;
            }
            let Some(h) = header_at(&mut self.r, self.pos, self.segment_end)? else {
                self.done = true;
                return Ok(None);
            };
            if self.cluster.is_some() && is_top_level(h.id) {
                self.cluster = None;
            }
            if self.cluster.is_none() {
                match h.id {
                    id::CLUSTER => {
                        let start = self.pos + h.len as u64;
                        self.cluster = Some(ClusterState {
                            end: h.size.map(|s| start.saturating_add(s)),
                            tc: 0,
                        });
                        self.pos = start;
                    }
                    id::EBML | id::SEGMENT => {
                        self.done = true; // a chained segment: not ours to play
                    }
                    _ => {
                        let size = h.size.ok_or_else(|| invalid("unknown-size element"))?;
                        self.pos = self.pos.saturating_add(h.len as u64).saturating_add(size);
                    }
                }
                continue;
            }
            match h.id {
                id::TIMECODE | id::SIMPLE_BLOCK | id::BLOCK_GROUP => {
                    let Some(p) = payload_at(&mut self.r, self.pos, &h, self.segment_end)? else {
                        self.done = true;
                        return Ok(None);
                    };
                    self.pos += h.len as u64 + p.len() as u64;
                    let tc = self.cluster.as_ref().map_or(0, |c| c.tc);
                    match h.id {
                        id::TIMECODE => {
                            let tc =
                                ebml::uint(&p).ok_or_else(|| invalid("bad cluster timecode"))?;
                            if let Some(c) = self.cluster.as_mut() {
                                c.tc = tc;
                            }
                        }
                        id::SIMPLE_BLOCK => {
                            let b = parse_block(&p, true)?;
                            if let Some(f) = self.frame(tc, &b) {
                                return Ok(Some(f));
                            }
                        }
                        _ => {
                            let mut block = None;
                            let mut referenced = false;
                            for (cid, cp) in ebml::children(&p) {
                                match cid {
                                    id::BLOCK => block = Some(cp),
                                    id::REFERENCE_BLOCK => referenced = true,
                                    _ => {}
                                }
                            }
                            if let Some(bp) = block {
                                let mut b = parse_block(bp, false)?;
                                b.keyframe = !referenced;
                                if let Some(f) = self.frame(tc, &b) {
                                    return Ok(Some(f));
                                }
                            }
                        }
                    }
                }
                _ => {
                    let size = h
                        .size
                        .ok_or_else(|| invalid("unknown-size cluster child"))?;
                    self.pos = self.pos.saturating_add(h.len as u64).saturating_add(size);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ recovery

/// Facts about a recovered file.
pub(crate) struct Recovered {
    pub end: u64,
    pub duration_ms: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub width: u32,
    pub height: u32,
}

/// Cuts the file after its last complete cluster, then writes Cues, Duration, Segment size
/// and SeekHead. Returns the new length (the caller truncates) and the counts.
pub(crate) fn recover<F: Read + Write + Seek>(f: &mut F) -> Result<Recovered, MuxError> {
    let len = stream_len(f)?;
    let head = read_head(f, len)?;
    if !head.size_patchable
        || !head.has_duration
        || head.layout.seek_reserve_len < 2
        || head.timecode_scale != 1_000_000
    {
        return Err(MuxError::Unrecoverable(
            "WebM header was not written by this recorder",
        ));
    }
    let info = track_info(&head.tracks);
    let video_num = head
        .tracks
        .iter()
        .find(|t| t.codec == Some(Codec::Vp8))
        .map(|t| t.number);
    let audio_num = head
        .tracks
        .iter()
        .find(|t| t.codec == Some(Codec::Opus))
        .map(|t| t.number);
    // Saturating throughout: a corrupt cluster can hold any Timecode.
    let scale_ms = |units: i64| -> i64 {
        let ms = i128::from(units) * i128::from(head.timecode_scale) / 1_000_000;
        i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
    };
    let mut pos = head.first_cluster;
    let mut cues = Vec::new();
    let (mut video_frames, mut audio_frames) = (0u64, 0u64);
    let mut last_video: Option<(i64, i64)> = None; // (last ms, last delta)
    let mut audio_end_ms = 0i64;
    while let Some(h) = header_at(f, pos, len)? {
        if h.id != id::CLUSTER {
            break;
        }
        let Some(p) = payload_at(f, pos, &h, len).ok().flatten() else {
            break;
        };
        // Gather this cluster's facts first; commit them only if the cluster parses fully.
        let mut tc = 0u64;
        let mut first = true;
        let mut ok = true;
        let mut c_cues = Vec::new();
        let mut c_first_video = true;
        let (mut c_video, mut c_audio) = (0u64, 0u64);
        let mut c_last_video = last_video;
        let mut c_audio_end = audio_end_ms;
        let cluster_rel_pos = pos - head.layout.segment_data_start;
        let mut it = ebml::children(&p);
        for (cid, cp) in it.by_ref() {
            match cid {
                id::TIMECODE => tc = ebml::uint(cp).unwrap_or(0),
                id::SIMPLE_BLOCK => {
                    let Ok(b) = parse_block(cp, true) else {
                        ok = false;
                        break;
                    };
                    let ms = scale_ms(
                        i64::try_from(tc)
                            .unwrap_or(i64::MAX)
                            .saturating_add(i64::from(b.rel)),
                    );
                    let is_video = Some(b.track) == video_num;
                    let starts_cue = if video_num.is_none() {
                        first
                    } else {
                        is_video && c_first_video && b.keyframe
                    };
                    if is_video {
                        c_first_video = false;
                    }
                    if Some(b.track) == video_num {
                        c_video += 1;
                        c_last_video = Some(match c_last_video {
                            Some((prev, _)) => (ms, ms.saturating_sub(prev).max(1)),
                            None => (ms, 33),
                        });
                    } else if Some(b.track) == audio_num {
                        c_audio += 1;
                        let dur = i64::from(crate::depack::opus::frame_samples(b.data)) / 48;
                        c_audio_end = c_audio_end.max(ms.saturating_add(dur));
                    }
                    if starts_cue {
                        c_cues.push(Cue {
                            time_ms: u64::try_from(ms).unwrap_or(0).max(tc),
                            track: b.track,
                            cluster_rel_pos,
                        });
                    }
                    first = false;
                }
                _ => {}
            }
        }
        if !ok || it.error.is_some() {
            break;
        }
        cues.extend(c_cues);
        video_frames += c_video;
        audio_frames += c_audio;
        last_video = c_last_video;
        audio_end_ms = c_audio_end;
        pos += h.len as u64 + p.len() as u64;
    }
    let video_end_ms = last_video.map_or(0, |(ms, d)| ms.saturating_add(d));
    let duration_ms = video_end_ms.max(audio_end_ms).max(0) as u64;
    let end = finalize(f, &head.layout, &cues, duration_ms as f64, pos)?;
    Ok(Recovered {
        end,
        duration_ms,
        video_frames,
        audio_frames,
        width: info.video.map_or(0, |v| v.width),
        height: info.video.map_or(0, |v| v.height),
    })
}
