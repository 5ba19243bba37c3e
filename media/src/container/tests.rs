//! Recorder / Demuxer / recover tests on real encoder output (see tests/fixtures/README.md).
use super::ebml::{self, id};
use super::helpers::{rescale, to_annexb};
use crate::depack::h264::nal_units;

/// The NAL units of an Annex B stream.
fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    nal_units(data).collect()
}

/// A NAL unit's type (0 for an empty one).
fn nal_type(nal: &[u8]) -> u8 {
    crate::depack::h264::nal_type(nal).unwrap_or(0)
}
use super::*;
use crate::{Codec, Frame};
use bytes::Bytes;
use std::io::Cursor;

const H264_ES: &[u8] = include_bytes!("../../tests/fixtures/testsrc_64x48.h264");
const VP8_IVF: &[u8] = include_bytes!("../../tests/fixtures/testsrc_64x48.ivf");
const FF_WEBM: &[u8] = include_bytes!("../../tests/fixtures/ffmpeg_vp8_opus.webm");
const FF_MP4: &[u8] = include_bytes!("../../tests/fixtures/ffmpeg_h264_opus_frag.mp4");

/// Video timestamp (90 kHz) of the first keyframe on the shared timeline.
const V0: u64 = 900_000;
/// Audio timestamp (48 kHz) of the same instant.
const A0: u64 = 480_000;
/// Audio frames pushed before t=0 (dropped by the recorder).
const EARLY_AUDIO: u64 = 5;

/// H264 access units (Annex B) and their IDR flag: a VCL NAL ends each access unit.
fn h264_units() -> Vec<(Bytes, bool)> {
    let mut out = Vec::new();
    let mut cur: Vec<&[u8]> = Vec::new();
    for nal in annexb_nals(H264_ES) {
        cur.push(nal);
        let t = nal_type(nal);
        if t == 1 || t == 5 {
            out.push((Bytes::from(to_annexb(cur.drain(..))), t == 5));
        }
    }
    assert_eq!(out.len(), 30);
    out
}

/// VP8 frames from the IVF fixture and their keyframe flag.
fn vp8_units() -> Vec<(Bytes, bool)> {
    let header_len = usize::from(u16::from_le_bytes([VP8_IVF[6], VP8_IVF[7]]));
    let mut pos = header_len;
    let mut out = Vec::new();
    while pos + 12 <= VP8_IVF.len() {
        let size = u32::from_le_bytes(VP8_IVF[pos..pos + 4].try_into().unwrap()) as usize;
        let data = &VP8_IVF[pos + 12..pos + 12 + size];
        out.push((Bytes::copy_from_slice(data), data[0] & 1 == 0));
        pos += 12 + size;
    }
    assert_eq!(out.len(), 30);
    out
}

/// Real Opus packets (20 ms each), taken from the ffmpeg-made WebM.
fn opus_packets() -> Vec<Bytes> {
    let mut d = Demuxer::open(ContainerKind::Webm, Cursor::new(FF_WEBM)).unwrap();
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        if f.codec == Codec::Opus {
            out.push(f.data);
        }
    }
    assert!(out.len() >= 45, "{}", out.len());
    out
}

/// `secs` seconds of 30 fps video and 20 ms audio in arrival (time) order, video starting at
/// V0 with a keyframe; audio starts EARLY_AUDIO frames before it.
fn source(video: Option<Codec>, audio: bool, secs: u64) -> Vec<Frame> {
    let units = match video {
        Some(Codec::H264) => h264_units(),
        Some(_) => vp8_units(),
        None => Vec::new(),
    };
    let opus = opus_packets();
    let mut frames = Vec::new();
    if let Some(codec) = video {
        for i in 0..secs * 30 {
            let (data, key) = &units[(i % 30) as usize];
            frames.push((
                rescale(i * 3000, 90_000, 1_000_000) * 2 + 1, // video after audio at ties
                Frame {
                    codec,
                    ts: V0 + i * 3000,
                    keyframe: *key,
                    data: data.clone(),
                },
            ));
        }
    }
    if audio {
        for j in 0..secs * 50 + EARLY_AUDIO {
            let ts = A0 - EARLY_AUDIO * 960 + j * 960;
            let t_us = (ts as i64 - A0 as i64) * 1_000_000 / 48_000;
            frames.push((
                (t_us * 2).max(0) as u64,
                Frame {
                    codec: Codec::Opus,
                    ts,
                    keyframe: true,
                    data: opus[(j as usize) % opus.len()].clone(),
                },
            ));
        }
    }
    // Early audio first (it arrives before the keyframe), then everything by time.
    frames.sort_by_key(|(k, f)| (f.codec != Codec::Opus || f.ts >= A0, *k));
    frames.into_iter().map(|(_, f)| f).collect()
}

struct Recording {
    summary: Summary,
    bytes: Vec<u8>,
    /// The file as it was just before `finish` (what a crash leaves).
    crash: Vec<u8>,
}

fn record(kind: ContainerKind, config: RecorderConfig, frames: &[Frame]) -> Recording {
    let mut r = Recorder::new(kind, Cursor::new(Vec::new()), config).unwrap();
    for f in frames {
        r.push(f.clone()).unwrap();
    }
    let crash = r.get_ref().get_ref().clone();
    let (summary, w) = r.finish_into_inner().unwrap();
    let bytes = w.into_inner();
    assert_eq!(summary.bytes, bytes.len() as u64);
    Recording {
        summary,
        bytes,
        crash,
    }
}

fn config(video: Option<Codec>, audio: bool) -> RecorderConfig {
    RecorderConfig {
        video,
        audio,
        max_fragment_ms: 1000,
    }
}

