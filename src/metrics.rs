//! Prometheus metrics (`GET /metrics`), through `prometheus-client`.
//!
//! [`Metrics`] owns the registry and a handle to every series that code updates, resolved once
//! in [`Metrics::new`]: a hot path (a packet, a frame) increments an atomic, it never looks a
//! label set up. Every label combination exists from the start, so a scrape shows each series
//! at 0 before it first moves (and `rate()` sees its first increment).
//!
//! Who feeds what:
//! - sessions: [`Metrics::session_started`] returns a [`SessionGuard`]; ending it (or dropping
//!   it) moves `pion_sessions{kind}` back down and counts `pion_session_ends_total{kind,reason}`;
//! - RTP in and out, packets and bytes: [`Metrics::rtp_in`] / [`Metrics::rtp_out`] (or the
//!   `rtp_*` handles) where a packet is received or sent;
//! - the depacketizer's counters (loss, duplicates, late packets, dropped and recorded frames):
//!   [`Metrics::add_depack`] with a finished stream's totals, or a [`DepackFeed`] that adds what
//!   changed since its last report (for long recordings, report on a timer and at the end);
//! - the playback scheduler's counters (frames played, dropped, stalls, clips): likewise
//!   [`Metrics::add_scheduler`] or a [`SchedulerFeed`];
//! - `Rtc::stats` (live peers and forwarding tasks): [`Metrics::set_rtc`], at scrape time;
//! - the rest (PLIs, bytes written, store errors, skips, websocket errors and
//!   connections) through their handles where they happen.
//!
//! Counts that two sources could both feed are taken from one only: RTP packets are counted where
//! they are received and sent (with their bytes), not from `DepackStats::packets` or
//! `SchedulerStats::{video,audio}_packets`; playback skips are counted for every SKIPPED message
//! the session sends (which includes the scheduler's refusals), not from
//! `SchedulerStats::skipped_clips`; recorded frames and lost packets come from the depacketizer
//! only.
//!
//! Every name starts with `pion_`. The output is OpenMetrics text ([`CONTENT_TYPE`]), which
//! Prometheus reads: a counter's `# TYPE` line names the family without `_total`, its samples
//! carry the suffix, and the body ends with `# EOF`.
use std::fmt::Write as _;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use media::MediaKind;
use media::depack::DepackStats;
use media::schedule::SchedulerStats;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

/// The content type of [`Metrics::encode`]'s output (what `prometheus-client`'s text encoder
/// writes: OpenMetrics 1.0, ending in `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "pion";

/// What a session does (the `kind` label of the session metrics: `record`, `play`).
pub use app::protocol::SessionKind;

/// Every session kind, in label order.
const SESSION_KINDS: [SessionKind; 2] = [SessionKind::Record, SessionKind::Play];

/// The label value of a session kind (as on the wire).
pub const fn session_kind_str(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Record => "record",
        SessionKind::Play => "play",
    }
}

const fn session_index(kind: SessionKind) -> usize {
    match kind {
        SessionKind::Record => 0,
        SessionKind::Play => 1,
    }
}

/// Why a session ended (the `reason` label of `pion_session_ends_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The client asked (STOP, or a stop through the API).
    Stopped,
    /// The peer disconnected, or its websocket closed, and did not come back.
    PeerGone,
    /// The peer never connected (ICE/DTLS) within the connect timeout.
    NeverConnected,
    /// A connected recorder sent no media within the media timeout.
    NoMedia,
    /// A limit was reached (longest recording, sessions, per-client limits).
    Limit,
    /// Writing the recording failed.
    WriteFailed,
    /// The server is shutting down.
    Shutdown,
    /// The session ran to its natural end (a single recording played to its end).
    Finished,
    /// Anything else; also what a [`SessionGuard`] dropped without a reason counts as.
    Error,
}

impl EndReason {
    /// Every reason, in label order.
    pub const ALL: [EndReason; 9] = [
        EndReason::Stopped,
        EndReason::PeerGone,
        EndReason::NeverConnected,
        EndReason::NoMedia,
        EndReason::Limit,
        EndReason::WriteFailed,
        EndReason::Shutdown,
        EndReason::Finished,
        EndReason::Error,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Stopped => "stopped",
            EndReason::PeerGone => "peer_gone",
            EndReason::NeverConnected => "never_connected",
            EndReason::NoMedia => "no_media",
            EndReason::Limit => "limit",
            EndReason::WriteFailed => "write_failed",
            EndReason::Shutdown => "shutdown",
            EndReason::Finished => "finished",
            EndReason::Error => "error",
        }
    }

    const fn index(self) -> usize {
        match self {
            EndReason::Stopped => 0,
            EndReason::PeerGone => 1,
            EndReason::NeverConnected => 2,
            EndReason::NoMedia => 3,
            EndReason::Limit => 4,
            EndReason::WriteFailed => 5,
            EndReason::Shutdown => 6,
            EndReason::Finished => 7,
            EndReason::Error => 8,
        }
    }
}

