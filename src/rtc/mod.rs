//! WebRTC for the server: the one module that imports `webrtc` / `rtc` (webrtc-rs 0.21).
//!
//! Everything else sees plain types. A session calls [`Rtc::accept_recorder`] or
//! [`Rtc::accept_viewer`] with the browser's offer and gets back a peer handle, the answer to
//! send, and a channel of [`PeerEvent`]s that only that session owns.
//!
//! Two loops can drive a server peer ([`PeerLoop`]): ours (`direct`, the default), one task
//! per peer over the library's sans-IO core that reads the sockets and hands RTP straight to
//! the session's channel; or the `webrtc` crate's driver (`peer`), whose callbacks (the
//! connection event handler, the remote-track polling tasks) only translate and forward into
//! that channel. Both share the codec registration, the RTCP interceptor taps, the settings
//! and the UDP mux. The in-process test client (`client`) always uses the library's driver,
//! so the tests connect the two implementations to each other.
//!
//! Negotiation:
//! - Payload types are never assumed: each peer registers its codecs with the payload types the
//!   offer used, so the answer mirrors the offer (VP8 at 120 is answered as 120).
//! - Recorder: recvonly Opus (48000/2, `minptime=10;useinbandfec=1`) + the server's video
//!   codec. H264 is accepted in packetization-mode 1 with a (constrained) baseline profile;
//!   `42e01f`-style constrained baseline is preferred and the answer repeats the offer's fmtp
//!   (`profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1` for browsers
//!   that offer it — iOS Safari needs exactly that).
//! - Viewer: sendonly audio + video; H264 and VP8 are both negotiated on the one video m-line
//!   when offered, so the payload type may switch at clip boundaries.
//! - RTCP feedback: `nack`, `nack pli`, `ccm fir`, `transport-cc` (receive side). NACK
//!   responder/generator, sender/receiver reports and TWCC feedback come from the library's
//!   default interceptors. No RTX/RED/FEC: retransmissions use the original SSRC and PT.
//!
//! Sending raw RTP ([`ViewerPeer::send`]): packets go through the library's pass-through
//! track (`TrackLocalStaticRTP`), so sequence numbers, timestamps, SSRC, payload type and
//! marker are exactly ours. The library rewrites nothing in the header; its interceptors may
//! *add* header extensions (TWCC sequence numbers if negotiated for sending). It silently drops
//! packets whose SSRC is not the track's ([`ViewerPeer::ssrc`]) or whose payload type is not
//! negotiated, so `send` checks both and returns an error instead.
//!
//! Teardown (library loop; ours sends the DTLS close alert and drops its sockets when its
//! task ends): `close()` stops the connection's driver task (sockets closed), ends every track
//! stream (the forwarding tasks return) and the library frees its state; the event channel
//! then reports `None` once the handle is dropped. webrtc#906 (a transceiver reference cycle)
//! is fixed in 0.21.1 (weak back-references); what remains is that a `PeerConnection`
//! dropped without `close()` keeps its driver task running, so our handles close on drop.
//! [`Rtc::stats`] counts live connections and forwarding tasks.
pub mod client;
mod direct;
mod mux;
mod peer;
pub(crate) mod sdp;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use app::protocol::{SdpKind, SessionDescription};
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::mpsc;
use webrtc::peer_connection::RTCSessionDescription;

use direct::{DirectPeer, WeakDirect};
use peer::{Core, Net, Outgoing, lib};

pub use peer::EVENT_CHANNEL_CAPACITY;

/// Network settings, filled from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtcSettings {
    /// Local IPs to gather host candidates on. Empty = every interface, including loopback
    /// (127.0.0.1) so same-host browsers and tests work.
    pub ice_ips: Vec<IpAddr>,
    /// NAT 1:1: public IPs advertised in addition to each host candidate (same port).
    pub public_ips: Vec<IpAddr>,
    /// 0 = an ephemeral UDP port per peer. Otherwise the one UDP port every peer's media
    /// uses (`mux`: ICE demultiplexed by the STUN ufrag, then by remote address); STUN and
    /// TURN servers are then not used by the server's peers.
    pub udp_port: u16,
    /// STUN/TURN URLs (`stun:host:port`, `turn:user:password@host:port?transport=udp`).
    pub ice_servers: Vec<String>,
    /// What drives the server's peers.
    pub peer_loop: PeerLoop,
}

