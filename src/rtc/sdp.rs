//! Plain SDP helpers: reading what an offer supports (before any WebRTC object is allocated),
//! choosing the codecs and payload types to answer with, reading back what an answer
//! negotiated, and advertising NAT 1:1 addresses. No I/O, no `webrtc` objects.
use std::io::Cursor;
use std::net::IpAddr;

use ::rtc::sdp::SessionDescription as ParsedSdp;
use media::{Codec, MediaKind};

use super::RtcError;

/// H264 fmtp we advertise from the in-process client, and the profile we prefer to answer with
/// (constrained baseline 3.1, non-interleaved). iOS Safari only decodes what it offered under
/// this exact profile, so when an offer carries it, the answer carries it too.
pub(crate) const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Opus parameters registered on our side.
pub(crate) const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// One `a=rtpmap` entry of an offered media section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OfferedCodec {
    pub pt: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
}

/// One `m=` section.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    /// `None` for anything that is not audio or video (data channels, unknown media).
    pub kind: Option<MediaKind>,
    /// Port 0: the section is rejected/disabled.
    pub rejected: bool,
    /// The `m=` line's port (what a plain-RTP sender sends to); 0 when out of range.
    pub port: u16,
    /// Codecs in the order of the `m=` line's format list.
    pub codecs: Vec<OfferedCodec>,
}

/// A codec we register for one peer, with the payload type taken from the offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CodecChoice {
    pub codec: Codec,
    pub pt: u8,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: String,
}

/// What we answer with: at most one audio codec (Opus) and the video codecs, preferred first.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub audio: Option<CodecChoice>,
    pub video: Vec<CodecChoice>,
}

impl Plan {
    /// Every (payload type, codec) pair this peer may see or send.
    pub(crate) fn pt_map(&self) -> Vec<(u8, Codec)> {
        self.audio
            .iter()
            .chain(self.video.iter())
            .map(|c| (c.pt, c.codec))
            .collect()
    }
}

/// Parses an SDP into its media sections. Errors are phrased for the browser's user.
pub(crate) fn parse(sdp: &str) -> Result<Vec<Section>, RtcError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(RtcError::BadSdp("it does not start with v=0".into()));
    }
    let parsed = ParsedSdp::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| RtcError::BadSdp(e.to_string()))?;
    let mut sections = Vec::with_capacity(parsed.media_descriptions.len());
    for media in &parsed.media_descriptions {
        let kind = match media.media_name.media.to_ascii_lowercase().as_str() {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        };
        let rejected = media.media_name.port.value == 0;
        let table = media.codecs();
        let mut codecs = Vec::new();
        if kind.is_some() {
            for format in &media.media_name.formats {
                // Dynamic and static RTP payload types are 7 bits; 128..=255 would set the
                // marker bit on the wire.
                let Some(pt) = format.parse::<u8>().ok().filter(|pt| *pt < 128) else {
                    continue;
                };
                let Some(c) = table.get(&pt) else { continue };
                codecs.push(OfferedCodec {
                    pt,
                    name: c.name.clone(),
                    clock_rate: c.clock_rate,
                    channels: c.encoding_parameters.trim().parse().unwrap_or(0),
                    fmtp: c.fmtp.clone(),
                });
            }
        }
        sections.push(Section {
            kind,
            rejected,
            port: u16::try_from(media.media_name.port.value).unwrap_or(0),
            codecs,
        });
    }
    Ok(sections)
}

fn first_section(sections: &[Section], kind: MediaKind) -> Option<&Section> {
    sections
        .iter()
        .find(|s| s.kind == Some(kind) && !s.rejected)
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// Opus 48 kHz stereo from an audio section.
fn choose_opus(section: &Section) -> Option<CodecChoice> {
    section
        .codecs
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("opus") && c.clock_rate == 48_000)
        .map(|c| CodecChoice {
            codec: Codec::Opus,
            pt: c.pt,
            clock_rate: 48_000,
            channels: 2,
            fmtp: OPUS_FMTP.into(),
        })
}

