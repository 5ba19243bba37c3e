//! The machinery shared by the server's peers and the in-process client: building a
//! `webrtc` peer connection for one negotiated [`Plan`], the event handler and RTCP tap that
//! forward library events into the session's channel, raw RTP sending, and teardown.
//!
//! Rule of the module: library callbacks (the [`Handler`], the remote-track polling tasks, the
//! [`RtcpTap`] interceptor) only translate and forward into the session's `mpsc` channel. No
//! decisions are taken there and no state is shared with the session except two atomics.
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use ::rtc::media_stream::MediaStreamTrack;
use ::rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use ::rtc::peer_connection::configuration::media_engine::MediaEngine;
use ::rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use ::rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use ::rtc::rtcp::sender_report::SenderReport;
use ::rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use ::rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use ::rtc::sansio::Protocol;
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

use super::sdp::{CodecChoice, Plan};
use super::{PeerEvent, PeerState, RtcError};

/// Capacity of the session's event channel. RTP dominates: ~250 packets/s for a 2 Mbit/s
/// camera + Opus, so this is several seconds of slack before the forwarding task waits (and
/// the library's own 256-packet track queue then starts dropping, its documented policy).
pub const EVENT_CHANNEL_CAPACITY: usize = 2048;
/// Position of [`RtcpTap`] in the interceptor chain: application-most, after every library
/// interceptor (the highest built-in slot is 13 000) has seen the RTCP.
const RTCP_TAP_SLOT: usize = 20_000;
/// Position of [`NackTap`]: wire-most (below the congestion controller at 1 000), where every
/// RTCP packet a library generator made passes on its way out.
const NACK_TAP_SLOT: usize = 500;
/// Non-trickle signaling: how long we wait for candidate gathering before answering with the
/// candidates we have. Host candidates are immediate; this only bounds slow STUN/TURN servers.
const GATHER_TIMEOUT: Duration = Duration::from_secs(3);

/// Live-object counters, for metrics and for the leak test.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Peer connections whose library state (`PeerConnectionRef`, driver, sockets) still exists:
    /// counted by the handler, which the library owns and drops last.
    pub peers: AtomicUsize,
    /// Remote-track forwarding tasks still running.
    pub tasks: AtomicUsize,
    /// NACKs the library's generator sent to recorders (seen by [`NackTap`] on the wire).
    pub nacks_sent: AtomicUsize,
}

pub(crate) struct Counted(Arc<Counters>, fn(&Counters) -> &AtomicUsize);

impl Counted {
    pub(crate) fn new(counters: &Arc<Counters>, field: fn(&Counters) -> &AtomicUsize) -> Self {
        field(counters).fetch_add(1, Ordering::SeqCst);
        Counted(counters.clone(), field)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::SeqCst);
    }
}

/// Validated network settings shared by every peer of one [`super::Rtc`] (or one client).
#[derive(Debug)]
pub(crate) struct Net {
    /// IPs to gather host candidates on; empty = every interface plus loopback.
    pub ice_ips: Vec<IpAddr>,
    pub public_ips: Vec<IpAddr>,
    pub ice_servers: Vec<RTCIceServer>,
    /// `--udp-port N`: every peer's media on port N (`super::mux`), on these IPs (the ICE
    /// IPs, or loopback and every interface's IPv4 address when none are given: resolved
    /// once, so that the mux's sockets are all bound at start).
    pub mux: Option<Arc<super::mux::UdpMux>>,
    mux_ips: Vec<IpAddr>,
    pub counters: Arc<Counters>,
}

impl Net {
    pub(crate) fn new(
        ice_ips: Vec<IpAddr>,
        public_ips: Vec<IpAddr>,
        udp_port: u16,
        ice_servers: &[String],
    ) -> Result<Net, RtcError> {
        for ip in ice_ips.iter().chain(public_ips.iter()) {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(RtcError::Settings(format!(
                    "{ip} cannot be used as an ICE address"
                )));
            }
        }
        let ice_servers = ice_servers
            .iter()
            .map(|s| parse_ice_server(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mux_ips = if udp_port == 0 {
            Vec::new()
        } else if ice_ips.is_empty() {
            local_ips()
        } else {
            ice_ips.clone()
        };
        Ok(Net {
            ice_ips,
            public_ips,
            ice_servers,
            mux: (udp_port != 0).then(|| super::mux::UdpMux::new(udp_port)),
            mux_ips,
            counters: Arc::default(),
        })
    }

    /// The addresses one peer binds (ephemeral ports: with the mux they are only
    /// reservations that key the peer's sockets, see `super::mux`).
    fn bind_addrs(&self) -> Vec<SocketAddr> {
        if self.mux.is_some() {
            return self
                .mux_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
        }
        let ips: Vec<IpAddr> = if self.ice_ips.is_empty() {
            // The library expands 0.0.0.0 to every interface but skips loopback; add it so
            // same-host browsers and tests can connect.
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ]
        } else {
            self.ice_ips.clone()
        };
        ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect()
    }

