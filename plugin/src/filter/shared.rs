//! What every HTTP context of a configured root shares: the parsed configuration, the metric
//! ids, handles to shared data, prices and the trace exporter. Its own module so the HTTP
//! context and the root do not import each other.

use std::rc::Rc;

use super::counters::Counters;
use super::shared_store::{SharedStore, SharedStores};
use crate::config::Config;
use crate::pricing::PriceTable;

/// What every HTTP context of a configured root shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The parsed plugin configuration.
    pub(crate) config: Config,
    /// The metric ids.
    pub(crate) counters: Rc<Counters>,
    /// The pipeline's stores (handles to shared data; cheap to clone).
    pub(crate) stores: SharedStores,
    /// The response cache's entries, when it is on.
    pub(crate) responses: Option<SharedStore>,
    /// The built-in prices with the configured overrides.
    pub(crate) prices: PriceTable,
    /// When this VM was configured (for `uptime_seconds`).
    pub(crate) started: std::time::SystemTime,
    /// Start of the budget period whose first rejection this VM has logged (0: none yet).
    pub(crate) budget_warned: std::cell::Cell<u64>,
    /// Models this VM knows have had a response with prompt-cache activity (so the
    /// process-wide set need not be read again for them).
    pub(crate) cache_models_seen: std::cell::RefCell<std::collections::HashSet<String>>,
    /// This VM's Langfuse exporter, when traces are configured and enabled.
    pub(crate) traces: Option<super::traces::Traces>,
}
