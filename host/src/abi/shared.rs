//! State shared by every VM of the process: the shared-data store and the metrics the guest defines.
//!
//! Both follow Envoy 1.40 (via proxy-wasm-cpp-host): shared data is one key-value map guarded by
//! one mutex, where every successful write bumps the key's CAS token (never 0) and a CAS of 0 means
//! "unconditional"; metrics are process-wide, so a name defined by every worker VM is one metric.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::types::{MetricType, Status};

/// The shared-data store (`proxy_get_shared_data` / `proxy_set_shared_data`).
///
/// As in proxy-wasm-cpp-host (`src/shared_data.cc`, which Envoy 1.40 runs): there is no delete.
/// `proxy_set_shared_data` with a null pointer or a zero length stores an empty value like any
/// other (the key stays, its token is bumped) and `proxy_get_shared_data` then answers OK with a
/// null pointer, a zero length and the token (the Rust SDK: `(None, Some(cas))`). cpp-host's
/// `SharedData::remove` is not reachable from the ABI; keys go only with the whole VM id.
/// Tokens come from one process-wide counter that starts at 1 and skips 0, as cpp-host's
/// `nextCas`.
#[derive(Default)]
pub struct SharedData {
    inner: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    entries: HashMap<Vec<u8>, Entry>,
    /// The last token handed out (0: none yet).
    cas: u32,
}

impl Store {
    fn next_cas(&mut self) -> u32 {
        self.cas = match self.cas.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        self.cas
    }
}

impl std::fmt::Debug for SharedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedData")
            .field("entries", &self.footprint().0)
            .finish()
    }
}

/// A value and its CAS token.
type Entry = (Vec<u8>, u32);

impl SharedData {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value and CAS token of `key`, or `None` when absent.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().entries.get(key).cloned()
    }

    /// Writes `value` under `key` when `cas` is 0 or matches the key's current token.
    ///
    /// A missing key ignores `cas`, as in Envoy. An empty value is stored like any other: the
    /// ABI cannot delete a key.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Status {
        let mut store = self.lock();
        if let Some((_, token)) = store.entries.get(key)
            && cas != 0
            && cas != *token
        {
            return Status::CasMismatch;
        }
        let token = store.next_cas();
        match store.entries.get_mut(key) {
            Some((stored, stored_token)) => {
                stored.clear();
                stored.extend_from_slice(value);
                *stored_token = token;
            }
            None => {
                store.entries.insert(key.to_vec(), (value.to_vec(), token));
            }
        }
        Status::Ok
    }

    /// Replaces the whole store (used by hosts that restore state before the first request).
    pub fn insert(&self, key: &[u8], value: &[u8]) {
        let _ = self.set(key, value, 0);
    }

    /// Number of keys and bytes of keys plus values whose key starts with `prefix` (for
    /// measurements and tests).
    pub fn footprint_of(&self, prefix: &[u8]) -> (usize, usize) {
        let store = self.lock();
        store
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .fold((0, 0), |(n, bytes), (k, (v, _))| {
                (n + 1, bytes + k.len() + v.len())
            })
    }

    /// Number of keys and bytes of keys plus values.
    pub fn footprint(&self) -> (usize, usize) {
        self.footprint_of(b"")
    }
}

/// Envoy's default histogram buckets, so both hosts bucket identically.
pub const HISTOGRAM_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// One metric the guest defined.
pub struct Metric {
    /// The name as the guest defined it, labels encoded (`name.label.value`).
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// Counter or gauge value.
    pub value: AtomicU64,
    /// Histogram state (bucket counts, sum, count).
    pub histogram: Mutex<HistogramState>,
}

/// Accumulated samples of a histogram.
#[derive(Default, Clone)]
pub struct HistogramState {
    /// Cumulative-ready counts per bucket of [`HISTOGRAM_BUCKETS`] (not yet cumulated).
    pub buckets: Vec<u64>,
    /// Sum of every sample.
    pub sum: f64,
    /// Number of samples.
    pub count: u64,
}

/// The metrics the guest defined, shared by every VM.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<MetricsInner>,
}

#[derive(Default)]
struct MetricsInner {
    by_name: HashMap<(String, MetricType), u32>,
    list: Vec<std::sync::Arc<Metric>>,
}

