//! The proxy-wasm glue: the only code that talks to the ABI. It moves header values and body
//! bytes between the host and the pure modules and acts on their decisions. Every host call
//! goes through a `hostcalls::*` function that returns `Result`; errors are logged and the
//! request fails open.

mod abi;
mod http;
mod proxy_host;
mod root;
mod shared;
mod traces;

pub use root::HeadroomRoot;

// The module's entry point (`_initialize`): logging at info and the root context factory.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(HeadroomRoot::default())
    });
}}
