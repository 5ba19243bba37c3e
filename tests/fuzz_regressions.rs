//! Replays every input in `fuzz/regressions/<target>/` (inputs that once crashed a fuzz target,
//! see `fuzz/README.md`) through the matching `pion_the_sky::fuzz` function. A panic fails the
//! test; every failing file is listed.
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    media::fuzz::replay_regressions(&root, target, run);
}

#[test]
fn sdp_regressions() {
    replay("sdp", pion_the_sky::fuzz::sdp);
}

#[test]
fn ws_message_regressions() {
    replay("ws_message", pion_the_sky::fuzz::ws_message);
}