fn choose_vp8(section: &Section) -> Option<CodecChoice> {
    section
        .codecs
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("vp8") && c.clock_rate == 90_000)
        .map(|c| CodecChoice {
            codec: Codec::Vp8,
            pt: c.pt,
            clock_rate: 90_000,
            channels: 0,
            fmtp: String::new(),
        })
}

/// The H264 variant to answer: packetization-mode=1 and a (constrained) baseline profile
/// (`42xxxx`). Constrained baseline `42e0xx` (what iOS Safari requires) wins over plain
/// baseline `4200xx`; otherwise the offer's order decides. The offered fmtp is kept verbatim,
/// so the answer states exactly the profile the browser offered.
fn choose_h264(section: &Section) -> Option<CodecChoice> {
    section
        .codecs
        .iter()
        .filter(|c| {
            c.name.eq_ignore_ascii_case("h264")
                && c.clock_rate == 90_000
                && fmtp_param(&c.fmtp, "packetization-mode") == Some("1")
        })
        .filter_map(|c| Some((h264_profile(&c.fmtp)?, c)))
        .filter(|(p, _)| p.baseline())
        .min_by_key(|(p, _)| !p.constrained())
        .map(|(_, c)| CodecChoice {
            codec: Codec::H264,
            pt: c.pt,
            clock_rate: 90_000,
            channels: 0,
            fmtp: c.fmtp.clone(),
        })
}

/// An H264 `profile-level-id`: profile_idc, constraint flags, level_idc (RFC 6184 8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct H264Profile {
    profile_idc: u8,
    constraints: u8,
}

impl H264Profile {
    /// Baseline or constrained baseline (profile_idc 66).
    fn baseline(self) -> bool {
        self.profile_idc == 0x42
    }
    /// Constrained baseline as browsers spell it (`42e0xx`).
    fn constrained(self) -> bool {
        self.baseline() && self.constraints == 0xe0
    }
}

/// Parses the `profile-level-id` of an H264 fmtp: exactly six hex digits, or nothing. The
/// value is client text: it is parsed as numbers, never sliced.
fn h264_profile(fmtp: &str) -> Option<H264Profile> {
    let plid = fmtp_param(fmtp, "profile-level-id")?;
    if plid.len() != 6 || !plid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u32::from_str_radix(plid, 16).ok()?;
    Some(H264Profile {
        profile_idc: (v >> 16) as u8,
        constraints: (v >> 8) as u8,
    })
}

fn choose_video(section: &Section, codec: Codec) -> Option<CodecChoice> {
    match codec {
        Codec::Vp8 => choose_vp8(section),
        Codec::H264 => choose_h264(section),
        Codec::Opus => None,
    }
}

fn require_media(sections: &[Section]) -> Result<(), RtcError> {
    if sections.iter().all(|s| s.kind.is_none()) {
        return Err(RtcError::NoMedia);
    }
    Ok(())
}

/// Recorder: Opus (when offered) and exactly the server's video codec.
pub(crate) fn plan_recorder(sdp: &str, video: Codec) -> Result<Plan, RtcError> {
    if video.kind() != MediaKind::Video {
        return Err(RtcError::Settings(format!(
            "{} is not a video codec",
            video.name()
        )));
    }
    let sections = parse(sdp)?;
    require_media(&sections)?;
    let video_section = first_section(&sections, MediaKind::Video).ok_or(RtcError::NoVideo)?;
    let video_choice =
        choose_video(video_section, video).ok_or(RtcError::VideoCodecNotOffered(video.name()))?;
    let audio = first_section(&sections, MediaKind::Audio).and_then(choose_opus);
    Ok(Plan {
        audio,
        video: vec![video_choice],
    })
}