/// Why a websocket was refused or closed on the server's initiative (the `reason` label of
/// `pion_websocket_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WsError {
    /// A message that does not parse, is too large, or is not allowed in the session's state.
    BadMessage,
    /// The client stopped reading: its outgoing queue stayed full.
    NotReading,
    /// No message and no pong within the idle timeout.
    Idle,
    /// The upgrade was refused (origin, access, per-client limit).
    Refused,
}

impl WsError {
    /// Every reason, in label order.
    pub const ALL: [WsError; 4] = [
        WsError::BadMessage,
        WsError::NotReading,
        WsError::Idle,
        WsError::Refused,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            WsError::BadMessage => "bad_message",
            WsError::NotReading => "not_reading",
            WsError::Idle => "idle",
            WsError::Refused => "refused",
        }
    }

    const fn index(self) -> usize {
        match self {
            WsError::BadMessage => 0,
            WsError::NotReading => 1,
            WsError::Idle => 2,
            WsError::Refused => 3,
        }
    }
}

/// Index of a media kind in the per-kind handle arrays (video first, as in the label order).
const fn media_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Video => 0,
        MediaKind::Audio => 1,
    }
}

const MEDIA_KINDS: [MediaKind; 2] = [MediaKind::Video, MediaKind::Audio];

const fn media_str(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

// Label values. The derive of `EncodeLabelValue` writes the variant name as it is spelled
// ("Record"), so the lowercase values are written by hand.

/// `SessionKind` as a label value; a local type because both the trait and `SessionKind` are
/// foreign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Kind(SessionKind);

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(session_kind_str(self.0))
    }
}

