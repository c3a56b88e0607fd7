//! The compression pipeline: pure functions from a request body (or one tool output) to its
//! compressed form, with no proxy-wasm dependency. The filter glue and the WIT component call
//! [`compress_request`] and back the stores with shared data.
//!
//! - [`detect`]: what a tool output is (JSON, diff, HTML, search results, log, code, text).
//! - [`json_crush`], [`log`], [`search`], [`diff`], [`text`]: one compressor per kind.
//! - [`signals`], [`relevance`], [`adaptive`]: which items matter and how many to keep.
//! - [`hash`], [`marker`], [`store`]: the one content hash, the one marker grammar, the
//!   omitted-original and replay stores.
//! - [`block`]: one text through detection and its compressor.
//! - [`request`]: eligibility, replay, the token gate and byte-range splicing for a body.
//! - [`waste`]: the waste signals of the tool outputs a request adds.
//! - [`config`]: every knob.

pub mod adaptive;
pub mod block;
mod byte_class;
pub mod config;
pub mod detect;
pub mod diff;
mod fixed_hash;
pub mod hash;
pub mod json_crush;
mod lines;
pub mod log;
pub mod marker;
mod needle;
pub mod relevance;
pub mod request;
pub mod search;
pub mod settle;
mod short_eq;
pub mod signals;
pub mod store;
pub mod text;
pub mod waste;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod prefix_tests;
#[cfg(test)]
mod real_corpus;
#[cfg(test)]
pub(crate) mod tests;

pub use config::PipelineConfig;
pub use hash::{ContentHash, MarkerKey};
pub use request::{
    BlockReport, BlockTiming, Decision, MemoryHost, Outcome, PipelineHost, compress_request,
    compress_request_unsettled,
};
pub use settle::Unsettled;
pub use store::{OmittedStore, ReplayEntry, ReplayStore, Sent};