fn demux_all(kind: ContainerKind, bytes: &[u8]) -> Result<(TrackInfo, Vec<Frame>), DemuxError> {
    let mut d = Demuxer::open(kind, Cursor::new(bytes))?;
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame()? {
        frames.push(f);
        assert!(frames.len() < 100_000, "runaway demuxer");
    }
    Ok((d.info().clone(), frames))
}

/// What the demuxer must return for `frames` recorded into `kind` (per track, in order).
fn expected(kind: ContainerKind, frames: &[Frame]) -> Vec<Frame> {
    let mut out: Vec<Frame> = frames
        .iter()
        .filter(|f| f.codec != Codec::Opus || f.ts >= A0)
        .map(|f| {
            let rate = f.codec.clock_rate();
            let t0 = if f.codec == Codec::Opus { A0 } else { V0 };
            let mut ts = f.ts - t0;
            if kind == ContainerKind::Webm {
                ts = rescale(rescale(ts, rate, 1000), 1000, rate);
            }
            Frame { ts, ..f.clone() }
        })
        .collect();
    out.sort_by_key(|f| (f.codec == Codec::Opus, f.ts));
    out
}

fn by_track(frames: &[Frame], codec: Codec) -> Vec<&Frame> {
    frames.iter().filter(|f| f.codec == codec).collect()
}

fn nals(data: &[u8]) -> Vec<Vec<u8>> {
    annexb_nals(data).into_iter().map(<[u8]>::to_vec).collect()
}

/// Same frame, comparing H264 by NAL units (start-code width may differ).
fn assert_frame_eq(got: &Frame, want: &Frame, ctx: &str) {
    assert_eq!(got.codec, want.codec, "{ctx}");
    assert_eq!(got.ts, want.ts, "{ctx}");
    assert_eq!(got.keyframe, want.keyframe, "{ctx}");
    if got.codec == Codec::H264 {
        assert_eq!(nals(&got.data), nals(&want.data), "{ctx}");
    } else {
        assert_eq!(got.data, want.data, "{ctx}");
    }
}

/// Every track of `got` is a prefix of that track in `full`.
fn assert_prefix(got: &[Frame], full: &[Frame], ctx: &str) {
    for codec in [Codec::Vp8, Codec::H264, Codec::Opus] {
        let g = by_track(got, codec);
        let f = by_track(full, codec);
        assert!(
            g.len() <= f.len(),
            "{ctx}: {codec:?} {} > {}",
            g.len(),
            f.len()
        );
        for (i, (a, b)) in g.iter().zip(&f).enumerate() {
            assert_frame_eq(a, b, &format!("{ctx}: {codec:?} #{i}"));
        }
    }
}

const CASES: [(ContainerKind, Codec); 2] = [
    (ContainerKind::Webm, Codec::Vp8),
    (ContainerKind::Mp4, Codec::H264),
];

#[test]
fn round_trip_exact_frames() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        let rec = record(kind, config(Some(codec), true), &frames);
        let s = rec.summary;
        assert_eq!((s.video_frames, s.audio_frames), (90, 150), "{kind:?}");
        assert_eq!((s.width, s.height), (64, 48), "{kind:?}");
        assert_eq!(s.dropped_frames, EARLY_AUDIO, "{kind:?}");
        assert_eq!(s.clamped_timestamps, 0, "{kind:?}");
        assert_eq!(s.duration_ms, 3000, "{kind:?}");

        let (info, got) = demux_all(kind, &rec.bytes).unwrap();
        assert_eq!(
            info.video,
            Some(VideoTrack {
                codec,
                width: 64,
                height: 48
            })
        );
        assert_eq!(
            info.audio,
            Some(AudioTrack {
                channels: 2,
                sample_rate: 48_000
            })
        );
        let want = expected(kind, &frames);
        for c in [codec, Codec::Opus] {
            let (g, w) = (by_track(&got, c), by_track(&want, c));
            assert_eq!(g.len(), w.len(), "{kind:?} {c:?}");
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                assert_frame_eq(a, b, &format!("{kind:?} {c:?} #{i}"));
            }
        }
        // Decode order interleaves the tracks by time.
        let times: Vec<u64> = got
            .iter()
            .map(|f| rescale(f.ts, f.codec.clock_rate(), 1_000_000))
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{kind:?}: not interleaved"
        );
        // Keyframes: fixture has IDR/key at 0 and 15 of each 30.
        let keys = by_track(&got, codec).iter().filter(|f| f.keyframe).count();
        assert_eq!(keys, 6, "{kind:?}");
    }
}

#[test]
fn h264_keyframes_carry_sps_pps_and_mp4_has_avcc_params_in_band() {
    let frames = source(Some(Codec::H264), false, 1);
    let rec = record(
        ContainerKind::Mp4,
        config(Some(Codec::H264), false),
        &frames,
    );
    let (_, got) = demux_all(ContainerKind::Mp4, &rec.bytes).unwrap();
    for f in got.iter().filter(|f| f.keyframe) {
        let types: Vec<u8> = annexb_nals(&f.data).iter().map(|n| nal_type(n)).collect();
        let sps = types.iter().position(|t| *t == 7).expect("SPS");
        let pps = types.iter().position(|t| *t == 8).expect("PPS");
        let idr = types.iter().position(|t| *t == 5).expect("IDR");
        assert!(sps < idr && pps < idr, "{types:?}");
        assert_eq!(&f.data[..4], &[0, 0, 0, 1]);
    }
}

