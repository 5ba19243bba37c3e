//! One session each: a recorder sending the fixture in real time, a viewer measuring what it
//! receives, and a bare connect (offer, answer, DTLS up, close).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use app::protocol::{ClientMessage, ServerMessage, SessionDescription};
use media::rtp::{RtpPacket, SeqUnwrapper, TsUnwrapper};
use media::{Codec, MediaKind};
use pion_the_sky::rtc::PeerEvent;
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};

use crate::fixture::{Fixture, kind_index};
use crate::signal::{Signal, expect_answer};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const RECORDING_TIMEOUT: Duration = Duration::from_secs(30);

/// Sessions in each phase, for the steady-state CPU window and progress lines.
#[derive(Default)]
pub struct Live {
    pub started: AtomicUsize,
    pub connected: AtomicUsize,
    /// Sessions that finished their media phase (or failed before it).
    pub media_done: AtomicUsize,
    pub ended: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Live {
    pub fn active(&self) -> usize {
        self.connected
            .load(Ordering::Relaxed)
            .saturating_sub(self.media_done.load(Ordering::Relaxed))
    }
}

/// Marks the media phase done once (on every exit path).
struct MediaDone<'a>(&'a Live, bool);

impl MediaDone<'_> {
    fn done(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.media_done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for MediaDone<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug, Default, Clone)]
pub struct RecordResult {
    pub error: Option<String>,
    pub answer_ms: Option<f64>,
    pub connected_ms: Option<f64>,
    pub media_s: f64,
    pub frames_sent: [u64; 2],
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    /// How far behind schedule the sender got at worst (client-bound runs show here).
    pub max_send_lag_ms: f64,
    /// RECORDING's video_frames / audio_frames.
    pub frames_stored: Option<[u64; 2]>,
    pub recording_id: Option<String>,
}

/// Records `seconds` of the looped fixture: RECORD, ANSWER, connect, send paced, STOP,
/// RECORDING.
pub async fn record(
    addr: SocketAddr,
    fixture: Arc<Fixture>,
    seconds: f64,
    media_delay: Duration,
    live: &Live,
) -> RecordResult {
    let mut r = RecordResult::default();
    live.started.fetch_add(1, Ordering::Relaxed);
    let mut done = MediaDone(live, false);
    if let Err(e) = record_inner(
        addr,
        &fixture,
        seconds,
        media_delay,
        live,
        &mut done,
        &mut r,
    )
    .await
    {
        r.error = Some(e);
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    done.done();
    live.ended.fetch_add(1, Ordering::Relaxed);
    r
}

async fn record_inner(
    addr: SocketAddr,
    fixture: &Fixture,
    seconds: f64,
    media_delay: Duration,
    live: &Live,
    done: &mut MediaDone<'_>,
    r: &mut RecordResult,
) -> Result<(), String> {
    let (client, mut events) = Client::record(RecordOptions {
        video: fixture.video,
        video_pt: if fixture.video == Codec::H264 {
            125
        } else {
            120
        },
        audio_pt: 109,
        ..RecordOptions::default()
    })
    .await
    .map_err(|e| format!("client: {e}"))?;
    // Nothing to read (PLIs, state); keep the channel drained. Ends when the client is gone.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let result = async {
        let mut signal =
            record_connected(&client, addr, live, &mut r.answer_ms, &mut r.connected_ms).await?;
        // webrtc-rs reports "connected" on our side before the server has its SRTP keys;
        // packets sent in that window are dropped by the server (its log: "remote_srtp_context
        // is not set yet"), and with them the first keyframe. A short wait keeps that startup
        // race out of the loss figures (`--media-delay-ms 0` shows it).
        tokio::time::sleep(media_delay).await;

        let media_start = Instant::now();
        send_fixture(&client, fixture, seconds, r).await;
        r.media_s = media_start.elapsed().as_secs_f64();
        done.done();

        // Let the last packets land, then STOP and wait for the finished recording.
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal.send(&ClientMessage::Stop).await?;
        let deadline = Instant::now() + RECORDING_TIMEOUT;
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match signal.next(left).await? {
                ServerMessage::Recording(meta) => {
                    r.frames_stored = Some([meta.video_frames, meta.audio_frames]);
                    r.recording_id = Some(meta.id);
                    break Ok(());
                }
                ServerMessage::Error(e) => break Err(format!("server ERROR: {e}")),
                _ => {}
            }
        };
        signal.close().await;
        outcome
    }
    .await;
    client.close().await;
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    result
}

