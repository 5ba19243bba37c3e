//! Codec identities shared by every part of the core.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    Vp8,
    Opus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

impl Codec {
    pub const fn clock_rate(self) -> u32 {
        match self {
            Codec::H264 | Codec::Vp8 => 90_000,
            Codec::Opus => 48_000,
        }
    }

    pub const fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::Vp8 => MediaKind::Video,
            Codec::Opus => MediaKind::Audio,
        }
    }

    /// The name people read: `H264`, `VP8`, `Opus`.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::Vp8 => "VP8",
            Codec::Opus => "Opus",
        }
    }

    /// The wire and file name (as serde writes it): `h264`, `vp8`, `opus`.
    pub const fn id(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Vp8 => "vp8",
            Codec::Opus => "opus",
        }
    }

    /// The SDP/MIME name, e.g. `video/H264`.
    pub const fn mime_type(self) -> &'static str {
        match self {
            Codec::H264 => "video/H264",
            Codec::Vp8 => "video/VP8",
            Codec::Opus => "audio/opus",
        }
    }

    /// Parses a MIME type case-insensitively (`video/vp8`, `VIDEO/H264`, `audio/opus`).
    pub fn from_mime(mime: &str) -> Option<Codec> {
        [Codec::H264, Codec::Vp8, Codec::Opus]
            .into_iter()
            .find(|c| c.mime_type().eq_ignore_ascii_case(mime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_wire() {
        for c in [Codec::H264, Codec::Vp8, Codec::Opus] {
            assert_eq!(c.id(), c.name().to_ascii_lowercase());
            assert!(c.mime_type().eq_ignore_ascii_case(&format!(
                "{}/{}",
                if c == Codec::Opus { "audio" } else { "video" },
                c.name()
            )));
        }
    }

    #[test]
    fn mime_round_trip() {
        for (mime, codec) in [
            ("video/H264", Some(Codec::H264)),
            ("video/vp8", Some(Codec::Vp8)),
            ("AUDIO/OPUS", Some(Codec::Opus)),
            ("video/VP9", None),
        ] {
            assert_eq!(Codec::from_mime(mime), codec, "{mime}");
        }
    }
}
