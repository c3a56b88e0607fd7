#![no_main]
//! Fuzz target `compress_openai_responses`: see `fuzz/src/lib.rs` for what it checks.

use headroom_plugin::api::Api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = headroom_fuzz::compress(Api::OpenAiResponses, data);
});
