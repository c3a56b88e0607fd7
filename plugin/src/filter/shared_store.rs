//! The pipeline's two stores in proxy-wasm shared data, so every VM of the gateway (every
//! Envoy worker, every host worker) and every reloaded VM sees the same entries.
//!
//! Each store keeps one value per entry (`headroom.<store>.<hash>`) and one index
//! (`headroom.<store>.index`, a [`FifoIndex`]) that orders entries for eviction within the
//! byte budget. The index is updated with compare-and-swap and retried on a conflict; the
//! entry is written after the index, so a reader that races a writer sees the entry as absent,
//! never half-written. Any host error reads as "absent" and skips the write: a store is a cache,
//! and losing an entry only costs a later recompression.

use log::debug;
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::pipeline::store::FifoIndex;
use crate::pipeline::{ContentHash, OmittedStore, PipelineHost, ReplayStore};

/// How often a conflicting index update is retried before the write is dropped.
const CAS_ATTEMPTS: usize = 8;

/// One byte-bounded store in shared data.
#[derive(Debug, Clone)]
pub(crate) struct SharedStore {
    /// `headroom.omitted` or `headroom.replay`.
    namespace: &'static str,
    budget: usize,
}

impl SharedStore {
    /// The originals of lossy compressions.
    pub(crate) fn omitted(budget: u64) -> Self {
        Self::new("headroom.omitted", budget)
    }

    /// The replay map.
    pub(crate) fn replay(budget: u64) -> Self {
        Self::new("headroom.replay", budget)
    }

    fn new(namespace: &'static str, budget: u64) -> Self {
        Self {
            namespace,
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
        }
    }

    fn entry_key(&self, hash: ContentHash) -> String {
        format!("{}.{hash}", self.namespace)
    }

    fn index_key(&self) -> String {
        format!("{}.index", self.namespace)
    }

    /// The value under `hash`; empty values are deleted entries.
    pub(crate) fn read(&self, hash: ContentHash) -> Option<Vec<u8>> {
        match hostcalls::get_shared_data(&self.entry_key(hash)) {
            Ok((Some(value), _)) if !value.is_empty() => Some(value),
            Ok(_) => None,
            Err(status) => {
                debug!("headroom: cannot read {}: {status:?}", self.namespace);
                None
            }
        }
    }

    /// Stores `value` under `hash` unless an entry exists (first write wins).
    fn write(&self, hash: ContentHash, value: &[u8]) {
        let index_key = self.index_key();
        for _ in 0..CAS_ATTEMPTS {
            let (raw, cas) = match hostcalls::get_shared_data(&index_key) {
                Ok(found) => found,
                Err(status) => {
                    debug!("headroom: cannot read {index_key}: {status:?}");
                    return;
                }
            };
            let mut index = FifoIndex::decode(raw.as_deref().unwrap_or_default());
            if index.contains(hash) {
                return;
            }
            let Some(evicted) = index.admit(hash, value.len(), self.budget) else {
                return;
            };
            match hostcalls::set_shared_data(&index_key, Some(&index.encode()), cas) {
                Ok(()) => {
                    self.set(&self.entry_key(hash), value);
                    for old in evicted {
                        // proxy-wasm 0.2.1 cannot delete a key: an empty value frees the bytes.
                        self.set(&self.entry_key(old), &[]);
                    }
                    return;
                }
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    debug!("headroom: cannot write {index_key}: {status:?}");
                    return;
                }
            }
        }
        debug!("headroom: {index_key} kept changing; entry not stored");
    }

    fn set(&self, key: &str, value: &[u8]) {
        if let Err(status) = hostcalls::set_shared_data(key, Some(value), None) {
            debug!("headroom: cannot write {key}: {status:?}");
        }
    }
}

impl OmittedStore for SharedStore {
    fn put(&mut self, hash: ContentHash, original: &[u8]) {
        self.write(hash, original);
    }

    fn get(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.read(hash)
    }
}

impl ReplayStore for SharedStore {
    fn get(&self, key: ContentHash) -> Option<Vec<u8>> {
        self.read(key)
    }

    fn put(&mut self, key: ContentHash, entry: &[u8]) {
        self.write(key, entry);
    }
}

