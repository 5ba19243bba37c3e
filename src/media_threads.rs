//! The media plane's threads (issue 12): N single-threaded runtimes, one per CPU by default,
//! each running whole sessions. A session's peer connection binds its sockets (or its UDP mux
//! flow) and spawns its driver and track tasks from the session task, so all of them land on
//! the session's thread: a datagram is read, decrypted, depacketized and handed to the writer
//! by one thread, and waking the next task in that chain is a queue push, not a futex wake of
//! another thread. On tokio's shared multi-threaded pool the profile showed two workers
//! trading every packet (a futex wake, a futex wait and an extra epoll_wait per datagram; see
//! BENCHMARKS.md "Media threads"). HTTP, websockets and the API stay on the async workers.
//!
//! Threads are picked by the number of sessions running on them (least first), so a thread
//! freed by churn is refilled first. Each runtime has its own blocking pool for the sessions'
//! file work.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

/// The media threads; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MediaThreads {
    threads: Arc<Vec<Thread>>,
}

#[derive(Debug)]
struct Thread {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
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

    /// The runtime to run a new session on (the least loaded thread's), and its mark; `None`
    /// without media threads.
    pub fn place(&self) -> Option<(Handle, Placed)> {
        let thread = self
            .threads
            .iter()
            .min_by_key(|t| t.sessions.load(Ordering::Relaxed))?;
        thread.sessions.fetch_add(1, Ordering::Relaxed);
        Some((
            thread.handle.clone(),
            Placed {
                sessions: thread.sessions.clone(),
            },
        ))
    }

    /// Spawns `task` (tracked by `tasks`) on the least loaded media thread, or on the current
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_go_to_the_least_loaded_thread_and_run_there() {
        let threads = MediaThreads::start(Some(3)).unwrap();
        assert_eq!(threads.len(), 3);
        // Three placements fill each thread once, a fourth goes to the first freed.
        let a = threads.place().unwrap().1;
        let b = threads.place().unwrap().1;
        let c = threads.place().unwrap().1;
        assert_eq!(threads.sessions(), vec![1, 1, 1]);
        drop(b);
        assert_eq!(threads.sessions(), vec![1, 0, 1]);
        let d = threads.place().unwrap().1;
        assert_eq!(threads.sessions(), vec![1, 1, 1]);
        drop((a, c, d));
        assert_eq!(threads.sessions(), vec![0, 0, 0]);

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
                    // Held so that the next session goes elsewhere.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
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
        let mut outer: Vec<_> = names.iter().map(|(o, _)| o.clone().unwrap()).collect();
        outer.sort();
        assert_eq!(outer, vec!["media-0", "media-1", "media-2"]);
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