/// What drives a server peer's connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerLoop {
    /// Our own loop over the library's sans-IO core (`direct`): one task per peer that reads
    /// its sockets, runs the core and hands RTP to the session. Host candidates only: with
    /// STUN/TURN servers configured and no `--udp-port`, peers use `library` instead.
    #[default]
    Own,
    /// The `webrtc` crate's driver task per peer, with its track queues.
    Library,
}

/// Why a peer could not be created or used. The `Display` text is shown to the browser's user.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("the offer's SDP could not be parsed: {0}")]
    BadSdp(String),
    #[error("expected an SDP offer, got {0}")]
    NotAnOffer(&'static str),
    #[error("the offer has no media sections")]
    NoMedia,
    #[error("the offer has no video section")]
    NoVideo,
    #[error("the offer does not support {0} video, which this server records")]
    VideoCodecNotOffered(&'static str),
    #[error("the offer supports neither H264 nor VP8 video, which this server plays")]
    NoPlayableVideo,
    #[error(
        "the offer supports neither VP8 nor H264 (packetization-mode 1, baseline profile) \
         video, which this server records"
    )]
    NoRecordableVideo,
    #[error("invalid WebRTC settings: {0}")]
    Settings(String),
    #[error("no free UDP port for a new connection in {first}-{last}")]
    NoFreePort { first: u16, last: u16 },
    #[error("the connection is closed")]
    Closed,
    #[error("the ICE candidate was refused: {0}")]
    BadCandidate(String),
    #[error("this connection has no {0} track")]
    NoTrack(&'static str),
    #[error("payload type {pt} is not negotiated for {kind} on this connection")]
    PayloadTypeNotNegotiated { pt: u8, kind: &'static str },
    #[error("the {kind} packet has SSRC {got}, but this connection sends {want}")]
    WrongSsrc {
        kind: &'static str,
        got: u32,
        want: u32,
    },
    #[error("the connection did not come up in time")]
    Timeout,
    #[error("WebRTC error: {0}")]
    Library(String),
}

/// What a peer reports to its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// Connection state changed.
    State(PeerState),
    /// Media started on a remote track (again when its SSRC or codec changes).
    Track {
        kind: MediaKind,
        codec: Codec,
        ssrc: u32,
    },
    /// One received RTP packet, as sent (padding removed), with when we received it.
    Rtp {
        kind: MediaKind,
        packet: RtpPacket,
        arrival: Instant,
    },
    /// An RTCP sender report from the remote: NTP time (64-bit fixed point) and the RTP
    /// timestamp of the same instant.
    SenderReport { kind: MediaKind, ntp: u64, rtp: u32 },
    /// The remote asked for a keyframe (PLI or FIR) on our video.
    KeyframeRequested,
}

/// Connection state as the sessions care about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// Live-object counts (for metrics and leak checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcStats {
    /// Peer connections whose library state still exists.
    pub live_peers: usize,
    /// Remote-track forwarding tasks still running.
    pub live_tasks: usize,
    /// NACKs sent to recorders so far.
    pub nacks_sent: u64,
}

/// Shared by all sessions; cheap to clone.
#[derive(Clone, Debug)]
pub struct Rtc {
    net: Arc<Net>,
    /// Peers on our own loop ([`PeerLoop::Own`] where it applies).
    direct: bool,
}

/// One ICE candidate a client trickles after its offer (WHIP/WHEP `PATCH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// The `candidate:...` attribute value.
    pub candidate: String,
    /// The media section it belongs to (`a=mid`).
    pub mid: Option<String>,
    /// The ICE username fragment it was gathered for.
    pub ufrag: Option<String>,
}

