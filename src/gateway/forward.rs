//! RTP out: a live recording forwarded as plain RTP/UDP to an existing media service.
//!
//! A forward is a live viewer without WebRTC: it subscribes to the recording's channel in the
//! [`LiveHub`](crate::session::live::LiveHub) (so it starts at a keyframe, asked of the
//! recorder, and a slow network never slows the recorder), rewrites each packet to its own
//! SSRC, sequence numbers and the payload types of its SDP ([`media::forward::Rewriter`]), and
//! sends video to `port` and audio to `port + 2` (the next odd ports are RTCP's by RFC 3550
//! convention; nothing is sent or read there). No SRTP: plain RTP is for trusted networks, so
//! destinations must be loopback or inside `--forward-allow`, and the server cannot be made to
//! send to anyone else.
//!
//! A forward ends when its recording ends, on `DELETE`, or at shutdown.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::session::live::rewriter;
use app::protocol::{ForwardInfo, ForwardTrack};
use media::forward::Rewriter;
use media::{Codec, MediaKind};
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// Payload types of the forwarded tracks (what the SDP says).
pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
/// Most forwards one recording may have at once.
pub const MAX_FORWARDS_PER_SESSION: usize = 8;

/// Why a forward was not started; the text is for the API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("no recording in progress has the session id {0}")]
    NoSuchSession(String),
    #[error(
        "{0} is not an allowed forward destination: loopback, or a network given with \
         --forward-allow"
    )]
    NotAllowed(IpAddr),
    #[error("{0:?} is not an IP address")]
    BadHost(String),
    #[error(
        "port {0} cannot take a forward: it needs an even port from 2 to 65532 (audio goes to port + 2)"
    )]
    BadPort(u16),
    #[error("this recording already has {0} forwards")]
    TooMany(usize),
    #[error("could not open a UDP socket: {0}")]
    Socket(String),
    #[error("cannot transcode this recording: {0}")]
    Transcode(String),
}

struct Entry {
    info: ForwardInfo,
    sdp: String,
    stop: CancellationToken,
    packets: Arc<AtomicU64>,
}

/// Every running forward, by recording session; cheap to clone.
#[derive(Clone, Default)]
pub struct Forwards {
    inner: Arc<Mutex<BTreeMap<String, Vec<Entry>>>>,
    next: Arc<AtomicU64>,
}

/// May the server send plain RTP to `ip`?
pub fn allowed(ip: IpAddr, allow: &[ipnet::IpNet]) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || allow.iter().any(|net| net.contains(&ip))
}

/// A forward's host: an IP address (IPv6 with or without brackets), never a name.
pub fn parse_host(host: &str) -> Result<IpAddr, ForwardError> {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| ForwardError::BadHost(host.chars().take(64).collect()))
}

/// Whether `to` can take a forward: an allowed address (`--forward-allow`) and an even port
/// with room for audio at `port + 2` (checked for the API and for `--forward-rtp` at start).
pub fn check_destination(to: SocketAddr, allow: &[ipnet::IpNet]) -> Result<(), ForwardError> {
    if !allowed(to.ip(), allow) {
        return Err(ForwardError::NotAllowed(to.ip()));
    }
    if to.port() < 2 || to.port() > 65532 || !to.port().is_multiple_of(2) {
        return Err(ForwardError::BadPort(to.port()));
    }
    Ok(())
}