/// The video codec a recorder should take when the sender may choose (WHIP): the first one in
/// the offer's order that we record (VP8, or H264 as [`choose_h264`] accepts it).
pub(crate) fn preferred_video(sdp: &str) -> Result<Codec, RtcError> {
    let sections = parse(sdp)?;
    require_media(&sections)?;
    let section = first_section(&sections, MediaKind::Video).ok_or(RtcError::NoVideo)?;
    let h264 = choose_h264(section).map(|c| c.pt);
    let vp8 = choose_vp8(section).map(|c| c.pt);
    section
        .codecs
        .iter()
        .find_map(|c| {
            if Some(c.pt) == vp8 {
                Some(Codec::Vp8)
            } else if Some(c.pt) == h264 {
                Some(Codec::H264)
            } else {
                None
            }
        })
        .ok_or(RtcError::NoRecordableVideo)
}

/// A plain-RTP stream described by an SDP (RTP ingest): the video section's first codec we
/// record (VP8, or H264 in packetization mode 0 or 1; the profile is not checked: the stream
/// must have no B-frames, which RTP cannot say) and an Opus audio section, each with the port
/// it is sent to.
pub(crate) fn plan_ingest(sdp: &str) -> Result<super::IngestPlan, RtcError> {
    let sections = parse(sdp)?;
    require_media(&sections)?;
    let video_section = first_section(&sections, MediaKind::Video).ok_or(RtcError::NoVideo)?;
    let video = video_section
        .codecs
        .iter()
        .find_map(|c| {
            let codec = if c.name.eq_ignore_ascii_case("vp8") {
                Codec::Vp8
            } else if c.name.eq_ignore_ascii_case("h264")
                && fmtp_param(&c.fmtp, "packetization-mode").unwrap_or("0") != "2"
            {
                Codec::H264
            } else {
                return None;
            };
            (c.clock_rate == 90_000).then_some(super::IngestTrack {
                codec,
                payload_type: c.pt,
                port: video_section.port,
            })
        })
        .ok_or(RtcError::NoRecordableVideo)?;
    let audio = first_section(&sections, MediaKind::Audio).and_then(|section| {
        choose_opus(section).map(|c| super::IngestTrack {
            codec: Codec::Opus,
            payload_type: c.pt,
            port: section.port,
        })
    });
    for track in std::iter::once(&video).chain(audio.iter()) {
        if track.port < 1024 {
            return Err(RtcError::BadSdp(format!(
                "port {} is not one the server listens on (1024-65535)",
                track.port
            )));
        }
    }
    if audio.as_ref().is_some_and(|a| a.port == video.port) {
        return Err(RtcError::BadSdp(
            "audio and video must go to different ports".into(),
        ));
    }
    Ok(super::IngestPlan { video, audio })
}

/// Viewer: Opus (when offered) and every video codec we can play that the viewer offered,
/// H264 first (it is what most recordings from Safari and the default server use), then VP8.
pub(crate) fn plan_viewer(sdp: &str) -> Result<Plan, RtcError> {
    let sections = parse(sdp)?;
    require_media(&sections)?;
    let video_section = first_section(&sections, MediaKind::Video).ok_or(RtcError::NoVideo)?;
    let video: Vec<CodecChoice> = [Codec::H264, Codec::Vp8]
        .into_iter()
        .filter_map(|c| choose_video(video_section, c))
        .collect();
    if video.is_empty() {
        return Err(RtcError::NoPlayableVideo);
    }
    let audio = first_section(&sections, MediaKind::Audio).and_then(choose_opus);
    Ok(Plan { audio, video })
}

/// The (codec, payload type) pairs an answer actually carries, restricted to the plan.
pub(crate) fn negotiated(answer: &str, plan: &Plan) -> Result<Vec<(Codec, u8)>, RtcError> {
    let sections = parse(answer)?;
    let mut out = Vec::new();
    for (kind, choices) in [
        (
            MediaKind::Audio,
            plan.audio.iter().cloned().collect::<Vec<_>>(),
        ),
        (MediaKind::Video, plan.video.clone()),
    ] {
        let Some(section) = first_section(&sections, kind) else {
            continue;
        };
        for choice in choices {
            if section.codecs.iter().any(|c| c.pt == choice.pt) {
                out.push((choice.codec, choice.pt));
            }
        }
    }
    Ok(out)
}

