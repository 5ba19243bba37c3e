//! One UDP port for every peer (`--udp-port N`), as pion's UDPMux and Janus, mediasoup and
//! LiveKit offer: a firewall opens one port, not a range.
//!
//! Hand-written because webrtc-rs 0.21 has none (`SettingEngine::with_udp_network` is
//! commented out in `rtc`, and the older crates' `UDPMuxDefault` is gone) and its driver
//! binds a socket per peer. What we plug in instead is its `Runtime` trait: each peer gets a
//! [`MuxRuntime`] whose `wrap_udp_socket` keeps the peer's own socket only as a reservation
//! (the driver keys the peer's candidate and its packets by that socket's address) and hands
//! the driver a [`MuxSocket`] that sends and receives through the one shared socket for that
//! IP at port N. The shared socket's reader demultiplexes what arrives:
//!
//! 1. a STUN request whose USERNAME starts with a peer's ICE ufrag (we choose each peer's
//!    credentials, so they are known before the first packet) goes to that peer; if its
//!    MESSAGE-INTEGRITY verifies with the peer's password, its source address becomes the
//!    peer's (the newest verified claim wins, as in pion's UDPMux: a client that reconnects
//!    from the same NAT mapping moves with it);
//! 2. a STUN response goes to the peer that sent the request (by transaction id);
//! 3. anything else goes to the peer that owns its source address; the rest is dropped.
//!
//! So only a sender that knows a peer's ICE password can claim an address for it, and no
//! peer can take another's address by sending to it.
//!
//! **Flows (Linux).** Once media (not STUN) arrives from an address a peer owns, the peer opens
//! its own socket on the same port, connected to that address (`SO_REUSEPORT`: the kernel
//! gives a datagram to the connected socket of its exact 4-tuple before the unconnected
//! shared one). From then on the peer's packets reach its driver from the kernel directly, on
//! the peer's own thread (`crate::media_threads`), with no hop through the shared reader and no
//! copy: the shared reader only sees ICE checks and first packets. A claim that moves an
//! address to another peer closes the old owner's flow to it. The shared socket is bound only
//! after a plain bind of the port succeeded, so another process holding the port (with or
//! without `SO_REUSEPORT`) is an error at start, as before. The answer's host candidates name the
//! reservation's port; [`rewrite_candidate_ports`] makes them name N.
//! STUN and TURN servers are not used in this mode (all peers would share one 5-tuple towards
//! them); `--public-ip` gives the server's public address instead.
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Datagrams queued for one peer's socket before the shared reader drops (about 0.3 s of a
/// 2.5 Mbit/s stream: a driver that does not read must not hold the others up).
const INBOX_PACKETS: usize = 256;
/// Largest datagram read (the driver's own receive buffer is 2000 bytes).
const MAX_DATAGRAM: usize = 2048;
/// Kernel buffers of a shared socket (it carries every peer's traffic).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// STUN's magic cookie (RFC 5389) and the attributes the mux reads.
const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_USERNAME: u16 = 0x0006;
const STUN_MESSAGE_INTEGRITY: u16 = 0x0008;
/// How long a sent request's transaction id routes its response.
const TRANSACTION_TTL: Duration = Duration::from_secs(10);
/// Transactions remembered at most (checks run every 20 ms per candidate pair).
const MAX_TRANSACTIONS: usize = 16_384;

/// The shared sockets of one port, and who gets what arrives on them.
#[derive(Debug)]
pub(crate) struct UdpMux {
    port: u16,
    /// Shared sockets and their reader tasks live on this runtime (the one that bound the
    /// first: the server's, at start).
    handle: std::sync::OnceLock<tokio::runtime::Handle>,
    shared: Mutex<Vec<Arc<Shared>>>,
    routes: Mutex<Routes>,
    /// The shared sockets' reader tasks: they end (and close the sockets) with the mux.
    readers: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        for reader in self
            .readers
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            reader.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    ip: IpAddr,
    socket: tokio::net::UdpSocket,
}

#[derive(Debug, Default)]
struct Routes {
    /// (local ufrag, shared socket IP) -> the peer's socket on it, and its ICE password.
    by_ufrag: HashMap<(String, IpAddr), (Weak<Inbox>, Arc<str>)>,
    /// (shared socket IP, remote address) -> the peer that owns the address.
    by_remote: HashMap<(IpAddr, SocketAddr), Weak<Inbox>>,
    /// STUN requests the peers sent, by transaction id: their responses come back here.
    by_transaction: HashMap<[u8; 12], (Weak<Inbox>, Instant)>,
}

