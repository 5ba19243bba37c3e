//! Micro-benchmarks of the media core on the committed 4 s fixtures (640x480 30 fps ~1 Mb/s
//! VP8 or H264, Opus 20 ms):
//!
//! - `record/<codec>`: RTP packets -> `Depacketizer` -> `Timeline` -> `Recorder` into a
//!   `Cursor<Vec<u8>>`, as the server's record session does (`src/session/record.rs`).
//! - `play/<codec>`: `Demuxer` over the recorded file -> `packetize::payloads` per frame.
//! - `schedule/<codec>`: demuxed frames -> `Scheduler` (pacing, RTP headers, packetizing)
//!   polled until every packet is out.
//!
//! Each is measured twice, with `Throughput::Elements` = packets (`.../per_packet`) and
//! = frames (`.../per_frame`), so criterion prints elements/s for both; time per iteration
//! divided by the element count is ns/packet and ns/frame.
//!
//! `cargo bench -p media --bench core` (3 s per benchmark, 20 samples).
use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use media::container::{ContainerKind, Demuxer, Recorder, RecorderConfig};
use media::depack::Depacketizer;
use media::rtp::RtpPacket;
use media::schedule::{Output, Scheduler, SchedulerConfig};
use media::timeline::Timeline;
use media::{Codec, Frame, MediaKind};

const MTU: usize = 1150;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn frames(video: Codec) -> (Vec<Frame>, Vec<Frame>) {
    let v = match video {
        Codec::Vp8 => media::elementary::ivf_vp8(&fixture("vp8_640x480_30fps_4s.ivf")),
        _ => media::elementary::annexb_h264(&fixture("h264_640x480_30fps_4s.h264"), 30),
    }
    .expect("video fixture");
    let a = media::elementary::ogg_opus(&fixture("opus_48k_stereo_4s.ogg")).expect("opus");
    (v, a)
}

/// What the server receives: (kind, arrival µs, packet), in arrival order.
fn rtp_packets(video: &[Frame], audio: &[Frame]) -> Vec<(MediaKind, u64, RtpPacket)> {
    let mut all: Vec<(u64, MediaKind, &Frame)> = video
        .iter()
        .map(|f| (f.ts * 1_000_000 / 90_000, MediaKind::Video, f))
        .chain(
            audio
                .iter()
                .map(|f| (f.ts * 1_000_000 / 48_000, MediaKind::Audio, f)),
        )
        .collect();
    all.sort_by_key(|(us, kind, _)| (*us, *kind == MediaKind::Video));
    let mut seq = [1000u16, 5000u16];
    let mut out = Vec::new();
    for (us, kind, frame) in all {
        let i = usize::from(kind == MediaKind::Audio);
        let payloads = media::packetize::payloads(frame.codec, &frame.data, MTU);
        let n = payloads.len();
        for (k, payload) in payloads.into_iter().enumerate() {
            out.push((
                kind,
                us,
                RtpPacket {
                    payload_type: if kind == MediaKind::Audio { 111 } else { 96 },
                    sequence_number: seq[i],
                    timestamp: 90_000u32.wrapping_add(frame.ts as u32),
                    ssrc: if kind == MediaKind::Audio { 2 } else { 1 },
                    marker: kind == MediaKind::Video && k + 1 == n,
                    payload,
                },
            ));
            seq[i] = seq[i].wrapping_add(1);
        }
    }
    out
}

/// The record path; returns the file and the number of frames written.
fn record(video: Codec, packets: Vec<(MediaKind, u64, RtpPacket)>) -> (Vec<u8>, u64) {
    let kind = ContainerKind::for_video(video).expect("container");
    let mut recorder = Recorder::new(
        kind,
        Cursor::new(Vec::with_capacity(1 << 20)),
        RecorderConfig {
            video: Some(video),
            audio: true,
            max_fragment_ms: 1000,
        },
    )
    .expect("recorder");
    let mut vd = Depacketizer::new(video);
    let mut ad = Depacketizer::new(Codec::Opus);
    let mut timeline = Timeline::new();
    let mut written = 0u64;
    let mut drain = |d: &mut Depacketizer, kind: MediaKind, at: u64, timeline: &mut Timeline| {
        while let Some(frame) = d.pop() {
            let clock = frame.codec.clock_rate();
            timeline.observe(kind, clock, frame.ts, at);
            let Some(us) = timeline.to_common_us(kind, frame.ts) else {
                continue;
            };
            let ts = us * u64::from(clock) / 1_000_000;
            recorder.push(Frame { ts, ..frame }).expect("push");
            written += 1;
        }
    };
    let mut last = 0;
    for (kind, at, packet) in packets {
        let d = if kind == MediaKind::Video {
            &mut vd
        } else {
            &mut ad
        };
        d.push(packet);
        drain(d, kind, at, &mut timeline);
        last = at;
    }
    for (d, kind) in [(&mut vd, MediaKind::Video), (&mut ad, MediaKind::Audio)] {
        d.flush();
        drain(d, kind, last, &mut timeline);
    }
    let (_, cursor) = recorder.finish_into_inner().expect("finish");
    (cursor.into_inner(), written)
}