/// Sends the fixture in a loop for `seconds`, paced by the frame timestamps; RTP timestamps
/// and sequence numbers continue across loops.
async fn send_fixture(client: &Client, fixture: &Fixture, seconds: f64, r: &mut RecordResult) {
    let ssrc = [client.ssrc(MediaKind::Video), client.ssrc(MediaKind::Audio)];
    let pt = [
        client.payload_type(fixture.video).unwrap_or(0),
        client.payload_type(Codec::Opus).unwrap_or(0),
    ];
    let ts_base = [pion_the_sky::random::u32(), pion_the_sky::random::u32()];
    let mut seq = [pion_the_sky::random::u16(), pion_the_sky::random::u16()];
    let limit_us = (seconds * 1e6) as u64;
    let start = tokio::time::Instant::now();
    // Bounded: at most limit/period + 1 loops.
    let loops = limit_us / fixture.period_us.max(1) + 1;
    'outer: for n in 0..loops {
        for item in &fixture.items {
            let at = n * fixture.period_us + item.at_us;
            if at >= limit_us {
                break 'outer;
            }
            let due = start + Duration::from_micros(at);
            let now = tokio::time::Instant::now();
            if due > now {
                tokio::time::sleep_until(due).await;
            } else {
                r.max_send_lag_ms = r.max_send_lag_ms.max(ms(now - due));
            }
            let i = kind_index(item.kind);
            let ts = ts_base[i]
                .wrapping_add(item.ts)
                .wrapping_add((n as u32).wrapping_mul(fixture.period_ts[i]));
            let last = item.payloads.len().saturating_sub(1);
            for (k, payload) in item.payloads.iter().enumerate() {
                let packet = RtpPacket {
                    payload_type: pt[i],
                    sequence_number: seq[i],
                    timestamp: ts,
                    ssrc: ssrc[i],
                    marker: item.kind == MediaKind::Video && k == last,
                    payload: payload.clone(),
                };
                seq[i] = seq[i].wrapping_add(1);
                match client.send(item.kind, &packet).await {
                    Ok(()) => {
                        r.packets_sent += 1;
                        r.bytes_sent += payload.len() as u64;
                    }
                    Err(_) => {
                        r.send_errors += 1;
                        if r.send_errors > 100 {
                            break 'outer;
                        }
                    }
                }
            }
            r.frames_sent[i] += 1;
        }
    }
}

/// Sequence accounting for one received stream.
#[derive(Debug, Default, Clone)]
pub struct SeqStats {
    unwrap: SeqUnwrapper,
    highest: Option<u64>,
    pub packets: u64,
    /// Places where the sequence jumped forward by more than one.
    pub gaps: u64,
    /// Sequence numbers skipped over by those jumps.
    pub missing: u64,
    /// Packets at or below the highest sequence number seen (late or duplicate).
    pub late: u64,
}