impl Metrics {
    /// Defines (or finds) the metric `name` of `kind`; the id carries the type in its low bits,
    /// as Envoy's does.
    pub fn define(&self, kind: MetricType, name: &str) -> u32 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = inner.by_name.get(&(name.to_string(), kind)) {
            return *id;
        }
        let index = inner.list.len() as u32;
        let id = (index << 2) | kind.tag();
        inner.list.push(std::sync::Arc::new(Metric {
            name: name.to_string(),
            kind,
            value: AtomicU64::new(0),
            histogram: Mutex::new(HistogramState {
                buckets: vec![0; HISTOGRAM_BUCKETS.len()],
                ..HistogramState::default()
            }),
        }));
        inner.by_name.insert((name.to_string(), kind), id);
        id
    }

    fn get(&self, id: u32) -> Option<std::sync::Arc<Metric>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let metric = inner.list.get((id >> 2) as usize)?;
        (metric.kind.tag() == id & 3).then(|| metric.clone())
    }

    /// `proxy_increment_metric`: counters reject deltas ≤ 0; gauges wrap like Envoy's u64 gauges.
    pub fn increment(&self, id: u32, delta: i64) -> Status {
        let Some(metric) = self.get(id) else {
            return Status::NotFound;
        };
        match metric.kind {
            MetricType::Counter if delta <= 0 => Status::BadArgument,
            MetricType::Counter | MetricType::Gauge => {
                metric.value.fetch_add(delta as u64, Ordering::Relaxed);
                Status::Ok
            }
            MetricType::Histogram => Status::BadArgument,
        }
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, records a histogram sample.
    pub fn record(&self, id: u32, value: u64) -> Status {
        let Some(metric) = self.get(id) else {
            return Status::NotFound;
        };
        match metric.kind {
            MetricType::Counter => {
                metric.value.fetch_add(value, Ordering::Relaxed);
            }
            MetricType::Gauge => metric.value.store(value, Ordering::Relaxed),
            MetricType::Histogram => {
                let mut h = metric.histogram.lock().unwrap_or_else(|p| p.into_inner());
                let sample = value as f64;
                if let Some(i) = HISTOGRAM_BUCKETS.iter().position(|le| sample <= *le)
                    && let Some(bucket) = h.buckets.get_mut(i)
                {
                    *bucket += 1;
                }
                h.sum += sample;
                h.count += 1;
            }
        }
        Status::Ok
    }

    /// `proxy_get_metric`: histograms cannot be read back (BAD_ARGUMENT, as in Envoy).
    pub fn value(&self, id: u32) -> Result<u64, Status> {
        let metric = self.get(id).ok_or(Status::NotFound)?;
        match metric.kind {
            MetricType::Histogram => Err(Status::BadArgument),
            _ => Ok(metric.value.load(Ordering::Relaxed)),
        }
    }

    /// A snapshot of every metric, for export.
    pub fn snapshot(&self) -> Vec<std::sync::Arc<Metric>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.list.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_follows_envoy() {
        let data = SharedData::default();
        assert!(data.get(b"k").is_none());
        // A CAS on a missing key is ignored.
        assert_eq!(data.set(b"k", b"v1", 42), Status::Ok);
        let (v, cas) = data.get(b"k").unwrap();
        assert_eq!(v, b"v1");
        assert_eq!(data.set(b"k", b"v2", cas + 1), Status::CasMismatch);
        assert_eq!(data.set(b"k", b"v2", cas), Status::Ok);
        let (v, cas2) = data.get(b"k").unwrap();
        assert_eq!(v, b"v2");
        assert_ne!(cas, cas2);
        assert_eq!(data.set(b"k", b"v3", 0), Status::Ok);
    }

    #[test]
    fn an_empty_value_is_stored_not_deleted() {
        // proxy-wasm-cpp-host (Envoy 1.40): no delete; a null value is an empty value.
        let data = SharedData::default();
        assert_eq!(data.set(b"k", b"v", 0), Status::Ok);
        let (_, cas) = data.get(b"k").unwrap();
        assert_eq!(data.set(b"k", b"", cas), Status::Ok);
        let (v, cas2) = data.get(b"k").unwrap();
        assert!(v.is_empty());
        assert_ne!(cas2, cas, "the write bumps the token");
        assert_eq!(data.footprint(), (1, 1));
        // Tokens are process-wide, as cpp-host's: another key's write draws the next one.
        assert_eq!(data.set(b"other", b"x", 0), Status::Ok);
        assert_eq!(data.get(b"other").unwrap().1, cas2 + 1);
    }

    #[test]
    fn metric_semantics_follow_envoy() {
        let m = Metrics::default();
        let c = m.define(MetricType::Counter, "c");
        assert_eq!(
            m.define(MetricType::Counter, "c"),
            c,
            "same name, same metric"
        );
        let g = m.define(MetricType::Gauge, "g");
        let h = m.define(MetricType::Histogram, "h");
        assert_eq!(m.increment(c, 0), Status::BadArgument);
        assert_eq!(m.increment(c, -1), Status::BadArgument);
        assert_eq!(m.increment(c, 2), Status::Ok);
        assert_eq!(m.record(c, 3), Status::Ok);
        assert_eq!(m.value(c), Ok(5));
        assert_eq!(m.record(g, 7), Status::Ok);
        assert_eq!(m.increment(g, -8), Status::Ok);
        assert_eq!(
            m.value(g),
            Ok(u64::MAX),
            "gauges wrap below zero like Envoy's"
        );
        assert_eq!(m.record(h, 12), Status::Ok);
        assert_eq!(m.value(h), Err(Status::BadArgument));
        assert_eq!(
            m.increment(h ^ 1, 1),
            Status::NotFound,
            "type bits must match"
        );
        assert_eq!(m.value(1000 << 2), Err(Status::NotFound));
    }
}
