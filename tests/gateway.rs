//! The gateway against an independent RTP stack: Debian's ffmpeg receives a live recording
//! forwarded as plain RTP (reading the server's SDP) and writes it to a file that ffprobe
//! checks; and the forward API's refusals.
#![allow(clippy::type_complexity)] // test tables
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use app::protocol::ForwardInfo;
use common::*;
use media::Codec;
use pion_the_sky::rtc::client::Client;

/// Publishes over WHIP: the connected client and the session id.
async fn publish_session(server: &TestServer, video: Codec) -> (Client, String) {
    let (client, location, _) = publish(server, "/whip", video).await;
    (client, location.rsplit('/').next().unwrap().to_owned())
}

/// An even UDP port with the next three free (video RTP/RTCP, audio RTP/RTCP).
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        if !(1024..=65000).contains(&p) {
            continue;
        }
        let held: Vec<_> = (p..p + 4)
            .filter_map(|q| std::net::UdpSocket::bind(("127.0.0.1", q)).ok())
            .collect();
        if held.len() == 4 {
            return p;
        }
    }
    panic!("no free UDP port block");
}

/// Debian's ffmpeg receiving plain RTP as an SDP describes it, into a file (`-c copy`).
struct Receiver {
    ffmpeg: std::process::Child,
    out: std::path::PathBuf,
}

