#![no_main]
//! Fuzz target `savings_file`: see `fuzz/src/lib.rs` for what it checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_fuzz::savings_file(data);
});
