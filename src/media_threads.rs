//! The media plane's threads (issue 12): N single-threaded runtimes, one per CPU by default,
//! each running whole sessions. A session's peer connection binds its sockets (or its UDP mux
//! flow) and spawns its driver and track tasks from the session task, so all of them land on
//! the session's thread: a datagram is read, decrypted, depacketized and handed to the writer
//! by one thread, and waking the next task in that chain is a queue push, not a futex wake of
//! another thread. On tokio's shared multi-threaded pool the profile showed two workers
//! trading every packet (a futex wake, a futex wait and an extra epoll_wait per datagram; see
//! BENCHMARKS.md "Media threads"). HTTP, websockets and the API stay on the async workers.
//!
//! Placement packs, then spreads: a new session goes to the first thread that is less than
//! half busy (measured from its runtime's busy time, plus an allowance for the sessions placed
//! since the last measurement), else to the least busy. Packing is what costs least per
//! stream while one thread has room: the packets of several peers share a wake-up and the
//! other CPU stays idle (on this 2-core VM five recorders cost ~20 % less on one thread than
//! spread over two; BENCHMARKS.md "Our own peer loop"); spreading takes over when a thread
//! fills. Each runtime has its own blocking pool for the sessions' file work.
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

/// The media threads; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MediaThreads {
    threads: Arc<Vec<Thread>>,
}

