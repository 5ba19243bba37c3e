//! End-to-end tests: an in-process client and a server peer connect over 127.0.0.1 (no STUN,
//! nothing leaves loopback).
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::mpsc;

use super::client::{Client, RecordOptions, ViewOptions};
use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

/// A connection test on both peer loops: ours (`own`), and the library's driver (`library`).
macro_rules! on_both_loops {
    ($own:ident, $library:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $own() {
            $body(PeerLoop::Own).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $library() {
            $body(PeerLoop::Library).await;
        }
    };
}

fn rtc() -> Rtc {
    rtc_with(PeerLoop::Own)
}

fn rtc_with(peer_loop: PeerLoop) -> Rtc {
    Rtc::new(RtcSettings {
        ice_ips: vec![LOOPBACK],
        peer_loop,
        ..Default::default()
    })
    .unwrap()
}

/// A minimal offer with the given (kind, direction, attribute lines) sections. Not connectable
/// (no ICE/DTLS attributes): for validation tests.
pub(crate) fn offer(sections: &[(&str, &str, &[&str])]) -> String {
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for (mid, (kind, dir, lines)) in sections.iter().enumerate() {
        let pts: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={dir}\r\n",
            pts.join(" ")
        ));
        for l in lines.iter() {
            s.push_str(l);
            s.push_str("\r\n");
        }
    }
    s
}

/// Replaces the codecs of the (first) video section of a real offer, keeping ICE/DTLS.
fn replace_video_codecs(sdp: &str, lines: &[&str]) -> String {
    let pts: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    let mut out = String::new();
    let mut in_video = false;
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
            if in_video {
                let head: Vec<&str> = line.split(' ').take(3).collect();
                out.push_str(&format!("{} {}\r\n", head.join(" "), pts.join(" ")));
                for l in lines {
                    out.push_str(l);
                    out.push_str("\r\n");
                }
                continue;
            }
        }
        let codec_line = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=ssrc-group:"]
            .iter()
            .any(|p| line.starts_with(p));
        if in_video && codec_line {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn offer_desc(sdp: String) -> SessionDescription {
    SessionDescription {
        kind: SdpKind::Offer,
        sdp,
    }
}

/// The `a=` lines of the answer's video section.
fn video_section(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    let mut out = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        }
        if in_video {
            out.push(line.trim_end().to_owned());
        }
    }
    out
}