/// Adds a client's trickled candidates to its connection. It holds the connection weakly: it
/// never keeps a closed connection alive.
#[derive(Clone)]
pub struct Trickle {
    to: TrickleTo,
}

#[derive(Clone)]
enum TrickleTo {
    Library(std::sync::Weak<dyn webrtc::peer_connection::PeerConnection>),
    Direct(WeakDirect),
}

impl std::fmt::Debug for Trickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trickle")
    }
}

impl PartialEq for Trickle {
    fn eq(&self, other: &Trickle) -> bool {
        match (&self.to, &other.to) {
            (TrickleTo::Library(a), TrickleTo::Library(b)) => std::sync::Weak::ptr_eq(a, b),
            (TrickleTo::Direct(a), TrickleTo::Direct(b)) => a.ptr_eq(b),
            _ => false,
        }
    }
}

impl Trickle {
    fn of(link: &Link) -> Trickle {
        Trickle {
            to: match link {
                Link::Library(core) => TrickleTo::Library(Arc::downgrade(&core.pc)),
                Link::Direct(peer) => TrickleTo::Direct(peer.downgrade()),
            },
        }
    }

    /// Adds the candidates; an error names the first one the connection refused.
    pub async fn add(&self, candidates: &[RemoteCandidate]) -> Result<(), RtcError> {
        let pc = match &self.to {
            TrickleTo::Library(pc) => pc.upgrade().ok_or(RtcError::Closed)?,
            TrickleTo::Direct(peer) => return peer.add_candidates(candidates),
        };
        for c in candidates {
            let init = webrtc::peer_connection::RTCIceCandidateInit {
                candidate: c.candidate.clone(),
                sdp_mid: c.mid.clone(),
                username_fragment: c.ufrag.clone(),
                ..Default::default()
            };
            pc.add_ice_candidate(init)
                .await
                .map_err(|e| RtcError::BadCandidate(e.to_string()))?;
        }
        Ok(())
    }
}

/// One track of a plain-RTP stream to record: its codec, payload type and the UDP port it is
/// sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestTrack {
    pub codec: Codec,
    pub payload_type: u8,
    pub port: u16,
}

/// What an RTP ingest SDP describes: video, and Opus audio if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestPlan {
    pub video: IngestTrack,
    pub audio: Option<IngestTrack>,
}

/// Reads an RTP ingest SDP (what `ffmpeg -f rtp -sdp_file` writes, or one written by hand).
pub fn plan_ingest(sdp: &str) -> Result<IngestPlan, RtcError> {
    sdp::plan_ingest(sdp)
}

/// The video codec a sender that may choose prefers: the first of VP8 and H264 (as we record
/// it) in its offer.
pub fn preferred_video(offer: &SessionDescription) -> Result<Codec, RtcError> {
    sdp::preferred_video(&offer.sdp)
}

/// A recording browser's connection.
pub struct RecorderPeer {
    link: Link,
}

/// A viewing browser's connection.
pub struct ViewerPeer {
    link: Link,
    /// The negotiated payload types, and on the library's driver the tracks we write to (on
    /// our own loop the tracks live in the core).
    out: Outgoing,
    /// The SSRC of our audio and video: 0 = no such track.
    ssrcs: [u32; 2],
}

/// A server peer: on the library's driver or on our own loop.
enum Link {
    Library(Core),
    Direct(DirectPeer),
}

impl Link {
    async fn request_keyframe(&self) {
        match self {
            Link::Library(core) => core.request_keyframe().await,
            Link::Direct(peer) => peer.request_keyframe(),
        }
    }

    async fn close(&self) {
        match self {
            Link::Library(core) => core.close().await,
            Link::Direct(peer) => peer.close(),
        }
    }
}

