//! The server's peers driven from our own loop over webrtc-rs's sans-IO core (`rtc` 0.21),
//! instead of through the `webrtc` crate's per-peer driver (`--peer-loop own`, the default).
//!
//! Why by hand: the `webrtc` crate wraps the same core in a driver task whose every wake-up
//! takes four async locks, re-arms a timer, runs a `select!` over a dozen branches and then
//! hands each RTP packet to a track queue, from which a task of ours forwards it to the
//! session (BENCHMARKS.md: about half the server's samples for a recording). The core itself
//! is synchronous and reads no clock, so one task per peer can feed it datagrams, poll what it
//! wants to send, read its RTP and hand it to the session's channel in one step: no driver,
//! no track queue, no forwarding task. What the driver did that we need is here and nothing
//! more (`docs/rtc-sans-io.md` is the reading of the core's API this follows): host
//! candidates only (no STUN/TURN gathering, no mDNS, no TCP), immediate timeouts
//! rate-limited to one per millisecond, a timeout error ending only this peer, never waiting
//! on a send, and the close alerts sent before the peer goes.
//!
//! Sockets: with `--udp-port` each peer's socket is a [`super::mux::MuxSocket`] (the shared
//! port's demultiplexer and its per-peer flows, routed by the ICE ufrag we choose here);
//! otherwise a plain tokio socket of its own per ICE address (not the library's wrapper, which
//! turns on GRO and would need 64-datagram receive buffers).
//!
//! Shape: a [`DirectPeer`] handle, held by the session, and a task that owns the loop; both
//! reach the core and its sockets through one `std::sync::Mutex` that is never held across an
//! `.await`. The task runs on the runtime that created the peer (the session's media thread),
//! so the lock is uncontended and a packet is read, decrypted and handed to the recorder on
//! one thread. Sending never waits: a datagram the kernel has no room for is dropped, as the
//! network would, so the session's own calls (RTP to send, a keyframe request, trickled
//! candidates) act on the core and send what it queued at once, waking the loop only when
//! they moved its next timer earlier.
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::rtc::media_stream::MediaStreamTrackId;
use ::rtc::peer_connection::configuration::RTCConfigurationBuilder;
use ::rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use ::rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use ::rtc::peer_connection::sdp::RTCSessionDescription;
use ::rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use ::rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use ::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use ::rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use ::rtc::sansio::Protocol;
use ::rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use bytes::BytesMut;
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::{Notify, mpsc};
use webrtc::runtime::{AsyncUdpSocket, RecvMeta, Runtime, Transmit};

use super::peer::{self, Counted, DtlsAnswerRole, Net, lib};
use super::sdp::Plan;
use super::{PeerEvent, PeerState, RemoteCandidate, RtcError};

/// Datagrams fed to the core per wake-up before it is pumped (the library's driver reads up
/// to 64; a recorder's burst is a video frame, a few packets).
const RECV_BATCH: usize = 16;
/// Largest datagram read (as the library's driver: 2000 bytes carry any RTP we accept).
const RECV_BUFFER: usize = 2048;
/// Received datagrams are cut from chunks of this size (one allocation per ~30 datagrams,
/// not one each; the core takes each datagram as an owned `BytesMut`).
const RECV_CHUNK: usize = 64 * 1024;
/// An already-due timeout is handled at most this often: the ICE agent can report a deadline
/// in the past again right after handling it, which would spin the loop (the library's driver
/// has the same guard, `MIN_IMMEDIATE_TIMEOUT_INTERVAL`).
const MIN_IMMEDIATE_TIMEOUT: Duration = Duration::from_millis(1);

/// The session's handle to a peer on our own loop. Dropping it closes the peer.
pub(crate) struct DirectPeer {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the loop: the session closed the peer or moved its next timer earlier.
    wake: Notify,
    closed: AtomicBool,
}