/// A thread takes new sessions while its estimated busy share is below this.
const PACK_BELOW: f64 = 0.5;
/// The busy share a session placed since the last measurement is assumed to add (a 1 Mb/s
/// recorder costs about 0.5 % of a core here, a transcoding viewer up to 30 %): a burst of
/// new sessions spills over before the measurement shows them.
const SESSION_SHARE: f64 = 0.01;
/// Busy shares are measured over windows at least this long.
const MEASURE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Thread {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
    load: Mutex<Load>,
    /// Dropped with the last clone of [`MediaThreads`]: the thread's runtime then ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Marks a session as running on its thread until dropped.
#[derive(Debug)]
pub struct Placed {
    sessions: Arc<AtomicUsize>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MediaThreads {
    /// `count` media threads (`None`: one per CPU; `Some(0)`: none, sessions then run on the
    /// caller's runtime).
    pub fn start(count: Option<usize>) -> std::io::Result<MediaThreads> {
        let count = count.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let threads = (0..count)
            .map(|i| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(format!("media-{i}-blocking"))
                    .build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                std::thread::Builder::new()
                    .name(format!("media-{i}"))
                    .spawn(move || {
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                        // Dropped here, outside any runtime: its sessions are gone by now
                        // (shutdown waits for them) or are cancelled with it.
                        drop(runtime);
                    })?;
                Ok(Thread {
                    load: Mutex::new(Load::new(&handle)),
                    handle,
                    sessions: Arc::default(),
                    _stop: stop,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(MediaThreads {
            threads: Arc::new(threads),
        })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Sessions running on each thread now.
    pub fn sessions(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.sessions.load(Ordering::Relaxed))
            .collect()
    }

    /// The runtime to run a new session on ([`choose`]), and its mark; `None` without media
    /// threads.
    pub fn place(&self) -> Option<(Handle, Placed)> {
        let now = Instant::now();
        let shares: Vec<f64> = self
            .threads
            .iter()
            .map(|t| lock(&t.load).estimate(&t.handle, now))
            .collect();
        let thread = &self.threads[choose(&shares)?];
        lock(&thread.load).placed_since += 1;
        thread.sessions.fetch_add(1, Ordering::Relaxed);
        Some((
            thread.handle.clone(),
            Placed {
                sessions: thread.sessions.clone(),
            },
        ))
    }

    /// Spawns `task` (tracked by `tasks`) on the media thread [`place`](Self::place) picks, or on the current
    /// runtime without media threads.
    pub fn spawn<F>(
        &self,
        tasks: &tokio_util::task::TaskTracker,
        task: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.place() {
            Some((handle, placed)) => tasks.spawn_on(
                async move {
                    task.await;
                    drop(placed);
                },
                &handle,
            ),
            None => tasks.spawn(task),
        }
    }
}

fn lock(load: &Mutex<Load>) -> std::sync::MutexGuard<'_, Load> {
    load.lock().unwrap_or_else(|p| p.into_inner())
}

/// A thread's busy share over the last measurement window.
#[derive(Debug)]
struct Load {
    at: Instant,
    busy: Duration,
    share: f64,
    /// Sessions placed on the thread since `at`.
    placed_since: usize,
}

impl Load {
    fn new(handle: &Handle) -> Load {
        Load {
            at: Instant::now(),
            busy: handle.metrics().worker_total_busy_duration(0),
            share: 0.0,
            placed_since: 0,
        }
    }

    /// The busy share now: measured again once the window is long enough, plus the
    /// allowance for sessions placed since.
    fn estimate(&mut self, handle: &Handle, now: Instant) -> f64 {
        let window = now.saturating_duration_since(self.at);
        if window >= MEASURE_EVERY {
            let busy = handle.metrics().worker_total_busy_duration(0);
            self.share = busy.saturating_sub(self.busy).as_secs_f64() / window.as_secs_f64();
            self.busy = busy;
            self.at = now;
            self.placed_since = 0;
        }
        self.share + self.placed_since as f64 * SESSION_SHARE
    }
}

/// Packs, then spreads: the first thread whose estimated busy share is below
/// [`PACK_BELOW`], else the least busy (the first of equals). `None` without threads.
fn choose(shares: &[f64]) -> Option<usize> {
    shares.iter().position(|s| *s < PACK_BELOW).or_else(|| {
        shares
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_packs_then_spreads() {
        let cases: &[(&[f64], Option<usize>)] = &[
            (&[], None),
            (&[0.0, 0.0], Some(0)),
            (&[0.49, 0.0], Some(0)),
            (&[0.5, 0.0], Some(1)),
            (&[0.9, 0.55, 0.2], Some(2)),
            (&[0.7, 0.6], Some(1)),
            (&[0.6, 0.6], Some(0)),
        ];
        for (shares, want) in cases {
            assert_eq!(choose(shares), *want, "{shares:?}");
        }
    }

    #[test]
    fn a_busy_thread_takes_no_new_sessions() {
        let threads = MediaThreads::start(Some(2)).unwrap();
        // Idle: everything packs onto the first thread.
        let placed: Vec<_> = (0..3).map(|_| threads.place().unwrap().1).collect();
        assert_eq!(threads.sessions(), vec![3, 0]);
        // Keep the first thread busy for longer than a measurement window; the next session
        // goes to the second.
        let (handle, busy) = threads.place().unwrap();
        let parked = handle.metrics().worker_park_count(0);
        let (done_tx, done) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let until = Instant::now() + MEASURE_EVERY * 3;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            let _ = done_tx.send(());
        });
        done.recv().unwrap();
        // The runtime adds a busy stretch to its total when it parks, right after the task.
        while handle.metrics().worker_park_count(0) == parked {
            std::thread::yield_now();
        }
        let (_, next) = threads.place().unwrap();
        assert_eq!(threads.sessions(), vec![4, 1]);
        drop((placed, busy, next));
        assert_eq!(threads.sessions(), vec![0, 0]);
    }

    #[test]
    fn sessions_run_on_their_thread_with_the_tasks_they_spawn() {
        let threads = MediaThreads::start(Some(3)).unwrap();
        assert_eq!(threads.len(), 3);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tasks = tokio_util::task::TaskTracker::new();
        let names = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for _ in 0..3 {
                let tx = tx.clone();
                threads.spawn(&tasks, async move {
                    // A task it spawns stays on the same thread (the driver's, the tracks').
                    let inner =
                        tokio::spawn(async { std::thread::current().name().map(str::to_owned) });
                    let outer = std::thread::current().name().map(str::to_owned);
                    let _ = tx.send((outer, inner.await.unwrap()));
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                });
            }
            drop(tx);
            let mut names = Vec::new();
            while let Some(n) = rx.recv().await {
                names.push(n);
            }
            tasks.close();
            tasks.wait().await;
            names
        });
        let outer: Vec<_> = names.iter().map(|(o, _)| o.clone().unwrap()).collect();
        // Idle threads: packed onto the first.
        assert_eq!(outer, vec!["media-0", "media-0", "media-0"]);
        assert!(names.iter().all(|(o, i)| o == i), "{names:?}");
        assert_eq!(threads.sessions(), vec![0, 0, 0]);
    }

    #[test]
    fn none_runs_sessions_on_the_callers_runtime() {
        let threads = MediaThreads::start(Some(0)).unwrap();
        assert!(threads.place().is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tasks = tokio_util::task::TaskTracker::new();
        let ran_on = rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            threads.spawn(&tasks, async move {
                let _ = tx.send(std::thread::current().id());
            });
            rx.await.unwrap()
        });
        assert_eq!(ran_on, std::thread::current().id());
    }
}
