//! Record the committed fixtures through the real `/ws` protocol with in-process webrtc-rs
//! clients on loopback, then play them back, checking what users care about: durations,
//! frame counts, audio, order, continuity and pacing.
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, RecordingState, ServerMessage};
use common::*;
use media::Codec;

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

fn check_recording(
    server: &TestServer,
    meta: &app::protocol::RecordingMeta,
    codec: &str,
    container: &str,
) {
    eprintln!("recorded: {meta:?}");
    assert_eq!(meta.state, RecordingState::Complete, "{meta:?}");
    assert_eq!(
        meta.video_codec
            .map(|c| c.label().to_ascii_lowercase())
            .as_deref(),
        Some(codec)
    );
    assert_eq!(meta.container.extension(), container);
    assert!(
        within(meta.duration_ms as f64, 4000.0, 0.03),
        "duration {} ms",
        meta.duration_ms
    );
    assert_eq!(meta.video_frames, 120, "every fixture frame is stored");
    assert!(meta.audio, "audio is recorded");
    let audio_sent = fixture_frames(Codec::Vp8).1.len() as u64;
    assert_eq!(meta.audio_frames, audio_sent, "every audio frame is stored");
    assert_eq!((meta.width, meta.height), (640, 480));
    let (_, path) = server.state.store.media_path(&meta.id).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), meta.bytes);
    // Audio and video on one timeline: the fixture's tracks both start at 0 and were sent
    // together, so the stored tracks must start within 40 ms of each other.
    let kind = if container == "mp4" {
        media::container::ContainerKind::Mp4
    } else {
        media::container::ContainerKind::Webm
    };
    let mut demux =
        media::container::Demuxer::open(kind, std::fs::File::open(&path).unwrap()).unwrap();
    let (mut first_video, mut first_audio) = (None, None);
    while let Some(f) = demux.next_frame().unwrap() {
        let ms = f.ts * 1000 / u64::from(f.codec.clock_rate());
        match f.codec.kind() {
            media::MediaKind::Video => {
                first_video.get_or_insert(ms);
            }
            media::MediaKind::Audio => {
                first_audio.get_or_insert(ms);
            }
        }
    }
    let offset = first_video.unwrap() as i64 - first_audio.unwrap() as i64;
    assert!(offset.abs() <= 40, "A/V offset {offset} ms");
    match ffprobe(&path) {
        Some((duration, errors)) => {
            assert!(
                errors.is_empty(),
                "ffprobe complains about {}: {errors}",
                path.display()
            );
            assert!(within(duration, 4.0, 0.03), "ffprobe duration {duration}");
        }
        None => eprintln!("note: ffprobe not installed; skipping the ffprobe check"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_both_codecs_then_plays_them_in_order_with_continuity() {
    let dir = tempfile::tempdir().unwrap();

    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let vp8 = record_fixture(&server, Codec::Vp8).await;
    check_recording(&server, &vp8, "vp8", "webm");
    server.shutdown().await;

    // A server started under h264 still plays the VP8 recording (the store reloads).
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let h264 = record_fixture(&server, Codec::H264).await;
    check_recording(&server, &h264, "h264", "mp4");
    let listed: Vec<String> = server
        .state
        .store
        .list()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        listed,
        vec![vp8.id.clone(), h264.id.clone()],
        "oldest first"
    );

    let got = play_all_once(&server, Duration::from_secs(20)).await;

    // Now-playing walks through both clips in order.
    let playing: Vec<(String, usize, usize)> = got
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::NowPlaying(np) => Some((np.id.clone(), np.index, np.count)),
            _ => None,
        })
        .collect();
    assert_eq!(
        playing,
        vec![(vp8.id.clone(), 0, 2), (h264.id.clone(), 1, 2)],
        "{:?}",
        got.messages
    );

    // One continuous video stream: one SSRC, no sequence gaps, timestamps never go back.
    let video = &got.video;
    assert!(!video.is_empty(), "video arrived");
    assert!(video.iter().all(|(_, p)| p.ssrc == video[0].1.ssrc));
    let mut seqs: Vec<u16> = video.iter().map(|(_, p)| p.sequence_number).collect();
    seqs.sort_by_key(|s| s.wrapping_sub(seqs_first(video)));
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0].wrapping_add(1), "no sequence gaps");
    }
    let mut by_seq: Vec<&media::rtp::RtpPacket> = video.iter().map(|(_, p)| p).collect();
    by_seq.sort_by_key(|p| p.sequence_number.wrapping_sub(seqs_first(video)));
    for pair in by_seq.windows(2) {
        let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
        assert!(
            step < 90_000,
            "timestamps increase across clips (step {step})"
        );
    }

    // The payload type switches from VP8 to H264 at the clip boundary; each clip lasts its
    // recorded length in RTP time.
    let vp8_pt = 96;
    let h264_pt = 102;
    let span = |pt: u8| {
        let ts: Vec<u32> = by_seq
            .iter()
            .filter(|p| p.payload_type == pt)
            .map(|p| p.timestamp)
            .collect();
        assert!(!ts.is_empty(), "packets with PT {pt}");
        (ts[ts.len() - 1].wrapping_sub(ts[0]) as f64 + 3000.0) / 90_000.0
    };
    assert!(
        within(span(vp8_pt), 4.0, 0.02),
        "VP8 clip lasts {} s",
        span(vp8_pt)
    );
    assert!(
        within(span(h264_pt), 4.0, 0.02),
        "H264 clip lasts {} s",
        span(h264_pt)
    );
    let first_h264 = by_seq
        .iter()
        .position(|p| p.payload_type == h264_pt)
        .unwrap();
    assert!(
        by_seq[..first_h264]
            .iter()
            .all(|p| p.payload_type == vp8_pt),
        "VP8 clip first, then H264"
    );

    // Paced by the timestamps: 8 s of media take 8 s of wall time.
    let wall = video
        .last()
        .unwrap()
        .0
        .duration_since(video[0].0)
        .as_secs_f64();
    eprintln!("playback: {wall:.4} s of wall time for 7.967 s of media");
    assert!(
        within(wall, 7.967, 0.01),
        "playback took {wall} s of wall time"
    );

    // Audio came too, about 50 packets a second for 8 s.
    assert!(
        (380..=410).contains(&got.audio.len()),
        "audio packets {}",
        got.audio.len()
    );
    server.shutdown().await;
}