/// The demux + packetize half of the play path; returns packets made.
fn demux_packetize(kind: ContainerKind, file: &[u8]) -> (u64, u64) {
    let mut demuxer = Demuxer::open(kind, Cursor::new(file)).expect("demux");
    let (mut frames, mut packets) = (0u64, 0u64);
    while let Some(frame) = demuxer.next_frame().expect("frame") {
        let payloads = media::packetize::payloads(frame.codec, &frame.data, MTU);
        packets += payloads.len() as u64;
        frames += 1;
        black_box(payloads);
    }
    (frames, packets)
}

fn demux_all(kind: ContainerKind, file: &[u8]) -> (media::container::TrackInfo, Vec<Frame>) {
    let mut demuxer = Demuxer::open(kind, Cursor::new(file)).expect("demux");
    let info = demuxer.info().clone();
    let mut frames = Vec::new();
    while let Some(frame) = demuxer.next_frame().expect("frame") {
        frames.push(frame);
    }
    (info, frames)
}

/// Frames through the scheduler, polled at ever later times until drained; returns packets.
fn schedule(video: Codec, info: &media::container::TrackInfo, frames: Vec<Frame>) -> u64 {
    let mut s = Scheduler::new(SchedulerConfig {
        video_ssrc: 1,
        audio_ssrc: 2,
        mtu: 1200,
        payload_types: vec![(video, 96), (Codec::Opus, 111)],
        initial_video_seq: 1,
        initial_audio_seq: 1,
        initial_video_ts: 1,
        initial_audio_ts: 1,
    });
    s.start_clip("bench".into(), info).expect("clip");
    let mut frames = frames.into_iter();
    let mut packets = 0u64;
    let mut ended = false;
    let mut now = 0u64;
    // Bounded: the fixture is 4 s; step 10 ms up to 60 s of media time.
    for _ in 0..6000 {
        while s.wants_more() {
            match frames.next() {
                Some(f) => s.push_frame(f),
                None => {
                    if !ended {
                        s.end_clip();
                        ended = true;
                    }
                    break;
                }
            }
        }
        while let Some(out) = s.poll(now) {
            if let Output::Packet { packet, .. } = out {
                packets += 1;
                black_box(packet);
            }
        }
        if ended && s.next_deadline().is_none() {
            break;
        }
        now += 10_000;
    }
    packets
}

fn benches(c: &mut Criterion) {
    for video in [Codec::Vp8, Codec::H264] {
        let name = if video == Codec::Vp8 { "vp8" } else { "h264" };
        let kind = ContainerKind::for_video(video).expect("container");
        let (v, a) = frames(video);
        let packets = rtp_packets(&v, &a);
        let n_packets = packets.len() as u64;
        let n_frames = (v.len() + a.len()) as u64;
        let (file, written) = record(video, packets.clone());
        let (demuxed, play_packets) = demux_packetize(kind, &file);
        let (info, file_frames) = demux_all(kind, &file);
        let sched_packets = schedule(video, &info, file_frames.clone());
        eprintln!(
            "{name}: {n_frames} frames, {n_packets} RTP packets in; {written} frames recorded, \
             file {} bytes; {demuxed} frames / {play_packets} packets out; scheduler \
             {sched_packets} packets",
            file.len()
        );

        let mut g = c.benchmark_group(format!("record/{name}"));
        for (unit, n) in [("per_packet", n_packets), ("per_frame", n_frames)] {
            g.throughput(Throughput::Elements(n));
            g.bench_function(unit, |b| {
                b.iter_batched(
                    || packets.clone(),
                    |p| black_box(record(video, p)),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("play/{name}"));
        for (unit, n) in [("per_packet", play_packets), ("per_frame", demuxed)] {
            g.throughput(Throughput::Elements(n));
            g.bench_function(unit, |b| b.iter(|| black_box(demux_packetize(kind, &file))));
        }
        g.finish();

        let mut g = c.benchmark_group(format!("schedule/{name}"));
        for (unit, n) in [
            ("per_packet", sched_packets),
            ("per_frame", file_frames.len() as u64),
        ] {
            g.throughput(Throughput::Elements(n));
            g.bench_function(unit, |b| {
                b.iter_batched(
                    || file_frames.clone(),
                    |f| black_box(schedule(video, &info, f)),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = core;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = benches
}
criterion_main!(core);
