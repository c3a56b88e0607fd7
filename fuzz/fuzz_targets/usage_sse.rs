#![no_main]
//! Fuzz target `usage_sse`: see `fuzz/src/lib.rs` for what it checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_fuzz::usage_input(data, true);
});
