//! Load generator for pion-the-sky: many in-process WebRTC recorders and viewers against a
//! real server, with the server's CPU and memory read from `/proc`. See BENCHMARKS.md.
//!
//! ```text
//! loadgen record --recorders 50 --seconds 20 --codec vp8 --out bench/record-50.json
//! loadgen play --viewers 5 --seconds 10 --seed-recordings 2
//! loadgen mixed --recorders 5 --viewers 5 --seconds 30 --churn-seconds 10
//! loadgen churn --sessions 200 --concurrency 10 --kind record
//! loadgen soak --seconds 1800 --recorders 4 --viewers 4 --out bench/soak-1800.json
//! ```
//!
//! By default the server is spawned (`--server-bin`, a temp `--data-dir`, loopback only, a
//! free port); `--server ADDR --server-pid PID` attaches to a running one instead. Every
//! session, loop and wait is bounded; the report (JSON) goes to stdout and `--out`.
#[path = "loadgen/fixture.rs"]
mod fixture;
#[path = "loadgen/live.rs"]
mod live;
#[path = "loadgen/procfs.rs"]
mod procfs;
#[path = "loadgen/server.rs"]
mod server;
#[path = "loadgen/session.rs"]
mod session;
#[path = "loadgen/signal.rs"]
mod signal;
#[path = "loadgen/soak.rs"]
mod soak;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use media::Codec;
use serde_json::{Value, json};

use fixture::Fixture;
use server::{Server, SpawnOptions};
use session::{ConnectResult, Live, RecordResult, ViewLength, ViewResult};

const DEFAULT_SERVER_BIN: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/pion-the-sky");
const DEFAULT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for pion-the-sky (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// R concurrent recorders sending the fixture in a loop for S seconds, then STOP.
    Record(RecordArgs),
    /// V concurrent viewers of the concatenated recordings for S seconds.
    Play(PlayArgs),
    /// Recorders and viewers at once, each reconnecting every C seconds.
    Mixed(MixedArgs),
    /// N short sessions, K at a time; checks memory returns to baseline.
    Churn(ChurnArgs),
    /// Recorder and viewer churn plus hostile clients for S seconds, sampling the server's
    /// RSS, fds and threads; exits non-zero if a session failed or the server died.
    #[command(mut_arg("settle_seconds", |a| a.default_value("15")))]
    Soak(SoakArgs),
    /// One recorder (over WHIP) and N viewers watching it live: latency, join time, CPU per
    /// viewer.
    Live(LiveArgs),
}

#[derive(Args, Debug)]
struct LiveArgs {
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// How long all viewers watch together.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Viewers take only this video codec: if it is not the recorder's (`--codec`), the
    /// server transcodes (one transcoder for all of them). Latency is then not measured
    /// (it matches packets by payload, which transcoding changes).
    #[arg(long, value_enum)]
    viewer_codec: Option<CodecArg>,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    Vp8,
    H264,
}

impl CodecArg {
    fn codec(self) -> Codec {
        match self {
            CodecArg::Vp8 => Codec::Vp8,
            CodecArg::H264 => Codec::H264,
        }
    }
    fn name(self) -> &'static str {
        match self {
            CodecArg::Vp8 => "vp8",
            CodecArg::H264 => "h264",
        }
    }
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Video codec recorded (the spawned server gets the matching --vcodec).
    #[arg(long, value_enum, default_value_t = CodecArg::Vp8)]
    codec: CodecArg,
    /// Server binary to spawn.
    #[arg(long, default_value = DEFAULT_SERVER_BIN)]
    server_bin: PathBuf,
    /// Attach to a running server at ADDR (127.0.0.1:PORT) instead of spawning one.
    #[arg(long, requires = "server_pid")]
    server: Option<SocketAddr>,
    /// The attached server's pid (for CPU and memory).
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// Also write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds to wait after the last session before reading the server's RSS "after".
    #[arg(long, default_value_t = 5.0)]
    settle_seconds: f64,
    /// Delay between session starts (ms), so setups do not all land at once.
    #[arg(long, default_value_t = 20)]
    ramp_ms: u64,
    /// Keep the spawned server's temp directory (recordings and server.log).
    #[arg(long)]
    keep_data: bool,
    /// Where the fixtures are.
    #[arg(long, default_value = DEFAULT_FIXTURES)]
    fixtures: PathBuf,
    /// Recorders wait this long after "connected" before sending media. 0 since the server
    /// answers recorders as DTLS server (it has its keys before the client sends).
    #[arg(long, default_value_t = 0)]
    media_delay_ms: u64,
    /// --max-sessions for the spawned server (default: enough for the run).
    #[arg(long)]
    max_sessions: Option<usize>,
    /// The loadgen's own async worker threads. One keeps the client cheap (fewer cross-thread
    /// wake-ups), which is what lets one process drive 200 real-time recorders on 2 cores.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// --workers for the spawned server (0 = its default, one per CPU).
    #[arg(long, default_value_t = 0)]
    server_workers: usize,
}

