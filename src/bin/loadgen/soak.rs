//! `loadgen soak`: a long, mixed, partly hostile load, and what it leaves behind in the
//! server's memory, file descriptors and threads.
//!
//! ```text
//! loadgen soak --seconds 1800 --out bench/soak-1800.json     # the benchmark
//! loadgen soak --seconds 30 --out bench/soak-smoke.json      # CI smoke test
//! ```
//!
//! Phases, all on loopback:
//!
//! 1. **Baseline**: one sample of the server (`VmRSS`, entries of `/proc/PID/fd`, `Threads`)
//!    before any client connects.
//! 2. **Load**, `--seconds`:
//!    - `--recorders` slots, each recording `--record-seconds` of the fixture, STOP, RECORDING,
//!      again ([`session::record`]);
//!    - `--viewers` slots, from the first recording on, each playing `--view-seconds` and then
//!      alternately sending STOP ([`session::view`]) or closing the socket without it
//!      ([`view_then_close`]);
//!    - one hostile client every `--hostile-interval-ms`, at most `--hostile-concurrency` at
//!      once (a tick that finds them all busy is skipped and counted), in turn: [`junk`]
//!      (2,000 malformed messages, replies never read), [`abandon`] (a real RECORD offer whose
//!      answer is never applied), [`bad_profile`] (an H264 offer with
//!      `profile-level-id=4€00`), [`silent`] (a socket that says nothing for a second);
//!    - a sample line on stderr every `--sample-seconds`.
//! 3. **Settle**: the load stops, sessions in flight finish, and after `--settle-seconds`
//!    (default 15 here) the last sample is taken.
//!
//! The report (JSON) has every sample, the baseline, the final sample and their deltas, the
//! sessions and hostile attempts with their outcomes, and the failures. `ok` is false, and
//! the loadgen exits non-zero, when something happened that should not: a recorder without
//! its RECORDING, a viewer without ANSWER (or whose playback broke), a hostile client that
//! did not get the reply the server owes it (ANSWER to the abandoned RECORD, ERROR to the bad
//! profile), a session still running long after the load ended, or the server process gone.
//! RSS / fd / thread growth is reported, never asserted: those are benchmark goals. Note that
//! the RSS includes the store's index of the recordings the run made (with the defaults about
//! nine a minute per recorder slot), and the spawned server's temp dir holds their files.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use app::protocol::{ClientMessage, ServerMessage, SessionDescription};
use futures::SinkExt;
use media::{Codec, MediaKind};
use pion_the_sky::rtc::client::{Client, RecordOptions, ViewOptions};
use pion_the_sky::rtc::{PeerEvent, PeerState};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::fixture::Fixture;
use crate::server::Server;
use crate::session::{self, Live, RecordResult, ViewLength, ViewResult};
use crate::signal::{Signal, connect_ws, expect_answer};
use crate::{Measure, SoakArgs, dist, errors, play_section, procfs, record_section, round3};
use media::forward::starts_keyframe;

/// ANSWER and "connected" for the viewers that leave without STOP (as in `session`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a hostile client waits for the one reply it expects.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Every hostile attempt ends within this.
const HOSTILE_LIMIT: Duration = Duration::from_secs(60);
/// After the load phase: how long sessions in flight may take to end, beyond their media.
const GRACE: Duration = Duration::from_secs(90);

/// Malformed messages the junk client cycles through.
const JUNK: [&str; 8] = [
    "hello",
    r#"{"op":"DANCE"}"#,
    "{",
    "[]",
    r#"{"op":"RECORD"}"#,
    r#"{"op":"RECORD","data":"%%%"}"#,
    r#"{"op":"PLAY","data":"e30="}"#,
    r#"{"op":"PLAY","data":42,"loop":"yes"}"#,
];
const JUNK_MESSAGES: usize = 2000;
/// Six bytes like a real profile-level-id, but byte 2 is inside the '€'.
const BAD_PROFILE_LEVEL_ID: &str = "4€00";
/// How long the abandoned RECORD's socket stays open after the ANSWER.
const ABANDON_HOLD: Duration = Duration::from_secs(2);
/// How long the silent socket stays open.
const SILENT_HOLD: Duration = Duration::from_secs(1);

