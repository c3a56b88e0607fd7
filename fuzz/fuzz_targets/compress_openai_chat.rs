#![no_main]
//! Fuzz target `compress_openai_chat`: see `fuzz/src/lib.rs` for what it checks.

use headroom_plugin::api::Api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = headroom_fuzz::compress(Api::OpenAiChat, data);
});