impl EncodeLabelValue for EndReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for WsError {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `MediaKind` as a label value (`video` / `audio`); a local type because both the trait and
/// `MediaKind` are foreign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Media(MediaKind);

impl EncodeLabelValue for Media {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(media_str(self.0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Direction {
    In,
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// Why a recorded frame was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DropReason {
    /// Incomplete, malformed, or waiting for a keyframe after loss (`DepackStats::dropped_frames`).
    Damaged,
    /// A repeated RTP timestamp (`DepackStats::same_ts_dropped`).
    SameTimestamp,
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            DropReason::Damaged => "damaged",
            DropReason::SameTimestamp => "same_timestamp",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndLabels {
    kind: Kind,
    reason: EndReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RtpLabels {
    direction: Direction,
    kind: Media,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MediaLabels {
    kind: Media,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabels {
    kind: Media,
    reason: DropReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WsLabels {
    reason: WsError,
}

/// The server's metrics; cheap to clone (one `Arc`). Dereferences to [`MetricHandles`], so
/// `metrics.plis_sent.inc()` works.
#[derive(Clone, Debug)]
pub struct Metrics(Arc<MetricHandles>);

/// The registry and every pre-resolved series. The public fields are the handles code
/// increments directly; the per-label ones are reached through [`Metrics`]' methods.
#[derive(Debug)]
pub struct MetricHandles {
    registry: Registry,

    /// `[kind]`
    sessions: [Gauge; 2],
    /// `[kind]`
    session_starts: [Counter; 2],
    /// `[kind][reason]`
    session_ends: [[Counter; 9]; 2],

    /// `pion_rtp_packets_total{direction="in",kind="video"}`
    pub rtp_in_video_packets: Counter,
    /// `pion_rtp_bytes_total{direction="in",kind="video"}` (RTP payload bytes)
    pub rtp_in_video_bytes: Counter,
    /// `pion_rtp_packets_total{direction="in",kind="audio"}`
    pub rtp_in_audio_packets: Counter,
    /// `pion_rtp_bytes_total{direction="in",kind="audio"}`
    pub rtp_in_audio_bytes: Counter,
    /// `pion_rtp_packets_total{direction="out",kind="video"}`
    pub rtp_out_video_packets: Counter,
    /// `pion_rtp_bytes_total{direction="out",kind="video"}`
    pub rtp_out_video_bytes: Counter,
    /// `pion_rtp_packets_total{direction="out",kind="audio"}`
    pub rtp_out_audio_packets: Counter,
    /// `pion_rtp_bytes_total{direction="out",kind="audio"}`
    pub rtp_out_audio_bytes: Counter,

    /// `[media kind]`, from [`DepackStats::lost`].
    packets_lost: [Counter; 2],
    /// `[media kind]`, from [`DepackStats::duplicates`].
    rtp_duplicates: [Counter; 2],
    /// `[media kind]`, from [`DepackStats::late`].
    rtp_late: [Counter; 2],
    /// `[media kind]`, from [`DepackStats::frames`].
    frames_recorded: [Counter; 2],
    /// `[media kind]`: damaged, then same timestamp.
    record_frames_dropped: [[Counter; 2]; 2],
    /// `[media kind]`, from [`SchedulerStats::video_frames`] / `audio_frames`.
    frames_played: [Counter; 2],
    /// `[reason]`
    websocket_errors: [Counter; 4],

    /// `pion_plis_sent_total`: picture loss indications (keyframe requests) sent to recorders.
    pub plis_sent: Counter,
    /// `pion_nacks_sent_total`: NACKs sent to recorders (by webrtc-rs's generator; brought up to
    /// date at scrape time, see [`Metrics::set_rtc`]).
    pub nacks_sent: Counter,
    /// `pion_recording_bytes_written_total`: bytes written to recording files.
    pub recording_bytes_written: Counter,
    /// `pion_store_errors_total`: failed store operations (open, write, finish, list, rename,
    /// delete, read).
    pub store_errors: Counter,
    /// `pion_playback_skips_total`: recordings skipped during playback (one per SKIPPED message).
    pub playback_skips: Counter,
    /// `pion_playback_frames_dropped_total`, from [`SchedulerStats::dropped_frames`].
    pub playback_frames_dropped: Counter,
    /// `pion_playback_stalls_total`, from [`SchedulerStats::stalls`].
    pub playback_stalls: Counter,
    /// `pion_playback_clips_started_total`, from [`SchedulerStats::clips_started`].
    pub playback_clips_started: Counter,
    /// `pion_websocket_connections`: open websockets (see [`Metrics::websocket_opened`]).
    pub websocket_connections: Gauge,
    /// `pion_rtc_live_peers`: peer connections whose WebRTC state still exists ([`Metrics::set_rtc`]).
    pub rtc_live_peers: Gauge,
    /// `pion_rtc_live_tasks`: remote-track forwarding tasks still running ([`Metrics::set_rtc`]).
    pub rtc_live_tasks: Gauge,
}

impl Deref for Metrics {
    type Target = MetricHandles;

    fn deref(&self) -> &MetricHandles {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a labelled family and returns it (to resolve its series).
fn family<S, M>(registry: &mut Registry, name: &str, help: &str) -> Family<S, M>
where
    S: Clone + Hash + Eq,
    M: Default,
    Family<S, M>: Metric,
{
    let family = Family::<S, M>::default();
    registry.register(name, help, family.clone());
    family
}

/// The series of `family` for `labels`, created now; the returned handle shares its value.
fn series<S, M>(family: &Family<S, M>, labels: S) -> M
where
    S: Clone + Hash + Eq,
    M: Clone + Default,
{
    // The read guard is dropped at the end of the statement (a second `get_or_create` while
    // it is held could wait for it forever).
    M::clone(&family.get_or_create(&labels))
}

/// Registers an unlabelled metric and returns it.
fn single<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric, with every label combination at 0.
    pub fn new() -> Metrics {
        // Help texts: the registry appends the final period.
        let mut r = Registry::with_prefix(PREFIX);

        let sessions_f: Family<SessionLabels, Gauge> = family(
            &mut r,
            "sessions",
            "Running sessions by kind (record, play)",
        );
        let starts_f: Family<SessionLabels, Counter> =
            family(&mut r, "session_starts", "Sessions started, by kind");
        let ends_f: Family<EndLabels, Counter> = family(
            &mut r,
            "session_ends",
            "Sessions ended, by kind and reason (stopped, peer_gone, never_connected, no_media, \
             limit, write_failed, shutdown, finished, error)",
        );
        let sessions = SESSION_KINDS.map(|k| series(&sessions_f, SessionLabels { kind: Kind(k) }));
        let session_starts =
            SESSION_KINDS.map(|k| series(&starts_f, SessionLabels { kind: Kind(k) }));
        let session_ends = SESSION_KINDS.map(|k| {
            EndReason::ALL.map(|reason| {
                series(
                    &ends_f,
                    EndLabels {
                        kind: Kind(k),
                        reason,
                    },
                )
            })
        });

        let packets_f: Family<RtpLabels, Counter> = family(
            &mut r,
            "rtp_packets",
            "RTP packets received from recorders (in) and sent to viewers (out), by media kind",
        );
        let bytes_f: Family<RtpLabels, Counter> = family(
            &mut r,
            "rtp_bytes",
            "RTP bytes (header and payload) received (in) and sent (out), by media kind",
        );
        let rtp = |f: &Family<RtpLabels, Counter>, direction: Direction, kind: MediaKind| {
            series(
                f,
                RtpLabels {
                    direction,
                    kind: Media(kind),
                },
            )
        };

        let lost_f: Family<MediaLabels, Counter> = family(
            &mut r,
            "packets_lost",
            "RTP packets from recorders declared lost (not received within the reorder window)",
        );
        let dup_f: Family<MediaLabels, Counter> = family(
            &mut r,
            "rtp_duplicates",
            "RTP packets from recorders received more than once",
        );
        let late_f: Family<MediaLabels, Counter> = family(
            &mut r,
            "rtp_late",
            "RTP packets from recorders that arrived after being declared lost or passed",
        );
        let rec_f: Family<MediaLabels, Counter> = family(
            &mut r,
            "frames_recorded",
            "Frames assembled from recorders' RTP and handed to the recording writer",
        );
        let rec_drop_f: Family<DropLabels, Counter> = family(
            &mut r,
            "record_frames_dropped",
            "Recorded frames discarded: damaged (incomplete, malformed, or waiting for a \
             keyframe after loss) or same_timestamp (repeating the previous frame's timestamp)",
        );
        let played_f: Family<MediaLabels, Counter> = family(
            &mut r,
            "frames_played",
            "Frames sent to viewers, by media kind",
        );
        let per_media = |f: &Family<MediaLabels, Counter>| -> [Counter; 2] {
            MEDIA_KINDS.map(|kind| series(f, MediaLabels { kind: Media(kind) }))
        };
        let record_frames_dropped = MEDIA_KINDS.map(|kind| {
            [DropReason::Damaged, DropReason::SameTimestamp].map(|reason| {
                series(
                    &rec_drop_f,
                    DropLabels {
                        kind: Media(kind),
                        reason,
                    },
                )
            })
        });

        let plis_sent = single(
            &mut r,
            "plis_sent",
            "Picture loss indications (keyframe requests) sent to recorders",
        );
        let nacks_sent = single(&mut r, "nacks_sent", "NACKs sent to recorders");
        let recording_bytes_written = single(
            &mut r,
            "recording_bytes_written",
            "Bytes written to recording files",
        );
        let store_errors = single(&mut r, "store_errors", "Failed recording store operations");
        let playback_skips = single(
            &mut r,
            "playback_skips",
            "Recordings skipped during playback (unreadable, or a codec the viewer lacks)",
        );
        let playback_frames_dropped = single(
            &mut r,
            "playback_frames_dropped",
            "Frames read for playback but never sent (before a clip's first keyframe, a track \
             the viewer lacks, or over the queue limits)",
        );
        let playback_stalls = single(
            &mut r,
            "playback_stalls",
            "Times playback fell behind and its clock was rebased",
        );
        let playback_clips_started = single(
            &mut r,
            "playback_clips_started",
            "Recordings started during playback",
        );

        let ws_f: Family<WsLabels, Counter> = family(
            &mut r,
            "websocket_errors",
            "Websockets refused or closed by the server, by reason (bad_message, not_reading, \
             idle, refused)",
        );
        let websocket_errors = WsError::ALL.map(|reason| series(&ws_f, WsLabels { reason }));
        let websocket_connections = single(&mut r, "websocket_connections", "Open websockets");

        let rtc_live_peers = single(
            &mut r,
            "rtc_live_peers",
            "WebRTC peer connections whose state still exists",
        );
        let rtc_live_tasks = single(
            &mut r,
            "rtc_live_tasks",
            "Remote-track forwarding tasks still running",
        );

        let start_time: Gauge = single(
            &mut r,
            "start_time_seconds",
            "When the server started, in seconds since the Unix epoch",
        );
        if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            start_time.set(saturating_i64(since.as_secs()));
        }
        r.register(
            "build",
            "The server's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        Metrics(Arc::new(MetricHandles {
            sessions,
            session_starts,
            session_ends,
            rtp_in_video_packets: rtp(&packets_f, Direction::In, MediaKind::Video),
            rtp_in_video_bytes: rtp(&bytes_f, Direction::In, MediaKind::Video),
            rtp_in_audio_packets: rtp(&packets_f, Direction::In, MediaKind::Audio),
            rtp_in_audio_bytes: rtp(&bytes_f, Direction::In, MediaKind::Audio),
            rtp_out_video_packets: rtp(&packets_f, Direction::Out, MediaKind::Video),
            rtp_out_video_bytes: rtp(&bytes_f, Direction::Out, MediaKind::Video),
            rtp_out_audio_packets: rtp(&packets_f, Direction::Out, MediaKind::Audio),
            rtp_out_audio_bytes: rtp(&bytes_f, Direction::Out, MediaKind::Audio),
            packets_lost: per_media(&lost_f),
            rtp_duplicates: per_media(&dup_f),
            rtp_late: per_media(&late_f),
            frames_recorded: per_media(&rec_f),
            record_frames_dropped,
            frames_played: per_media(&played_f),
            websocket_errors,
            plis_sent,
            nacks_sent,
            recording_bytes_written,
            store_errors,
            playback_skips,
            playback_frames_dropped,
            playback_stalls,
            playback_clips_started,
            websocket_connections,
            rtc_live_peers,
            rtc_live_tasks,
            registry: r,
        }))
    }

    /// Counts a session start and holds it in `pion_sessions{kind}` until the guard is ended
    /// (or dropped).
    pub fn session_started(&self, kind: SessionKind) -> SessionGuard {
        self.session_starts[session_index(kind)].inc();
        self.sessions[session_index(kind)].inc();
        SessionGuard {
            metrics: self.clone(),
            kind,
            reason: EndReason::Error,
        }
    }

    /// Running sessions of `kind` (`pion_sessions{kind}`).
    pub fn running_sessions(&self, kind: SessionKind) -> i64 {
        self.sessions[session_index(kind)].get()
    }

    /// `pion_session_starts_total{kind}`.
    pub fn session_starts(&self, kind: SessionKind) -> &Counter {
        &self.session_starts[session_index(kind)]
    }

    /// `pion_session_ends_total{kind,reason}`.
    pub fn session_ends(&self, kind: SessionKind, reason: EndReason) -> &Counter {
        &self.session_ends[session_index(kind)][reason.index()]
    }

    /// Counts one RTP packet of `bytes` received from a recorder.
    pub fn rtp_in(&self, kind: MediaKind, bytes: usize) {
        let (packets, total) = match kind {
            MediaKind::Video => (&self.rtp_in_video_packets, &self.rtp_in_video_bytes),
            MediaKind::Audio => (&self.rtp_in_audio_packets, &self.rtp_in_audio_bytes),
        };
        packets.inc();
        total.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Counts one RTP packet of `bytes` sent to a viewer.
    pub fn rtp_out(&self, kind: MediaKind, bytes: usize) {
        let (packets, total) = match kind {
            MediaKind::Video => (&self.rtp_out_video_packets, &self.rtp_out_video_bytes),
            MediaKind::Audio => (&self.rtp_out_audio_packets, &self.rtp_out_audio_bytes),
        };
        packets.inc();
        total.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// `pion_packets_lost_total{kind}`.
    pub fn packets_lost(&self, kind: MediaKind) -> &Counter {
        &self.packets_lost[media_index(kind)]
    }

    /// `pion_frames_recorded_total{kind}`.
    pub fn frames_recorded(&self, kind: MediaKind) -> &Counter {
        &self.frames_recorded[media_index(kind)]
    }

    /// `pion_frames_played_total{kind}`.
    pub fn frames_played(&self, kind: MediaKind) -> &Counter {
        &self.frames_played[media_index(kind)]
    }

    /// Counts a websocket refused or closed by the server for `reason`.
    pub fn websocket_error(&self, reason: WsError) {
        self.websocket_errors[reason.index()].inc();
    }

    /// `pion_websocket_errors_total{reason}`.
    pub fn websocket_errors(&self, reason: WsError) -> &Counter {
        &self.websocket_errors[reason.index()]
    }

    /// Holds one open websocket in `pion_websocket_connections` until the guard is dropped.
    pub fn websocket_opened(&self) -> WebsocketGuard {
        self.websocket_connections.inc();
        WebsocketGuard {
            metrics: self.clone(),
        }
    }

    /// Adds one stream's depacketizer counters (a finished stream's totals; for reports while
    /// it runs, see [`DepackFeed`]): lost, duplicate and late packets, recorded frames, and
    /// frames dropped as damaged or for a repeated timestamp. `packets` and `padding` are not
    /// added (RTP packets are counted where they are received).
    pub fn add_depack(&self, kind: MediaKind, stats: &DepackStats) {
        let i = media_index(kind);
        self.packets_lost[i].inc_by(stats.lost);
        self.rtp_duplicates[i].inc_by(stats.duplicates);
        self.rtp_late[i].inc_by(stats.late);
        self.frames_recorded[i].inc_by(stats.frames);
        self.record_frames_dropped[i][0].inc_by(stats.dropped_frames);
        self.record_frames_dropped[i][1].inc_by(stats.same_ts_dropped);
    }

    /// Adds one playback's scheduler counters (a finished playback's totals; for reports while
    /// it runs, see [`SchedulerFeed`]): frames played by kind, frames dropped, stalls, clips
    /// started. Packets (counted where they are sent) and skipped clips (counted with every
    /// SKIPPED message in `playback_skips`) are not added.
    pub fn add_scheduler(&self, stats: &SchedulerStats) {
        self.frames_played[media_index(MediaKind::Video)].inc_by(stats.video_frames);
        self.frames_played[media_index(MediaKind::Audio)].inc_by(stats.audio_frames);
        self.playback_frames_dropped.inc_by(stats.dropped_frames);
        self.playback_stalls.inc_by(stats.stalls);
        self.playback_clips_started.inc_by(stats.clips_started);
    }

    /// Sets the WebRTC live-object gauges (from `Rtc::stats`, at scrape time).
    pub fn set_rtc(&self, live_peers: u64, live_tasks: u64, nacks_sent_total: u64) {
        self.rtc_live_peers.set(saturating_i64(live_peers));
        self.rtc_live_tasks.set(saturating_i64(live_tasks));
        // The library's total since start, added as the difference (a counter only grows).
        let seen = self.nacks_sent.get();
        if nacks_sent_total > seen {
            self.nacks_sent.inc_by(nacks_sent_total - seen);
        }
    }

    /// Every metric in the OpenMetrics text format (ends with `# EOF`); see [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // The encoder fails only when its writer does, and writing to a String does not.
        let written = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        debug_assert!(written.is_ok(), "encoding metrics failed: {written:?}");
        out
    }

    /// The `GET /metrics` response: [`Metrics::encode`] with [`CONTENT_TYPE`], never cached.
    pub fn response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.encode(),
        )
            .into_response()
    }
}

/// One running session in `pion_sessions{kind}`. [`SessionGuard::end`] (or dropping it) takes
/// it out and counts `pion_session_ends_total{kind,reason}` once; a guard dropped without a
/// reason counts as [`EndReason::Error`], so a path that forgets to say why shows up.
#[must_use = "the session counts as running until the guard is ended or dropped"]
#[derive(Debug)]
pub struct SessionGuard {
    metrics: Metrics,
    kind: SessionKind,
    reason: EndReason,
}

impl SessionGuard {
    /// The session's kind.
    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    /// The reason counted when the guard is dropped (for sessions that learn why they end
    /// before they finish ending).
    pub fn set_reason(&mut self, reason: EndReason) {
        self.reason = reason;
    }

    /// Ends the session for `reason`.
    pub fn end(mut self, reason: EndReason) {
        self.reason = reason;
        // Dropped here: `Drop` does the counting.
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.sessions[session_index(self.kind)].dec();
        self.metrics.session_ends[session_index(self.kind)][self.reason.index()].inc();
    }
}

/// One open websocket in `pion_websocket_connections`, until dropped.
#[must_use = "the websocket counts as open until the guard is dropped"]
#[derive(Debug)]
pub struct WebsocketGuard {
    metrics: Metrics,
}

impl Drop for WebsocketGuard {
    fn drop(&mut self) {
        self.metrics.websocket_connections.dec();
    }
}

/// Reports one depacketizer's counters as they grow: each [`DepackFeed::report`] adds what
/// changed since the previous one, so a long recording shows up while it runs (report on a
/// timer and once at the end). One feed per `Depacketizer`.
#[derive(Debug)]
pub struct DepackFeed {
    kind: MediaKind,
    reported: DepackStats,
}

impl DepackFeed {
    /// A feed for the depacketizer of a `kind` stream.
    pub fn new(kind: MediaKind) -> DepackFeed {
        DepackFeed {
            kind,
            reported: DepackStats::default(),
        }
    }

    /// Adds `now - last reported` to the metrics. A counter that went down (a new
    /// depacketizer) adds nothing and becomes the new base.
    pub fn report(&mut self, metrics: &Metrics, now: &DepackStats) {
        let was = &self.reported;
        let delta = DepackStats {
            lost: now.lost.saturating_sub(was.lost),
            duplicates: now.duplicates.saturating_sub(was.duplicates),
            late: now.late.saturating_sub(was.late),
            frames: now.frames.saturating_sub(was.frames),
            dropped_frames: now.dropped_frames.saturating_sub(was.dropped_frames),
            same_ts_dropped: now.same_ts_dropped.saturating_sub(was.same_ts_dropped),
            ..DepackStats::default()
        };
        metrics.add_depack(self.kind, &delta);
        self.reported = *now;
    }
}

/// Reports one playback scheduler's counters as they grow, like [`DepackFeed`].
#[derive(Debug, Default)]
pub struct SchedulerFeed {
    reported: SchedulerStats,
}

impl SchedulerFeed {
    /// A feed for one `Scheduler`.
    pub fn new() -> SchedulerFeed {
        SchedulerFeed::default()
    }

    /// Adds `now - last reported` to the metrics.
    pub fn report(&mut self, metrics: &Metrics, now: &SchedulerStats) {
        let was = &self.reported;
        let delta = SchedulerStats {
            video_frames: now.video_frames.saturating_sub(was.video_frames),
            audio_frames: now.audio_frames.saturating_sub(was.audio_frames),
            dropped_frames: now.dropped_frames.saturating_sub(was.dropped_frames),
            stalls: now.stalls.saturating_sub(was.stalls),
            clips_started: now.clips_started.saturating_sub(was.clips_started),
            ..SchedulerStats::default()
        };
        metrics.add_scheduler(&delta);
        self.reported = *now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (family name without the prefix, OpenMetrics type)
    const FAMILIES: &[(&str, &str)] = &[
        ("sessions", "gauge"),
        ("session_starts", "counter"),
        ("session_ends", "counter"),
        ("rtp_packets", "counter"),
        ("rtp_bytes", "counter"),
        ("packets_lost", "counter"),
        ("rtp_duplicates", "counter"),
        ("rtp_late", "counter"),
        ("frames_recorded", "counter"),
        ("record_frames_dropped", "counter"),
        ("frames_played", "counter"),
        ("plis_sent", "counter"),
        ("nacks_sent", "counter"),
        ("recording_bytes_written", "counter"),
        ("store_errors", "counter"),
        ("playback_skips", "counter"),
        ("playback_frames_dropped", "counter"),
        ("playback_stalls", "counter"),
        ("playback_clips_started", "counter"),
        ("websocket_errors", "counter"),
        ("websocket_connections", "gauge"),
        ("rtc_live_peers", "gauge"),
        ("rtc_live_tasks", "gauge"),
        ("start_time_seconds", "gauge"),
        ("build", "info"),
    ];

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn every_family_has_help_type_and_samples() {
        let text = Metrics::new().encode();
        for (name, ty) in FAMILIES {
            let help = format!("# HELP {PREFIX}_{name} ");
            assert_eq!(
                text.lines().filter(|l| l.starts_with(&help)).count(),
                1,
                "one HELP line for {name} in:\n{text}"
            );
            assert!(
                has_line(&text, &format!("# TYPE {PREFIX}_{name} {ty}")),
                "TYPE line for {name} in:\n{text}"
            );
            let sample = match *ty {
                "counter" => format!("{PREFIX}_{name}_total"),
                "info" => format!("{PREFIX}_{name}_info"),
                _ => format!("{PREFIX}_{name}"),
            };
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(&sample)),
                "a sample of {name} in:\n{text}"
            );
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            FAMILIES.len(),
            "no family left out of the test:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let version = env!("CARGO_PKG_VERSION");
        assert!(has_line(
            &text,
            &format!("{PREFIX}_build_info{{version=\"{version}\"}} 1")
        ));
        // Every label combination exists before anything happened.
        for kind in SESSION_KINDS {
            for reason in EndReason::ALL {
                let line = format!(
                    "{PREFIX}_session_ends_total{{kind=\"{}\",reason=\"{}\"}} 0",
                    session_kind_str(kind),
                    reason.as_str()
                );
                assert!(has_line(&text, &line), "{line} in:\n{text}");
            }
        }
        for reason in WsError::ALL {
            let line = format!(
                "{PREFIX}_websocket_errors_total{{reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(has_line(&text, &line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn session_guard_moves_the_gauge_and_counts_the_reason() {
        let m = Metrics::new();
        let a = m.session_started(SessionKind::Record);
        let b = m.session_started(SessionKind::Record);
        let c = m.session_started(SessionKind::Play);
        assert_eq!(m.running_sessions(SessionKind::Record), 2);
        assert_eq!(m.running_sessions(SessionKind::Play), 1);
        assert_eq!(m.session_starts(SessionKind::Record).get(), 2);
        assert_eq!(m.session_starts(SessionKind::Play).get(), 1);

        a.end(EndReason::NoMedia);
        assert_eq!(m.running_sessions(SessionKind::Record), 1);
        assert_eq!(
            m.session_ends(SessionKind::Record, EndReason::NoMedia)
                .get(),
            1
        );
        let text = m.encode();
        assert!(
            has_line(&text, "pion_sessions{kind=\"record\"} 1"),
            "{text}"
        );
        assert!(
            has_line(
                &text,
                "pion_session_ends_total{kind=\"record\",reason=\"no_media\"} 1"
            ),
            "{text}"
        );

        // A reason set early is the one counted on drop; no reason counts as an error.
        let mut b = b;
        b.set_reason(EndReason::Shutdown);
        drop(b);
        drop(c);
        assert_eq!(m.running_sessions(SessionKind::Record), 0);
        assert_eq!(m.running_sessions(SessionKind::Play), 0);
        assert_eq!(
            m.session_ends(SessionKind::Record, EndReason::Shutdown)
                .get(),
            1
        );
        assert_eq!(m.session_ends(SessionKind::Play, EndReason::Error).get(), 1);
        let ended: u64 = SESSION_KINDS
            .iter()
            .flat_map(|&k| EndReason::ALL.iter().map(move |&r| (k, r)))
            .map(|(k, r)| m.session_ends(k, r).get())
            .sum();
        assert_eq!(ended, 3, "each guard counts one end");
    }

    #[test]
    fn websocket_guard_and_errors() {
        let m = Metrics::new();
        let a = m.websocket_opened();
        let b = m.websocket_opened();
        assert_eq!(m.websocket_connections.get(), 2);
        drop(a);
        assert_eq!(m.websocket_connections.get(), 1);
        drop(b);
        assert_eq!(m.websocket_connections.get(), 0);
        m.websocket_error(WsError::Idle);
        m.websocket_error(WsError::Idle);
        m.websocket_error(WsError::Refused);
        assert_eq!(m.websocket_errors(WsError::Idle).get(), 2);
        assert_eq!(m.websocket_errors(WsError::Refused).get(), 1);
        assert_eq!(m.websocket_errors(WsError::BadMessage).get(), 0);
        assert!(has_line(
            &m.encode(),
            "pion_websocket_errors_total{reason=\"idle\"} 2"
        ));
    }

    #[test]
    fn counters_add_up() {
        let m = Metrics::new();
        // Clones share their series.
        let other = m.clone();
        m.rtp_in(MediaKind::Video, 1200);
        other.rtp_in(MediaKind::Video, 800);
        m.rtp_in(MediaKind::Audio, 100);
        m.rtp_out(MediaKind::Audio, 60);
        assert_eq!(m.rtp_in_video_packets.get(), 2);
        assert_eq!(m.rtp_in_video_bytes.get(), 2000);
        assert_eq!(m.rtp_in_audio_packets.get(), 1);
        assert_eq!(m.rtp_in_audio_bytes.get(), 100);
        assert_eq!(m.rtp_out_audio_packets.get(), 1);
        assert_eq!(m.rtp_out_audio_bytes.get(), 60);
        assert_eq!(m.rtp_out_video_packets.get(), 0);
        let text = m.encode();
        assert!(
            has_line(
                &text,
                "pion_rtp_bytes_total{direction=\"in\",kind=\"video\"} 2000"
            ),
            "{text}"
        );
        assert!(
            has_line(
                &text,
                "pion_rtp_packets_total{direction=\"out\",kind=\"audio\"} 1"
            ),
            "{text}"
        );

        m.plis_sent.inc();
        m.recording_bytes_written.inc_by(4096);
        m.store_errors.inc();
        m.playback_skips.inc();
        let text = m.encode();
        for line in [
            "pion_plis_sent_total 1",
            "pion_recording_bytes_written_total 4096",
            "pion_store_errors_total 1",
            "pion_playback_skips_total 1",
        ] {
            assert!(has_line(&text, line), "{line} in:\n{text}");
        }

        m.set_rtc(4, 7, 3);
        assert_eq!(m.rtc_live_peers.get(), 4);
        assert_eq!(m.rtc_live_tasks.get(), 7);
        assert_eq!(m.nacks_sent.get(), 3);
        // The library's NACK total only grows; a scrape adds the difference, once.
        m.set_rtc(1, 0, 5);
        m.set_rtc(1, 0, 5);
        assert_eq!(m.rtc_live_peers.get(), 1);
        assert_eq!(m.rtc_live_tasks.get(), 0);
        assert_eq!(m.nacks_sent.get(), 5);
        m.set_rtc(u64::MAX, 0, 5);
        assert_eq!(m.rtc_live_peers.get(), i64::MAX);
    }

    #[test]
    fn depack_and_scheduler_stats_add_up() {
        let m = Metrics::new();
        let video = DepackStats {
            packets: 1000,
            duplicates: 2,
            lost: 5,
            padding: 1,
            frames: 90,
            dropped_frames: 3,
            keyframes: 2,
            late: 1,
            same_ts_dropped: 4,
        };
        m.add_depack(MediaKind::Video, &video);
        m.add_depack(MediaKind::Video, &video);
        m.add_depack(
            MediaKind::Audio,
            &DepackStats {
                lost: 1,
                frames: 50,
                ..DepackStats::default()
            },
        );
        assert_eq!(m.packets_lost(MediaKind::Video).get(), 10);
        assert_eq!(m.packets_lost(MediaKind::Audio).get(), 1);
        assert_eq!(m.frames_recorded(MediaKind::Video).get(), 180);
        assert_eq!(m.frames_recorded(MediaKind::Audio).get(), 50);
        let text = m.encode();
        for line in [
            "pion_rtp_duplicates_total{kind=\"video\"} 4",
            "pion_rtp_late_total{kind=\"video\"} 2",
            "pion_record_frames_dropped_total{kind=\"video\",reason=\"damaged\"} 6",
            "pion_record_frames_dropped_total{kind=\"video\",reason=\"same_timestamp\"} 8",
            "pion_record_frames_dropped_total{kind=\"audio\",reason=\"damaged\"} 0",
            "pion_packets_lost_total{kind=\"audio\"} 1",
        ] {
            assert!(has_line(&text, line), "{line} in:\n{text}");
        }
        // Packets are counted where they arrive, not from the depacketizer.
        assert_eq!(m.rtp_in_video_packets.get(), 0);

        // A feed adds only what changed since its last report.
        let m = Metrics::new();
        let mut feed = DepackFeed::new(MediaKind::Video);
        let mut now = DepackStats {
            lost: 2,
            frames: 10,
            ..DepackStats::default()
        };
        feed.report(&m, &now);
        now.lost = 3;
        now.frames = 25;
        feed.report(&m, &now);
        feed.report(&m, &now);
        assert_eq!(m.packets_lost(MediaKind::Video).get(), 3);
        assert_eq!(m.frames_recorded(MediaKind::Video).get(), 25);
        // Going down (a new depacketizer behind the same feed) adds nothing, then counts on.
        feed.report(&m, &DepackStats::default());
        feed.report(
            &m,
            &DepackStats {
                frames: 5,
                ..DepackStats::default()
            },
        );
        assert_eq!(m.frames_recorded(MediaKind::Video).get(), 30);

        let sched = SchedulerStats {
            video_packets: 500,
            audio_packets: 300,
            video_frames: 60,
            audio_frames: 100,
            dropped_frames: 7,
            stalls: 1,
            skipped_clips: 2,
            clips_started: 3,
        };
        m.add_scheduler(&sched);
        let mut feed = SchedulerFeed::new();
        feed.report(&m, &sched);
        feed.report(
            &m,
            &SchedulerStats {
                video_frames: 61,
                ..sched
            },
        );
        assert_eq!(m.frames_played(MediaKind::Video).get(), 121);
        assert_eq!(m.frames_played(MediaKind::Audio).get(), 200);
        assert_eq!(m.playback_frames_dropped.get(), 14);
        assert_eq!(m.playback_stalls.get(), 2);
        assert_eq!(m.playback_clips_started.get(), 6);
        // Skips are counted per SKIPPED message and packets where they are sent.
        assert_eq!(m.playback_skips.get(), 0);
        assert_eq!(m.rtp_out_video_packets.get(), 0);
    }

    #[test]
    fn response_has_the_openmetrics_content_type() {
        let m = Metrics::new();
        let response = m.response();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some(CONTENT_TYPE));
    }

    #[test]
    fn metrics_are_shareable_across_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Metrics>();
        send_sync::<SessionGuard>();
        send_sync::<WebsocketGuard>();
    }
}