fn library_offer(offer: &SessionDescription) -> Result<RTCSessionDescription, RtcError> {
    match offer.kind {
        SdpKind::Offer => {}
        SdpKind::Answer => return Err(RtcError::NotAnOffer("an answer")),
        SdpKind::Pranswer => return Err(RtcError::NotAnOffer("a provisional answer")),
        SdpKind::Rollback => return Err(RtcError::NotAnOffer("a rollback")),
    }
    RTCSessionDescription::offer(offer.sdp.clone()).map_err(|e| RtcError::BadSdp(e.to_string()))
}

impl Rtc {
    /// Validates the settings. Nothing is bound until a peer is created.
    pub fn new(settings: RtcSettings) -> Result<Rtc, RtcError> {
        // Our loop gathers host candidates only: STUN/TURN servers need the library's
        // gatherer, except with the mux, where they are not used anyway.
        let direct = settings.peer_loop == PeerLoop::Own
            && (settings.udp_port != 0 || settings.ice_servers.is_empty());
        Ok(Rtc {
            net: Arc::new(Net::new(
                settings.ice_ips,
                settings.public_ips,
                settings.udp_port,
                &settings.ice_servers,
            )?),
            direct,
        })
    }

    /// With `udp_port`: binds the shared UDP port now (an error if it is taken). Call it
    /// from within the runtime that should carry the port's reader.
    pub fn bind_mux(&self) -> Result<(), RtcError> {
        self.net.bind_mux()
    }

    /// Peers registered on the UDP mux (0 without one).
    pub fn mux_peers(&self) -> usize {
        self.net.mux.as_ref().map_or(0, |m| m.peers())
    }

    /// Peers on the UDP mux whose datagrams arrive on a connected socket of their own.
    pub fn mux_flows(&self) -> usize {
        self.net.mux.as_ref().map_or(0, |m| m.flows())
    }

    /// Live peer connections and forwarding tasks of this `Rtc`.
    pub fn stats(&self) -> RtcStats {
        use std::sync::atomic::Ordering;
        RtcStats {
            live_peers: self.net.counters.peers.load(Ordering::SeqCst),
            live_tasks: self.net.counters.tasks.load(Ordering::SeqCst),
            nacks_sent: self.net.counters.nacks_sent.load(Ordering::Relaxed) as u64,
        }
    }

    /// Recorder: answers with recvonly Opus audio + `video` (payload types from the offer),
    /// NACK and RTCP reports on. The offer is validated before anything is allocated. Waits
    /// for ICE gathering (non-trickle) and returns the answer.
    pub async fn accept_recorder(
        &self,
        offer: &SessionDescription,
        video: Codec,
    ) -> Result<(RecorderPeer, SessionDescription, mpsc::Receiver<PeerEvent>), RtcError> {
        let plan = sdp::plan_recorder(&offer.sdp, video)?;
        let desc = library_offer(offer)?;
        if self.direct {
            let (peer, sdp, events) = direct::build(direct::Build {
                net: &self.net,
                plan: &plan,
                role: peer::DtlsAnswerRole::Server,
                offer: desc,
                tracks: Vec::new(),
            })
            .await?;
            let sdp = self.rewrite_answer(sdp);
            let peer = RecorderPeer {
                link: Link::Direct(peer),
            };
            return Ok((peer, answer_desc(sdp), events));
        }
        let (core, events) = Core::build(&self.net, &plan, peer::DtlsAnswerRole::Server).await?;
        let answer = self.answer(&core, desc, || async { Ok(()) }).await;
        let peer = RecorderPeer {
            link: Link::Library(core),
        };
        match answer {
            Ok(sdp) => Ok((peer, answer_desc(sdp), events)),
            Err(e) => {
                peer.close().await;
                Err(e)
            }
        }
    }

