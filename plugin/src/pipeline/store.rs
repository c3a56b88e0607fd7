//! The two stores the pipeline needs from its host, and in-memory implementations for tests
//! and single-process use. The filter glue backs them with proxy-wasm shared data so that every
//! VM of the gateway sees the same entries.
//!
//! - [`OmittedStore`]: the originals of lossy compressions, by [`ContentHash`], within a byte
//!   budget (oldest evicted first), so a marker's hash can be looked up.
//! - [`ReplayStore`]: for every tool output the pipeline has decided on, what was sent
//!   upstream ([`ReplayEntry`]), keyed by [`replay_key`]. A later turn that resends the same
//!   original sends the same bytes again, so the provider's prompt cache prefix stays valid
//!   (docs/upstream.md §P8).

use std::collections::{BTreeMap, VecDeque};

use super::hash::ContentHash;

/// Where the originals of lossy compressions are kept.
pub trait OmittedStore {
    /// Keeps `original` under `hash`, evicting the oldest entries to stay within the budget.
    /// An original larger than the whole budget is not kept.
    fn put(&mut self, hash: ContentHash, original: &[u8]);
    /// The original kept under `hash`.
    fn get(&self, hash: ContentHash) -> Option<Vec<u8>>;
    /// Whether an original is kept under `hash`: a store that can answer without copying the
    /// original out says so here (a later turn asks for every lossy output it resends).
    fn contains(&self, hash: ContentHash) -> bool {
        self.get(hash).is_some()
    }
}

/// What was sent upstream for one original tool output, and what a later turn must report
/// about the original without decoding or hashing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEntry {
    /// The original's content hash (the name its marker carries; [`ContentHash`]).
    pub hash: ContentHash,
    /// Bytes of the original, decoded.
    pub original_len: u64,
    /// What was sent instead.
    pub sent: Sent,
}

/// What was sent upstream in place of an original tool output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The original was forwarded unchanged: keep forwarding it unchanged.
    Unchanged,
    /// The original was replaced by `text`; the token counts of both are kept so a replay
    /// reports the same saving without counting again.
    Replaced {
        /// The text sent instead of the original.
        text: String,
        /// Tokens of the original.
        tokens_before: u64,
        /// Tokens of `text`.
        tokens_after: u64,
    },
}

impl ReplayEntry {
    /// The stored form: `u` or `r`, the hash, the original's length (u64 little-endian), and for
    /// `r` both token counts (u64 little-endian) and the text.
    pub fn encode(&self) -> Vec<u8> {
        let text_len = match &self.sent {
            Sent::Unchanged => 0,
            Sent::Replaced { text, .. } => text.len() + 16,
        };
        let mut out = Vec::with_capacity(17 + text_len);
        out.push(match self.sent {
            Sent::Unchanged => b'u',
            Sent::Replaced { .. } => b'r',
        });
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.original_len.to_le_bytes());
        if let Sent::Replaced {
            text,
            tokens_before,
            tokens_after,
        } = &self.sent
        {
            out.extend_from_slice(&tokens_before.to_le_bytes());
            out.extend_from_slice(&tokens_after.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out
    }

    /// Parses [`ReplayEntry::encode`]'s form; anything else is `None` (treated as absent).
    pub fn decode(bytes: &[u8]) -> Option<ReplayEntry> {
        let (tag, rest) = bytes.split_first()?;
        let number = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        let hash = ContentHash(rest.get(..8)?.try_into().ok()?);
        let original_len = number(8)?;
        let sent = match tag {
            b'u' if rest.len() == 16 => Sent::Unchanged,
            b'r' => Sent::Replaced {
                tokens_before: number(16)?,
                tokens_after: number(24)?,
                text: String::from_utf8(rest.get(32..)?.to_vec()).ok()?,
            },
            _ => return None,
        };
        Some(ReplayEntry {
            hash,
            original_len,
            sent,
        })
    }
}

/// Where past decisions are kept, bounded by its implementation (oldest evicted first).
pub trait ReplayStore {
    /// The entry stored under `key`, in [`ReplayEntry::encode`]'s form.
    fn get(&self, key: ContentHash) -> Option<Vec<u8>>;
    /// Stores an entry; an existing entry for `key` is kept (first decision wins).
    fn put(&mut self, key: ContentHash, entry: &[u8]);
}

/// The replay key of an original tool output: BLAKE3 of its raw bytes as the request carries
/// them (a JSON string, escapes and quotes included) and of the fingerprint of everything else
/// its compression depends on (configuration, tokenizer, relevance query). Keyed on the raw
/// bytes so a later turn finds its decision without decoding the output or hashing the
/// decoded text for its name ([`ContentHash::blake3_of_parts`]); the same text escaped
/// differently is another key with the same decision.
pub fn replay_key(config_fingerprint: ContentHash, raw: &[u8]) -> ContentHash {
    ContentHash::blake3_of_parts(&[b"headroom-replay-v3", &config_fingerprint.0, raw])
}

/// The key under which the waste signals of a replayed tool output are kept
/// ([`super::waste::WasteTokens::encode`]), derived from its [`replay_key`]: a request that
/// resends an output as new (a retry) looks its signals up instead of examining the text
/// again. They are a function of the text, the tokenizer and the replayed token count, all of
/// which the replay key fixes.
pub fn waste_key(replay_key: ContentHash) -> ContentHash {
    ContentHash::of_parts(&[b"headroom-waste-v1", &replay_key.0])
}

/// Bytes charged per entry on top of its value, so a store of many tiny entries stays bounded
/// by its budget too: in shared data an entry takes three keys (its value slot, its ring slot
/// and a share of a bucket; `filter::shared_store`), about 400 bytes with Envoy's per-key
/// bookkeeping. 320 keeps the key count of a store at most about 2.25 × budget / 320.
pub const ENTRY_OVERHEAD: usize = 320;

/// The eviction order of a byte-bounded store: entries in insertion order with their charged
/// sizes, for the in-memory [`MemoryStore`]. (The filter's shared-data stores keep the same
/// order as a ring of small per-position keys instead, so an update never copies the index;
/// [`FifoIndex::encode`] / [`FifoIndex::decode`] remain for a store that wants one value.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FifoIndex {
    order: VecDeque<(ContentHash, u32)>,
    used: u64,
}

