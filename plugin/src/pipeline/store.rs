//! The two stores the pipeline needs from its host, and in-memory implementations for tests
//! and single-process use. The filter glue backs them with proxy-wasm shared data so that every
//! VM of the gateway sees the same entries.
//!
//! - [`OmittedStore`]: the originals of lossy compressions, by [`ContentHash`], within a byte
//!   budget (oldest evicted first), so a marker's hash can be looked up.
//! - [`ReplayStore`]: for every tool output the pipeline has decided on, what was sent
//!   upstream ([`ReplayEntry`]), keyed by [`replay_key`]. A later turn that resends the same
//!   original sends the same bytes again, so the provider's prompt cache prefix stays valid
//!   (specs/pipeline.md §8 B2, B4).

use std::collections::{BTreeMap, VecDeque};

use super::hash::ContentHash;

/// Where the originals of lossy compressions are kept.
pub trait OmittedStore {
    /// Keeps `original` under `hash`, evicting the oldest entries to stay within the budget.
    /// An original larger than the whole budget is not kept.
    fn put(&mut self, hash: ContentHash, original: &[u8]);
    /// The original kept under `hash`.
    fn get(&self, hash: ContentHash) -> Option<Vec<u8>>;
}

/// What was sent upstream for one original tool output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayEntry {
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
    /// The stored form: `U`, or `R`, both token counts as u64 little-endian, and the text.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Unchanged => b"U".to_vec(),
            Self::Replaced {
                text,
                tokens_before,
                tokens_after,
            } => {
                let mut out = Vec::with_capacity(text.len() + 17);
                out.push(b'R');
                out.extend_from_slice(&tokens_before.to_le_bytes());
                out.extend_from_slice(&tokens_after.to_le_bytes());
                out.extend_from_slice(text.as_bytes());
                out
            }
        }
    }

    /// Parses [`ReplayEntry::encode`]'s form; anything else is `None` (treated as absent).
    pub fn decode(bytes: &[u8]) -> Option<ReplayEntry> {
        match bytes.split_first()? {
            (b'U', []) => Some(Self::Unchanged),
            (b'R', rest) => {
                let number = |range: std::ops::Range<usize>| -> Option<u64> {
                    Some(u64::from_le_bytes(rest.get(range)?.try_into().ok()?))
                };
                Some(Self::Replaced {
                    tokens_before: number(0..8)?,
                    tokens_after: number(8..16)?,
                    text: String::from_utf8(rest.get(16..)?.to_vec()).ok()?,
                })
            }
            _ => None,
        }
    }
}

/// Where past decisions are kept, bounded by its implementation (oldest evicted first).
pub trait ReplayStore {
    /// The entry stored under `key`, in [`ReplayEntry::encode`]'s form.
    fn get(&self, key: ContentHash) -> Option<Vec<u8>>;
    /// Stores an entry; an existing entry for `key` is kept (first decision wins).
    fn put(&mut self, key: ContentHash, entry: &[u8]);
}

/// The replay key of an original tool output: its content and the configuration fingerprint
/// (a configuration change is a new pipeline, whose decisions start afresh).
pub fn replay_key(config_fingerprint: ContentHash, original: &str) -> ContentHash {
    ContentHash::of_parts(&[
        b"headroom-replay-v1",
        &config_fingerprint.0,
        original.as_bytes(),
    ])
}

/// A byte-bounded first-in-first-out map: the in-memory backing of both stores.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    budget: usize,
    used: usize,
    order: VecDeque<ContentHash>,
    entries: BTreeMap<ContentHash, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store holding at most `budget` bytes of values.
    pub fn new(budget: usize) -> MemoryStore {
        MemoryStore {
            budget,
            ..MemoryStore::default()
        }
    }

    /// Bytes of values held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, key: ContentHash, value: &[u8], replace: bool) {
        if value.len() > self.budget {
            return;
        }
        if let Some(old) = self.entries.get(&key) {
            if !replace {
                return;
            }
            self.used -= old.len();
            self.order.retain(|k| *k != key);
        }
        while self.used + value.len() > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.used -= old.len();
            }
        }
        self.used += value.len();
        self.order.push_back(key);
        self.entries.insert(key, value.to_vec());
    }
}

impl OmittedStore for MemoryStore {
    fn put(&mut self, hash: ContentHash, original: &[u8]) {
        self.insert(hash, original, false);
    }

    fn get(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.entries.get(&hash).cloned()
    }
}

impl ReplayStore for MemoryStore {
    fn get(&self, key: ContentHash) -> Option<Vec<u8>> {
        self.entries.get(&key).cloned()
    }

    fn put(&mut self, key: ContentHash, entry: &[u8]) {
        self.insert(key, entry, false);
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
        let mut store = MemoryStore::new(10);
        OmittedStore::put(&mut store, h(1), b"aaaa");
        OmittedStore::put(&mut store, h(2), b"bbbb");
        OmittedStore::put(&mut store, h(3), b"cccc");
        assert_eq!(OmittedStore::get(&store, h(1)), None);
        assert_eq!(OmittedStore::get(&store, h(2)).unwrap(), b"bbbb");
        assert_eq!(store.used(), 8);
        OmittedStore::put(&mut store, h(4), &[0; 11]);
        assert_eq!(OmittedStore::get(&store, h(4)), None);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn first_decision_wins_and_entries_round_trip() {
        let mut store = MemoryStore::new(100);
        let key = replay_key(h(0), "original");
        ReplayStore::put(&mut store, key, &ReplayEntry::Unchanged.encode());
        let replaced = ReplayEntry::Replaced {
            text: "é".into(),
            tokens_before: 9,
            tokens_after: 2,
        };
        ReplayStore::put(&mut store, key, &replaced.encode());
        let entry = ReplayEntry::decode(&ReplayStore::get(&store, key).unwrap());
        assert_eq!(entry, Some(ReplayEntry::Unchanged));
        assert_eq!(ReplayEntry::decode(&replaced.encode()), Some(replaced));
        assert_eq!(ReplayEntry::decode(b"X"), None);
        assert_ne!(key, replay_key(h(1), "original"));
    }
}
