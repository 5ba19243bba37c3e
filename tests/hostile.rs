//! Hostile clients and sessions that go nowhere cannot hurt the server: each test here is one
//! rule of "Hostile clients, slow disks and shutdowns cannot hurt it".
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use app::protocol::{ClientMessage, RecordingState, ServerMessage, SessionDescription};
use common::*;
use futures::SinkExt;
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};
use pion_the_sky::store::MediaSink;
use tokio_tungstenite::tungstenite::Message;

/// Waits until `cond` holds, polling, for at most `limit`; returns whether it held.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

async fn record_offer(video: Codec) -> (Client, SessionDescription) {
    let (client, _) = Client::record(RecordOptions {
        video,
        ..RecordOptions::default()
    })
    .await
    .expect("client");
    let offer = client.offer().await.expect("offer");
    (client, offer)
}

/// Adds `lines` to the first video section of an SDP, after its `a=mid` line.
fn add_video_lines(sdp: &str, lines: &[&str]) -> String {
    let mut out = String::new();
    let mut in_video = false;
    let mut added = false;
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        }
        if in_video && !added && line.starts_with("a=mid:") {
            for l in lines {
                out.push_str(l);
                out.push_str("\r\n");
            }
            added = true;
        }
    }
    assert!(added, "no video section in {sdp}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_with_non_ascii_or_absurd_values_get_an_error_or_an_answer_never_silence() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let (client, offer) = record_offer(Codec::H264).await;
    assert!(
        offer.sdp.contains("profile-level-id=42e01f"),
        "{}",
        offer.sdp
    );
    // (what was done to the offer, whether it must be refused)
    let cases: Vec<(String, bool)> = vec![
        (
            offer
                .sdp
                .replace("profile-level-id=42e01f", "profile-level-id=4€00"),
            true,
        ),
        (
            offer
                .sdp
                .replace("profile-level-id=42e01f", "profile-level-id=42€a"),
            true,
        ),
        (
            offer
                .sdp
                .replace("packetization-mode=1", "packetization-mode=€"),
            true,
        ),
        (offer.sdp.replace("H264/90000", "H264/9€000"), true),
        (
            add_video_lines(
                &offer.sdp,
                &[
                    "a=ssrc:€€€ cname:€",
                    "a=ssrc:99999999999999 msid:€ €",
                    "a=extmap:€ urn:ietf:params:rtp-hdrext:sdes:mid",
                    "a=extmap:99999 urn:€",
                    "a=candidate:€ 1 udp 2130706431 1.2.3.€ 9€ typ host",
                    "a=candidate:1 99999999999 udp 99999999999999 ::::: 99999 typ €",
                    "a=rtpmap:99999999999 VP8/90000",
                    "a=fmtp:€ x=€",
                ],
            ),
            false,
        ),
        (offer.sdp.replace("a=mid:", "a=mid:€"), false),
    ];
    let mut ws = server.ws().await;
    for (sdp, refused) in cases {
        let msg = ClientMessage::Record {
            offer: SessionDescription {
                kind: offer.kind,
                sdp: sdp.clone(),
            },
        };
        send(&mut ws, msg.to_json()).await;
        let started = Instant::now();
        match next_msg(&mut ws, Duration::from_secs(20)).await {
            ServerMessage::Error(e) => assert!(!e.is_empty()),
            ServerMessage::Answer(_) if !refused => {
                eprintln!("answered in {:?}", started.elapsed());
                send(&mut ws, ClientMessage::Stop.to_json()).await;
                let _ = next_msg(&mut ws, Duration::from_secs(20)).await;
                eprintln!("stopped after {:?}", started.elapsed());
            }
            other => panic!("{sdp}: {other:?}"),
        }
    }
    client.close().await;
    // The socket still works: a STOP now is answered, whether the last session has ended
    // ("nothing to stop") or is still ending ("already stopping").
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(5)).await,
        ServerMessage::Error(_)
    ));
    server.shutdown().await;
}

/// A STOP sent again before the session's end arrived is answered too (it used to be taken
/// silently by the ending session, so a client waiting for a reply waited forever).
#[tokio::test]
async fn a_repeated_stop_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let (client, offer) = record_offer(Codec::H264).await;
    let mut ws = server.ws().await;
    send(&mut ws, ClientMessage::Record { offer }.to_json()).await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    let mut errors = Vec::new();
    for _ in 0..2 {
        match next_msg(&mut ws, Duration::from_secs(10)).await {
            ServerMessage::Error(e) => errors.push(e),
            other => panic!("expected ERROR, got {other:?}"),
        }
    }
    assert!(
        errors.iter().any(|e| e.contains("already stopping")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("nothing was recorded")),
        "{errors:?}"
    );
    client.close().await;
    server.shutdown().await;
}

