//! Fuzz entry points for the server crate: plain functions over untrusted bytes, shared by the
//! cargo-fuzz targets in `fuzz/fuzz_targets/` and by `tests/fuzz_regressions.rs`.
//!
//! Contract: none of these functions may panic, whatever the input. A panic is a bug in the
//! code under test (the input reached the server from a browser).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use app::protocol::{ClientMessage, MAX_MESSAGE_BYTES};
use media::Codec;

use crate::rtc::sdp as planner;

/// The SDP planner on an arbitrary offer: what `Rtc::accept_recorder` / `accept_viewer` do
/// with the browser's SDP before any WebRTC object exists, plus the answer-side helpers
/// (`negotiated`, `advertise_public_ips`).
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    for video in [Codec::H264, Codec::Vp8] {
        if let Ok(plan) = planner::plan_recorder(text, video) {
            let _ = plan.pt_map();
            let _ = planner::negotiated(text, &plan);
        }
    }
    if let Ok(plan) = planner::plan_viewer(text) {
        let _ = plan.pt_map();
        let _ = planner::negotiated(text, &plan);
    }
    let ips = [
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
    ];
    let one = planner::advertise_public_ips(text, &ips[..1]);
    let both = planner::advertise_public_ips(text, &ips);
    // The rewritten SDP is what the browser gets back; it must still be readable.
    let _ = planner::plan_viewer(&one);
    let _ = planner::plan_viewer(&both);
}

/// One websocket text message: `ClientMessage::parse`, and for a valid message the round trip
/// through `to_json` (which must parse back to the same message).
pub fn ws_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(message) = ClientMessage::parse(&text) else {
        return;
    };
    let json = message.to_json();
    if json.len() > MAX_MESSAGE_BYTES {
        // The canonical form can be a few bytes longer than the original (an added
        // `"loop":true`, a single recording id written as a list): over the limit it is
        // rightly refused as too large.
        return;
    }
    match ClientMessage::parse(&json) {
        Ok(again) => assert_eq!(again, message, "to_json does not round-trip: {json}"),
        Err(e) => panic!("to_json of a valid message does not parse ({e}): {json}"),
    }
}
