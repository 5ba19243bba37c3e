//! The bolt-on gateway: media to and from services that speak plain RTP/UDP.
//!
//! - [`forward`]: a live recording goes out as plain RTP to a `host:port` (video on `port`,
//!   audio on `port + 2`), with an SDP file the receiver reads (`ffmpeg -i forward.sdp`).
//! - [`ingest`]: a plain-RTP stream sent to the ports of an SDP is recorded like any other.
pub mod forward;
pub mod ingest;
