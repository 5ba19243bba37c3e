//! The JSON API, and crash safety: `kill -9` mid-recording, restart, the recording is there.
mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use app::protocol::{RecordingMeta, RecordingState};
use common::*;
use media::Codec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_serves_ranges_renames_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let meta = record_fixture(&server, Codec::Vp8).await;
    let addr = server.addr;

    let (status, _, body) =
        http_async(addr, "GET", "/api/recordings".into(), vec![], String::new()).await;
    assert_eq!(status, 200);
    let list: Vec<RecordingMeta> = serde_json::from_slice(&body).unwrap();
    assert_eq!(list, vec![meta.clone()]);

    let (status, _, body) = http_async(
        addr,
        "GET",
        format!("/api/recordings/{}", meta.id),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<RecordingMeta>(&body).unwrap().id,
        meta.id
    );

    // The file, whole and in ranges, with the right type.
    let (status, head, body) = http_async(
        addr,
        "GET",
        format!("/api/recordings/{}/file", meta.id),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: video/webm"),
        "{head}"
    );
    assert_eq!(body.len() as u64, meta.bytes);
    assert_eq!(&body[..4], &[0x1a, 0x45, 0xdf, 0xa3], "EBML magic");
    let (status, head, part) = http_async(
        addr,
        "GET",
        format!("/api/recordings/{}/file", meta.id),
        vec![("Range", "bytes=100-199")],
        String::new(),
    )
    .await;
    assert_eq!(status, 206, "{head}");
    assert_eq!(part, body[100..200].to_vec());

    // Bad and unknown ids.
    let cases = [
        ("GET", "/api/recordings/nope".to_string(), 400),
        (
            "GET",
            "/api/recordings/1764000000123-abcdef".to_string(),
            404,
        ),
        (
            "GET",
            "/api/recordings/..%2F..%2Fetc%2Fpasswd/file".to_string(),
            400,
        ),
        (
            "DELETE",
            "/api/recordings/1764000000123-abcdef".to_string(),
            404,
        ),
        (
            "GET",
            "/api/recordings/1764000000123-abcdef/file".to_string(),
            404,
        ),
    ];
    for (method, path, want) in cases {
        let (status, _, body) = http_async(addr, method, path.clone(), vec![], String::new()).await;
        assert_eq!(status, want, "{method} {path}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert!(err["error"].is_string(), "{method} {path}: JSON error body");
    }

    // Rename: good, empty, malformed JSON.
    let path = format!("/api/recordings/{}", meta.id);
    let json = vec![("Content-Type", "application/json")];
    let (status, _, body) = http_async(
        addr,
        "PATCH",
        path.clone(),
        json.clone(),
        r#"{"name":"Holiday"}"#.into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<RecordingMeta>(&body).unwrap().name,
        "Holiday"
    );
    let (status, _, _) = http_async(
        addr,
        "PATCH",
        path.clone(),
        json.clone(),
        r#"{"name":"  "}"#.into(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = http_async(addr, "PATCH", path.clone(), json.clone(), "{".into()).await;
    assert_eq!(status, 400);
    assert_eq!(server.state.store.get(&meta.id).unwrap().name, "Holiday");

    let (status, _, _) = http_async(addr, "DELETE", path.clone(), vec![], String::new()).await;
    assert_eq!(status, 204);
    let (status, _, _) = http_async(addr, "GET", path, vec![], String::new()).await;
    assert_eq!(status, 404);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != pion_the_sky::store::fs::LOCK_FILE)
            .count(),
        0,
        "media and metadata are gone"
    );
    server.shutdown().await;
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_args(data: &std::path::Path, port: u16) -> Vec<String> {
    vec![
        format!("-port={port}"),
        "-vcodec=vp8".into(),
        "--bind=127.0.0.1".into(),
        "--ice-ip=127.0.0.1".into(),
        format!("--data-dir={}", data.display()),
    ]
}

