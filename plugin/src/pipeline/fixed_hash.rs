//! The hash maps and sets the compressors count and deduplicate with: SipHash-1-3 (std's
//! hasher) with fixed keys. Fixed, so a map is the same in every process; nothing iterates one
//! in an order that reaches the output.
//!
//! Why SipHash and not a faster hash: these maps hash words, lines and items of a tool output,
//! which any client controls, before any authentication. A fast hash with a published seed
//! (foldhash, FxHash) lets a body be built whose words all collide, and every insert then
//! compares with every earlier word: quadratic time holding a worker. With SipHash even a known
//! key leaves only brute force, per colliding word. Measured (issue 18): foldhash with a fixed
//! seed would be 8 % faster on a cold 100 KB JSON compression; not worth that exposure.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher};

use super::short_eq::same_str;

/// A `HashMap` with the fixed hasher.
pub(crate) type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// A `HashSet` with the fixed hasher.
pub(crate) type FixedSet<T> = HashSet<T, BuildHasherDefault<DefaultHasher>>;

/// The fixed hash of a string, for tables that compare their entries themselves
/// (`hashbrown::HashTable` with [`super::short_eq::same_str`]): the same SipHash-1-3 and keys,
/// over the bytes in one call. Going through `Hasher` (`hash_one`) costs a third more per short
/// word: two writes, each merging into a partial-word buffer.
#[inline]
pub(crate) fn fixed_hash_str(text: &str) -> u64 {
    siphasher::sip::SipHasher13::new_with_keys(0, 0).hash(text.as_bytes())
}

/// A map from strings to `V` for the compressors' hottest tables (log templates, repeated
/// lines): the fixed hash in one call ([`fixed_hash_str`]), keys compared inline
/// ([`same_str`]; in wasm `==` calls wasi-libc's byte-at-a-time `memcmp`, which was 2 % of a
/// cold log request in the guest), and each key's hash kept, so growing never hashes a key
/// again. `K` is the stored key: an owned `String` or a slice of the text.
#[derive(Debug)]
pub(crate) struct StrMap<K, V> {
    table: hashbrown::HashTable<StrSlot<K, V>>,
}

/// One entry of a [`StrMap`].
#[derive(Debug)]
struct StrSlot<K, V> {
    hash: u64,
    key: K,
    value: V,
}

impl<K, V> Default for StrMap<K, V> {
    fn default() -> Self {
        StrMap {
            table: hashbrown::HashTable::new(),
        }
    }
}

impl<K: AsRef<str>, V> StrMap<K, V> {
    /// The value of `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.table
            .find(fixed_hash_str(key), |slot| same_str(slot.key.as_ref(), key))
            .map(|slot| &slot.value)
    }

    /// The value of `key`, first inserting `value` (with `key` stored) when it has none.
    pub(crate) fn or_insert(&mut self, key: K, value: V) -> &mut V {
        let hash = fixed_hash_str(key.as_ref());
        let entry = self.table.entry(
            hash,
            |slot| same_str(slot.key.as_ref(), key.as_ref()),
            |slot| slot.hash,
        );
        let slot = match entry {
            hashbrown::hash_table::Entry::Occupied(slot) => slot.into_mut(),
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(StrSlot { hash, key, value }).into_mut()
            }
        };
        &mut slot.value
    }

    /// Every key and value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|slot| (&slot.key, &slot.value))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    proptest::proptest! {
        /// The one-call hash is the maps' hasher (std's SipHash-1-3, zero keys) over the same
        /// bytes (std hashes a `str` with one more byte, so the reference writes the bytes alone).
        #[test]
        fn fixed_hash_str_is_the_maps_siphash(text in "\\PC{0,40}") {
            let mut reference = DefaultHasher::default();
            reference.write(text.as_bytes());
            proptest::prop_assert_eq!(fixed_hash_str(&text), reference.finish());
        }

        /// A `StrMap` holds what a `HashMap` holds after the same inserts (the first value of
        /// each key wins, as `or_insert` says), finds exactly its keys, and keeps each key's
        /// hash, also across the table's growth.
        #[test]
        fn a_str_map_is_a_map(
            keys in proptest::collection::vec("[ab]{0,3}|[a-z ]{6,30}", 0..200),
            probes in proptest::collection::vec("[ab]{0,4}", 0..20),
        ) {
            let mut ours: StrMap<String, usize> = StrMap::default();
            let mut reference: HashMap<String, usize> = HashMap::new();
            for (i, key) in keys.iter().enumerate() {
                let first = *ours.or_insert(key.clone(), i);
                proptest::prop_assert_eq!(first, *reference.entry(key.clone()).or_insert(i));
            }
            let listed: HashMap<String, usize> =
                ours.iter().map(|(key, &value)| (key.clone(), value)).collect();
            proptest::prop_assert_eq!(&listed, &reference);
            for probe in probes.iter().chain(&keys) {
                proptest::prop_assert_eq!(ours.get(probe), reference.get(probe));
            }
            proptest::prop_assert!(ours.table.iter().all(|slot| slot.hash == fixed_hash_str(&slot.key)));
        }
    }
}