/// What arrived for one peer's socket.
#[derive(Debug, Default)]
struct Inbox {
    queue: Mutex<VecDeque<(Vec<u8>, SocketAddr)>>,
    waker: Mutex<Option<Waker>>,
    /// The peer's connected socket (see the module docs).
    flow: Mutex<Flow>,
}

/// A peer's own socket on the mux port, connected to the address its media comes from.
#[derive(Debug, Default)]
enum Flow {
    #[default]
    None,
    /// Media arrived from this address through the shared reader: open a flow to it at the
    /// peer's next poll (on the peer's own runtime, whose reactor then wakes its driver).
    Wanted(SocketAddr),
    Open {
        remote: SocketAddr,
        socket: flow_io::FlowSocket,
    },
    /// Opening failed (logged once): the shared reader goes on delivering.
    Failed,
}

impl Inbox {
    fn lock_flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Media from `from`, which this peer owns, came through the shared reader.
    fn want_flow(&self, from: SocketAddr) {
        if !cfg!(target_os = "linux") {
            return;
        }
        let mut flow = self.lock_flow();
        match &*flow {
            Flow::Open { remote, .. } | Flow::Wanted(remote) if *remote == from => {}
            Flow::Failed => {}
            _ => *flow = Flow::Wanted(from),
        }
    }

    /// `from` was claimed by another peer: stop taking its datagrams.
    fn close_flow_to(&self, from: SocketAddr) {
        let mut flow = self.lock_flow();
        if matches!(&*flow, Flow::Open { remote, .. } | Flow::Wanted(remote) if *remote == from) {
            *flow = Flow::None;
        }
    }

    fn has_open_flow(&self) -> bool {
        matches!(*self.lock_flow(), Flow::Open { .. })
    }
}

impl Inbox {
    fn push(&self, data: Vec<u8>, from: SocketAddr) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= INBOX_PACKETS {
                return;
            }
            queue.push_back((data, from));
        }
        if let Some(waker) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            waker.wake();
        }
    }
}