/// One socket of a peer and the address its host candidate names (and `handle_read`'s
/// `local_addr`: the core drops datagrams whose local address is not a candidate's).
struct PeerSocket {
    socket: Socket,
    addr: SocketAddr,
    /// A read failed for good: no longer polled.
    dead: bool,
}

enum Socket {
    /// The mux's: one datagram per read, sends never wait (`super::mux`).
    Mux(Arc<dyn AsyncUdpSocket>),
    /// A socket of the peer's own.
    Own(tokio::net::UdpSocket),
}

impl PeerSocket {
    /// Sends one datagram now, or drops it if the kernel has no room.
    fn send(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        match &self.socket {
            Socket::Mux(socket) => {
                let transmit = Transmit {
                    destination: to,
                    ecn: None,
                    contents: data,
                    segment_size: None,
                    src_ip: None,
                };
                let mut cx = Context::from_waker(Waker::noop());
                match socket.poll_send(&mut cx, &transmit) {
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Ready(Ok(_)) | Poll::Pending => Ok(()),
                }
            }
            Socket::Own(socket) => match socket.try_send_to(data, to) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                _ => Ok(()),
            },
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match &self.socket {
            Socket::Mux(socket) => {
                let mut meta = [RecvMeta::default()];
                let mut bufs = [IoSliceMut::new(buf)];
                match socket.poll_recv(cx, &mut bufs, &mut meta) {
                    Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Ok((meta[0].len, meta[0].addr))),
                    Poll::Ready(Ok(_)) => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
            Socket::Own(socket) => {
                let mut read = tokio::io::ReadBuf::new(buf);
                match socket.poll_recv_from(cx, &mut read) {
                    Poll::Ready(Ok(from)) => Poll::Ready(Ok((read.filled().len(), from))),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Read errors that say nothing about the socket (as the library's driver classifies them):
/// an ICMP report of an earlier datagram, an interrupted call.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

struct Inner {
    pc: RTCPeerConnection,
    sockets: Vec<PeerSocket>,
    /// What received datagrams are cut from.
    rx: BytesMut,
    pt_map: Arc<[(u8, Codec)]>,
    /// Remote tracks' kinds (for packets whose payload type is not in `pt_map`).
    track_kinds: HashMap<MediaStreamTrackId, MediaKind>,
    /// The (SSRC, codec) last announced per kind: `[audio, video]`.
    announced: [Option<(u32, Codec)>; 2],
    video_receiver: Option<RTCRtpReceiverId>,
    remote_video_ssrc: u32,
    /// Our sending tracks (viewers): `[audio, video]`.
    senders: [Option<RTCRtpSenderId>; 2],
    /// The last state reported (`None` before the first).
    state: Option<PeerState>,
    /// When the loop will next wake for the core's timers.
    armed: Option<Instant>,
    last_immediate_timeout: Option<Instant>,
    failed: bool,
    _live: Counted,
}

fn slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs `f` on the core for the session, sends what it queued and wakes the loop if the
    /// core's next timer is now earlier than the one the loop sleeps to.
    fn with_core<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.lock();
        let result = f(&mut inner);
        inner.flush();
        if let Some(next) = inner.next_timer()
            && inner.armed.is_none_or(|armed| next < armed)
        {
            inner.armed = Some(next);
            self.wake.notify_one();
        }
        result
    }

    fn add_candidates(&self, candidates: &[RemoteCandidate]) -> Result<(), RtcError> {
        if self.is_closed() {
            return Err(RtcError::Closed);
        }
        self.with_core(|inner| {
            for c in candidates {
                inner
                    .pc
                    .add_remote_candidate(RTCIceCandidateInit {
                        candidate: c.candidate.clone(),
                        sdp_mid: c.mid.clone(),
                        username_fragment: c.ufrag.clone(),
                        ..Default::default()
                    })
                    .map_err(|e| RtcError::BadCandidate(e.to_string()))?;
            }
            Ok(())
        })
    }
}

impl Inner {
    /// Sends every datagram the core has queued, from the socket of the address it chose.
    fn flush(&mut self) {
        while let Some(w) = self.pc.poll_write() {
            let Some(socket) = self
                .sockets
                .iter()
                .find(|s| s.addr == w.transport.local_addr)
            else {
                tracing::debug!(from = %w.transport.local_addr, "no socket for a datagram");
                continue;
            };
            if let Err(e) = socket.send(&w.message, w.transport.peer_addr) {
                tracing::debug!(error = %e, to = %w.transport.peer_addr, "datagram not sent");
            }
        }
    }

    /// The core's next timer, no earlier than the rate limit on immediate ones allows.
    fn next_timer(&mut self) -> Option<Instant> {
        let next = self.pc.poll_timeout()?;
        Some(match self.last_immediate_timeout {
            Some(last) => next.max(last + MIN_IMMEDIATE_TIMEOUT),
            None => next,
        })
    }

    /// Runs the core until it has nothing more to do now: due timers, then its events, RTP
    /// and datagrams to send. Returns when the loop should next wake for its timers.
    fn pump(&mut self, now: Instant, events: &mut Vec<PeerEvent>) -> Option<Instant> {
        loop {
            self.drain(events);
            let due = self.pc.poll_timeout()?;
            if due > now {
                return Some(due);
            }
            if let Some(last) = self.last_immediate_timeout
                && now < last + MIN_IMMEDIATE_TIMEOUT
            {
                return Some(last + MIN_IMMEDIATE_TIMEOUT);
            }
            self.last_immediate_timeout = Some(now);
            if let Err(e) = self.pc.handle_timeout(now) {
                // The library's driver ends its whole loop here; this is one peer's alone.
                tracing::warn!(error = %e, "peer connection timer failed; closing it");
                self.fail(events);
                return None;
            }
        }
    }

    fn fail(&mut self, events: &mut Vec<PeerEvent>) {
        self.drain(events);
        self.failed = true;
        self.set_state(PeerState::Failed, events);
    }

    fn set_state(&mut self, state: PeerState, events: &mut Vec<PeerEvent>) {
        if self.state != Some(state) {
            self.state = Some(state);
            events.push(PeerEvent::State(state));
        }
    }

    fn drain(&mut self, events: &mut Vec<PeerEvent>) {
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    if let Some(state) = peer::peer_state(state) {
                        self.set_state(state, events);
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let kind = self
                        .pc
                        .rtp_receiver(init.receiver_id)
                        .and_then(|r| peer::from_library_kind(r.track().kind()));
                    if let Some(kind) = kind {
                        self.track_kinds.insert(init.track_id, kind);
                        if kind == MediaKind::Video {
                            self.video_receiver = Some(init.receiver_id);
                        }
                    }
                }
                _ => {}
            }
        }
        // Reading also pumps the core's pipeline (interceptor releases, RTCP it answers).
        while let Some(TaggedRTCMessage { now, message }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(track_id, packet) = message {
                self.received(&track_id, packet, now, events);
            }
        }
        self.flush();
    }

    /// One RTP packet from the remote: `Track` first when its SSRC or codec is new for its
    /// kind, then the packet, stamped with when its datagram was read.
    fn received(
        &mut self,
        track_id: &MediaStreamTrackId,
        packet: ::rtc::rtp::Packet,
        arrival: Instant,
        events: &mut Vec<PeerEvent>,
    ) {
        let pt = packet.header.payload_type;
        let codec = self.pt_map.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c);
        let Some(kind) = codec
            .map(|c| c.kind())
            .or_else(|| self.track_kinds.get(track_id).copied())
        else {
            return;
        };
        let ssrc = packet.header.ssrc;
        if let Some(codec) = codec
            && self.announced[slot(kind)] != Some((ssrc, codec))
        {
            self.announced[slot(kind)] = Some((ssrc, codec));
            if kind == MediaKind::Video {
                self.remote_video_ssrc = ssrc;
            }
            events.push(PeerEvent::Track { kind, codec, ssrc });
        }
        events.push(PeerEvent::Rtp {
            kind,
            packet: RtpPacket {
                payload_type: pt,
                sequence_number: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                ssrc,
                marker: packet.header.marker,
                payload: packet.payload,
            },
            arrival,
        });
    }

    /// Feeds the core what the sockets have, up to [`RECV_BATCH`] datagrams: `Ready` once
    /// something was read (or a socket failed), `Pending` with every live socket's waker set.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let mut progressed = false;
        for _ in 0..RECV_BATCH {
            let mut got = false;
            for socket in self.sockets.iter_mut().filter(|s| !s.dead) {
                if self.rx.capacity() < RECV_BUFFER {
                    self.rx = BytesMut::with_capacity(RECV_CHUNK);
                }
                self.rx.resize(RECV_BUFFER, 0);
                match socket.poll_recv(cx, &mut self.rx) {
                    Poll::Ready(Ok((len, from))) => {
                        let datagram = self.rx.split_to(len.min(RECV_BUFFER));
                        self.rx.clear();
                        // Always `Ok`: the core's handlers only log what they drop.
                        let _ = self.pc.handle_read(TaggedBytesMut {
                            now,
                            transport: TransportContext {
                                local_addr: socket.addr,
                                peer_addr: from,
                                ecn: None,
                                transport_protocol: TransportProtocol::UDP,
                            },
                            message: datagram,
                        });
                        got = true;
                    }
                    Poll::Ready(Err(e)) if is_transient(&e) => got = true,
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(error = %e, local = %socket.addr, "UDP socket failed");
                        socket.dead = true;
                        got = true;
                    }
                    Poll::Pending => {}
                }
            }
            if !got {
                break;
            }
            progressed = true;
        }
        if progressed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What [`build`] needs from the caller.
pub(crate) struct Build<'a> {
    pub net: &'a Net,
    pub plan: &'a Plan,
    pub role: DtlsAnswerRole,
    pub offer: RTCSessionDescription,
    /// Viewers: the tracks we send, added after the offer is applied (so the transceivers
    /// keep the offer's codec list), as (kind, track).
    pub tracks: Vec<(MediaKind, ::rtc::media_stream::MediaStreamTrack)>,
}

/// Creates the peer, applies the offer, answers with our host candidates and starts the
/// loop on the current runtime. Returns the handle, the answer SDP (before the mux and NAT
/// rewrites, which the caller applies) and the session's event channel.
pub(crate) async fn build(
    b: Build<'_>,
) -> Result<(DirectPeer, String, mpsc::Receiver<PeerEvent>), RtcError> {
    let (events, rx) = mpsc::channel(peer::EVENT_CHANNEL_CAPACITY);
    let (engine, registry) = peer::media_engine(b.plan)?;
    let registry = peer::with_taps(registry, &events, b.net);
    let random = |n| {
        crate::random::hex(n)
            .map_err(|e| RtcError::Library(format!("no randomness for ICE credentials: {e}")))
    };
    let (ufrag, pwd) = (random(8)?, random(16)?);
    let settings = peer::setting_engine(b.role, Some((&ufrag, &pwd)));
    let now = Instant::now();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(|e| RtcError::Library(format!("could not create the connection: {e}")))?;

    let sockets = bind(b.net, &ufrag, &pwd)?;

    pc.set_remote_description(now, b.offer)
        .map_err(|e| RtcError::BadSdp(e.to_string()))?;
    let mut senders: [Option<RTCRtpSenderId>; 2] = [None, None];
    for (kind, track) in b.tracks {
        senders[slot(kind)] = Some(pc.add_track(track).map_err(lib)?);
    }
    let answer = pc.create_answer(None).map_err(lib)?;
    pc.set_local_description(now, answer).map_err(lib)?;
    // Candidates after the local description: applying it starts gathering afresh.
    for socket in &sockets {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: socket.addr.ip().to_string(),
                port: socket.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(lib)?;
        let init = RTCIceCandidate::from(&candidate).to_json().map_err(lib)?;
        pc.add_local_candidate(init).map_err(lib)?;
    }
    // The end of candidates: gathering is complete and the description lists them all.
    pc.add_local_candidate(RTCIceCandidateInit::default())
        .map_err(lib)?;
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| RtcError::Library("no local description".into()))?;

    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            pc,
            sockets,
            rx: BytesMut::new(),
            pt_map: b.plan.pt_map().into(),
            track_kinds: HashMap::new(),
            announced: [None, None],
            video_receiver: None,
            remote_video_ssrc: 0,
            senders,
            state: None,
            armed: None,
            last_immediate_timeout: None,
            failed: false,
            _live: Counted::new(&b.net.counters, |c| &c.peers),
        }),
        wake: Notify::new(),
        closed: AtomicBool::new(false),
    });
    tokio::spawn(run(shared.clone(), events));
    Ok((DirectPeer { shared }, sdp, rx))
}