/// The scenario's parameters, for the report.
pub fn params(a: &SoakArgs) -> Value {
    json!({
        "seconds": a.seconds,
        "recorders": a.recorders,
        "record_seconds": a.record_seconds,
        "viewers": a.viewers,
        "view_seconds": a.view_seconds,
        "hostile_interval_ms": a.hostile_interval_ms,
        "hostile_concurrency": a.hostile_concurrency,
        "sample_seconds": a.sample_seconds,
        "settle_seconds": a.common.settle_seconds,
    })
}

/// Runs the soak against `server`; the report's `ok` says whether anything unexpected
/// happened.
pub async fn run(a: &SoakArgs, server: &Server, fixture: Arc<Fixture>) -> Result<Value, String> {
    let pid = server.pid;
    let common = &a.common;
    let seconds = a.seconds.max(0.0);
    let every = Duration::from_secs_f64(a.sample_seconds.max(0.5));
    let t0 = Instant::now();
    let ctx = Arc::new(Ctx {
        addr: server.addr,
        codec: common.codec.codec(),
        fixture,
        media_delay: Duration::from_millis(common.media_delay_ms),
        record_seconds: a.record_seconds.max(0.5),
        view_seconds: a.view_seconds.max(0.5),
        live: Live::default(),
        recordings: AtomicUsize::new(0),
        results: Mutex::default(),
        stop: AtomicBool::new(false),
        load_end: t0 + Duration::from_secs_f64(seconds),
    });

    let baseline = Sample::take("baseline", pid, t0, &ctx);
    if !alive(pid) {
        return Err(format!("the server (pid {pid}) is not running"));
    }
    eprintln!(
        "soak: {seconds} s of load: {} recorders ({} s each), {} viewers ({} s each), a hostile client every {} ms (at most {} at once); a sample every {} s",
        a.recorders,
        ctx.record_seconds,
        a.viewers,
        ctx.view_seconds,
        a.hostile_interval_ms,
        a.hostile_concurrency,
        every.as_secs_f64(),
    );
    baseline.print();
    let mut samples = vec![baseline];

    // The load.
    let measure = Measure::start(pid);
    let ramp = Duration::from_millis(common.ramp_ms);
    let mut load = JoinSet::new();
    for i in 0..a.recorders {
        load.spawn(recorder_slot(ctx.clone(), ramp * i as u32));
    }
    for i in 0..a.viewers {
        load.spawn(viewer_slot(ctx.clone(), i, ramp * i as u32));
    }
    if a.hostile_concurrency > 0 {
        let interval = Duration::from_millis(a.hostile_interval_ms.max(10));
        load.spawn(hostile_loop(ctx.clone(), interval, a.hostile_concurrency));
    }

    // Sampling until the load phase ends (or the server dies).
    let mut died = false;
    // Bounded: one pass per sample, the last one at the end of the load phase.
    for n in 1..=((seconds / every.as_secs_f64()).ceil() as u32 + 1) {
        let at = (t0 + every * n).min(ctx.load_end);
        tokio::time::sleep_until(at.into()).await;
        let s = Sample::take("load", pid, t0, &ctx);
        s.print();
        samples.push(s);
        if !alive(pid) {
            died = true;
            eprintln!("soak: the server process {pid} is gone; stopping the load");
            break;
        }
        if Instant::now() >= ctx.load_end {
            break;
        }
    }
    ctx.stop.store(true, Ordering::Relaxed);
    let load_s = t0.elapsed().as_secs_f64();

    // Sessions in flight finish; stragglers are aborted and counted.
    let grace = if died {
        Duration::from_secs(5)
    } else {
        Duration::from_secs_f64(ctx.record_seconds.max(ctx.view_seconds)) + GRACE
    };
    eprintln!("soak: load phase over; waiting (at most {grace:?}) for the sessions in flight");
    let mut panicked = 0usize;
    let _ = tokio::time::timeout(grace, async {
        while let Some(done) = load.join_next().await {
            panicked += usize::from(done.is_err());
        }
    })
    .await;
    let unfinished = load.len();
    load.abort_all();
    let server_cpu = measure.server_cpu();
    let loadgen_cpu = measure.self_cpu();
    let drained = Sample::take("drained", pid, t0, &ctx);
    drained.print();
    samples.push(drained);

    // Settle, then the last sample.
    if !died {
        tokio::time::sleep(Duration::from_secs_f64(common.settle_seconds.max(0.0))).await;
    }
    let last = Sample::take("settled", pid, t0, &ctx);
    last.print();
    samples.push(last);
    died |= !alive(pid);
    let rss_peak = samples
        .iter()
        .filter_map(|s| s.rss_kb)
        .chain([measure.peak.peak_kb()])
        .max();
    drop(measure);

    // What went wrong, by reason.
    let res = ctx.results();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut fail = |why: String, n: usize| {
        if n > 0 {
            *failures.entry(why).or_default() += n;
        }
    };
    for r in res.records.iter().filter(|r| r.recording_id.is_none()) {
        let why = r.error.as_deref().unwrap_or("no RECORDING");
        fail(format!("recorder: {why}"), 1);
    }
    for (how, views) in [("STOP", &res.views_stopped), ("close", &res.views_closed)] {
        for e in views.iter().filter_map(|v| v.error.as_deref()) {
            fail(format!("viewer ({how}): {e}"), 1);
        }
    }
    for (kind, tally) in Hostile::ALL.iter().zip(&res.hostile) {
        for (what, n) in &tally.unexpected {
            fail(format!("hostile {}: {what}", kind.name()), *n);
        }
    }
    fail("hostile attempts unfinished".into(), res.hostile_unfinished);
    fail("load tasks unfinished after the grace".into(), unfinished);
    fail(
        "load tasks panicked".into(),
        panicked + res.hostile_panicked,
    );
    fail("the server process died".into(), usize::from(died));
    let failed: usize = failures.values().sum();

    let views = || res.views_stopped.iter().chain(&res.views_closed);
    let recorders_failed = res
        .records
        .iter()
        .filter(|r| r.recording_id.is_none())
        .count();
    let viewers_failed = views().filter(|v| v.error.is_some()).count();
    let hostile_attempts: usize = res.hostile.iter().map(|t| t.attempts).sum();
    let hostile_unexpected: usize = res.hostile.iter().map(HostileTally::unexpected_count).sum();
    let hostile_json: serde_json::Map<String, Value> = Hostile::ALL
        .iter()
        .zip(&res.hostile)
        .map(|(kind, t)| (kind.name().to_owned(), t.json()))
        .collect();
    let report = json!({
        "scenario": "soak",
        "params": params(a),
        "codec": common.codec.name(),
        "workers": {"loadgen": common.workers, "server": if server.spawned { json!(common.server_workers) } else { json!("attached") }},
        "ok": failed == 0,
        "failures": { "total": failed, "reasons": failures },
        "server_died": died,
        "load_s": round3(load_s),
        "sessions": {
            "done": ctx.live.ended.load(Ordering::Relaxed),
            "recorders": res.records.len(),
            "recorders_failed": recorders_failed,
            "recordings_made": ctx.recordings.load(Ordering::Relaxed),
            "viewers_stopped": res.views_stopped.len(),
            "viewers_closed": res.views_closed.len(),
            "viewers_failed": viewers_failed,
            "unfinished": unfinished,
            "errors": errors(res.records.iter().map(|r| r.error.clone())
                .chain(views().map(|v| v.error.clone()))),
        },
        "setup_ms": {
            "answer": dist(res.records.iter().filter_map(|r| r.answer_ms).chain(views().filter_map(|v| v.answer_ms))),
            "connected": dist(res.records.iter().filter_map(|r| r.connected_ms).chain(views().filter_map(|v| v.connected_ms))),
        },
        "record": record_section(&res.records),
        "play": play_section(&res.views_stopped),
        "play_closed": closed_section(&res.views_closed),
        "hostile": {
            "attempts": hostile_attempts,
            "unexpected": hostile_unexpected,
            "skipped_busy": res.hostile_skipped,
            "unfinished": res.hostile_unfinished,
            "by_kind": hostile_json,
        },
        "server_cpu_s": round3(server_cpu),
        "loadgen_cpu_s": round3(loadgen_cpu),
        "baseline": baseline.json(),
        "final": last.json(),
        "peak": {
            "rss_kb": rss_peak,
            "fds": samples.iter().filter_map(|s| s.fds).max(),
            "threads": samples.iter().filter_map(|s| s.threads).max(),
        },
        "delta": {
            "rss_mb": delta(baseline.rss_kb, last.rss_kb).map(|kb| round3(kb as f64 / 1024.0)),
            "fds": delta(baseline.fds, last.fds),
            "threads": delta(baseline.threads, last.threads),
        },
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
    });

    // The summary.
    eprintln!(
        "soak: {:.0} s: {} recordings ({} recorder failures), {} viewers ({} STOP, {} closed; {} failed), {} hostile clients ({} unexpected, {} skipped busy)",
        load_s,
        ctx.recordings.load(Ordering::Relaxed),
        recorders_failed,
        views().count(),
        res.views_stopped.len(),
        res.views_closed.len(),
        viewers_failed,
        hostile_attempts,
        hostile_unexpected,
        res.hostile_skipped,
    );
    eprintln!(
        "soak: server baseline -> {:.0} s after the load: RSS {} -> {} MB ({}), fds {} -> {} ({}), threads {} -> {} ({})",
        common.settle_seconds,
        mb(baseline.rss_kb),
        mb(last.rss_kb),
        signed(delta(baseline.rss_kb, last.rss_kb).map(|kb| kb as f64 / 1024.0)),
        opt(baseline.fds),
        opt(last.fds),
        signed(delta(baseline.fds, last.fds).map(|d| d as f64)),
        opt(baseline.threads),
        opt(last.threads),
        signed(delta(baseline.threads, last.threads).map(|d| d as f64)),
    );
    if failed == 0 {
        eprintln!("soak: OK");
    } else {
        eprintln!("soak: FAILED ({failed}):");
        for (why, n) in &failures {
            eprintln!("  {n} x {why}");
        }
    }
    Ok(report)
}

