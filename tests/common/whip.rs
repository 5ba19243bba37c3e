//! WHIP and WHEP over HTTP for the tests: publish, view, the headers of an answer.
use std::time::Duration;

use app::protocol::{RecordingMeta, SdpKind, SessionDescription};
use media::{Codec, MediaKind};
use pion_the_sky::rtc::PeerEvent;
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};
use tokio::sync::mpsc;

use super::{TestServer, http_async};

/// `GET path`.
pub async fn get(server: &TestServer, path: String) -> (u16, String, Vec<u8>) {
    http_async(server.addr, "GET", path, vec![], String::new()).await
}

pub const SDP: (&str, &str) = ("Content-Type", "application/sdp");
pub const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");

/// One header's value from a response head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

pub async fn post(
    server: &TestServer,
    path: &str,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
) -> (u16, String, String) {
    let (status, head, body) =
        http_async(server.addr, "POST", path.to_owned(), headers, body).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

pub async fn request(
    server: &TestServer,
    method: &'static str,
    path: &str,
    headers: Vec<(&'static str, &'static str)>,
    body: &str,
) -> (u16, String) {
    let (status, head, _) = http_async(
        server.addr,
        method,
        path.to_owned(),
        headers,
        body.to_owned(),
    )
    .await;
    (status, head)
}

pub fn answer(sdp: String) -> SessionDescription {
    SessionDescription {
        kind: SdpKind::Answer,
        sdp,
    }
}

pub async fn recorder(video: Codec) -> Client {
    let (client, _events) = Client::record(RecordOptions {
        video,
        video_pt: if video == Codec::H264 { 102 } else { 96 },
        audio_pt: 111,
        ..RecordOptions::default()
    })
    .await
    .expect("client");
    client
}

/// Publishes over WHIP: returns the client (connected) and the session's URL.
pub async fn publish(server: &TestServer, path: &str, video: Codec) -> (Client, String, String) {
    let client = recorder(video).await;
    let offer = client.offer().await.expect("offer");
    let (status, head, body) = post(server, path, vec![SDP], offer.sdp).await;
    assert_eq!(status, 201, "{head}\n{body}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("application/sdp")
    );
    let location = header(&head, "location").expect("Location");
    let etag = header(&head, "etag").expect("ETag");
    assert!(location.starts_with("/whip/"), "{location}");
    connect(&client, body).await;
    (client, location, etag)
}

/// Applies the answer in a 201's body and waits for the connection.
pub async fn connect(client: &Client, answer_sdp: String) {
    client
        .set_answer(&answer(answer_sdp))
        .await
        .expect("answer applies");
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("connected");
}

pub async fn recordings(server: &TestServer) -> Vec<RecordingMeta> {
    let (status, _, body) = http_async(
        server.addr,
        "GET",
        "/api/recordings".into(),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("recordings JSON")
}

/// A WHEP viewer: the client, its events, and the session URL.
pub async fn view(
    server: &TestServer,
    path: &str,
) -> Result<(Client, mpsc::Receiver<PeerEvent>, String), (u16, String)> {
    view_with(server, path, ViewOptions::default()).await
}

/// [`view`] with the viewer's codecs given.
pub async fn view_with(
    server: &TestServer,
    path: &str,
    options: ViewOptions,
) -> Result<(Client, mpsc::Receiver<PeerEvent>, String), (u16, String)> {
    let (client, events) = Client::view(options).await.expect("viewer");
    let offer = client.offer().await.expect("offer");
    let (status, head, body) = post(server, path, vec![SDP], offer.sdp).await;
    if status != 201 {
        client.close().await;
        return Err((status, body));
    }
    let location = header(&head, "location").expect("Location");
    assert!(location.starts_with("/whep/session/"), "{location}");
    connect(&client, body).await;
    Ok((client, events, location))
}

/// Video packets until `n` arrived or `limit` passed.
pub async fn video_packets(
    events: &mut mpsc::Receiver<PeerEvent>,
    n: usize,
    limit: Duration,
) -> Vec<media::rtp::RtpPacket> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(PeerEvent::Rtp {
                kind: MediaKind::Video,
                packet,
                ..
            })) => got.push(packet),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    got
}
