//! Opus RTP payload (RFC 7587): one RTP packet carries exactly one Opus packet.
//!
//! Also reads an Opus packet's duration from its TOC byte (RFC 6716 §3.1).

/// Duration of one Opus frame for each TOC configuration number, in 48 kHz samples.
const FRAME_SAMPLES: [u32; 32] = [
    480, 960, 1920, 2880, // SILK NB 10, 20, 40, 60 ms
    480, 960, 1920, 2880, // SILK MB
    480, 960, 1920, 2880, // SILK WB
    480, 960, // Hybrid SWB 10, 20 ms
    480, 960, // Hybrid FB
    120, 240, 480, 960, // CELT NB 2.5, 5, 10, 20 ms
    120, 240, 480, 960, // CELT WB
    120, 240, 480, 960, // CELT SWB
    120, 240, 480, 960, // CELT FB
];

/// Duration of an Opus packet in 48 kHz samples (frame size times frame count from the TOC
/// byte). `None` for an empty or malformed packet or one longer than 120 ms.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let per_frame = *FRAME_SAMPLES.get(usize::from(toc >> 3))?;
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(packet.get(1)? & 0x3f),
    };
    let total = per_frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

/// [`packet_samples`], or 960 (20 ms, what browsers send) for a packet whose TOC does not
/// say: what the containers and the timeline assume for a frame's length.
pub fn frame_samples(packet: &[u8]) -> u32 {
    packet_samples(packet).unwrap_or(960)
}

/// True when the Opus packet is stereo (the TOC's `s` bit).
pub fn is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

#[cfg(test)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // test tables
mod tests {
    use super::*;

    #[test]
    fn packet_samples_table() {
        let cases: Vec<(&str, &[u8], Option<u32>)> = vec![
            ("CELT FB 20 ms", &[0xf8, 1, 2], Some(960)),
            ("SILK NB 10 ms", &[0x00], Some(480)),
            ("SILK WB 60 ms", &[0x58], Some(2880)),
            ("CELT NB 2.5 ms", &[0x80], Some(120)),
            ("two frames code 1", &[0xf9, 1], Some(1920)),
            ("two frames code 2", &[0xfa, 1], Some(1920)),
            ("code 3 three frames", &[0xfb, 0x03], Some(2880)),
            ("code 3 missing count", &[0xfb], None),
            ("code 3 zero frames", &[0xfb, 0x00], None),
            ("code 3 too long", &[0x1b, 0x03], None),
            ("empty", &[], None),
        ];
        for (name, packet, expected) in cases {
            assert_eq!(packet_samples(packet), expected, "{name}");
        }
        assert!(is_stereo(&[0xfc]));
        assert!(!is_stereo(&[0xf8]));
    }

    #[test]
    fn opus_toc_durations() {
        for (packet, want) in [
            (&[][..], 960),
            (&[0xf8][..], 960),        // CELT FB 20 ms, code 0
            (&[0xf9][..], 1920),       // 2 frames
            (&[0xe0][..], 120),        // CELT 2.5 ms
            (&[0x08][..], 960),        // SILK NB 20 ms
            (&[0x18][..], 2880),       // SILK 60 ms
            (&[0x7b, 0x03][..], 2880), // hybrid FB 20 ms, code 3 with 3 frames
        ] {
            let got = frame_samples(packet);
            assert_eq!(got, want, "{packet:x?}");
        }
        // Over 120 ms: not a valid packet (the containers then assume 20 ms).
        assert_eq!(packet_samples(&[0x1b, 0x3f]), None);
    }
}