/// The SDP a receiver reads (`ffmpeg -protocol_whitelist file,udp,rtp -i forward.sdp`). H264
/// is announced as Constrained Baseline 3.1 whatever the recorder sent: receivers take the
/// real profile from the in-band SPS, which every keyframe carries.
pub fn sdp(host: IpAddr, video: Codec, video_port: u16, audio_port: u16) -> String {
    let (family, addr) = match host {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let video_lines = match video {
        Codec::H264 => format!(
            "a=rtpmap:{VIDEO_PT} H264/90000\r\na=fmtp:{VIDEO_PT} packetization-mode=1;profile-level-id=42e01f\r\n"
        ),
        _ => format!("a=rtpmap:{VIDEO_PT} VP8/90000\r\n"),
    };
    format!(
        "v=0\r\no=- 0 0 IN {family} {addr}\r\ns=pion-the-sky forward\r\nc=IN {family} {addr}\r\nt=0 0\r\n\
         m=video {video_port} RTP/AVP {VIDEO_PT}\r\n{video_lines}a=recvonly\r\n\
         m=audio {audio_port} RTP/AVP {AUDIO_PT}\r\na=rtpmap:{AUDIO_PT} opus/48000/2\r\na=recvonly\r\n"
    )
}

impl Forwards {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Entry>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts forwarding the recording of `session` to `host:port`.
    pub async fn start(
        &self,
        state: &AppState,
        session: &str,
        host: &str,
        port: u16,
        codec: Option<Codec>,
    ) -> Result<ForwardInfo, ForwardError> {
        let ip = parse_host(host)?;
        self.start_to(state, session, SocketAddr::new(ip, port), codec)
            .await
    }

    /// [`start`](Self::start) with a parsed destination; `codec` is the video codec to send
    /// (the recording's own when `None`; the other is transcoded, one transcoder for every
    /// viewer and forward that wants it: `Channel::subscribe_in`).
    pub async fn start_to(
        &self,
        state: &AppState,
        session: &str,
        to: SocketAddr,
        codec: Option<Codec>,
    ) -> Result<ForwardInfo, ForwardError> {
        check_destination(to, &state.config.forward_allow)?;
        let channel = state
            .live
            .find(session)
            .filter(|c| c.session == session)
            .ok_or_else(|| ForwardError::NoSuchSession(session.chars().take(64).collect()))?;
        let video = codec.unwrap_or(channel.video);
        let sink = RtpSink::bind(to, video).await?;
        let Some(sub) = channel
            .subscribe_in(video)
            .map_err(|e| ForwardError::Transcode(e.to_string()))?
        else {
            return Err(ForwardError::NoSuchSession(session.to_owned()));
        };
        let stop = CancellationToken::new();
        let info = self.add(session, &sink, stop.clone())?;
        let id = info.id;
        let run = Run {
            video: rewriter(sink.video_ssrc, MediaKind::Video),
            audio: rewriter(sink.audio_ssrc, MediaKind::Audio),
            sink,
        };
        let forwards = self.clone();
        let (session_id, shutdown) = (session.to_owned(), state.shutdown.clone());
        state.tasks.spawn(async move {
            run.run(sub, stop, shutdown).await;
            forwards.remove(&session_id, id);
        });
        tracing::info!(%session, %to, id, ?video, "RTP forward started");
        Ok(info)
    }

    /// A playback session's forward (`session::play::run_rtp`): listed and served like a
    /// live recording's; `stop` (the session's own) ends the playback on DELETE.
    pub async fn attach_playback(
        &self,
        state: &AppState,
        session: &str,
        to: SocketAddr,
        video: Codec,
        stop: CancellationToken,
    ) -> Result<(RtpSink, ForwardInfo), ForwardError> {
        check_destination(to, &state.config.forward_allow)?;
        let sink = RtpSink::bind(to, video).await?;
        let info = self.add(session, &sink, stop)?;
        Ok((sink, info))
    }

    /// Forgets a playback's forward when its session ends.
    pub fn detach(&self, session: &str, id: u64) {
        self.remove(session, id);
    }

    /// Lists a new forward of `session` (at most [`MAX_FORWARDS_PER_SESSION`]).
    fn add(
        &self,
        session: &str,
        sink: &RtpSink,
        stop: CancellationToken,
    ) -> Result<ForwardInfo, ForwardError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let to = sink.video_to;
        let info = ForwardInfo {
            id,
            session: session.to_owned(),
            host: to.ip().to_string(),
            video: ForwardTrack {
                port: to.port(),
                codec: sink.video_codec.id().into(),
                payload_type: VIDEO_PT,
                ssrc: sink.video_ssrc,
            },
            audio: ForwardTrack {
                port: sink.audio_to.port(),
                codec: "opus".into(),
                payload_type: AUDIO_PT,
                ssrc: sink.audio_ssrc,
            },
            sdp_url: format!("/api/sessions/{session}/forwards/{id}/sdp"),
            packets: 0,
        };
        // Counted and added under one lock: concurrent requests cannot pass the limit.
        let mut all = self.lock();
        let list = all.entry(session.to_owned()).or_default();
        if list.len() >= MAX_FORWARDS_PER_SESSION {
            return Err(ForwardError::TooMany(list.len()));
        }
        list.push(Entry {
            info: info.clone(),
            sdp: sdp(to.ip(), sink.video_codec, to.port(), sink.audio_to.port()),
            stop,
            packets: sink.packets.clone(),
        });
        Ok(info)
    }
    fn remove(&self, session: &str, id: u64) {
        let mut all = self.lock();
        if let Some(list) = all.get_mut(session) {
            list.retain(|e| e.info.id != id);
            if list.is_empty() {
                all.remove(session);
            }
        }
    }

    /// The forwards of a session.
    pub fn list(&self, session: &str) -> Vec<ForwardInfo> {
        self.lock()
            .get(session)
            .map(|list| {
                list.iter()
                    .map(|e| ForwardInfo {
                        packets: e.packets.load(Ordering::Relaxed),
                        ..e.info.clone()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The SDP of one forward.
    pub fn sdp_of(&self, session: &str, id: u64) -> Option<String> {
        self.lock()
            .get(session)?
            .iter()
            .find(|e| e.info.id == id)
            .map(|e| e.sdp.clone())
    }

    /// Stops one forward; false when there is none.
    pub fn stop(&self, session: &str, id: u64) -> bool {
        let found = self
            .lock()
            .get(session)
            .and_then(|l| l.iter().find(|e| e.info.id == id).map(|e| e.stop.clone()));
        match found {
            Some(stop) => {
                stop.cancel();
                self.remove(session, id);
                true
            }
            None => false,
        }
    }
}

/// A forward's socket and destinations: video to `port`, audio to `port + 2`.
pub struct RtpSink {
    socket: tokio::net::UdpSocket,
    video_to: SocketAddr,
    audio_to: SocketAddr,
    video_ssrc: u32,
    audio_ssrc: u32,
    video_codec: Codec,
    packets: Arc<AtomicU64>,
}

impl RtpSink {
    /// A socket on the interface that reaches `to` (loopback for loopback), fresh SSRCs.
    async fn bind(to: SocketAddr, video_codec: Codec) -> Result<RtpSink, ForwardError> {
        let local: IpAddr = match to.ip() {
            ip if ip.is_loopback() && ip.is_ipv4() => Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_loopback() => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(local, 0))
            .await
            .map_err(|e| ForwardError::Socket(e.to_string()))?;
        Ok(RtpSink {
            socket,
            video_to: to,
            audio_to: SocketAddr::new(to.ip(), to.port() + 2),
            video_ssrc: crate::random::nonzero_u32(),
            audio_ssrc: crate::random::nonzero_u32(),
            video_codec,
            packets: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn ssrc(&self, kind: MediaKind) -> u32 {
        match kind {
            MediaKind::Video => self.video_ssrc,
            MediaKind::Audio => self.audio_ssrc,
        }
    }

    /// What the SDP announces.
    pub fn payload_types(&self) -> Vec<(Codec, u8)> {
        vec![(Codec::Opus, AUDIO_PT), (self.video_codec, VIDEO_PT)]
    }

    /// Sends one packet to its kind's port. A receiver that is not listening (ICMP port
    /// unreachable) is not an error worth ending the forward for: it may start later.
    pub async fn send(&self, kind: MediaKind, packet: &media::rtp::RtpPacket) {
        let to = match kind {
            MediaKind::Video => self.video_to,
            MediaKind::Audio => self.audio_to,
        };
        if self.socket.send_to(&packet.to_bytes(), to).await.is_ok() {
            self.packets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A live recording's forward: its packets rewritten to the sink's SSRCs and payload types.
struct Run {
    sink: RtpSink,
    video: Rewriter,
    audio: Rewriter,
}

impl Run {
    async fn run(
        mut self,
        mut sub: crate::session::live::Subscription,
        stop: CancellationToken,
        shutdown: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                item = sub.rx.recv() => item,
                _ = stop.cancelled() => None,
                _ = shutdown.cancelled() => None,
            };
            let Some(item) = item else { break };
            let (rewriter, pt) = match item.kind {
                MediaKind::Video => (&mut self.video, VIDEO_PT),
                MediaKind::Audio => (&mut self.audio, AUDIO_PT),
            };
            let Some(packet) = rewriter.rewrite(&item.packet, pt, item.discontinuity) else {
                continue;
            };
            self.sink.send(item.kind, &packet).await;
        }
        tracing::info!(
            packets = self.sink.packets.load(Ordering::Relaxed),
            "RTP forward ended"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_table() {
        let allow: Vec<ipnet::IpNet> = vec![
            "10.1.0.0/16".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ];
        let cases: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("8.8.8.8", false),
            ("::ffff:10.1.0.1", true),
        ];
        for (ip, want) in cases {
            assert_eq!(allowed(ip.parse().unwrap(), &allow), *want, "{ip}");
            assert_eq!(
                allowed(ip.parse().unwrap(), &[]),
                ip.starts_with("127") || *ip == "::1" || *ip == "::ffff:127.0.0.1",
                "{ip} default"
            );
        }
    }

    #[test]
    fn sdp_names_codecs_and_ports() {
        let s = sdp("127.0.0.1".parse().unwrap(), Codec::H264, 5004, 5006);
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(s.contains(
            "m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1"
        ));
        assert!(s.contains("m=audio 5006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2"));
        let s = sdp("::1".parse().unwrap(), Codec::Vp8, 6000, 6002);
        assert!(s.contains("c=IN IP6 ::1\r\n") && s.contains("a=rtpmap:96 VP8/90000"));
    }
}