    /// The IPs a peer on our own loop (`super::direct`) binds one socket on: the mux's, or
    /// the ICE IPs, or loopback and every interface's IPv4 address.
    pub(crate) fn peer_ips(&self) -> Vec<IpAddr> {
        if self.mux.is_some() {
            self.mux_ips.clone()
        } else if self.ice_ips.is_empty() {
            local_ips()
        } else {
            self.ice_ips.clone()
        }
    }

    /// With `--udp-port`: binds the shared port on every IP peers gather on, now, so that a
    /// port in use is an error at start.
    pub(crate) fn bind_mux(&self) -> Result<(), RtcError> {
        let Some(mux) = &self.mux else {
            return Ok(());
        };
        for ip in self.mux_ips.iter().copied() {
            mux.bind(ip).map_err(|e| {
                RtcError::Settings(format!(
                    "cannot listen on UDP {}: {e}",
                    SocketAddr::new(ip, mux.port())
                ))
            })?;
        }
        Ok(())
    }
}

/// Loopback and the IPv4 address of every interface that has one, as the library's
/// wildcard expansion picks them (no link-local): the mux binds each explicitly, since a
/// wildcard socket would answer from whichever source address the kernel picks.
fn local_ips() -> Vec<IpAddr> {
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    match ::rtc::shared::ifaces::ifaces() {
        Ok(interfaces) => {
            for ip in interfaces.iter().filter_map(|i| i.addr.map(|a| a.ip())) {
                let usable = match ip {
                    IpAddr::V4(v4) => {
                        !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local()
                    }
                    IpAddr::V6(_) => false,
                };
                if usable && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the interfaces; the UDP mux listens on loopback only")
        }
    }
    ips
}

/// `stun:host:port`, `turn:host:port?transport=udp`, with optional TURN credentials written as
/// `turn:user:password@host:port`.
fn parse_ice_server(url: &str) -> Result<RTCIceServer, RtcError> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| RtcError::Settings(format!("ICE server URL {url:?} has no scheme")))?;
    if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
        return Err(RtcError::Settings(format!(
            "ICE server URL {url:?} must start with stun:, stuns:, turn: or turns:"
        )));
    }
    if rest.is_empty() {
        return Err(RtcError::Settings(format!(
            "ICE server URL {url:?} has no host"
        )));
    }
    let (username, credential, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (u.to_owned(), p.to_owned(), host)
        }
        None => (String::new(), String::new(), rest),
    };
    Ok(RTCIceServer {
        urls: vec![format!("{scheme}:{host}")],
        username,
        credential,
    })
}

pub(crate) fn to_library_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

pub(crate) fn from_library_kind(kind: RtpCodecKind) -> Option<MediaKind> {
    match kind {
        RtpCodecKind::Audio => Some(MediaKind::Audio),
        RtpCodecKind::Video => Some(MediaKind::Video),
        _ => None,
    }
}

fn kind_of_mime(mime: &str) -> Option<MediaKind> {
    let lower = mime.to_ascii_lowercase();
    if lower.starts_with("audio/") {
        Some(MediaKind::Audio)
    } else if lower.starts_with("video/") {
        Some(MediaKind::Video)
    } else {
        None
    }
}

pub(crate) fn library_codec(choice: &CodecChoice) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: choice.codec.mime_type().to_owned(),
        clock_rate: choice.clock_rate,
        channels: choice.channels,
        sdp_fmtp_line: choice.fmtp.clone(),
        rtcp_feedback: vec![],
    }
}

