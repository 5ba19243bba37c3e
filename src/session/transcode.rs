//! Stored clips in another video codec, one encoder per recording and output codec.
//!
//! A viewer whose browser lacks a clip's video codec reads the clip through a [`Job`]: a
//! thread that demuxes the clip, re-encodes its video (`codec::Transcoder`: timestamps and
//! keyframes kept) and passes its audio through, into a log of frames. Every viewer that
//! plays the same clip in the same codec at the same time reads that one log at its own
//! pace, so N such viewers cost one decoder and one encoder, not N.
//!
//! Bounds: the job runs at most [`AHEAD_FRAMES`] ahead of its furthest reader (transcoding
//! is ~20x faster than real time, so it would otherwise race through the clip); the log
//! keeps the clip from its start while it holds at most [`KEEP_BYTES`], so that a viewer
//! who starts the clip a little later still shares the job, and past that drops what every
//! reader has read. A viewer who comes after the start was dropped gets a job of its own. A
//! job whose readers have all gone ends.
//!
//! Hand-written because it is the application's sharing policy, not a codec's: the codec
//! crate makes the frames, this decides who shares them.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use app::protocol::RecordingMeta;
use media::container::{Demuxer, TrackInfo};
use media::{Codec, Frame, MediaKind};

use crate::store::{MediaSource, container_kind};

/// How far (in frames of both kinds, about 2 s of 30 fps video with its audio) a job runs
/// ahead of its furthest reader.
pub const AHEAD_FRAMES: usize = 160;
/// The log keeps a clip from its start while it holds at most this (32 MiB: about four
/// minutes of the encoder's 1 Mbit/s)...
pub const KEEP_BYTES: usize = 32 << 20;
/// ...and while all jobs together hold at most this: past it, every job keeps only what its
/// readers have not read yet (at most about [`AHEAD_FRAMES`] plus the spread between them).
pub const KEEP_TOTAL_BYTES: usize = 256 << 20;

/// The running jobs, by recording id and output codec; cheap to clone.
#[derive(Clone)]
pub struct Transcodes {
    jobs: Arc<Mutex<HashMap<JobKey, Weak<Job>>>>,
    started: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes in every job's log.
    kept: Arc<AtomicUsize>,
    /// [`KEEP_BYTES`] and [`KEEP_TOTAL_BYTES`] (smaller in tests).
    keep: usize,
    keep_total: usize,
}

impl Default for Transcodes {
    fn default() -> Self {
        Transcodes::with_limits(KEEP_BYTES, KEEP_TOTAL_BYTES)
    }
}

/// A job's recording id and output codec.
type JobKey = (String, Codec);

/// A clip's frames in decode order, as a demuxer gives them.
type Frames = Box<dyn FnMut() -> Result<Option<Frame>, String> + Send>;

struct Job {
    /// The clip's tracks, its video in the output codec.
    info: TrackInfo,
    log: Mutex<Log>,
    /// Signalled when the log grows or ends, and when a reader moves or leaves.
    changed: Condvar,
}

struct Log {
    /// Frames `base..base + frames.len()` of the transcoded clip.
    frames: VecDeque<Frame>,
    base: usize,
    bytes: usize,
    /// The clip was read to its end (`Ok`), or could not be read further (`Err`).
    end: Option<Result<(), String>>,
    /// The next frame each reader takes, by reader id.
    readers: HashMap<u64, usize>,
    next_reader: u64,
    /// Its thread stopped before the clip's end (no readers were left): nobody may join.
    closed: bool,
    /// Every job's bytes together (`Transcodes::kept`).
    total: Arc<AtomicUsize>,
    keep: usize,
    keep_total: usize,
}

impl Log {
    fn produced(&self) -> usize {
        self.base + self.frames.len()
    }

    fn push(&mut self, frame: Frame) {
        self.bytes += frame.data.len();
        self.total.fetch_add(frame.data.len(), Ordering::Relaxed);
        self.frames.push_back(frame);
    }