/// What every load task shares.
struct Ctx {
    addr: SocketAddr,
    /// The server's recording codec.
    codec: Codec,
    fixture: Arc<Fixture>,
    media_delay: Duration,
    record_seconds: f64,
    view_seconds: f64,
    live: Live,
    /// RECORDINGs received so far (viewers and the bad-profile PLAY wait for the first).
    recordings: AtomicUsize,
    results: Mutex<Results>,
    /// Set when the load phase is over (time is up, or the server died).
    stop: AtomicBool,
    load_end: Instant,
}

impl Ctx {
    /// Whether new sessions may start.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.load_end
    }

    /// An upper bound on the sessions of `seconds` one slot can run in the load phase.
    fn passes(&self, seconds: f64) -> usize {
        let left = self.load_end.saturating_duration_since(Instant::now());
        (left.as_secs_f64() / seconds).ceil() as usize + 1
    }

    fn results(&self) -> MutexGuard<'_, Results> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every finished session and hostile attempt.
#[derive(Default)]
struct Results {
    records: Vec<RecordResult>,
    /// Viewers that ended with STOP, and those that closed the socket instead.
    views_stopped: Vec<ViewResult>,
    views_closed: Vec<ViewResult>,
    /// By [`Hostile`] (its index in [`Hostile::ALL`]).
    hostile: [HostileTally; 4],
    /// Ticks that found `--hostile-concurrency` attempts still running.
    hostile_skipped: usize,
    hostile_unfinished: usize,
    hostile_panicked: usize,
}

