//! What every HTTP context of a configured root shares: the exchange layer's state (with the
//! proxy-wasm host behind it) and this VM's trace exporter. Its own module so the HTTP
//! context and the root do not import each other.

use crate::exchange;

use super::traces::Traces;

/// What every HTTP context of a configured root shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Configuration, host, stores and prices: what the exchange layer works with.
    pub(crate) core: exchange::Shared,
    /// This VM's Langfuse exporter, when traces are configured and enabled.
    pub(crate) traces: Option<Traces>,
}