#[test]
fn ffmpeg_made_files_demux() {
    let (info, frames) = demux_all(ContainerKind::Webm, FF_WEBM).unwrap();
    assert_eq!(
        info.video.map(|v| (v.codec, v.width, v.height)),
        Some((Codec::Vp8, 64, 48))
    );
    assert_eq!(info.audio.map(|a| a.channels), Some(2));
    assert_eq!(by_track(&frames, Codec::Vp8).len(), 30);
    assert!(by_track(&frames, Codec::Vp8)[0].keyframe);

    let (info, frames) = demux_all(ContainerKind::Mp4, FF_MP4).unwrap();
    assert_eq!(
        info.video.map(|v| (v.codec, v.width, v.height)),
        Some((Codec::H264, 64, 48))
    );
    assert_eq!(info.audio.map(|a| a.channels), Some(2));
    let video = by_track(&frames, Codec::H264);
    assert_eq!(video.len(), 30);
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, [0, 15]);
    // ffmpeg gives the first sample 612/15360 s (an edit-list artifact), then 512/15360 s each.
    assert_eq!(video[1].ts - video[0].ts, 3586);
    for w in video.windows(2).skip(1) {
        assert_eq!(w[1].ts - w[0].ts, 3000);
    }
    // ffmpeg's avcC holds SPS/PPS; the demuxer puts them in front of each IDR.
    for f in video.iter().filter(|f| f.keyframe) {
        let types: Vec<u8> = annexb_nals(&f.data).iter().map(|n| nal_type(n)).collect();
        assert_eq!(&types[..2], &[7, 8], "{types:?}");
    }
    assert!(by_track(&frames, Codec::Opus).len() >= 45);
}

/// Top-level Segment children of a WebM: (id, payload).
fn webm_children(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let h = ebml::read_header(bytes).unwrap();
    let seg_start = h.len + h.size.unwrap() as usize;
    let sh = ebml::read_header(&bytes[seg_start..]).unwrap();
    let data = &bytes[seg_start + sh.len..];
    let data = match sh.size {
        Some(s) => &data[..s as usize],
        None => data,
    };
    ebml::children(data).collect()
}

/// Per cluster: (timecode, block times in ms, first video block is a keyframe).
fn webm_clusters(bytes: &[u8]) -> Vec<(u64, Vec<i64>)> {
    webm_children(bytes)
        .into_iter()
        .filter(|(i, _)| *i == id::CLUSTER)
        .map(|(_, p)| {
            let mut tc = 0;
            let mut times = Vec::new();
            for (cid, cp) in ebml::children(p) {
                match cid {
                    id::TIMECODE => tc = ebml::uint(cp).unwrap(),
                    id::SIMPLE_BLOCK => {
                        let rel = i16::from_be_bytes([cp[1], cp[2]]);
                        times.push(tc as i64 + i64::from(rel));
                    }
                    _ => {}
                }
            }
            (tc, times)
        })
        .collect()
}

/// Top-level MP4 boxes: (type, start, size).
fn mp4_boxes(bytes: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((bytes[pos + 4..pos + 8].try_into().unwrap(), pos, size));
        pos += size;
    }
    out
}

#[test]
fn clusters_and_fragments_are_cut_at_keyframes_and_at_most_max_fragment_ms() {
    // (keyframes every 15 frames or only the first, expected cluster/fragment count)
    for (only_first_key, want) in [(false, 6usize), (true, 3)] {
        for (kind, codec) in CASES {
            let mut frames = source(Some(codec), true, 3);
            if only_first_key {
                let mut seen = false;
                for f in frames.iter_mut().filter(|f| f.codec == codec) {
                    f.keyframe = f.keyframe && !seen;
                    seen = true;
                }
            }
            let rec = record(kind, config(Some(codec), true), &frames);
            let ctx = format!("{kind:?} only_first_key={only_first_key}");
            match kind {
                ContainerKind::Webm => {
                    let clusters = webm_clusters(&rec.bytes);
                    assert_eq!(clusters.len(), want, "{ctx}");
                    for (tc, times) in &clusters {
                        let span = times.iter().max().unwrap() - *tc as i64;
                        assert!(span < 1000, "{ctx}: cluster at {tc} spans {span} ms");
                    }
                    // Every cluster is written with a known size, as are Segment and Cues.
                    let children = webm_children(&rec.bytes);
                    let cues = children.iter().find(|(i, _)| *i == id::CUES).expect("Cues");
                    let points = ebml::children(cues.1).count();
                    assert_eq!(points, if only_first_key { 1 } else { 6 }, "{ctx}");
                    assert_eq!(children.first().map(|c| c.0), Some(id::SEEK_HEAD), "{ctx}");
                }
                ContainerKind::Mp4 => {
                    let boxes = mp4_boxes(&rec.bytes);
                    let kinds: Vec<&[u8]> = boxes.iter().map(|b| &b.0[..]).collect();
                    assert_eq!(kinds[..2], [b"ftyp", b"moov"], "{ctx}");
                    assert_eq!(
                        kinds.iter().filter(|k| **k == b"moof").count(),
                        want,
                        "{ctx}"
                    );
                    assert_eq!(kinds.last(), Some(&&b"mfra"[..]), "{ctx}");
                    let end: usize = boxes.iter().map(|b| b.2).sum();
                    assert_eq!(end, rec.bytes.len(), "{ctx}");
                }
            }
        }
    }
}

#[test]
fn crash_image_demuxes_up_to_the_open_cluster() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        let rec = record(kind, config(Some(codec), true), &frames);
        let (_, full) = demux_all(kind, &rec.bytes).unwrap();
        let (_, got) = demux_all(kind, &rec.crash).unwrap();
        assert_prefix(&got, &full, &format!("{kind:?} crash image"));
        // Everything but the open cluster/fragment (<= ~1 s) survived.
        let lost_video = by_track(&full, codec).len() - by_track(&got, codec).len();
        assert!(
            lost_video > 0 && lost_video <= 30,
            "{kind:?}: lost {lost_video}"
        );
        assert!(got.len() >= 150, "{kind:?}: {}", got.len());
    }
}