#[derive(Args, Debug)]
struct RecordArgs {
    #[arg(long, default_value_t = 1)]
    recorders: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct PlayArgs {
    #[arg(long, default_value_t = 1)]
    viewers: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Recordings to make before the viewers start (0 = use what the server has).
    #[arg(long, default_value_t = 2)]
    seed_recordings: usize,
    /// Length of each seed recording.
    #[arg(long, default_value_t = 4.0)]
    seed_seconds: f64,
    /// Viewers take only this video codec: clips in the other are transcoded by the server.
    #[arg(long, value_enum)]
    viewer_codec: Option<CodecArg>,
    /// Viewer i plays only seed recording i (modulo their number), so that no two viewers
    /// share a transcoder; by default every viewer plays every recording.
    #[arg(long)]
    one_recording_each: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct MixedArgs {
    #[arg(long, default_value_t = 1)]
    recorders: usize,
    #[arg(long, default_value_t = 1)]
    viewers: usize,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Each session reconnects after this many seconds (default: never).
    #[arg(long)]
    churn_seconds: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed_recordings: usize,
    #[arg(long, default_value_t = 4.0)]
    seed_seconds: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ChurnKind {
    /// Record --session-seconds of media, STOP, wait for RECORDING.
    Record,
    /// PLAY until the first keyframe arrives, then STOP.
    Play,
    /// RECORD, ANSWER, DTLS up, close the socket (no media).
    Connect,
}

#[derive(Args, Debug)]
struct ChurnArgs {
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    #[arg(long, value_enum, default_value_t = ChurnKind::Record)]
    kind: ChurnKind,
    /// Media per recording session.
    #[arg(long, default_value_t = 1.0)]
    session_seconds: f64,
    /// For --kind play: recordings to make first.
    #[arg(long, default_value_t = 1)]
    seed_recordings: usize,
    /// Sessions run before the memory baseline is taken, so first-use allocations (thread
    /// pools, crypto tables, allocator arenas) are not counted as growth.
    #[arg(long, default_value_t = 20)]
    warmup_sessions: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// Length of the load phase (the baseline sample is taken before it, the settle after).
    #[arg(long, default_value_t = 1800.0)]
    seconds: f64,
    /// Recorder slots, each recording --record-seconds of the fixture, STOP, again.
    #[arg(long, default_value_t = 4)]
    recorders: usize,
    #[arg(long, default_value_t = 5.0)]
    record_seconds: f64,
    /// Viewer slots (from the first recording on), each playing --view-seconds, then STOP or
    /// closing the socket, in turn, again.
    #[arg(long, default_value_t = 4)]
    viewers: usize,
    #[arg(long, default_value_t = 5.0)]
    view_seconds: f64,
    /// A hostile client starts this often (junk, abandoned RECORD, bad profile, silent, in turn).
    #[arg(long, default_value_t = 1000)]
    hostile_interval_ms: u64,
    /// At most this many hostile clients at once (0 = none).
    #[arg(long, default_value_t = 4)]
    hostile_concurrency: usize,
    /// Sample the server's RSS, fds and threads this often.
    #[arg(long, default_value_t = 10.0)]
    sample_seconds: f64,
    #[command(flatten)]
    common: Common,
}

/// min / median / p95 / max / mean of a sample.
fn dist(values: impl IntoIterator<Item = f64>) -> Value {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return json!({ "n": 0 });
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "n": v.len(),
        "min": round(v[0]),
        "median": round(q(0.5)),
        "p95": round(q(0.95)),
        "max": round(v[v.len() - 1]),
        "mean": round(v.iter().sum::<f64>() / v.len() as f64),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Server and loadgen counters over the measured phase.
struct Measure {
    pid: u32,
    tck: u64,
    t0: Instant,
    server_cpu0: f64,
    self_cpu0: f64,
    rss_before: u64,
    peak: procfs::RssPeak,
}

impl Measure {
    fn start(pid: u32) -> Measure {
        let tck = procfs::clk_tck();
        Measure {
            pid,
            tck,
            t0: Instant::now(),
            server_cpu0: procfs::cpu_seconds(&pid.to_string(), tck).unwrap_or(0.0),
            self_cpu0: procfs::cpu_seconds("self", tck).unwrap_or(0.0),
            rss_before: procfs::rss_kb(&pid.to_string()).unwrap_or(0),
            peak: procfs::RssPeak::start(pid),
        }
    }

    fn server_cpu(&self) -> f64 {
        procfs::cpu_seconds(&self.pid.to_string(), self.tck).unwrap_or(0.0) - self.server_cpu0
    }

    fn self_cpu(&self) -> f64 {
        procfs::cpu_seconds("self", self.tck).unwrap_or(0.0) - self.self_cpu0
    }
}

/// The steady state: every session connected, none finished yet.
#[derive(Default, Clone, Copy)]
struct Steady {
    seconds: f64,
    streams: usize,
    server_cpu: f64,
    self_cpu: f64,
}

/// Watches `live` for the window in which all `target` sessions are up; bounded by `limit`.
fn watch_steady(
    live: Arc<Live>,
    target: usize,
    pid: u32,
    limit: Duration,
) -> tokio::task::JoinHandle<Option<Steady>> {
    tokio::spawn(async move {
        let tck = procfs::clk_tck();
        let who = pid.to_string();
        let deadline = Instant::now() + limit;
        let tick = Duration::from_millis(20);
        loop {
            let up = live.connected.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed);
            if up >= target {
                break;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(tick).await;
        }
        let streams = live.active();
        if streams == 0
            || live.media_done.load(Ordering::Relaxed) > live.failed.load(Ordering::Relaxed)
        {
            return None;
        }
        let t1 = Instant::now();
        let c1 = procfs::cpu_seconds(&who, tck)?;
        let s1 = procfs::cpu_seconds("self", tck)?;
        while live.active() >= streams && Instant::now() < deadline {
            tokio::time::sleep(tick).await;
        }
        Some(Steady {
            seconds: t1.elapsed().as_secs_f64(),
            streams,
            server_cpu: procfs::cpu_seconds(&who, tck)? - c1,
            self_cpu: procfs::cpu_seconds("self", tck)? - s1,
        })
    })
}

/// One stderr line every 5 s while the run lasts.
fn progress(live: Arc<Live>, pid: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tck = procfs::clk_tck();
        let who = pid.to_string();
        let start = Instant::now();
        let mut last = procfs::cpu_seconds(&who, tck).unwrap_or(0.0);
        // Bounded by a day; aborted when the run ends.
        for _ in 0..(24 * 3600 / 5) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let cpu = procfs::cpu_seconds(&who, tck).unwrap_or(0.0);
            eprintln!(
                "[{:>6.1}s] started {} connected {} active {} ended {} failed {} | server cpu {:.0}% rss {} MB",
                start.elapsed().as_secs_f64(),
                live.started.load(Ordering::Relaxed),
                live.connected.load(Ordering::Relaxed),
                live.active(),
                live.ended.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                (cpu - last) / 5.0 * 100.0,
                procfs::rss_kb(&who).unwrap_or(0) / 1024,
            );
            last = cpu;
        }
    })
}

async fn start_server(common: &Common, sessions: usize) -> Result<Server, String> {
    match (common.server, common.server_pid) {
        (Some(addr), Some(pid)) => {
            if !addr.ip().is_loopback() {
                return Err("--server must be a 127.0.0.1 address (loopback traffic only)".into());
            }
            Server::attach(addr, pid).await
        }
        _ => {
            Server::spawn(SpawnOptions {
                bin: common.server_bin.clone(),
                vcodec: common.codec.name(),
                max_sessions: common.max_sessions.unwrap_or((sessions + 16).max(500)),
                keep_data: common.keep_data,
                extra_args: vec![format!("--workers={}", common.server_workers)],
            })
            .await
        }
    }
}

/// Runs `n` futures made by `make(i)`, `ramp` apart, all at once; returns what finished
/// within `limit` and how many did not.
async fn run_all<T, F, Fut>(n: usize, ramp: Duration, limit: Duration, make: F) -> (Vec<T>, usize)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && !ramp.is_zero() {
            tokio::time::sleep(ramp).await;
        }
        handles.push(tokio::spawn(make(i)));
    }
    let mut out = Vec::with_capacity(n);
    let mut unfinished = 0;
    for mut h in handles {
        match tokio::time::timeout_at(deadline, &mut h).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(_)) => unfinished += 1,
            Err(_) => {
                h.abort();
                unfinished += 1;
            }
        }
    }
    (out, unfinished)
}