impl UdpMux {
    /// A mux on `port`; sockets are bound as peers need them (one per local IP), or at
    /// start with [`bind`](Self::bind).
    pub(crate) fn new(port: u16) -> Arc<UdpMux> {
        Arc::new(UdpMux {
            port,
            handle: std::sync::OnceLock::new(),
            shared: Mutex::default(),
            routes: Mutex::default(),
            readers: Mutex::default(),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Binds `ip:port` now (at start, so that a port in use is an error then, not at the
    /// first peer).
    pub(crate) fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<()> {
        self.shared_for(ip).map(|_| ())
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared socket for `ip`, bound (and its reader started) the first time.
    fn shared_for(self: &Arc<Self>, ip: IpAddr) -> io::Result<Arc<Shared>> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shared.iter().find(|s| s.ip == ip) {
            return Ok(s.clone());
        }
        let handle = match self.handle.get() {
            Some(h) => h.clone(),
            None => {
                let h = tokio::runtime::Handle::try_current().map_err(|e| {
                    io::Error::other(format!("the UDP mux needs a tokio runtime: {e}"))
                })?;
                self.handle.get_or_init(|| h).clone()
            }
        };
        let addr = SocketAddr::new(ip, self.port);
        // A plain bind first: it fails if any other socket holds the port, with or without
        // SO_REUSEPORT (which the shared socket needs for the flows, and which would otherwise
        // let a second server on the same port split the traffic silently).
        drop(std::net::UdpSocket::bind(addr)?);
        let std = bind_reusing_port(addr)?;
        std.set_nonblocking(true)?;
        // Best effort: the kernel caps them at net.core.{r,w}mem_max.
        let sock = socket2::SockRef::from(&std);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        let socket = {
            let _runtime = handle.enter();
            tokio::net::UdpSocket::from_std(std)?
        };
        let s = Arc::new(Shared { ip, socket });
        shared.push(s.clone());
        let (mux, reader) = (Arc::downgrade(self), s.clone());
        let task = handle.spawn(read_loop(mux, reader));
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
        tracing::info!(addr = %SocketAddr::new(ip, self.port), "UDP mux listening");
        Ok(s)
    }

    /// Where a datagram that arrived on `ip`'s socket from `from` goes.
    fn route(&self, ip: IpAddr, from: SocketAddr, data: &[u8]) -> Option<Arc<Inbox>> {
        let mut routes = self.lock_routes();
        if let Some(stun) = Stun::parse(data) {
            if stun.is_request() {
                let (inbox, pwd) = stun
                    .local_ufrag_of(data)
                    .and_then(|ufrag| routes.by_ufrag.get(&(ufrag.to_owned(), ip)))
                    .and_then(|(w, pwd)| Some((w.upgrade()?, pwd.clone())))?;
                if stun.integrity_verifies(data, pwd.as_bytes())
                    && let Some(previous) = routes
                        .by_remote
                        .insert((ip, from), Arc::downgrade(&inbox))
                        .and_then(|w| w.upgrade())
                    && !Arc::ptr_eq(&previous, &inbox)
                {
                    previous.close_flow_to(from);
                }
                return Some(inbox);
            }
            // A response (or an indication): to whoever sent the request.
            if let Some((w, _)) = routes.by_transaction.remove(stun.transaction_id(data)) {
                return w.upgrade();
            }
        }
        let owner = routes.by_remote.get(&(ip, from)).and_then(Weak::upgrade)?;
        owner.want_flow(from);
        Some(owner)
    }

    /// Remembers a STUN request a peer sends, so that its response finds the peer.
    fn sent(&self, data: &[u8], inbox: &Arc<Inbox>) {
        let Some(stun) = Stun::parse(data).filter(Stun::is_request) else {
            return;
        };
        let mut routes = self.lock_routes();
        let now = Instant::now();
        if routes.by_transaction.len() >= MAX_TRANSACTIONS {
            routes.by_transaction.retain(|_, (w, at)| {
                now.duration_since(*at) < TRANSACTION_TTL && w.strong_count() > 0
            });
            if routes.by_transaction.len() >= MAX_TRANSACTIONS {
                return;
            }
        }
        let mut id = [0u8; 12];
        id.copy_from_slice(stun.transaction_id(data));
        routes
            .by_transaction
            .insert(id, (Arc::downgrade(inbox), now));
    }

    /// Peers whose datagrams arrive on a flow of their own (for tests and metrics).
    pub(crate) fn flows(&self) -> usize {
        self.lock_routes()
            .by_ufrag
            .values()
            .filter_map(|(w, _)| w.upgrade())
            .filter(|inbox| inbox.has_open_flow())
            .count()
    }

    /// Peer sockets registered now (for tests and metrics).
    pub(crate) fn peers(&self) -> usize {
        self.lock_routes()
            .by_ufrag
            .values()
            .filter(|(w, _)| w.strong_count() > 0)
            .count()
    }
}

async fn read_loop(mux: Weak<UdpMux>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors for earlier sends surface here on Linux: not the socket's end.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, ip = %shared.ip, "UDP mux socket failed");
                return;
            }
        };
        let Some(mux) = mux.upgrade() else { return };
        let data = &buf[..len];
        match mux.route(shared.ip, from, data) {
            Some(inbox) => inbox.push(data.to_vec(), from),
            None => tracing::trace!(%from, len, "UDP mux: a datagram for no peer, dropped"),
        }
    }
}

/// What the mux reads of a STUN message (RFC 5389): only routing needs it; the ICE agent
/// checks the message itself. Hand-written because it needs three fields, not a decoder.
#[derive(Debug, Default)]
struct Stun {
    class_request: bool,
    /// Byte ranges in the message.
    username: Option<(usize, usize)>,
    /// Start of the MESSAGE-INTEGRITY attribute (its header) and of its 20-byte value.
    integrity: Option<(usize, usize)>,
}

impl Stun {
    fn parse(data: &[u8]) -> Option<Stun> {
        // Header: type (first two bits 0), length, magic cookie, transaction id.
        if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != STUN_MAGIC {
            return None;
        }
        let typ = u16::from_be_bytes([data[0], data[1]]);
        let body_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if data.len() < 20 + body_len {
            return None;
        }
        let mut stun = Stun {
            // Class bits C1 (0x0100) and C0 (0x0010) both 0: a request.
            class_request: typ & 0x0110 == 0,
            ..Stun::default()
        };
        let mut at = 20;
        while at + 4 <= 20 + body_len {
            let kind = u16::from_be_bytes([data[at], data[at + 1]]);
            let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
            let value = at + 4;
            if value + len > 20 + body_len {
                return None;
            }
            match kind {
                STUN_USERNAME if stun.integrity.is_none() => stun.username = Some((value, len)),
                STUN_MESSAGE_INTEGRITY if len == 20 && stun.integrity.is_none() => {
                    stun.integrity = Some((at, value))
                }
                _ => {}
            }
            // Values are padded to 4 bytes.
            at = value + len.div_ceil(4) * 4;
        }
        Some(stun)
    }

    fn is_request(&self) -> bool {
        self.class_request
    }

