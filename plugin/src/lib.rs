//! Headroom's proxy-wasm filter: compresses LLM tool outputs in OpenAI and Anthropic requests
//! in flight and counts what it does, in any proxy-wasm host (Envoy, our wasmtime host, ...).
//!
//! The pure modules ([`accounting`], [`api`], [`budget`], [`calendar`], [`config`], [`credential`], [`fail_open`], [`routing`],
//! [`json`], [`metrics`], [`pipeline`], [`pricing`], [`record`], [`response_cache`], [`savings`], [`shape`], [`stack_header`], [`stats`], [`tokens`],
//! [`trace`], [`usage`]) take bytes and return decisions; they have no proxy-wasm dependency and are tested
//! natively. `filter` is the thin glue that talks to the proxy-wasm ABI.

#![warn(missing_docs)]

pub mod accounting;
pub mod api;
pub mod budget;
pub mod calendar;
pub mod config;
pub mod credential;
pub mod fail_open;
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