impl FifoIndex {
    /// Bytes charged by the entries held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `key` is listed.
    pub fn contains(&self, key: ContentHash) -> bool {
        self.order.iter().any(|(k, _)| *k == key)
    }

    /// Lists a new entry whose value has `value_len` bytes, evicting the oldest entries to stay
    /// within `budget`; returns the evicted keys, or `None` (nothing changed) when the entry
    /// alone exceeds the budget. The caller checks [`FifoIndex::contains`] first.
    pub fn admit(
        &mut self,
        key: ContentHash,
        value_len: usize,
        budget: usize,
    ) -> Option<Vec<ContentHash>> {
        let charged = value_len.saturating_add(ENTRY_OVERHEAD);
        let charged32 = u32::try_from(charged).ok()?;
        let budget = u64::try_from(budget).unwrap_or(u64::MAX);
        if u64::from(charged32) > budget {
            return None;
        }
        let mut evicted = Vec::new();
        while self.used + u64::from(charged32) > budget {
            let Some((oldest, size)) = self.order.pop_front() else {
                break;
            };
            self.used -= u64::from(size);
            evicted.push(oldest);
        }
        self.used += u64::from(charged32);
        self.order.push_back((key, charged32));
        Some(evicted)
    }

    /// The stored form: per entry, the 8 hash bytes and the charged size as u32 little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.order.len() * 12);
        for (key, size) in &self.order {
            out.extend_from_slice(&key.0);
            out.extend_from_slice(&size.to_le_bytes());
        }
        out
    }

    /// Parses [`FifoIndex::encode`]'s form. A corrupt index (wrong length) reads as empty: the
    /// entries it listed are then never evicted by this index, but nothing breaks.
    pub fn decode(bytes: &[u8]) -> FifoIndex {
        if !bytes.len().is_multiple_of(12) {
            return FifoIndex::default();
        }
        let mut index = FifoIndex::default();
        for chunk in bytes.chunks_exact(12) {
            let (key, size) = chunk.split_at(8);
            let (Ok(key), Ok(size)) = (<[u8; 8]>::try_from(key), <[u8; 4]>::try_from(size)) else {
                return FifoIndex::default();
            };
            let size = u32::from_le_bytes(size);
            index.used += u64::from(size);
            index.order.push_back((ContentHash(key), size));
        }
        index
    }
}

/// A byte-bounded first-in-first-out map: the in-memory backing of both stores.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    budget: usize,
    index: FifoIndex,
    entries: BTreeMap<ContentHash, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store holding at most `budget` bytes (values plus [`ENTRY_OVERHEAD`] each).
    pub fn new(budget: usize) -> MemoryStore {
        MemoryStore {
            budget,
            ..MemoryStore::default()
        }
    }

    /// Bytes charged by the entries held.
    pub fn used(&self) -> u64 {
        self.index.used()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores `value` under `key` unless `key` is present (first write wins).
    fn insert(&mut self, key: ContentHash, value: &[u8]) {
        if self.entries.contains_key(&key) {
            return;
        }
        let Some(evicted) = self.index.admit(key, value.len(), self.budget) else {
            return;
        };
        for old in evicted {
            self.entries.remove(&old);
        }
        self.entries.insert(key, value.to_vec());
    }
}