#[test]
fn truncated_at_every_byte_of_the_last_second() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        let rec = record(kind, config(Some(codec), true), &frames);
        for (name, file) in [("finished", &rec.bytes), ("crash", &rec.crash)] {
            let (_, full) = demux_all(kind, file).unwrap();
            let start = file.len() * 2 / 3;
            let mut last_count = 0;
            for cut in start..=file.len() {
                let ctx = format!("{kind:?} {name} cut at {cut}/{}", file.len());
                let (_, got) =
                    demux_all(kind, &file[..cut]).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_prefix(&got, &full, &ctx);
                assert!(
                    got.len() >= last_count,
                    "{ctx}: fewer frames than a shorter cut"
                );
                last_count = got.len();
            }
            assert_eq!(last_count, full.len());
        }
    }
}

#[test]
fn recover_cut_files() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        let rec = record(kind, config(Some(codec), true), &frames);
        let (_, full) = demux_all(kind, &rec.bytes).unwrap();
        let header_end = match kind {
            ContainerKind::Webm => rec
                .bytes
                .windows(4)
                .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
                .unwrap(),
            ContainerKind::Mp4 => mp4_boxes(&rec.bytes)[2].1,
        };
        for (name, base) in [("crash", &rec.crash), ("finished", &rec.bytes)] {
            let mut cuts: Vec<usize> = (header_end..base.len()).step_by(97).collect();
            cuts.push(base.len());
            for cut in cuts {
                let ctx = format!("{kind:?} {name} cut at {cut}");
                let mut file = Cursor::new(base[..cut].to_vec());
                let s = recover(kind, &mut file).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let bytes = file.into_inner();
                assert_eq!(s.bytes, bytes.len() as u64, "{ctx}");
                let (info, got) = demux_all(kind, &bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(
                    info.video.map(|v| (v.width, v.height)),
                    Some((64, 48)),
                    "{ctx}"
                );
                assert_prefix(&got, &full, &ctx);
                assert_eq!(by_track(&got, codec).len() as u64, s.video_frames, "{ctx}");
                assert_eq!(
                    by_track(&got, Codec::Opus).len() as u64,
                    s.audio_frames,
                    "{ctx}"
                );
                if let Some(last) = got.last() {
                    let last_ms = rescale(last.ts, last.codec.clock_rate(), 1000);
                    assert!(
                        s.duration_ms > last_ms,
                        "{ctx}: {} <= {last_ms}",
                        s.duration_ms
                    );
                }
                // Recovering again changes nothing.
                let mut again = Cursor::new(bytes.clone());
                let s2 = recover(kind, &mut again).unwrap();
                assert_eq!(again.into_inner(), bytes, "{ctx}: not idempotent");
                assert_eq!(s2, s, "{ctx}");
            }
        }
        // The finished file recovers to itself (same frames, same duration).
        let mut file = Cursor::new(rec.bytes.clone());
        let s = recover(kind, &mut file).unwrap();
        // WebM recovery estimates the last video frame's duration from 1 ms timestamps.
        assert!(
            s.duration_ms.abs_diff(rec.summary.duration_ms) <= 2,
            "{kind:?}: {}",
            s.duration_ms
        );
        assert_eq!((s.video_frames, s.audio_frames), (90, 150), "{kind:?}");
    }
}

#[test]
fn recover_rejects_files_without_a_header() {
    for (kind, codec) in CASES {
        let rec = record(
            kind,
            config(Some(codec), true),
            &source(Some(codec), true, 1),
        );
        for cut in [0usize, 3, 20, 60] {
            let mut file = Cursor::new(rec.bytes[..cut].to_vec());
            assert!(recover(kind, &mut file).is_err(), "{kind:?} cut {cut}");
        }
        let mut garbage = Cursor::new(b"definitely not a media file".to_vec());
        assert!(recover(kind, &mut garbage).is_err());
    }
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn garbage_is_rejected() {
    let mut seed = 7;
    let random: Vec<u8> = (0..4096).map(|_| lcg(&mut seed) as u8).collect();
    let webm = record(
        ContainerKind::Webm,
        config(Some(Codec::Vp8), true),
        &source(Some(Codec::Vp8), true, 1),
    )
    .bytes;
    let mp4 = record(
        ContainerKind::Mp4,
        config(Some(Codec::H264), true),
        &source(Some(Codec::H264), true, 1),
    )
    .bytes;
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"hello world, this is not media".to_vec()),
        ("random", random),
        (
            "ebml magic then junk",
            [&[0x1A, 0x45, 0xDF, 0xA3, 0x08], &[0u8; 40][..]].concat(),
        ),
        (
            "huge box",
            [&[0xFF, 0xFF, 0xFF, 0xFF], &b"ftyp"[..], &[0; 8]].concat(),
        ),
        ("webm header cut", webm[..30].to_vec()),
        ("mp4 header cut", mp4[..30].to_vec()),
    ];
    for kind in [ContainerKind::Webm, ContainerKind::Mp4] {
        for (name, bytes) in &inputs {
            assert!(demux_all(kind, bytes).is_err(), "{kind:?} accepted {name}");
        }
    }
    assert!(demux_all(ContainerKind::Mp4, &webm).is_err());
    assert!(demux_all(ContainerKind::Webm, &mp4).is_err());
    // The error tells what happened.
    assert!(matches!(
        demux_all(ContainerKind::Webm, b"hello").unwrap_err(),
        DemuxError::NotRecognized(ContainerKind::Webm) | DemuxError::Truncated
    ));
}

#[test]
fn mutated_files_never_panic() {
    for (kind, codec) in CASES {
        let rec = record(
            kind,
            config(Some(codec), true),
            &source(Some(codec), true, 1),
        );
        let mut seed = 42;
        for _ in 0..400 {
            let mut bytes = rec.bytes.clone();
            for _ in 0..1 + lcg(&mut seed) % 4 {
                let i = (lcg(&mut seed) as usize) % bytes.len();
                bytes[i] = lcg(&mut seed) as u8;
            }
            let _ = demux_all(kind, &bytes);
            let _ = recover(kind, &mut Cursor::new(bytes));
        }
    }
}