/// One socket per ICE address: the mux's (routed by our ufrag) or one of the peer's own.
fn bind(net: &Net, ufrag: &str, pwd: &str) -> Result<Vec<PeerSocket>, RtcError> {
    let mux = net.mux.as_ref().map(|mux| super::mux::MuxRuntime {
        mux: mux.clone(),
        ufrag: ufrag.to_owned(),
        pwd: pwd.into(),
    });
    let mut sockets = Vec::new();
    for ip in net.peer_ips() {
        let cannot =
            |e: io::Error| RtcError::Library(format!("cannot use a UDP socket on {ip}: {e}"));
        let std = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(cannot)?;
        let socket = match &mux {
            Some(runtime) => Socket::Mux(runtime.wrap_udp_socket(std).map_err(cannot)?),
            None => {
                std.set_nonblocking(true).map_err(cannot)?;
                Socket::Own(tokio::net::UdpSocket::from_std(std).map_err(cannot)?)
            }
        };
        let addr = match &socket {
            Socket::Mux(s) => s.local_addr(),
            Socket::Own(s) => s.local_addr(),
        }
        .map_err(cannot)?;
        sockets.push(PeerSocket {
            socket,
            addr,
            dead: false,
        });
    }
    if sockets.is_empty() {
        return Err(RtcError::Settings(
            "no address to gather ICE candidates on".into(),
        ));
    }
    Ok(sockets)
}