impl OmittedStore for MemoryStore {
    fn put(&mut self, hash: ContentHash, original: &[u8]) {
        self.insert(hash, original);
    }

    fn get(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.entries.get(&hash).cloned()
    }

    fn contains(&self, hash: ContentHash) -> bool {
        self.entries.contains_key(&hash)
    }
}

impl ReplayStore for MemoryStore {
    fn get(&self, key: ContentHash) -> Option<Vec<u8>> {
        self.entries.get(&key).cloned()
    }

    fn put(&mut self, key: ContentHash, entry: &[u8]) {
        self.insert(key, entry);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(n: u8) -> ContentHash {
        ContentHash([n; 8])
    }

    #[test]
    fn evicts_oldest_first_within_budget() {
        let per = 4 + ENTRY_OVERHEAD;
        let mut store = MemoryStore::new(2 * per + 2);
        OmittedStore::put(&mut store, h(1), b"aaaa");
        OmittedStore::put(&mut store, h(2), b"bbbb");
        OmittedStore::put(&mut store, h(3), b"cccc");
        assert_eq!(OmittedStore::get(&store, h(1)), None);
        assert_eq!(OmittedStore::get(&store, h(2)).unwrap(), b"bbbb");
        assert_eq!(store.used(), 2 * per as u64);
        OmittedStore::put(&mut store, h(4), &[0; 2 * 4 + ENTRY_OVERHEAD + 3]);
        assert_eq!(OmittedStore::get(&store, h(4)), None);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn first_decision_wins_and_entries_round_trip() {
        let mut store = MemoryStore::new(1000);
        let key = replay_key(h(0), br#""original""#);
        let unchanged = ReplayEntry {
            hash: h(7),
            original_len: 8,
            sent: Sent::Unchanged,
        };
        ReplayStore::put(&mut store, key, &unchanged.encode());
        let replaced = ReplayEntry {
            hash: h(7),
            original_len: u64::MAX,
            sent: Sent::Replaced {
                text: "é".into(),
                tokens_before: 9,
                tokens_after: 2,
            },
        };
        ReplayStore::put(&mut store, key, &replaced.encode());
        let entry = ReplayEntry::decode(&ReplayStore::get(&store, key).unwrap());
        assert_eq!(entry, Some(unchanged.clone()));
        assert_eq!(
            ReplayEntry::decode(&replaced.encode()),
            Some(replaced.clone())
        );
        // Truncated, extended, unknown or old-format entries read as absent.
        let bytes = replaced.encode();
        for bad in [
            bytes.get(..bytes.len() - 4).unwrap(),
            bytes.get(..20).unwrap(),
            b"U".as_slice(),
            b"X",
            b"",
        ] {
            assert_eq!(ReplayEntry::decode(bad), None, "{bad:?}");
        }
        let mut longer = unchanged.encode();
        longer.push(0);
        assert_eq!(ReplayEntry::decode(&longer), None);
        assert_ne!(key, replay_key(h(1), br#""original""#));
        assert_ne!(key, replay_key(h(0), br#""other""#));
    }

    #[test]
    fn index_round_trips_and_survives_corruption() {
        let mut index = FifoIndex::default();
        assert_eq!(index.admit(h(1), 10, 1000), Some(vec![]));
        assert_eq!(index.admit(h(2), 20, 1000), Some(vec![]));
        let decoded = FifoIndex::decode(&index.encode());
        assert_eq!(decoded, index);
        assert!(decoded.contains(h(2)) && !decoded.contains(h(3)));
        assert_eq!(decoded.used(), 30 + 2 * ENTRY_OVERHEAD as u64);
        assert!(FifoIndex::decode(&[1, 2, 3]).is_empty());
        // Room for two entries of 10: the third evicts the first.
        let budget = 2 * (10 + ENTRY_OVERHEAD);
        let mut index = FifoIndex::default();
        index.admit(h(1), 10, budget);
        index.admit(h(2), 10, budget);
        assert_eq!(index.admit(h(3), 10, budget), Some(vec![h(1)]));
        assert_eq!(index.admit(h(4), budget, budget), None);
        assert_eq!(index.len(), 2);
    }
}
