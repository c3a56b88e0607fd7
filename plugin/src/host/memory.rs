//! [`InMemoryHost`]: the three host traits in memory, with Envoy's semantics where tests can
//! tell (one process-wide CAS counter that is never 0, a missing key ignores the token, no
//! delete; metrics defined on first use).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use super::{Clock, HostError, Metrics, SharedData};
use crate::metrics::{Counter, Histogram};

/// A host in memory: shared data, metrics and a clock that moves only when told to. For
/// native tests of the exchange layer and for embedders without a proxy.
#[derive(Debug)]
pub struct InMemoryHost {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    cas: Cell<u32>,
    counters: RefCell<BTreeMap<String, u64>>,
    gauges: RefCell<BTreeMap<String, u64>>,
    histograms: RefCell<BTreeMap<String, Vec<u64>>>,
    now: Cell<Option<SystemTime>>,
}

impl InMemoryHost {
    /// An empty host whose clock reads `now`.
    pub fn at(now: SystemTime) -> Self {
        Self {
            data: RefCell::default(),
            cas: Cell::new(0),
            counters: RefCell::default(),
            gauges: RefCell::default(),
            histograms: RefCell::default(),
            now: Cell::new(Some(now)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now
            .set(self.now.get().and_then(|now| now.checked_add(by)));
    }

    /// Stops the clock: it can no longer be read (as when the host refuses the call).
    pub fn break_clock(&self) {
        self.now.set(None);
    }

    /// The counter called `name` (0 when never defined).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }

    /// Every counter defined so far, by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.borrow().clone()
    }

    /// The gauge called `name`, if it was ever set.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.gauges.borrow().get(name).copied()
    }

    /// The samples recorded in the histogram called `name`.
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.histograms
            .borrow()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Default for InMemoryHost {
    fn default() -> Self {
        Self::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    }
}

impl SharedData for InMemoryHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Ok(self.data.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
        let mut data = self.data.borrow_mut();
        if let Some((_, current)) = data.get(key)
            && cas.is_some_and(|c| c != 0 && c != *current)
        {
            return Ok(false);
        }
        let token = match self.cas.get().wrapping_add(1) {
            0 => 1,
            n => n,
        };
        self.cas.set(token);
        data.insert(key.to_owned(), (value.to_vec(), token));
        Ok(true)
    }
}

impl Metrics for InMemoryHost {
    fn add(&self, counter: Counter, delta: u64) {
        let mut counters = self.counters.borrow_mut();
        let value = counters.entry(counter.name()).or_default();
        *value = value.saturating_add(delta);
    }

    fn add_named(&self, name: &str, delta: u64) {
        // A zero delta defines nothing, as in the proxy-wasm glue (Envoy rejects it).
        if delta == 0 {
            return;
        }
        let mut counters = self.counters.borrow_mut();
        let value = counters.entry(name.to_owned()).or_default();
        *value = value.saturating_add(delta);
    }

    fn has_named(&self, name: &str) -> bool {
        self.counters.borrow().contains_key(name)
    }

    fn value(&self, counter: Counter) -> u64 {
        self.counter(&counter.name())
    }

    fn value_named(&self, name: &str) -> u64 {
        // Reading defines the metric, as in the proxy-wasm glue.
        *self
            .counters
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
    }

    fn record(&self, histogram: Histogram, value: u64) {
        self.record_named(histogram.name(), value);
    }

    fn record_named(&self, name: &str, value: u64) {
        self.histograms
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .push(value);
    }

    fn set_extremes(&self, histogram: Histogram, min: u64, max: u64) {
        let [min_name, max_name] = histogram.extreme_names();
        self.set_gauge_named(&min_name, min);
        self.set_gauge_named(&max_name, max);
    }

    fn set_gauge_named(&self, name: &str, value: u64) {
        self.gauges.borrow_mut().insert(name.to_owned(), value);
    }
}

impl Clock for InMemoryHost {
    fn now(&self) -> Option<SystemTime> {
        self.now.get()
    }
}
