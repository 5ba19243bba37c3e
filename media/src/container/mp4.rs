//! Fragmented MP4 for H264 + Opus, built on `mp4-atom`: writer, reader and crash recovery.
//!
//! # Layout written
//! ```text
//! ftyp (isom; isom iso6 iso2 avc1 mp41)
//! moov  mvhd (timescale 1000)
//!       trak video: tkhd, mdia(mdhd 90 kHz, hdlr vide, minf(vmhd, dinf, stbl(stsd avc1+avcC, empty tables)))
//!       trak audio: tkhd, mdia(mdhd 48 kHz, hdlr soun, minf(smhd, dinf, stbl(stsd Opus+dOps, empty tables)))
//!       mvex(mehd, trex per track)
//! (moof mdat)*   one fragment at least every max_fragment_ms, cut at video keyframes when possible
//! mfra           written at finish (tfra per track: fragments starting with a sync sample)
//! ```
//! `mp4-atom` always writes version 1 mvhd/tkhd/mdhd/mehd, so the moov re-encoded at finish with
//! the real durations has exactly the size it had, and is overwritten in place.
//!
//! Video samples are AVCC (4-byte lengths). SPS/PPS stay in-band as well as in avcC: WebRTC
//! senders change resolution mid-stream, and the in-band copies keep such files decodable.
//! dOps pre-skip is 0 for the same reason as in WebM (see `webm.rs`).
use super::helpers::{annexb_to_avcc, avcc_nals, rescale, to_annexb};
use super::{
    AudioTrack, DemuxError, MuxError, Sample, StreamHeader, Track, TrackInfo, VideoTrack, read_at,
    stream_len,
};
use crate::depack::h264::{NAL_IDR, NAL_SPS, nal_type};
use crate::{Codec, Frame};
use bytes::Bytes;
use mp4_atom as m4;
use mp4_atom::{Decode, Encode};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};

const MOVIE_TIMESCALE: u32 = 1000;
const MIN_KEYFRAME_FRAGMENT_MS: u64 = 250;
const FLAGS_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (I-frame)
const FLAGS_NON_SYNC: u32 = 0x0101_0000; // depends_on = 1, is_non_sync_sample
const MAX_BOX: u64 = 64 << 20;
const MAX_SAMPLES_PER_TRUN: usize = 1_000_000;

/// Most sample bytes (mdat payload) one fragment holds: the muxer writes the open fragment
/// before a sample that would take it past this (a fragment always holds at least one sample).
///
/// Fragments are otherwise cut by media time only (`max_fragment_ms`, or a keyframe after
/// 250 ms). The recorder clamps repeated timestamps to the previous one + 1 tick, so when a
/// sender's timestamps barely advance one fragment could hold tens of thousands of samples of
/// any size, all buffered in memory until the fragment is written, and all lost by a crash.
pub const MAX_FRAGMENT_BYTES: usize = 8 << 20;

/// Most samples (both tracks together) one fragment holds; see [`MAX_FRAGMENT_BYTES`]. This
/// also bounds the moof (one trun entry per sample).
pub const MAX_FRAGMENT_SAMPLES: usize = 4096;

/// Most samples the demuxer and `recover` accept in one moof (a file with more is invalid
/// from there on). The muxer writes at most [`MAX_FRAGMENT_SAMPLES`]; this bounds the sample
/// list a hostile moof (up to 64 MiB, a few bytes per sample) makes the reader build.
pub(crate) const MAX_SAMPLES_PER_MOOF: usize = 100_000;

fn timescale(track: Track) -> u32 {
    track.clock_rate()
}