    /// Past [`KEEP_BYTES`] (or [`KEEP_TOTAL_BYTES`] for all jobs): drops what every reader
    /// has read.
    fn trim(&mut self) {
        if self.bytes <= self.keep && self.total.load(Ordering::Relaxed) <= self.keep_total {
            return;
        }
        let slowest = self.readers.values().copied().min().unwrap_or(0);
        while self.base < slowest
            && let Some(f) = self.frames.pop_front()
        {
            self.bytes -= f.data.len();
            self.total.fetch_sub(f.data.len(), Ordering::Relaxed);
            self.base += 1;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a reader at the clip's start, unless the start is gone or the job ended.
    fn join(self: &Arc<Self>) -> Option<SharedClip> {
        let mut log = self.lock();
        if log.closed || log.base > 0 {
            return None;
        }
        let id = log.next_reader;
        log.next_reader += 1;
        log.readers.insert(id, 0);
        Some(SharedClip {
            job: self.clone(),
            id,
            next: 0,
        })
    }
}

/// One viewer's read of a transcoded clip.
pub struct SharedClip {
    job: Arc<Job>,
    id: u64,
    next: usize,
}

impl SharedClip {
    /// The clip's tracks, its video in the output codec.
    pub fn info(&self) -> &TrackInfo {
        &self.job.info
    }

    /// The next frame (blocking until the job has made it), `None` at the clip's end, or why
    /// the clip could not be read further.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let job = &self.job;
        let mut log = job.lock();
        loop {
            if let Some(frame) = self
                .next
                .checked_sub(log.base)
                .and_then(|i| log.frames.get(i))
            {
                let frame = frame.clone();
                self.next += 1;
                log.readers.insert(self.id, self.next);
                log.trim();
                drop(log);
                job.changed.notify_all();
                return Ok(Some(frame));
            }
            if self.next < log.base {
                // Cannot happen (the log drops only what every reader has read); said, not
                // assumed.
                return Err("the shared transcode lost this viewer's place".into());
            }
            if let Some(end) = &log.end {
                return end.clone().map(|()| None);
            }
            log = job.changed.wait(log).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for SharedClip {
    fn drop(&mut self) {
        self.job.lock().readers.remove(&self.id);
        self.job.changed.notify_all();
    }
}

impl Transcodes {
    /// Jobs that keep a clip's start while it holds at most `keep` bytes and all jobs hold
    /// at most `keep_total`.
    pub fn with_limits(keep: usize, keep_total: usize) -> Transcodes {
        Transcodes {
            jobs: Arc::default(),
            started: Arc::default(),
            kept: Arc::default(),
            keep,
            keep_total,
        }
    }

    /// Bytes every job's log holds now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.load(Ordering::Relaxed)
    }

    /// Reads the clip `meta` with its video in `to`: joins the job that transcodes it now if
    /// one does and still has the clip's start, else opens the clip (`source`, called only
    /// then) and starts one.
    pub fn open(
        &self,
        meta: &RecordingMeta,
        to: Codec,
        source: impl FnOnce() -> Result<Box<dyn MediaSource>, String>,
    ) -> Result<SharedClip, String> {
        self.open_with(&meta.id, to, || {
            let mut demux = Demuxer::open(container_kind(meta.container), source()?)
                .map_err(|e| e.to_string())?;
            let info = demux.info().clone();
            let frames: Frames = Box::new(move || demux.next_frame().map_err(|e| e.to_string()));
            Ok((info, frames))
        })
    }

    /// [`open`](Self::open) with the clip's reading given: `start` opens it (only when no job
    /// can be joined) and says its tracks.
    fn open_with(
        &self,
        id: &str,
        to: Codec,
        start: impl FnOnce() -> Result<(TrackInfo, Frames), String>,
    ) -> Result<SharedClip, String> {
        let key = (id.to_owned(), to);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|_, job| job.strong_count() > 0);
        if let Some(job) = jobs.get(&key).and_then(Weak::upgrade)
            && let Some(clip) = job.join()
        {
            return Ok(clip);
        }
        let (mut info, frames) = start()?;
        let from = info
            .video
            .as_ref()
            .map(|v| v.codec)
            .ok_or("the recording has no video")?;
        let transcoder = codec::Transcoder::new(from, to, codec::EncoderConfig::default())
            .map_err(|e| e.to_string())?;
        if let Some(video) = info.video.as_mut() {
            video.codec = to;
        }
        let job = Arc::new(Job {
            info,
            log: Mutex::new(Log {
                frames: VecDeque::new(),
                base: 0,
                bytes: 0,
                end: None,
                readers: HashMap::new(),
                next_reader: 0,
                closed: false,
                total: self.kept.clone(),
                keep: self.keep,
                keep_total: self.keep_total,
            }),
            changed: Condvar::new(),
        });
        let clip = job.join().ok_or("a new transcode refused its viewer")?;
        let worker = job.clone();
        let name = id.to_owned();
        std::thread::Builder::new()
            .name("transcode".into())
            .spawn(move || run(worker, frames, transcoder, name))
            .map_err(|e| format!("cannot start a transcoder: {e}"))?;
        jobs.insert(key, Arc::downgrade(&job));
        self.started.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%id, ?from, ?to, "transcoding a clip for viewers");
        Ok(clip)
    }

    /// Jobs started since the server started: one per recording and codec played at once.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Jobs running now (for tests and metrics).
    pub fn running(&self) -> usize {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.values()
            .filter_map(Weak::upgrade)
            .filter(|j| {
                let log = j.lock();
                !log.closed && log.end.is_none()
            })
            .count()
    }
}

/// However the job's thread ends (a panic too), its readers are not left waiting: a log
/// without an end gets one.
struct Ends(Arc<Job>);

impl Drop for Ends {
    fn drop(&mut self) {
        let mut log = self.0.lock();
        if log.end.is_none() {
            log.end = Some(Err("the transcode stopped".into()));
            log.closed = true;
        }
        drop(log);
        self.0.changed.notify_all();
    }
}

/// The job's thread: reads and transcodes the clip into the log, staying at most
/// [`AHEAD_FRAMES`] ahead of its furthest reader, until the clip ends or no reader is left.
fn run(job: Arc<Job>, mut frames: Frames, mut transcoder: codec::Transcoder, id: String) {
    let _ends = Ends(job.clone());
    let (mut read, mut made) = (0u64, 0u64);
    let end = loop {
        {
            let mut log = job.lock();
            loop {
                if log.readers.is_empty() {
                    log.closed = true;
                    drop(log);
                    tracing::info!(%id, read, made, "transcode ended: no viewer left");
                    return;
                }
                let furthest = log.readers.values().copied().max().unwrap_or(0);
                if log.produced() < furthest + AHEAD_FRAMES {
                    break;
                }
                log = job.changed.wait(log).unwrap_or_else(|p| p.into_inner());
            }
        }
        let frame = match frames() {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        read += 1;
        let frame = if frame.codec.kind() == MediaKind::Video {
            match transcoder.push(&frame) {
                Ok(Some(out)) => out,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(%id, error = %e, "frame not transcoded");
                    continue;
                }
            }
        } else {
            frame
        };
        made += 1;
        let mut log = job.lock();
        log.push(frame);
        log.trim();
        drop(log);
        job.changed.notify_all();
    };
    // Viewers may still join while the whole clip is in the log: it costs them nothing.
    let mut log = job.lock();
    log.end = Some(end);
    drop(log);
    job.changed.notify_all();
    tracing::info!(%id, read, made, "transcode done");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::container::VideoTrack;

    fn info() -> TrackInfo {
        TrackInfo {
            video: Some(VideoTrack {
                codec: Codec::Vp8,
                width: 320,
                height: 240,
            }),
            audio: None,
        }
    }

    /// `n` VP8 frames of a moving square (a keyframe every 30), each followed by an audio
    /// frame of `audio_bytes` (audio passes through untouched, so any bytes do).
    fn clip(n: u64, audio_bytes: usize) -> Vec<Frame> {
        let (w, h) = (320, 240);
        let mut enc =
            codec::Encoder::new(Codec::Vp8, w, h, codec::EncoderConfig::default()).unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            let mut data = vec![90u8; codec::Picture::len_for(w, h)];
            for row in 0..32 {
                let start = row * w + (i as usize * 4) % (w - 32);
                data[start..start + 32].fill(230);
            }
            let pic = codec::Picture {
                width: w,
                height: h,
                data,
            };
            let e = enc.encode(&pic, i * 3000, i % 30 == 0).unwrap().unwrap();
            out.push(Frame {
                codec: Codec::Vp8,
                ts: i * 3000,
                keyframe: e.keyframe,
                data: e.data,
            });
            out.push(Frame {
                codec: Codec::Opus,
                ts: i * 1600,
                keyframe: true,
                data: Bytes::from(vec![i as u8; audio_bytes]),
            });
        }
        out
    }