/// webrtc-rs 0.21 accepts `SettingEngine::with_nat_1to1_ips` but never reads it (no candidate
/// is rewritten), so NAT 1:1 is done here: every UDP host candidate in the (non-trickle)
/// answer gets a twin per public IP with the same port. A browser's check to
/// `public_ip:port` is forwarded by the NAT to the socket the original candidate names, and
/// the ICE agent answers it like any check on that socket.
pub(crate) fn advertise_public_ips(sdp: &str, public_ips: &[IpAddr]) -> String {
    if public_ips.is_empty() {
        return sdp.to_owned();
    }
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len() * 2);
    for line in sdp.split(eol) {
        if line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str(eol);
        for twin in public_twins(line, public_ips) {
            out.push_str(&twin);
            out.push_str(eol);
        }
    }
    out
}

fn public_twins(line: &str, public_ips: &[IpAddr]) -> Vec<String> {
    let Some(rest) = line.strip_prefix("a=candidate:") else {
        return Vec::new();
    };
    // foundation component transport priority address port "typ" type [extensions...]
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.len() < 8
        || !fields[2].eq_ignore_ascii_case("udp")
        || fields[6] != "typ"
        || fields[7] != "host"
    {
        return Vec::new();
    }
    let priority: u32 = fields[3].parse().unwrap_or(0);
    public_ips
        .iter()
        .enumerate()
        .filter(|(_, ip)| ip.to_string() != fields[4])
        .map(|(i, ip)| {
            let mut twin: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            // A distinct foundation: a different address is a different candidate.
            twin[0] = format!("{}{}", fields[0], 9000 + i);
            twin[3] = priority.saturating_sub(1 + i as u32).to_string();
            twin[4] = ip.to_string();
            format!("a=candidate:{}", twin.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc::tests::offer;

    #[test]
    fn h264_prefers_constrained_baseline_mode_1() {
        let sdp = offer(&[(
            "video",
            "sendonly",
            &[
                "a=rtpmap:102 H264/90000",
                "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
                "a=rtpmap:104 H264/90000",
                "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
                "a=rtpmap:106 H264/90000",
                "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                "a=rtpmap:112 H264/90000",
                "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
            ],
        )]);
        let plan = plan_recorder(&sdp, Codec::H264).unwrap();
        assert_eq!(plan.video.len(), 1);
        assert_eq!(plan.video[0].pt, 106);
        assert!(plan.audio.is_none());

        let only_baseline = offer(&[(
            "video",
            "sendonly",
            &[
                "a=rtpmap:102 H264/90000",
                "a=fmtp:102 packetization-mode=1;profile-level-id=42001f",
            ],
        )]);
        assert_eq!(
            plan_recorder(&only_baseline, Codec::H264).unwrap().video[0].pt,
            102
        );
        let only_high = offer(&[(
            "video",
            "sendonly",
            &[
                "a=rtpmap:112 H264/90000",
                "a=fmtp:112 packetization-mode=1;profile-level-id=64001f",
            ],
        )]);
        assert!(matches!(
            plan_recorder(&only_high, Codec::H264),
            Err(RtcError::VideoCodecNotOffered("H264"))
        ));
    }

    /// Client text in every line an offer carries: never a panic, always a plan or an error.
    #[test]
    fn hostile_values_in_offer_lines_give_errors_not_panics() {
        let h264 = |fmtp: &str| {
            offer(&[(
                "video",
                "sendonly",
                &["a=rtpmap:102 H264/90000", &format!("a=fmtp:102 {fmtp}")],
            )])
        };
        let cases: Vec<(String, bool)> = vec![
            (h264("packetization-mode=1;profile-level-id=4€00"), false),
            (h264("packetization-mode=1;profile-level-id=€abc"), false),
            (h264("packetization-mode=1;profile-level-id=42€a"), false),
            (h264("packetization-mode=1;profile-level-id=42é01"), false),
            (h264("packetization-mode=1;profile-level-id=4"), false),
            (
                h264("packetization-mode=1;profile-level-id=42e01f99"),
                false,
            ),
            (h264("packetization-mode=1;profile-level-id=+42e01"), false),
            (h264("packetization-mode=€;profile-level-id=42e01f"), false),
            (h264("packetization-mode=1;profile-level-id=42e01f"), true),
            (h264("packetization-mode=1;profile-level-id=42E01F"), true),
            (
                h264(&format!("profile-level-id=42e01f;{}", "x=€;".repeat(2000))),
                false,
            ),
            (
                offer(&[(
                    "video",
                    "sendonly",
                    &["a=rtpmap:102 H264/9€000", "a=fmtp:102 packetization-mode=1"],
                )]),
                false,
            ),
            (
                offer(&[("video", "sendonly", &["a=rtpmap:102 H264€/90000/€€"])]),
                false,
            ),
            (
                offer(&[("video", "sendonly", &["a=rtpmap:200 VP8/90000"])]),
                false,
            ),
            (
                offer(&[("video", "sendonly", &["a=rtpmap:99999999999 VP8/90000"])]),
                false,
            ),
            (
                offer(&[(
                    "video",
                    "sendonly",
                    &[
                        "a=rtpmap:102 H264/90000",
                        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
                        "a=ssrc:€€€ cname:€",
                        "a=ssrc:99999999999999 msid:€ €",
                        "a=mid:€€€€",
                        "a=extmap:€ urn:ietf:params:rtp-hdrext:sdes:mid",
                        "a=extmap:99999 urn:€",
                        "a=candidate:€ 1 udp 2130706431 1.2.3.€ 9€ typ host",
                        "a=candidate:1 99999999999 udp 99999999999999 ::::: 99999 typ €",
                    ],
                )]),
                true,
            ),
        ];
        for (sdp, ok) in &cases {
            let got = plan_recorder(sdp, Codec::H264);
            assert_eq!(got.is_ok(), *ok, "{sdp}: {got:?}");
            // The viewer plan reads the same lines; it must not panic either.
            let _ = plan_viewer(sdp);
            let _ = advertise_public_ips(sdp, &["203.0.113.7".parse().unwrap()]);
        }
    }

    #[test]
    fn viewer_plans_both_codecs_h264_first() {
        let sdp = offer(&[
            (
                "audio",
                "recvonly",
                &["a=rtpmap:109 opus/48000/2", "a=fmtp:109 minptime=10"],
            ),
            (
                "video",
                "recvonly",
                &[
                    "a=rtpmap:120 VP8/90000",
                    "a=rtpmap:126 H264/90000",
                    "a=fmtp:126 packetization-mode=1;profile-level-id=42e01f",
                ],
            ),
        ]);
        let plan = plan_viewer(&sdp).unwrap();
        assert_eq!(plan.audio.as_ref().map(|a| a.pt), Some(109));
        let video: Vec<(Codec, u8)> = plan.video.iter().map(|c| (c.codec, c.pt)).collect();
        assert_eq!(video, vec![(Codec::H264, 126), (Codec::Vp8, 120)]);
    }

    #[test]
    fn public_ip_twins_host_candidates_only() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 1.2.3.4 50000 typ srflx raddr 10.0.0.5 rport 50000\r\n";
        let out = advertise_public_ips(sdp, &["203.0.113.7".parse().unwrap()]);
        assert!(out.contains("a=candidate:19000 1 udp 2130706430 203.0.113.7 50000 typ host\r\n"));
        assert_eq!(out.matches("a=candidate:").count(), 3, "{out}");
        assert_eq!(advertise_public_ips(sdp, &[]), sdp);
    }
}
