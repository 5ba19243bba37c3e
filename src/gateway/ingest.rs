//! RTP in: a plain-RTP stream from an existing media service, recorded like any other.
//!
//! The ingest SDP names the codecs and the ports the service sends to; the server binds those
//! ports (on `--ingest-bind`, loopback by default) and turns each datagram into the same
//! [`PeerEvent::Rtp`] a WebRTC recorder's packets become, so the recording session, its file,
//! live viewers and later playback are the same as for a browser. The first sender of valid
//! RTP (the SDP's payload type) owns a port: datagrams from any other address are dropped
//! (counted, logged at the end), so a stray or hostile sender cannot splice into a recording. Plain RTP has no feedback here: keyframe requests
//! (from live viewers) cannot reach the sender, so a viewer waits for its next keyframe.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use media::MediaKind;
use media::rtp::RtpPacket;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::rtc::{IngestPlan, PeerEvent, PeerState};

/// Largest datagram read (a UDP payload's maximum: nothing is truncated).
const MAX_DATAGRAM: usize = 65_535;
/// Events queued for the session (as for a WebRTC peer).
const EVENT_QUEUE: usize = 2048;

/// Why an ingest could not start; the text is for the API client.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen on UDP port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

impl IngestError {
    /// Another socket holds the port.
    pub fn in_use(&self) -> bool {
        match self {
            IngestError::Bind { source, .. } => source.kind() == std::io::ErrorKind::AddrInUse,
        }
    }
}

/// The listening sockets of one ingest; dropping or closing it stops them (and logs what was
/// dropped).
pub struct RtpSource {
    stop: CancellationToken,
    /// Datagrams dropped: from a second sender, not RTP, or a payload type not in the SDP.
    dropped: Arc<AtomicU64>,
}

impl RtpSource {
    /// Binds the plan's ports on `bind` and starts reading; the session reads the events.
    pub async fn bind(
        bind: IpAddr,
        plan: &IngestPlan,
    ) -> Result<(RtpSource, mpsc::Receiver<PeerEvent>), IngestError> {
        let mut sockets = Vec::new();
        for (kind, track) in std::iter::once((MediaKind::Video, &plan.video))
            .chain(plan.audio.iter().map(|a| (MediaKind::Audio, a)))
        {
            let socket = UdpSocket::bind(SocketAddr::new(bind, track.port))
                .await
                .map_err(|source| IngestError::Bind {
                    port: track.port,
                    source,
                })?;
            sockets.push((kind, track.payload_type, socket));
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        // Plain RTP has no handshake: the stream is "connected" at once; the session's media
        // timeout ends it if nothing comes.
        let _ = tx.try_send(PeerEvent::State(PeerState::Connected));
        let stop = CancellationToken::new();
        let dropped = Arc::new(AtomicU64::new(0));
        for (kind, pt, socket) in sockets {
            let (tx, stop, dropped) = (tx.clone(), stop.clone(), dropped.clone());
            tokio::spawn(async move {
                read(socket, kind, pt, tx, stop, dropped).await;
            });
        }
        Ok((RtpSource { stop, dropped }, rx))
    }

    /// Stops reading and closes the ports.
    pub fn close(&self) {
        self.stop.cancel();
    }
}

impl Drop for RtpSource {
    fn drop(&mut self) {
        self.stop.cancel();
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::info!(
                dropped,
                "RTP ingest ended; datagrams dropped (other senders, not RTP, other payload types, a full queue)"
            );
        }
    }
}

async fn read(
    socket: UdpSocket,
    kind: MediaKind,
    pt: u8,
    tx: mpsc::Sender<PeerEvent>,
    stop: CancellationToken,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sender: Option<SocketAddr> = None;
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors and the like: keep listening.
                Err(_) => continue,
            },
            _ = stop.cancelled() => break,
            _ = tx.closed() => break,
        };
        let arrival = Instant::now();
        let packet = match RtpPacket::parse_bytes(Bytes::copy_from_slice(&buf[..n])) {
            Ok(p) if p.payload_type == pt => p,
            // RTCP on the same port (rtcp-mux) or anything else: not media.
            _ => {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        // The first sender of valid media owns the port (a stray datagram does not).
        if *sender.get_or_insert(from) != from {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if tx
            .try_send(PeerEvent::Rtp {
                kind,
                packet,
                arrival,
            })
            .is_err()
        {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