#[test]
fn recorder_rules() {
    // Codec / container mismatches.
    for (kind, codec) in [
        (ContainerKind::Webm, Codec::H264),
        (ContainerKind::Mp4, Codec::Vp8),
        (ContainerKind::Mp4, Codec::Opus),
    ] {
        assert!(matches!(
            Recorder::new(kind, Cursor::new(Vec::new()), config(Some(codec), true)),
            Err(MuxError::UnsupportedCodec { .. })
        ));
    }
    // Frames of an unconfigured track.
    let mut r = Recorder::new(
        ContainerKind::Webm,
        Cursor::new(Vec::new()),
        config(Some(Codec::Vp8), false),
    )
    .unwrap();
    let opus = Frame {
        codec: Codec::Opus,
        ts: 0,
        keyframe: true,
        data: Bytes::from_static(&[0xfc, 1, 2]),
    };
    assert!(matches!(
        r.push(opus.clone()),
        Err(MuxError::UnexpectedTrack(Codec::Opus))
    ));
    let h264 = Frame {
        codec: Codec::H264,
        ..opus.clone()
    };
    assert!(matches!(
        r.push(h264),
        Err(MuxError::UnexpectedTrack(Codec::H264))
    ));

    // No keyframe: nothing written, finish says Empty.
    let units = vp8_units();
    let mut r = Recorder::new(
        ContainerKind::Webm,
        Cursor::new(Vec::new()),
        config(Some(Codec::Vp8), true),
    )
    .unwrap();
    r.push(Frame {
        codec: Codec::Vp8,
        ts: 0,
        keyframe: false,
        data: units[1].0.clone(),
    })
    .unwrap();
    r.push(opus).unwrap();
    // A "keyframe" whose bytes are not a VP8 key frame cannot give dimensions: dropped too.
    r.push(Frame {
        codec: Codec::Vp8,
        ts: 3000,
        keyframe: true,
        data: Bytes::from_static(&[1, 2, 3]),
    })
    .unwrap();
    assert!(!r.started());
    assert!(r.get_ref().get_ref().is_empty());
    assert!(matches!(r.finish(), Err(MuxError::Empty)));
}

#[test]
fn non_monotonic_timestamps_are_clamped_not_corrupting() {
    for (kind, codec) in CASES {
        let units = match codec {
            Codec::H264 => h264_units(),
            _ => vp8_units(),
        };
        let tss = [0u64, 3000, 3000, 2000, 9000, 12000];
        let frames: Vec<Frame> = tss
            .iter()
            .enumerate()
            .map(|(i, ts)| Frame {
                codec,
                ts: *ts,
                keyframe: i == 0,
                data: units[i].0.clone(),
            })
            .collect();
        let rec = record(kind, config(Some(codec), false), &frames);
        assert_eq!(rec.summary.clamped_timestamps, 2, "{kind:?}");
        let (_, got) = demux_all(kind, &rec.bytes).unwrap();
        assert_eq!(got.len(), 6, "{kind:?}");
        assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts), "{kind:?}");
        if kind == ContainerKind::Mp4 {
            let ts: Vec<u64> = got.iter().map(|f| f.ts).collect();
            assert_eq!(ts, [0, 3000, 3001, 3002, 9000, 12000]);
        }
    }
}

#[test]
fn audio_only_and_video_only() {
    for (kind, codec) in CASES {
        // Audio only: t=0 is the first audio frame.
        let frames = source(None, true, 2);
        let rec = record(kind, config(None, true), &frames);
        assert_eq!(rec.summary.audio_frames, 105, "{kind:?}");
        assert_eq!(rec.summary.video_frames, 0);
        let (info, got) = demux_all(kind, &rec.bytes).unwrap();
        assert!(info.video.is_none() && info.audio.is_some());
        assert_eq!(got.len(), 105);
        assert_eq!(got[0].ts, 0);
        assert_eq!(got[104].ts, 104 * 960);
        assert_eq!(rec.summary.duration_ms, 2100, "{kind:?}");

        // Video only.
        let frames = source(Some(codec), false, 2);
        let rec = record(kind, config(Some(codec), false), &frames);
        let (info, got) = demux_all(kind, &rec.bytes).unwrap();
        assert!(info.video.is_some() && info.audio.is_none());
        assert_eq!(got.len(), 60, "{kind:?}");
        assert_eq!(rec.summary.duration_ms, 2000, "{kind:?}");
    }
}

#[test]
fn stalled_audio_arriving_late_is_kept() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        // Audio from 1 s to 2 s stalls and arrives in one burst just before the audio at 2 s,
        // i.e. ~1 s late relative to video (per-track order is kept, as RTP reordering would).
        let (late, mut rest): (Vec<Frame>, Vec<Frame>) = frames
            .into_iter()
            .partition(|f| f.codec == Codec::Opus && f.ts >= A0 + 48_000 && f.ts < A0 + 96_000);
        let at = rest
            .iter()
            .position(|f| f.codec == Codec::Opus && f.ts >= A0 + 96_000)
            .unwrap();
        rest.splice(at..at, late);
        let rec = record(kind, config(Some(codec), true), &rest);
        let (_, got) = demux_all(kind, &rec.bytes).unwrap();
        let want = expected(kind, &rest);
        for c in [codec, Codec::Opus] {
            let mut g: Vec<&Frame> = by_track(&got, c);
            g.sort_by_key(|f| f.ts);
            let w = by_track(&want, c);
            assert_eq!(g.len(), w.len(), "{kind:?} {c:?}");
            for (a, b) in g.iter().zip(&w) {
                assert_eq!(a.ts, b.ts, "{kind:?} {c:?}");
            }
        }
    }
}