impl SeqStats {
    fn push(&mut self, seq: u16) {
        self.packets += 1;
        let e = self.unwrap.unwrap(seq);
        match self.highest {
            None => self.highest = Some(e),
            Some(h) if e > h => {
                if e > h + 1 {
                    self.gaps += 1;
                    self.missing += e - h - 1;
                }
                self.highest = Some(e);
            }
            Some(_) => self.late += 1,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct ViewResult {
    pub error: Option<String>,
    pub answer_ms: Option<f64>,
    pub connected_ms: Option<f64>,
    pub first_packet_ms: Option<f64>,
    pub first_keyframe_ms: Option<f64>,
    pub media_s: f64,
    pub video: SeqStats,
    pub audio: SeqStats,
    /// Received video: wall span minus RTP media span (ms) and as % of the media span.
    pub pacing_error_ms: Option<f64>,
    pub pacing_error_pct: Option<f64>,
    /// max - min of (arrival offset - media offset) over the video packets.
    pub drift_spread_ms: Option<f64>,
}

/// Pacing of received video against its RTP timestamps.
#[derive(Default)]
struct Pacing {
    ts: TsUnwrapper,
    first: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
    min_drift: f64,
    max_drift: f64,
}

impl Pacing {
    fn push(&mut self, arrival: Instant, ts: u32) {
        let ts = self.ts.unwrap(ts);
        let Some((a0, t0)) = self.first else {
            self.first = Some((arrival, ts));
            self.last = Some((arrival, ts));
            return;
        };
        let wall = ms(arrival.saturating_duration_since(a0));
        let media = (ts as f64 - t0 as f64) / 90.0;
        let drift = wall - media;
        self.min_drift = self.min_drift.min(drift);
        self.max_drift = self.max_drift.max(drift);
        if self.last.is_none_or(|(_, t)| ts >= t) {
            self.last = Some((arrival, ts));
        }
    }

    fn finish(&self, r: &mut ViewResult) {
        let (Some((a0, t0)), Some((a1, t1))) = (self.first, self.last) else {
            return;
        };
        let media = (t1 - t0) as f64 / 90.0;
        if media <= 0.0 {
            return;
        }
        let wall = ms(a1.saturating_duration_since(a0));
        r.pacing_error_ms = Some(wall - media);
        r.pacing_error_pct = Some((wall - media) / media * 100.0);
        r.drift_spread_ms = Some(self.max_drift - self.min_drift);
    }
}

/// What a viewer session does after the first keyframe.
#[derive(Clone, Copy, Debug)]
pub enum ViewLength {
    /// Watch for this long after connecting.
    Seconds(f64),
    /// Stop as soon as the first keyframe arrived (churn).
    FirstKeyframe,
}

/// What a viewer offers and plays.
#[derive(Clone, Debug, Default)]
pub struct ViewChoice {
    /// The only video codec it takes (clips in the other one are transcoded); both if `None`.
    pub video: Option<Codec>,
    /// The recordings it plays; all if `None`.
    pub recordings: Option<Vec<String>>,
}

/// PLAY (looping, every recording), measure for `length`, STOP.
pub async fn view(addr: SocketAddr, length: ViewLength, live: &Live) -> ViewResult {
    view_as(addr, length, live, &ViewChoice::default()).await
}

/// [`view`] with the viewer's codec and playlist chosen.
pub async fn view_as(
    addr: SocketAddr,
    length: ViewLength,
    live: &Live,
    choice: &ViewChoice,
) -> ViewResult {
    let mut r = ViewResult::default();
    live.started.fetch_add(1, Ordering::Relaxed);
    let mut done = MediaDone(live, false);
    if let Err(e) = view_inner(addr, length, live, choice, &mut done, &mut r).await {
        r.error = Some(e);
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    done.done();
    live.ended.fetch_add(1, Ordering::Relaxed);
    r
}

async fn view_inner(
    addr: SocketAddr,
    length: ViewLength,
    live: &Live,
    choice: &ViewChoice,
    done: &mut MediaDone<'_>,
    r: &mut ViewResult,
) -> Result<(), String> {
    let mut options = ViewOptions::default();
    if let Some(only) = choice.video {
        options.video.retain(|(c, _)| *c == only);
    }
    let (client, mut events) = Client::view(options)
        .await
        .map_err(|e| format!("client: {e}"))?;
    let pts = client.payload_types();
    let result = async {
        let play = |offer| ClientMessage::Play {
            offer,
            looping: true,
            recordings: choice.recordings.clone(),
        };
        let (mut signal, sent) = offer_answer(&client, addr, play, &mut r.answer_ms).await?;

        let mut pacing = Pacing::default();
        let hard = tokio::time::Instant::now()
            + CONNECT_TIMEOUT
            + match length {
                ViewLength::Seconds(s) => Duration::from_secs_f64(s),
                ViewLength::FirstKeyframe => CONNECT_TIMEOUT,
            };
        let mut media_start: Option<Instant> = None;
        let mut end: Option<tokio::time::Instant> = None;
        let outcome: Result<(), String> = loop {
            let wake = end.unwrap_or(hard).min(hard);
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(PeerEvent::Rtp { kind, packet, arrival }) => {
                        if r.first_packet_ms.is_none() {
                            r.first_packet_ms = Some(ms(arrival.saturating_duration_since(sent)));
                        }
                        match kind {
                            MediaKind::Audio => r.audio.push(packet.sequence_number),
                            MediaKind::Video => {
                                r.video.push(packet.sequence_number);
                                if r.first_keyframe_ms.is_none() {
                                    let codec = pts.iter().find(|(_, pt)| *pt == packet.payload_type).map(|(c, _)| *c);
                                    if codec.is_some_and(|c| media::forward::starts_keyframe(c, &packet.payload)) {
                                        r.first_keyframe_ms = Some(ms(arrival.saturating_duration_since(sent)));
                                        if matches!(length, ViewLength::FirstKeyframe) {
                                            end = Some(tokio::time::Instant::now());
                                        }
                                    }
                                }
                                pacing.push(arrival, packet.timestamp);
                            }
                        }
                    }
                    Some(PeerEvent::State(pion_the_sky::rtc::PeerState::Connected)) => {
                        if r.connected_ms.is_none() {
                            r.connected_ms = Some(ms(sent.elapsed()));
                            live.connected.fetch_add(1, Ordering::Relaxed);
                            media_start = Some(Instant::now());
                            if let ViewLength::Seconds(s) = length {
                                end = Some(tokio::time::Instant::now() + Duration::from_secs_f64(s));
                            }
                        }
                    }
                    Some(PeerEvent::State(pion_the_sky::rtc::PeerState::Failed | pion_the_sky::rtc::PeerState::Closed)) => {
                        break Err("the viewer's connection failed".into());
                    }
                    Some(_) => {}
                    None => break Err("the viewer's event channel closed".into()),
                },
                msg = signal.recv() => match msg {
                    Some(ServerMessage::Error(e)) => break Err(format!("server ERROR: {e}")),
                    Some(ServerMessage::State(s)) if s.is_end() => break Err(format!("playback {} early", s.phase)),
                    Some(_) => {}
                    None => break Err("the server closed the websocket".into()),
                },
                _ = tokio::time::sleep_until(wake) => {
                    if end.is_some_and(|e| e <= tokio::time::Instant::now()) {
                        break Ok(());
                    }
                    break Err(if r.connected_ms.is_none() {
                        "the viewer did not connect in time".into()
                    } else {
                        "no keyframe arrived in time".into()
                    });
                }
            }
        };
        r.media_s = media_start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        done.done();
        pacing.finish(r);
        let _ = signal.send(&ClientMessage::Stop).await;
        // The server confirms with STATE stopped (or finished); don't wait long for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(m) = signal
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            if matches!(&m, ServerMessage::State(s) if s.is_end()) {
                break;
            }
        }
        while signal.try_next().is_some() {}
        signal.close().await;
        outcome
    }
    .await;
    client.close().await;
    result
}

#[derive(Debug, Default, Clone)]
pub struct ConnectResult {
    pub error: Option<String>,
    pub answer_ms: Option<f64>,
    pub connected_ms: Option<f64>,
}

/// RECORD, ANSWER, DTLS up, then close the socket (the server ends the empty recording).
pub async fn connect(addr: SocketAddr, video: Codec, live: &Live) -> ConnectResult {
    let mut r = ConnectResult::default();
    live.started.fetch_add(1, Ordering::Relaxed);
    let mut done = MediaDone(live, false);
    let result = async {
        let (client, mut events) = Client::record(RecordOptions {
            video,
            ..RecordOptions::default()
        })
        .await
        .map_err(|e| format!("client: {e}"))?;
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        let inner = async {
            let signal =
                record_connected(&client, addr, live, &mut r.answer_ms, &mut r.connected_ms)
                    .await?;
            done.done();
            signal.close().await;
            Ok::<(), String>(())
        }
        .await;
        client.close().await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        inner
    }
    .await;
    if let Err(e) = result {
        r.error = Some(e);
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    done.done();
    live.ended.fetch_add(1, Ordering::Relaxed);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps() {
        let mut s = SeqStats::default();
        for seq in [65534u16, 65535, 0, 3, 2, 4] {
            s.push(seq);
        }
        assert_eq!((s.packets, s.gaps, s.missing, s.late), (6, 1, 2, 1));
    }
}

/// Offer, `message(offer)` on a new `/ws`, ANSWER applied. Returns the socket and when the
/// offer was sent; `answer_ms` is set as soon as the answer is back.
async fn offer_answer(
    client: &Client,
    addr: SocketAddr,
    message: impl FnOnce(SessionDescription) -> ClientMessage,
    answer_ms: &mut Option<f64>,
) -> Result<(Signal, Instant), String> {
    let offer = client.offer().await.map_err(|e| format!("offer: {e}"))?;
    let mut signal = Signal::connect(addr).await?;
    let sent = Instant::now();
    signal.send(&message(offer)).await?;
    let answer = expect_answer(&mut signal, ANSWER_TIMEOUT).await?;
    *answer_ms = Some(ms(sent.elapsed()));
    client
        .set_answer(&answer)
        .await
        .map_err(|e| format!("answer: {e}"))?;
    Ok((signal, sent))
}

/// RECORD through [`offer_answer`], then wait until DTLS is up (`connected_ms`).
async fn record_connected(
    client: &Client,
    addr: SocketAddr,
    live: &Live,
    answer_ms: &mut Option<f64>,
    connected_ms: &mut Option<f64>,
) -> Result<Signal, String> {
    let record = |offer| ClientMessage::Record { offer };
    let (signal, sent) = offer_answer(client, addr, record, answer_ms).await?;
    client
        .wait_connected(CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    *connected_ms = Some(ms(sent.elapsed()));
    live.connected.fetch_add(1, Ordering::Relaxed);
    Ok(signal)
}