/// One slot: record, STOP, RECORDING, again, until the load phase ends.
async fn recorder_slot(ctx: Arc<Ctx>, start_after: Duration) {
    tokio::time::sleep(start_after).await;
    // Bounded: each pass records `record_seconds` of media.
    for _ in 0..ctx.passes(ctx.record_seconds) {
        if !ctx.running() {
            break;
        }
        let r = session::record(
            ctx.addr,
            ctx.fixture.clone(),
            ctx.record_seconds,
            ctx.media_delay,
            &ctx.live,
        )
        .await;
        if r.recording_id.is_some() {
            ctx.recordings.fetch_add(1, Ordering::Relaxed);
        }
        ctx.results().records.push(r);
    }
}

/// One slot: once a recording exists, play, then STOP or close the socket (in turn), again.
async fn viewer_slot(ctx: Arc<Ctx>, slot: usize, start_after: Duration) {
    tokio::time::sleep(start_after).await;
    // Bounded by the end of the load phase.
    while ctx.recordings.load(Ordering::Relaxed) == 0 {
        if !ctx.running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bounded: each pass plays `view_seconds`.
    for pass in 0..ctx.passes(ctx.view_seconds) {
        if !ctx.running() {
            break;
        }
        if (slot + pass).is_multiple_of(2) {
            let length = ViewLength::Seconds(ctx.view_seconds);
            let r = session::view(ctx.addr, length, &ctx.live).await;
            ctx.results().views_stopped.push(r);
        } else {
            let r = view_then_close(ctx.addr, ctx.view_seconds, &ctx.live).await;
            ctx.results().views_closed.push(r);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `client`'s offer (ICE gathering complete).
async fn offer(client: &Client) -> Result<SessionDescription, String> {
    client.offer().await.map_err(|e| format!("offer: {e}"))
}

/// A new `/ws` with `msg` sent on it, and when it was sent.
async fn open(addr: SocketAddr, msg: &ClientMessage) -> Result<(Signal, Instant), String> {
    let mut signal = Signal::connect(addr).await?;
    let sent = Instant::now();
    if let Err(e) = signal.send(msg).await {
        signal.close().await;
        return Err(e);
    }
    Ok((signal, sent))
}

/// A viewer that leaves the way a closed tab does: PLAY, ANSWER, connected, receive for
/// `seconds`, then close the socket without STOP. Counts packets and the first keyframe
/// (no sequence accounting: `play_closed` in the report).
async fn view_then_close(addr: SocketAddr, seconds: f64, live: &Live) -> ViewResult {
    let mut r = ViewResult::default();
    live.started.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = view_then_close_inner(addr, seconds, live, &mut r).await {
        r.error = Some(e);
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    live.media_done.fetch_add(1, Ordering::Relaxed);
    live.ended.fetch_add(1, Ordering::Relaxed);
    r
}

async fn view_then_close_inner(
    addr: SocketAddr,
    seconds: f64,
    live: &Live,
    r: &mut ViewResult,
) -> Result<(), String> {
    let (client, mut events) = Client::view(ViewOptions::default())
        .await
        .map_err(|e| format!("client: {e}"))?;
    let pts = client.payload_types();
    let result = async {
        let play = ClientMessage::Play {
            offer: offer(&client).await?,
            looping: true,
            recordings: None,
        };
        let (mut signal, sent) = open(addr, &play).await?;
        let outcome: Result<(), String> = async {
            let answer = expect_answer(&mut signal, ANSWER_TIMEOUT).await?;
            r.answer_ms = Some(ms(sent.elapsed()));
            client
                .set_answer(&answer)
                .await
                .map_err(|e| format!("answer: {e}"))?;
            client
                .wait_connected(CONNECT_TIMEOUT)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            r.connected_ms = Some(ms(sent.elapsed()));
            live.connected.fetch_add(1, Ordering::Relaxed);
            let watching = Instant::now();
            let mut until = std::pin::pin!(tokio::time::sleep(Duration::from_secs_f64(seconds)));
            // Bounded by `until`.
            let watched: Result<(), String> = loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(PeerEvent::Rtp { kind, packet, arrival }) => {
                            if r.first_packet_ms.is_none() {
                                r.first_packet_ms = Some(ms(arrival.saturating_duration_since(sent)));
                            }
                            match kind {
                                MediaKind::Audio => r.audio.packets += 1,
                                MediaKind::Video => {
                                    r.video.packets += 1;
                                    let codec = pts.iter().find(|(_, pt)| *pt == packet.payload_type).map(|(c, _)| *c);
                                    if r.first_keyframe_ms.is_none()
                                        && codec.is_some_and(|c| starts_keyframe(c, &packet.payload))
                                    {
                                        r.first_keyframe_ms = Some(ms(arrival.saturating_duration_since(sent)));
                                    }
                                }
                            }
                        }
                        Some(PeerEvent::State(PeerState::Failed | PeerState::Closed)) => {
                            break Err("the viewer's connection failed".to_owned());
                        }
                        Some(_) => {}
                        None => break Err("the viewer's event channel closed".to_owned()),
                    },
                    msg = signal.recv() => match msg {
                        Some(ServerMessage::Error(e)) => break Err(format!("server ERROR: {e}")),
                        Some(ServerMessage::State(s)) if s.is_end() => {
                            break Err(format!("playback {} early", s.phase));
                        }
                        Some(_) => {}
                        None => break Err("the server closed the websocket".to_owned()),
                    },
                    _ = until.as_mut() => break Ok(()),
                }
            };
            r.media_s = watching.elapsed().as_secs_f64();
            watched
        }
        .await;
        // No STOP: the server has to notice the socket going away.
        signal.close().await;
        outcome
    }
    .await;
    client.close().await;
    result
}

/// The viewers that closed the socket instead of STOP.
fn closed_section(views: &[ViewResult]) -> Value {
    json!({
        "sessions": views.len(),
        "viewers_without_keyframe": views.iter().filter(|r| r.first_keyframe_ms.is_none()).count(),
        "first_keyframe_ms": dist(views.iter().filter_map(|r| r.first_keyframe_ms)),
        "video_packets": views.iter().map(|r| r.video.packets).sum::<u64>(),
        "audio_packets": views.iter().map(|r| r.audio.packets).sum::<u64>(),
    })
}

/// The kinds of hostile client, started in this order, round robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostile {
    Junk,
    Abandon,
    BadProfile,
    Silent,
}

/// What one hostile attempt saw: `Ok` when the server behaved, `Err` when it did not; the
/// text is what the report counts.
type Seen = Result<String, String>;

impl Hostile {
    const ALL: [Hostile; 4] = [
        Hostile::Junk,
        Hostile::Abandon,
        Hostile::BadProfile,
        Hostile::Silent,
    ];

    fn name(self) -> &'static str {
        match self {
            Hostile::Junk => "junk_messages",
            Hostile::Abandon => "abandoned_record",
            Hostile::BadProfile => "bad_profile_level_id",
            Hostile::Silent => "silent_socket",
        }
    }

    async fn attempt(self, ctx: &Ctx) -> Seen {
        let attempt = async {
            match self {
                Hostile::Junk => junk(ctx.addr).await,
                Hostile::Abandon => abandon(ctx.addr, ctx.codec).await,
                Hostile::BadProfile => bad_profile(ctx.addr).await,
                Hostile::Silent => silent(ctx.addr).await,
            }
        };
        tokio::time::timeout(HOSTILE_LIMIT, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no outcome within {HOSTILE_LIMIT:?}")))
    }
}

/// Attempts of one kind and what they saw.
#[derive(Default)]
struct HostileTally {
    attempts: usize,
    outcomes: BTreeMap<String, usize>,
    unexpected: BTreeMap<String, usize>,
}

impl HostileTally {
    fn add(&mut self, seen: Seen) {
        self.attempts += 1;
        let (map, what) = match seen {
            Ok(what) => (&mut self.outcomes, what),
            Err(what) => (&mut self.unexpected, what),
        };
        *map.entry(what).or_default() += 1;
    }

    fn unexpected_count(&self) -> usize {
        self.unexpected.values().sum()
    }

    fn json(&self) -> Value {
        json!({
            "attempts": self.attempts,
            "outcomes": self.outcomes,
            "unexpected": self.unexpected,
        })
    }
}

/// One hostile client every `interval`, at most `cap` at once, until the load phase ends;
/// then waits for those still running.
async fn hostile_loop(ctx: Arc<Ctx>, interval: Duration, cap: usize) {
    let mut running: JoinSet<()> = JoinSet::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let left = ctx.load_end.saturating_duration_since(Instant::now());
    let passes = (left.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 1;
    let reap = |running: &mut JoinSet<()>| {
        // Bounded by the set's size.
        while let Some(done) = running.try_join_next() {
            if done.is_err() {
                ctx.results().hostile_panicked += 1;
            }
        }
    };
    // Bounded: one attempt per tick.
    for n in 0..passes {
        ticks.tick().await;
        if !ctx.running() {
            break;
        }
        reap(&mut running);
        if running.len() >= cap {
            ctx.results().hostile_skipped += 1;
            continue;
        }
        let mut kind = Hostile::ALL[n % Hostile::ALL.len()];
        if kind == Hostile::BadProfile && ctx.recordings.load(Ordering::Relaxed) == 0 {
            // With nothing to play, PLAY is refused before its offer is even parsed.
            kind = Hostile::Silent;
        }
        let ctx = ctx.clone();
        running.spawn(async move {
            let seen = kind.attempt(&ctx).await;
            ctx.results().hostile[kind as usize].add(seen);
        });
    }
    // Every attempt ends within HOSTILE_LIMIT.
    let _ = tokio::time::timeout(HOSTILE_LIMIT + Duration::from_secs(5), async {
        while let Some(done) = running.join_next().await {
            if done.is_err() {
                ctx.results().hostile_panicked += 1;
            }
        }
    })
    .await;
    ctx.results().hostile_unfinished += running.len();
    running.abort_all();
}

/// 2,000 malformed messages, never reading a reply, then the socket dropped (no close
/// handshake). The server may answer each with ERROR, apply backpressure or hang up; all
/// fine, as long as it stays healthy for everyone else.
async fn junk(addr: SocketAddr) -> Seen {
    let mut ws = connect_ws(addr).await?;
    let sent = tokio::time::timeout(Duration::from_secs(10), async {
        for i in 0..JUNK_MESSAGES {
            ws.feed(Message::text(JUNK[i % JUNK.len()])).await?;
        }
        ws.flush().await
    })
    .await;
    drop(ws);
    Ok(match sent {
        Ok(Ok(())) => format!("sent {JUNK_MESSAGES}, dropped the socket"),
        Ok(Err(_)) => "the server closed the socket while we sent".to_owned(),
        Err(_) => "sending stalled for 10 s (backpressure), dropped the socket".to_owned(),
    })
}

/// A real RECORD offer; the ANSWER is never applied (the peer is closed at once, no ICE, no
/// DTLS) and the socket stays open [`ABANDON_HOLD`] before it is closed.
async fn abandon(addr: SocketAddr, video: Codec) -> Seen {
    let (client, _events) = Client::record(RecordOptions {
        video,
        ..RecordOptions::default()
    })
    .await
    .map_err(|e| format!("client: {e}"))?;
    let answered = async {
        let record = ClientMessage::Record {
            offer: offer(&client).await?,
        };
        let (mut signal, _) = open(addr, &record).await?;
        let answer = expect_answer(&mut signal, REPLY_TIMEOUT).await;
        Ok::<_, String>((signal, answer))
    }
    .await;
    client.close().await;
    drop(client);
    let (signal, answer) = answered?;
    tokio::time::sleep(ABANDON_HOLD).await;
    signal.close().await;
    answer.map(|_| "ANSWER, never connected".to_owned())
}

/// A real (H264-only viewer) offer whose `profile-level-id` is [`BAD_PROFILE_LEVEL_ID`], as
/// a PLAY: every server codec parses a viewer's H264 offer. The server owes an ERROR.
async fn bad_profile(addr: SocketAddr) -> Seen {
    let h264_only = ViewOptions {
        video: vec![(Codec::H264, 102)],
        ..ViewOptions::default()
    };
    let (client, _events) = Client::view(h264_only)
        .await
        .map_err(|e| format!("client: {e}"))?;
    let real = offer(&client).await;
    // Only its offer is needed.
    client.close().await;
    drop(client);
    let real = real?;
    let sdp = with_profile_level_id(&real.sdp, BAD_PROFILE_LEVEL_ID)
        .ok_or_else(|| "the offer has no profile-level-id to replace".to_owned())?;
    let play = ClientMessage::Play {
        offer: SessionDescription { sdp, ..real },
        looping: true,
        recordings: None,
    };
    let (mut signal, _) = open(addr, &play).await?;
    let reply = signal.next(REPLY_TIMEOUT).await;
    signal.close().await;
    match reply {
        Ok(ServerMessage::Error(e)) => Ok(format!("ERROR: {e}")),
        Ok(other) => Err(format!("{} instead of ERROR", op(&other))),
        Err(e) => Err(format!("no ERROR: {e}")),
    }
}

/// A socket that opens, says nothing for [`SILENT_HOLD`], then closes.
async fn silent(addr: SocketAddr) -> Seen {
    let mut ws = connect_ws(addr).await?;
    tokio::time::sleep(SILENT_HOLD).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(match closed {
        Ok(Ok(())) => "closed after 1 s of silence",
        Ok(Err(_)) => "the server had closed it",
        Err(_) => "close stalled for 2 s",
    }
    .to_owned())
}

/// A server message's op, for the report.
fn op(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Answer(_) => "ANSWER",
        ServerMessage::Error(_) => "ERROR",
        ServerMessage::Recording(_) => "RECORDING",
        ServerMessage::NowPlaying(_) => "NOWPLAYING",
        ServerMessage::Skipped(_) => "SKIPPED",
        ServerMessage::State(_) => "STATE",
    }
}

/// `sdp` with the value of every `profile-level-id=` replaced by `value`; `None` if it has
/// none.
fn with_profile_level_id(sdp: &str, value: &str) -> Option<String> {
    const KEY: &str = "profile-level-id=";
    let mut out = String::with_capacity(sdp.len() + value.len());
    let mut rest = sdp;
    let mut found = false;
    // Bounded: every pass consumes at least the key.
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        let end = tail.find([';', ' ', '\r', '\n']).unwrap_or(tail.len());
        out.push_str(head);
        out.push_str(value);
        rest = &tail[end..];
        found = true;
    }
    out.push_str(rest);
    found.then_some(out)
}

