//! An in-process WebRTC *offerer*, for integration tests and the load generator.
//!
//! It plays the browser's part without a browser: [`Client::record`] offers sendonly Opus +
//! video and sends raw RTP that the caller builds and paces; [`Client::view`] offers recvonly
//! audio + video and forwards what it receives as [`PeerEvent::Rtp`] (with arrival instant and
//! payload type). Transport-free: the caller carries [`Client::offer`] and the answer over its
//! own signaling (websocket or a direct call into [`super::Rtc`]).
//!
//! ```ignore
//! let (client, mut events) = Client::record(RecordOptions::default()).await?;
//! let (peer, answer, server_events) = rtc.accept_recorder(&client.offer().await?, Codec::Vp8).await?;
//! client.set_answer(&answer).await?;
//! client.wait_connected(Duration::from_secs(5)).await?;
//! client.send(MediaKind::Video, &packet).await?;
//! ```
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ::rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use app::protocol::{SdpKind, SessionDescription};
use media::rtp::RtpPacket;
use media::{Codec, MediaKind};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::RTCSessionDescription;

use super::peer::{self, Core, Net, Outgoing, lib};
use super::sdp::{self, CodecChoice, Plan};
use super::{PeerEvent, PeerState, RtcError};

/// What a recording client offers.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// VP8 or H264 (H264 is offered as constrained baseline 42e01f, packetization-mode 1).
    pub video: Codec,
    pub video_pt: u8,
    pub audio_pt: u8,
    /// The one local address to gather on (loopback by default: nothing leaves the host).
    pub ice_ip: IpAddr,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            video: Codec::Vp8,
            video_pt: 96,
            audio_pt: 111,
            ice_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// What a viewing client offers.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    /// Video codecs and payload types, in preference order.
    pub video: Vec<(Codec, u8)>,
    pub audio_pt: u8,
    pub ice_ip: IpAddr,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            video: vec![(Codec::Vp8, 96), (Codec::H264, 102)],
            audio_pt: 111,
            ice_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// One in-process offerer (recording or viewing).
pub struct Client {
    core: Core,
    out: Outgoing,
}

fn choice(codec: Codec, pt: u8) -> Result<CodecChoice, RtcError> {
    Ok(match codec {
        Codec::Opus => CodecChoice {
            codec,
            pt,
            clock_rate: 48_000,
            channels: 2,
            fmtp: sdp::OPUS_FMTP.into(),
        },
        Codec::Vp8 => CodecChoice {
            codec,
            pt,
            clock_rate: 90_000,
            channels: 0,
            fmtp: String::new(),
        },
        Codec::H264 => CodecChoice {
            codec,
            pt,
            clock_rate: 90_000,
            channels: 0,
            fmtp: sdp::H264_FMTP.into(),
        },
    })
}

fn client_net(ip: IpAddr) -> Result<Net, RtcError> {
    Net::new(vec![ip], vec![], 0, &[])
}