fn spawn_server(data: &std::path::Path, port: u16) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_pion-the-sky"))
        .args(server_args(data, port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_recording_then_restart_keeps_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut proc = spawn_server(dir.path(), port);

    let (client, _ws) = start_recording(addr, Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    send_media(&client, &v[..90], &a[..150]).await; // 3 s
    tokio::time::sleep(Duration::from_millis(200)).await;

    // kill -9: no chance to finalize anything.
    proc.0.kill().unwrap();
    proc.0.wait().unwrap();
    client.close().await;

    let _proc = spawn_server(dir.path(), port);
    let (status, _, body) =
        http_async(addr, "GET", "/api/recordings".into(), vec![], String::new()).await;
    assert_eq!(status, 200);
    let list: Vec<RecordingMeta> = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let meta = &list[0];
    eprintln!("recovered after kill -9: {meta:?}");
    assert_eq!(meta.state, RecordingState::Recovered, "{meta:?}");
    // At most about a second lost.
    assert!(
        meta.duration_ms >= 1900 && meta.duration_ms <= 3100,
        "recovered {} ms",
        meta.duration_ms
    );
    assert!(meta.audio_frames > 0);
    let path = dir.path().join(format!("{}.webm", meta.id));
    if let Some((duration, errors)) = ffprobe(&path) {
        assert!(errors.is_empty(), "ffprobe: {errors}");
        assert!(
            (duration * 1000.0 - meta.duration_ms as f64).abs() < 100.0,
            "ffprobe {duration} s vs {} ms",
            meta.duration_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finalizes_recordings_and_tells_clients_before_exiting() {
    use app::protocol::ServerMessage;
    use pion_the_sky::store::RecordingStore;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut proc = spawn_server(dir.path(), port);

    let (client, mut ws) = start_recording(addr, Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    send_media(&client, &v[..90], &a[..150]).await; // 3 s
    let term = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The client hears how its recording ended, then the socket closes.
    let mut told = None;
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_secs(12), futures::StreamExt::next(&mut ws)).await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg
            && let Ok(ServerMessage::Recording(meta)) = serde_json::from_str(&t)
        {
            told = Some(meta);
        }
    }
    let told = told.expect("RECORDING before the socket closed");
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // After a restart (here: the store opened again) it is complete, not recovered.
    let store = pion_the_sky::store::fs::FsStore::open(dir.path()).unwrap();
    let list = store.list();
    assert_eq!(list.len(), 1, "{list:?}");
    let meta = &list[0];
    assert_eq!(meta.id, told.id);
    assert_eq!(meta.state, RecordingState::Complete, "{meta:?}");
    assert!(
        (2700..=3300).contains(&meta.duration_ms),
        "{} ms",
        meta.duration_ms
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let _first = spawn_server(dir.path(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_pion-the-sky"))
        .args(server_args(dir.path(), free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("already using the data directory"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_api_lists_live_sessions_and_stops_one() {
    use app::protocol::{ServerMessage, SessionInfo, SessionKind};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let addr = server.addr;
    let (client, mut ws) = start_recording(addr, Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    send_media(&client, &v[..60], &a[..100]).await; // 2 s
    // STATE (and the registry's progress) is refreshed every second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (status, _, body) =
        http_async(addr, "GET", "/api/sessions".into(), vec![], String::new()).await;
    assert_eq!(status, 200);
    let sessions: Vec<SessionInfo> = serde_json::from_slice(&body).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(s.kind, SessionKind::Record);
    assert_eq!(s.peer, "127.0.0.1");
    assert!(s.bytes > 0 && s.frames > 0, "{s:?}");
    let recording = s.recording.clone().expect("the recording it writes");

    let (status, _, _) = http_async(
        addr,
        "DELETE",
        format!("/api/sessions/{}", "0123456789abcdef"),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = http_async(
        addr,
        "DELETE",
        format!("/api/sessions/{}", s.id),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 202);
    // The recording is finalized as with STOP, and its client hears of it.
    let meta = loop {
        if let ServerMessage::Recording(meta) = next_msg(&mut ws, Duration::from_secs(10)).await {
            break meta;
        }
    };
    assert_eq!(meta.id, recording);
    assert_eq!(meta.state, RecordingState::Complete);
    assert!(meta.duration_ms >= 1500, "{meta:?}");
    let registry = server.state.registry.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !registry.is_empty() {
        assert!(Instant::now() < deadline, "the session is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, body) = http_async(addr, "GET", "/api/sessions".into(), vec![], String::new()).await;
    assert_eq!(
        serde_json::from_slice::<Vec<SessionInfo>>(&body).unwrap(),
        vec![]
    );
    client.close().await;
    server.shutdown().await;
}

/// The value of one sample line (`name{labels} value`) in a Prometheus text body.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_packets_frames_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let addr = server.addr;
    let metrics = async || {
        let (status, headers, body) =
            http_async(addr, "GET", "/metrics".into(), vec![], String::new()).await;
        assert_eq!(status, 200);
        assert!(headers.contains("openmetrics-text"), "{headers}");
        String::from_utf8(body).unwrap()
    };
    let before = metrics().await;
    assert_eq!(sample(&before, "pion_sessions{kind=\"record\"}"), 0.0);
    assert_eq!(
        sample(&before, "pion_session_starts_total{kind=\"record\"}"),
        0.0
    );

    let meta = record_fixture(&server, Codec::Vp8).await;
    let _ = play_all_once(&server, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = metrics().await;
    let get = |series: &str| sample(&after, series);
    assert_eq!(get("pion_session_starts_total{kind=\"record\"}"), 1.0);
    assert_eq!(
        get("pion_session_ends_total{kind=\"record\",reason=\"stopped\"}"),
        1.0
    );
    assert_eq!(
        get("pion_session_ends_total{kind=\"play\",reason=\"finished\"}"),
        1.0
    );
    assert_eq!(get("pion_sessions{kind=\"record\"}"), 0.0);
    assert_eq!(get("pion_sessions{kind=\"play\"}"), 0.0);
    assert!(get("pion_rtp_packets_total{direction=\"in\",kind=\"video\"}") > 100.0);
    assert!(get("pion_rtp_packets_total{direction=\"in\",kind=\"audio\"}") >= 200.0);
    assert!(get("pion_rtp_packets_total{direction=\"out\",kind=\"video\"}") > 100.0);
    assert_eq!(
        get("pion_frames_recorded_total{kind=\"audio\"}"),
        meta.audio_frames as f64
    );
    assert!(get("pion_frames_played_total{kind=\"video\"}") >= meta.video_frames as f64 - 1.0);
    assert!(get("pion_recording_bytes_written_total") >= meta.bytes as f64);
    assert!(get("pion_plis_sent_total") >= 1.0);
    assert_eq!(get("pion_store_errors_total"), 0.0);
    assert!(after.contains("pion_build_info"), "{after}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_packet_is_nacked_and_counted() {
    use media::MediaKind;
    use media::rtp::RtpPacket;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (client, _ws) = start_recording(server.addr, Codec::Vp8).await;
    let (v, _) = fixture_frames(Codec::Vp8);
    let pt = client.payload_type(Codec::Vp8).unwrap();
    let mut seq = 1000u16;
    for (i, frame) in v.iter().take(60).enumerate() {
        let payloads = media::packetize::payloads(Codec::Vp8, &frame.data, 1150);
        let n = payloads.len();
        for (k, payload) in payloads.into_iter().enumerate() {
            seq = seq.wrapping_add(1);
            // One packet of frame 20 never leaves: the server's NACK generator asks for it.
            if i == 20 && k == 0 {
                continue;
            }
            let packet = RtpPacket {
                payload_type: pt,
                sequence_number: seq,
                timestamp: 90_000u32.wrapping_add(frame.ts as u32),
                ssrc: client.ssrc(MediaKind::Video),
                marker: k + 1 == n,
                payload,
            };
            client.send(MediaKind::Video, &packet).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, body) =
        http_async(server.addr, "GET", "/metrics".into(), vec![], String::new()).await;
    let text = String::from_utf8(body).unwrap();
    let nacks: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pion_nacks_sent_total ")?.parse().ok())
        .unwrap_or_else(|| panic!("no pion_nacks_sent_total in:\n{text}"));
    assert!(nacks >= 1.0, "{nacks} NACKs counted");
    client.close().await;
    server.shutdown().await;
}