fn errors(list: impl Iterator<Item = Option<String>>) -> Value {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for e in list.flatten() {
        *counts.entry(e).or_default() += 1;
    }
    json!(counts)
}

fn record_section(results: &[RecordResult]) -> Value {
    let ok: Vec<&RecordResult> = results
        .iter()
        .filter(|r| r.frames_stored.is_some())
        .collect();
    let sum = |f: &dyn Fn(&RecordResult) -> u64| ok.iter().map(|r| f(r)).sum::<u64>();
    let sent_v = sum(&|r| r.frames_sent[0]);
    let sent_a = sum(&|r| r.frames_sent[1]);
    let stored_v = sum(&|r| r.frames_stored.map_or(0, |s| s[0]));
    let stored_a = sum(&|r| r.frames_stored.map_or(0, |s| s[1]));
    let lossy: Vec<Value> = ok
        .iter()
        .filter(|r| {
            r.frames_stored
                .is_some_and(|s| s[0] != r.frames_sent[0] || s[1] != r.frames_sent[1])
        })
        .take(20)
        .map(|r| {
            json!({
                "recording": r.recording_id,
                "video_sent": r.frames_sent[0], "video_stored": r.frames_stored.map(|s| s[0]),
                "audio_sent": r.frames_sent[1], "audio_stored": r.frames_stored.map(|s| s[1]),
            })
        })
        .collect();
    json!({
        "sessions": results.len(),
        "sessions_with_recording": ok.len(),
        "sessions_with_frame_mismatch": ok.iter().filter(|r| r.frames_stored.is_some_and(|s| s[0] != r.frames_sent[0] || s[1] != r.frames_sent[1])).count(),
        "video_frames_sent": sent_v,
        "video_frames_stored": stored_v,
        "video_frames_lost": sent_v as i64 - stored_v as i64,
        "audio_frames_sent": sent_a,
        "audio_frames_stored": stored_a,
        "audio_frames_lost": sent_a as i64 - stored_a as i64,
        "packets_sent": results.iter().map(|r| r.packets_sent).sum::<u64>(),
        "payload_bytes_sent": results.iter().map(|r| r.bytes_sent).sum::<u64>(),
        "send_errors": results.iter().map(|r| r.send_errors).sum::<u64>(),
        "max_send_lag_ms": dist(results.iter().map(|r| r.max_send_lag_ms)),
        "mismatches": lossy,
    })
}