    fn transaction_id<'a>(&self, data: &'a [u8]) -> &'a [u8; 12] {
        data[8..20].try_into().expect("parsed: 20 header bytes")
    }

    /// The USERNAME's first part: in a request to us, our own ufrag (`"<ours>:<theirs>"`).
    fn local_ufrag_of<'a>(&self, data: &'a [u8]) -> Option<&'a str> {
        let (at, len) = self.username?;
        let username = std::str::from_utf8(&data[at..at + len]).ok()?;
        username.split(':').next().filter(|u| !u.is_empty())
    }

    /// MESSAGE-INTEGRITY (HMAC-SHA1 over the message up to the attribute, the header's length
    /// counting up to its end) with the short-term key `key` (the ICE password).
    fn integrity_verifies(&self, data: &[u8], key: &[u8]) -> bool {
        use hmac::{Hmac, Mac};
        let Some((attr, value)) = self.integrity else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
            return false;
        };
        // The length up to the end of MESSAGE-INTEGRITY: its value ends 20 bytes after `value`,
        // and the header (20 bytes) is not counted.
        let length = u16::try_from(value).unwrap_or(u16::MAX);
        mac.update(&data[..2]);
        mac.update(&length.to_be_bytes());
        mac.update(&data[4..attr]);
        mac.verify_slice(&data[value..value + 20]).is_ok()
    }
}

/// One peer's socket on the mux: what the driver reads and writes.
#[derive(Debug)]
pub(crate) struct MuxSocket {
    /// The peer's own socket's address: the driver's key for this socket.
    key: SocketAddr,
    /// Kept open so that no other socket takes the key's port while the peer lives.
    _reservation: std::net::UdpSocket,
    shared: Arc<Shared>,
    inbox: Arc<Inbox>,
    mux: Arc<UdpMux>,
    ufrag: String,
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.key)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let to = transmit.destination;
        // Never `Pending`: every peer sends on the shared socket and tokio keeps one write
        // waker per socket, so a peer left waiting might not be woken. A datagram the kernel
        // has no room for is dropped, as the network would.
        let _ = cx;
        let sent = {
            let flow = self.inbox.lock_flow();
            match &*flow {
                // An error here (an earlier datagram's ICMP report) falls back to the shared
                // socket for this one.
                Flow::Open { remote, socket } if *remote == to => {
                    flow_io::send(socket, transmit.contents).ok().map(Ok)
                }
                _ => None,
            }
        };
        let sent = sent.unwrap_or_else(|| {
            // Answers to our own checks carry no USERNAME: they find us by transaction id
            // (on a flow they come back on it, so only these are remembered).
            self.mux.sent(transmit.contents, &self.inbox);
            self.shared.socket.try_send_to(transmit.contents, to)
        });
        match sent {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Poll::Ready(Ok(transmit.contents.len()))
            }
            // A connected socket reports an earlier datagram's ICMP error on a later call.
            Err(e) if is_icmp_error(&e) => Poll::Ready(Ok(transmit.contents.len())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        // The flow first: once open, nearly everything arrives there.
        if let Some((len, from)) = self.poll_flow(cx, buf) {
            *m = recv_meta(from, len);
            return Poll::Ready(Ok(1));
        }
        let mut queue = self.inbox.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some((data, from)) = queue.pop_front() else {
            // Registered under the queue's lock: a push after this wakes us.
            *self.inbox.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            return Poll::Pending;
        };
        drop(queue);
        let len = data.len().min(buf.len());
        buf[..len].copy_from_slice(&data[..len]);
        *m = recv_meta(from, len);
        Poll::Ready(Ok(1))
    }
}

impl MuxSocket {
    /// A datagram from this peer's flow into `buf`, opening the flow if one is wanted; `None`
    /// when there is none (the flow's read interest is then registered with `cx`).
    fn poll_flow(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        // Bounded: ICMP errors and strays are skipped, but a flood of them must not hold the
        // driver here.
        for _ in 0..64 {
            match self.poll_flow_once(cx, buf) {
                FlowRead::Packet(len, from) => return Some((len, from)),
                FlowRead::Again => {}
                FlowRead::Stray(len, from) => {
                    // Queued in the instant between bind and connect, when the kernel could
                    // pick this socket for any sender: routed as the shared reader would
                    // (outside the flow's lock: routing may touch this peer's flow).
                    let data = &buf[..len];
                    if let Some(owner) = self.mux.route(self.shared.ip, from, data) {
                        owner.push(data.to_vec(), from);
                    }
                }
                FlowRead::Nothing => return None,
            }
        }
        cx.waker().wake_by_ref();
        None
    }

