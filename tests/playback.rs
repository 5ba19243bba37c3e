//! Playback behaviours: many viewers, looping, one chosen recording, deletes during playback.
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, ServerMessage, SessionPhase};
use common::*;
use media::Codec;

fn now_playing(got: &Received) -> Vec<String> {
    got.messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::NowPlaying(np) => Some(np.id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_loop_choose_and_survive_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let a = record_fixture(&server, Codec::Vp8).await;
    let b = record_fixture(&server, Codec::Vp8).await;

    // Three viewers at once, each paced on its own, each gets both clips in order.
    let viewers = (0..3).map(|_| play_all_once(&server, Duration::from_secs(20)));
    for got in futures::future::join_all(viewers).await {
        assert_eq!(now_playing(&got), vec![a.id.clone(), b.id.clone()]);
        let wall = got
            .video
            .last()
            .unwrap()
            .0
            .duration_since(got.video[0].0)
            .as_secs_f64();
        assert!((wall - 7.967).abs() < 0.16, "viewer took {wall} s");
    }
    // One chosen recording, looping: it starts again after its 4 s.
    let got = play(
        &server,
        |offer| ClientMessage::Play {
            offer,
            looping: true,
            recordings: Some(vec![b.id.clone()]),
        },
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(
        now_playing(&got),
        vec![b.id.clone(), b.id.clone()],
        "{:?}",
        got.messages
    );
    // Deleting the second recording while the first plays: it is skipped, the session ends.
    let store = server.state.store.clone();
    let b_id = b.id.clone();
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        store.delete(&b_id).unwrap();
    });
    let got = play_all_once(&server, Duration::from_secs(15)).await;
    deleter.await.unwrap();
    assert_eq!(now_playing(&got), vec![a.id.clone()]);
    assert!(
        got.messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Skipped(s) if s.id == b.id)),
        "{:?}",
        got.messages
    );
    assert!(
        got.messages
            .iter()
            .any(|m| matches!(m, ServerMessage::State(s) if s.phase == SessionPhase::Finished)),
        "session finished: {:?}",
        got.messages
    );
    server.shutdown().await;
}

/// What one viewer received of a playback played once: video and audio packets with their
/// arrival, and any SKIPPED.
struct Once {
    video: Vec<(std::time::Instant, media::rtp::RtpPacket)>,
    audio: Vec<(std::time::Instant, media::rtp::RtpPacket)>,
    skipped: Vec<app::protocol::Skipped>,
}

/// Plays every recording once to a viewer that offers only `viewer` video (payload type 100).
async fn play_once_as(server: &TestServer, viewer: Codec) -> Once {
    use media::MediaKind;
    use pion_the_sky::rtc::PeerEvent;
    use pion_the_sky::rtc::client::{Client, ViewOptions};
    let (client, mut events) = Client::view(ViewOptions {
        video: vec![(viewer, 100)],
        ..Default::default()
    })
    .await
    .unwrap();
    let offer = client.offer().await.unwrap();
    let mut ws = server.ws().await;
    let play = ClientMessage::Play {
        offer,
        looping: false,
        recordings: None,
    };
    send(&mut ws, play.to_json()).await;
    let answer = match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Answer(b) => app::protocol::SessionDescription::decode(&b).unwrap(),
        other => panic!("{other:?}"),
    };
    client.set_answer(&answer).await.unwrap();
    let mut got = Once {
        video: Vec::new(),
        audio: Vec::new(),
        skipped: Vec::new(),
    };
    let keep = |ev: PeerEvent, got: &mut Once| {
        if let PeerEvent::Rtp {
            kind,
            packet,
            arrival,
        } = ev
        {
            match kind {
                MediaKind::Video => got.video.push((arrival, packet)),
                MediaKind::Audio => got.audio.push((arrival, packet)),
            }
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => keep(ev, &mut got),
                None => break,
            },
            msg = next_msg_or_state(&mut ws, Duration::from_secs(20)) => match msg {
                ServerMessage::State(s) if s.is_end() => break,
                ServerMessage::Skipped(s) => got.skipped.push(s),
                _ => {}
            },
            _ = tokio::time::sleep_until(deadline) => panic!("{viewer:?} viewer: no end"),
        }
    }
    // What was in flight.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        keep(ev, &mut got);
    }
    client.close().await;
    got
}

/// How much later video sits than audio, in ms (the A/V offset a player sees).
fn av_offset_ms(once: &Once) -> f64 {
    let t0 = once.video[0].0.min(once.audio[0].0);
    (median_offset(&once.video, 90_000.0, t0) - median_offset(&once.audio, 48_000.0, t0)) * 1000.0
}

/// A viewer's video packets as frames, and how many of them `codec`'s own decoder makes a
/// 640x480 picture of.
fn decode_video(
    codec: Codec,
    packets: &[(std::time::Instant, media::rtp::RtpPacket)],
    what: &str,
) -> (Vec<media::Frame>, u64) {
    let mut depack = media::depack::Depacketizer::new(codec);
    let mut frames = Vec::new();
    for (_, p) in packets {
        depack.push(p.clone());
        while let Some(f) = depack.pop() {
            frames.push(f);
        }
    }
    depack.flush();
    while let Some(f) = depack.pop() {
        frames.push(f);
    }
    let mut decoder = codec::Decoder::new(codec).unwrap();
    let mut decoded = 0u64;
    for f in &frames {
        let pic = decoder
            .decode(&f.data)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Some(pic) = pic {
            assert_eq!((pic.width, pic.height), (640, 480), "{what}");
            decoded += 1;
        }
    }
    (frames, decoded)
}