fn play_section(results: &[ViewResult]) -> Value {
    json!({
        "sessions": results.len(),
        "viewers_without_keyframe": results.iter().filter(|r| r.first_keyframe_ms.is_none()).count(),
        "first_keyframe_ms": dist(results.iter().filter_map(|r| r.first_keyframe_ms)),
        "first_packet_ms": dist(results.iter().filter_map(|r| r.first_packet_ms)),
        // The server's own part: connected (client side) -> first keyframe packet.
        "first_keyframe_after_connected_ms": dist(results.iter().filter_map(|r| Some(r.first_keyframe_ms? - r.connected_ms?))),
        "pacing_error_pct": dist(results.iter().filter_map(|r| r.pacing_error_pct)),
        "pacing_error_ms": dist(results.iter().filter_map(|r| r.pacing_error_ms)),
        "drift_spread_ms": dist(results.iter().filter_map(|r| r.drift_spread_ms)),
        "video_packets": results.iter().map(|r| r.video.packets).sum::<u64>(),
        "audio_packets": results.iter().map(|r| r.audio.packets).sum::<u64>(),
        "video_seq_gaps": results.iter().map(|r| r.video.gaps).sum::<u64>(),
        "video_missing": results.iter().map(|r| r.video.missing).sum::<u64>(),
        "video_late": results.iter().map(|r| r.video.late).sum::<u64>(),
        "audio_seq_gaps": results.iter().map(|r| r.audio.gaps).sum::<u64>(),
        "audio_missing": results.iter().map(|r| r.audio.missing).sum::<u64>(),
        "audio_late": results.iter().map(|r| r.audio.late).sum::<u64>(),
    })
}

