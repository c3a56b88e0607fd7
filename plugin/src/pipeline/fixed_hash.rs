//! The hash maps and sets the compressors count and deduplicate with: foldhash (the hasher
//! hashbrown itself uses by default) with a fixed seed. Fixed, so a map is the same in every
//! process; nothing iterates one in an order that reaches the output. foldhash replaced
//! fixed-key SipHash, which took 8 % of the time of a cold 100 KB JSON compression (issue 18).
//! Neither resists hash flooding with a known seed; what bounds a hostile output is the size
//! and work limits of decision 10, not the hasher.

use std::collections::{HashMap, HashSet};

use foldhash::fast::FixedState;

/// A `HashMap` with the fixed hasher.
pub(crate) type FixedMap<K, V> = HashMap<K, V, FixedState>;

/// A `HashSet` with the fixed hasher.
pub(crate) type FixedSet<T> = HashSet<T, FixedState>;