fn trak_common(
    track_id: u32,
    handler: &[u8; 4],
    name: &str,
    timescale: u32,
    stsd: m4::Stsd,
) -> m4::Trak {
    let video = handler == b"vide";
    m4::Trak {
        tkhd: m4::Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            volume: if video { 0.into() } else { 1.into() },
            alternate_group: if video { 0 } else { 1 },
            ..Default::default()
        },
        mdia: m4::Mdia {
            mdhd: m4::Mdhd {
                timescale,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: m4::Hdlr {
                handler: handler.into(),
                name: name.into(),
            },
            minf: m4::Minf {
                vmhd: video.then(m4::Vmhd::default),
                smhd: (!video).then(m4::Smhd::default),
                dinf: m4::Dinf {
                    dref: m4::Dref {
                        entries: vec![m4::DrefEntry::Url(m4::Url::default())],
                    },
                },
                stbl: m4::Stbl {
                    stsd,
                    stco: Some(m4::Stco::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn build_moov(
    header: &StreamHeader,
    video_id: Option<u32>,
    audio_id: Option<u32>,
) -> Result<m4::Moov, MuxError> {
    let mut traks = Vec::new();
    let mut trex = Vec::new();
    if let (Some(id), Some(v)) = (video_id, &header.video) {
        let avcc = m4::Avcc::new(&v.sps, &v.pps)?;
        let avc1 = m4::Avc1 {
            visual: m4::Visual {
                data_reference_index: 1,
                width: v.width.min(u32::from(u16::MAX)) as u16,
                height: v.height.min(u32::from(u16::MAX)) as u16,
                depth: 0x18,
                ..Default::default()
            },
            avcc,
            btrt: None,
            colr: None,
            pasp: None,
            taic: None,
            fiel: None,
            spatial: None,
        };
        let mut trak = trak_common(
            id,
            b"vide",
            "VideoHandler",
            timescale(Track::Video),
            m4::Stsd {
                codecs: vec![m4::Codec::Avc1(avc1)],
            },
        );
        trak.tkhd.width = (v.width.min(u32::from(u16::MAX)) as u16).into();
        trak.tkhd.height = (v.height.min(u32::from(u16::MAX)) as u16).into();
        traks.push(trak);
        trex.push(m4::Trex {
            track_id: id,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    if let (Some(id), Some(ch)) = (audio_id, header.audio_channels) {
        let opus = m4::Opus {
            audio: m4::Audio {
                data_reference_index: 1,
                channel_count: u16::from(ch),
                sample_size: 16,
                sample_rate: 48_000u16.into(),
            },
            dops: m4::Dops {
                output_channel_count: ch,
                pre_skip: 0,
                input_sample_rate: 48_000,
                output_gain: 0,
                channel_mapping: None,
            },
            btrt: None,
        };
        traks.push(trak_common(
            id,
            b"soun",
            "SoundHandler",
            timescale(Track::Audio),
            m4::Stsd {
                codecs: vec![m4::Codec::Opus(opus)],
            },
        ));
        trex.push(m4::Trex {
            track_id: id,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    Ok(m4::Moov {
        mvhd: m4::Mvhd {
            timescale: MOVIE_TIMESCALE,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: traks.len() as u32 + 1,
            ..Default::default()
        },
        mvex: Some(m4::Mvex {
            mehd: Some(m4::Mehd::default()),
            trex,
        }),
        trak: traks,
        ..Default::default()
    })
}

fn encode<T: Encode>(atom: &T) -> Result<Vec<u8>, MuxError> {
    let mut buf = Vec::new();
    atom.encode(&mut buf)?;
    Ok(buf)
}

#[derive(Default)]
struct Run {
    base: Option<u64>,
    entries: Vec<m4::TrunEntry>,
    data: Vec<u8>,
    first_sync: bool,
}

/// A `tfra` entry: a fragment of `track` starting at `time` (track units) at `moof_offset`.
#[derive(Clone, Copy, Debug)]
struct RandomAccess {
    track_id: u32,
    time: u64,
    moof_offset: u64,
    traf_number: u32,
}

/// Writes a fragmented MP4 incrementally.
pub(crate) struct Mp4Muxer {
    max_fragment_ms: u64,
    moov_pos: u64,
    moov: m4::Moov,
    moov_len: usize,
    video_id: Option<u32>,
    audio_id: Option<u32>,
    frag_start_us: Option<u64>,
    video: Run,
    audio: Run,
    seq: u32,
    pos: u64,
    random_access: Vec<RandomAccess>,
    end_video: u64,
    end_audio: u64,
}

impl Mp4Muxer {
    /// Writes ftyp and moov (durations zero until finish).
    pub(crate) fn start<W: Write + Seek>(
        w: &mut W,
        header: &StreamHeader,
        max_fragment_ms: u64,
    ) -> Result<Self, MuxError> {
        let base = w.stream_position()?;
        let video_id = header.video.as_ref().map(|_| 1);
        let audio_id = header
            .audio_channels
            .map(|_| if video_id.is_some() { 2 } else { 1 });
        let ftyp = m4::Ftyp {
            major_brand: b"isom".into(),
            minor_version: 0x200,
            compatible_brands: vec![
                b"isom".into(),
                b"iso6".into(),
                b"iso2".into(),
                b"avc1".into(),
                b"mp41".into(),
            ],
        };
        let moov = build_moov(header, video_id, audio_id)?;
        let mut buf = encode(&ftyp)?;
        let moov_pos = base + buf.len() as u64;
        let moov_bytes = encode(&moov)?;
        buf.extend_from_slice(&moov_bytes);
        w.write_all(&buf)?;
        w.flush()?;
        Ok(Self {
            max_fragment_ms,
            moov_pos,
            moov,
            moov_len: moov_bytes.len(),
            video_id,
            audio_id,
            frag_start_us: None,
            video: Run::default(),
            audio: Run::default(),
            seq: 0,
            pos: base + buf.len() as u64,
            random_access: Vec::new(),
            end_video: 0,
            end_audio: 0,
        })
    }

    /// Adds one sample; cuts a fragment first when it is due (by media time, or because the
    /// sample would take it past [`MAX_FRAGMENT_BYTES`] / [`MAX_FRAGMENT_SAMPLES`]).
    pub(crate) fn push<W: Write + Seek>(&mut self, w: &mut W, s: &Sample) -> Result<(), MuxError> {
        let us = rescale(s.ts, s.track.clock_rate(), 1_000_000);
        let data = match s.track {
            Track::Video => annexb_to_avcc(&s.data),
            Track::Audio => s.data.to_vec(),
        };
        if let Some(start) = self.frag_start_us {
            let elapsed_ms = us.saturating_sub(start) / 1000;
            let video_key = s.track == Track::Video && s.keyframe;
            let bytes = self.video.data.len() + self.audio.data.len();
            let samples = self.video.entries.len() + self.audio.entries.len();
            let full = samples > 0
                && (bytes.saturating_add(data.len()) > MAX_FRAGMENT_BYTES
                    || samples >= MAX_FRAGMENT_SAMPLES);
            if (video_key && elapsed_ms >= MIN_KEYFRAME_FRAGMENT_MS)
                || elapsed_ms >= self.max_fragment_ms
                || full
            {
                self.flush_fragment(w)?;
            }
        }
        self.frag_start_us.get_or_insert(us);
        let (run, end) = match s.track {
            Track::Video => (&mut self.video, &mut self.end_video),
            Track::Audio => (&mut self.audio, &mut self.end_audio),
        };
        if run.base.is_none() {
            run.base = Some(s.ts);
            run.first_sync = s.keyframe;
        }
        let sync = s.keyframe || s.track == Track::Audio;
        run.entries.push(m4::TrunEntry {
            duration: Some(s.duration),
            size: Some(data.len() as u32),
            flags: Some(if sync { FLAGS_SYNC } else { FLAGS_NON_SYNC }),
            cts: None,
        });
        run.data.extend_from_slice(&data);
        *end = (*end).max(s.ts.saturating_add(u64::from(s.duration)));
        Ok(())
    }

    fn flush_fragment<W: Write + Seek>(&mut self, w: &mut W) -> Result<(), MuxError> {
        self.frag_start_us = None;
        let video = std::mem::take(&mut self.video);
        let audio = std::mem::take(&mut self.audio);
        let runs: Vec<(u32, Run)> = [(self.video_id, video), (self.audio_id, audio)]
            .into_iter()
            .filter_map(|(id, run)| Some((id?, run)))
            .filter(|(_, run)| !run.entries.is_empty())
            .collect();
        if runs.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        let mut moof = m4::Moof {
            mfhd: m4::Mfhd {
                sequence_number: self.seq,
            },
            traf: runs
                .iter()
                .map(|(id, run)| m4::Traf {
                    tfhd: m4::Tfhd {
                        track_id: *id,
                        default_base_is_moof: true,
                        ..Default::default()
                    },
                    tfdt: Some(m4::Tfdt {
                        base_media_decode_time: run.base.unwrap_or(0),
                    }),
                    trun: vec![m4::Trun {
                        data_offset: Some(0),
                        samples: m4::TrunSamples::Explicit(run.entries.clone()),
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let moof_len = encode(&moof)?.len();
        let mut offset = moof_len + 8;
        for (traf, (_, run)) in moof.traf.iter_mut().zip(&runs) {
            traf.trun[0].data_offset = Some(i32::try_from(offset).map_err(|_| MuxError::TooLarge)?);
            offset += run.data.len();
        }
        let mut buf = encode(&moof)?;
        debug_assert_eq!(buf.len(), moof_len);
        let mdat_len = u32::try_from(offset - moof_len).map_err(|_| MuxError::TooLarge)?;
        buf.extend_from_slice(&mdat_len.to_be_bytes());
        buf.extend_from_slice(b"mdat");
        for (i, (id, run)) in runs.iter().enumerate() {
            buf.extend_from_slice(&run.data);
            let sync_track = if self.video_id.is_some() {
                self.video_id
            } else {
                self.audio_id
            };
            if Some(*id) == sync_track && run.first_sync {
                self.random_access.push(RandomAccess {
                    track_id: *id,
                    time: run.base.unwrap_or(0),
                    moof_offset: self.pos,
                    traf_number: i as u32 + 1,
                });
            }
        }
        w.seek(SeekFrom::Start(self.pos))?;
        w.write_all(&buf)?;
        w.flush()?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Writes the last fragment, patches durations and appends mfra.
    /// Returns the file length and the duration in ms.
    pub(crate) fn finish<W: Write + Seek>(&mut self, w: &mut W) -> Result<(u64, u64), MuxError> {
        self.flush_fragment(w)?;
        let mut ends = Vec::new();
        if let Some(id) = self.video_id {
            ends.push((id, self.end_video));
        }
        if let Some(id) = self.audio_id {
            ends.push((id, self.end_audio));
        }
        finalize(
            w,
            self.moov_pos,
            self.moov_len,
            &mut self.moov,
            &ends,
            &self.random_access,
            self.pos,
        )
    }
}

/// Patches moov durations in place and appends an mfra at `pos`. Returns (end, duration_ms).
fn finalize<W: Write + Seek>(
    w: &mut W,
    moov_pos: u64,
    moov_len: usize,
    moov: &mut m4::Moov,
    ends: &[(u32, u64)],
    random_access: &[RandomAccess],
    pos: u64,
) -> Result<(u64, u64), MuxError> {
    let movie_ts = moov.mvhd.timescale.max(1);
    let mut movie_duration = 0u64;
    for trak in &mut moov.trak {
        let end = ends
            .iter()
            .find(|(id, _)| *id == trak.tkhd.track_id)
            .map_or(0, |(_, e)| *e);
        trak.mdia.mdhd.duration = end;
        let d = rescale(end, trak.mdia.mdhd.timescale.max(1), movie_ts);
        trak.tkhd.duration = d;
        movie_duration = movie_duration.max(d);
    }
    moov.mvhd.duration = movie_duration;
    if let Some(mvex) = moov.mvex.as_mut() {
        mvex.mehd = Some(m4::Mehd {
            fragment_duration: movie_duration,
        });
    }
    let bytes = encode(moov)?;
    if bytes.len() != moov_len {
        return Err(MuxError::Unrecoverable("moov cannot be patched in place"));
    }
    w.seek(SeekFrom::Start(moov_pos))?;
    w.write_all(&bytes)?;

    let mut tfra: Vec<m4::Tfra> = Vec::new();
    for ra in random_access {
        let entry = m4::FragmentInfo {
            time: ra.time,
            moof_offset: ra.moof_offset,
            traf_number: ra.traf_number,
            trun_number: 1,
            sample_delta: 1,
        };
        match tfra.iter_mut().find(|t| t.track_id == ra.track_id) {
            Some(t) => t.entries.push(entry),
            None => tfra.push(m4::Tfra {
                track_id: ra.track_id,
                entries: vec![entry],
            }),
        }
    }
    let mut mfra = m4::Mfra {
        tfra,
        mfro: m4::Mfro { parent_size: 0 },
    };
    let len = encode(&mfra)?.len();
    mfra.mfro.parent_size = len as u32;
    let mfra_bytes = encode(&mfra)?;
    w.seek(SeekFrom::Start(pos))?;
    w.write_all(&mfra_bytes)?;
    w.flush()?;
    let duration_ms = rescale(movie_duration, movie_ts, 1000);
    Ok((pos + mfra_bytes.len() as u64, duration_ms))
}

// ------------------------------------------------------------------ reading

fn invalid(reason: &'static str) -> DemuxError {
    DemuxError::Invalid(reason)
}

/// A top-level box header: type, header length, total size.
#[derive(Clone, Copy, Debug)]
struct BoxHeader {
    kind: [u8; 4],
    total: u64,
}

/// Reads a box header at `pos`; `Ok(None)` if the file ends inside it.
fn box_at<R: Read + Seek>(r: &mut R, pos: u64, len: u64) -> Result<Option<BoxHeader>, DemuxError> {
    if len.saturating_sub(pos) < 8 {
        return Ok(None);
    }
    let h = read_at(r, pos, 8)?;
    let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    if !kind
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b' ' || *c == b'-' || *c == b'_')
    {
        return Err(invalid("bad box type"));
    }
    let total = match size {
        0 => len - pos,
        1 => {
            if len.saturating_sub(pos) < 16 {
                return Ok(None);
            }
            let l = read_at(r, pos + 8, 8)?;
            let total = u64::from_be_bytes(l.try_into().map_err(|_| invalid("bad size"))?);
            if total < 16 {
                return Err(invalid("bad box size"));
            }
            total
        }
        2..=7 => return Err(invalid("bad box size")),
        n => u64::from(n),
    };
    Ok(Some(BoxHeader { kind, total }))
}

/// Reads a whole box (header included) if it is complete in the file.
fn box_bytes<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    h: &BoxHeader,
    len: u64,
) -> Result<Option<Vec<u8>>, DemuxError> {
    if h.total > MAX_BOX {
        return Err(invalid("box too large"));
    }
    if pos.saturating_add(h.total) > len {
        return Ok(None);
    }
    Ok(Some(read_at(r, pos, h.total as usize)?))
}

#[derive(Clone, Debug)]
struct TrackState {
    id: u32,
    codec: Codec,
    timescale: u32,
    next_dts: u64,
    trex: m4::Trex,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    length_size: usize,
}

/// The moov as far as reading and recovery need it.
struct Movie {
    moov: m4::Moov,
    moov_pos: u64,
    moov_len: usize,
    after_moov: u64,
    tracks: Vec<TrackState>,
    info: TrackInfo,
}

fn read_movie<R: Read + Seek>(r: &mut R, len: u64) -> Result<Movie, DemuxError> {
    let not_mp4 = DemuxError::NotRecognized(super::ContainerKind::Mp4);
    let mut pos = 0;
    let mut first = true;
    loop {
        let h = match box_at(r, pos, len) {
            Ok(Some(h)) => h,
            Ok(None) if first && len < 8 => return Err(DemuxError::Truncated),
            Ok(None) => return Err(DemuxError::Truncated),
            Err(e) if first => {
                let _ = e;
                return Err(not_mp4);
            }
            Err(e) => return Err(e),
        };
        if first
            && !matches!(
                &h.kind,
                b"ftyp"
                    | b"styp"
                    | b"moov"
                    | b"free"
                    | b"skip"
                    | b"wide"
                    | b"mdat"
                    | b"pdin"
                    | b"uuid"
            )
        {
            return Err(not_mp4);
        }
        first = false;
        match &h.kind {
            b"moov" => {
                let bytes = box_bytes(r, pos, &h, len)?.ok_or(DemuxError::Truncated)?;
                let moov = m4::Moov::decode(&mut bytes.as_slice())?;
                let (tracks, info) = parse_tracks(&moov)?;
                return Ok(Movie {
                    moov,
                    moov_pos: pos,
                    moov_len: bytes.len(),
                    after_moov: pos + h.total,
                    tracks,
                    info,
                });
            }
            b"moof" => return Err(invalid("moof before moov")),
            _ => pos = pos.saturating_add(h.total),
        }
    }
}

fn parse_tracks(moov: &m4::Moov) -> Result<(Vec<TrackState>, TrackInfo), DemuxError> {
    let Some(mvex) = &moov.mvex else {
        return Err(DemuxError::Unsupported("non-fragmented MP4"));
    };
    let mut tracks = Vec::new();
    let mut info = TrackInfo::default();
    for trak in &moov.trak {
        let id = trak.tkhd.track_id;
        let trex = mvex
            .trex
            .iter()
            .find(|t| t.track_id == id)
            .cloned()
            .unwrap_or_default();
        let ts = trak.mdia.mdhd.timescale;
        if ts == 0 {
            continue;
        }
        let mut state = TrackState {
            id,
            codec: Codec::Opus,
            timescale: ts,
            next_dts: 0,
            trex,
            sps: Vec::new(),
            pps: Vec::new(),
            length_size: 4,
        };
        match trak.mdia.minf.stbl.stsd.codecs.first() {
            Some(m4::Codec::Avc1(avc1)) if info.video.is_none() => {
                state.codec = Codec::H264;
                state.sps = avc1.avcc.sequence_parameter_sets.clone();
                state.pps = avc1.avcc.picture_parameter_sets.clone();
                state.length_size = usize::from(avc1.avcc.length_size);
                info.video = Some(VideoTrack {
                    codec: Codec::H264,
                    width: u32::from(avc1.visual.width),
                    height: u32::from(avc1.visual.height),
                });
            }
            Some(m4::Codec::Opus(opus)) if info.audio.is_none() => {
                info.audio = Some(AudioTrack {
                    channels: opus.dops.output_channel_count,
                    sample_rate: 48_000,
                });
            }
            _ => continue,
        }
        tracks.push(state);
    }
    if tracks.is_empty() {
        return Err(DemuxError::NoTracks);
    }
    Ok((tracks, info))
}

/// The first sample of a traf: for mfra entries.
struct FragmentStart {
    track: usize,
    dts: u64,
    sync: bool,
    traf_number: u32,
}

/// One sample located in the file.
struct Located {
    track: usize,
    dts: u64,
    offset: u64,
    size: u32,
    duration: u32,
}

/// Resolves every sample of a moof (at `moof_pos`) to a file offset and decode time,
/// advancing each track's `next_dts`. Also returns, per traf, (track index, first dts, first sync).
fn locate(
    moof: &m4::Moof,
    moof_pos: u64,
    tracks: &mut [TrackState],
) -> Result<(Vec<Located>, Vec<FragmentStart>), DemuxError> {
    let mut out = Vec::new();
    let mut firsts = Vec::new();
    let mut prev_end = moof_pos;
    for (traf_idx, traf) in moof.traf.iter().enumerate() {
        let Some(ti) = tracks.iter().position(|t| t.id == traf.tfhd.track_id) else {
            continue;
        };
        let t = &mut tracks[ti];
        let base = match traf.tfhd.base_data_offset {
            Some(b) => b,
            None if traf.tfhd.default_base_is_moof || traf_idx == 0 => moof_pos,
            None => prev_end,
        };
        let mut dts = traf
            .tfdt
            .as_ref()
            .map_or(t.next_dts, |d| d.base_media_decode_time);
        let mut cursor = base;
        let mut first = true;
        for trun in &traf.trun {
            if trun.samples.len() > MAX_SAMPLES_PER_TRUN {
                return Err(invalid("too many samples in trun"));
            }
            if let Some(o) = trun.data_offset {
                cursor = base
                    .checked_add_signed(i64::from(o))
                    .ok_or_else(|| invalid("bad data offset"))?;
            }
            for e in trun.samples.iter() {
                if out.len() >= MAX_SAMPLES_PER_MOOF {
                    return Err(invalid("too many samples in moof"));
                }
                let duration = e
                    .duration
                    .or(traf.tfhd.default_sample_duration)
                    .unwrap_or(t.trex.default_sample_duration);
                let size = e
                    .size
                    .or(traf.tfhd.default_sample_size)
                    .unwrap_or(t.trex.default_sample_size);
                let flags = e
                    .flags
                    .or(traf.tfhd.default_sample_flags)
                    .unwrap_or(t.trex.default_sample_flags);
                let sync = flags & 0x0001_0000 == 0;
                if first {
                    firsts.push(FragmentStart {
                        track: ti,
                        dts,
                        sync,
                        traf_number: traf_idx as u32 + 1,
                    });
                    first = false;
                }
                out.push(Located {
                    track: ti,
                    dts,
                    offset: cursor,
                    size,
                    duration,
                });
                cursor = cursor.saturating_add(u64::from(size));
                dts = dts.saturating_add(u64::from(duration));
            }
        }
        t.next_dts = dts;
        prev_end = cursor;
    }
    Ok((out, firsts))
}

/// Reads frames from a fragmented MP4, fragment by fragment.
///
/// Each moof is parsed once into the list of its samples' positions (sorted by decode time
/// across tracks); the sample data is read one sample per [`next_frame`](Self::next_frame).
/// So the memory held is the moof (at most `MAX_BOX`) and its sample list (at most
/// [`MAX_SAMPLES_PER_MOOF`] entries), never a whole fragment's media, whatever the file says.
pub(crate) struct Mp4Demuxer<R> {
    r: R,
    len: u64,
    pos: u64,
    tracks: Vec<TrackState>,
    info: TrackInfo,
    /// Samples of the last moof read, not returned yet, in decode-time order.
    queue: VecDeque<Located>,
    done: bool,
}

impl<R: Read + Seek> Mp4Demuxer<R> {
    pub(crate) fn open(mut r: R) -> Result<Self, DemuxError> {
        let len = stream_len(&mut r)?;
        let movie = read_movie(&mut r, len)?;
        Ok(Self {
            r,
            len,
            pos: movie.after_moov,
            tracks: movie.tracks,
            info: movie.info,
            queue: VecDeque::new(),
            done: false,
        })
    }

    pub(crate) fn info(&self) -> &TrackInfo {
        &self.info
    }

    fn frame(&self, s: &Located, data: Vec<u8>) -> Result<Frame, DemuxError> {
        let t = &self.tracks[s.track];
        let ts = rescale(s.dts, t.timescale, t.codec.clock_rate());
        if t.codec != Codec::H264 {
            return Ok(Frame {
                codec: t.codec,
                ts,
                keyframe: true,
                data: Bytes::from(data),
            });
        }
        let nals = avcc_nals(&data, t.length_size).ok_or_else(|| invalid("bad AVCC sample"))?;
        let idr = nals.iter().any(|n| nal_type(n) == Some(NAL_IDR));
        let has_sps = nals.iter().any(|n| nal_type(n) == Some(NAL_SPS));
        let out = if idr && !has_sps {
            let params = t.sps.iter().chain(&t.pps).map(Vec::as_slice);
            to_annexb(params.chain(nals.iter().copied()))
        } else {
            to_annexb(nals.iter().copied())
        };
        Ok(Frame {
            codec: Codec::H264,
            ts,
            keyframe: idr,
            data: Bytes::from(out),
        })
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, DemuxError> {
        loop {
            if let Some(s) = self.queue.pop_front() {
                if u64::from(s.size) > MAX_BOX {
                    return Err(invalid("sample too large"));
                }
                if s.offset.saturating_add(u64::from(s.size)) > self.len {
                    self.done = true; // truncated inside this fragment's mdat
                    continue;
                }
                let data = read_at(&mut self.r, s.offset, s.size as usize)?;
                return self.frame(&s, data).map(Some);
            }
            if self.done {
                return Ok(None);
            }
            let Some(h) = box_at(&mut self.r, self.pos, self.len)? else {
                self.done = true;
                continue;
            };
            if &h.kind != b"moof" {
                self.pos = self.pos.saturating_add(h.total);
                continue;
            }
            let Some(bytes) = box_bytes(&mut self.r, self.pos, &h, self.len)? else {
                self.done = true;
                continue;
            };
            let moof = m4::Moof::decode(&mut bytes.as_slice())?;
            let (mut samples, _) = locate(&moof, self.pos, &mut self.tracks)?;
            // Decode order across tracks (stable: a track's own order is kept on ties).
            let tracks = &self.tracks;
            samples.sort_by_key(|s| {
                let t = &tracks[s.track];
                rescale(s.dts, t.timescale, 1_000_000)
            });
            self.queue = samples.into();
            self.pos = self.pos.saturating_add(h.total);
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

/// Keeps ftyp/moov and every complete moof+mdat pair, then patches durations and writes mfra
/// after the last complete fragment. Returns the new length (the caller truncates).
pub(crate) fn recover<F: Read + Write + Seek>(f: &mut F) -> Result<Recovered, MuxError> {
    let len = stream_len(f)?;
    let mut movie = read_movie(f, len)?;
    let mut pos = movie.after_moov;
    let mut good_end = pos;
    // A complete moof waiting for its mdat: (samples, traf starts, moof position, track states).
    type PendingMoof = (Vec<Located>, Vec<FragmentStart>, u64, Vec<TrackState>);
    let mut pending: Option<PendingMoof> = None;
    let mut counts = vec![0u64; movie.tracks.len()];
    let mut ends = vec![0u64; movie.tracks.len()];
    let mut random_access = Vec::new();
    let video_idx = movie.tracks.iter().position(|t| t.codec == Codec::H264);
    let sync_idx = video_idx.or(if movie.tracks.is_empty() {
        None
    } else {
        Some(0)
    });
    while let Ok(Some(h)) = box_at(f, pos, len) {
        if pos.saturating_add(h.total) > len {
            break;
        }
        match &h.kind {
            b"moof" => {
                let Ok(Some(bytes)) = box_bytes(f, pos, &h, len) else {
                    break;
                };
                let Ok(moof) = m4::Moof::decode(&mut bytes.as_slice()) else {
                    break;
                };
                let mut tracks = movie.tracks.clone();
                let Ok((samples, firsts)) = locate(&moof, pos, &mut tracks) else {
                    break;
                };
                pending = Some((samples, firsts, pos, tracks));
            }
            b"mdat" => {
                let end = pos + h.total;
                if let Some((samples, firsts, moof_pos, tracks)) = pending.take() {
                    if samples
                        .iter()
                        .any(|s| s.offset.saturating_add(u64::from(s.size)) > end)
                    {
                        break;
                    }
                    for s in &samples {
                        counts[s.track] += 1;
                        ends[s.track] =
                            ends[s.track].max(s.dts.saturating_add(u64::from(s.duration)));
                    }
                    for first in firsts {
                        if Some(first.track) == sync_idx && first.sync {
                            random_access.push(RandomAccess {
                                track_id: movie.tracks[first.track].id,
                                time: first.dts,
                                moof_offset: moof_pos,
                                traf_number: first.traf_number,
                            });
                        }
                    }
                    movie.tracks = tracks;
                }
                good_end = end;
            }
            b"free" | b"skip" => {}
            _ => break,
        }
        pos += h.total;
    }
    let ends_by_id: Vec<(u32, u64)> = movie.tracks.iter().map(|t| t.id).zip(ends).collect();
    let (end, duration_ms) = finalize(
        f,
        movie.moov_pos,
        movie.moov_len,
        &mut movie.moov,
        &ends_by_id,
        &random_access,
        good_end,
    )?;
    let mut video_frames = 0;
    let mut audio_frames = 0;
    for (t, c) in movie.tracks.iter().zip(counts) {
        match t.codec {
            Codec::Opus => audio_frames += c,
            _ => video_frames += c,
        }
    }
    Ok(Recovered {
        end,
        duration_ms,
        video_frames,
        audio_frames,
        width: movie.info.video.map_or(0, |v| v.width),
        height: movie.info.video.map_or(0, |v| v.height),
    })
}
