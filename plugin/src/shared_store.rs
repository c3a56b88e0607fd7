//! The pipeline's two stores in proxy-wasm shared data, so every VM of the gateway (every
//! Envoy worker, every host worker) and every reloaded VM sees the same entries.
//!
//! proxy-wasm 0.2.1 has no way to delete a key: Envoy (proxy-wasm-cpp-host) stores a null or
//! empty value like any other, and the key stays for the life of the VM id. So a store never
//! creates a key per entry: it reuses a fixed set of keys whose number the budget bounds — a
//! ring of `R = budget / ENTRY_OVERHEAD` positions and `R / 4` buckets:
//!
//! - `<ns>.head` (40 bytes, compare-and-swap): the oldest and the next position, the bytes
//!   charged, `R`, and the newest entry's hash and charge.
//! - `<ns>.r.<p mod R>` (20 bytes): position `p`, its hash and charge. Written once per position,
//!   by the writer that claimed `p` or by any later writer that finds it missing (from the
//!   head's newest entry), so an eviction never waits for another VM.
//! - `<ns>.v.<p mod R>`: `p`, the hash and the value; an evicted entry is overwritten with its
//!   16-byte tombstone (`p` and the hash).
//! - `<ns>.b.<hash mod R/4>` (compare-and-swap): (hash, position) pairs, so a hash finds its slot.
//!
//! An insert costs O(1) operations on small values (the head, one ring slot, one bucket) plus the
//! value itself; each eviction one ring-slot read, one tombstone and one bucket update. A slot
//! only moves forward (a write checks by compare-and-swap that the slot holds an older position),
//! so a slow writer never clobbers a newer entry, and a reader checks that the slot holds the
//! position and hash the bucket named and that the position is not older than the head's oldest:
//! a reader racing a writer sees the entry absent, never half-written. Any host error reads as
//! absent and skips the write: a store is a cache, and losing an entry only costs a later
//! recompression.

use std::rc::Rc;

use log::debug;

use crate::credential::ScopedStore;
use crate::host::{Clock, HostError, LedgerData, SharedData};
use crate::pipeline::store::ENTRY_OVERHEAD;
use crate::pipeline::{ContentHash, OmittedStore, PipelineHost, ReplayStore};
use crate::response_cache;

/// How often a conflicting update is retried before the write is dropped.
const CAS_ATTEMPTS: usize = 8;

/// The token a compare-and-swap passes for a key it read as absent: Envoy ignores the token of a
/// missing key, and a key created meanwhile carries another token (unless its last write drew
/// exactly this one from Envoy's process-wide counter).
const EXPECT_ABSENT: u32 = u32::MAX;

/// The head record of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// The oldest live position.
    first: u64,
    /// The next position to claim.
    next: u64,
    /// Bytes charged by positions `first..next`.
    used: u64,
    /// Ring length `R` (fixed when the head is created).
    ring: u32,
    /// Charge of position `next - 1`.
    tail_charge: u32,
    /// Hash of position `next - 1`.
    tail_hash: ContentHash,
}

impl Head {
    const LEN: usize = 40;

    fn empty(ring: u32) -> Head {
        Head {
            first: 0,
            next: 0,
            used: 0,
            ring,
            tail_charge: 0,
            tail_hash: ContentHash([0; 8]),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&self.used.to_le_bytes());
        out.extend_from_slice(&self.ring.to_le_bytes());
        out.extend_from_slice(&self.tail_charge.to_le_bytes());
        out.extend_from_slice(&self.tail_hash.0);
        out
    }

