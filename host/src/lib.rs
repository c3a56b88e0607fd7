//! `headroom`: a small, faithful proxy-wasm host for the Headroom filter.
//!
//! It runs the same `.wasm` Envoy loads, through the same ABI, and adds what a standalone proxy
//! needs: an HTTP server and client, a Prometheus registry and a CLI. It decides nothing about
//! compression or what a metric means: the filter does.
//!
//! - [`abi`]: the proxy-wasm ABI host on wasmtime (imports, VMs, shared data, metrics).
//! - [`proxy`]: the HTTP proxy that drives each request through a worker's VM.
//! - [`metrics`]: the Prometheus registry.
//! - [`compress`]: the compression pipeline as a WebAssembly component, for
//!   `headroom compress`.
//! - [`paths`]: where the savings file and the request database live.
//! - [`savings_file`]: the savings ledger's file, loaded into shared data and saved back.
//! - [`records`]: stored per-request metrics (log file, database).
//! - [`operator`]: the record endpoints and the setup checks, on the proxy's endpoint hook.
//! - [`otel`]: OpenTelemetry metrics (OTLP/HTTP or console) from the records and the registry.

pub mod abi;
pub mod compress;
pub mod metrics;
pub mod operator;
pub mod otel;
pub mod paths;
pub mod proxy;
pub mod records;
pub mod savings_file;

/// The filter built from `plugin/` into this binary (wasm32-wasip1).
pub const EMBEDDED_PLUGIN: &[u8] = include_bytes!(env!("HEADROOM_PLUGIN_WASM"));

/// The compression pipeline built from `component/` into this binary: a WebAssembly component
/// (wasm32-wasip2) exporting `wit/headroom.wit`.
pub const EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("HEADROOM_COMPONENT_WASM"));
