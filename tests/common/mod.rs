//! A real server on 127.0.0.1:0 and in-process WebRTC clients speaking the `/ws` protocol.
#![allow(dead_code)]

pub mod whip;
#[allow(unused_imports)] // not every test file uses WHIP
pub use whip::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use app::protocol::{ClientMessage, RecordingMeta, ServerMessage, SessionDescription};
use futures::{SinkExt, StreamExt};
use media::container::ContainerKind;
use media::rtp::RtpPacket;
use media::{Codec, Frame, MediaKind};
use pion_the_sky::config::Config;
use pion_the_sky::rtc::PeerEvent;
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};
use pion_the_sky::store::{MediaSink, MediaSource, NewRecording, RecordingStore, StoreError};
use pion_the_sky::{AppState, leptos_options};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts a server recording `vcodec` into `data_dir`, ICE on loopback only.
    pub async fn start(data_dir: &Path, vcodec: &str, extra: &[&str]) -> TestServer {
        Self::start_with(data_dir, vcodec, extra, |store| store).await
    }

    /// Like `start`, with the store wrapped (e.g. to inject disk errors).
    pub async fn start_with(
        data_dir: &Path,
        vcodec: &str,
        extra: &[&str],
        wrap: impl FnOnce(Arc<dyn RecordingStore>) -> Arc<dyn RecordingStore>,
    ) -> TestServer {
        Self::try_start_with(data_dir, vcodec, extra, wrap)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start`, but a server that cannot start (its data directory held, say) is an
    /// error, not a panic.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn try_start(
        data_dir: &Path,
        vcodec: &str,
        extra: &[&str],
    ) -> Result<TestServer, String> {
        Self::try_start_with(data_dir, vcodec, extra, |store| store).await
    }

    async fn try_start_with(
        data_dir: &Path,
        vcodec: &str,
        extra: &[&str],
        wrap: impl FnOnce(Arc<dyn RecordingStore>) -> Arc<dyn RecordingStore>,
    ) -> Result<TestServer, String> {
        let mut args: Vec<String> = [
            "pion-the-sky",
            &format!("-vcodec={vcodec}"),
            "--ice-ip=127.0.0.1",
            "--pli-interval=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--data-dir={}", data_dir.display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::parse_from_args(args).unwrap_or_else(|e| panic!("{}", e.message));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut state = AppState::new(config, leptos_options(Path::new("target/site"), addr))
            .map_err(|e| e.to_string())?;
        state.store = wrap(state.store.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            pion_the_sky::serve(state.clone(), listener, async move {
                let _ = stopped.await;
            })
            .map_ok_or_log(),
        );
        Ok(TestServer {
            addr,
            state,
            task,
            stop: Some(stop),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn ws(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .expect("websocket connects");
        ws
    }

    /// Stops the server the way SIGTERM does: sessions finalize, then it exits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), &mut self.task).await;
    }
}

/// A store whose new media sinks are wrapped by `wrap` (to inject slow or failing disks);
/// everything else goes to `inner`.
pub struct WrapSinks<F> {
    inner: Arc<dyn RecordingStore>,
    wrap: F,
}

impl<F> WrapSinks<F> {
    pub fn new(inner: Arc<dyn RecordingStore>, wrap: F) -> Self {
        WrapSinks { inner, wrap }
    }
}

impl<F> RecordingStore for WrapSinks<F>
where
    F: Fn(Box<dyn MediaSink>) -> Box<dyn MediaSink> + Send + Sync + 'static,
{
    fn create(
        &self,
        c: ContainerKind,
        v: Option<Codec>,
        a: bool,
    ) -> Result<NewRecording, StoreError> {
        let new = self.inner.create(c, v, a)?;
        Ok(NewRecording {
            meta: new.meta,
            sink: (self.wrap)(new.sink),
        })
    }
    fn finish(&self, meta: RecordingMeta) -> Result<RecordingMeta, StoreError> {
        self.inner.finish(meta)
    }
    fn repair(&self, meta: RecordingMeta, note: String) -> RecordingMeta {
        self.inner.repair(meta, note)
    }
    fn list(&self) -> Vec<RecordingMeta> {
        self.inner.list()
    }
    fn get(&self, id: &str) -> Result<RecordingMeta, StoreError> {
        self.inner.get(id)
    }
    fn open(&self, id: &str) -> Result<(RecordingMeta, Box<dyn MediaSource>), StoreError> {
        self.inner.open(id)
    }
    fn media_path(&self, id: &str) -> Result<(RecordingMeta, PathBuf), StoreError> {
        self.inner.media_path(id)
    }
    fn rename(&self, id: &str, name: &str) -> Result<RecordingMeta, StoreError> {
        self.inner.rename(id, name)
    }
    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id)
    }
    fn thumbnail(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.thumbnail(id)
    }
    fn save_thumbnail(&self, id: &str, jpeg: &[u8]) -> Result<(), StoreError> {
        self.inner.save_thumbnail(id, jpeg)
    }
}

trait MapOkOrLog {
    fn map_ok_or_log(self) -> impl std::future::Future<Output = ()> + Send;
}

impl<F: std::future::Future<Output = std::io::Result<()>> + Send> MapOkOrLog for F {
    async fn map_ok_or_log(self) {
        if let Err(e) = self.await {
            eprintln!("server error: {e}");
        }
    }
}

pub async fn send(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.expect("ws send");
}

/// Next server message (skipping STATE), or panics after `timeout`.
pub async fn next_msg(ws: &mut Ws, timeout: Duration) -> ServerMessage {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = next_msg_or_state(ws, left).await;
        if !matches!(msg, ServerMessage::State(_)) {
            return msg;
        }
    }
}

/// Next server message, STATE included, or panics after `timeout`.
pub async fn next_msg_or_state(ws: &mut Ws, timeout: Duration) -> ServerMessage {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("server message in time")
            .expect("socket open")
            .expect("socket ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("bad server message {t}: {e}"));
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed 4 s fixture frames: (video, audio).
pub fn fixture_frames(video: Codec) -> (Vec<Frame>, Vec<Frame>) {
    let v = match video {
        Codec::Vp8 => media::elementary::ivf_vp8(&fixture("vp8_640x480_30fps_4s.ivf")).unwrap(),
        Codec::H264 => {
            media::elementary::annexb_h264(&fixture("h264_640x480_30fps_4s.h264"), 30).unwrap()
        }
        Codec::Opus => unreachable!(),
    };
    let a = media::elementary::ogg_opus(&fixture("opus_48k_stereo_4s.ogg")).unwrap();
    (v, a)
}

/// Sends frames as RTP, paced in real time by their timestamps (audio and video interleaved).
pub async fn send_media(client: &Client, video: &[Frame], audio: &[Frame]) -> usize {
    send_media_with(client, video, audio, async || {}).await
}

/// [`send_media`], running `before_last` just before the last video frame is sent.
pub async fn send_media_with(
    client: &Client,
    video: &[Frame],
    audio: &[Frame],
    before_last: impl AsyncFnOnce(),
) -> usize {
    send_media_shifted(client, video, audio, before_last, |_, _| 0).await
}

/// [`send_media_with`], adding `shift(kind, frame_ts)` to each frame's RTP timestamp (a
/// sender's timestamp jumps) while pacing by the frames' own timestamps.
pub async fn send_media_shifted(
    client: &Client,
    video: &[Frame],
    audio: &[Frame],
    before_last: impl AsyncFnOnce(),
    shift: impl Fn(MediaKind, u64) -> u32,
) -> usize {
    let mut before_last = Some(before_last);
    let last_video_ts = video.last().map(|f| f.ts);
    let mut all: Vec<(u64, MediaKind, &Frame)> = video
        .iter()
        .map(|f| (f.ts * 1_000_000 / 90_000, MediaKind::Video, f))
        .chain(
            audio
                .iter()
                .map(|f| (f.ts * 1_000_000 / 48_000, MediaKind::Audio, f)),
        )
        .collect();
    all.sort_by_key(|(us, kind, _)| (*us, *kind == MediaKind::Video));
    let mut seq = [1000u16, 5000u16];
    let ts_base = [90_000u32, 48_000u32];
    let start = tokio::time::Instant::now();
    let mut packets = 0;
    for (us, kind, frame) in all {
        tokio::time::sleep_until(start + Duration::from_micros(us)).await;
        if kind == MediaKind::Video
            && Some(frame.ts) == last_video_ts
            && let Some(f) = before_last.take()
        {
            f().await;
        }
        let i = usize::from(kind == MediaKind::Audio);
        let pt = client.payload_type(frame.codec).expect("negotiated codec");
        let payloads = media::packetize::payloads(frame.codec, &frame.data, 1150);
        let n = payloads.len();
        for (k, payload) in payloads.into_iter().enumerate() {
            let packet = RtpPacket {
                payload_type: pt,
                sequence_number: seq[i],
                timestamp: ts_base[i]
                    .wrapping_add(frame.ts as u32)
                    .wrapping_add(shift(kind, frame.ts)),
                ssrc: client.ssrc(kind),
                marker: kind == MediaKind::Video && k + 1 == n,
                payload,
            };
            seq[i] = seq[i].wrapping_add(1);
            client.send(kind, &packet).await.expect("client sends");
            packets += 1;
        }
    }
    packets
}

/// Records the fixture through `/ws` with an in-process client; returns the RECORDING metadata.
pub async fn record_fixture(server: &TestServer, video: Codec) -> RecordingMeta {
    let messages = record_fixture_messages(server, video).await;
    match messages.last() {
        Some(ServerMessage::Recording(meta)) => meta.clone(),
        _ => panic!("expected RECORDING, got {messages:?}"),
    }
}

/// Starts a recording on the server at `addr` the way a browser does: offer over `/ws`,
/// ANSWER back (checked to make the server DTLS server), connection up.
pub async fn start_recording(addr: SocketAddr, video: Codec) -> (Client, Ws) {
    let (client, _events) = Client::record(RecordOptions {
        video,
        video_pt: if video == Codec::H264 { 125 } else { 120 },
        audio_pt: 109,
        ..RecordOptions::default()
    })
    .await
    .expect("client");
    let offer = client.offer().await.expect("offer");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("websocket connects");
    send(&mut ws, ClientMessage::Record { offer }.to_json()).await;
    let answer = match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Answer(b64) => SessionDescription::decode(&b64).expect("answer decodes"),
        other => panic!("expected ANSWER, got {other:?}"),
    };
    // The recorder answers as DTLS server, so it has its keys before the browser sends.
    assert!(answer.sdp.contains("a=setup:passive"), "{}", answer.sdp);
    client.set_answer(&answer).await.expect("answer applies");
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("connected");
    (client, ws)
}

/// Records the fixture and returns every message after the ANSWER up to RECORDING.
pub async fn record_fixture_messages(server: &TestServer, video: Codec) -> Vec<ServerMessage> {
    // Let the last packets land before stopping.
    record_fixture_messages_stop_at(server, video, StopAt::After(Duration::from_millis(300))).await
}

/// When a recording client sends STOP.
#[derive(Clone, Copy, Debug)]
pub enum StopAt {
    /// This long after the last packet.
    After(Duration),
    /// Just before the last video frame (and the audio sent with it), the way a browser's
    /// STOP overtakes the media still in its pipeline.
    BeforeLastFrame,
}

/// [`record_fixture_messages`], sending STOP at `stop`.
pub async fn record_fixture_messages_stop_at(
    server: &TestServer,
    video: Codec,
    stop: StopAt,
) -> Vec<ServerMessage> {
    let (client, mut ws) = start_recording(server.addr, video).await;
    let (v, a) = fixture_frames(video);
    match stop {
        StopAt::After(delay) => {
            send_media(&client, &v, &a).await;
            tokio::time::sleep(delay).await;
            send(&mut ws, ClientMessage::Stop.to_json()).await;
        }
        StopAt::BeforeLastFrame => {
            send_media_with(&client, &v, &a, async || {
                send(&mut ws, ClientMessage::Stop.to_json()).await;
            })
            .await;
        }
    }
    let mut messages = Vec::new();
    loop {
        let msg = next_msg(&mut ws, Duration::from_secs(10)).await;
        let done = matches!(msg, ServerMessage::Recording(_));
        messages.push(msg);
        if done {
            break;
        }
    }
    client.close().await;
    messages
}

/// What a viewer received.
#[derive(Default, Debug)]
pub struct Received {
    pub video: Vec<(Instant, RtpPacket)>,
    pub audio: Vec<(Instant, RtpPacket)>,
    pub messages: Vec<ServerMessage>,
}

/// Plays through `/ws` until the server says the session finished (or `limit` passes).
pub async fn play(
    server: &TestServer,
    request_extra: impl FnOnce(SessionDescription) -> ClientMessage,
    limit: Duration,
) -> Received {
    let (client, mut events) = Client::view(ViewOptions::default()).await.expect("viewer");
    let offer = client.offer().await.expect("offer");
    let mut ws = server.ws().await;
    send(&mut ws, request_extra(offer).to_json()).await;
    let mut got = Received::default();
    let answer = match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Answer(b64) => SessionDescription::decode(&b64).expect("answer decodes"),
        other => {
            got.messages.push(other);
            client.close().await;
            return got;
        }
    };
    // The viewer's answer makes the server DTLS client: the browser has its keys first.
    assert!(answer.sdp.contains("a=setup:active"), "{}", answer.sdp);
    client.set_answer(&answer).await.expect("answer applies");
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PeerEvent::Rtp { kind: MediaKind::Video, packet, arrival }) => got.video.push((arrival, packet)),
                Some(PeerEvent::Rtp { kind: MediaKind::Audio, packet, arrival }) => got.audio.push((arrival, packet)),
                Some(_) => {}
                None => break,
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let m: ServerMessage = serde_json::from_str(&t).expect("server message");
                    let finished = matches!(&m, ServerMessage::State(s) if s.is_end());
                    if !matches!(m, ServerMessage::State(_)) || finished {
                        got.messages.push(m);
                    }
                    if finished { break; }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    // Packets already in flight (bounded: a looping stream never stops by itself).
    let drain_until = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(ev) = tokio::time::timeout_at(drain_until, events.recv()).await {
        match ev {
            Some(PeerEvent::Rtp {
                kind: MediaKind::Video,
                packet,
                arrival,
            }) => got.video.push((arrival, packet)),
            Some(PeerEvent::Rtp {
                kind: MediaKind::Audio,
                packet,
                arrival,
            }) => got.audio.push((arrival, packet)),
            Some(_) => {}
            None => break,
        }
    }
    client.close().await;
    got
}

/// Plays every recording once (no loop) and collects what arrives.
pub async fn play_all_once(server: &TestServer, limit: Duration) -> Received {
    play(
        server,
        |offer| ClientMessage::Play {
            offer,
            looping: false,
            recordings: None,
        },
        limit,
    )
    .await
}

/// ffprobe's duration of a file in seconds and whether it printed errors; None without ffprobe.
pub fn ffprobe(path: &Path) -> Option<(f64, String)> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Some((stdout.parse().unwrap_or(-1.0), stderr))
}

/// A tiny HTTP/1.1 client (Connection: close): status, head (status line and headers), body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // `Host: <addr>` unless the caller sets its own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub async fn http_async(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
) -> (u16, String, Vec<u8>) {
    tokio::task::spawn_blocking(move || http(addr, method, &path, &headers, &body))
        .await
        .unwrap()
}

/// Seconds from `t0` to each packet's arrival minus its media time (from its kind's first
/// packet): the median is where that kind sits against the wall clock.
pub fn median_offset(
    packets: &[(std::time::Instant, media::rtp::RtpPacket)],
    clock: f64,
    t0: std::time::Instant,
) -> f64 {
    let ts0 = packets[0].1.timestamp;
    let mut offsets: Vec<f64> = packets
        .iter()
        .map(|(at, p)| (*at - t0).as_secs_f64() - f64::from(p.timestamp.wrapping_sub(ts0)) / clock)
        .collect();
    offsets.sort_by(f64::total_cmp);
    offsets[offsets.len() / 2]
}

/// Media seconds per wall second over a kind's packets.
pub fn pace(packets: &[(std::time::Instant, media::rtp::RtpPacket)], clock: f64) -> f64 {
    let (first, last) = (&packets[0], &packets[packets.len() - 1]);
    let media = f64::from(last.1.timestamp.wrapping_sub(first.1.timestamp)) / clock;
    media / (last.0 - first.0).as_secs_f64()
}
