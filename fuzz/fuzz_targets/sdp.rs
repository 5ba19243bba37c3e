#![no_main]
//! See `pion_the_sky::fuzz::sdp` for what this exercises.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pion_the_sky::fuzz::sdp(data);
});
