#![no_main]
//! See `media::fuzz::webm_demux` for what this exercises and how the input is read.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media::fuzz::webm_demux(data);
});