/// Everything a run collected.
#[derive(Default)]
struct Outcome {
    records: Vec<RecordResult>,
    views: Vec<ViewResult>,
    connects: Vec<ConnectResult>,
    unfinished: usize,
    max_concurrent: usize,
}

impl Outcome {
    fn stream_seconds(&self) -> f64 {
        self.records.iter().map(|r| r.media_s).sum::<f64>()
            + self.views.iter().map(|r| r.media_s).sum::<f64>()
    }
    fn sessions(&self) -> usize {
        self.records.len() + self.views.len() + self.connects.len() + self.unfinished
    }
    fn failed(&self) -> usize {
        self.records.iter().filter(|r| r.error.is_some()).count()
            + self.views.iter().filter(|r| r.error.is_some()).count()
            + self.connects.iter().filter(|r| r.error.is_some()).count()
            + self.unfinished
    }
    fn answer_ms(&self) -> Vec<f64> {
        let r = self.records.iter().filter_map(|r| r.answer_ms);
        let v = self.views.iter().filter_map(|r| r.answer_ms);
        let c = self.connects.iter().filter_map(|r| r.answer_ms);
        r.chain(v).chain(c).collect()
    }
    fn connected_ms(&self) -> Vec<f64> {
        let r = self.records.iter().filter_map(|r| r.connected_ms);
        let v = self.views.iter().filter_map(|r| r.connected_ms);
        let c = self.connects.iter().filter_map(|r| r.connected_ms);
        r.chain(v).chain(c).collect()
    }
}

/// Makes `n` recordings of `seconds` (before the measured phase).
async fn seed(
    delay: Duration,
    server: &Server,
    codec: Codec,
    fixtures: &std::path::Path,
    n: usize,
    seconds: f64,
) -> Result<Value, String> {
    if n == 0 {
        return Ok(json!(null));
    }
    let fixture = Arc::new(Fixture::load(fixtures, codec)?);
    let live = Arc::new(Live::default());
    let addr = server.addr;
    let (results, unfinished) = run_all(
        n,
        Duration::from_millis(50),
        Duration::from_secs_f64(seconds + 90.0),
        |_| {
            let (f, l) = (fixture.clone(), live.clone());
            async move { session::record(addr, f, seconds, delay, &l).await }
        },
    )
    .await;
    let made = results.iter().filter(|r| r.recording_id.is_some()).count();
    if made == 0 {
        return Err(format!(
            "seeding failed: {:?}",
            results
                .iter()
                .find_map(|r| r.error.clone())
                .or(if unfinished > 0 {
                    Some("timed out".into())
                } else {
                    None
                })
        ));
    }
    let ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.recording_id.clone())
        .collect();
    Ok(json!({ "recordings": made, "seconds": seconds, "ids": ids }))
}

