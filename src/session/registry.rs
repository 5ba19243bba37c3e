//! Every live session, by id: what it is, whose it is, how far it got, and how to stop it.
//! The registry is the one place that counts sessions for the limits (`--max-sessions`,
//! `--max-sessions-per-ip`), so every way in (the websocket, the session API, later WHIP and
//! WHEP) is held to the same ones.
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use app::protocol::{SessionInfo, SessionKind};

use crate::limits::canonical;
use tokio_util::sync::CancellationToken;

/// What a running session reports as it goes (read by `GET /api/sessions`).
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes written (recording) or sent (playback) so far.
    pub bytes: AtomicU64,
    /// Frames recorded or played so far.
    pub frames: AtomicU64,
    /// The recording being written, or the clip being played.
    pub recording: Mutex<Option<String>>,
}

impl Progress {
    pub fn set(&self, bytes: u64, frames: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.frames.store(frames, Ordering::Relaxed);
    }

    pub fn set_recording(&self, id: &str) {
        *self.recording.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
    }
}

struct Entry {
    kind: SessionKind,
    peer: IpAddr,
    started: SystemTime,
    progress: Arc<Progress>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<String, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a session was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server is busy: it already runs {0} sessions (--max-sessions); try again later")]
    Full(usize),
    #[error("too many sessions from your address: at most {0} at once (--max-sessions-per-ip)")]
    PerIp(usize),
}

/// The registry; cheap to clone.
#[derive(Clone)]
pub struct SessionRegistry {
    inner: Arc<Mutex<Inner>>,
    max: usize,
    max_per_ip: usize,
}

/// A session's place in the registry; dropping it removes the session.
pub struct Registration {
    pub id: String,
    pub progress: Arc<Progress>,
    /// Cancelled to ask the session to end (STOP, `DELETE /api/sessions/{id}`).
    pub stop: CancellationToken,
    registry: SessionRegistry,
    peer: IpAddr,
}

impl SessionRegistry {
    /// At most `max` sessions, `max_per_ip` from one address (0 = no per-address limit).
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        SessionRegistry {
            inner: Arc::new(Mutex::new(Inner::default())),
            max,
            max_per_ip,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new session from `peer`, within the limits.
    pub fn register(&self, kind: SessionKind, peer: IpAddr) -> Result<Registration, Refused> {
        let peer = canonical(peer);
        let mut inner = self.lock();
        if inner.sessions.len() >= self.max {
            return Err(Refused::Full(self.max));
        }
        let held = inner.per_ip.get(&peer).copied().unwrap_or(0);
        if self.max_per_ip != 0 && held >= self.max_per_ip {
            return Err(Refused::PerIp(self.max_per_ip));
        }
        let id = loop {
            let id = new_id();
            if !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        let progress = Arc::new(Progress::default());
        let stop = CancellationToken::new();
        inner.sessions.insert(
            id.clone(),
            Entry {
                kind,
                peer,
                started: SystemTime::now(),
                progress: progress.clone(),
                stop: stop.clone(),
            },
        );
        *inner.per_ip.entry(peer).or_insert(0) += 1;
        Ok(Registration {
            id,
            progress,
            stop,
            registry: self.clone(),
            peer,
        })
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let inner = self.lock();
        let mut list: Vec<SessionInfo> = inner
            .sessions
            .iter()
            .map(|(id, e)| SessionInfo {
                id: id.clone(),
                kind: e.kind,
                peer: e.peer.to_string(),
                started: rfc3339(e.started),
                bytes: e.progress.bytes.load(Ordering::Relaxed),
                frames: e.progress.frames.load(Ordering::Relaxed),
                recording: e
                    .progress
                    .recording
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            })
            .collect();
        list.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        list
    }

    /// Asks a session to end; false when there is no such session.
    pub fn stop(&self, id: &str) -> bool {
        match self.lock().sessions.get(id) {
            Some(e) => {
                e.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions `peer` holds now.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.lock()
            .per_ip
            .get(&canonical(peer))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let now_empty = {
            let mut inner = self.registry.lock();
            inner.sessions.remove(&self.id);
            if let Some(n) = inner.per_ip.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    inner.per_ip.remove(&self.peer);
                }
            }
            inner.sessions.is_empty()
        };
        if now_empty {
            super::release_free_memory();
        }
    }
}

/// 16 hex digits from the hasher's random keys: ids are not guessable from one another.
fn new_id() -> String {
    format!("{:016x}", crate::random::u64())
}

fn rfc3339(t: SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_listing_and_stop() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        // (max, max per ip, registrations (kind, peer), expected outcomes)
        type Case = (usize, usize, Vec<IpAddr>, Vec<Result<(), Refused>>);
        let cases: Vec<Case> = vec![
            (
                3,
                2,
                vec![a, a_mapped, a, b],
                vec![Ok(()), Ok(()), Err(Refused::PerIp(2)), Ok(())],
            ),
            (
                2,
                0,
                vec![a, a, a],
                vec![Ok(()), Ok(()), Err(Refused::Full(2))],
            ),
        ];
        for (max, per_ip, peers, want) in cases {
            let reg = SessionRegistry::new(max, per_ip);
            let mut held = Vec::new();
            let got: Vec<Result<(), Refused>> = peers
                .iter()
                .map(|p| {
                    reg.register(SessionKind::Record, *p).map(|r| {
                        held.push(r);
                    })
                })
                .collect();
            assert_eq!(got, want, "max {max} per ip {per_ip}");
            assert_eq!(reg.len(), held.len());
            let listed = reg.list();
            assert_eq!(listed.len(), held.len());
            held[0].progress.set(1000, 30);
            held[0].progress.set_recording("1764000000123-abcdef");
            let first = reg.list().into_iter().find(|s| s.id == held[0].id).unwrap();
            assert_eq!((first.bytes, first.frames), (1000, 30));
            assert_eq!(first.recording.as_deref(), Some("1764000000123-abcdef"));
            assert_eq!(first.peer, "10.0.0.1");
            // Stop by id reaches the session's token.
            assert!(reg.stop(&held[0].id));
            assert!(held[0].stop.is_cancelled());
            assert!(!reg.stop("nope"));
            drop(held);
            assert!(reg.is_empty());
            assert_eq!(reg.held_by(a), 0);
        }
    }
}