    fn poll_flow_once(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> FlowRead {
        let mut flow = self.inbox.lock_flow();
        if let Flow::Wanted(remote) = *flow {
            *flow = match self.open_flow(remote) {
                Ok(socket) => {
                    tracing::trace!(%remote, ufrag = %self.ufrag, "UDP mux: flow opened");
                    Flow::Open { remote, socket }
                }
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "UDP mux: no flow; the shared socket delivers");
                    Flow::Failed
                }
            };
        }
        let Flow::Open { remote, socket } = &*flow else {
            return FlowRead::Nothing;
        };
        match flow_io::poll_recv_from(socket, cx, buf) {
            Poll::Pending => FlowRead::Nothing,
            // An ICE check for another peer from this address (a client that reconnects from
            // the same mapping): routed, so that its verified claim can move the address.
            Poll::Ready(Ok((len, from)))
                if from == *remote && self.is_check_for_another(&buf[..len]) =>
            {
                FlowRead::Stray(len, from)
            }
            Poll::Ready(Ok((len, from))) if from == *remote => FlowRead::Packet(len, from),
            Poll::Ready(Ok((len, from))) => FlowRead::Stray(len, from),
            // A connected socket reports ICMP errors (refused, unreachable, prohibited) for
            // earlier sends here; any of them may be spoofed, so none ends the flow (the loop
            // around this is bounded).
            Poll::Ready(Err(_)) => FlowRead::Again,
        }
    }

    /// A STUN request whose USERNAME names another peer's ufrag.
    fn is_check_for_another(&self, data: &[u8]) -> bool {
        Stun::parse(data)
            .filter(Stun::is_request)
            .and_then(|stun| stun.local_ufrag_of(data).map(|u| u != self.ufrag))
            .unwrap_or(false)
    }

    fn open_flow(&self, remote: SocketAddr) -> io::Result<flow_io::FlowSocket> {
        let std = bind_reusing_port(SocketAddr::new(self.shared.ip, self.mux.port))?;
        std.connect(remote)?;
        std.set_nonblocking(true)?;
        // Registered with the runtime polling us: the peer's own.
        flow_io::register(std)
    }
}

/// A flow's socket. On Unix it is registered for read readiness only: tokio's `UdpSocket`
/// also asks for write readiness, and every datagram sent then wakes the thread once more
/// when its buffer space comes back (an EPOLLOUT edge for nobody; 6 % of the media threads'
/// wake-ups in the strace of BENCHMARKS.md). Sends never wait (see `poll_send`).
mod flow_io {
    use std::io;
    use std::net::SocketAddr;
    use std::task::{Context, Poll};

    #[cfg(unix)]
    pub(super) type FlowSocket = tokio::io::unix::AsyncFd<std::net::UdpSocket>;
    #[cfg(not(unix))]
    pub(super) type FlowSocket = tokio::net::UdpSocket;

    pub(super) fn register(socket: std::net::UdpSocket) -> io::Result<FlowSocket> {
        // SAFETY: the AsyncFd owns the std socket, so its descriptor stays open and the same
        // for the AsyncFd's whole life (the contract of `register_with_interest`).
        #[cfg(unix)]
        return unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from);
        #[cfg(not(unix))]
        return tokio::net::UdpSocket::from_std(socket);
    }

    pub(super) fn send(socket: &FlowSocket, data: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return socket.get_ref().send(data);
        #[cfg(not(unix))]
        return socket.try_send(data);
    }

    pub(super) fn poll_recv_from(
        socket: &FlowSocket,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        #[cfg(unix)]
        loop {
            let mut ready = match socket.poll_read_ready(cx) {
                Poll::Ready(Ok(ready)) => ready,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            // `Err` = it would block: readiness is cleared and the loop registers `cx`.
            if let Ok(result) = ready.try_io(|fd| fd.get_ref().recv_from(buf)) {
                return Poll::Ready(result);
            }
        }
        #[cfg(not(unix))]
        {
            let mut read = tokio::io::ReadBuf::new(buf);
            socket
                .poll_recv_from(cx, &mut read)
                .map_ok(|from| (read.filled().len(), from))
        }
    }
}

enum FlowRead {
    Packet(usize, SocketAddr),
    Stray(usize, SocketAddr),
    Again,
    Nothing,
}

fn recv_meta(from: SocketAddr, len: usize) -> RecvMeta {
    let mut received = RecvMeta::default();
    received.addr = from;
    received.len = len;
    received.stride = len.max(1);
    received
}