impl Client {
    /// A recording client: sendonly Opus + `options.video` tracks.
    pub async fn record(
        options: RecordOptions,
    ) -> Result<(Client, mpsc::Receiver<PeerEvent>), RtcError> {
        if options.video.kind() != MediaKind::Video {
            return Err(RtcError::Settings(
                "the video codec must be VP8 or H264".into(),
            ));
        }
        let plan = Plan {
            audio: Some(choice(Codec::Opus, options.audio_pt)?),
            video: vec![choice(options.video, options.video_pt)?],
        };
        let net = client_net(options.ice_ip)?;
        let (core, events) = Core::build(&net, &plan, peer::DtlsAnswerRole::Client).await?;
        let stream_id = format!("client-{:08x}", crate::random::nonzero_u32());
        let audio_ssrc = crate::random::nonzero_u32();
        let video_ssrc = crate::random::nonzero_u32();
        let audio = peer::local_track(
            &stream_id,
            MediaKind::Audio,
            plan.audio.as_ref().expect("planned above"),
            audio_ssrc,
        );
        let video = peer::local_track(&stream_id, MediaKind::Video, &plan.video[0], video_ssrc);
        for track in [audio.clone(), video.clone()] {
            core.pc
                .add_transceiver_from_track(
                    track as std::sync::Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(lib)?;
        }
        let out = Outgoing {
            audio: Some((audio, audio_ssrc)),
            video: Some((video, video_ssrc)),
            payload_types: plan.pt_map().into_iter().map(|(pt, c)| (c, pt)).collect(),
        };
        Ok((Client { core, out }, events))
    }

    /// A viewing client: recvonly audio + video offering `options.video` codecs.
    pub async fn view(
        options: ViewOptions,
    ) -> Result<(Client, mpsc::Receiver<PeerEvent>), RtcError> {
        let video = options
            .video
            .iter()
            .filter(|(c, _)| c.kind() == MediaKind::Video)
            .map(|(c, pt)| choice(*c, *pt))
            .collect::<Result<Vec<_>, _>>()?;
        if video.is_empty() {
            return Err(RtcError::Settings(
                "a viewing client needs a video codec".into(),
            ));
        }
        let plan = Plan {
            audio: Some(choice(Codec::Opus, options.audio_pt)?),
            video,
        };
        let net = client_net(options.ice_ip)?;
        let (core, events) = Core::build(&net, &plan, peer::DtlsAnswerRole::Client).await?;
        for kind in [MediaKind::Audio, MediaKind::Video] {
            core.pc
                .add_transceiver_from_kind(
                    peer::to_library_kind(kind),
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(lib)?;
        }
        let out = Outgoing {
            audio: None,
            video: None,
            payload_types: plan.pt_map().into_iter().map(|(pt, c)| (c, pt)).collect(),
        };
        Ok((Client { core, out }, events))
    }

    /// Creates the offer, applies it, and returns it with every candidate (ICE gathering
    /// complete).
    pub async fn offer(&self) -> Result<SessionDescription, RtcError> {
        let offer = self.core.pc.create_offer(None).await.map_err(lib)?;
        self.core
            .pc
            .set_local_description(offer)
            .await
            .map_err(lib)?;
        Ok(SessionDescription {
            kind: SdpKind::Offer,
            sdp: self.core.gathered_local_sdp().await?,
        })
    }

    /// Applies the server's answer.
    pub async fn set_answer(&self, answer: &SessionDescription) -> Result<(), RtcError> {
        if answer.kind != SdpKind::Answer {
            return Err(RtcError::BadSdp("expected an answer".into()));
        }
        let desc = RTCSessionDescription::answer(answer.sdp.clone())
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        self.core
            .pc
            .set_remote_description(desc)
            .await
            .map_err(|e| RtcError::BadSdp(e.to_string()))
    }

    /// Waits until the connection is up (DTLS done), or fails/closes, or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), RtcError> {
        let mut state = self.core.state.clone();
        let reached = tokio::time::timeout(
            timeout,
            state.wait_for(|s| {
                matches!(
                    s,
                    PeerState::Connected | PeerState::Failed | PeerState::Closed
                )
            }),
        )
        .await
        .map_err(|_| RtcError::Timeout)?
        .map(|s| *s)
        .map_err(|_| RtcError::Closed)?;
        match reached {
            PeerState::Connected => Ok(()),
            _ => Err(RtcError::Closed),
        }
    }

    /// The offered (codec, payload type) pairs.
    pub fn payload_types(&self) -> Vec<(Codec, u8)> {
        self.out.payload_types.clone()
    }

    /// The payload type offered for `codec`.
    pub fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.out
            .payload_types
            .iter()
            .find(|(c, _)| *c == codec)
            .map(|(_, pt)| *pt)
    }

    /// Recording client: the SSRC its `kind` packets must carry (0 for a viewing client).
    pub fn ssrc(&self, kind: MediaKind) -> u32 {
        self.out.ssrc(kind)
    }

    /// Recording client: sends one RTP packet as is (the caller paces).
    pub async fn send(&self, kind: MediaKind, packet: &RtpPacket) -> Result<(), RtcError> {
        self.out.send(&self.core, kind, packet).await
    }

    /// Viewing client: sends a PLI for the received video (nothing before video arrived).
    pub async fn request_keyframe(&self) {
        self.core.request_keyframe().await;
    }

    /// Closes the connection. Idempotent.
    pub async fn close(&self) {
        self.core.close().await;
    }
}