async fn run(cli: Cli) -> Result<Value, String> {
    let (scenario, common, params, sessions_hint) = match &cli.cmd {
        Cmd::Record(a) => (
            "record",
            a.common.clone(),
            json!({"recorders": a.recorders, "seconds": a.seconds}),
            a.recorders,
        ),
        Cmd::Play(a) => (
            "play",
            a.common.clone(),
            json!({"viewers": a.viewers, "seconds": a.seconds, "seed_recordings": a.seed_recordings, "seed_seconds": a.seed_seconds, "viewer_codec": a.viewer_codec.map(|c| c.name()), "one_recording_each": a.one_recording_each}),
            a.viewers + a.seed_recordings,
        ),
        Cmd::Mixed(a) => (
            "mixed",
            a.common.clone(),
            json!({"recorders": a.recorders, "viewers": a.viewers, "seconds": a.seconds, "churn_seconds": a.churn_seconds, "seed_recordings": a.seed_recordings}),
            a.recorders + a.viewers + a.seed_recordings,
        ),
        Cmd::Churn(a) => (
            "churn",
            a.common.clone(),
            json!({"sessions": a.sessions, "concurrency": a.concurrency, "kind": format!("{:?}", a.kind).to_lowercase(), "session_seconds": a.session_seconds}),
            a.concurrency + a.seed_recordings,
        ),
        Cmd::Soak(a) => (
            "soak",
            a.common.clone(),
            soak::params(a),
            a.recorders + a.viewers + a.hostile_concurrency,
        ),
        Cmd::Live(a) => (
            "live",
            a.common.clone(),
            json!({"viewers": a.viewers, "seconds": a.seconds, "viewer_codec": a.viewer_codec.map(|c| c.name())}),
            a.viewers + 1,
        ),
    };
    let codec = common.codec.codec();
    let fixture = Arc::new(Fixture::load(&common.fixtures, codec)?);
    let mut server = start_server(&common, sessions_hint).await?;
    let addr = server.addr;
    let ramp = Duration::from_millis(common.ramp_ms);
    let delay = Duration::from_millis(common.media_delay_ms);
    let target = ChurnTarget {
        addr,
        fixture: fixture.clone(),
        delay,
        codec,
    };
    eprintln!(
        "loadgen {scenario}: server {} pid {} ({})",
        addr,
        server.pid,
        if server.spawned {
            "spawned"
        } else {
            "attached"
        }
    );

    let mut seeded = json!(null);
    let result = async {
        // The soak has its own phases (baseline, load, settle) and report.
        if let Cmd::Soak(a) = &cli.cmd {
            return soak::run(a, &server, fixture.clone()).await;
        }
        if let Cmd::Live(a) = &cli.cmd {
            let report =
                live::run(
                addr,
                server.pid,
                fixture.clone(),
                a.viewers,
                a.seconds,
                ramp,
                a.viewer_codec.map(CodecArg::codec),
            )
            .await?;
            return Ok(json!({ "scenario": "live", "params": params, "codec": common.codec.name(), "result": report, "ok": report["ok"] }));
        }
        // Seeding happens before the baseline is taken.
        match &cli.cmd {
            Cmd::Play(a) => seeded = seed(delay, &server, codec, &common.fixtures, a.seed_recordings, a.seed_seconds).await?,
            Cmd::Mixed(a) => seeded = seed(delay, &server, codec, &common.fixtures, a.seed_recordings, a.seed_seconds).await?,
            Cmd::Churn(a) if a.kind == ChurnKind::Play => {
                seeded = seed(delay, &server, codec, &common.fixtures, a.seed_recordings, 4.0).await?
            }
            _ => {}
        }
        if let Cmd::Churn(a) = &cli.cmd
            && a.warmup_sessions > 0
        {
            let live = Arc::new(Live::default());
            let limit = Duration::from_secs(300);
            let (results, _) = churn_batch(a, a.warmup_sessions, limit, &target, &live).await;
            seeded = json!({ "warmup_sessions": results.len(), "seeded": seeded });
        }
        if !seeded.is_null() {
            tokio::time::sleep(Duration::from_secs_f64(common.settle_seconds)).await;
        }
        let live = Arc::new(Live::default());
        let measure = Measure::start(server.pid);
        let progress = progress(live.clone(), server.pid);
        let mut steady = None;
        let mut out = Outcome::default();
        match &cli.cmd {
            Cmd::Record(a) => {
                let limit = Duration::from_secs_f64(a.seconds + 120.0) + ramp * a.recorders as u32;
                let watch = watch_steady(live.clone(), a.recorders, server.pid, limit);
                let (r, u) = run_all(a.recorders, ramp, limit, |_| {
                    let (f, l) = (fixture.clone(), live.clone());
                    let s = a.seconds;
                    async move { session::record(addr, f, s, delay, &l).await }
                })
                .await;
                out.records = r;
                out.unfinished = u;
                out.max_concurrent = a.recorders;
                steady = watch.await.ok().flatten();
            }
            Cmd::Play(a) => {
                let limit = Duration::from_secs_f64(a.seconds + 120.0) + ramp * a.viewers as u32;
                let watch = watch_steady(live.clone(), a.viewers, server.pid, limit);
                let ids: Vec<String> = seeded["ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if a.one_recording_each && ids.is_empty() {
                    return Err("--one-recording-each needs --seed-recordings".into());
                }
                let (r, u) = run_all(a.viewers, ramp, limit, |i| {
                    let l = live.clone();
                    let s = a.seconds;
                    let choice = session::ViewChoice {
                        video: a.viewer_codec.map(|c| c.codec()),
                        recordings: a
                            .one_recording_each
                            .then(|| vec![ids[i % ids.len()].clone()]),
                    };
                    async move { session::view_as(addr, ViewLength::Seconds(s), &l, &choice).await }
                })
                .await;
                out.views = r;
                out.unfinished = u;
                out.max_concurrent = a.viewers;
                steady = watch.await.ok().flatten();
            }
            Cmd::Mixed(a) => {
                let churn = a.churn_seconds.unwrap_or(a.seconds).max(1.0);
                let total = a.seconds;
                let limit = Duration::from_secs_f64(total + 150.0);
                let slots = a.recorders + a.viewers;
                let recorders = a.recorders;
                enum One {
                    R(RecordResult),
                    V(ViewResult),
                }
                let (slot_results, u) = run_all(slots, ramp, limit, |i| {
                    let (f, l) = (fixture.clone(), live.clone());
                    async move {
                        let start = Instant::now();
                        let mut results = Vec::new();
                        // Bounded: each pass takes at least ~1 s of media.
                        for _ in 0..((total / churn).ceil() as usize + 1) {
                            let left = total - start.elapsed().as_secs_f64();
                            if left < 1.0 {
                                break;
                            }
                            let len = churn.min(left);
                            results.push(if i < recorders {
                                One::R(session::record(addr, f.clone(), len, delay, &l).await)
                            } else {
                                One::V(session::view(addr, ViewLength::Seconds(len), &l).await)
                            });
                        }
                        results
                    }
                })
                .await;
                for one in slot_results.into_iter().flatten() {
                    match one {
                        One::R(r) => out.records.push(r),
                        One::V(v) => out.views.push(v),
                    }
                }
                out.unfinished = u;
                out.max_concurrent = slots;
            }
            Cmd::Churn(a) => {
                let per = match a.kind {
                    ChurnKind::Record => a.session_seconds + 40.0,
                    _ => 40.0,
                };
                let limit = Duration::from_secs_f64(per * (a.sessions as f64 / a.concurrency.max(1) as f64).ceil() + 60.0);
                let (results, u) = churn_batch(a, a.sessions, limit, &target, &live).await;
                for one in results {
                    match one {
                        One::R(r) => out.records.push(r),
                        One::V(v) => out.views.push(v),
                        One::C(c) => out.connects.push(c),
                    }
                }
                out.unfinished = u;
                out.max_concurrent = a.concurrency;
            }
            Cmd::Soak(_) | Cmd::Live(_) => unreachable!("the soak and live returned above"),
        }
        let active_wall = measure.t0.elapsed().as_secs_f64();
        let server_cpu = measure.server_cpu();
        let self_cpu = measure.self_cpu();
        let peak = measure.peak.peak_kb();
        progress.abort();
        // Memory after every session closed and the server had time to free it.
        tokio::time::sleep(Duration::from_secs_f64(common.settle_seconds)).await;
        let after = procfs::rss_kb(&server.pid.to_string()).unwrap_or(0);
        let peak = peak.max(measure.peak.peak_kb());
        let before = measure.rss_before;
        let stream_s = out.stream_seconds();
        let sessions = out.sessions();
        let per_stream = |cpu: f64| if stream_s > 0.0 { json!(round6(cpu / stream_s)) } else { json!(null) };
        let steady_json = steady.map(|s| {
            let ss = s.seconds * s.streams as f64;
            json!({
                "seconds": round3(s.seconds),
                "streams": s.streams,
                "server_cpu_s": round3(s.server_cpu),
                "server_cpu_s_per_stream_s": round6(s.server_cpu / ss),
                "server_cpu_pct": round3(s.server_cpu / s.seconds * 100.0),
                "loadgen_cpu_s": round3(s.self_cpu),
                "loadgen_cpu_s_per_stream_s": round6(s.self_cpu / ss),
            })
        });
        let mut report = json!({
            "scenario": scenario,
            "params": params,
            "codec": common.codec.name(),
            "media_delay_ms": common.media_delay_ms,
            "workers": {"loadgen": common.workers, "server": if server.spawned { json!(common.server_workers) } else { json!("attached") }},
            "seeded": seeded,
            "sessions": {
                "total": sessions,
                "failed": out.failed(),
                "unfinished": out.unfinished,
                "max_concurrent": out.max_concurrent,
                "errors": errors(out.records.iter().map(|r| r.error.clone())
                    .chain(out.views.iter().map(|r| r.error.clone()))
                    .chain(out.connects.iter().map(|r| r.error.clone()))),
            },
            "wall_s": round3(active_wall),
            "stream_seconds": round3(stream_s),
            "server_cpu": {
                "total_s": round3(server_cpu),
                "per_stream_s": per_stream(server_cpu),
                "steady": steady_json,
            },
            "loadgen_cpu": {
                "total_s": round3(self_cpu),
                "per_stream_s": per_stream(self_cpu),
            },
            "server_rss_kb": {
                "before": before,
                "peak": peak,
                "after": after,
                "settle_s": common.settle_seconds,
                "per_session_kb": if sessions > 0 { json!(peak.saturating_sub(before) / sessions as u64) } else { json!(null) },
                "per_concurrent_session_kb": if out.max_concurrent > 0 { json!(peak.saturating_sub(before) / out.max_concurrent as u64) } else { json!(null) },
                "after_minus_before_kb": after as i64 - before as i64,
                "after_within_5mb": (after as i64 - before as i64).abs() <= 5 * 1024,
            },
            "server_threads_after": procfs::threads(&server.pid.to_string()),
            "setup_ms": {
                "answer": dist(out.answer_ms()),
                "connected": dist(out.connected_ms()),
            },
        });
        if !out.records.is_empty() {
            report["record"] = record_section(&out.records);
        }
        if !out.views.is_empty() {
            report["play"] = play_section(&out.views);
        }
        Ok::<Value, String>(report)
    }
    .await;
    let mut report = result?;
    report["server"] = json!({
        "addr": addr.to_string(),
        "pid": server.pid,
        "spawned": server.spawned,
        "bin": server.bin.as_ref().map(|b| b.display().to_string()),
        "log": if common.keep_data { server.log.as_ref().map(|l| l.display().to_string()) } else { None },
        "data_dir": if common.keep_data { server.data_dir().map(|l| l.display().to_string()) } else { None },
    });
    report["clk_tck"] = json!(procfs::clk_tck());
    report["machine"] = procfs::machine();
    report["fixture"] = json!({
        "video_frames_per_loop": fixture.video_frames,
        "audio_frames_per_loop": fixture.audio_frames,
        "packets_per_loop": fixture.packets,
        "payload_bytes_per_loop": fixture.bytes,
        "loop_ms": fixture.period_us / 1000,
    });
    server.stop().await;
    Ok(report)
}

