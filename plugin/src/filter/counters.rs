//! Metric ids: defines every [`Counter`] once per VM and increments them, never failing a
//! request because of a metric.

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::metrics::{COUNTER_COUNT, Counter};

/// The host ids of the filter's counters (`None` where the host refused a definition).
#[derive(Debug)]
pub(crate) struct Counters {
    ids: [Option<u32>; COUNTER_COUNT],
}

impl Counters {
    /// Defines every counter. Hosts return the same id for the same name, so defining again
    /// after a reconfiguration is harmless.
    pub(crate) fn define() -> Self {
        let mut ids = [None; COUNTER_COUNT];
        for (slot, counter) in ids.iter_mut().zip(Counter::ALL) {
            let name = counter.name();
            match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => *slot = Some(id),
                Err(status) => warn!("headroom: cannot define metric {name}: {status:?}"),
            }
        }
        Self { ids }
    }

    /// Adds one to `counter`.
    pub(crate) fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `delta` to `counter`; 0 is skipped (Envoy rejects it with BAD_ARGUMENT).
    pub(crate) fn add(&self, counter: Counter, delta: u64) {
        if delta == 0 {
            return;
        }
        let Some(&Some(id)) = self.ids.get(counter.index()) else {
            return;
        };
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        if let Err(status) = hostcalls::increment_metric(id, delta) {
            debug!("headroom: cannot increment {}: {status:?}", counter.name());
        }
    }
}
