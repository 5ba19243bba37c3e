//! Every bad input gets a clear ERROR and loses nothing.
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, MAX_MESSAGE_BYTES, SdpKind, ServerMessage, SessionDescription};
use common::*;
use media::Codec;
use pion_the_sky::rtc::client::{Client, RecordOptions};

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn record_msg(sdp: &str) -> String {
    ClientMessage::Record {
        offer: SessionDescription {
            kind: SdpKind::Offer,
            sdp: sdp.into(),
        },
    }
    .to_json()
}

const AUDIO_ONLY_SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_clear_errors_and_the_socket_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let mut ws = server.ws().await;

    let vp8_only = {
        let (client, _) = Client::record(RecordOptions {
            video: Codec::Vp8,
            ..Default::default()
        })
        .await
        .unwrap();
        let offer = client.offer().await.unwrap();
        client.close().await;
        offer
    };
    let cases: Vec<(String, &str)> = vec![
        ("hello".into(), "not valid JSON"),
        (r#"{"op":"DANCE"}"#.into(), "unknown op"),
        (r#"{"op":"RECORD"}"#.into(), "needs a \"data\" field"),
        (r#"{"op":"RECORD","data":"***"}"#.into(), "not valid base64"),
        (
            format!(r#"{{"op":"RECORD","data":"{}"}}"#, b64("[1,2]")),
            "not a JSON session description",
        ),
        (
            format!(
                r#"{{"op":"RECORD","data":"{}"}}"#,
                b64(r#"{"type":"offer","sdp":"nonsense"}"#)
            ),
            "not valid",
        ),
        (
            format!(
                r#"{{"op":"RECORD","data":"{}"}}"#,
                b64(r#"{"type":"answer","sdp":"v=0\r\n"}"#)
            ),
            "must be an offer",
        ),
        (record_msg("v=0\r\nthis is not sdp\r\n"), "SDP"),
        (record_msg(AUDIO_ONLY_SDP), "no video"),
        (
            ClientMessage::Record { offer: vp8_only }.to_json(),
            "does not support H264",
        ),
        (
            format!(
                r#"{{"op":"STOP","data":"{}"}}"#,
                "x".repeat(MAX_MESSAGE_BYTES + 10)
            ),
            "larger than",
        ),
        (r#"{"op":"STOP"}"#.into(), "nothing to stop"),
        (
            r#"{"op":"PLAY","data":"dj0w","recording":"1764000000123-abcdef"}"#.into(),
            "session description",
        ),
    ];
    for (text, needle) in cases {
        send(&mut ws, text.clone()).await;
        match next_msg(&mut ws, Duration::from_secs(10)).await {
            ServerMessage::Error(e) => assert!(
                e.to_lowercase().contains(&needle.to_lowercase()),
                "{:.60}: error {e:?} lacks {needle:?}",
                text
            ),
            other => panic!("{text:.60}: expected ERROR, got {other:?}"),
        }
    }

    // Binary frames too.
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(5)).await,
        ServerMessage::Error(_)
    ));

    // PLAY of an unknown or malformed id.
    for (id, needle) in [
        ("1764000000123-abcdef", "not found"),
        ("../../etc/passwd", "not a recording id"),
    ] {
        let got = play(
            &server,
            |offer| ClientMessage::Play {
                offer,
                looping: false,
                recordings: Some(vec![id.into()]),
            },
            Duration::from_secs(5),
        )
        .await;
        match got.messages.first() {
            Some(ServerMessage::Error(e)) => assert!(e.contains(needle), "{e}"),
            other => panic!("expected ERROR for {id}, got {other:?}"),
        }
    }

    // The same socket still records after all that.
    let meta = record_fixture(&server, Codec::H264).await;
    assert_eq!(meta.video_frames, 120);
    assert_eq!(
        server.state.store.list().len(),
        1,
        "nothing else was stored or lost"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_on_one_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (client, _) = Client::record(RecordOptions::default()).await.unwrap();
    let offer = client.offer().await.unwrap();
    let mut ws = server.ws().await;
    send(
        &mut ws,
        ClientMessage::Record {
            offer: offer.clone(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_msg(&mut ws, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    send(&mut ws, ClientMessage::Record { offer }.to_json()).await;
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("already running"), "{e}"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    client.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_socket_mid_recording_keeps_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (client, ws) = start_recording(server.addr, Codec::Vp8).await;
    let (v, a) = fixture_frames(Codec::Vp8);
    // Send the first two seconds, then vanish without STOP.
    send_media(&client, &v[..60], &a[..100]).await;
    drop(ws);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let meta = loop {
        let list = server.state.store.list();
        if let Some(m) = list
            .first()
            .filter(|m| m.state != app::protocol::RecordingState::Recording)
        {
            break m.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recording was not finalized: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(meta.state, app::protocol::RecordingState::Complete);
    assert!(
        (1900..=2100).contains(&meta.duration_ms),
        "{}",
        meta.duration_ms
    );
    client.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.test".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", format!("http://{}", server.addr).parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(req).await.is_ok(),
        "same origin is fine"
    );
    server.shutdown().await;
}
