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
    }
}