/// Per-peer codec registration. The codecs are registered with the payload types the offer
/// used (or, for our own offers, the ones we chose), so whichever path the library takes when
/// matching — it copies the remote's payload types into the negotiated set — the answer and
/// the packets use the offer's numbers. RTX, RED and FEC are not registered: NACKed packets are
/// then resent on the original SSRC and payload type, which is what the depacketizer expects.
pub(crate) fn media_engine(plan: &Plan) -> Result<(MediaEngine, Registry), RtcError> {
    let mut engine = MediaEngine::default();
    for (choice, kind) in plan
        .audio
        .iter()
        .map(|c| (c, RtpCodecKind::Audio))
        .chain(plan.video.iter().map(|c| (c, RtpCodecKind::Video)))
    {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: library_codec(choice),
                    payload_type: choice.pt,
                },
                kind,
            )
            .map_err(lib)?;
    }
    // `nack`, `nack pli`, `transport-cc` (receive side) and the mid/rid header extensions,
    // with the NACK responder/generator, TWCC receiver and SR/RR interceptors. `register_feedback`
    // applies to the codecs registered above, which is why they come first. `goog-remb` is not
    // advertised: the library has no REMB generator.
    let registry = register_default_interceptors(Registry::new(), &mut engine).map_err(lib)?;
    engine.register_feedback(
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RtpCodecKind::Video,
    );
    Ok((engine, registry))
}

pub(crate) fn lib(e: impl std::fmt::Display) -> RtcError {
    RtcError::Library(e.to_string())
}

/// Sends an event without ever blocking the library's driver: if the session's channel is
/// full, a short-lived task delivers it (state changes must not be lost).
fn forward(events: &mpsc::Sender<PeerEvent>, event: PeerEvent) {
    match events.try_send(event) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(event)) => {
            let events = events.clone();
            tokio::spawn(async move {
                let _ = events.send(event).await;
            });
        }
    }
}

pub(crate) fn peer_state(state: RTCPeerConnectionState) -> Option<PeerState> {
    Some(match state {
        RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting => PeerState::Connecting,
        RTCPeerConnectionState::Connected => PeerState::Connected,
        RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
        RTCPeerConnectionState::Failed => PeerState::Failed,
        RTCPeerConnectionState::Closed => PeerState::Closed,
        _ => return None,
    })
}

/// The library's event handler: translation and forwarding only.
///
/// The library owns it (inside its `PeerConnectionRef`) and drops it only when the whole
/// connection state is freed, which makes it the right owner of the live-peer counter.
struct Handler {
    events: mpsc::Sender<PeerEvent>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<PeerState>,
    pt_map: Arc<[(u8, Codec)]>,
    counters: Arc<Counters>,
    /// Last SSRC seen on the remote video track (0 = none yet), for `request_keyframe`.
    remote_video_ssrc: Arc<AtomicU32>,
    _live: Counted,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if let Some(state) = peer_state(state) {
            self.state.send_replace(state);
            forward(&self.events, PeerEvent::State(state));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let guard = Counted::new(&self.counters, |c| &c.tasks);
        let events = self.events.clone();
        let pt_map = self.pt_map.clone();
        let video_ssrc = self.remote_video_ssrc.clone();
        tokio::spawn(async move {
            forward_track(track, events, pt_map, video_ssrc).await;
            drop(guard);
        });
    }
}