    /// Viewer: answers with sendonly audio + video. Every video codec we can send that the
    /// viewer offered (H264 and/or VP8) is negotiated, so clips of either codec can be played
    /// on the one video track. The tracks are bound before the answer is made, so packets can
    /// be sent the moment DTLS is up ([`PeerState::Connected`]).
    pub async fn accept_viewer(
        &self,
        offer: &SessionDescription,
    ) -> Result<(ViewerPeer, SessionDescription, mpsc::Receiver<PeerEvent>), RtcError> {
        let plan = sdp::plan_viewer(&offer.sdp)?;
        let desc = library_offer(offer)?;
        let stream_id = format!("pion-the-sky-{:08x}", crate::random::nonzero_u32());
        let audio_ssrc = plan.audio.as_ref().map(|_| crate::random::nonzero_u32());
        let video_ssrc = crate::random::nonzero_u32();
        // The answer must negotiate a video codec we can send; audio only if offered.
        let negotiated = |sdp: &str| -> Result<Vec<(Codec, u8)>, RtcError> {
            let payload_types = sdp::negotiated(sdp, &plan)?;
            if !payload_types
                .iter()
                .any(|(c, _)| c.kind() == MediaKind::Video)
            {
                return Err(RtcError::NoPlayableVideo);
            }
            Ok(payload_types)
        };
        if self.direct {
            let mut tracks = Vec::new();
            if let (Some(choice), Some(ssrc)) = (plan.audio.as_ref(), audio_ssrc) {
                tracks.push((
                    MediaKind::Audio,
                    peer::media_track(&stream_id, MediaKind::Audio, choice, ssrc),
                ));
            }
            tracks.push((
                MediaKind::Video,
                peer::media_track(&stream_id, MediaKind::Video, &plan.video[0], video_ssrc),
            ));
            let (peer, sdp, events) = direct::build(direct::Build {
                net: &self.net,
                plan: &plan,
                role: peer::DtlsAnswerRole::Client,
                offer: desc,
                tracks,
            })
            .await?;
            let payload_types = match negotiated(&sdp) {
                Ok(p) => p,
                Err(e) => {
                    peer.close();
                    return Err(e);
                }
            };
            let sdp = self.rewrite_answer(sdp);
            let audio = payload_types
                .iter()
                .any(|(c, _)| *c == Codec::Opus)
                .then_some(audio_ssrc)
                .flatten()
                .unwrap_or(0);
            let viewer = ViewerPeer {
                link: Link::Direct(peer),
                out: Outgoing {
                    audio: None,
                    video: None,
                    payload_types,
                },
                ssrcs: [audio, video_ssrc],
            };
            return Ok((viewer, answer_desc(sdp), events));
        }
        let (core, events) = Core::build(&self.net, &plan, peer::DtlsAnswerRole::Client).await?;
        let audio = plan.audio.as_ref().zip(audio_ssrc).map(|(choice, ssrc)| {
            (
                peer::local_track(&stream_id, MediaKind::Audio, choice, ssrc),
                ssrc,
            )
        });
        let video = Some((
            peer::local_track(&stream_id, MediaKind::Video, &plan.video[0], video_ssrc),
            video_ssrc,
        ));
        let mut out = Outgoing {
            audio,
            video,
            payload_types: Vec::new(),
        };
        let tracks: Vec<_> = out
            .audio
            .iter()
            .chain(out.video.iter())
            .map(|(t, _)| t.clone())
            .collect();
        let pc = core.pc.clone();
        // Tracks are added after the remote offer is applied: the transceivers the offer
        // created already carry the offer's codec list (both video codecs), and `add_track`
        // keeps that list instead of narrowing it to the track's one codec.
        let add_tracks = move || async move {
            for track in tracks {
                pc.add_track(track).await.map_err(lib)?;
            }
            Ok(())
        };
        let answer = self.answer(&core, desc, add_tracks).await;
        let result = answer.and_then(|sdp| {
            let payload_types = negotiated(&sdp)?;
            Ok((sdp, payload_types))
        });
        match result {
            Ok((sdp, payload_types)) => {
                out.payload_types = payload_types;
                // Audio offered but not negotiated: no audio track to send on.
                if !out.payload_types.iter().any(|(c, _)| *c == Codec::Opus) {
                    out.audio = None;
                }
                let ssrcs = [out.ssrc(MediaKind::Audio), out.ssrc(MediaKind::Video)];
                let viewer = ViewerPeer {
                    link: Link::Library(core),
                    out,
                    ssrcs,
                };
                Ok((viewer, answer_desc(sdp), events))
            }
            Err(e) => {
                core.close().await;
                Err(e)
            }
        }
    }

