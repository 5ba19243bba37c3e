//! WHIP ingest, WHEP playback and live viewing against a real server, with in-process
//! webrtc-rs clients; and every error the protocols define.
#![allow(clippy::type_complexity)] // test tables
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, RecordingState, SessionDescription};
use common::*;
use media::{Codec, MediaKind};
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};

#[tokio::test]
async fn whip_records_either_codec_on_one_server_and_delete_finalizes() {
    let dir = tempfile::tempdir().unwrap();
    // The server's --vcodec is for browsers; WHIP takes what the encoder offers.
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    for (video, container, name) in [
        (Codec::Vp8, "webm", "From%20OBS"),
        (Codec::H264, "mp4", "From%20FFmpeg"),
    ] {
        let path = format!("/whip?name={name}");
        let (client, location, _) = publish(&server, &path, video).await;
        let (v, a) = fixture_frames(video);
        send_media(&client, &v, &a).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, head) = request(&server, "DELETE", &location, vec![], "").await;
        assert_eq!(status, 200, "{head}");
        client.close().await;
        // The reply came after the file was finalized: it is listed, complete.
        let list = recordings(&server).await;
        let meta = list
            .iter()
            .find(|m| m.name == name.replace("%20", " "))
            .unwrap_or_else(|| panic!("{name} not in {list:?}"));
        assert_eq!(meta.state, RecordingState::Complete, "{meta:?}");
        assert_eq!(serde_json::to_value(meta.container).unwrap(), container);
        assert!(
            meta.audio_frames > 150 && meta.video_frames > 100,
            "{meta:?}"
        );
        assert!(
            (3500..=4600).contains(&meta.duration_ms),
            "duration {} ms",
            meta.duration_ms
        );
        // The session is gone: a second DELETE finds nothing.
        let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
        assert_eq!(status, 404);
    }
    let probe_dir = dir.path().to_owned();
    for meta in recordings(&server).await {
        let ext = serde_json::to_value(meta.container).unwrap();
        let file = probe_dir.join(format!("{}.{}", meta.id, ext.as_str().unwrap()));
        if let Some((duration, errors)) = ffprobe(&file) {
            assert!(
                (3.5..4.7).contains(&duration),
                "{}: {duration}",
                file.display()
            );
            assert!(errors.is_empty(), "{}: {errors}", file.display());
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn whep_plays_one_recording_or_all_and_delete_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let vp8 = record_fixture(&server, Codec::Vp8).await;
    // One recording plays once by default: its session ends by itself, its URL is gone.
    let (client, mut events, location) = view(&server, &format!("/whep/{}", vp8.id))
        .await
        .expect("201");
    let packets = video_packets(&mut events, usize::MAX, Duration::from_secs(12)).await;
    let frames = packets.iter().filter(|p| p.marker).count() as u64;
    assert!(
        (vp8.video_frames - 2..=vp8.video_frames).contains(&frames),
        "{frames} frames of {} played once",
        vp8.video_frames
    );
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 404, "the playback ended by itself");
    client.close().await;
    for path in [format!("/whep/{}?loop=true", vp8.id), "/whep".to_owned()] {
        let (client, mut events, location) = view(&server, &path).await.expect("201");
        let packets = video_packets(&mut events, 60, Duration::from_secs(10)).await;
        assert_eq!(packets.len(), 60, "{path}: video arrives");
        // In order, contiguous.
        for w in packets.windows(2) {
            assert_eq!(w[1].sequence_number, w[0].sequence_number.wrapping_add(1));
        }
        let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
        assert_eq!(status, 200, "{path}");
        let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
        assert_eq!(status, 404, "{path}: a second DELETE");
        client.close().await;
    }
    // A viewer's session is not a WHIP session, nor the other way round.
    let (client, _events, location) = view(&server, "/whep").await.expect("201");
    let id = location.rsplit('/').next().unwrap();
    let (status, _) = request(&server, "DELETE", &format!("/whip/{id}"), vec![], "").await;
    assert_eq!(status, 404);
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn live_viewers_get_the_recorders_packets_rewritten_and_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let (publisher, location, _) = publish(&server, "/whip", Codec::H264).await;
    let session = location.rsplit('/').next().unwrap().to_owned();

    // One viewer over WHEP, one over /ws PLAY with "live".
    let (whep, mut whep_events, whep_location) = view(&server, &format!("/whep/live/{session}"))
        .await
        .expect("201");
    let (ws_viewer, mut ws_events) = Client::view(ViewOptions::default()).await.unwrap();
    let mut ws = server.ws().await;
    let offer = ws_viewer.offer().await.unwrap();
    send(
        &mut ws,
        ClientMessage::Watch {
            offer,
            live: session.clone(),
        }
        .to_json(),
    )
    .await;
    let answer_b64 = match next_msg(&mut ws, Duration::from_secs(10)).await {
        app::protocol::ServerMessage::Answer(b64) => b64,
        other => panic!("expected ANSWER, got {other:?}"),
    };
    ws_viewer
        .set_answer(&SessionDescription::decode(&answer_b64).unwrap())
        .await
        .unwrap();
    ws_viewer
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    // Both are subscribed once their connections are up on the server's side too.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (v, a) = fixture_frames(Codec::H264);
    let sent_video_frames = v.len();
    let sender = async {
        send_media(&publisher, &v, &a).await;
    };
    let whep_rx = video_packets(&mut whep_events, usize::MAX, Duration::from_secs(6));
    let ws_rx = video_packets(&mut ws_events, usize::MAX, Duration::from_secs(6));
    let ((), whep_got, ws_got) = tokio::join!(sender, whep_rx, ws_rx);
    for (who, got, client) in [("whep", &whep_got, &whep), ("ws", &ws_got, &ws_viewer)] {
        let frames = got.iter().filter(|p| p.marker).count();
        assert_eq!(frames, sent_video_frames, "{who}: every frame, live");
        // The viewer's own SSRC and payload type; contiguous sequence numbers from a start
        // of the server's choosing.
        let pt = client.payload_type(Codec::H264).unwrap();
        assert!(
            got.iter().all(|p| p.payload_type == pt),
            "{who}: payload type"
        );
        assert!(
            got.iter()
                .all(|p| p.ssrc == got[0].ssrc && p.ssrc != publisher.ssrc(MediaKind::Video)),
            "{who}: SSRC rewritten"
        );
        for w in got.windows(2) {
            assert_eq!(
                w[1].sequence_number,
                w[0].sequence_number.wrapping_add(1),
                "{who}"
            );
        }
        // It starts with the keyframe.
        assert!(
            media::forward::starts_keyframe(Codec::H264, &got[0].payload),
            "{who}"
        );
    }
    assert_ne!(whep_got[0].sequence_number, ws_got[0].sequence_number);

    // The sessions API lists the live viewers as playbacks of the recording being made.
    let (status, _, body) = http_async(
        server.addr,
        "GET",
        "/api/sessions".into(),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    let sessions: Vec<app::protocol::SessionInfo> = serde_json::from_slice(&body).unwrap();
    assert_eq!(sessions.len(), 3, "{sessions:?}");

    // The recording ends: its viewers' sessions end too.
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    let ended = async {
        loop {
            match next_msg_or_state(&mut ws, Duration::from_secs(10)).await {
                app::protocol::ServerMessage::State(s) if s.is_end() => return s,
                _ => {}
            }
        }
    };
    let last = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("ws viewer ends");
    assert_eq!(last.phase, app::protocol::SessionPhase::Finished);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server.state.resources.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "WHEP viewer session left over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = request(&server, "DELETE", &whep_location, vec![], "").await;
    assert_eq!(status, 404, "the live viewer ended with the recording");
    for c in [&publisher, &whep, &ws_viewer] {
        c.close().await;
    }
    server.shutdown().await;
}

/// Every packet of both kinds, with its arrival, until `limit` passes.
async fn media_packets(
    events: &mut tokio::sync::mpsc::Receiver<pion_the_sky::rtc::PeerEvent>,
    limit: Duration,
) -> (
    Vec<(std::time::Instant, media::rtp::RtpPacket)>,
    Vec<(std::time::Instant, media::rtp::RtpPacket)>,
) {
    use pion_the_sky::rtc::PeerEvent;
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let PeerEvent::Rtp {
            kind,
            packet,
            arrival,
        } = ev
        {
            match kind {
                MediaKind::Video => video.push((arrival, packet)),
                MediaKind::Audio => audio.push((arrival, packet)),
            }
        }
    }
    (video, audio)
}

