//! Metric ids: defines every [`Counter`] and [`Histogram`] once per VM, defines open-ended
//! label values (models) on first use, and updates them, never failing a request because of a
//! metric.

use std::cell::RefCell;
use std::collections::HashMap;

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::metrics::{Counter, Histogram};

/// The host ids of the filter's metrics (absent where the host refused a definition).
#[derive(Debug)]
pub(crate) struct Counters {
    ids: HashMap<Counter, u32>,
    histograms: HashMap<Histogram, u32>,
    /// The `_min` and `_max` gauges of each histogram.
    extremes: HashMap<Histogram, [Option<u32>; 2]>,
    /// Counters named at run time (`headroom_requests_by_model.model.<m>`), by full name.
    dynamic: RefCell<HashMap<String, Option<u32>>>,
}

impl Counters {
    /// Defines every fixed metric. Hosts return the same id for the same name, so defining
    /// again after a reconfiguration is harmless.
    pub(crate) fn define() -> Self {
        let ids = Counter::all()
            .into_iter()
            .filter_map(|counter| Some((counter, define(MetricType::Counter, &counter.name())?)))
            .collect();
        let histograms = Histogram::ALL
            .into_iter()
            .filter_map(|h| Some((h, define(MetricType::Histogram, h.name())?)))
            .collect();
        let extremes = Histogram::ALL
            .into_iter()
            .map(|h| (h, h.extreme_names().map(|n| define(MetricType::Gauge, &n))))
            .collect();
        Self {
            ids,
            histograms,
            extremes,
            dynamic: RefCell::default(),
        }
    }

    /// Adds one to `counter`.
    pub(crate) fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `delta` to `counter`; 0 is skipped (Envoy rejects it with BAD_ARGUMENT).
    pub(crate) fn add(&self, counter: Counter, delta: u64) {
        if let Some(&id) = self.ids.get(&counter) {
            increment(id, delta, &counter.name());
        }
    }

    /// Whether this VM has defined the counter called `name` (so its label was admitted).
    pub(crate) fn has_named(&self, name: &str) -> bool {
        self.dynamic
            .try_borrow()
            .is_ok_and(|d| d.get(name).is_some_and(Option::is_some))
    }

    /// The id of the metric called `name`, defined as `kind` on first use (`None` when the host
    /// refused it).
    fn named_id(&self, name: &str, kind: MetricType) -> Option<u32> {
        let mut dynamic = self.dynamic.try_borrow_mut().ok()?;
        *dynamic
            .entry(name.to_owned())
            .or_insert_with(|| define(kind, name))
    }

    /// Adds one to the counter called `name`, defining it on first use.
    pub(crate) fn inc_named(&self, name: &str) {
        self.add_named(name, 1);
    }

    /// Adds `delta` to the counter called `name`, defining it on first use.
    pub(crate) fn add_named(&self, name: &str, delta: u64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.named_id(name, MetricType::Counter) {
            increment(id, delta, name);
        }
    }

    /// The current value of `counter`, summed over every VM of the process.
    pub(crate) fn get(&self, counter: Counter) -> u64 {
        self.ids
            .get(&counter)
            .and_then(|&id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }

    /// The current value of the counter called `name` (0 when never defined).
    pub(crate) fn get_named(&self, name: &str) -> u64 {
        self.named_id(name, MetricType::Counter)
            .and_then(|id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }

    /// Sets the `_min` and `_max` gauges of `histogram` (process-wide values, so every VM
    /// writes the same figures).
    pub(crate) fn set_extremes(&self, histogram: Histogram, min: u64, max: u64) {
        let Some(ids) = self.extremes.get(&histogram) else {
            return;
        };
        for (id, value) in ids.iter().zip([min, max]) {
            if let Some(id) = id
                && let Err(status) = hostcalls::record_metric(*id, value)
            {
                debug!(
                    "headroom: cannot set a gauge of {}: {status:?}",
                    histogram.name()
                );
            }
        }
    }

    /// Sets the gauge called `name` to `value`, defining it on first use.
    pub(crate) fn set_gauge_named(&self, name: &str, value: u64) {
        if let Some(id) = self.named_id(name, MetricType::Gauge)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot set {name}: {status:?}");
        }
    }

    /// Records one sample of the histogram called `name`, defining it on first use.
    pub(crate) fn record_named(&self, name: &str, value: u64) {
        if let Some(id) = self.named_id(name, MetricType::Histogram)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot record {name}: {status:?}");
        }
    }

    /// Records one sample of `histogram`.
    pub(crate) fn record(&self, histogram: Histogram, value: u64) {
        if let Some(&id) = self.histograms.get(&histogram)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot record {}: {status:?}", histogram.name());
        }
    }
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            warn!("headroom: cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn increment(id: u32, delta: u64, name: &str) {
    if delta == 0 {
        return;
    }
    let delta = i64::try_from(delta).unwrap_or(i64::MAX);
    if let Err(status) = hostcalls::increment_metric(id, delta) {
        debug!("headroom: cannot increment {name}: {status:?}");
    }
}