/// Hands events to the session in order without waiting: what does not fit waits in
/// `pending` (and the loop stops reading until it is delivered). `Err` once the session is
/// gone.
fn deliver(
    events: &mpsc::Sender<PeerEvent>,
    out: &mut Vec<PeerEvent>,
    pending: &mut VecDeque<PeerEvent>,
) -> Result<(), ()> {
    pending.extend(out.drain(..));
    while let Some(event) = pending.pop_front() {
        match events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                pending.push_front(event);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
        }
    }
    Ok(())
}

/// The peer's loop: feed what arrives, run the timers, send what the core queues and hand
/// events to the session, until the session closes the peer (or drops its handle).
///
/// It never waits on anything but its wake-ups: a session that falls behind makes it stop
/// reading (the datagrams queue in the kernel), not stop answering ICE or running timers.
async fn run(shared: Arc<Shared>, events: mpsc::Sender<PeerEvent>) {
    let mut out = Vec::new();
    let mut pending = VecDeque::new();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed_for = None;
    loop {
        let deadline = {
            let mut inner = shared.lock();
            let deadline = inner.pump(Instant::now(), &mut out);
            inner.armed = deadline;
            if inner.failed || inner.sockets.iter().all(|s| s.dead) {
                if !inner.failed {
                    inner.fail(&mut out);
                }
                shared.closed.store(true, Ordering::SeqCst);
            }
            deadline
        };
        if deliver(&events, &mut out, &mut pending).is_err() {
            shared.closed.store(true, Ordering::SeqCst);
        }
        if shared.is_closed() {
            break;
        }
        if let Some(deadline) = deadline
            && armed_for != Some(deadline)
        {
            sleep.as_mut().reset(deadline.into());
            armed_for = Some(deadline);
        }
        tokio::select! {
            biased;
            () = shared.wake.notified() => {}
            permit = events.reserve(), if !pending.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(event) = pending.pop_front() {
                        permit.send(event);
                    }
                }
                Err(_) => shared.closed.store(true, Ordering::SeqCst),
            },
            () = std::future::poll_fn(|cx| shared.lock().read(cx)), if pending.is_empty() => {}
            () = &mut sleep, if deadline.is_some() => armed_for = None,
        }
    }
    // Closing queues the DTLS close_notify (and SCTP aborts), sent now, so the remote ends
    // at once instead of waiting for its consent checks to fail. The sockets go with it (the
    // mux forgets the peer's routes).
    {
        let mut inner = shared.lock();
        let _ = inner.pc.close();
        inner.flush();
        inner.set_state(PeerState::Closed, &mut out);
        inner.sockets.clear();
    }
    pending.extend(out.drain(..));
    if !pending.is_empty() && !events.is_closed() {
        // The session may be behind: what is left (the final states) is delivered by a task
        // of its own, as the library path's event handler does.
        tokio::spawn(async move {
            for event in pending {
                if events.send(event).await.is_err() {
                    break;
                }
            }
        });
    }
}