#[test]
fn container_kind_helpers() {
    assert_eq!(
        ContainerKind::for_video(Codec::Vp8),
        Some(ContainerKind::Webm)
    );
    assert_eq!(
        ContainerKind::for_video(Codec::H264),
        Some(ContainerKind::Mp4)
    );
    assert_eq!(ContainerKind::for_video(Codec::Opus), None);
    assert_eq!(ContainerKind::Webm.extension(), "webm");
    assert_eq!(ContainerKind::Mp4.extension(), "mp4");
    assert_eq!(ContainerKind::Webm.mime_type(), "video/webm");
    assert_eq!(ContainerKind::Mp4.mime_type(), "video/mp4");
}

/// Runs a tool, returning (success, stdout, stderr), or None when it is not installed.
fn run(tool: &str, args: &[&str]) -> Option<(bool, String, String)> {
    let out = std::process::Command::new(tool).args(args).output().ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn ffprobe_and_ffmpeg_accept_recorded_and_recovered_files() {
    if run("ffprobe", &["-version"]).is_none() {
        println!("NOTE: ffprobe not installed; skipping the ffprobe check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("media-container-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, codec) in CASES {
        let rec = record(
            kind,
            config(Some(codec), true),
            &source(Some(codec), true, 3),
        );
        // A recovered crash image cut mid-cluster, too.
        let mut crash = Cursor::new(rec.crash[..rec.crash.len() - 100].to_vec());
        let recovered = recover(kind, &mut crash).unwrap();
        for (name, bytes, want_ms) in [
            ("finished", rec.bytes.clone(), rec.summary.duration_ms),
            ("recovered", crash.into_inner(), recovered.duration_ms),
        ] {
            let path = dir.join(format!("{name}.{}", kind.extension()));
            std::fs::write(&path, &bytes).unwrap();
            let p = path.to_str().unwrap();
            let (ok, out, err) = run(
                "ffprobe",
                &[
                    "-v",
                    "warning",
                    "-show_entries",
                    "format=duration",
                    "-of",
                    "csv=p=0",
                    p,
                ],
            )
            .unwrap();
            assert!(
                ok && err.trim().is_empty(),
                "{kind:?} {name}: ffprobe: {err}"
            );
            let secs: f64 = out
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{kind:?} {name}: {out}"));
            let want = want_ms as f64 / 1000.0;
            assert!(
                (secs - want).abs() <= want * 0.03,
                "{kind:?} {name}: ffprobe {secs} s, want {want} s"
            );
            if name == "finished" {
                assert!((secs - 3.0).abs() <= 0.09, "{kind:?}: {secs}");
            }
            // Full decode of every frame: real encoder output, so no decoder errors either.
            if let Some((ok, _, err)) =
                run("ffmpeg", &["-v", "warning", "-i", p, "-f", "null", "-"])
            {
                assert!(
                    ok && err.trim().is_empty(),
                    "{kind:?} {name}: ffmpeg decode: {err}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_audio_frame_sounding_at_the_first_keyframe_is_kept() {
    // (audio frames' offsets from the keyframe in 48 kHz units, frames kept, first audio ts)
    let table: &[(&[i64], u64, u64)] = &[
        (&[-240, 720, 1680], 3, 0),     // 5 ms early: still sounding, starts at 0
        (&[-959, 1], 2, 0),             // 1 sample short of a whole frame early
        (&[-960, 0, 960], 2, 0),        // a whole frame early: over before t=0, dropped
        (&[-1200, -240, 720], 2, 0),    // only the one sounding at t=0 is kept
        (&[0, 960], 2, 0),              // aligned
        (&[480, 1440], 2, 480),         // late audio keeps its offset
        (&[-5000, -4040, -3080], 0, 0), // all before: dropped
    ];
    let opus = opus_packets();
    assert_eq!(crate::depack::opus::packet_samples(&opus[0]), Some(960));
    for (kind, codec) in CASES {
        let units = match codec {
            Codec::H264 => h264_units(),
            _ => vp8_units(),
        };
        for &(offsets, kept, first) in table {
            let ctx = format!("{kind:?} {offsets:?}");
            let mut r =
                Recorder::new(kind, Cursor::new(Vec::new()), config(Some(codec), true)).unwrap();
            let audio = |o: i64| Frame {
                codec: Codec::Opus,
                ts: (A0 as i64 + o) as u64,
                keyframe: true,
                data: opus[0].clone(),
            };
            let key = Frame {
                codec,
                ts: V0,
                keyframe: true,
                data: units[0].0.clone(),
            };
            // Audio before the keyframe arrives first and is held until it comes.
            let (early, late): (Vec<i64>, Vec<i64>) = offsets.iter().partition(|&&o| o < 0);
            let frames = early.into_iter().map(audio).chain([key]);
            for f in frames.chain(late.into_iter().map(audio)) {
                r.push(f).unwrap();
            }
            let (summary, w) = r.finish_into_inner().unwrap();
            assert_eq!(summary.audio_frames, kept, "{ctx}");
            let (_, got) = demux_all(kind, &w.into_inner()).unwrap();
            let audio = by_track(&got, Codec::Opus);
            assert_eq!(audio.len() as u64, kept, "{ctx}");
            if let Some(a) = audio.first() {
                let want = if kind == ContainerKind::Webm {
                    rescale(rescale(first, 48_000, 1000), 1000, 48_000)
                } else {
                    first
                };
                assert_eq!(a.ts, want, "{ctx}");
            }
        }
    }
}

/// A non-key video frame of exactly `size` bytes (at least 6) for `codec`.
fn filler_frame(codec: Codec, size: usize) -> Bytes {
    let mut d: Vec<u8> = match codec {
        Codec::H264 => vec![0, 0, 0, 1, 0x41, 0x9a],
        _ => vec![0x11, 0x02, 0x00],
    };
    d.resize(size.max(d.len()), 0x55);
    Bytes::from(d)
}

/// A keyframe at `ts` followed by `n` non-key frames of `size` bytes with the *same*
/// timestamp: the recorder clamps each to the previous + 1 tick, so media time barely moves.
fn frozen_video(codec: Codec, ts: u64, size: usize, n: usize) -> Vec<Frame> {
    let key = match codec {
        Codec::H264 => h264_units()[0].0.clone(),
        _ => vp8_units()[0].0.clone(),
    };
    let mut frames = vec![Frame {
        codec,
        ts,
        keyframe: true,
        data: key,
    }];
    frames.extend((0..n).map(|_| Frame {
        codec,
        ts,
        keyframe: false,
        data: filler_frame(codec, size),
    }));
    frames
}

#[test]
fn clusters_and_fragments_are_bounded_in_bytes_and_samples() {
    // (container, video frame bytes, frames after the keyframe, clusters/fragments written)
    let cases: &[(ContainerKind, usize, usize, usize)] = &[
        (ContainerKind::Webm, 65_536, 200, 2),
        (ContainerKind::Mp4, 65_536, 200, 2),
        (ContainerKind::Mp4, 10, 5_000, 2), // MAX_FRAGMENT_SAMPLES
        (ContainerKind::Webm, 10, 5_000, 1), // small: time and bytes allow one cluster
        // 7-8 frames per cluster, all within 1 ms: every cluster has Timecode 0.
        (ContainerKind::Webm, 1 << 20, 20, 3),
    ];
    for &(kind, size, n, want) in cases {
        let ctx = format!("{kind:?} {n} x {size} bytes");
        let codec = match kind {
            ContainerKind::Webm => Codec::Vp8,
            ContainerKind::Mp4 => Codec::H264,
        };
        let frames = frozen_video(codec, V0, size, n);
        let rec = record(kind, config(Some(codec), false), &frames);
        assert_eq!(rec.summary.clamped_timestamps, n as u64, "{ctx}");
        match kind {
            ContainerKind::Webm => {
                let clusters: Vec<&[u8]> = webm_children(&rec.bytes)
                    .into_iter()
                    .filter(|(i, _)| *i == id::CLUSTER)
                    .map(|(_, p)| p)
                    .collect();
                assert_eq!(clusters.len(), want, "{ctx}: clusters");
                for p in &clusters {
                    assert!(p.len() <= MAX_CLUSTER_BYTES + 16, "{ctx}: {}", p.len());
                }
                // A cluster cut by size may repeat the previous cluster's timecode.
                let tcs: Vec<u64> = webm_clusters(&rec.bytes).iter().map(|c| c.0).collect();
                assert!(tcs.windows(2).all(|w| w[0] <= w[1]), "{ctx}: {tcs:?}");
                if size >= 1 << 20 {
                    assert!(tcs.iter().all(|&tc| tc == 0), "{ctx}: {tcs:?}");
                }
            }
            ContainerKind::Mp4 => {
                let boxes = mp4_boxes(&rec.bytes);
                let count = |k: &[u8; 4]| boxes.iter().filter(|b| &b.0 == k).count();
                assert_eq!(count(b"moof"), want, "{ctx}: fragments");
                for b in boxes.iter().filter(|b| &b.0 == b"mdat") {
                    assert!(b.2 <= MAX_FRAGMENT_BYTES + 8, "{ctx}: mdat of {}", b.2);
                }
            }
        }
        // Every frame comes back, in order, from the file and from its recovery.
        let (_, got) = demux_all(kind, &rec.bytes).unwrap();
        assert_eq!(got.len(), n + 1, "{ctx}");
        assert!(got[0].keyframe, "{ctx}");
        assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts), "{ctx}");
        let mut file = Cursor::new(rec.bytes.clone());
        let s = recover(kind, &mut file).unwrap();
        assert_eq!(s.video_frames, n as u64 + 1, "{ctx}: recovered");
        let (_, again) = demux_all(kind, &file.into_inner()).unwrap();
        assert_eq!(again.len(), n + 1, "{ctx}: recovered file");
    }
}

#[test]
fn interleave_queues_are_bounded() {
    // Video with repeated timestamps while the configured audio track sends nothing: media
    // time alone never lets the interleave queue drain.
    // (frame bytes, frames after the keyframe, bytes at least written before finish)
    let cases: &[(usize, usize, usize)] = &[(100, 3_000, 0), (65_536, 200, 4 << 20)];
    for (kind, codec) in CASES {
        for &(size, n, min_written) in cases {
            let ctx = format!("{kind:?} {n} x {size} bytes");
            let mut r =
                Recorder::new(kind, Cursor::new(Vec::new()), config(Some(codec), true)).unwrap();
            for f in frozen_video(codec, V0, size, n) {
                r.push(f).unwrap();
                let (bytes, frames) = r.queued();
                assert!(frames <= MAX_QUEUED_FRAMES, "{ctx}: {frames} frames queued");
                assert!(bytes <= MAX_QUEUED_BYTES, "{ctx}: {bytes} bytes queued");
            }
            let written = r.get_ref().get_ref().len();
            assert!(
                written >= min_written,
                "{ctx}: only {written} bytes written"
            );
            let (summary, w) = r.finish_into_inner().unwrap();
            assert_eq!(summary.video_frames, n as u64 + 1, "{ctx}");
            let (info, got) = demux_all(kind, &w.into_inner()).unwrap();
            assert!(info.audio.is_some(), "{ctx}");
            assert_eq!(by_track(&got, codec).len(), n + 1, "{ctx}");
        }
    }
}

#[test]
fn into_inner_gives_the_writer_back_unfinished() {
    for (kind, codec) in CASES {
        let frames = source(Some(codec), true, 3);
        let rec = record(kind, config(Some(codec), true), &frames);
        let mut r =
            Recorder::new(kind, Cursor::new(Vec::new()), config(Some(codec), true)).unwrap();
        for f in &frames {
            r.push(f.clone()).unwrap();
        }
        // Exactly what was on disk before finish: the crash image, repaired by `recover`.
        let bytes = r.into_inner().into_inner();
        assert_eq!(bytes, rec.crash, "{kind:?}");
        let mut file = Cursor::new(bytes);
        let s = recover(kind, &mut file).unwrap();
        let (_, got) = demux_all(kind, &file.into_inner()).unwrap();
        let (_, full) = demux_all(kind, &rec.bytes).unwrap();
        assert_prefix(&got, &full, &format!("{kind:?}"));
        assert_eq!(
            by_track(&got, codec).len() as u64,
            s.video_frames,
            "{kind:?}"
        );
    }
}

#[test]
fn extreme_timestamps_never_panic() {
    const M: u64 = u64::MAX;
    // (video timestamps, the first is the keyframe; audio timestamps), pushed interleaved.
    let cases: &[(&[u64], &[u64])] = &[
        (&[0, M, M, 5, M - 1], &[0, M, 3, M]),
        (&[M, M, M], &[M, M - 960, M]),
        (&[M - 3000, M - 1, M], &[M - 960]),
        (
            &[1 << 63, 0, 1 << 40, M, 1 << 62],
            &[1 << 62, 1 << 63, 0, M],
        ),
        (&[0, 3000, 1 << 50, (1 << 50) + 3000], &[0, 960, 1 << 49]),
        (&[M / 2, M / 2 + 3000], &[M / 4, M / 2, M / 2 + 960]),
    ];
    let opus = opus_packets();
    for (kind, codec) in CASES {
        let units = match codec {
            Codec::H264 => h264_units(),
            _ => vp8_units(),
        };
        for &(vts, ats) in cases {
            let ctx = format!("{kind:?} {vts:?} {ats:?}");
            let mut r =
                Recorder::new(kind, Cursor::new(Vec::new()), config(Some(codec), true)).unwrap();
            for i in 0..vts.len().max(ats.len()) {
                if let Some(&ts) = vts.get(i) {
                    r.push(Frame {
                        codec,
                        ts,
                        keyframe: i == 0,
                        data: units[i % 15].0.clone(),
                    })
                    .unwrap();
                }
                if let Some(&ts) = ats.get(i) {
                    r.push(Frame {
                        codec: Codec::Opus,
                        ts,
                        keyframe: true,
                        data: opus[i % opus.len()].clone(),
                    })
                    .unwrap();
                }
            }
            let crash = r.get_ref().get_ref().clone();
            let (summary, w) = r.finish_into_inner().unwrap();
            let bytes = w.into_inner();
            assert_eq!(summary.bytes, bytes.len() as u64, "{ctx}");
            let (_, got) = demux_all(kind, &bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(
                by_track(&got, codec).len() as u64,
                summary.video_frames,
                "{ctx}"
            );
            assert_eq!(
                by_track(&got, Codec::Opus).len() as u64,
                summary.audio_frames,
                "{ctx}"
            );
            for file in [bytes, crash] {
                let mut file = Cursor::new(file);
                if recover(kind, &mut file).is_ok() {
                    let _ = demux_all(kind, &file.into_inner());
                }
            }
        }
    }
}

#[test]
fn mp4_demuxer_caps_samples_per_moof() {
    use mp4_atom::Encode;
    let max = super::mp4::MAX_SAMPLES_PER_MOOF;
    let rec = record(
        ContainerKind::Mp4,
        config(Some(Codec::H264), true),
        &source(Some(Codec::H264), true, 1),
    );
    // ftyp + moov of a real recording (track 2 is the audio track).
    let header = &rec.bytes[..mp4_boxes(&rec.bytes)[2].1];
    // (samples in one moof, accepted)
    for (n, ok) in [(max, true), (max + 1, false)] {
        let entry = mp4_atom::TrunEntry {
            duration: Some(960),
            size: Some(0),
            flags: None,
            cts: None,
        };
        let mut trun = Vec::new();
        let mut left = n;
        while left > 0 {
            let k = left.min(25_000);
            trun.push(mp4_atom::Trun {
                data_offset: Some(0),
                samples: mp4_atom::TrunSamples::Explicit(vec![entry.clone(); k]),
            });
            left -= k;
        }
        let moof = mp4_atom::Moof {
            mfhd: mp4_atom::Mfhd { sequence_number: 1 },
            traf: vec![mp4_atom::Traf {
                tfhd: mp4_atom::Tfhd {
                    track_id: 2,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(mp4_atom::Tfdt {
                    base_media_decode_time: 0,
                }),
                trun,
                ..Default::default()
            }],
        };
        let mut file = header.to_vec();
        moof.encode(&mut file).unwrap();
        file.extend_from_slice(&[0, 0, 0, 8]);
        file.extend_from_slice(b"mdat");
        let mut frames = 0usize;
        let result = {
            let mut d = Demuxer::open(ContainerKind::Mp4, Cursor::new(&file[..])).unwrap();
            loop {
                match d.next_frame() {
                    Ok(Some(_)) => frames += 1,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        assert_eq!(result.is_ok(), ok, "{n} samples: {result:?}");
        assert_eq!(frames, if ok { n } else { 0 }, "{n} samples");
        // Recovery stops before such a moof too (and keeps the header).
        let mut file = Cursor::new(file);
        let s = recover(ContainerKind::Mp4, &mut file).unwrap();
        assert_eq!(s.audio_frames, if ok { n as u64 } else { 0 }, "{n} samples");
    }
}