/// Viewers that play a clip in the same other codec at once share one transcoder (one
/// encoder per recording and codec, not per viewer), and each gets every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_needing_the_same_transcode_share_one_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let rec = record_fixture(&server, Codec::Vp8).await;
    let (a, b) = tokio::join!(
        play_once_as(&server, Codec::H264),
        play_once_as(&server, Codec::H264)
    );
    assert_eq!(server.state.transcodes.started(), 1, "one encoder for both");
    for (who, got) in [("a", &a), ("b", &b)] {
        assert!(got.skipped.is_empty(), "{who}: {:?}", got.skipped);
        let (frames, decoded) = decode_video(Codec::H264, &got.video, who);
        assert!(frames[0].keyframe, "{who}");
        assert!(
            decoded + 2 >= rec.video_frames,
            "{who}: {decoded} of {} frames",
            rec.video_frames
        );
    }
    // Once they are done the job is gone; a later viewer gets a new one.
    let c = play_once_as(&server, Codec::H264).await;
    assert!(!c.video.is_empty());
    assert_eq!(server.state.transcodes.started(), 2);
    server.shutdown().await;
}

/// A viewer that lacks a recording's video codec gets it transcoded (VP8 <-> H264), decoded
/// here with that codec's own decoder: every frame, in order, at the recorded pace, and with
/// the A/V offset of a viewer that needs no transcoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_the_codec_gets_it_transcoded() {
    for (recorded, viewer, vcodec) in [
        (Codec::H264, Codec::Vp8, "h264"),
        (Codec::Vp8, Codec::H264, "vp8"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), vcodec, &[]).await;
        let rec = record_fixture(&server, recorded).await;
        let direct = play_once_as(&server, recorded).await;
        let got = play_once_as(&server, viewer).await;
        let what = format!("{recorded:?} -> {viewer:?}");
        assert!(got.skipped.is_empty(), "{what}: {:?}", got.skipped);
        assert!(
            !got.video.is_empty() && !got.audio.is_empty(),
            "{what}: no media"
        );
        assert!(
            got.video.iter().all(|(_, p)| p.payload_type == 100),
            "{what}: the viewer's codec"
        );
        let (frames, decoded) = decode_video(viewer, &got.video, &what);
        assert!(frames[0].keyframe, "{what}: starts at a keyframe");
        assert!(
            decoded + 2 >= rec.video_frames,
            "{what}: {decoded} of {} frames decoded",
            rec.video_frames
        );
        // In order; about one 30 fps frame apart on average (the recording's own timestamps
        // carry its sender's jitter, and the files store milliseconds).
        assert!(frames.windows(2).all(|w| w[1].ts > w[0].ts), "{what}");
        let mean = (frames.last().unwrap().ts - frames[0].ts) as f64 / (frames.len() - 1) as f64;
        assert!((2900.0..3100.0).contains(&mean), "{what}: mean step {mean}");
        // Paced like the recording: 1.00 +- 0.01 media seconds per second, for both kinds,
        // over about its length.
        for (kind, p, clock) in [
            ("video", &got.video, 90_000.0),
            ("audio", &got.audio, 48_000.0),
        ] {
            let pace = pace(p, clock);
            eprintln!("{what}: {kind} pace {pace:.4}");
            assert!(
                (0.99..1.01).contains(&pace),
                "{what}: {kind} pace {pace:.3}"
            );
        }
        let span = got.video.last().unwrap().0 - got.video[0].0;
        assert!(
            (rec.duration_ms * 9 / 10..=rec.duration_ms + 1000)
                .contains(&(span.as_millis() as u64)),
            "{what}: played in {span:?}, recorded {} ms",
            rec.duration_ms
        );
        // A/V sync as without transcoding (the issue's +-40 ms).
        let (direct_av, got_av) = (av_offset_ms(&direct), av_offset_ms(&got));
        assert!(
            (got_av - direct_av).abs() <= 40.0,
            "{what}: A/V offset {got_av:.1} ms transcoded, {direct_av:.1} ms direct"
        );
        eprintln!("{what}: A/V offset {got_av:.1} ms transcoded, {direct_av:.1} ms direct");
        server.shutdown().await;
    }
}

/// STOP during playback is confirmed with `STATE stopped` (not left unanswered), which the
/// protocol type counts as the session's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_playback_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    record_fixture(&server, Codec::Vp8).await;
    let (client, _events) = pion_the_sky::rtc::client::Client::view(Default::default())
        .await
        .expect("viewer");
    let offer = client.offer().await.expect("offer");
    let mut ws = server.ws().await;
    let play = ClientMessage::Play {
        offer,
        looping: true,
        recordings: None,
    };
    send(&mut ws, play.to_json()).await;
    let ServerMessage::Answer(answer) = next_msg(&mut ws, Duration::from_secs(10)).await else {
        panic!("no ANSWER");
    };
    let answer = app::protocol::SessionDescription::decode(&answer).unwrap();
    client.set_answer(&answer).await.unwrap();
    loop {
        if let ServerMessage::NowPlaying(_) = next_msg(&mut ws, Duration::from_secs(10)).await {
            break;
        }
    }
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    loop {
        match next_msg_or_state(&mut ws, Duration::from_secs(2)).await {
            ServerMessage::State(s) if s.phase == SessionPhase::Stopped => {
                assert!(s.is_end());
                break;
            }
            ServerMessage::State(s) if s.phase == SessionPhase::Playing => {}
            other => panic!("expected STATE stopped, got {other:?}"),
        }
    }
    client.close().await;
    server.shutdown().await;
}