/// ICMP errors for earlier sends, which Linux reports on later calls: not the socket's end.
fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// A UDP socket bound to `addr` with SO_REUSEPORT (for the shared socket and the flows).
fn bind_reusing_port(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Linux only: flows open only there, and elsewhere the port stays exclusive.
    #[cfg(target_os = "linux")]
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Drop for MuxSocket {
    fn drop(&mut self) {
        let mut routes = self.mux.lock_routes();
        let key = (self.ufrag.clone(), self.shared.ip);
        if routes
            .by_ufrag
            .get(&key)
            .is_some_and(|(w, _)| w.as_ptr() == Arc::as_ptr(&self.inbox))
        {
            routes.by_ufrag.remove(&key);
        }
        let me = Arc::as_ptr(&self.inbox);
        routes
            .by_remote
            .retain(|_, w| w.as_ptr() != me && w.strong_count() > 0);
        routes
            .by_transaction
            .retain(|_, (w, _)| w.as_ptr() != me && w.strong_count() > 0);
    }
}

/// One peer's runtime: tokio's, except that its sockets are the mux's.
#[derive(Debug)]
pub(crate) struct MuxRuntime {
    pub(crate) mux: Arc<UdpMux>,
    /// The peer's ICE ufrag (its STUN requests to us carry it) and password (they are
    /// signed with it).
    pub(crate) ufrag: String,
    pub(crate) pwd: Arc<str>,
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let key = socket.local_addr()?;
        let shared = self.mux.shared_for(key.ip())?;
        let inbox = Arc::new(Inbox::default());
        self.mux.lock_routes().by_ufrag.insert(
            (self.ufrag.clone(), key.ip()),
            (Arc::downgrade(&inbox), self.pwd.clone()),
        );
        Ok(Arc::new(MuxSocket {
            key,
            _reservation: socket,
            shared,
            inbox,
            mux: self.mux.clone(),
            ufrag: self.ufrag.clone(),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        TokioRuntime.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.connect_tcp(remote_addr).await })
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.resolve_host(host).await })
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio+udp-mux"
    }
}

/// The SDP with every host candidate's port replaced by `port` (the reservation ports the
/// driver gathered are not where the mux listens).
pub(crate) fn rewrite_candidate_ports(sdp: &str, port: u16) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split(eol) {
        if line.is_empty() {
            continue;
        }
        out.push_str(&rewrite_candidate_line(line, port));
        out.push_str(eol);
    }
    out
}

