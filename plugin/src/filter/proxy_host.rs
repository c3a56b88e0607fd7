//! The proxy-wasm host behind the [`crate::host`] traits: shared data and the clock through
//! `hostcalls`, and the metrics — every [`Counter`] and [`Histogram`] defined once per VM,
//! open-ended label values (models) on first use — updated without ever failing a request
//! because of a metric.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::host::{Clock, HostError, Metrics, SharedData};
use crate::metrics::{Counter, Histogram};

/// The proxy-wasm host: the host ids of the filter's metrics (absent where the host refused a
/// definition); shared data and the clock need no state.
#[derive(Debug)]
pub(crate) struct ProxyHost {
    ids: HashMap<Counter, u32>,
    histograms: HashMap<Histogram, u32>,
    /// The `_min` and `_max` gauges of each histogram.
    extremes: HashMap<Histogram, [Option<u32>; 2]>,
    /// Counters named at run time (`headroom_requests_by_model.model.<m>`), by full name.
    dynamic: RefCell<HashMap<String, Option<u32>>>,
}

impl ProxyHost {
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

    /// The id of the metric called `name`, defined as `kind` on first use (`None` when the host
    /// refused it).
    fn named_id(&self, name: &str, kind: MetricType) -> Option<u32> {
        let mut dynamic = self.dynamic.try_borrow_mut().ok()?;
        *dynamic
            .entry(name.to_owned())
            .or_insert_with(|| define(kind, name))
    }
}

impl Metrics for ProxyHost {
    fn add(&self, counter: Counter, delta: u64) {
        if let Some(&id) = self.ids.get(&counter) {
            increment(id, delta, &counter.name());
        }
    }

    fn has_named(&self, name: &str) -> bool {
        self.dynamic
            .try_borrow()
            .is_ok_and(|d| d.get(name).is_some_and(Option::is_some))
    }

    fn add_named(&self, name: &str, delta: u64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.named_id(name, MetricType::Counter) {
            increment(id, delta, name);
        }
    }

    fn value(&self, counter: Counter) -> u64 {
        self.ids
            .get(&counter)
            .and_then(|&id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }

    fn value_named(&self, name: &str) -> u64 {
        self.named_id(name, MetricType::Counter)
            .and_then(|id| hostcalls::get_metric(id).ok())
            .unwrap_or(0)
    }

    fn set_extremes(&self, histogram: Histogram, min: u64, max: u64) {
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

    fn set_gauge_named(&self, name: &str, value: u64) {
        if let Some(id) = self.named_id(name, MetricType::Gauge)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot set {name}: {status:?}");
        }
    }

    fn record_named(&self, name: &str, value: u64) {
        if let Some(id) = self.named_id(name, MetricType::Histogram)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot record {name}: {status:?}");
        }
    }

    fn record(&self, histogram: Histogram, value: u64) {
        if let Some(&id) = self.histograms.get(&histogram)
            && let Err(status) = hostcalls::record_metric(id, value)
        {
            debug!("headroom: cannot record {}: {status:?}", histogram.name());
        }
    }
}

impl SharedData for ProxyHost {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        match hostcalls::get_shared_data(key) {
            // An empty value comes back as no bytes with a token: present.
            Ok((value, Some(cas))) => Ok(Some((value.unwrap_or_default(), cas))),
            Ok((Some(value), None)) => Ok(Some((value, 0))),
            Ok((None, None)) => Ok(None),
            Err(status) => {
                debug!("headroom: cannot read {key}: {status:?}");
                Err(HostError)
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(status) => {
                debug!("headroom: cannot write {key}: {status:?}");
                Err(HostError)
            }
        }
    }
}

impl Clock for ProxyHost {
    fn now(&self) -> Option<SystemTime> {
        hostcalls::get_current_time().ok()
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