/// A websocket over a socket with a tiny receive buffer, so that a client that does not read
/// fills the server's send path quickly.
async fn tight_ws(addr: std::net::SocketAddr) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/ws"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("websocket connects");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_wedges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let mut flooders = Vec::new();
    for _ in 0..3 {
        let mut ws = tight_ws(server.addr).await;
        let bad = format!(r#"{{"op":"{}"}}"#, "x".repeat(200));
        let mut sent = 0;
        for _ in 0..20_000 {
            match tokio::time::timeout(
                Duration::from_secs(2),
                ws.send(Message::Text(bad.clone().into())),
            )
            .await
            {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        eprintln!("flooder sent {sent} bad messages without reading");
        // Keep the socket (never read it).
        flooders.push(ws);
    }
    // One more runs a recording, then floods: its session ends with the socket and the
    // recording is kept.
    let (recorder, _events) = Client::record(RecordOptions {
        video: Codec::Vp8,
        ..RecordOptions::default()
    })
    .await
    .unwrap();
    let mut ws = tight_ws(server.addr).await;
    send(
        &mut ws,
        ClientMessage::Record {
            offer: recorder.offer().await.unwrap(),
        }
        .to_json(),
    )
    .await;
    let answer = match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Answer(b64) => SessionDescription::decode(&b64).unwrap(),
        other => panic!("{other:?}"),
    };
    recorder.set_answer(&answer).await.unwrap();
    recorder
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let (v, a) = fixture_frames(Codec::Vp8);
    send_media(&recorder, &v[..30], &a[..50]).await;
    let bad = format!(r#"{{"op":"{}"}}"#, "x".repeat(200));
    for _ in 0..20_000 {
        match tokio::time::timeout(
            Duration::from_secs(2),
            ws.send(Message::Text(bad.clone().into())),
        )
        .await
        {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    flooders.push(ws);
    // The server closes each of them while the client is still there.
    let sockets = server.state.sockets_per_ip.clone();
    assert!(
        eventually(Duration::from_secs(20), || sockets.total() == 0).await,
        "{} websockets still open",
        sockets.total()
    );
    let registry = server.state.registry.clone();
    assert!(
        eventually(Duration::from_secs(10), || registry.is_empty()).await,
        "the session behind the flooding socket ended"
    );
    recorder.close().await;
    let kept = server.state.store.list();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].state, RecordingState::Complete, "{kept:?}");
    // And serves everyone else as before.
    let mut ws = server.ws().await;
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(5)).await,
        ServerMessage::Error(e) if e.contains("nothing to stop")
    ));
    drop(flooders);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_after_the_idle_timeout_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &["--ws-idle-timeout=3"]).await;
    let sockets = server.state.sockets_per_ip.clone();
    // A live client: reading makes tungstenite answer the server's pings.
    let mut live = server.ws().await;
    // A dead one: connected, never reads, never answers a ping.
    let silent = tight_ws(server.addr).await;
    assert!(eventually(Duration::from_secs(2), || sockets.total() == 2).await);
    let until = Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    while let Ok(msg) =
        tokio::time::timeout_at(until.into(), futures::StreamExt::next(&mut live)).await
    {
        match msg {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the live socket got {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 6 s");
    assert_eq!(
        sockets.total(),
        1,
        "the silent socket is closed, the live one is not"
    );
    send(&mut live, ClientMessage::Stop.to_json()).await;
    assert!(matches!(
        next_msg(&mut live, Duration::from_secs(5)).await,
        ServerMessage::Error(_)
    ));
    drop(silent);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_go_nowhere_end_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        "vp8",
        &["--connect-timeout=2", "--media-timeout=2"],
    )
    .await;

    // A recorder whose peer never connects (the answer is never applied).
    let (client, offer) = record_offer(Codec::Vp8).await;
    let mut ws = server.ws().await;
    send(&mut ws, ClientMessage::Record { offer }.to_json()).await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    let started = Instant::now();
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("did not come up within 2 s"), "{e}"),
        other => panic!("{other:?}"),
    }
    eprintln!(
        "never-connecting recorder released after {:?}",
        started.elapsed()
    );
    client.close().await;
    assert!(
        server.state.store.list().is_empty(),
        "no empty recording kept"
    );

    // A recorder that connects and sends nothing.
    let (client, mut ws) = start_recording(server.addr, Codec::Vp8).await;
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("no media arrived for 2 s"), "{e}"),
        other => panic!("{other:?}"),
    }
    client.close().await;
    assert!(
        server.state.store.list().is_empty(),
        "no empty recording kept"
    );

    // A viewer whose peer never connects.
    let _ = record_fixture(&server, Codec::Vp8).await;
    let (viewer, _events) = Client::view(ViewOptions::default()).await.unwrap();
    let offer = viewer.offer().await.unwrap();
    let mut ws = server.ws().await;
    send(
        &mut ws,
        ClientMessage::Play {
            offer,
            looping: true,
            recordings: None,
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("did not come up within 2 s"), "{e}"),
        other => panic!("{other:?}"),
    }
    viewer.close().await;
    let registry = server.state.registry.clone();
    assert!(
        eventually(Duration::from_secs(5), || registry.is_empty()).await,
        "every session is gone from the registry"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limits_refuse_what_exceeds_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        "vp8",
        &["--max-sockets-per-ip=2", "--max-sessions-per-ip=1"],
    )
    .await;
    let mut ws1 = server.ws().await;
    let mut ws2 = server.ws().await;
    match tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 429)
        }
        other => panic!("a third websocket: {:?}", other.map(|_| ())),
    }
    let (c1, o1) = record_offer(Codec::Vp8).await;
    let (c2, o2) = record_offer(Codec::Vp8).await;
    send(&mut ws1, ClientMessage::Record { offer: o1 }.to_json()).await;
    assert!(matches!(
        next_msg(&mut ws1, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    send(&mut ws2, ClientMessage::Record { offer: o2 }.to_json()).await;
    match next_msg(&mut ws2, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("--max-sessions-per-ip"), "{e}"),
        other => panic!("{other:?}"),
    }
    for c in [c1, c2] {
        c.close().await;
    }
    server.shutdown().await;
}

/// A sender that sets the marker bit on every packet, all with one timestamp, at line rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_repeating_one_timestamp_do_not_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (client, mut ws) = start_recording(server.addr, Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    let pt = client.payload_type(Codec::Vp8).unwrap();
    let first = media::packetize::payloads(Codec::Vp8, &v[0].data, 1150);
    // Sequence numbers that run up to where `send_media` starts (1000).
    let flood_start = Instant::now();
    for i in 0..20_000u16 {
        let packet = RtpPacket {
            payload_type: pt,
            sequence_number: 1000u16.wrapping_sub(20_000).wrapping_add(i),
            // One frame before the media that follows (send_media starts at 90 000).
            timestamp: 87_000,
            ssrc: client.ssrc(MediaKind::Video),
            marker: true,
            payload: first[0].clone(),
        };
        client.send(MediaKind::Video, &packet).await.unwrap();
    }
    let flood = flood_start.elapsed();
    send_media_shifted(&client, &v, &a, async || {}, |_, _| 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    let meta = loop {
        if let ServerMessage::Recording(meta) = next_msg(&mut ws, Duration::from_secs(10)).await {
            break meta;
        }
    };
    client.close().await;
    assert!(
        meta.video_frames <= v.len() as u64 + 1,
        "{} video frames from {} real ones: {meta:?}",
        meta.video_frames,
        v.len()
    );
    // The flood's one frame stands a frame before the media; the audio that follows the
    // flood starts as late as the flood took (tracks are aligned by arrival, and that offset
    // is not a timestamp gap, so it is not capped), so the duration depends on how fast the
    // flood went: at most the 4 s of media, the flood's time and slack. (Frames piling up
    // would add 33 ms each: minutes.)
    let most = 4_000 + flood.as_millis() as u64 + 700;
    assert!(
        (3500..=most).contains(&meta.duration_ms),
        "{} ms, flood {flood:?}: {meta:?}",
        meta.duration_ms
    );
    assert_eq!(meta.state, RecordingState::Complete);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_jump_becomes_a_short_gap() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    // (what jumps, by how much, from which media time in 90 kHz ticks)
    let cases: [(MediaKind, u32, u64); 2] = [
        (MediaKind::Video, 1 << 31, 180_000),
        (MediaKind::Audio, 1 << 30, 96_000),
    ];
    for (jumping, by, from) in cases {
        let (client, mut ws) = start_recording(server.addr, Codec::Vp8).await;
        let (v, a) = fixture_frames(Codec::Vp8);
        send_media_shifted(
            &client,
            &v,
            &a,
            async || {},
            |kind, ts| {
                if kind == jumping && ts >= from { by } else { 0 }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&mut ws, ClientMessage::Stop.to_json()).await;
        let meta = loop {
            if let ServerMessage::Recording(meta) = next_msg(&mut ws, Duration::from_secs(10)).await
            {
                break meta;
            }
        };
        client.close().await;
        eprintln!("{jumping:?} jump of {by} ticks: {meta:?}");
        assert_eq!(meta.state, RecordingState::Complete);
        // 4 s of media and at most about a second of gap.
        assert!(
            (3500..=5300).contains(&meta.duration_ms),
            "{jumping:?} +{by}: {} ms",
            meta.duration_ms
        );
    }
    server.shutdown().await;
}

/// Corrupts a recorded file after its header, so that it opens but no frame can be read.
fn corrupt_after_header(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    // The first WebM Cluster (or MP4 moof) starts the media; everything before it is header.
    let marker: &[u8] = if path.extension().is_some_and(|e| e == "webm") {
        &[0x1F, 0x43, 0xB6, 0x75]
    } else {
        b"moof"
    };
    let at = bytes
        .windows(4)
        .position(|w| w == marker)
        .expect("media start");
    let end = at + (bytes.len() - at) / 2;
    for b in &mut bytes[at + 4..end] {
        *b = 0xA5;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_cannot_be_read_is_skipped_and_a_pass_of_nothing_ends() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let meta = record_fixture(&server, Codec::Vp8).await;
    let (_, path) = server.state.store.media_path(&meta.id).unwrap();
    corrupt_after_header(&path);
    // Looping: before, a clip that opened but yielded nothing was reopened forever.
    let got = play(
        &server,
        |offer| ClientMessage::Play {
            offer,
            looping: true,
            recordings: None,
        },
        Duration::from_secs(10),
    )
    .await;
    let skipped = got
        .messages
        .iter()
        .filter(|m| matches!(m, ServerMessage::Skipped(_)))
        .count();
    assert!(skipped >= 1, "{:?}", got.messages);
    assert!(
        got.messages.iter().any(|m| matches!(m,
            ServerMessage::Error(e) if e.contains("none of the selected recordings can be played"))),
        "{:?}",
        got.messages
    );
    assert!(
        matches!(got.messages.last(), Some(ServerMessage::State(s)) if s.is_end()),
        "{:?}",
        got.messages
    );
    // No error text names a server path.
    let dir_text = dir.path().display().to_string();
    for m in &got.messages {
        assert!(!format!("{m:?}").contains(&dir_text), "{m:?}");
    }
    server.shutdown().await;
}

/// A sink whose flush and sync take 200 ms once `slow` is set (a disk that stalls).
struct SlowSink {
    inner: Box<dyn MediaSink>,
    slow: Arc<AtomicBool>,
}

impl SlowSink {
    fn stall(&self) {
        if self.slow.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl std::io::Write for SlowSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stall();
        self.inner.flush()
    }
}

impl std::io::Seek for SlowSink {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl MediaSink for SlowSink {
    fn sync(&mut self) -> std::io::Result<()> {
        self.stall();
        self.inner.sync()
    }
}

/// One async worker and one media thread (`--workers 1 --media-threads 1`: the recorder and
/// the viewer share a thread): a recorder on a disk that stalls 200 ms on every flush and sync
/// must not disturb a viewer's pacing.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_disk_does_not_disturb_other_viewers() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(AtomicBool::new(false));
    let server = {
        let slow = slow.clone();
        TestServer::start_with(dir.path(), "vp8", &["--media-threads", "1"], move |inner| {
            Arc::new(WrapSinks::new(inner, move |sink| {
                Box::new(SlowSink {
                    inner: sink,
                    slow: slow.clone(),
                }) as Box<dyn MediaSink>
            }))
        })
        .await
    };
    let _ = record_fixture(&server, Codec::Vp8).await;
    slow.store(true, Ordering::Relaxed);
    let server = Arc::new(server);
    let viewer = {
        let server = server.clone();
        tokio::spawn(async move {
            play(
                &server,
                |offer| ClientMessage::Play {
                    offer,
                    looping: true,
                    recordings: None,
                },
                Duration::from_secs(7),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let messages = record_fixture_messages(&server, Codec::Vp8).await;
    assert!(
        matches!(messages.last(), Some(ServerMessage::Recording(m)) if m.state == RecordingState::Complete),
        "{messages:?}"
    );
    let got = viewer.await.unwrap();
    // Gaps between the ends of consecutive video frames (33 ms apart in the file).
    let ends: Vec<Instant> = got
        .video
        .iter()
        .filter(|(_, p)| p.marker)
        .map(|(t, _)| *t)
        .collect();
    assert!(ends.len() > 100, "{} frames", ends.len());
    let worst = ends
        .windows(2)
        .skip(5)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap();
    eprintln!("worst gap between video frames while the disk stalled: {worst:?}");
    assert!(
        worst < Duration::from_millis(150),
        "a viewer stalled {worst:?} while another session's disk was slow"
    );
    match Arc::try_unwrap(server) {
        Ok(server) => server.shutdown().await,
        Err(_) => panic!("server still shared"),
    }
    let _ = server_store_is_fine(dir.path());
}

fn server_store_is_fine(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}
