//! A recording's writer: a thread of its own that does the file I/O (writes, seeks, fsync) so
//! that no async worker ever waits on the disk.
//!
//! [`WriteBehind`] is the sink the muxer writes into on the session task. It never blocks: it
//! keeps its own position and length, gathers writes into batches, and hands each batch to the
//! writer thread when the muxer completes a cluster/fragment (`flush`), when a batch grows past
//! [`BATCH_BYTES`], or when it is older than [`BATCH_AGE`]. After a completed cluster the thread
//! also syncs the file, so what a power cut can lose is bounded like what a crash can lose.
//! What waits for the thread is bounded in bytes ([`MAX_QUEUED_BYTES`]): a disk that cannot
//! keep up makes the next write fail ("the disk is too slow"), which ends the recording the
//! way a full disk does, keeping what reached the file.
//!
//! tokio's `File` would do each write as its own blocking-pool task (a hand-off per frame) and
//! has no ordered write-then-fsync pipeline, so this small write-behind queue is our own.
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::MediaSink;

/// A batch is handed to the writer thread once it holds this much.
pub const BATCH_BYTES: usize = 256 * 1024;
/// ... or once its first byte has waited this long.
pub const BATCH_AGE: Duration = Duration::from_millis(250);
/// Most bytes handed to the thread and not yet written; past this the disk is too slow.
pub const MAX_QUEUED_BYTES: u64 = 8 * 1024 * 1024;