async fn wait_event(
    events: &mut mpsc::Receiver<PeerEvent>,
    what: &str,
    mut pred: impl FnMut(&PeerEvent) -> bool,
) -> PeerEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    RtpPacket {
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        marker,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A one-packet VP8 frame: payload descriptor (S=1, PID 0) + a 3-byte frame tag.
fn vp8_payload(i: u16) -> Vec<u8> {
    let mut p = vec![0x10, 0x9d, 0x01, 0x2a];
    p.extend_from_slice(&i.to_be_bytes());
    p
}

struct RecorderPair {
    client: Client,
    client_events: mpsc::Receiver<PeerEvent>,
    peer: RecorderPeer,
    events: mpsc::Receiver<PeerEvent>,
    answer: SessionDescription,
}

async fn connect_recorder(rtc: &Rtc, options: RecordOptions, server_video: Codec) -> RecorderPair {
    let (client, client_events) = Client::record(options).await.unwrap();
    let offer = client.offer().await.unwrap();
    let (peer, answer, mut events) = rtc.accept_recorder(&offer, server_video).await.unwrap();
    client.set_answer(&answer).await.unwrap();
    client.wait_connected(WAIT).await.unwrap();
    wait_event(&mut events, "server Connected", |e| {
        *e == PeerEvent::State(PeerState::Connected)
    })
    .await;
    RecorderPair {
        client,
        client_events,
        peer,
        events,
        answer,
    }
}

on_both_loops!(
    recorder_receives_vp8_and_opus_with_the_offer_payload_types,
    recorder_receives_vp8_and_opus_with_the_offer_payload_types_on_the_library_loop,
    recorder_receives_vp8_and_opus_with_the_offer_payload_types_on
);

async fn recorder_receives_vp8_and_opus_with_the_offer_payload_types_on(peer_loop: PeerLoop) {
    let rtc = rtc_with(peer_loop);
    let options = RecordOptions {
        video: Codec::Vp8,
        video_pt: 120,
        audio_pt: 109,
        ..Default::default()
    };
    let RecorderPair {
        client,
        mut client_events,
        peer,
        mut events,
        answer,
    } = connect_recorder(&rtc, options, Codec::Vp8).await;
    assert!(
        answer.sdp.contains("a=rtpmap:120 VP8/90000"),
        "{}",
        answer.sdp
    );
    assert!(
        answer.sdp.contains("a=rtpmap:109 opus/48000/2"),
        "{}",
        answer.sdp
    );
    assert!(!answer.sdp.contains("a=rtpmap:96 "), "{}", answer.sdp);
    assert!(answer.sdp.contains("a=recvonly"), "{}", answer.sdp);

    let vssrc = client.ssrc(MediaKind::Video);
    let assrc = client.ssrc(MediaKind::Audio);
    let sender = tokio::spawn(async move {
        for i in 0..100u16 {
            let v = packet(120, 1000 + i, 3000 * i as u32, vssrc, true, &vp8_payload(i));
            client.send(MediaKind::Video, &v).await.unwrap();
            if i % 2 == 0 {
                let a = packet(
                    109,
                    500 + i / 2,
                    960 * (i / 2) as u32,
                    assrc,
                    false,
                    &[0xfc, i as u8],
                );
                client.send(MediaKind::Audio, &a).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Keep the connection alive long enough for a sender report (1 s interval).
        for i in 100..400u16 {
            let v = packet(120, 1000 + i, 3000 * i as u32, vssrc, true, &vp8_payload(i));
            client.send(MediaKind::Video, &v).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client
    });

    let mut video = Vec::new();
    let mut audio = 0;
    let mut tracks = Vec::new();
    let mut video_sr = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while video.len() < 100 || audio < 50 || !video_sr {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for media")
            .expect("channel closed");
        match ev {
            PeerEvent::Track { kind, codec, ssrc } => tracks.push((kind, codec, ssrc)),
            PeerEvent::Rtp {
                kind: MediaKind::Video,
                packet,
                arrival,
            } => {
                assert!(arrival <= Instant::now());
                assert_eq!(packet.payload_type, 120);
                assert_eq!(packet.ssrc, vssrc);
                if video.len() < 100 {
                    let i = packet.sequence_number - 1000;
                    assert_eq!(packet.payload.as_ref(), vp8_payload(i).as_slice());
                    assert!(packet.marker);
                    video.push(packet.sequence_number);
                }
            }
            PeerEvent::Rtp {
                kind: MediaKind::Audio,
                packet,
                ..
            } => {
                assert_eq!(packet.payload_type, 109);
                assert_eq!(packet.ssrc, assrc);
                audio += 1;
            }
            PeerEvent::SenderReport {
                kind: MediaKind::Video,
                ntp,
                rtp,
            } => {
                assert!(ntp > 0);
                // The library extrapolates the SR's RTP time from the last packet sent with
                // the wall clock, so it is only near the stream's timestamps.
                assert!(
                    rtp <= 3000 * 400 + 90_000 * 5,
                    "SR RTP time {rtp} is off the stream's clock"
                );
                video_sr = true;
            }
            _ => {}
        }
    }
    assert_eq!(
        video,
        (1000..1100).collect::<Vec<u16>>(),
        "in order, none lost"
    );
    assert!(
        tracks.contains(&(MediaKind::Video, Codec::Vp8, vssrc)),
        "{tracks:?}"
    );
    assert!(
        tracks.contains(&(MediaKind::Audio, Codec::Opus, assrc)),
        "{tracks:?}"
    );
    // Which loop carried it: ours has no per-track forwarding tasks.
    let forwarding = rtc.stats().live_tasks;
    match peer_loop {
        PeerLoop::Own => assert_eq!(forwarding, 0, "our loop forwards RTP itself"),
        PeerLoop::Library => assert_eq!(forwarding, 2, "one forwarding task per track"),
    }

    // The server's keyframe request reaches the sending client.
    peer.request_keyframe().await;
    wait_event(&mut client_events, "PLI at the client", |e| {
        *e == PeerEvent::KeyframeRequested
    })
    .await;

    let client = sender.await.unwrap();
    peer.close().await;
    client.close().await;
    // Once closed and dropped, the channel ends.
    drop(peer);
    let end = tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await;
    assert!(
        end.is_ok(),
        "the event channel must close after close() + drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_offer_is_answered_with_constrained_baseline() {
    let rtc = rtc();
    let (client, _events) = Client::record(RecordOptions {
        video: Codec::H264,
        video_pt: 102,
        ..Default::default()
    })
    .await
    .unwrap();
    let real = client.offer().await.unwrap().sdp;
    // What Chrome offers: several H264 variants around the one we want, VP8 first.
    let chrome_like = replace_video_codecs(
        &real,
        &[
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:103 H264/90000",
            "a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            "a=rtpmap:104 H264/90000",
            "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
            "a=rtpmap:127 H264/90000",
            "a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtcp-fb:127 nack",
            "a=rtcp-fb:127 nack pli",
            "a=rtcp-fb:127 ccm fir",
            "a=rtcp-fb:127 goog-remb",
            "a=rtpmap:112 H264/90000",
            "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
        ],
    );
    let (peer, answer, _server_events) = rtc
        .accept_recorder(&offer_desc(chrome_like), Codec::H264)
        .await
        .unwrap();
    let video = video_section(&answer.sdp);
    let m = video.first().cloned().unwrap_or_default();
    assert!(
        m.ends_with(" 127"),
        "only the constrained-baseline H264 is answered: {video:?}"
    );
    assert!(
        video.contains(&"a=rtpmap:127 H264/90000".to_owned()),
        "{video:?}"
    );
    let fmtp = video
        .iter()
        .find(|l| l.starts_with("a=fmtp:127 "))
        .expect("fmtp for 127");
    for p in [
        "profile-level-id=42e01f",
        "packetization-mode=1",
        "level-asymmetry-allowed=1",
    ] {
        assert!(fmtp.contains(p), "{fmtp}");
    }
    for fb in ["nack", "nack pli", "ccm fir"] {
        assert!(
            video.contains(&format!("a=rtcp-fb:127 {fb}")),
            "{fb}: {video:?}"
        );
    }
    assert!(
        !video.iter().any(|l| l.contains("VP8") || l.contains("rtx")),
        "{video:?}"
    );
    peer.close().await;
    client.close().await;
}

on_both_loops!(
    h264_recording_end_to_end_uses_the_offered_payload_type,
    h264_recording_end_to_end_uses_the_offered_payload_type_on_the_library_loop,
    h264_recording_end_to_end_uses_the_offered_payload_type_on
);

async fn h264_recording_end_to_end_uses_the_offered_payload_type_on(peer_loop: PeerLoop) {
    let rtc = rtc_with(peer_loop);
    let RecorderPair {
        client,
        peer,
        mut events,
        answer,
        ..
    } = connect_recorder(
        &rtc,
        RecordOptions {
            video: Codec::H264,
            video_pt: 125,
            ..Default::default()
        },
        Codec::H264,
    )
    .await;
    assert!(
        answer.sdp.contains("a=rtpmap:125 H264/90000"),
        "{}",
        answer.sdp
    );
    assert!(
        answer.sdp.contains("profile-level-id=42e01f"),
        "{}",
        answer.sdp
    );
    let ssrc = client.ssrc(MediaKind::Video);
    // A single-NAL IDR slice per packet.
    for i in 0..20u16 {
        let p = packet(125, i, 3000 * i as u32, ssrc, true, &[0x65, 0x88, i as u8]);
        client.send(MediaKind::Video, &p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let track = wait_event(&mut events, "H264 track", |e| {
        matches!(e, PeerEvent::Track { .. })
    })
    .await;
    assert_eq!(
        track,
        PeerEvent::Track {
            kind: MediaKind::Video,
            codec: Codec::H264,
            ssrc
        }
    );
    for i in 0..20u16 {
        match wait_event(&mut events, "H264 RTP", |e| {
            matches!(e, PeerEvent::Rtp { .. })
        })
        .await
        {
            PeerEvent::Rtp { kind, packet, .. } => {
                assert_eq!(kind, MediaKind::Video);
                assert_eq!((packet.payload_type, packet.sequence_number), (125, i));
            }
            _ => unreachable!(),
        }
    }
    peer.close().await;
    client.close().await;
}

on_both_loops!(
    viewer_receives_our_packets_and_a_payload_type_switch,
    viewer_receives_our_packets_and_a_payload_type_switch_on_the_library_loop,
    viewer_receives_our_packets_and_a_payload_type_switch_on
);

async fn viewer_receives_our_packets_and_a_payload_type_switch_on(peer_loop: PeerLoop) {
    let rtc = rtc_with(peer_loop);
    let (client, mut client_events) = Client::view(ViewOptions {
        video: vec![(Codec::Vp8, 98), (Codec::H264, 121)],
        audio_pt: 110,
        ..Default::default()
    })
    .await
    .unwrap();
    let offer = client.offer().await.unwrap();
    let (peer, answer, mut events) = rtc.accept_viewer(&offer).await.unwrap();
    let mut pts = peer.payload_types();
    pts.sort_by_key(|(_, pt)| *pt);
    assert_eq!(
        pts,
        vec![(Codec::Vp8, 98), (Codec::Opus, 110), (Codec::H264, 121)],
        "{}",
        answer.sdp
    );
    assert!(answer.sdp.contains("a=sendonly"), "{}", answer.sdp);
    let vssrc = peer.ssrc(MediaKind::Video);
    let assrc = peer.ssrc(MediaKind::Audio);
    assert!(vssrc != 0 && assrc != 0 && vssrc != assrc);
    assert!(
        answer.sdp.contains(&format!("a=ssrc:{vssrc} ")),
        "{}",
        answer.sdp
    );

    client.set_answer(&answer).await.unwrap();
    client.wait_connected(WAIT).await.unwrap();
    wait_event(&mut events, "viewer Connected", |e| {
        *e == PeerEvent::State(PeerState::Connected)
    })
    .await;

    // Contract violations are reported, not silently dropped.
    let bad_pt = packet(100, 0, 0, vssrc, true, &[0]);
    assert!(matches!(
        peer.send(MediaKind::Video, &bad_pt).await,
        Err(RtcError::PayloadTypeNotNegotiated { pt: 100, .. })
    ));
    let audio_pt_on_video = packet(110, 0, 0, vssrc, true, &[0]);
    assert!(
        peer.send(MediaKind::Video, &audio_pt_on_video)
            .await
            .is_err()
    );
    let bad_ssrc = packet(98, 0, 0, vssrc ^ 1, true, &[0]);
    assert!(matches!(
        peer.send(MediaKind::Video, &bad_ssrc).await,
        Err(RtcError::WrongSsrc { .. })
    ));

    // 50 VP8 packets, then the clip changes to H264 on the same track and SSRC.
    for i in 0..100u16 {
        let pt = if i < 50 { 98 } else { 121 };
        let payload: Vec<u8> = if i < 50 {
            vp8_payload(i)
        } else {
            vec![0x65, i as u8]
        };
        let p = packet(pt, 40_000 + i, 90 * 33 * i as u32, vssrc, true, &payload);
        peer.send(MediaKind::Video, &p).await.unwrap();
        if i % 4 == 0 {
            let a = packet(110, i, 960 * i as u32, assrc, false, &[0xfc, 1, 2]);
            peer.send(MediaKind::Audio, &a).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }

    let mut video = Vec::new();
    let mut audio = 0;
    let mut tracks = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while video.len() < 100 || audio < 25 {
        let ev = tokio::time::timeout_at(deadline, client_events.recv())
            .await
            .expect("timed out waiting for the viewer's media")
            .expect("channel closed");
        match ev {
            PeerEvent::Rtp {
                kind: MediaKind::Video,
                packet,
                ..
            } => {
                assert_eq!(packet.ssrc, vssrc);
                video.push((packet.sequence_number, packet.payload_type));
            }
            PeerEvent::Rtp {
                kind: MediaKind::Audio,
                packet,
                ..
            } => {
                assert_eq!((packet.ssrc, packet.payload_type), (assrc, 110));
                audio += 1;
            }
            PeerEvent::Track { kind, codec, .. } => tracks.push((kind, codec)),
            _ => {}
        }
    }
    let expected: Vec<(u16, u8)> = (0..100u16)
        .map(|i| (40_000 + i, if i < 50 { 98 } else { 121 }))
        .collect();
    assert_eq!(video, expected, "in order, with the payload types we chose");
    assert!(
        tracks.contains(&(MediaKind::Video, Codec::Vp8)),
        "{tracks:?}"
    );
    assert!(
        tracks.contains(&(MediaKind::Video, Codec::H264)),
        "{tracks:?}"
    );

    // The viewer's PLI surfaces on the server.
    client.request_keyframe().await;
    wait_event(&mut events, "KeyframeRequested", |e| {
        *e == PeerEvent::KeyframeRequested
    })
    .await;

    peer.close().await;
    assert!(matches!(
        peer.send(MediaKind::Video, &packet(98, 1, 1, vssrc, true, &[1]))
            .await,
        Err(RtcError::Closed)
    ));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_offers_are_rejected_before_anything_is_allocated() {
    let rtc = rtc();
    let vp8_video: &[&str] = &["a=rtpmap:96 VP8/90000"];
    let opus: &[&str] = &["a=rtpmap:111 opus/48000/2"];
    let vp9_video: &[&str] = &["a=rtpmap:98 VP9/90000"];
    let h264_mode0: &[&str] = &[
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 packetization-mode=0;profile-level-id=42e01f",
    ];
    let no_media = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_owned();
    let data_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                     m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
        .to_owned();
    let cases: Vec<(&str, SessionDescription, Option<Codec>, &str)> = vec![
        (
            "garbage",
            offer_desc("hello".into()),
            Some(Codec::Vp8),
            "the offer's SDP could not be parsed: it does not start with v=0",
        ),
        (
            "broken line",
            offer_desc("v=0\r\nthis is not sdp\r\n".into()),
            Some(Codec::Vp8),
            "the offer's SDP could not be parsed: ",
        ),
        (
            "no media",
            offer_desc(no_media.clone()),
            Some(Codec::Vp8),
            "the offer has no media sections",
        ),
        (
            "data only",
            offer_desc(data_only),
            None,
            "the offer has no media sections",
        ),
        (
            "audio only",
            offer_desc(offer(&[("audio", "sendonly", opus)])),
            Some(Codec::Vp8),
            "the offer has no video section",
        ),
        (
            "wrong codec",
            offer_desc(offer(&[
                ("audio", "sendonly", opus),
                ("video", "sendonly", vp8_video),
            ])),
            Some(Codec::H264),
            "the offer does not support H264 video, which this server records",
        ),
        (
            "h264 mode 0 only",
            offer_desc(offer(&[("video", "sendonly", h264_mode0)])),
            Some(Codec::H264),
            "the offer does not support H264 video, which this server records",
        ),
        (
            "vp8 missing",
            offer_desc(offer(&[("video", "sendonly", vp9_video)])),
            Some(Codec::Vp8),
            "the offer does not support VP8 video, which this server records",
        ),
        (
            "viewer vp9 only",
            offer_desc(offer(&[("video", "recvonly", vp9_video)])),
            None,
            "the offer supports neither H264 nor VP8 video, which this server plays",
        ),
        (
            "viewer audio only",
            offer_desc(offer(&[("audio", "recvonly", opus)])),
            None,
            "the offer has no video section",
        ),
        (
            "an answer",
            SessionDescription {
                kind: SdpKind::Answer,
                sdp: offer(&[("video", "sendonly", vp8_video)]),
            },
            Some(Codec::Vp8),
            "expected an SDP offer, got an answer",
        ),
    ];
    for (name, desc, recorder_codec, message) in cases {
        let err = match recorder_codec {
            Some(codec) => rtc.accept_recorder(&desc, codec).await.err(),
            None => rtc.accept_viewer(&desc).await.err(),
        };
        let err = err.unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(err.to_string().starts_with(message), "{name}: {err}");
    }
    let stats = rtc.stats();
    assert_eq!(
        (stats.live_peers, stats.live_tasks),
        (0, 0),
        "nothing allocated"
    );
}

#[test]
fn settings_are_validated() {
    let bad = [
        RtcSettings {
            ice_servers: vec!["http://example.com".into()],
            ..Default::default()
        },
        RtcSettings {
            ice_servers: vec!["stun:".into()],
            ..Default::default()
        },
        RtcSettings {
            ice_ips: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            ..Default::default()
        },
    ];
    for settings in bad {
        let err = Rtc::new(settings.clone()).expect_err(&format!("{settings:?}"));
        assert!(
            err.to_string().starts_with("invalid WebRTC settings: "),
            "{err}"
        );
    }
    Rtc::new(RtcSettings {
        ice_servers: vec![
            "stun:stun.example.com:3478".into(),
            "turn:user:secret@turn.example.com:3478?transport=udp".into(),
        ],
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        udp_port: 40000,
        ..Default::default()
    })
    .unwrap();
}

/// `--udp-port N`: twenty peers' media on one port (every host candidate names it, the
/// public-IP twins too), each peer gets exactly its own client's packets, and closing them
/// empties the mux.
on_both_loops!(
    twenty_peers_share_one_udp_port_and_each_gets_only_its_own_packets,
    twenty_peers_share_one_udp_port_on_the_library_loop,
    twenty_peers_on
);

async fn twenty_peers_on(peer_loop: PeerLoop) {
    let port = std::net::UdpSocket::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rtc = Rtc::new(RtcSettings {
        ice_ips: vec![LOOPBACK],
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        udp_port: port,
        ice_servers: vec![],
        peer_loop,
    })
    .unwrap();
    rtc.bind_mux().unwrap();
    assert!(
        std::net::UdpSocket::bind((LOOPBACK, port)).is_err(),
        "the mux holds the port"
    );
    let ports_of = |sdp: &str, ip: &str| -> Vec<u16> {
        sdp.lines()
            .filter(|l| l.starts_with("a=candidate:") && l.contains(" 1 udp "))
            .filter(|l| l.contains(&format!(" {ip} ")))
            .filter_map(|l| l.split(' ').nth(5)?.parse().ok())
            .collect::<std::collections::BTreeSet<u16>>()
            .into_iter()
            .collect()
    };
    let mut pairs = Vec::new();
    for _ in 0..20 {
        let pair = connect_recorder(&rtc, RecordOptions::default(), Codec::Vp8).await;
        assert_eq!(ports_of(&pair.answer.sdp, "127.0.0.1"), vec![port]);
        assert_eq!(ports_of(&pair.answer.sdp, "203.0.113.7"), vec![port]);
        pairs.push(pair);
    }
    assert_eq!(rtc.mux_peers(), 20);
    // Every client sends 30 packets at once; every server peer must see exactly its own.
    let senders = pairs.iter().map(|pair| async {
        let ssrc = pair.client.ssrc(MediaKind::Video);
        for seq in 0..30u16 {
            let p = packet(
                96,
                seq,
                u32::from(seq) * 3000,
                ssrc,
                true,
                &vp8_payload(seq),
            );
            pair.client.send(MediaKind::Video, &p).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    futures::future::join_all(senders).await;
    for (i, pair) in pairs.iter_mut().enumerate() {
        let ssrc = pair.client.ssrc(MediaKind::Video);
        let mut got = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while got.len() < 30 {
            let ev = tokio::time::timeout_at(deadline, pair.events.recv())
                .await
                .unwrap_or_else(|_| panic!("peer {i}: {} of 30 packets", got.len()))
                .expect("events");
            if let PeerEvent::Rtp { packet, .. } = ev {
                assert_eq!(packet.ssrc, ssrc, "peer {i} got another peer's packet");
                got.insert(packet.sequence_number);
            }
        }
    }
    // Every peer's media came on a flow of its own once it had started.
    assert_eq!(rtc.mux_flows(), 20);
    for pair in pairs {
        pair.peer.close().await;
        pair.client.close().await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while rtc.mux_peers() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} left",
            rtc.mux_peers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens, connects (with media flowing, so forwarding tasks run) and closes 50 recorder and
/// viewer peers; afterwards no connection state, forwarding task or runtime task may remain.
on_both_loops!(
    fifty_peers_open_and_close_without_leaking,
    fifty_peers_open_and_close_without_leaking_on_the_library_loop,
    fifty_peers_open_and_close_without_leaking_on
);

async fn fifty_peers_open_and_close_without_leaking_on(peer_loop: PeerLoop) {
    let rtc = rtc_with(peer_loop);
    let metrics = tokio::runtime::Handle::current().metrics();

    async fn one_round(rtc: &Rtc, i: usize) {
        if i % 2 == 0 {
            let mut pair = connect_recorder(rtc, RecordOptions::default(), Codec::Vp8).await;
            let ssrc = pair.client.ssrc(MediaKind::Video);
            let p = packet(96, 1, 0, ssrc, true, &vp8_payload(1));
            pair.client.send(MediaKind::Video, &p).await.unwrap();
            wait_event(&mut pair.events, "RTP", |e| {
                matches!(e, PeerEvent::Rtp { .. })
            })
            .await;
            pair.peer.close().await;
            pair.client.close().await;
        } else {
            let (client, mut client_events) = Client::view(ViewOptions::default()).await.unwrap();
            let (peer, answer, _events) = rtc
                .accept_viewer(&client.offer().await.unwrap())
                .await
                .unwrap();
            client.set_answer(&answer).await.unwrap();
            client.wait_connected(WAIT).await.unwrap();
            let ssrc = peer.ssrc(MediaKind::Video);
            let pt = peer
                .payload_types()
                .iter()
                .find(|(c, _)| *c == Codec::Vp8)
                .unwrap()
                .1;
            // Sent until it arrives: the server side may finish DTLS a moment after the client.
            let got = async {
                for seq in 0u16.. {
                    let _ = peer
                        .send(
                            MediaKind::Video,
                            &packet(pt, seq, 0, ssrc, true, &vp8_payload(seq)),
                        )
                        .await;
                    if let Ok(Some(_)) =
                        tokio::time::timeout(Duration::from_millis(50), client_events.recv()).await
                    {
                        break;
                    }
                }
            };
            tokio::time::timeout(WAIT, got).await.expect("viewer media");
            // Dropped without close(): the handle closes itself.
            drop(peer);
            client.close().await;
        }
    }

    // Warm up (lazily created runtime tasks, allocator pools), then measure.
    for i in 0..4 {
        one_round(&rtc, i).await;
    }
    settle(&rtc).await;
    let baseline_tasks = metrics.num_alive_tasks();

    for batch in 0..10 {
        let rounds = (0..5).map(|j| one_round(&rtc, batch * 5 + j));
        futures::future::join_all(rounds).await;
    }
    settle(&rtc).await;
    let stats = rtc.stats();
    assert_eq!((stats.live_peers, stats.live_tasks), (0, 0));
    let alive = metrics.num_alive_tasks();
    assert!(
        alive <= baseline_tasks,
        "runtime tasks grew from {baseline_tasks} to {alive} after 50 peers"
    );
}

/// Waits until every closed peer has been freed by the library.
async fn settle(rtc: &Rtc) {
    let deadline = Instant::now() + WAIT;
    while (rtc.stats().live_peers, rtc.stats().live_tasks) != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Client-side drivers end on the same path; give them the same moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Empty `ice_ips` means every interface *and* loopback (the library's wildcard expansion
/// skips loopback). Only the answer is checked: no connectivity checks leave the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_settings_gather_on_loopback_too() {
    let rtc = Rtc::new(RtcSettings::default()).unwrap();
    let (client, _events) = Client::record(RecordOptions::default()).await.unwrap();
    let offer = client.offer().await.unwrap();
    client.close().await;
    let (peer, answer, _events) = rtc.accept_recorder(&offer, Codec::Vp8).await.unwrap();
    peer.close().await;
    assert!(
        answer
            .sdp
            .lines()
            .any(|l| l.starts_with("a=candidate:") && l.contains(" 127.0.0.1 ")),
        "{}",
        answer.sdp
    );
}
