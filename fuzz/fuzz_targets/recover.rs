#![no_main]
//! See `media::fuzz::recover` for what this exercises and how the input is read.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media::fuzz::recover(data);
});
