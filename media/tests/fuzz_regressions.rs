//! Replays every input in `fuzz/regressions/<target>/` (inputs that once crashed a fuzz target,
//! see `fuzz/README.md`) through the matching `media::fuzz` function. A panic fails the test;
//! every failing file is listed.
use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

fn replay(target: &str, run: fn(&[u8])) {
    media::fuzz::replay_regressions(&regressions(), target, run);
}

#[test]
fn depack_regressions() {
    replay("depack", media::fuzz::depack);
}

#[test]
fn webm_demux_regressions() {
    replay("webm_demux", media::fuzz::webm_demux);
}

#[test]
fn mp4_demux_regressions() {
    replay("mp4_demux", media::fuzz::mp4_demux);
}

#[test]
fn recover_regressions() {
    replay("recover", media::fuzz::recover);
}

#[test]
fn recorder_regressions() {
    replay("recorder", media::fuzz::recorder);
}
