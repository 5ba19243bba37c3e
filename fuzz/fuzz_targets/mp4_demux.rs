#![no_main]
//! See `media::fuzz::mp4_demux` for what this exercises and how the input is read.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media::fuzz::mp4_demux(data);
});
