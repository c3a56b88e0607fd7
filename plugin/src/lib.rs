//! Headroom's proxy-wasm filter: compresses LLM tool outputs in OpenAI and Anthropic requests
//! in flight and counts what it does, in any proxy-wasm host (Envoy, our wasmtime host, ...).
//!
//! Three layers that depend one way:
//! - The pure modules ([`accounting`], [`api`], [`budget`], [`calendar`], [`config`],
//!   [`credential`], [`fail_open`], [`routing`], [`json`], [`metrics`], [`pipeline`],
//!   [`pricing`], [`record`], [`response_cache`], [`savings`], [`shape`], [`stack_header`],
//!   [`stats`], [`tokens`], [`trace`], [`usage`]) take bytes and return decisions.
//! - The exchange layer (`exchange`, with `shared_store`) makes every per-request decision and
//!   keeps all the books through the [`host`] traits (shared data with CAS, metrics, a clock);
//!   [`host::InMemoryHost`] runs it natively in tests.
//! - `filter` is the thin glue that talks to the proxy-wasm ABI: it implements the host traits
//!   with `hostcalls` and maps callbacks to exchange calls.
//!
//! Why one crate with a `filter` feature rather than a core crate and a cdylib: the boundary a
//! split would enforce is already enforced by the compiler here — `proxy-wasm` is an optional
//! dependency only `filter` enables, and the WIT component builds this crate without it, so
//! any use of proxy-wasm outside `filter/` fails CI's component build. A split would move
//! every path for no further guarantee.

#![warn(missing_docs)]

pub mod accounting;
pub mod api;
pub mod budget;
pub mod calendar;
pub mod config;
pub mod credential;
// The exchange layer and the stores serve the glue; builds without it (the component) skip them.
#[cfg_attr(not(feature = "filter"), allow(dead_code, unused_imports))]
pub(crate) mod exchange;
pub mod fail_open;
pub mod host;
pub mod json;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod pricing;
pub mod record;
pub mod response_cache;
pub mod routing;
pub mod savings;
pub mod shape;
#[cfg_attr(not(feature = "filter"), allow(dead_code))]
pub(crate) mod shared_store;
pub mod stack_header;
pub mod stats;
pub mod tokens;
pub mod trace;
pub mod usage;

// Compiled (and linted) natively too; only its wasm32 entry point registers it. Feature
// `filter` (default): the WIT component builds the pure modules without it.
#[cfg(feature = "filter")]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]
mod filter;