fn main() {
    let cli = Cli::parse();
    let out = match &cli.cmd {
        Cmd::Record(a) => a.common.out.clone(),
        Cmd::Play(a) => a.common.out.clone(),
        Cmd::Mixed(a) => a.common.out.clone(),
        Cmd::Churn(a) => a.common.out.clone(),
        Cmd::Soak(a) => a.common.out.clone(),
        Cmd::Live(a) => a.common.out.clone(),
    };
    let workers = match &cli.cmd {
        Cmd::Record(a) => a.common.workers,
        Cmd::Play(a) => a.common.workers,
        Cmd::Mixed(a) => a.common.workers,
        Cmd::Churn(a) => a.common.workers,
        Cmd::Soak(a) => a.common.workers,
        Cmd::Live(a) => a.common.workers,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    // A report with `"ok": false` (a soak that saw a failure) is written, then exits 1.
    let failed;
    match runtime.block_on(run(cli)) {
        Ok(report) => {
            failed = report["ok"] == false;
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            println!("{text}");
            if let Some(path) = out {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(e) = std::fs::write(&path, text + "\n") {
                    eprintln!("error: {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    // Session tasks that were aborted may still hold sockets; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if failed {
        std::process::exit(1);
    }
}

/// One session of a churn run.
enum One {
    R(RecordResult),
    V(ViewResult),
    C(ConnectResult),
}

/// What churn sessions run against (the same for every batch).
struct ChurnTarget {
    addr: SocketAddr,
    fixture: Arc<Fixture>,
    delay: Duration,
    codec: Codec,
}

/// `n` short sessions of `a.kind`, at most `a.concurrency` at a time; what finished within
/// `limit` and how many did not.
async fn churn_batch(
    a: &ChurnArgs,
    n: usize,
    limit: Duration,
    t: &ChurnTarget,
    live: &Arc<Live>,
) -> (Vec<One>, usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let (kind, seconds) = (a.kind, a.session_seconds);
    let (addr, delay, codec) = (t.addr, t.delay, t.codec);
    run_all(n, Duration::ZERO, limit, |_| {
        let (fixture, live, sem) = (t.fixture.clone(), live.clone(), sem.clone());
        async move {
            let _permit = sem.acquire_owned().await;
            match kind {
                ChurnKind::Record => {
                    One::R(session::record(addr, fixture, seconds, delay, &live).await)
                }
                ChurnKind::Play => {
                    One::V(session::view(addr, ViewLength::FirstKeyframe, &live).await)
                }
                ChurnKind::Connect => One::C(session::connect(addr, codec, &live).await),
            }
        }
    })
    .await
}
