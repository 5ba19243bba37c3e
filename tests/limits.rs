//! Limits and failures: a full disk, the recording length limit, the session limit.
mod common;

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use app::protocol::{ClientMessage, RecordingState, ServerMessage};
use common::*;
use media::Codec;
use pion_the_sky::store::MediaSink;

/// A media sink that fails with ENOSPC after `left` bytes, like a disk filling up.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_the_recording_cleanly_keeps_what_was_written_and_tells_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), "vp8", &[], |inner| {
        Arc::new(WrapSinks::new(inner, |sink| {
            Box::new(FailAfter {
                inner: sink,
                left: 250_000,
            }) as Box<dyn MediaSink>
        }))
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