enum Op {
    /// Write `data` at `pos`.
    Write { pos: u64, data: Vec<u8> },
    /// Make everything before this durable.
    Sync,
    /// Sync, then report how it all went and end the thread.
    Close(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// What the thread runs when its sink is dropped without being closed ([`WriteBehind::close`],
/// [`Closer::close`])
/// (the session owning it panicked), after writing what it was given.
pub type OnAbandon = Box<dyn FnOnce() + Send>;

struct Shared {
    /// Bytes handed over and not yet written.
    queued: AtomicU64,
    /// Whether `on_abandon` still applies.
    armed: std::sync::atomic::AtomicBool,
    /// The first error the thread hit; every later call reports it.
    error: Mutex<Option<(io::ErrorKind, String)>>,
}

impl Shared {
    fn error(&self) -> Option<io::Error> {
        let e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        e.as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }
}

/// The muxer's end of a recording's writer thread.
pub struct WriteBehind {
    tx: mpsc::Sender<Vec<Op>>,
    shared: Arc<Shared>,
    /// Ops gathered since the last hand-off.
    batch: Vec<Op>,
    batch_bytes: usize,
    batch_started: Option<Instant>,
    pos: u64,
    len: u64,
    /// Bytes accepted so far (shown live to the client).
    written: Arc<AtomicU64>,
}

impl WriteBehind {
    /// Moves `sink` to a new writer thread. Call from a blocking context (it asks the sink for
    /// its position).
    pub fn spawn(
        mut sink: Box<dyn MediaSink>,
        name: &str,
        on_abandon: Option<OnAbandon>,
    ) -> io::Result<WriteBehind> {
        let pos = sink.stream_position()?;
        let len = sink.seek(SeekFrom::End(0))?;
        sink.seek(SeekFrom::Start(pos))?;
        let shared = Arc::new(Shared {
            queued: AtomicU64::new(0),
            armed: std::sync::atomic::AtomicBool::new(on_abandon.is_some()),
            error: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel::<Vec<Op>>();
        std::thread::Builder::new()
            .name(format!("rec-{name}"))
            .spawn({
                let shared = shared.clone();
                move || {
                    write_loop(sink, pos, rx, &shared);
                    if let Some(f) = on_abandon
                        && shared.armed.load(Ordering::Acquire)
                    {
                        f();
                    }
                }
            })?;
        Ok(WriteBehind {
            tx,
            shared,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_started: None,
            pos,
            len,
            written: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Bytes handed to the thread and not written yet.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    fn check(&self) -> io::Result<()> {
        match self.shared.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands the gathered batch to the thread.
    fn ship(&mut self) -> io::Result<()> {
        self.check()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let bytes = self.batch_bytes as u64;
        let queued = self.shared.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > MAX_QUEUED_BYTES {
            self.shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "the disk is too slow: {} MiB are still waiting to be written",
                MAX_QUEUED_BYTES / (1024 * 1024)
            )));
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_started = None;
        if self.tx.send(batch).is_err() {
            return Err(self.shared.error().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the recording's writer stopped")
            }));
        }
        Ok(())
    }

    /// A handle that closes the writer after this sink is gone, even when the sink went down
    /// with the muxer that owned it (a failed `finish`).
    pub fn closer(&self) -> Closer {
        Closer {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Writes what is left, syncs, and waits (without blocking a worker) until the thread has
    /// done it all.
    pub async fn close(self) -> io::Result<()> {
        let closer = self.closer();
        drop(self);
        closer.close().await
    }
}

/// How long closing waits for the disk to take what is left.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes a recording's writer: see [`WriteBehind::closer`].
pub struct Closer {
    tx: mpsc::Sender<Vec<Op>>,
    shared: Arc<Shared>,
}

impl Closer {
    /// Once the sink is dropped (its last batch handed over), writes what is left, syncs, and
    /// waits for the thread, at most [`CLOSE_TIMEOUT`]. Disarms the abandon callback.
    pub async fn close(self) -> io::Result<()> {
        self.shared.armed.store(false, Ordering::Release);
        let stopped =
            || io::Error::new(io::ErrorKind::BrokenPipe, "the recording's writer stopped");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.tx.send(vec![Op::Close(done_tx)]).is_err() {
            return Err(self.shared.error().unwrap_or_else(stopped));
        }
        drop(self.tx);
        match tokio::time::timeout(CLOSE_TIMEOUT, done_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.error().unwrap_or_else(stopped)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the disk did not take the end of the recording in time",
            )),
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        // Append to the previous write when it ends where this one starts.
        let pos = self.pos;
        match self.batch.last_mut() {
            Some(Op::Write { pos: p, data }) if *p + data.len() as u64 == pos => {
                data.extend_from_slice(buf)
            }
            _ => self.batch.push(Op::Write {
                pos,
                data: buf.to_vec(),
            }),
        }
        self.batch_bytes += buf.len();
        self.batch_started.get_or_insert_with(Instant::now);
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if self.batch_bytes >= BATCH_BYTES
            || self.batch_started.is_some_and(|t| t.elapsed() >= BATCH_AGE)
        {
            self.ship()?;
        }
        Ok(buf.len())
    }

    /// The muxers flush when a cluster/fragment is complete: hand it over and have it synced
    /// (also when its bytes already left in a full batch).
    fn flush(&mut self) -> io::Result<()> {
        self.batch.push(Op::Sync);
        self.ship()
    }
}

impl Seek for WriteBehind {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative position")
        })?;
        Ok(self.pos)
    }
}

impl MediaSink for WriteBehind {
    /// Hands everything over; durability follows on the thread (see [`WriteBehind::close`]
    /// for a sync that is waited for).
    fn sync(&mut self) -> io::Result<()> {
        self.batch.push(Op::Sync);
        self.ship()
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Hand over what was gathered; a `Closer` (or nobody, when the session died) takes it
        // from there.
        if !self.batch.is_empty() {
            self.shared
                .queued
                .fetch_add(self.batch_bytes as u64, Ordering::Relaxed);
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}

fn write_loop(
    mut sink: Box<dyn MediaSink>,
    mut pos: u64,
    rx: mpsc::Receiver<Vec<Op>>,
    shared: &Shared,
) {
    let mut failed = false;
    let fail = |e: &io::Error, failed: &mut bool| {
        if !*failed {
            *failed = true;
            tracing::warn!(error = %e, "recording write failed");
            *shared.error.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((e.kind(), e.to_string()));
        }
    };
    while let Ok(batch) = rx.recv() {
        for op in batch {
            match op {
                Op::Write { pos: at, data } => {
                    if !failed {
                        let r = (|| {
                            if at != pos {
                                sink.seek(SeekFrom::Start(at))?;
                            }
                            sink.write_all(&data)
                        })();
                        match r {
                            Ok(()) => pos = at + data.len() as u64,
                            Err(e) => fail(&e, &mut failed),
                        }
                    }
                    shared
                        .queued
                        .fetch_sub(data.len() as u64, Ordering::Relaxed);
                }
                Op::Sync => {
                    if !failed && let Err(e) = sink.flush().and_then(|()| sink.sync()) {
                        fail(&e, &mut failed);
                    }
                }
                Op::Close(done) => {
                    if !failed && let Err(e) = sink.flush().and_then(|()| sink.sync()) {
                        fail(&e, &mut failed);
                    }
                    let result = match shared.error() {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    let _ = done.send(result);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A sink over a shared buffer, so the test can read what the thread wrote.
    #[derive(Clone, Default)]
    struct TestSink(
        Arc<Mutex<Cursor<Vec<u8>>>>,
        Arc<AtomicU64>,
        Option<io::ErrorKind>,
    );

    impl Write for TestSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.2 {
                return Err(io::Error::new(kind, "injected"));
            }
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for TestSink {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.0.lock().unwrap().seek(pos)
        }
    }
    impl MediaSink for TestSink {
        fn sync(&mut self) -> io::Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn run(
        ops: &[(&str, u64, &[u8])],
        fail: Option<io::ErrorKind>,
    ) -> (Vec<u8>, u64, io::Result<()>) {
        let sink = TestSink {
            2: fail,
            ..TestSink::default()
        };
        let probe = sink.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(async move {
            let mut w = WriteBehind::spawn(Box::new(sink), "test", None)?;
            for (op, at, data) in ops {
                match *op {
                    "write" => {
                        w.write_all(data)?;
                    }
                    "seek" => {
                        w.seek(SeekFrom::Start(*at))?;
                    }
                    "end" => {
                        w.seek(SeekFrom::End(0))?;
                    }
                    "flush" => w.flush()?,
                    _ => unreachable!(),
                }
            }
            w.close().await
        });
        let bytes = probe.0.lock().unwrap().get_ref().clone();
        (bytes, probe.1.load(Ordering::Relaxed), result)
    }

    #[test]
    fn writes_land_in_order_with_patches_and_syncs() {
        type Case<'a> = (&'a [(&'a str, u64, &'a [u8])], &'a [u8], u64);
        let cases: &[Case] = &[
            (&[("write", 0, b"abc"), ("write", 0, b"def")], b"abcdef", 1),
            // A size patched after the body, as the muxers do.
            (
                &[
                    ("write", 0, b"hdr?"),
                    ("write", 0, b"body"),
                    ("seek", 3, b""),
                    ("write", 0, b"!"),
                    ("end", 0, b""),
                    ("write", 0, b"tail"),
                ],
                b"hdr!bodytail",
                1,
            ),
            // Each completed cluster is synced, and close syncs once more.
            (
                &[
                    ("write", 0, b"one"),
                    ("flush", 0, b""),
                    ("write", 0, b"two"),
                    ("flush", 0, b""),
                ],
                b"onetwo",
                3,
            ),
            (&[], b"", 1),
        ];
        for (ops, want, syncs) in cases {
            let (got, synced, result) = run(ops, None);
            result.unwrap();
            assert_eq!(got, *want, "{ops:?}");
            assert_eq!(synced, *syncs, "{ops:?}");
        }
    }

    #[test]
    fn a_sink_dropped_unclosed_is_written_out_then_abandoned() {
        // (closed before the drop, whether the abandon callback runs)
        for (closed, abandoned) in [(false, true), (true, false)] {
            let sink = TestSink::default();
            let probe = sink.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let on_abandon: OnAbandon = Box::new(move || tx.send(()).unwrap());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut w = WriteBehind::spawn(Box::new(sink), "test", Some(on_abandon)).unwrap();
                w.write_all(b"last words").unwrap();
                if closed {
                    w.close().await.unwrap();
                } else {
                    drop(w); // the session died
                }
            });
            let ran = rx.recv_timeout(Duration::from_secs(5)).is_ok();
            assert_eq!(ran, abandoned, "closed {closed}");
            assert_eq!(probe.0.lock().unwrap().get_ref(), b"last words");
        }
    }

    #[test]
    fn a_failing_disk_is_reported() {
        let (_, _, result) = run(
            &[("write", 0, b"x"), ("flush", 0, b"")],
            Some(io::ErrorKind::StorageFull),
        );
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