/// The [`PipelineHost`] of the filter: both stores in shared data.
#[derive(Debug, Clone)]
pub(crate) struct SharedStores {
    /// Originals of lossy compressions, served by the retrieval endpoint.
    pub(crate) omitted: SharedStore,
    /// Decisions replayed on later turns.
    pub(crate) replay: SharedStore,
    /// Transform timings of the request being compressed (transform, µs).
    pub(crate) timed: Vec<(&'static str, u64)>,
}

impl PipelineHost for SharedStores {
    fn omitted(&mut self) -> &mut dyn OmittedStore {
        &mut self.omitted
    }

    fn replay(&mut self) -> &mut dyn ReplayStore {
        &mut self.replay
    }

    fn now_us(&self) -> Option<u64> {
        let now = hostcalls::get_current_time().ok()?;
        let since = now.duration_since(std::time::UNIX_EPOCH).ok()?;
        u64::try_from(since.as_micros()).ok()
    }

    fn timed(&mut self, transform: &'static str, us: u64) {
        self.timed.push((transform, us));
    }
}

/// A bounded, process-wide set of label values (shared by every VM, so the bound holds for the
/// whole gateway), stored one value per line under `key`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelSet {
    key: &'static str,
    cap: usize,
}

/// Model labels: at most 48; later models count as `other`.
pub(crate) const MODELS: LabelSet = LabelSet {
    key: "headroom.labels.model",
    cap: 48,
};

/// Stack labels (`X-Headroom-Stack`): at most [`MAX_DISTINCT_STACKS`](crate::stack::MAX_DISTINCT_STACKS).
pub(crate) const STACKS: LabelSet = LabelSet {
    key: "headroom.labels.stack",
    cap: crate::stack::MAX_DISTINCT_STACKS,
};

/// Models that have had a response with prompt-cache activity (for the bust rule); beyond
/// the cap every model counts as seen.
pub(crate) const CACHE_MODELS: LabelSet = LabelSet {
    key: "headroom.labels.cache_model",
    cap: CACHE_MODELS_CAP,
};

/// How many models [`CACHE_MODELS`] holds.
pub(crate) const CACHE_MODELS_CAP: usize = 256;

/// What adding a value to a [`LabelSet`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// It was there already.
    Present,
    /// It is there now.
    Added,
    /// No room for it.
    Full,
    /// Shared data failed (or kept changing): unknown.
    Failed,
}

impl LabelSet {
    /// Adds `value` if it is absent and there is room (compare-and-swap, retried).
    fn insert(self, value: &str) -> Insert {
        for _ in 0..CAS_ATTEMPTS {
            let (stored, cas) = match hostcalls::get_shared_data(self.key) {
                Ok(found) => found,
                Err(status) => {
                    debug!("headroom: cannot read {}: {status:?}", self.key);
                    return Insert::Failed;
                }
            };
            let (admitted, update) = crate::accounting::admit_label(
                stored.as_deref().unwrap_or_default(),
                value,
                self.cap,
            );
            let Some(update) = update else {
                return if admitted {
                    Insert::Present
                } else {
                    Insert::Full
                };
            };
            match hostcalls::set_shared_data(self.key, Some(&update), cas) {
                Ok(()) => return Insert::Added,
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    debug!("headroom: cannot write {}: {status:?}", self.key);
                    return Insert::Failed;
                }
            }
        }
        Insert::Failed
    }

    /// Whether `value` has (or now gets) its own label.
    pub(crate) fn admit(self, value: &str) -> bool {
        matches!(self.insert(value), Insert::Present | Insert::Added)
    }

    /// Whether `value` was in the set before this call (it is added when there is room; a full
    /// set, or a shared-data failure, answers true).
    pub(crate) fn seen_before(self, value: &str) -> bool {
        self.insert(value) != Insert::Added
    }

    /// Every value admitted so far, in order of first use.
    pub(crate) fn values(self) -> Vec<String> {
        match hostcalls::get_shared_data(self.key) {
            Ok((Some(stored), _)) => crate::accounting::stored_labels(&stored),
            _ => Vec::new(),
        }
    }
}

/// Where the budget's [`BudgetState`](crate::budget::BudgetState) lives.
const BUDGET_KEY: &str = "headroom.budget";

/// The budget state of the current period (a fresh one when absent or unreadable).
pub(crate) fn budget_state(period: crate::budget::Period, now: u64) -> crate::budget::BudgetState {
    let stored = match hostcalls::get_shared_data(BUDGET_KEY) {
        Ok((Some(stored), _)) => crate::budget::BudgetState::decode(&stored),
        _ => None,
    };
    stored.unwrap_or_default().current(period, now)
}