/// A live viewer whose browser lacks the recording's codec watches it transcoded: two
/// H264-only viewers of a VP8 push share one transcoder and decode every frame, with the
/// A/V offset and pace of a viewer watching the same push untranscoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_viewers_without_the_codec_watch_it_transcoded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (publisher, location, _) = publish(&server, "/whip", Codec::Vp8).await;
    let session = location.rsplit('/').next().unwrap().to_owned();
    let h264_only = || ViewOptions {
        video: vec![(Codec::H264, 102)],
        ..ViewOptions::default()
    };
    let path = format!("/whep/live/{session}");
    let (a, mut a_events, _) = view_with(&server, &path, h264_only()).await.expect("201");
    let (b, mut b_events, _) = view_with(&server, &path, h264_only()).await.expect("201");
    let (d, mut d_events, _) = view(&server, &path).await.expect("201");
    // All are subscribed once the server's side of their connections is up: the recorder
    // has the transcoder and the direct viewer.
    let channel = server.state.live.find(&session).expect("live");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while channel.transcoders() == 0 || channel.viewers() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "viewers subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(channel.transcoders(), 1, "one transcoder for both viewers");
    assert_eq!(channel.viewers(), 2, "the transcoder and the direct viewer");
    let (v, a_frames) = fixture_frames(Codec::Vp8);
    let sent = v.len();
    let sender = async {
        send_media(&publisher, &v, &a_frames).await;
    };
    let limit = Duration::from_secs(7);
    let ((), a_got, b_got, d_got) = tokio::join!(
        sender,
        media_packets(&mut a_events, limit),
        media_packets(&mut b_events, limit),
        media_packets(&mut d_events, limit)
    );
    for (who, (video, _)) in [("a", &a_got), ("b", &b_got)] {
        assert!(
            video.iter().all(|(_, p)| p.payload_type == 102),
            "{who}: H264's PT"
        );
        let mut depack = media::depack::Depacketizer::new(Codec::H264);
        let mut decoder = codec::Decoder::new(Codec::H264).unwrap();
        let mut decoded = 0;
        for (_, p) in video {
            depack.push(p.clone());
            while let Some(f) = depack.pop() {
                if decoded == 0 {
                    assert!(f.keyframe, "{who}: starts at a keyframe");
                }
                let pic = decoder.decode(&f.data).unwrap().expect("a picture");
                assert_eq!((pic.width, pic.height), (640, 480));
                decoded += 1;
            }
        }
        // Every frame but possibly the last (the depacketizer holds it until the next).
        assert!(decoded + 1 >= sent, "{who}: {decoded} of {sent} frames");
    }
    // A/V sync and pace as for the direct viewer (the issue's +-40 ms and 0.01).
    type Packets = Vec<(std::time::Instant, media::rtp::RtpPacket)>;
    let av = |(video, audio): &(Packets, Packets)| {
        let t0 = video[0].0.min(audio[0].0);
        (median_offset(video, 90_000.0, t0) - median_offset(audio, 48_000.0, t0)) * 1000.0
    };
    let (direct_av, got_av) = (av(&d_got), av(&a_got));
    eprintln!("live A/V offset {got_av:.1} ms transcoded, {direct_av:.1} ms direct");
    assert!(
        (got_av - direct_av).abs() <= 40.0,
        "A/V offset {got_av:.1} ms transcoded, {direct_av:.1} ms direct"
    );
    let (direct_pace, got_pace) = (pace(&d_got.0, 90_000.0), pace(&a_got.0, 90_000.0));
    eprintln!("live video pace {got_pace:.4} transcoded, {direct_pace:.4} direct");
    assert!(
        (got_pace - direct_pace).abs() <= 0.01,
        "{got_pace} vs {direct_pace}"
    );
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    for c in [&publisher, &a, &b, &d] {
        c.close().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_get_the_rfc_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let offer = recorder(Codec::Vp8).await.offer().await.unwrap().sdp;
    let audio_only: String = offer
        .split("m=")
        .filter(|s| !s.starts_with("video"))
        .collect::<Vec<_>>()
        .join("m=");
    let theora = offer.replace("VP8/90000", "theora/90000");
    let no_pm = recorder(Codec::H264)
        .await
        .offer()
        .await
        .unwrap()
        .sdp
        .replace("packetization-mode=1", "packetization-mode=0");
    let cases: Vec<(&str, &str, Vec<(&'static str, &'static str)>, String, u16)> = vec![
        ("no content type", "/whip", vec![], offer.clone(), 415),
        (
            "json",
            "/whip",
            vec![("Content-Type", "application/json")],
            offer.clone(),
            415,
        ),
        ("not sdp", "/whip", vec![SDP], "hello".into(), 400),
        (
            "broken sdp",
            "/whip",
            vec![SDP],
            "v=0\r\nm=video x\r\n".into(),
            400,
        ),
        ("no video", "/whip", vec![SDP], audio_only.clone(), 422),
        (
            "no codec we record",
            "/whip",
            vec![SDP],
            theora.clone(),
            422,
        ),
        ("h264 mode 0 only", "/whip", vec![SDP], no_pm, 422),
        ("empty name", "/whip?name=", vec![SDP], offer.clone(), 400),
        ("no recordings yet", "/whep", vec![SDP], offer.clone(), 404),
        (
            "unknown recording",
            "/whep/20260101-nope",
            vec![SDP],
            offer.clone(),
            404,
        ),
        (
            "bad loop flag",
            "/whep?loop=maybe",
            vec![SDP],
            offer.clone(),
            400,
        ),
        (
            "nothing live",
            "/whep/live/nope",
            vec![SDP],
            offer.clone(),
            404,
        ),
    ];
    for (name, path, headers, body, want) in cases {
        let (status, head, text) = post(&server, path, headers, body).await;
        assert_eq!(status, want, "{name}: {head}\n{text}");
        assert!(!text.trim().is_empty(), "{name}: the error says why");
    }
    for (method, path) in [
        ("DELETE", "/whip/nope"),
        ("DELETE", "/whep/session/nope"),
        ("PATCH", "/whip/nope"),
    ] {
        let (status, _) = request(&server, method, path, vec![FRAG], "").await;
        assert_eq!(status, 404, "{method} {path}");
    }
    // Nothing was left behind by the refusals.
    assert!(recordings(&server).await.is_empty());
    assert!(server.state.resources.is_empty());
    assert_eq!(server.state.registry.len(), 0);

    // PATCH on a live session: trickle is taken, restarts and stale fragments are not.
    let (client, location, etag) = publish(&server, "/whip", Codec::Vp8).await;
    let ufrag = client
        .offer()
        .await
        .unwrap()
        .sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_owned))
        .unwrap();
    let candidate = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
    let etag: &'static str = Box::leak(etag.into_boxed_str());
    let own_ufrag = format!("a=ice-ufrag:{ufrag}\r\n{candidate}");
    let patches: Vec<(&str, Vec<(&'static str, &'static str)>, String, u16)> = vec![
        (
            "trickle",
            vec![FRAG, ("If-Match", etag)],
            candidate.into(),
            204,
        ),
        ("trickle with its ufrag", vec![FRAG], own_ufrag, 204),
        (
            "end of candidates",
            vec![FRAG, ("If-Match", etag)],
            "a=end-of-candidates\r\n".into(),
            204,
        ),
        ("wrong content type", vec![SDP], candidate.into(), 415),
        (
            "stale etag",
            vec![FRAG, ("If-Match", "\"0000\"")],
            candidate.into(),
            412,
        ),
        (
            "ice restart",
            vec![FRAG, ("If-Match", "*")],
            "a=ice-ufrag:new1\r\na=ice-pwd:newpasswordnewpassword12\r\n".into(),
            422,
        ),
        (
            "new credentials",
            vec![FRAG],
            "a=ice-ufrag:new1\r\na=ice-pwd:newpasswordnewpassword12\r\n".into(),
            422,
        ),
        ("garbage", vec![FRAG], "hello".into(), 400),
    ];
    for (name, headers, body, want) in patches {
        let (status, head) = request(&server, "PATCH", &location, headers, &body).await;
        assert_eq!(status, want, "{name}: {head}");
    }
    // OPTIONS: what each URL takes; CORS only for allowed origins.
    let (status, head) = request(&server, "OPTIONS", "/whip", vec![], "").await;
    assert_eq!(status, 204);
    assert_eq!(
        header(&head, "accept-post").as_deref(),
        Some("application/sdp")
    );
    let (_, head) = request(&server, "OPTIONS", &location, vec![], "").await;
    assert_eq!(
        header(&head, "allow").as_deref(),
        Some("OPTIONS, PATCH, DELETE")
    );
    let (_, head) = request(
        &server,
        "OPTIONS",
        "/whep",
        vec![("Origin", "https://elsewhere.example")],
        "",
    )
    .await;
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn whip_needs_the_token_and_a_full_server_says_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        "h264",
        &[
            "--token=s3cret",
            "--trust-loopback=false",
            "--max-sessions=1",
        ],
    )
    .await;
    let offer = recorder(Codec::Vp8).await.offer().await.unwrap().sdp;
    for (name, headers, want) in [
        ("no token", vec![SDP], 401),
        (
            "wrong token",
            vec![SDP, ("Authorization", "Bearer nope")],
            401,
        ),
    ] {
        let (status, head, _) = post(&server, "/whip", headers, offer.clone()).await;
        assert_eq!(status, want, "{name}: {head}");
        assert!(header(&head, "www-authenticate").is_some(), "{name}");
    }
    let (client, _) = Client::record(RecordOptions::default()).await.unwrap();
    let offer = client.offer().await.unwrap().sdp;
    let auth = ("Authorization", "Bearer s3cret");
    let (status, head, body) = post(&server, "/whip", vec![SDP, auth], offer).await;
    assert_eq!(status, 201, "{head}\n{body}");
    let location = header(&head, "location").unwrap();
    // Full (--max-sessions=1): 503 and when to come back.
    let other = recorder(Codec::Vp8).await.offer().await.unwrap().sdp;
    let (status, head, _) = post(&server, "/whip", vec![SDP, auth], other).await;
    assert_eq!(status, 503, "{head}");
    assert_eq!(header(&head, "retry-after").as_deref(), Some("5"));
    // Ending a session is a write too.
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 401);
    let (status, _) = request(&server, "DELETE", &location, vec![auth], "").await;
    assert_eq!(status, 200);
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_whep_session_is_ended_only_through_its_own_url_and_cors_reaches_allowed_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        "vp8",
        &["--allow-origin=https://player.example"],
    )
    .await;
    let vp8 = record_fixture(&server, Codec::Vp8).await;
    let (client, mut events, location) = view(&server, &format!("/whep/{}", vp8.id))
        .await
        .expect("201");
    // Readers see session ids in /api/sessions; they do not name the WHEP resource.
    let (_, _, body) = http_async(
        server.addr,
        "GET",
        "/api/sessions".into(),
        vec![],
        String::new(),
    )
    .await;
    let sessions: Vec<app::protocol::SessionInfo> = serde_json::from_slice(&body).unwrap();
    assert_eq!(sessions.len(), 1);
    let key = location.rsplit('/').next().unwrap();
    assert_ne!(key, sessions[0].id);
    assert!(key.len() >= 32, "an unguessable key: {key}");
    let (status, _) = request(
        &server,
        "DELETE",
        &format!("/whep/session/{}", sessions[0].id),
        vec![],
        "",
    )
    .await;
    assert_eq!(status, 404);
    // Trickle to a playback is taken too.
    let candidate = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let (status, head) = request(&server, "PATCH", &location, vec![FRAG], candidate).await;
    assert_eq!(status, 204, "{head}");
    assert!(
        !video_packets(&mut events, 10, Duration::from_secs(10))
            .await
            .is_empty()
    );
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    client.close().await;

    // An allowed page reads answers and errors alike (and the headers it needs); another does not.
    let allowed = ("Origin", "https://player.example");
    for (headers, body, want) in [
        (vec![allowed], "v=0\r\n".to_owned(), 415),
        (vec![allowed, SDP], "hello".to_owned(), 400),
    ] {
        let (status, head, _) = post(&server, "/whep", headers, body).await;
        assert_eq!(status, want);
        assert_eq!(
            header(&head, "access-control-allow-origin").as_deref(),
            Some("https://player.example"),
            "{head}"
        );
        assert!(
            header(&head, "access-control-expose-headers")
                .unwrap()
                .contains("Location")
        );
    }
    let (status, head) = request(
        &server,
        "OPTIONS",
        "/whep",
        vec![
            allowed,
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, authorization",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        header(&head, "access-control-allow-origin").as_deref(),
        Some("https://player.example")
    );
    assert!(
        header(&head, "access-control-allow-headers")
            .unwrap()
            .contains("Authorization")
    );
    let (_, head, _) = post(
        &server,
        "/whep",
        vec![("Origin", "https://evil.example"), SDP],
        "hello".into(),
    )
    .await;
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    server.shutdown().await;
}