impl Receiver {
    /// Starts ffmpeg and waits until it listens on the SDP's ports (`port`, `port + 2`).
    async fn start(dir: &std::path::Path, sdp: &str, port: u16) -> Receiver {
        let sdp_path = dir.join("forward.sdp");
        std::fs::write(&sdp_path, sdp).unwrap();
        let out = dir.join("out.mkv");
        let ffmpeg = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-protocol_whitelist",
                "file,udp,rtp",
            ])
            .arg("-i")
            .arg(&sdp_path)
            .args(["-c", "copy", "-y"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // ffmpeg binds its ports (they stop being free).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while [port, port + 2]
            .iter()
            .any(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ffmpeg did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Receiver { ffmpeg, out }
    }

    /// `q` on stdin: ffmpeg finishes the file and exits. Returns ffprobe's streams and
    /// duration (`codec` lines, then the duration in seconds), ffmpeg's errors, and how many
    /// video frames ffprobe decodes (`-c copy` takes the codec from the SDP: decoding shows
    /// the packets really are that codec).
    async fn finish(mut self) -> (String, f64, String, u64) {
        self.ffmpeg.stdin.as_mut().unwrap().write_all(b"q").unwrap();
        let ffmpeg = self.ffmpeg;
        let done = tokio::task::spawn_blocking(move || ffmpeg.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr).to_string();
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name:format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(&self.out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&probe.stdout).to_string();
        let duration: f64 = text
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .unwrap_or(0.0);
        let count = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&self.out)
            .output()
            .unwrap();
        let decoded = String::from_utf8_lossy(&count.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (text, duration, stderr, decoded)
    }
}

#[tokio::test]
async fn ffmpeg_receives_a_forwarded_live_recording() {
    assert!(
        Command::new("ffmpeg").arg("-version").output().is_ok(),
        "this test needs Debian's ffmpeg (./test.sh installs it)"
    );
    // The recording's own codec, and a VP8 recording sent as H264 (transcoded) to a
    // receiver that wants H264.
    for (video, sent) in [
        (Codec::Vp8, None),
        (Codec::H264, None),
        (Codec::Vp8, Some(Codec::H264)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), "vp8", &[]).await;
        let (client, session) = publish_session(&server, video).await;
        let port = free_port_block();
        let codec_field = sent
            .map(|c| format!(r#","codec":"{}""#, c.id()))
            .unwrap_or_default();
        let (status, _, body) = http_async(
            server.addr,
            "POST",
            format!("/api/sessions/{session}/forwards"),
            vec![("Content-Type", "application/json")],
            format!(r#"{{"host":"127.0.0.1","port":{port}{codec_field}}}"#),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let info: ForwardInfo = serde_json::from_slice(&body).unwrap();
        assert_eq!((info.video.port, info.audio.port), (port, port + 2));
        let video_out = sent.unwrap_or(video);
        assert_eq!(info.video.codec, video_out.id());
        let (status, head, sdp) = http_async(
            server.addr,
            "GET",
            info.sdp_url.clone(),
            vec![],
            String::new(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/sdp")
        );
        let receiver = Receiver::start(dir.path(), &String::from_utf8_lossy(&sdp), port).await;
        let (v, a) = fixture_frames(video);
        send_media(&client, &v, &a).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, _, list) = http_async(
            server.addr,
            "GET",
            format!("/api/sessions/{session}/forwards"),
            vec![],
            String::new(),
        )
        .await;
        let list: Vec<ForwardInfo> = serde_json::from_slice(&list).unwrap();
        assert!(list[0].packets > 200, "{list:?}");
        let (text, duration, stderr, decoded) = receiver.finish().await;
        // The fixture's 120 frames, but those before the first keyframe the forward sent.
        assert!(
            (100..=121).contains(&decoded),
            "{video:?} as {video_out:?}: {decoded} frames decode\n{stderr}"
        );
        let want = video_out.id();
        assert!(
            text.contains(want) && text.contains("opus"),
            "{video:?}: {text}\n{stderr}"
        );
        assert!(
            (3.3..4.8).contains(&duration),
            "{video:?}: duration {duration}\n{text}"
        );
        // The recording ends: so does its forward.
        client.close().await;
        let (status, _, _) = http_async(
            server.addr,
            "DELETE",
            format!("/whip/{session}"),
            vec![],
            String::new(),
        )
        .await;
        assert_eq!(status, 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !server.state.forwards.list(&session).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "forward left over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.shutdown().await;
    }
}

/// A playback of stored recordings goes out as plain RTP in one codec (the H264 clip as
/// it is, the VP8 one transcoded), and ffmpeg receives both clips in order; a looping one
/// ends on DELETE; refusals say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_receives_a_forwarded_playback_of_stored_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let first = record_fixture(&server, Codec::H264).await;
    // The VP8 one over WHIP (the /ws recorder takes the server's --vcodec).
    let (client, location, _) = publish(&server, "/whip", Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    send_media(&client, &v, &a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = request(&server, "DELETE", &location, vec![], "").await;
    assert_eq!(status, 200);
    client.close().await;
    let second = recordings(&server)
        .await
        .into_iter()
        .find(|m| m.id != first.id)
        .expect("the VP8 recording");
    let port = free_port_block();
    // The SDP is fixed by the destination and codec: ffmpeg listens before anything is sent.
    let want_sdp = pion_the_sky::gateway::forward::sdp(
        "127.0.0.1".parse().unwrap(),
        Codec::H264,
        port,
        port + 2,
    );
    let receiver = Receiver::start(dir.path(), &want_sdp, port).await;
    let json = ("Content-Type", "application/json");
    let body = format!(
        r#"{{"host":"127.0.0.1","port":{port},"codec":"h264","recordings":["{}","{}"]}}"#,
        first.id, second.id
    );
    let (status, _, reply) = http_async(
        server.addr,
        "POST",
        "/api/forwards".into(),
        vec![json],
        body,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let info: ForwardInfo = serde_json::from_slice(&reply).unwrap();
    assert_eq!((info.video.codec.as_str(), info.video.port), ("h264", port));
    let (status, _, sdp) = http_async(
        server.addr,
        "GET",
        info.sdp_url.clone(),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(
        (status, String::from_utf8_lossy(&sdp)),
        (200, want_sdp.clone().into())
    );
    // Played once: the session ends by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !server.state.registry.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "playback did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.state.forwards.list(&info.session).is_empty());
    let (text, duration, stderr, decoded) = receiver.finish().await;
    // Both clips, 120 frames each, decode as H264 (the VP8 one transcoded).
    assert!(
        (230..=242).contains(&decoded),
        "{decoded} frames decode as H264\n{stderr}"
    );
    assert!(
        text.contains("h264") && text.contains("opus") && !text.contains("vp8"),
        "{text}\n{stderr}"
    );
    let total = (first.duration_ms + second.duration_ms) as f64 / 1000.0;
    assert!(
        (total - 1.0..total + 1.5).contains(&duration),
        "received {duration} s of {total} s\n{text}"
    );

    // A looping playback forward ends on DELETE of the forward.
    let (status, _, reply) = http_async(
        server.addr,
        "POST",
        "/api/forwards".into(),
        vec![json],
        format!(r#"{{"host":"127.0.0.1","port":{port},"loop":true}}"#),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let info: ForwardInfo = serde_json::from_slice(&reply).unwrap();
    assert_eq!(info.video.codec, "h264", "the first clip's codec");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, list) = http_async(
        server.addr,
        "GET",
        format!("/api/sessions/{}/forwards", info.session),
        vec![],
        String::new(),
    )
    .await;
    let list: Vec<ForwardInfo> = serde_json::from_slice(&list).unwrap();
    assert!(list[0].packets > 10, "{list:?}");
    let (status, _, _) = http_async(
        server.addr,
        "DELETE",
        format!("/api/sessions/{}/forwards/{}", info.session, info.id),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server.state.registry.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "DELETE did not end it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases: &[(&str, u16)] = &[
        (r#"{"host":"8.8.8.8","port":5004}"#, 403),
        (r#"{"host":"127.0.0.1","port":5005}"#, 400),
        (r#"{"host":"example.com","port":5004}"#, 400),
        (r#"{"host":"127.0.0.1","port":5004,"codec":"opus"}"#, 400),
        (
            r#"{"host":"127.0.0.1","port":5004,"recordings":["1764000000123-a1b2c3"]}"#,
            404,
        ),
        (
            r#"{"host":"127.0.0.1","port":5004,"recordings":["../etc"]}"#,
            404,
        ),
        (r#"{"host":"127.0.0.1","port":5004,"recordings":[]}"#, 400),
        (r#"{"host":"127.0.0.1"}"#, 400),
    ];
    for (body, want) in cases {
        let (status, _, text) = http_async(
            server.addr,
            "POST",
            "/api/forwards".into(),
            vec![json],
            body.to_string(),
        )
        .await;
        assert_eq!(status, *want, "{body}: {}", String::from_utf8_lossy(&text));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn forwards_go_only_where_allowed_and_refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &["--forward-allow=10.9.0.0/16"]).await;
    let (client, session) = publish_session(&server, Codec::Vp8).await;
    let json = ("Content-Type", "application/json");
    let cases: Vec<(String, String, u16)> = vec![
        (
            session.clone(),
            r#"{"host":"8.8.8.8","port":5004}"#.into(),
            403,
        ),
        (
            session.clone(),
            r#"{"host":"10.8.0.1","port":5004}"#.into(),
            403,
        ),
        (
            session.clone(),
            r#"{"host":"example.com","port":5004}"#.into(),
            400,
        ),
        (
            session.clone(),
            r#"{"host":"127.0.0.1","port":5005}"#.into(),
            400,
        ),
        (
            session.clone(),
            r#"{"host":"127.0.0.1","port":65534}"#.into(),
            400,
        ),
        (session.clone(), r#"{"host":"127.0.0.1"}"#.into(), 400),
        (
            session.clone(),
            r#"{"host":"127.0.0.1","port":5004,"codec":"opus"}"#.into(),
            400,
        ),
        (
            "nope".into(),
            r#"{"host":"127.0.0.1","port":5004}"#.into(),
            404,
        ),
        (
            session.clone(),
            r#"{"host":"10.9.3.4","port":5004}"#.into(),
            201,
        ),
        (
            session.clone(),
            r#"{"host":"127.0.0.1","port":5010}"#.into(),
            201,
        ),
    ];
    for (target, body, want) in cases {
        let (status, _, text) = http_async(
            server.addr,
            "POST",
            format!("/api/sessions/{target}/forwards"),
            vec![json],
            body.clone(),
        )
        .await;
        assert_eq!(status, want, "{body}: {}", String::from_utf8_lossy(&text));
    }
    let list = server.state.forwards.list(&session);
    assert_eq!(list.len(), 2);
    let n = list[1].id;
    for (method, path, want) in [
        (
            "GET",
            format!("/api/sessions/{session}/forwards/999/sdp"),
            404,
        ),
        (
            "DELETE",
            format!("/api/sessions/{session}/forwards/999"),
            404,
        ),
        (
            "DELETE",
            format!("/api/sessions/{session}/forwards/{n}"),
            204,
        ),
        (
            "DELETE",
            format!("/api/sessions/{session}/forwards/{n}"),
            404,
        ),
    ] {
        let (status, _, _) =
            http_async(server.addr, method, path.clone(), vec![], String::new()).await;
        assert_eq!(status, want, "{method} {path}");
    }
    assert_eq!(server.state.forwards.list(&session).len(), 1);
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_forward_target_outside_the_allowlist_stops_the_server_at_start() {
    let config = pion_the_sky::config::Config::parse_from_args(
        [
            "pion-the-sky",
            "--forward-rtp=192.0.2.1:5004",
            "--data-dir=/nonexistent-unused",
        ]
        .map(String::from),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = pion_the_sky::config::Config {
        data_dir: dir.path().to_owned(),
        ..config
    };
    let err = pion_the_sky::AppState::new(
        config,
        pion_the_sky::leptos_options(
            std::path::Path::new("target/site"),
            "127.0.0.1:0".parse().unwrap(),
        ),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("--forward-allow"), "{err}");
}

/// The SDP an existing service would describe its RTP output with.
fn ingest_sdp(video: Codec, port: u16) -> String {
    let video_lines = match video {
        Codec::H264 => "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n",
        _ => "a=rtpmap:96 VP8/90000\r\n",
    };
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=ffmpeg\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video {port} RTP/AVP 96\r\n{video_lines}m=audio {} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n",
        port + 2
    )
}

#[tokio::test]
async fn an_ffmpeg_rtp_stream_is_recorded_watched_live_and_played_back() {
    assert!(
        Command::new("ffmpeg").arg("-version").output().is_ok(),
        "this test needs Debian's ffmpeg (./test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    for video in [Codec::Vp8, Codec::H264] {
        let port = free_port_block();
        let name = format!("ingest-{video:?}");
        let (status, _, body) = http_async(
            server.addr,
            "POST",
            format!("/api/ingest?name={name}"),
            vec![("Content-Type", "application/sdp")],
            ingest_sdp(video, port),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let info: app::protocol::IngestInfo = serde_json::from_slice(&body).unwrap();
        assert_eq!(info.video.port, port);

        // A browser-like viewer watches it live while ffmpeg sends.
        let (viewer, mut viewer_events, _) = view(&server, &format!("/whep/live/{}", info.session))
            .await
            .expect("201");

        let codec_args: &[&str] = match video {
            Codec::H264 => &[
                "-c:v",
                "libx264",
                "-profile:v",
                "baseline",
                "-bf",
                "0",
                "-g",
                "30",
                "-tune",
                "zerolatency",
                "-pix_fmt",
                "yuv420p",
                "-x264-params",
                "repeat-headers=1",
            ],
            _ => &[
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-b:v",
                "1M",
                "-g",
                "30",
            ],
        };
        let mut ffmpeg = Command::new("ffmpeg");
        ffmpeg
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-t",
                "4",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x480:rate=30",
            ])
            .args([
                "-t",
                "4",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
            ])
            .args(["-map", "0:v"])
            .args(codec_args)
            .args(["-payload_type", "96", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{port}"))
            .args(["-map", "1:a", "-c:a", "libopus", "-ac", "2", "-b:a", "64k"])
            .args(["-payload_type", "111", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{}", port + 2))
            .stdin(Stdio::null());
        let live = async {
            let mut frames = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, viewer_events.recv()).await {
                if let pion_the_sky::rtc::PeerEvent::Rtp {
                    kind: media::MediaKind::Video,
                    packet,
                    ..
                } = ev
                    && packet.marker
                {
                    frames += 1;
                }
            }
            frames
        };
        let (sent, live_frames) =
            tokio::join!(tokio::task::spawn_blocking(move || ffmpeg.output()), live);
        let sent = sent.unwrap().unwrap();
        assert!(
            sent.status.success(),
            "ffmpeg: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        assert!(
            live_frames >= 100,
            "{video:?}: the live viewer got {live_frames} frames"
        );
        viewer.close().await;

        // Ending the session finalizes the recording.
        let (status, _, _) = http_async(
            server.addr,
            "DELETE",
            format!("/api/sessions/{}", info.session),
            vec![],
            String::new(),
        )
        .await;
        assert_eq!(status, 202);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let meta = loop {
            if let Some(m) = recordings(&server)
                .await
                .into_iter()
                .find(|m| m.name == name && m.state == app::protocol::RecordingState::Complete)
            {
                break m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not finished"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            meta.video_frames > 100 && meta.audio_frames > 150,
            "{meta:?}"
        );
        assert!((3300..=4700).contains(&meta.duration_ms), "{meta:?}");
        let ext = if video == Codec::H264 { "mp4" } else { "webm" };
        // ffmpeg is here (asserted above), so ffprobe is too.
        let (duration, errors) =
            ffprobe(&dir.path().join(format!("{}.{ext}", meta.id))).expect("ffprobe runs");
        assert!(
            (3.3..4.8).contains(&duration) && errors.is_empty(),
            "{duration} {errors}"
        );
        // And it plays back like any recording.
        let (player, mut player_events, _) = view(&server, &format!("/whep/{}", meta.id))
            .await
            .expect("201");
        let played = video_packets(&mut player_events, 200, Duration::from_secs(10)).await;
        assert_eq!(
            played.len(),
            200,
            "{video:?}: the ingested recording plays back"
        );
        player.close().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ingest_refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let port = free_port_block();
    let held = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let sdp = ("Content-Type", "application/sdp");
    let audio_only = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
    );
    let cases: Vec<(&str, Vec<(&'static str, &'static str)>, String, u16)> = vec![
        ("no content type", vec![], ingest_sdp(Codec::Vp8, port), 415),
        ("not sdp", vec![sdp], "hello".into(), 400),
        ("no video", vec![sdp], audio_only, 422),
        (
            "theora",
            vec![sdp],
            ingest_sdp(Codec::Vp8, port).replace("VP8", "theora"),
            422,
        ),
        ("low port", vec![sdp], ingest_sdp(Codec::Vp8, 80), 400),
        ("port in use", vec![sdp], ingest_sdp(Codec::Vp8, port), 409),
    ];
    for (name, headers, body, want) in cases {
        let (status, _, text) =
            http_async(server.addr, "POST", "/api/ingest".into(), headers, body).await;
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&text));
    }
    drop(held);
    assert_eq!(
        server.state.registry.len(),
        0,
        "refused ingests leave no session"
    );
    let list = server.state.store.list();
    assert!(list.is_empty(), "{list:?}");
    server.shutdown().await;
}