/// One line: `a=candidate:` foundation component transport priority address port typ host...
fn rewrite_candidate_line(line: &str, port: u16) -> String {
    let Some(rest) = line.strip_prefix("a=candidate:") else {
        return line.to_owned();
    };
    let mut fields: Vec<&str> = rest.split(' ').collect();
    if fields.len() < 8
        || !fields[2].eq_ignore_ascii_case("udp")
        || fields[6] != "typ"
        || fields[7] != "host"
    {
        return line.to_owned();
    }
    let port = port.to_string();
    fields[5] = &port;
    format!("a=candidate:{}", fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: Option<&str>, extra_before: bool) -> Vec<u8> {
        let mut body = Vec::new();
        if extra_before {
            // PRIORITY (4 bytes) before USERNAME.
            body.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        }
        if let Some(u) = username {
            body.extend_from_slice(&STUN_USERNAME.to_be_bytes());
            body.extend_from_slice(&(u.len() as u16).to_be_bytes());
            body.extend_from_slice(u.as_bytes());
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    /// A STUN binding request with USERNAME (and MESSAGE-INTEGRITY under `key`, then a
    /// FINGERPRINT-like attribute after it, which the integrity does not cover).
    fn signed(username: &str, key: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut m = stun(Some(username), true);
        let mi_at = m.len();
        let len_with_mi = (mi_at - 20 + 24) as u16;
        m[2..4].copy_from_slice(&len_with_mi.to_be_bytes());
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        mac.update(&m);
        let tag = mac.finalize().into_bytes();
        m.extend_from_slice(&STUN_MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(&tag);
        m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 9, 9, 9, 9]);
        let total = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&total.to_be_bytes());
        m
    }

    #[test]
    #[allow(clippy::type_complexity)] // a test table
    fn stun_is_read_for_routing_and_everything_else_is_not() {
        let mut truncated = stun(Some("abcd:efgh"), false);
        truncated.truncate(26);
        let mut rtp = stun(Some("abcd:efgh"), false);
        rtp[0] = 0x80;
        let mut no_cookie = stun(Some("abcd:efgh"), false);
        no_cookie[4] = 0;
        let mut response = stun(None, true);
        response[0..2].copy_from_slice(&0x0101u16.to_be_bytes());
        let cases: &[(&str, Vec<u8>, Option<(bool, Option<&str>)>)] = &[
            (
                "request",
                stun(Some("abcd:efgh"), false),
                Some((true, Some("abcd"))),
            ),
            (
                "after another attribute",
                stun(Some("xyz1:q"), true),
                Some((true, Some("xyz1"))),
            ),
            (
                "odd length (padded)",
                stun(Some("abc:de"), false),
                Some((true, Some("abc"))),
            ),
            (
                "a request without username",
                stun(None, true),
                Some((true, None)),
            ),
            ("a success response", response, Some((false, None))),
            (
                "empty local part",
                stun(Some(":efgh"), false),
                Some((true, None)),
            ),
            ("truncated", truncated, None),
            ("RTP/DTLS first byte", rtp, None),
            ("no magic cookie", no_cookie, None),
            ("short", vec![0; 10], None),
        ];
        for (what, data, want) in cases {
            let got = Stun::parse(data).map(|s| (s.is_request(), s.local_ufrag_of(data)));
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn only_the_peers_password_verifies_its_requests() {
        let m = signed("abcd:efgh", b"the-peers-password");
        let parsed = Stun::parse(&m).expect("STUN");
        assert_eq!(parsed.local_ufrag_of(&m), Some("abcd"));
        assert!(parsed.integrity_verifies(&m, b"the-peers-password"));
        assert!(!parsed.integrity_verifies(&m, b"another-password"));
        let mut tampered = m.clone();
        tampered[21] ^= 1;
        let t = Stun::parse(&tampered).unwrap();
        assert!(!t.integrity_verifies(&tampered, b"the-peers-password"));
        let unsigned = stun(Some("abcd:efgh"), false);
        let u = Stun::parse(&unsigned).unwrap();
        assert!(!u.integrity_verifies(&unsigned, b"the-peers-password"));
    }

    /// A mux on 127.0.0.1 with peers A (ufrag "aaaa") and B ("bbbb") registered.
    fn two_peers() -> (Arc<UdpMux>, IpAddr, Arc<Inbox>, Arc<Inbox>) {
        let mux = UdpMux::new(5000);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        for (ufrag, inbox, pwd) in [
            ("aaaa", &a, "password-of-a-1234"),
            ("bbbb", &b, "password-of-b-1234"),
        ] {
            mux.lock_routes()
                .by_ufrag
                .insert((ufrag.into(), ip), (Arc::downgrade(inbox), pwd.into()));
        }
        (mux, ip, a, b)
    }

    #[test]
    fn only_a_verified_request_claims_an_address_and_responses_find_their_sender() {
        let (mux, ip, a, b) = two_peers();
        let victim: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let is =
            |got: Option<Arc<Inbox>>, want: &Arc<Inbox>| got.is_some_and(|g| Arc::ptr_eq(&g, want));
        // B sends a check to the victim's address (a hostile offer listed it): no claim.
        let check = stun(Some("remote:bbbb"), false);
        mux.sent(&check, &b);
        assert!(mux.route(ip, victim, b"\x17dtls").is_none());
        // An unsigned request with B's ufrag reaches B but claims nothing.
        assert!(is(mux.route(ip, victim, &stun(Some("bbbb:x"), false)), &b));
        assert!(mux.route(ip, victim, b"\x17dtls").is_none());
        // A request signed with A's password claims the address for A.
        assert!(is(
            mux.route(ip, victim, &signed("aaaa:x", b"password-of-a-1234")),
            &a
        ));
        assert!(is(mux.route(ip, victim, b"\x17dtls"), &a));
        // Signed with the wrong password: still A's.
        assert!(is(
            mux.route(ip, victim, &signed("bbbb:x", b"password-of-a-1234")),
            &b
        ));
        assert!(is(mux.route(ip, victim, b"\x17dtls"), &a));
        // The response to B's check goes to B (by transaction id), once.
        let mut response = check.clone();
        response[0..2].copy_from_slice(&0x0101u16.to_be_bytes());
        assert!(is(mux.route(ip, victim, &response), &b));
        assert!(is(mux.route(ip, victim, &response), &a), "then by address");
        // The newest verified claim wins (a client reconnecting from the same mapping).
        assert!(is(
            mux.route(ip, victim, &signed("bbbb:y", b"password-of-b-1234")),
            &b
        ));
        assert!(is(mux.route(ip, victim, b"\x17dtls"), &b));
    }

    /// What a peer's flow is set to (`None`, a wanted address, or open).
    fn flow_of(inbox: &Inbox) -> Option<SocketAddr> {
        match &*inbox.lock_flow() {
            Flow::Wanted(to) => Some(*to),
            Flow::Open { remote, .. } => Some(*remote),
            Flow::None | Flow::Failed => None,
        }
    }

    #[test]
    fn media_from_an_owned_address_wants_a_flow_and_a_moved_claim_closes_it() {
        let (mux, ip, a, b) = two_peers();
        let (one, two): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:40001".parse().unwrap(),
        );
        // STUN alone opens nothing (a candidate pair that is only checked, never used).
        mux.route(ip, one, &signed("aaaa:x", b"password-of-a-1234"));
        assert_eq!(flow_of(&a), None);
        // Media from an address A owns: A wants a flow to it.
        mux.route(ip, one, b"\x17dtls");
        assert_eq!(flow_of(&a), Some(one));
        // Media from an address nobody owns: nothing.
        assert!(mux.route(ip, two, b"\x17dtls").is_none());
        assert_eq!((flow_of(&a), flow_of(&b)), (Some(one), None));
        // A verified claim by B takes the address: A's flow to it closes, B's opens on media.
        mux.route(ip, one, &signed("bbbb:y", b"password-of-b-1234"));
        assert_eq!(flow_of(&a), None);
        mux.route(ip, one, b"\x17dtls");
        assert_eq!(flow_of(&b), Some(one));
        // A's claim of another address leaves B's flow alone.
        mux.route(ip, two, &signed("aaaa:z", b"password-of-a-1234"));
        assert_eq!(flow_of(&b), Some(one));
        mux.route(ip, two, b"\x17dtls");
        assert_eq!((flow_of(&a), flow_of(&b)), (Some(two), Some(one)));
    }

    /// The next datagram `socket` hands its driver (or `None` within 2 s).
    async fn next(socket: &Arc<dyn AsyncUdpSocket>) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut meta = [RecvMeta::default()];
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            futures::future::poll_fn(|cx| {
                socket.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)
            }),
        )
        .await;
        matches!(got, Ok(Ok(1))).then(|| (buf[..meta[0].len].to_vec(), meta[0].addr))
    }

    /// The flows with real sockets: a client's media moves onto the flow of the peer it
    /// verified with, and a verified check for another peer that arrives on that flow (a
    /// client reconnecting from the same address) still moves the address.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_client_gets_a_flow_and_a_new_claim_through_it_moves_the_address() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let port = std::net::UdpSocket::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mux = UdpMux::new(port);
        mux.bind(ip).unwrap();
        let peer = |ufrag: &str, pwd: &str| {
            MuxRuntime {
                mux: mux.clone(),
                ufrag: ufrag.into(),
                pwd: pwd.into(),
            }
            .wrap_udp_socket(std::net::UdpSocket::bind((ip, 0)).unwrap())
            .unwrap()
        };
        let (a, b) = (
            peer("aaaa", "password-of-a-1234"),
            peer("bbbb", "password-of-b-1234"),
        );
        let client = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let (server, me) = (SocketAddr::new(ip, port), client.local_addr().unwrap());
        let send = |data: &[u8]| {
            client.send_to(data, server).unwrap();
        };

        send(&signed("aaaa:c", b"password-of-a-1234"));
        assert_eq!(next(&a).await.map(|(_, from)| from), Some(me));
        send(b"\x17media-1");
        assert_eq!(next(&a).await, Some((b"\x17media-1".to_vec(), me)));
        // That opened A's flow; what follows comes on it.
        assert_eq!(mux.flows(), 1);
        send(b"\x17media-2");
        assert_eq!(next(&a).await, Some((b"\x17media-2".to_vec(), me)));

        // The same address verifies with B: the check reaches B, though the kernel gave it
        // to A's flow, and A's flow closes.
        send(&signed("bbbb:c", b"password-of-b-1234"));
        assert_eq!(next(&a).await, None, "A must not take B's check");
        assert_eq!(next(&b).await.map(|(_, from)| from), Some(me));
        send(b"\x17media-3");
        assert_eq!(next(&b).await, Some((b"\x17media-3".to_vec(), me)));
        assert_eq!(next(&a).await, None);
        assert_eq!(mux.flows(), 1, "B's flow now, A's is closed");
    }

    #[test]
    fn host_candidates_name_the_mux_port() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 51234 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 203.0.113.7 51234 typ srflx raddr 0.0.0.0 rport 0\r\n\
                   a=candidate:3 1 tcp 2130706431 127.0.0.1 9 typ host tcptype active\r\n\
                   a=end-of-candidates\r\n";
        let out = rewrite_candidate_ports(sdp, 5000);
        assert!(out.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"));
        assert!(out.contains(" 203.0.113.7 51234 typ srflx"), "{out}");
        assert!(out.contains(" 127.0.0.1 9 typ host tcptype"), "{out}");
        assert!(out.ends_with("a=end-of-candidates\r\n"));
    }
}