/// Polls one remote track until it ends (the library ends every track stream on `close()`)
/// or the session drops its receiver. Emits `Track` when a new SSRC/codec appears, then every
/// RTP packet. The arrival instant is taken here: 0.21's driver drops the socket timestamp the
/// core reports, so this is the earliest point the application can observe.
async fn forward_track(
    track: Arc<dyn TrackRemote>,
    events: mpsc::Sender<PeerEvent>,
    pt_map: Arc<[(u8, Codec)]>,
    video_ssrc: Arc<AtomicU32>,
) {
    let Some(kind) = from_library_kind(track.kind().await) else {
        return;
    };
    let mut announced: Option<(u32, Codec)> = None;
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        let arrival = Instant::now();
        let ssrc = packet.header.ssrc;
        if let Some(&(_, codec)) = pt_map
            .iter()
            .find(|(pt, _)| *pt == packet.header.payload_type)
            && announced != Some((ssrc, codec))
        {
            announced = Some((ssrc, codec));
            if kind == MediaKind::Video {
                video_ssrc.store(ssrc, Ordering::Relaxed);
            }
            if events
                .send(PeerEvent::Track { kind, codec, ssrc })
                .await
                .is_err()
            {
                break;
            }
        }
        let packet = RtpPacket {
            payload_type: packet.header.payload_type,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc,
            marker: packet.header.marker,
            payload: packet.payload,
        };
        if events
            .send(PeerEvent::Rtp {
                kind,
                packet,
                arrival,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Application-most interceptor: turns inbound sender reports into `SenderReport` events and
/// PLI/FIR about our video into `KeyframeRequested`, and passes every packet on unchanged.
/// Sans-IO and synchronous, so it uses `try_send`; a full channel drops the event (an SR or a
/// keyframe request is repeated by the remote anyway).
struct RtcpTap {
    events: mpsc::Sender<PeerEvent>,
    remote: HashMap<u32, MediaKind>,
    local: HashMap<u32, MediaKind>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RtcpTap {
    fn new(events: mpsc::Sender<PeerEvent>) -> Self {
        RtcpTap {
            events,
            remote: HashMap::new(),
            local: HashMap::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn is_our_video(&self, media_ssrc: u32) -> bool {
        // Unknown SSRCs count as video: a keyframe request is only ever about video.
        self.local.get(&media_ssrc) != Some(&MediaKind::Audio)
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = ::rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let mut keyframe = false;
            for packet in packets {
                let any = packet.as_any();
                if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    if let Some(&kind) = self.remote.get(&sr.ssrc) {
                        let _ = self.events.try_send(PeerEvent::SenderReport {
                            kind,
                            ntp: sr.ntp_time,
                            rtp: sr.rtp_time,
                        });
                    }
                } else if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    keyframe |= self.is_our_video(pli.media_ssrc);
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    keyframe |= fir.fir.iter().any(|e| self.is_our_video(e.ssrc))
                        || (fir.fir.is_empty() && self.is_our_video(fir.media_ssrc));
                }
            }
            if keyframe {
                let _ = self.events.try_send(PeerEvent::KeyframeRequested);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

/// Wire-most interceptor that counts the NACKs leaving (the library's NACK generator makes
/// them below [`RtcpTap`], which only sees what the application writes). Passes everything on.
struct NackTap {
    counters: Arc<Counters>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = ::rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let nacks = packets
                .iter()
                .filter(|p| p.as_any().downcast_ref::<TransportLayerNack>().is_some())
                .count();
            if nacks > 0 {
                self.counters.nacks_sent.fetch_add(nacks, Ordering::Relaxed);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for NackTap {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if let Some(kind) = kind_of_mime(&info.mime_type) {
            self.local.insert(info.ssrc, kind);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(kind) = kind_of_mime(&info.mime_type) {
            self.remote.insert(info.ssrc, kind);
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.remote.remove(&info.ssrc);
    }
}

/// One peer connection and what the session needs to drive it.
pub(crate) struct Core {
    pub pc: Arc<dyn PeerConnection>,
    closed: AtomicBool,
    gathered: watch::Receiver<bool>,
    pub state: watch::Receiver<PeerState>,
    remote_video_ssrc: Arc<AtomicU32>,
}

/// Delay between ICE connectivity checks (the library's default is 200 ms).
const ICE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);
/// Checks per candidate pair: 70 × 20 ms keeps the library's 1.4 s budget.
const ICE_MAX_BINDING_REQUESTS: u16 = 70;

/// The DTLS role a peer takes when it answers.
///
/// The DTLS server finishes its handshake half a round trip before the client. The side that
/// *receives* media should finish first, or the sender's first packets (the keyframe) arrive
/// before the receiver has SRTP keys and are dropped. So a recorder answers as DTLS server and
/// a viewer as DTLS client. (Offerers in tests use `Client`; the role only applies to answers.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DtlsAnswerRole {
    Server,
    Client,
}

/// The RTCP taps ([`RtcpTap`], [`NackTap`]) added to a peer's interceptors.
pub(crate) fn with_taps(
    registry: Registry,
    events: &mpsc::Sender<PeerEvent>,
    net: &Net,
) -> Registry {
    registry
        .with(Slot::Custom(RTCP_TAP_SLOT), RtcpTap::new(events.clone()))
        .with(
            Slot::Custom(NACK_TAP_SLOT),
            NackTap {
                counters: net.counters.clone(),
                read: VecDeque::new(),
                write: VecDeque::new(),
            },
        )
}

/// A peer's settings: ICE credentials of our choosing (the mux routes by them), no mDNS (the
/// gatherer would bind a multicast socket per peer; the server's candidates are real
/// addresses, so the browser's checks arrive and become peer-reflexive candidates), fast
/// connectivity checks and the DTLS role of an answer.
pub(crate) fn setting_engine(
    role: DtlsAnswerRole,
    credentials: Option<(&str, &str)>,
) -> ::rtc::peer_connection::configuration::setting_engine::SettingEngine {
    let mut settings = SettingEngineBuilder::new();
    if let Some((ufrag, pwd)) = credentials {
        settings = settings.with_ice_credentials(ufrag.to_owned(), pwd.to_owned());
    }
    settings
        .with_multicast_dns_mode(::rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Connectivity checks every 20 ms instead of 200 ms (same 1.4 s budget): the
        // default makes every connection take ~200 ms, which is most of the time from PLAY
        // to first frame.
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_BINDING_REQUESTS))
        .with_answering_dtls_role(match role {
            DtlsAnswerRole::Server => ::rtc::peer_connection::transport::RTCDtlsRole::Server,
            DtlsAnswerRole::Client => ::rtc::peer_connection::transport::RTCDtlsRole::Client,
        })
        .build()
}

impl Core {
    /// Builds the connection (binding its sockets and starting its driver task).
    pub(crate) async fn build(
        net: &Net,
        plan: &Plan,
        role: DtlsAnswerRole,
    ) -> Result<(Core, mpsc::Receiver<PeerEvent>), RtcError> {
        let (events, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (engine, registry) = media_engine(plan)?;
        let registry = with_taps(registry, &events, net);
        let addrs = net.bind_addrs();
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(PeerState::Connecting);
        let remote_video_ssrc = Arc::new(AtomicU32::new(0));
        let handler = Handler {
            events,
            gathered: gathered_tx,
            state: state_tx,
            pt_map: plan.pt_map().into(),
            counters: net.counters.clone(),
            remote_video_ssrc: remote_video_ssrc.clone(),
            _live: Counted::new(&net.counters, |c| &c.peers),
        };
        // With the UDP mux the peer's ICE credentials are ours to choose: the mux routes
        // STUN by the ufrag (`super::mux`).
        let random = |n| {
            crate::random::hex(n)
                .map_err(|e| RtcError::Library(format!("no randomness for ICE credentials: {e}")))
        };
        let (ufrag, pwd) = (random(8)?, random(16)?);
        let settings = setting_engine(
            role,
            net.mux.is_some().then_some((ufrag.as_str(), pwd.as_str())),
        );
        // STUN/TURN servers are not used with the mux: every peer would reach them from the
        // same address and port, and their answers could not be told apart.
        let ice_servers = match net.mux {
            Some(_) => Vec::new(),
            None => net.ice_servers.clone(),
        };
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .build();
        let mut builder = PeerConnectionBuilder::new();
        if let Some(mux) = &net.mux {
            builder = builder.with_runtime(Arc::new(super::mux::MuxRuntime {
                mux: mux.clone(),
                ufrag,
                pwd: pwd.into(),
            }));
        }
        let pc = builder
            .with_configuration(config)
            .with_setting_engine(settings)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(addrs)
            .build()
            .await
            .map_err(|e| RtcError::Library(format!("could not create the connection: {e}")))?;
        Ok((
            Core {
                pc: Arc::new(pc),
                closed: AtomicBool::new(false),
                gathered,
                state,
                remote_video_ssrc,
            },
            rx,
        ))
    }

    /// The local description once candidate gathering completed (non-trickle signaling).
    pub(crate) async fn gathered_local_sdp(&self) -> Result<String, RtcError> {
        let mut gathered = self.gathered.clone();
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done)).await;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| RtcError::Library("no local description".into()))
    }

    /// Sends a PLI for the remote video SSRC (a no-op until video has arrived).
    pub(crate) async fn request_keyframe(&self) {
        let ssrc = self.remote_video_ssrc.load(Ordering::Relaxed);
        if ssrc == 0 || self.is_closed() {
            return;
        }
        for receiver in self.pc.get_receivers().await {
            let track = receiver.track();
            if track.kind().await == RtpCodecKind::Video {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                    tracing::debug!(error = %e, "PLI not sent");
                }
                return;
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Closes the connection: stops the driver (sockets closed), ends every track stream so the
    /// forwarding tasks return, and lets the library free its state. Idempotent.
    pub(crate) async fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst)
            && let Err(e) = self.pc.close().await
        {
            tracing::debug!(error = %e, "closing the peer connection");
        }
    }
}

impl Drop for Core {
    /// A `PeerConnection` dropped without `close()` leaves its driver task running forever on
    /// the tokio runtime (only dedicated-reactor drivers stop on drop in 0.21), holding the
    /// sockets and the whole connection state. So a peer handle dropped without `close()` is
    /// closed here, on the runtime.
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::SeqCst)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let pc = self.pc.clone();
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// The sending half: local tracks we write already-built RTP packets to.
pub(crate) struct Outgoing {
    pub audio: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    pub video: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    /// Negotiated (codec, payload type) pairs.
    pub payload_types: Vec<(Codec, u8)>,
}

/// A pass-through RTP track carrying `ssrc`. The coding names one codec (the preferred one)
/// so the interceptors (NACK responder, sender reports) bind to this SSRC; the codecs the
/// sender may use are the transceiver's negotiated list, so other negotiated payload types on
/// the same track are accepted too.
pub(crate) fn local_track(
    stream_id: &str,
    kind: MediaKind,
    choice: &CodecChoice,
    ssrc: u32,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(media_track(
        stream_id, kind, choice, ssrc,
    )))
}

/// The track [`local_track`] wraps (what a peer on our own loop adds to its core directly).
pub(crate) fn media_track(
    stream_id: &str,
    kind: MediaKind,
    choice: &CodecChoice,
    ssrc: u32,
) -> MediaStreamTrack {
    let name = match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    MediaStreamTrack::new(
        stream_id.to_owned(),
        format!("{stream_id}-{name}"),
        name.to_owned(),
        to_library_kind(kind),
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: library_codec(choice),
            ..Default::default()
        }],
    )
}

impl Outgoing {
    pub(crate) fn ssrc(&self, kind: MediaKind) -> u32 {
        match kind {
            MediaKind::Audio => self.audio.as_ref(),
            MediaKind::Video => self.video.as_ref(),
        }
        .map(|(_, ssrc)| *ssrc)
        .unwrap_or(0)
    }

    /// Writes one RTP packet as is. The library does not rewrite anything in the header: its
    /// sender *drops* (with only a log line) a packet whose SSRC is not the track's or whose
    /// payload type is not negotiated on that sender, so both are checked here and reported.
    pub(crate) async fn send(
        &self,
        core: &Core,
        kind: MediaKind,
        packet: &RtpPacket,
    ) -> Result<(), RtcError> {
        if core.is_closed() {
            return Err(RtcError::Closed);
        }
        let (track, ssrc) = match kind {
            MediaKind::Audio => self.audio.as_ref(),
            MediaKind::Video => self.video.as_ref(),
        }
        .ok_or(RtcError::NoTrack(kind_name(kind)))?;
        check_send(&self.payload_types, *ssrc, kind, packet)?;
        track.write_rtp(library_packet(packet)).await.map_err(|e| {
            if core.is_closed() {
                RtcError::Closed
            } else {
                lib(e)
            }
        })
    }
}

/// What the library would silently drop: a payload type not negotiated for `kind`, or an
/// SSRC that is not the track's.
pub(crate) fn check_send(
    payload_types: &[(Codec, u8)],
    ssrc: u32,
    kind: MediaKind,
    packet: &RtpPacket,
) -> Result<(), RtcError> {
    let negotiated = payload_types
        .iter()
        .any(|(codec, pt)| *pt == packet.payload_type && codec.kind() == kind);
    if !negotiated {
        return Err(RtcError::PayloadTypeNotNegotiated {
            pt: packet.payload_type,
            kind: kind_name(kind),
        });
    }
    if packet.ssrc != ssrc {
        return Err(RtcError::WrongSsrc {
            kind: kind_name(kind),
            got: packet.ssrc,
            want: ssrc,
        });
    }
    Ok(())
}

/// Our packet as the library's, header as is.
pub(crate) fn library_packet(packet: &RtpPacket) -> ::rtc::rtp::Packet {
    ::rtc::rtp::Packet {
        header: ::rtc::rtp::header::Header {
            version: 2,
            marker: packet.marker,
            payload_type: packet.payload_type,
            sequence_number: packet.sequence_number,
            timestamp: packet.timestamp,
            ssrc: packet.ssrc,
            ..Default::default()
        },
        payload: packet.payload.clone(),
    }
}

pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