/// Rewrites the value under `key` with `update` (given the stored bytes, empty when absent)
/// by compare-and-swap, retried on a conflict. Returns the value written, or `None` when
/// shared data failed or kept changing (a lost update only blurs a statistic).
fn update_shared(key: &str, mut update: impl FnMut(&[u8]) -> Vec<u8>) -> Option<Vec<u8>> {
    for _ in 0..CAS_ATTEMPTS {
        let (stored, cas) = hostcalls::get_shared_data(key).ok()?;
        let value = update(stored.as_deref().unwrap_or_default());
        match hostcalls::set_shared_data(key, Some(&value), cas) {
            Ok(()) => return Some(value),
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                debug!("headroom: cannot write {key}: {status:?}");
                return None;
            }
        }
    }
    debug!("headroom: {key} kept changing; update dropped");
    None
}

/// Adds `cost_usd` to the budget state, rolling over at the period boundary.
pub(crate) fn spend(period: crate::budget::Period, cost_usd: f64, now: u64) {
    update_shared(BUDGET_KEY, |stored| {
        let mut state = crate::budget::BudgetState::decode(stored).unwrap_or_default();
        state.add(period, cost_usd, now);
        state.encode()
    });
}

/// Where the process-wide [`Timings`](crate::stats::Timings) live.
const TIMINGS_KEY: &str = "headroom.timings";

/// Adds one exchange's samples (microseconds, per histogram) to the process-wide timings in a
/// single compare-and-swap, and returns the timings as they now stand.
pub(crate) fn record_timings(
    samples: &[(crate::metrics::Histogram, u64)],
) -> Option<crate::stats::Timings> {
    let mut latest = crate::stats::Timings::default();
    update_shared(TIMINGS_KEY, |stored| {
        latest = crate::stats::Timings::decode(stored);
        for &(histogram, us) in samples {
            latest.get_mut(histogram).record(us);
        }
        latest.encode()
    })?;
    Some(latest)
}

/// Shared-data key of the per-transform timings.
const TRANSFORM_TIMINGS_KEY: &str = "headroom.timings.transforms";

/// Adds per-transform samples to the process-wide record (one CAS update per request).
pub(crate) fn record_transform_timings(samples: &[(String, u64)]) {
    if samples.is_empty() {
        return;
    }
    update_shared(TRANSFORM_TIMINGS_KEY, |stored| {
        let mut timings = crate::stats::TransformTimings::decode(stored);
        for (transform, us) in samples {
            timings.record(transform, *us);
        }
        timings.encode()
    });
}

/// The process-wide per-transform timings.
pub(crate) fn transform_timings() -> crate::stats::TransformTimings {
    match hostcalls::get_shared_data(TRANSFORM_TIMINGS_KEY) {
        Ok((Some(stored), _)) => crate::stats::TransformTimings::decode(&stored),
        _ => crate::stats::TransformTimings::default(),
    }
}

/// The process-wide timings.
pub(crate) fn timings() -> crate::stats::Timings {
    match hostcalls::get_shared_data(TIMINGS_KEY) {
        Ok((Some(stored), _)) => crate::stats::Timings::decode(&stored),
        _ => crate::stats::Timings::default(),
    }
}

/// Proxy-wasm shared data as the savings ledger's [`KeyValue`](crate::savings::KeyValue):
/// host errors read as absent and as a failed write.
pub(crate) struct ProxyKv;

impl crate::savings::KeyValue for ProxyKv {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            Ok(_) => None,
            Err(status) => {
                debug!("headroom: cannot read {key}: {status:?}");
                None
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => true,
            Err(Status::CasMismatch) => false,
            Err(status) => {
                debug!("headroom: cannot write {key}: {status:?}");
                false
            }
        }
    }
}

/// The savings ledger (the head and at most the newest `points` checkpoints) and where the
/// host keeps it.
pub(crate) fn savings(points: u64) -> (crate::savings::Ledger, crate::savings::StorageInfo) {
    let ledger = crate::savings::read_shared_tail(&ProxyKv, points);
    let storage = crate::savings::KeyValue::get(&ProxyKv, crate::savings::STORAGE_KEY)
        .and_then(|(bytes, _)| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    (ledger, storage)
}
