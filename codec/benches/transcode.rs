//! What transcoding one 640x480 frame costs each way (decode + encode), on the committed
//! fixtures: VP8 -> H264 and H264 -> VP8. At 30 fps a stream needs 30 of these a second; the
//! goal is 4 VP8 -> H264 streams on one core, so under 8.3 ms a frame.
//!
//! `cargo bench -p codec --bench transcode`
use criterion::{Criterion, criterion_group, criterion_main};
use media::Codec;

fn frames(codec: Codec) -> Vec<media::Frame> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/");
    match codec {
        Codec::Vp8 => media::elementary::ivf_vp8(
            &std::fs::read(format!("{dir}vp8_640x480_30fps_4s.ivf")).unwrap(),
        )
        .unwrap(),
        _ => media::elementary::annexb_h264(
            &std::fs::read(format!("{dir}h264_640x480_30fps_4s.h264")).unwrap(),
            30,
        )
        .unwrap(),
    }
}

fn transcode(c: &mut Criterion) {
    for (from, to, name) in [
        (Codec::Vp8, Codec::H264, "vp8_to_h264_640x480"),
        (Codec::H264, Codec::Vp8, "h264_to_vp8_640x480"),
    ] {
        let input = frames(from);
        let mut group = c.benchmark_group("transcode");
        group.sample_size(20);
        // One pass over the 4 s fixture (120 frames) per iteration: decoders and encoders keep
        // their state across frames, as a real stream does.
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut dec = codec::Decoder::new(from).unwrap();
                let mut enc =
                    codec::Encoder::new(to, 640, 480, codec::EncoderConfig::default()).unwrap();
                let mut out = 0usize;
                for (n, f) in input.iter().enumerate() {
                    if let Some(p) = dec.decode(&f.data).unwrap()
                        && let Some(e) = enc.encode(&p, f.ts, n == 0).unwrap()
                    {
                        out += e.data.len();
                    }
                }
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, transcode);
criterion_main!(benches);
