//! `loadgen live`: one recorder (published over WHIP) and N viewers watching it live (over
//! `/ws` PLAY with `"live"`), all in this process, so send and arrival instants share a clock.
//!
//! - Latency: for every video frame a viewer completes (its marker packet), arrival minus the
//!   instant the recorder sent that same packet (matched by payload). That is the server's
//!   part of glass-to-glass on loopback: capture, encode and decode are not in it.
//! - Join: from sending PLAY to the first packet of a keyframe. The recorder answers a PLI as
//!   an encoder does: its next video frame is a keyframe (the fixture restarts at its first
//!   frame, timestamps continuing).
//! - CPU: the server's CPU while the recorder runs alone, then with the viewers; the difference
//!   per viewer-second.
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::protocol::{ClientMessage, SdpKind, SessionDescription};
use media::rtp::{RtpPacket, SeqUnwrapper};
use media::{Codec, MediaKind};
use pion_the_sky::rtc::PeerEvent;
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::fixture::{Fixture, kind_index};
use crate::procfs;
use crate::signal::{Signal, expect_answer};

/// Seconds the recorder runs alone before the viewers join (the CPU baseline).
const ALONE_SECONDS: f64 = 5.0;
/// Send instants kept per payload (the fixture repeats every few seconds).
const SENDS_KEPT: usize = 4;

/// When each packet was sent, by a hash of its payload.
#[derive(Default)]
struct Sends {
    by_payload: Mutex<HashMap<u64, Vec<Instant>>>,
}

fn payload_hash(payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

impl Sends {
    fn sent(&self, payload: &[u8], at: Instant) {
        let mut map = self.by_payload.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(payload_hash(payload)).or_default();
        if list.len() == SENDS_KEPT {
            list.remove(0);
        }
        list.push(at);
    }

    /// The latest send of this payload at or before `arrival`.
    fn latency(&self, payload: &[u8], arrival: Instant) -> Option<Duration> {
        let map = self.by_payload.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&payload_hash(payload))?
            .iter()
            .rev()
            .find(|t| **t <= arrival)
            .map(|t| arrival - *t)
    }
}

/// The recorder: WHIP, then the fixture in a loop until `stop`; a PLI makes the next video
/// frame the fixture's first (a keyframe).
async fn record(
    addr: SocketAddr,
    fixture: Arc<Fixture>,
    sends: Arc<Sends>,
    stop: CancellationToken,
    session_tx: tokio::sync::oneshot::Sender<Result<String, String>>,
) -> Result<u64, String> {
    let (client, mut events) = Client::record(RecordOptions {
        video: fixture.video,
        ..RecordOptions::default()
    })
    .await
    .map_err(|e| format!("client: {e}"))?;
    let offer = client.offer().await.map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(20);
    let posted = crate::signal::http(
        addr,
        "POST",
        "/whip?name=loadgen%20live",
        Some("application/sdp"),
        &offer.sdp,
        timeout,
    )
    .await?;
    if posted.status != 201 {
        let e = format!("WHIP POST: {} {}", posted.status, posted.body.trim());
        let _ = session_tx.send(Err(e.clone()));
        return Err(e);
    }
    let location = posted
        .header("location")
        .ok_or("WHIP: no Location")?
        .to_owned();
    let body = posted.body;
    client
        .set_answer(&SessionDescription {
            kind: SdpKind::Answer,
            sdp: body,
        })
        .await
        .map_err(|e| e.to_string())?;
    client
        .wait_connected(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let session = location.rsplit('/').next().unwrap_or_default().to_owned();
    let _ = session_tx.send(Ok(session));

    let ssrc = [client.ssrc(MediaKind::Video), client.ssrc(MediaKind::Audio)];
    let pt = [
        client.payload_type(fixture.video).unwrap_or(0),
        client.payload_type(Codec::Opus).unwrap_or(0),
    ];
    let mut seq = [1000u16, 5000u16];
    let start = tokio::time::Instant::now();
    // Position: loop n, item i; a PLI restarts the video at the fixture's first video frame.
    let mut sent = 0u64;
    let mut keyframe_wanted = false;
    // The media clock: offset added to the fixture's times on each (re)start.
    let mut base_us = 0u64;
    let mut index = 0usize;
    let video_first = fixture
        .items
        .iter()
        .position(|i| i.kind == MediaKind::Video)
        .unwrap_or(0);
    // RTP timestamps of the media clock's `base_us` (video, audio).
    let media_ts = |us: u64| {
        [
            (us * 90_000 / 1_000_000) as u32,
            (us * 48_000 / 1_000_000) as u32,
        ]
    };
    let mut ts_base = media_ts(0);
    while !stop.is_cancelled() {
        if index == fixture.items.len() {
            base_us += fixture.period_us;
            ts_base = media_ts(base_us);
            index = 0;
        }
        let item = &fixture.items[index];
        let due = start + Duration::from_micros(base_us + item.at_us);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            ev = events.recv() => {
                if let Some(PeerEvent::KeyframeRequested) = ev {
                    keyframe_wanted = true;
                }
                continue;
            }
            _ = stop.cancelled() => break,
        }
        if item.kind == MediaKind::Video && keyframe_wanted {
            keyframe_wanted = false;
            if index != video_first {
                // Restart at the keyframe, from this moment of the media clock on.
                base_us = (base_us + item.at_us).saturating_sub(fixture.items[video_first].at_us);
                ts_base = media_ts(base_us);
                index = video_first;
                continue;
            }
        }
        let i = kind_index(item.kind);
        let last = item.payloads.len().saturating_sub(1);
        for (k, payload) in item.payloads.iter().enumerate() {
            let packet = RtpPacket {
                payload_type: pt[i],
                sequence_number: seq[i],
                timestamp: ts_base[i].wrapping_add(item.ts),
                ssrc: ssrc[i],
                marker: item.kind == MediaKind::Video && k == last,
                payload: payload.clone(),
            };
            seq[i] = seq[i].wrapping_add(1);
            if packet.marker {
                sends.sent(&packet.payload, Instant::now());
            }
            if client.send(item.kind, &packet).await.is_ok() {
                sent += 1;
            }
        }
        index += 1;
    }
    let _ = crate::signal::http(addr, "DELETE", &location, None, "", timeout).await;
    client.close().await;
    Ok(sent)
}