    /// The answer as clients must see it: the mux's port in every host candidate, and the
    /// NAT 1:1 addresses added.
    fn rewrite_answer(&self, mut sdp: String) -> String {
        if let Some(mux) = &self.net.mux {
            sdp = mux::rewrite_candidate_ports(&sdp, mux.port());
        }
        sdp::advertise_public_ips(&sdp, &self.net.public_ips)
    }

    /// Applies the offer, runs `between` (adding tracks), answers, waits for gathering and
    /// returns the answer SDP with NAT 1:1 addresses added.
    async fn answer<F, Fut>(
        &self,
        core: &Core,
        offer: RTCSessionDescription,
        between: F,
    ) -> Result<String, RtcError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), RtcError>>,
    {
        core.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        between().await?;
        let answer = core.pc.create_answer(None).await.map_err(lib)?;
        core.pc.set_local_description(answer).await.map_err(lib)?;
        let sdp = core.gathered_local_sdp().await?;
        Ok(self.rewrite_answer(sdp))
    }
}

fn answer_desc(sdp: String) -> SessionDescription {
    SessionDescription {
        kind: SdpKind::Answer,
        sdp,
    }
}

impl RecorderPeer {
    /// Adds the client's trickled ICE candidates.
    pub fn trickle(&self) -> Trickle {
        Trickle::of(&self.link)
    }

    /// Sends a PLI for the browser's video SSRC (nothing before video has arrived).
    pub async fn request_keyframe(&self) {
        self.link.request_keyframe().await;
    }

    /// Closes the connection and frees everything it holds. Idempotent.
    pub async fn close(&self) {
        self.link.close().await;
    }
}

impl ViewerPeer {
    /// Adds the client's trickled ICE candidates.
    pub fn trickle(&self) -> Trickle {
        Trickle::of(&self.link)
    }

    /// Negotiated (codec, payload type) pairs: Opus if audio was negotiated, and every video
    /// codec that can be sent on the video track.
    pub fn payload_types(&self) -> Vec<(Codec, u8)> {
        self.out.payload_types.clone()
    }

    /// The SSRC packets of `kind` must carry (chosen here, advertised in the answer).
    /// 0 if the viewer has no such track (no audio negotiated).
    pub fn ssrc(&self, kind: MediaKind) -> u32 {
        match kind {
            MediaKind::Audio => self.ssrcs[0],
            MediaKind::Video => self.ssrcs[1],
        }
    }

    /// Sends one already-built RTP packet (our sequence number, timestamp, PT, marker).
    /// Fails if the payload type is not negotiated for `kind`, if the SSRC is not
    /// [`ssrc`](Self::ssrc)`(kind)`, or once the connection is closed.
    pub async fn send(&self, kind: MediaKind, packet: &RtpPacket) -> Result<(), RtcError> {
        match &self.link {
            Link::Library(core) => self.out.send(core, kind, packet).await,
            Link::Direct(peer) => {
                if peer.is_closed() {
                    return Err(RtcError::Closed);
                }
                let ssrc = self.ssrc(kind);
                if ssrc == 0 {
                    return Err(RtcError::NoTrack(peer::kind_name(kind)));
                }
                peer::check_send(&self.out.payload_types, ssrc, kind, packet)?;
                peer.send(kind, packet)
            }
        }
    }

    /// Closes the connection and frees everything it holds. Idempotent.
    pub async fn close(&self) {
        self.link.close().await;
    }
}
