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
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// A `HashMap` with the fixed hasher.
pub(crate) type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// A `HashSet` with the fixed hasher.
pub(crate) type FixedSet<T> = HashSet<T, BuildHasherDefault<DefaultHasher>>;

/// The fixed hash of a string, for tables that compare their entries themselves
/// (`hashbrown::HashTable` with [`super::short_eq::same_str`]).
#[inline]
pub(crate) fn fixed_hash_str(text: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(text)
}