/// The server process, once.
#[derive(Clone, Copy, Debug)]
struct Sample {
    phase: &'static str,
    /// Seconds since the baseline.
    t_s: f64,
    rss_kb: Option<u64>,
    fds: Option<u64>,
    threads: Option<u64>,
    /// Recorder and viewer sessions ended so far.
    sessions: usize,
    hostile: usize,
    failures: usize,
}

impl Sample {
    fn take(phase: &'static str, pid: u32, t0: Instant, ctx: &Ctx) -> Sample {
        let who = pid.to_string();
        let (hostile, unexpected) = {
            let res = ctx.results();
            let attempts: usize = res.hostile.iter().map(|t| t.attempts).sum();
            let unexpected: usize = res.hostile.iter().map(HostileTally::unexpected_count).sum();
            (attempts, unexpected)
        };
        Sample {
            phase,
            t_s: t0.elapsed().as_secs_f64(),
            rss_kb: procfs::rss_kb(&who),
            fds: open_fds(pid),
            threads: procfs::threads(&who),
            sessions: ctx.live.ended.load(Ordering::Relaxed),
            hostile,
            failures: ctx.live.failed.load(Ordering::Relaxed) + unexpected,
        }
    }

    fn print(&self) {
        eprintln!(
            "[{:>7.1}s] {:<8} rss {:>7} MB  fds {:>5}  threads {:>4}  sessions {:>6}  hostile {:>6}  failures {}",
            self.t_s,
            self.phase,
            mb(self.rss_kb),
            opt(self.fds),
            opt(self.threads),
            self.sessions,
            self.hostile,
            self.failures,
        );
    }