#[derive(Default, Debug)]
struct ViewerResult {
    error: Option<String>,
    answer_ms: Option<f64>,
    connected_ms: Option<f64>,
    first_keyframe_ms: Option<f64>,
    frames: u64,
    lost_packets: u64,
    latencies_ms: Vec<f64>,
}

async fn view(
    addr: SocketAddr,
    session: String,
    codec: Codec,
    only: bool,
    sends: Arc<Sends>,
    stop: CancellationToken,
) -> ViewerResult {
    let mut r = ViewerResult::default();
    if let Err(e) = view_inner(addr, session, codec, only, &sends, &stop, &mut r).await {
        r.error = Some(e);
    }
    r
}

async fn view_inner(
    addr: SocketAddr,
    session: String,
    codec: Codec,
    only: bool,
    sends: &Sends,
    stop: &CancellationToken,
    r: &mut ViewerResult,
) -> Result<(), String> {
    // `only`: the viewer takes no other video codec (the server transcodes to it).
    let mut options = ViewOptions::default();
    if only {
        options.video.retain(|(c, _)| *c == codec);
    }
    let (client, mut events) = Client::view(options)
        .await
        .map_err(|e| format!("viewer: {e}"))?;
    let result = async {
        let offer = client.offer().await.map_err(|e| e.to_string())?;
        let mut signal = Signal::connect(addr).await?;
        let t0 = Instant::now();
        signal
            .send(&ClientMessage::Watch {
                offer,
                live: session,
            })
            .await?;
        let answer = expect_answer(&mut signal, Duration::from_secs(20)).await?;
        r.answer_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        client.set_answer(&answer).await.map_err(|e| e.to_string())?;
        client
            .wait_connected(Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string())?;
        r.connected_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        let mut seq = SeqUnwrapper::default();
        let mut highest: Option<u64> = None;
        let mut received = 0u64;
        let mut first: Option<u64> = None;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(PeerEvent::Rtp { kind: MediaKind::Video, packet, arrival }) => {
                        if r.first_keyframe_ms.is_none() {
                            if !media::forward::starts_keyframe(codec, &packet.payload) {
                                continue;
                            }
                            r.first_keyframe_ms = Some((arrival - t0).as_secs_f64() * 1000.0);
                        }
                        let s = seq.unwrap(packet.sequence_number);
                        first.get_or_insert(s);
                        highest = Some(highest.map_or(s, |h| h.max(s)));
                        received += 1;
                        if packet.marker {
                            r.frames += 1;
                            if let Some(l) = sends.latency(&packet.payload, arrival) {
                                r.latencies_ms.push(l.as_secs_f64() * 1000.0);
                            }
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                msg = signal.recv() => match msg {
                    Some(app::protocol::ServerMessage::Error(e)) => return Err(format!("server ERROR: {e}")),
                    Some(app::protocol::ServerMessage::State(s)) if s.is_end() => break,
                    Some(_) => {}
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
        }
        if let (Some(f), Some(h)) = (first, highest) {
            r.lost_packets = (h - f + 1).saturating_sub(received);
        }
        signal.close().await;
        Ok(())
    }
    .await;
    client.close().await;
    result
}

/// Runs the scenario against the server at `addr` (pid for CPU): the recorder alone, then
/// `viewers` joining `ramp` apart and watching for `seconds`.
pub async fn run(
    addr: SocketAddr,
    pid: u32,
    fixture: Arc<Fixture>,
    viewers: usize,
    seconds: f64,
    ramp: Duration,
    viewer_codec: Option<Codec>,
) -> Result<Value, String> {
    let sends = Arc::new(Sends::default());
    let stop_recorder = CancellationToken::new();
    let (session_tx, session_rx) = tokio::sync::oneshot::channel();
    let recorder = tokio::spawn(record(
        addr,
        fixture.clone(),
        sends.clone(),
        stop_recorder.clone(),
        session_tx,
    ));
    let session = session_rx
        .await
        .map_err(|_| "the recorder ended before it connected".to_owned())??;
    let tck = procfs::clk_tck();
    let who = pid.to_string();
    let cpu = || procfs::cpu_seconds(&who, tck).unwrap_or(0.0);
    // The recorder alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(ALONE_SECONDS)).await;
    let alone = (cpu() - c0) / t0.elapsed().as_secs_f64();
    let rss_before = procfs::rss_kb(&who).unwrap_or(0);

    // The viewers join, watch `seconds` together, and leave.
    let stop_viewers = CancellationToken::new();
    let mut tasks = Vec::with_capacity(viewers);
    for _ in 0..viewers {
        tasks.push(tokio::spawn(view(
            addr,
            session.clone(),
            viewer_codec.unwrap_or(fixture.video),
            viewer_codec.is_some(),
            sends.clone(),
            stop_viewers.clone(),
        )));
        tokio::time::sleep(ramp).await;
    }
    // Joined: everyone connected or failed (bounded).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c1, t1) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let together = (cpu() - c1) / t1.elapsed().as_secs_f64();
    let rss_peak = procfs::rss_kb(&who).unwrap_or(0);
    stop_viewers.cancel();
    let mut results = Vec::with_capacity(viewers);
    for t in tasks {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(30), t).await {
            results.push(r);
        }
    }
    stop_recorder.cancel();
    let packets_sent = tokio::time::timeout(Duration::from_secs(30), recorder)
        .await
        .map_err(|_| "the recorder did not end".to_owned())?
        .map_err(|e| e.to_string())??;

    let failed: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let latencies: Vec<f64> = results
        .iter()
        .flat_map(|r| r.latencies_ms.iter().copied())
        .collect();
    let per_viewer =
        |f: &dyn Fn(&ViewerResult) -> Option<f64>| crate::dist(results.iter().filter_map(f));
    let ok = results.len() == viewers && failed.is_empty();
    Ok(json!({
        "ok": ok,
        "viewers": viewers,
        "finished": results.len(),
        "failed": failed.len(),
        "errors": failed.iter().take(5).collect::<Vec<_>>(),
        "recorder_packets_sent": packets_sent,
        "latency_ms": crate::dist(latencies),
        "answer_ms": per_viewer(&|r| r.answer_ms),
        "connected_ms": per_viewer(&|r| r.connected_ms),
        "first_keyframe_ms": per_viewer(&|r| r.first_keyframe_ms),
        "frames_per_viewer": per_viewer(&|r| Some(r.frames as f64)),
        "lost_packets_per_viewer": per_viewer(&|r| Some(r.lost_packets as f64)),
        "server_cpu": {
            "recorder_alone_cores": crate::round3(alone),
            "with_viewers_cores": crate::round3(together),
            "per_viewer_second": if viewers > 0 { crate::round6((together - alone) / viewers as f64) } else { 0.0 },
        },
        "server_rss_mb": {
            "before_viewers": rss_before as f64 / 1024.0,
            "with_viewers": rss_peak as f64 / 1024.0,
        },
    }))
}