fn seqs_first(video: &[(std::time::Instant, media::rtp::RtpPacket)]) -> u16 {
    // The first packet sent carries the lowest sequence number of the session (modulo wrap):
    // the earliest arrival is a good enough anchor.
    video
        .iter()
        .min_by_key(|(t, _)| *t)
        .map(|(_, p)| p.sequence_number)
        .unwrap_or(0)
}

/// A server stopped right after a recording finished has finished with it: its poster, made
/// off the session's task, is done too, and the data directory is free for the next server at
/// once, which lists the recording (before, the poster task could still hold the directory's
/// lock when `serve` returned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_lets_go_of_its_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), "vp8", &[]).await;
    for round in 0..3 {
        let meta = record_fixture(&server, Codec::Vp8).await;
        server.shutdown().await;
        server = TestServer::try_start(dir.path(), "vp8", &[])
            .await
            .unwrap_or_else(|e| panic!("round {round}: the directory is still held: {e}"));
        assert!(server.state.store.get(&meta.id).is_ok(), "round {round}");
        assert!(
            matches!(server.state.store.thumbnail(&meta.id), Ok(Some(_))),
            "round {round}: the poster was finished before the shutdown"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_with_no_recordings_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let got = play(
        &server,
        |offer| ClientMessage::Play {
            offer,
            looping: true,
            recordings: None,
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        got.messages.first(),
        Some(&ServerMessage::Error(app::protocol::NO_RECORDINGS.into()))
    );
    server.shutdown().await;
}

/// A browser sends STOP over the websocket while the last frames are still in its pipeline
/// (and UDP and TCP race on the way): what was captured before the click is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_overtaking_the_last_frame_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    for _ in 0..2 {
        let messages =
            record_fixture_messages_stop_at(&server, Codec::Vp8, StopAt::BeforeLastFrame).await;
        let Some(ServerMessage::Recording(meta)) = messages.last() else {
            panic!("{messages:?}")
        };
        assert_eq!(meta.state, RecordingState::Complete, "{meta:?}");
        assert_eq!(meta.video_frames, 120, "{meta:?}");
        // Every audio frame too: the first one (sent with the first keyframe) and the last.
        let audio_sent = fixture_frames(Codec::Vp8).1.len() as u64;
        assert_eq!(meta.audio_frames, audio_sent, "{meta:?}");
    }
    server.shutdown().await;
}

/// `--udp-port N`: recording and playback through one UDP port for every peer (the
/// answers' host candidates all name N), and a second server cannot start on that port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_udp_port_carries_recording_and_playback() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let flag = format!("--udp-port={port}");
    let server = TestServer::start(dir.path(), "vp8", &[&flag]).await;
    let rec = record_fixture(&server, Codec::Vp8).await;
    assert_eq!(rec.state, RecordingState::Complete);
    // A viewer over WHEP: its answer names only the one port.
    let (client, _events) = pion_the_sky::rtc::client::Client::view(Default::default())
        .await
        .unwrap();
    let offer = client.offer().await.unwrap();
    let (status, _, answer) = post(&server, "/whep", vec![SDP], offer.sdp).await;
    assert_eq!(status, 201, "{answer}");
    let ports: std::collections::BTreeSet<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" udp "))
        .filter_map(|l| l.split(' ').nth(5))
        .collect();
    assert_eq!(
        ports.into_iter().collect::<Vec<_>>(),
        vec![port.to_string().as_str()],
        "{answer}"
    );
    client.close().await;
    // Two viewers at once over /ws play the recording through the same port.
    let (a, b) = tokio::join!(
        play_all_once(&server, Duration::from_secs(20)),
        play_all_once(&server, Duration::from_secs(20))
    );
    for got in [&a, &b] {
        let frames = got.video.iter().filter(|(_, p)| p.marker).count() as u64;
        assert!(
            frames + 2 >= rec.video_frames && !got.audio.is_empty(),
            "{frames} of {} frames",
            rec.video_frames
        );
    }
    // The port is the server's: another one is refused at start, with why.
    let other = tempfile::tempdir().unwrap();
    let config = pion_the_sky::config::Config::parse_from_args([
        "pion-the-sky".to_string(),
        "--ice-ip=127.0.0.1".into(),
        flag.clone(),
        format!("--data-dir={}", other.path().display()),
    ])
    .unwrap();
    let addr = "127.0.0.1:1".parse().unwrap();
    let refused = pion_the_sky::AppState::new(
        config,
        pion_the_sky::leptos_options(std::path::Path::new("target/site"), addr),
    );
    let why = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        why.contains(&format!("cannot listen on UDP 127.0.0.1:{port}")),
        "{why}"
    );
    server.shutdown().await;
}
