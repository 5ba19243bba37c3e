//! Limits and failures: a full disk, the recording length limit, the session limit.
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use app::protocol::{ClientMessage, RecordingMeta, RecordingState, ServerMessage};
use common::*;
use media::Codec;
use media::container::ContainerKind;
use pion_the_sky::store::{MediaSink, MediaSource, NewRecording, RecordingStore, StoreError};

/// A store whose media sinks fail with ENOSPC after `budget` bytes, like a disk filling up.
struct FillingDisk {
    inner: Arc<dyn RecordingStore>,
    budget: u64,
}

struct FailAfter {
    inner: Box<dyn MediaSink>,
    left: u64,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for FailAfter {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl MediaSink for FailAfter {
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

impl RecordingStore for FillingDisk {
    fn create(
        &self,
        c: ContainerKind,
        v: Option<Codec>,
        a: bool,
    ) -> Result<NewRecording, StoreError> {
        let new = self.inner.create(c, v, a)?;
        Ok(NewRecording {
            meta: new.meta,
            sink: Box::new(FailAfter {
                inner: new.sink,
                left: self.budget,
            }),
        })
    }
    fn finish(&self, meta: RecordingMeta) -> Result<RecordingMeta, StoreError> {
        self.inner.finish(meta)
    }
    fn repair(&self, meta: RecordingMeta, note: String) -> RecordingMeta {
        self.inner.repair(meta, note)
    }
    fn list(&self) -> Vec<RecordingMeta> {
        self.inner.list()
    }
    fn get(&self, id: &str) -> Result<RecordingMeta, StoreError> {
        self.inner.get(id)
    }
    fn open(&self, id: &str) -> Result<(RecordingMeta, Box<dyn MediaSource>), StoreError> {
        self.inner.open(id)
    }
    fn media_path(&self, id: &str) -> Result<(RecordingMeta, std::path::PathBuf), StoreError> {
        self.inner.media_path(id)
    }
    fn rename(&self, id: &str, name: &str) -> Result<RecordingMeta, StoreError> {
        self.inner.rename(id, name)
    }
    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_the_recording_cleanly_keeps_what_was_written_and_tells_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), "vp8", &[], |inner| {
        Arc::new(FillingDisk {
            inner,
            budget: 250_000,
        })
    })
    .await;
    let messages = record_fixture_messages(&server, Codec::Vp8).await;
    let error = messages.iter().find_map(|m| match m {
        ServerMessage::Error(e) => Some(e.clone()),
        _ => None,
    });
    let error = error.unwrap_or_else(|| panic!("no ERROR in {messages:?}"));
    assert!(error.contains("No space left on device"), "{error}");
    let Some(ServerMessage::Recording(meta)) = messages.last() else {
        panic!("{messages:?}")
    };
    // What reached the disk is kept and playable: cut back to the last complete cluster.
    assert_eq!(meta.state, RecordingState::Recovered, "{meta:?}");
    assert!(
        (500..=2500).contains(&meta.duration_ms),
        "kept {} ms: {meta:?} {messages:?}",
        meta.duration_ms
    );
    assert!(
        meta.note
            .as_deref()
            .unwrap_or_default()
            .contains("No space left"),
        "{meta:?}"
    );
    assert_eq!(server.state.store.get(&meta.id).unwrap(), *meta);
    let (_, path) = server.state.store.media_path(&meta.id).unwrap();
    if let Some((duration, errors)) = ffprobe(&path) {
        assert!(errors.is_empty(), "ffprobe: {errors}");
        assert!((duration * 1000.0 - meta.duration_ms as f64).abs() < 100.0);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_length_limit_finalizes_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &["--max-record-seconds=2"]).await;
    let messages = record_fixture_messages(&server, Codec::H264).await;
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Error(e) if e.contains("2 s limit"))),
        "{messages:?}"
    );
    let Some(ServerMessage::Recording(meta)) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(meta.state, RecordingState::Complete);
    assert!(
        (1500..=2200).contains(&meta.duration_ms),
        "{}",
        meta.duration_ms
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_refuses_extra_sessions() {
    use pion_the_sky::rtc::client::{Client, RecordOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &["--max-sessions=1"]).await;
    let (c1, _) = Client::record(RecordOptions::default()).await.unwrap();
    let (c2, _) = Client::record(RecordOptions::default()).await.unwrap();
    let mut ws1 = server.ws().await;
    let mut ws2 = server.ws().await;
    send(
        &mut ws1,
        ClientMessage::Record {
            offer: c1.offer().await.unwrap(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_msg(&mut ws1, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    send(
        &mut ws2,
        ClientMessage::Record {
            offer: c2.offer().await.unwrap(),
        }
        .to_json(),
    )
    .await;
    match next_msg(&mut ws2, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("--max-sessions"), "{e}"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    // When the first ends, the slot is free again.
    send(&mut ws1, ClientMessage::Stop.to_json()).await;
    let _ = next_msg(&mut ws1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c3, _) = Client::record(RecordOptions::default()).await.unwrap();
    send(
        &mut ws2,
        ClientMessage::Record {
            offer: c3.offer().await.unwrap(),
        }
        .to_json(),
    )
    .await;
    assert!(matches!(
        next_msg(&mut ws2, Duration::from_secs(10)).await,
        ServerMessage::Answer(_)
    ));
    for c in [c1, c2, c3] {
        c.close().await;
    }
    server.shutdown().await;
}