    /// `None` for anything that is not a consistent head.
    fn decode(bytes: &[u8]) -> Option<Head> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let head = Head {
            first: u64_at(bytes, 0)?,
            next: u64_at(bytes, 8)?,
            used: u64_at(bytes, 16)?,
            ring: u32_at(bytes, 24)?,
            tail_charge: u32_at(bytes, 28)?,
            tail_hash: hash_at(bytes, 32)?,
        };
        let consistent = head.ring > 0
            && head.first <= head.next
            && head.next - head.first <= u64::from(head.ring);
        consistent.then_some(head)
    }

    /// Number of buckets.
    fn buckets(&self) -> u64 {
        (u64::from(self.ring) / 4).max(1)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn hash_at(bytes: &[u8], at: usize) -> Option<ContentHash> {
    Some(ContentHash(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// A ring slot: position, charge, hash.
fn encode_ring(pos: u64, charge: u32, hash: ContentHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&charge.to_le_bytes());
    out.extend_from_slice(&hash.0);
    out
}

fn decode_ring(bytes: &[u8]) -> Option<(u64, u32, ContentHash)> {
    if bytes.len() != 20 {
        return None;
    }
    Some((u64_at(bytes, 0)?, u32_at(bytes, 8)?, hash_at(bytes, 12)?))
}

/// A value slot: position, hash, value (empty: a tombstone).
fn encode_value(pos: u64, hash: ContentHash, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(value);
    out
}

fn decode_value(bytes: &[u8]) -> Option<(u64, ContentHash, &[u8])> {
    Some((u64_at(bytes, 0)?, hash_at(bytes, 8)?, bytes.get(16..)?))
}

/// A bucket: (hash, position) pairs. A malformed bucket reads as empty.
fn decode_bucket(bytes: &[u8]) -> Vec<(ContentHash, u64)> {
    if !bytes.len().is_multiple_of(16) {
        return Vec::new();
    }
    bytes
        .chunks_exact(16)
        .filter_map(|c| Some((hash_at(c, 0)?, u64_at(c, 8)?)))
        .collect()
}

fn encode_bucket(entries: &[(ContentHash, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for (hash, pos) in entries {
        out.extend_from_slice(&hash.0);
        out.extend_from_slice(&pos.to_le_bytes());
    }
    out
}

/// One byte-bounded store in shared data.
#[derive(Debug, Clone)]
pub(crate) struct SharedStore {
    /// `headroom.omitted` or `headroom.replay`.
    namespace: &'static str,
    budget: u64,
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

    /// The response cache's entries.
    pub(crate) fn responses(budget: u64) -> Self {
        Self::new("headroom.responses", budget)
    }

    fn new(namespace: &'static str, budget: u64) -> Self {
        Self { namespace, budget }
    }

    /// Ring length for this budget: the most entries it can hold (each is charged at least
    /// [`ENTRY_OVERHEAD`]).
    fn ring_len(&self) -> u32 {
        let ring = self.budget / ENTRY_OVERHEAD as u64;
        u32::try_from(ring).unwrap_or(u32::MAX).max(1)
    }

    fn head_key(&self) -> String {
        format!("{}.head", self.namespace)
    }

    fn ring_key(&self, head: &Head, pos: u64) -> String {
        format!("{}.r.{}", self.namespace, pos % u64::from(head.ring))
    }

    fn value_key(&self, head: &Head, pos: u64) -> String {
        format!("{}.v.{}", self.namespace, pos % u64::from(head.ring))
    }

    fn bucket_key(&self, head: &Head, hash: ContentHash) -> String {
        let n = u64::from_le_bytes(hash.0) % head.buckets();
        format!("{}.b.{n}", self.namespace)
    }

    /// The head and its token; `None` when the store is empty. A corrupt head is an error (the
    /// store then reads absent and takes no writes).
    fn read_head(&self, map: &dyn SharedData) -> Result<Option<(Head, u32)>, HostError> {
        match map.get(&self.head_key())? {
            None => Ok(None),
            Some((bytes, cas)) => match Head::decode(&bytes) {
                Some(head) => Ok(Some((head, cas))),
                None => {
                    debug!("headroom: {} has a corrupt head", self.namespace);
                    Err(HostError)
                }
            },
        }
    }

    /// Entries held and bytes charged for them (both 0 when empty or unreadable).
    pub(crate) fn occupancy(&self, map: &dyn SharedData) -> response_cache::Occupancy {
        match self.read_head(map) {
            Ok(Some((head, _))) => response_cache::Occupancy {
                entries: head.next - head.first,
                bytes: head.used,
            },
            _ => response_cache::Occupancy::default(),
        }
    }

    /// The value under `hash` in `map`, absent on any failure.
    pub(crate) fn read_in(&self, map: &dyn SharedData, hash: ContentHash) -> Option<Vec<u8>> {
        self.lookup(map, hash).ok().flatten()
    }

    /// Whether a live entry is listed under `hash` (false on any failure), from the head and
    /// the bucket alone: the value, which may be large, is not read. A writer fills the value
    /// before it lists the entry, so a listed entry is readable until it is evicted.
    pub(crate) fn contains_in(&self, map: &dyn SharedData, hash: ContentHash) -> bool {
        matches!(self.live_positions(map, hash), Ok(Some((_, positions))) if !positions.is_empty())
    }

    /// The head and the live positions the bucket of `hash` lists for it, oldest first; `None`
    /// when the store is empty.
    fn live_positions(
        &self,
        map: &dyn SharedData,
        hash: ContentHash,
    ) -> Result<Option<(Head, Vec<u64>)>, HostError> {
        let Some((head, _)) = self.read_head(map)? else {
            return Ok(None);
        };
        let bucket = match map.get(&self.bucket_key(&head, hash))? {
            Some((bytes, _)) => decode_bucket(&bytes),
            None => return Ok(Some((head, Vec::new()))),
        };
        let mut positions: Vec<u64> = bucket
            .into_iter()
            .filter(|&(h, pos)| h == hash && pos >= head.first && pos < head.next)
            .map(|(_, pos)| pos)
            .collect();
        // Two VMs may have stored the same hash at once: the first position wins.
        positions.sort_unstable();
        Ok(Some((head, positions)))
    }

    fn lookup(
        &self,
        map: &dyn SharedData,
        hash: ContentHash,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let Some((head, positions)) = self.live_positions(map, hash)? else {
            return Ok(None);
        };
        for pos in positions {
            if let Some((bytes, _)) = map.get(&self.value_key(&head, pos))?
                && let Some((p, h, value)) = decode_value(&bytes)
                && p == pos
                && h == hash
                && !value.is_empty()
            {
                return Ok(Some(value.to_vec()));
            }
        }
        Ok(None)
    }

    /// Stores `value` under `hash` unless an entry exists (first write wins); an entry larger
    /// than the whole budget is not kept.
    pub(crate) fn write_in(&self, map: &dyn SharedData, hash: ContentHash, value: &[u8]) {
        if self.insert(map, hash, value).is_err() {
            debug!("headroom: {} entry not stored", self.namespace);
        }
    }

    fn insert(
        &self,
        map: &dyn SharedData,
        hash: ContentHash,
        value: &[u8],
    ) -> Result<(), HostError> {
        let charge = value.len().saturating_add(ENTRY_OVERHEAD);
        let Ok(charge) = u32::try_from(charge) else {
            return Ok(());
        };
        // An empty value would read as a tombstone: nothing to keep.
        if value.is_empty() || u64::from(charge) > self.budget {
            return Ok(());
        }
        if self.lookup(map, hash)?.is_some() {
            return Ok(());
        }
        let head_key = self.head_key();
        for _ in 0..CAS_ATTEMPTS {
            let (head, cas) = match self.read_head(map)? {
                Some((head, cas)) => (head, cas),
                None => (Head::empty(self.ring_len()), EXPECT_ABSENT),
            };
            // The newest position's ring slot may not be written yet (its writer is between
            // claiming it and writing it, or failed): write it from the head.
            if head.next > head.first
                && !self.ensure_ring(map, &head, head.next - 1, head.tail_charge, head.tail_hash)?
            {
                continue;
            }
            let Some((claimed, evicted)) = self.evict_for(map, &head, charge)? else {
                continue;
            };
            let pos = claimed.next;
            let new = Head {
                next: pos + 1,
                used: claimed.used + u64::from(charge),
                tail_charge: charge,
                tail_hash: hash,
                ..claimed
            };
            if !map.set(&head_key, &new.encode(), Some(cas))? {
                continue;
            }
            // `pos` is ours. Ring slot, value, then the bucket that makes it visible.
            self.ensure_ring(map, &new, pos, charge, hash)?;
            self.put_value(map, &new, pos, hash, value)?;
            self.update_bucket(map, &new, hash, Some(pos))?;
            for (old_pos, old_hash) in evicted {
                self.tombstone(map, &new, old_pos, old_hash)?;
                self.update_bucket(map, &new, old_hash, None)?;
            }
            return Ok(());
        }
        debug!("headroom: {head_key} kept changing; entry not stored");
        Ok(())
    }

    /// `head` with the oldest positions dropped until `charge` more bytes (and one more entry)
    /// fit, and the dropped (position, hash) pairs; `None` when a ring slot shows that `head` is
    /// stale.
    #[allow(clippy::type_complexity)]
    fn evict_for(
        &self,
        map: &dyn SharedData,
        head: &Head,
        charge: u32,
    ) -> Result<Option<(Head, Vec<(u64, ContentHash)>)>, HostError> {
        let mut new = *head;
        let mut evicted = Vec::new();
        while new.first < new.next
            && (new.used.saturating_add(u64::from(charge)) > self.budget
                || new.next - new.first >= u64::from(new.ring))
        {
            let slot = map
                .get(&self.ring_key(head, new.first))?
                .and_then(|(bytes, _)| decode_ring(&bytes));
            match slot {
                Some((pos, size, hash)) if pos == new.first => {
                    new.used = new.used.saturating_sub(u64::from(size));
                    evicted.push((pos, hash));
                    new.first += 1;
                }
                _ => return Ok(None),
            }
        }
        if new.first == new.next {
            new.used = 0;
        }
        Ok(Some((new, evicted)))
    }

    /// Makes sure the ring slot of `pos` describes it; `false` when the slot already holds a
    /// newer position (the caller's head is stale).
    fn ensure_ring(
        &self,
        map: &dyn SharedData,
        head: &Head,
        pos: u64,
        charge: u32,
        hash: ContentHash,
    ) -> Result<bool, HostError> {
        let key = self.ring_key(head, pos);
        for _ in 0..CAS_ATTEMPTS {
            let cas = match map.get(&key)? {
                None => EXPECT_ABSENT,
                Some((bytes, cas)) => match decode_ring(&bytes) {
                    Some((p, _, _)) if p == pos => return Ok(true),
                    Some((p, _, _)) if p > pos => return Ok(false),
                    _ => cas,
                },
            };
            if map.set(&key, &encode_ring(pos, charge, hash), Some(cas))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes the value of `pos` unless its slot already holds `pos` or a newer position.
    fn put_value(
        &self,
        map: &dyn SharedData,
        head: &Head,
        pos: u64,
        hash: ContentHash,
        value: &[u8],
    ) -> Result<(), HostError> {
        let key = self.value_key(head, pos);
        for _ in 0..CAS_ATTEMPTS {
            let cas = match map.get(&key)? {
                None => EXPECT_ABSENT,
                Some((bytes, cas)) => match decode_value(&bytes) {
                    Some((p, _, _)) if p >= pos => return Ok(()),
                    _ => cas,
                },
            };
            if map.set(&key, &encode_value(pos, hash, value), Some(cas))? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Replaces the value of the evicted `pos` with its tombstone (if the slot still holds it).
    fn tombstone(
        &self,
        map: &dyn SharedData,
        head: &Head,
        pos: u64,
        hash: ContentHash,
    ) -> Result<(), HostError> {
        let key = self.value_key(head, pos);
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, cas)) = map.get(&key)? else {
                return Ok(());
            };
            match decode_value(&bytes) {
                Some((p, _, value)) if p == pos && !value.is_empty() => {}
                _ => return Ok(()),
            }
            if map.set(&key, &encode_value(pos, hash, &[]), Some(cas))? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Drops the bucket's evicted pairs (older than `head.first`) and adds `(hash, pos)`.
    fn update_bucket(
        &self,
        map: &dyn SharedData,
        head: &Head,
        hash: ContentHash,
        add: Option<u64>,
    ) -> Result<(), HostError> {
        let key = self.bucket_key(head, hash);
        for _ in 0..CAS_ATTEMPTS {
            let (mut entries, cas) = match map.get(&key)? {
                Some((bytes, cas)) => (decode_bucket(&bytes), cas),
                None => (Vec::new(), EXPECT_ABSENT),
            };
            let before = entries.len();
            entries.retain(|&(_, p)| p >= head.first);
            let mut changed = entries.len() != before;
            if let Some(pos) = add
                && !entries.contains(&(hash, pos))
            {
                entries.push((hash, pos));
                changed = true;
            }
            if !changed || map.set(&key, &encode_bucket(&entries), Some(cas))? {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A [`SharedStore`] with the shared data it lives in: what the pipeline and the response
/// cache hold (cheap to clone).
#[derive(Clone)]
pub(crate) struct HostedStore {
    /// The store's layout.
    pub(crate) store: SharedStore,
    /// Where it lives.
    pub(crate) data: Rc<dyn SharedData>,
}

impl std::fmt::Debug for HostedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl HostedStore {
    /// The value under `hash`, absent on any failure.
    pub(crate) fn read(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.store.read_in(&*self.data, hash)
    }

    /// Stores `value` under `hash` unless an entry exists.
    pub(crate) fn write(&self, hash: ContentHash, value: &[u8]) {
        self.store.write_in(&*self.data, hash, value);
    }

    /// Entries held and bytes charged for them.
    pub(crate) fn occupancy(&self) -> response_cache::Occupancy {
        self.store.occupancy(&*self.data)
    }
}

impl OmittedStore for HostedStore {
    fn put(&mut self, hash: ContentHash, original: &[u8]) {
        self.write(hash, original);
    }

    fn get(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.read(hash)
    }

    fn contains(&self, hash: ContentHash) -> bool {
        self.store.contains_in(&*self.data, hash)
    }
}

impl ReplayStore for HostedStore {
    fn get(&self, key: ContentHash) -> Option<Vec<u8>> {
        self.read(key)
    }

    fn put(&mut self, key: ContentHash, entry: &[u8]) {
        self.write(key, entry);
    }
}

/// The [`PipelineHost`] of the filter: both stores in shared data, and the host's clock for
/// transform timings.
#[derive(Clone)]
pub(crate) struct SharedStores {
    /// Originals of lossy compressions, served by the retrieval endpoint, each under the
    /// scope of the credential of the request that sent it (set per request).
    pub(crate) omitted: ScopedStore<HostedStore>,
    /// Decisions replayed on later turns.
    pub(crate) replay: HostedStore,
    /// Transform timings of the request being compressed (transform, µs).
    pub(crate) timed: Vec<(&'static str, u64)>,
    /// The clock of those timings.
    pub(crate) clock: Rc<dyn Clock>,
}

impl std::fmt::Debug for SharedStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStores")
            .field("omitted", &self.omitted)
            .field("replay", &self.replay)
            .field("timed", &self.timed)
            .finish_non_exhaustive()
    }
}

impl PipelineHost for SharedStores {
    fn omitted(&mut self) -> &mut dyn OmittedStore {
        &mut self.omitted
    }

    fn replay(&mut self) -> &mut dyn ReplayStore {
        &mut self.replay
    }

    fn now_us(&self) -> Option<u64> {
        self.clock.now_us()
    }

    fn timed(&mut self, transform: &'static str, us: u64) {
        self.timed.push((transform, us));
    }
}

/// The key under which the host keeps its own `/stats` blocks (a JSON object; our host's
/// `otel`), which `/stats` adds beside the filter's.
pub(crate) const HOST_STATS_KEY: &str = "headroom.host.stats";

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

/// Stack labels (`X-Headroom-Stack`): at most [`MAX_DISTINCT_STACKS`](crate::stack_header::MAX_DISTINCT_STACKS).
pub(crate) const STACKS: LabelSet = LabelSet {
    key: "headroom.labels.stack",
    cap: crate::stack_header::MAX_DISTINCT_STACKS,
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
    fn insert(self, data: &dyn SharedData, value: &str) -> Insert {
        for _ in 0..CAS_ATTEMPTS {
            let Ok(found) = data.get(self.key) else {
                return Insert::Failed;
            };
            let (stored, cas) = found.unzip();
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
            match data.set(self.key, &update, cas) {
                Ok(true) => return Insert::Added,
                Ok(false) => continue,
                Err(HostError) => return Insert::Failed,
            }
        }
        Insert::Failed
    }

    /// Whether `value` has (or now gets) its own label.
    pub(crate) fn admit(self, data: &dyn SharedData, value: &str) -> bool {
        matches!(self.insert(data, value), Insert::Present | Insert::Added)
    }

    /// Whether `value` was in the set before this call (it is added when there is room; a full
    /// set, or a shared-data failure, answers true).
    pub(crate) fn seen_before(self, data: &dyn SharedData, value: &str) -> bool {
        self.insert(data, value) != Insert::Added
    }

    /// Every value admitted so far, in order of first use.
    pub(crate) fn values(self, data: &dyn SharedData) -> Vec<String> {
        match data.get(self.key) {
            Ok(Some((stored, _))) => crate::accounting::stored_labels(&stored),
            _ => Vec::new(),
        }
    }
}

/// The [`BudgetState`](crate::budget::BudgetState) stored under `key` (a fresh one when
/// absent or unreadable: never an error).
pub(crate) fn budget_state(data: &dyn SharedData, key: &str) -> crate::budget::BudgetState {
    let stored = match data.get(key) {
        Ok(Some((stored, _))) => crate::budget::BudgetState::decode(&stored),
        _ => None,
    };
    stored.unwrap_or_default()
}

/// Whether a value is stored under `key`.
pub(crate) fn exists(data: &dyn SharedData, key: &str) -> bool {
    matches!(data.get(key), Ok(Some(_)))
}

/// Reserves `estimate_usd` in the budget stored under `key` (compare-and-swap): `Ok(Some(
/// period start))` when admitted and reserved, `Err` when the limit would be crossed,
/// `Ok(None)` when shared data failed or kept changing (the request is admitted without a
/// reservation: fail open).
pub(crate) fn budget_reserve(
    data: &dyn SharedData,
    key: &str,
    limit: &crate::budget::Limit,
    estimate_usd: f64,
    now: u64,
) -> Result<Option<(u64, crate::budget::BudgetState)>, crate::budget::BudgetExceeded> {
    let mut outcome = Ok(0);
    let mut after = crate::budget::BudgetState::default();
    let written = update_shared(data, key, |stored| {
        let mut state = crate::budget::BudgetState::decode(stored).unwrap_or_default();
        outcome = state.reserve(limit, estimate_usd, now);
        after = state;
        state.encode()
    });
    match (outcome, written) {
        (Err(exceeded), _) => Err(exceeded),
        (Ok(start), Some(_)) => Ok(Some((start, after))),
        (Ok(_), None) => Ok(None),
    }
}

/// Replaces a reservation in the budget stored under `key` by the exchange's cost
/// ([`BudgetState::settle`](crate::budget::BudgetState::settle)); returns the state written.
pub(crate) fn budget_settle(
    data: &dyn SharedData,
    key: &str,
    period: crate::budget::Period,
    reserved_in: u64,
    reserved_usd: f64,
    cost_usd: Option<f64>,
    now: u64,
) -> Option<crate::budget::BudgetState> {
    let mut after = None;
    update_shared(data, key, |stored| {
        let mut state = crate::budget::BudgetState::decode(stored).unwrap_or_default();
        state.settle(period, reserved_in, reserved_usd, cost_usd, now);
        after = Some(state);
        state.encode()
    })?;
    after
}

/// Where the per-process secret keying API-key ids lives.
const BUDGET_SECRET_KEY: &str = "headroom.budget.secret";

/// The per-process secret keying API-key ids: drawn at random by the first VM that needs it
/// and shared by every VM since (`None` when shared data fails).
pub(crate) fn budget_secret(data: &dyn SharedData) -> Option<Vec<u8>> {
    for _ in 0..CAS_ATTEMPTS {
        let (stored, cas) = data.get(BUDGET_SECRET_KEY).ok()?.unzip();
        if let Some(secret) = stored.filter(|s| s.len() == 16) {
            return Some(secret);
        }
        let secret = random_secret();
        match data.set(BUDGET_SECRET_KEY, &secret, cas) {
            Ok(true) => return Some(secret),
            Ok(false) => continue,
            Err(HostError) => return None,
        }
    }
    None
}

/// 128 random bits from the standard library's per-process hash keys (drawn from the host's
/// `random_get`).
fn random_secret() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    let mut secret = Vec::with_capacity(16);
    for salt in [0u8, 1] {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(salt);
        secret.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    secret
}

/// The tracked API keys of the budgets (bounded by `max_keys`).
pub(crate) fn budget_keys(cap: usize) -> LabelSet {
    LabelSet {
        key: "headroom.labels.budget_key",
        cap,
    }
}

/// The tracked default-project projects of the budgets (bounded by `max_projects`).
pub(crate) fn budget_projects(cap: usize) -> LabelSet {
    LabelSet {
        key: "headroom.labels.budget_project",
        cap,
    }
}

/// Rewrites the value under `key` with `update` (given the stored bytes, empty when absent)
/// by compare-and-swap, retried on a conflict. Returns the value written, or `None` when
/// shared data failed or kept changing (a lost update only blurs a statistic).
fn update_shared(
    data: &dyn SharedData,
    key: &str,
    mut update: impl FnMut(&[u8]) -> Vec<u8>,
) -> Option<Vec<u8>> {
    for _ in 0..CAS_ATTEMPTS {
        let (stored, cas) = data.get(key).ok()?.unzip();
        let value = update(stored.as_deref().unwrap_or_default());
        match data.set(key, &value, cas) {
            Ok(true) => return Some(value),
            Ok(false) => continue,
            Err(HostError) => return None,
        }
    }
    debug!("headroom: {key} kept changing; update dropped");
    None
}

/// Where the process-wide [`Timings`](crate::stats::Timings) live.
const TIMINGS_KEY: &str = "headroom.timings";

/// Adds one exchange's samples (microseconds, per histogram) to the process-wide timings in a
/// single compare-and-swap, and returns the timings as they now stand.
pub(crate) fn record_timings(
    data: &dyn SharedData,
    samples: &[(crate::metrics::Histogram, u64)],
) -> Option<crate::stats::Timings> {
    let mut latest = crate::stats::Timings::default();
    update_shared(data, TIMINGS_KEY, |stored| {
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
pub(crate) fn record_transform_timings(data: &dyn SharedData, samples: &[(String, u64)]) {
    if samples.is_empty() {
        return;
    }
    update_shared(data, TRANSFORM_TIMINGS_KEY, |stored| {
        let mut timings = crate::stats::TransformTimings::decode(stored);
        for (transform, us) in samples {
            timings.record(transform, *us);
        }
        timings.encode()
    });
}

/// The process-wide per-transform timings.
pub(crate) fn transform_timings(data: &dyn SharedData) -> crate::stats::TransformTimings {
    match data.get(TRANSFORM_TIMINGS_KEY) {
        Ok(Some((stored, _))) => crate::stats::TransformTimings::decode(&stored),
        _ => crate::stats::TransformTimings::default(),
    }
}

/// The process-wide timings.
pub(crate) fn timings(data: &dyn SharedData) -> crate::stats::Timings {
    match data.get(TIMINGS_KEY) {
        Ok(Some((stored, _))) => crate::stats::Timings::decode(&stored),
        _ => crate::stats::Timings::default(),
    }
}

/// The savings ledger (the head and at most the newest `points` checkpoints) and where the
/// host keeps it.
pub(crate) fn savings(
    data: &dyn SharedData,
    points: u64,
) -> (crate::savings::Ledger, crate::savings::StorageInfo) {
    let kv = LedgerData(data);
    let ledger = crate::savings::read_shared_tail(&kv, points);
    let storage = crate::savings::KeyValue::get(&kv, crate::savings::STORAGE_KEY)
        .and_then(|(bytes, _)| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    (ledger, storage)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::*;
    use crate::pipeline::store::MemoryStore;

    type Interrupt<'a> = Box<dyn FnOnce(&Mock<'a>) + 'a>;

    /// Shared data as Envoy keeps it: a map, one process-wide CAS counter (never 0), a missing
    /// key ignores the token, no delete. It can run another writer before its `n`-th call (an
    /// interleaving) and fail every call from its `n`-th on (a VM that dies mid-write).
    #[derive(Default)]
    struct Mock<'a> {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        cas: Cell<u32>,
        calls: Cell<usize>,
        interrupt: RefCell<Option<(usize, Interrupt<'a>)>>,
        fail_from: Cell<Option<usize>>,
    }

    impl<'a> Mock<'a> {
        fn step(&self) -> Result<(), HostError> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            let due = matches!(&*self.interrupt.borrow(), Some((at, _)) if *at == n);
            let other = if due {
                self.interrupt.borrow_mut().take()
            } else {
                None
            };
            if let Some((_, other)) = other {
                other(self);
            }
            match self.fail_from.get() {
                Some(from) if n >= from => Err(HostError),
                _ => Ok(()),
            }
        }

        fn keys(&self) -> usize {
            self.data.borrow().len()
        }

        /// Keys plus values, in bytes.
        fn bytes(&self) -> usize {
            self.data
                .borrow()
                .iter()
                .map(|(k, (v, _))| k.len() + v.len())
                .sum()
        }
    }

    impl SharedData for Mock<'_> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            self.step()?;
            Ok(self.data.borrow().get(key).cloned())
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
            self.step()?;
            let token = match self.cas.get().wrapping_add(1) {
                0 => 1,
                n => n,
            };
            let mut data = self.data.borrow_mut();
            if let Some((_, current)) = data.get(key)
                && cas.is_some_and(|c| c != 0 && c != *current)
            {
                return Ok(false);
            }
            self.cas.set(token);
            data.insert(key.to_string(), (value.to_vec(), token));
            Ok(true)
        }
    }

    fn h(n: u32) -> ContentHash {
        ContentHash::of(&n.to_le_bytes())
    }

    fn value(n: u32, len: usize) -> Vec<u8> {
        let mut v = format!("value-{n}-").into_bytes();
        v.resize(len.max(v.len()), b'x');
        v
    }

    /// The head is consistent with the ring: every live position's slot describes it and the
    /// charges add up to `used`, within the budget.
    fn check(store: &SharedStore, map: &Mock<'_>) -> Head {
        let Some((head, _)) = store.read_head(map).unwrap() else {
            return Head::empty(store.ring_len());
        };
        let mut used = 0u64;
        for pos in head.first..head.next {
            let (bytes, _) = map.get(&store.ring_key(&head, pos)).unwrap().unwrap();
            let (p, charge, _) = decode_ring(&bytes).unwrap();
            assert_eq!(p, pos);
            used += u64::from(charge);
        }
        assert_eq!(used, head.used, "{head:?}");
        assert!(head.used <= store.budget);
        head
    }

    #[test]
    fn same_semantics_as_the_memory_store() {
        // Sizes from tiny to larger than the budget, repeated hashes (first write wins).
        let budget = 4_000;
        let store = SharedStore::replay(budget);
        let map = Mock::default();
        let mut memory = MemoryStore::new(budget as usize);
        let mut seed = 7u32;
        for i in 0..3_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (seed >> 8) % 400;
            let len = match (seed >> 20) % 8 {
                0 => 5_000,
                1 => 1_000,
                _ => 1 + (seed >> 4) as usize % 200,
            };
            let v = value(n + i % 3, len);
            store.write_in(&map, h(n), &v);
            ReplayStore::put(&mut memory, h(n), &v);
            if i % 50 == 0 {
                for k in 0..400 {
                    assert_eq!(
                        store.read_in(&map, h(k)),
                        ReplayStore::get(&memory, h(k)),
                        "step {i}, key {k}"
                    );
                    // Existence without reading the value agrees too.
                    assert_eq!(
                        store.contains_in(&map, h(k)),
                        OmittedStore::contains(&memory, h(k)),
                        "step {i}, key {k}"
                    );
                }
                let head = check(&store, &map);
                assert_eq!(head.used, memory.used());
                assert_eq!((head.next - head.first) as usize, memory.len());
            }
        }
    }

    #[test]
    fn keys_and_bytes_stay_bounded() {
        for (budget, len) in [(64 * 1024, 30), (64 * 1024, 2_000), (1 << 20, 100)] {
            let store = SharedStore::omitted(budget);
            let map = Mock::default();
            let ring = u64::from(store.ring_len());
            let bound_keys = 1 + 2 * ring + (ring / 4).max(1);
            for i in 0..(20 * budget / (len as u64 + ENTRY_OVERHEAD as u64)) as u32 {
                store.write_in(&map, h(i), &value(i, len));
            }
            let head = check(&store, &map);
            let live = head.next - head.first;
            assert!(map.keys() as u64 <= bound_keys, "{} keys", map.keys());
            // Values and the small records: at most the budget plus fixed-size records per key.
            let bound_bytes = budget as usize + map.keys() * 64;
            assert!(map.bytes() <= bound_bytes, "{} bytes", map.bytes());
            // The newest entries are there, the oldest are gone.
            let last = (head.next - 1) as u32;
            assert_eq!(store.read_in(&map, h(last)), Some(value(last, len)));
            assert_eq!(store.read_in(&map, h(0)), None);
            eprintln!(
                "budget {budget} B, values of {len} B: {live} live entries, {} keys, {} bytes \
                 (keys + values; bound {bound_keys} keys)",
                map.keys(),
                map.bytes()
            );
        }
    }

    #[test]
    fn disabled_and_oversized_entries_touch_nothing() {
        let map = Mock::default();
        SharedStore::omitted(0).write_in(&map, h(1), b"x");
        SharedStore::omitted(100).write_in(&map, h(1), &[1; 100]);
        SharedStore::omitted(100).write_in(&map, h(1), b"");
        assert_eq!(map.keys(), 0);
        assert_eq!(SharedStore::omitted(100).read_in(&map, h(1)), None);
    }

    /// Writer A stores `a` while writer B (another VM) stores `b`, entirely between two of A's
    /// shared-data calls, for every possible point. Both end up stored (or, with `b == a`, one
    /// value) and the head stays consistent. The store starts full so both evict.
    #[test]
    fn interleaved_writers_stay_consistent() {
        let per = 100 + ENTRY_OVERHEAD as u64;
        let budget = 10 * per;
        for same_hash in [false, true] {
            let mut at = 0;
            loop {
                let store = SharedStore::replay(budget);
                let map = Mock::default();
                for i in 100..110 {
                    store.write_in(&map, h(i), &value(i, 100));
                }
                map.calls.set(0);
                let b = if same_hash { 1 } else { 2 };
                let other = store.clone();
                let other_value = value(b + 1000, 100);
                *map.interrupt.borrow_mut() = Some((
                    at,
                    Box::new(move |m: &Mock<'_>| other.write_in(m, h(b), &other_value)),
                ));
                store.write_in(&map, h(1), &value(1, 100));
                let ran = map.interrupt.borrow().is_none();
                check(&store, &map);
                let a = store.read_in(&map, h(1));
                let bv = store.read_in(&map, h(b));
                if same_hash {
                    // Whoever came first: one of the two values, never a mix.
                    assert!(
                        a == Some(value(1, 100)) || a == Some(value(1001, 100)),
                        "at {at}"
                    );
                } else {
                    assert_eq!(a, Some(value(1, 100)), "at {at}");
                    if ran {
                        assert_eq!(bv, Some(value(1002, 100)), "at {at}");
                    }
                }
                // Later writes still work.
                store.write_in(&map, h(3), &value(3, 100));
                assert_eq!(store.read_in(&map, h(3)), Some(value(3, 100)));
                check(&store, &map);
                if !ran {
                    break;
                }
                at += 1;
            }
            assert!(at > 10, "A made only {at} calls");
        }
    }

    /// A reader racing a writer at every point sees the entry absent or whole.
    #[test]
    fn readers_never_see_half_writes() {
        let budget = 3 * (50 + ENTRY_OVERHEAD as u64);
        let mut at = 0;
        loop {
            let store = SharedStore::omitted(budget);
            let map = Mock::default();
            for i in 10..13 {
                store.write_in(&map, h(i), &value(i, 50));
            }
            map.calls.set(0);
            let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
            let (reader, sink) = (store.clone(), seen.clone());
            *map.interrupt.borrow_mut() = Some((
                at,
                Box::new(move |m: &Mock<'_>| {
                    let got: Vec<_> = (10..13)
                        .chain([1])
                        .map(|i| reader.read_in(m, h(i)))
                        .collect();
                    sink.borrow_mut().extend(got);
                }),
            ));
            store.write_in(&map, h(1), &value(1, 50));
            if map.interrupt.borrow().is_some() {
                break;
            }
            for (i, got) in (10..13).chain([1]).zip(seen.borrow().iter()) {
                assert!(
                    got.is_none() || got.as_deref() == Some(&value(i, 50)[..]),
                    "at {at}: {i} read {got:?}"
                );
            }
            at += 1;
        }
    }

    /// A writer whose shared data fails at any point (a host error, or a VM that dies between
    /// two calls) loses at most its own entry: the store stays consistent and keeps working.
    #[test]
    fn a_writer_failing_midway_does_not_wedge_the_store() {
        let budget = 4 * (64 + ENTRY_OVERHEAD as u64);
        for from in 0..30 {
            let store = SharedStore::omitted(budget);
            let map = Mock::default();
            for i in 10..14 {
                store.write_in(&map, h(i), &value(i, 64));
            }
            map.calls.set(0);
            map.fail_from.set(Some(from));
            store.write_in(&map, h(1), &value(1, 64));
            map.fail_from.set(None);
            for i in 20..30 {
                store.write_in(&map, h(i), &value(i, 64));
                assert_eq!(store.read_in(&map, h(i)), Some(value(i, 64)), "from {from}");
            }
            check(&store, &map);
            assert_eq!(store.read_in(&map, h(10)), None);
        }
    }

    #[test]
    fn a_corrupt_head_reads_absent_and_takes_no_writes() {
        let store = SharedStore::omitted(10_000);
        let map = Mock::default();
        store.write_in(&map, h(1), b"one");
        map.set("headroom.omitted.head", b"junk", None).unwrap();
        assert_eq!(store.read_in(&map, h(1)), None);
        store.write_in(&map, h(2), b"two");
        assert_eq!(
            map.get("headroom.omitted.head").unwrap().unwrap().0,
            b"junk"
        );
    }
}
