//! A proxy-wasm ABI 0.2.1 host on wasmtime that behaves the way Envoy 1.40 does.
//!
//! It knows nothing of HTTP servers or of what the filter does: the proxy in [`crate::proxy`]
//! hands it headers and bodies, calls the callbacks, and acts on what the guest asked for.

pub mod imports;
pub mod memory;
pub mod module_cache;
pub mod shared;
pub mod state;
pub mod types;
pub mod vm;