impl DirectPeer {
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes the peer: the loop sends the DTLS close alert and ends. Idempotent.
    pub(crate) fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
    }

    /// Sends a PLI for the remote video SSRC (nothing before video has arrived).
    pub(crate) fn request_keyframe(&self) {
        if self.is_closed() {
            return;
        }
        self.shared.with_core(|inner| {
            let (Some(id), ssrc) = (inner.video_receiver, inner.remote_video_ssrc) else {
                return;
            };
            if ssrc == 0 {
                return;
            }
            if let Some(mut receiver) = inner.pc.rtp_receiver(id) {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                if let Err(e) = receiver.write_rtcp(Instant::now(), vec![Box::new(pli)]) {
                    tracing::debug!(error = %e, "PLI not sent");
                }
            }
        });
    }

    /// Sends one RTP packet as is on our `kind` track (already checked by the caller).
    pub(crate) fn send(&self, kind: MediaKind, packet: &RtpPacket) -> Result<(), RtcError> {
        if self.is_closed() {
            return Err(RtcError::Closed);
        }
        let packet = peer::library_packet(packet);
        self.shared.with_core(|inner| {
            let id = inner.senders[slot(kind)].ok_or(RtcError::NoTrack(peer::kind_name(kind)))?;
            let mut sender = inner.pc.rtp_sender(id).ok_or(RtcError::Closed)?;
            sender.write_rtp(Instant::now(), packet).map_err(lib)
        })
    }

    /// A weak reference, for [`super::Trickle`].
    pub(crate) fn downgrade(&self) -> WeakDirect {
        WeakDirect(Arc::downgrade(&self.shared))
    }
}

impl Drop for DirectPeer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A peer that may be gone: trickle handles never keep a closed peer alive.
#[derive(Clone)]
pub(crate) struct WeakDirect(std::sync::Weak<Shared>);

impl WeakDirect {
    /// Adds trickled candidates; an error names the first one the connection refused.
    pub(crate) fn add_candidates(&self, candidates: &[RemoteCandidate]) -> Result<(), RtcError> {
        let shared = self.0.upgrade().ok_or(RtcError::Closed)?;
        shared.add_candidates(candidates)
    }

    pub(crate) fn ptr_eq(&self, other: &WeakDirect) -> bool {
        std::sync::Weak::ptr_eq(&self.0, &other.0)
    }
}
