//! What the filter needs from the proxy it runs in, as three small traits: shared data with
//! compare-and-swap ([`SharedData`]), metrics ([`Metrics`]) and a clock ([`Clock`]). The
//! exchange layer ([`crate::exchange`]) and the stores ([`crate::shared_store`]) reach the
//! proxy only through them: the proxy-wasm glue implements them with `hostcalls`, and
//! [`InMemoryHost`] implements them in memory so every decision and all bookkeeping is tested
//! natively.

mod memory;

use std::time::{SystemTime, UNIX_EPOCH};

pub use memory::InMemoryHost;

use crate::metrics::{Counter, Histogram};

/// A shared-data failure (the host answered neither OK, NOT_FOUND nor CAS_MISMATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// Process-wide shared data, as proxy-wasm defines it: a value and a compare-and-swap token
/// per key, and no delete (proxy-wasm 0.2.1 has none).
pub trait SharedData {
    /// The value and CAS token under `key`, `None` when absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes `value` when `cas` is `None` or the key's token (or the key is absent); `false`
    /// on a CAS mismatch.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError>;
}

/// The process's metrics. Label values travel in the name (see [`crate::metrics`]); a metric
/// named at run time is defined on first use. Updating a metric never fails a request: a host
/// that refuses one loses the update.
pub trait Metrics {
    /// Adds `delta` to `counter`.
    fn add(&self, counter: Counter, delta: u64);
    /// Adds one to `counter`.
    fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }
    /// Adds `delta` to the counter called `name`.
    fn add_named(&self, name: &str, delta: u64);
    /// Adds one to the counter called `name`.
    fn inc_named(&self, name: &str) {
        self.add_named(name, 1);
    }
    /// Whether the counter called `name` has been defined (so its label was admitted).
    fn has_named(&self, name: &str) -> bool;
    /// The current value of `counter`, summed over the process.
    fn value(&self, counter: Counter) -> u64;
    /// The current value of the counter called `name` (0 when never defined).
    fn value_named(&self, name: &str) -> u64;
    /// Records one sample of `histogram`.
    fn record(&self, histogram: Histogram, value: u64);
    /// Records one sample of the histogram called `name`.
    fn record_named(&self, name: &str, value: u64);
    /// Sets the `_min` and `_max` gauges of `histogram`.
    fn set_extremes(&self, histogram: Histogram, min: u64, max: u64);
    /// Sets the gauge called `name`.
    fn set_gauge_named(&self, name: &str, value: u64);
}

/// The host's clock.
pub trait Clock {
    /// Now; `None` when the clock cannot be read.
    fn now(&self) -> Option<SystemTime>;
    /// Unix seconds now.
    fn unix_now(&self) -> Option<u64> {
        Some(self.now()?.duration_since(UNIX_EPOCH).ok()?.as_secs())
    }
    /// Microseconds since the Unix epoch now.
    fn now_us(&self) -> Option<u64> {
        let since = self.now()?.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since.as_micros()).ok()
    }
}

/// Everything the exchange layer needs from its proxy.
pub trait Host: SharedData + Metrics + Clock {}

impl<T: SharedData + Metrics + Clock + ?Sized> Host for T {}

/// Shared data as the savings ledger's [`KeyValue`](crate::savings::KeyValue): host errors
/// read as absent and as a failed write.
pub struct LedgerData<'a>(pub &'a dyn SharedData);

impl crate::savings::KeyValue for LedgerData<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.get(key).ok().flatten()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.set(key, value, cas).unwrap_or(false)
    }
}

/// Microseconds from `from` to `to` (0 if the clock went backwards); `None` without both.
pub fn elapsed_us(from: Option<SystemTime>, to: Option<SystemTime>) -> Option<u64> {
    let elapsed = to?.duration_since(from?).unwrap_or_default();
    Some(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}