    fn source(frames: Vec<Frame>) -> impl FnOnce() -> Result<(TrackInfo, Frames), String> {
        move || {
            let mut it = frames.into_iter();
            let frames: Frames = Box::new(move || Ok(it.next()));
            Ok((info(), frames))
        }
    }

    fn read_all(clip: &mut SharedClip) -> Vec<Frame> {
        let mut got = Vec::new();
        while let Some(f) = clip.next_frame().unwrap() {
            got.push(f);
        }
        got
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn viewers_of_a_clip_at_once_share_one_encoder_and_get_every_frame() {
        let t = Transcodes::default();
        let mut a = t
            .open_with("r1", Codec::H264, source(clip(200, 10)))
            .unwrap();
        assert_eq!(a.info().video.unwrap().codec, Codec::H264);
        // The first reader takes a few frames; the job stays at most AHEAD_FRAMES ahead.
        for _ in 0..10 {
            a.next_frame().unwrap().unwrap();
        }
        wait_for("the job fills its look-ahead", || {
            a.job.lock().produced() >= 10 + AHEAD_FRAMES
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(a.job.lock().produced() <= 10 + AHEAD_FRAMES);
        // A second viewer joins the same job (its own source is never opened).
        let mut b = t
            .open_with("r1", Codec::H264, || panic!("a second encoder"))
            .unwrap();
        let rest_a = read_all(&mut a);
        let all_b = read_all(&mut b);
        assert_eq!(t.started(), 1);
        assert_eq!(all_b.len(), 400, "every frame of both kinds");
        assert_eq!(&all_b[10..], &rest_a[..]);
        // The video is H264 that decodes, with the source's timestamps; audio is untouched.
        let mut dec = codec::Decoder::new(Codec::H264).unwrap();
        let video: Vec<&Frame> = all_b.iter().filter(|f| f.codec == Codec::H264).collect();
        assert_eq!(video.len(), 200);
        for (i, f) in video.iter().enumerate() {
            assert_eq!(f.ts, i as u64 * 3000);
            assert!(dec.decode(&f.data).unwrap().is_some(), "frame {i}");
        }
        assert!(video[0].keyframe && video[30].keyframe);
        assert!(
            all_b
                .iter()
                .any(|f| f.codec == Codec::Opus && f.data.len() == 10)
        );
        // Another codec of the same clip is another job.
        let mut c = t.open_with("r1", Codec::Vp8, source(clip(2, 1))).unwrap();
        assert_eq!(read_all(&mut c).len(), 4);
        assert_eq!(t.started(), 2);
    }

    #[test]
    fn a_job_without_viewers_ends_and_the_next_viewer_starts_another() {
        let t = Transcodes::default();
        let mut a = t
            .open_with("r1", Codec::H264, source(clip(200, 10)))
            .unwrap();
        a.next_frame().unwrap().unwrap();
        let job = Arc::downgrade(&a.job);
        drop(a);
        wait_for("the abandoned job ends", || {
            job.upgrade().is_none_or(|j| j.lock().closed)
        });
        assert_eq!(t.running(), 0);
        let mut b = t.open_with("r1", Codec::H264, source(clip(3, 10))).unwrap();
        assert_eq!(read_all(&mut b).len(), 6);
        assert_eq!(t.started(), 2);
    }

    #[test]
    fn past_the_total_budget_every_job_drops_what_was_read() {
        // 1 MiB audio frames; each job alone is under `keep`, both together over the total.
        let t = Transcodes::with_limits(64 << 20, 3 << 20);
        let mut a = t
            .open_with("r1", Codec::H264, source(clip(4, 1 << 20)))
            .unwrap();
        let mut b = t
            .open_with("r2", Codec::H264, source(clip(4, 1 << 20)))
            .unwrap();
        for clip in [&mut a, &mut b] {
            for _ in 0..6 {
                clip.next_frame().unwrap().unwrap();
            }
        }
        wait_for("both jobs made their clips", || {
            a.job.lock().end.is_some() && b.job.lock().end.is_some()
        });
        a.next_frame().unwrap().unwrap();
        b.next_frame().unwrap().unwrap();
        for clip in [&a, &b] {
            // Each alone holds 4 MiB, far under `keep`: the total made them drop.
            assert!(clip.job.lock().base >= 6, "what its reader read is dropped");
        }
        assert!(t.kept_bytes() <= 3 << 20, "{} bytes kept", t.kept_bytes());
        // A viewer who comes now cannot start from the dropped start: a job of its own.
        let mut late = t.open_with("r1", Codec::H264, source(clip(1, 1))).unwrap();
        assert_eq!(read_all(&mut late).len(), 2);
        assert_eq!(t.started(), 3);
        drop((a, b, late));
        wait_for("every log's bytes are given back", || t.kept_bytes() == 0);
    }

    #[test]
    fn past_the_kept_start_the_log_drops_what_was_read_and_a_late_viewer_gets_its_own_job() {
        let t = Transcodes::default();
        // 48 audio frames of 1 MiB: more than KEEP_BYTES.
        let mut a = t
            .open_with("r1", Codec::H264, source(clip(48, 1 << 20)))
            .unwrap();
        for _ in 0..80 {
            a.next_frame().unwrap().unwrap();
        }
        {
            let log = a.job.lock();
            assert!(log.base > 0, "the read start was dropped");
            assert!(
                log.bytes <= KEEP_BYTES + (2 << 20),
                "{} bytes kept",
                log.bytes
            );
        }
        let mut late = t.open_with("r1", Codec::H264, source(clip(1, 1))).unwrap();
        assert_eq!(read_all(&mut late).len(), 2, "its own job, from the start");
        assert_eq!(t.started(), 2);
        assert_eq!(read_all(&mut a).len(), 96 - 80);
    }
}