    fn json(&self) -> Value {
        json!({
            "phase": self.phase,
            "t_s": round3(self.t_s),
            "rss_kb": self.rss_kb,
            "rss_mb": self.rss_kb.map(|kb| round3(kb as f64 / 1024.0)),
            "fds": self.fds,
            "threads": self.threads,
            "sessions": self.sessions,
            "hostile": self.hostile,
            "failures": self.failures,
        })
    }
}

/// Open file descriptors (entries of `/proc/PID/fd`).
fn open_fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|dir| dir.count() as u64)
}

/// Whether `pid` still runs; a zombie (exited, not yet reaped) does not.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses: the state follows the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<i64> {
    Some(after? as i64 - before? as i64)
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(|| "?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:+.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_level_id_is_replaced_everywhere() {
        let sdp = "a=rtpmap:102 H264/90000\r\n\
                   a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
                   a=fmtp:104 profile-level-id=42001f;packetization-mode=0\r\n";
        let want = "a=rtpmap:102 H264/90000\r\n\
                    a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4€00\r\n\
                    a=fmtp:104 profile-level-id=4€00;packetization-mode=0\r\n";
        assert_eq!(
            with_profile_level_id(sdp, BAD_PROFILE_LEVEL_ID).as_deref(),
            Some(want)
        );
        assert_eq!(BAD_PROFILE_LEVEL_ID.len(), 6);
        assert!(!BAD_PROFILE_LEVEL_ID.is_char_boundary(2));
        assert_eq!(with_profile_level_id("v=0\r\n", "x"), None);
    }

    #[test]
    fn this_process_is_alive_and_has_fds() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(open_fds(me).is_some_and(|n| n > 0));
        assert!(!alive(u32::MAX));
        assert_eq!(delta(Some(10), Some(7)), Some(-3));
        assert_eq!(delta(None, Some(7)), None);
    }
}
