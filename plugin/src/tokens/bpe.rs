//! Byte-pair encoding over tiktoken's rank tables, for counting: the rank tables are embedded in
//! the module (`data/*.ranks`, built by `data/generate.py` from the published `.tiktoken` files),
//! indexed once per VM on first use, and pieces are merged exactly as tiktoken merges them
//! (lowest rank first, leftmost on ties).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

/// Magic bytes of a `.ranks` table (see `data/generate.py`).
const MAGIC: &[u8; 8] = b"HRBPE\0\0\x01";

/// "Empty slot" in the hash index; slots hold `rank + 1`.
const EMPTY: u32 = 0;

/// A rank table: the token bytes in rank order and an open-addressing index from bytes to rank.
pub(crate) struct Ranks {
    blob: &'static [u8],
    /// Offset in `blob` of each token's bytes; the length byte sits just before it.
    starts: Vec<u32>,
    /// Linear-probing table of `rank + 1` (0 = empty), power-of-two sized, at most half full.
    index: Vec<u32>,
}

impl Ranks {
    /// Indexes an embedded table; an invalid table (which a test rules out) yields an empty one,
    /// whose counts are byte counts rather than a panic.
    fn load(blob: &'static [u8]) -> Ranks {
        let mut ranks = Ranks {
            blob,
            starts: Vec::new(),
            index: Vec::new(),
        };
        if blob.get(..8) != Some(MAGIC.as_slice()) {
            return ranks;
        }
        let count = blob
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let mut pos = 12usize;
        let mut starts = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        while let Some(&len) = blob.get(pos) {
            let start = pos.saturating_add(1);
            let end = start.saturating_add(usize::from(len));
            if end > blob.len() {
                return ranks;
            }
            starts.push(u32::try_from(start).unwrap_or(u32::MAX));
            pos = end;
        }
        let capacity = starts.len().saturating_mul(2).next_power_of_two().max(2);
        let mut index = vec![EMPTY; capacity];
        let mask = capacity - 1;
        for (rank, &start) in starts.iter().enumerate() {
            let bytes = token_at(blob, start);
            let mut slot = fnv1a(bytes) as usize & mask;
            while index.get(slot).is_some_and(|&s| s != EMPTY) {
                slot = (slot + 1) & mask;
            }
            if let Some(cell) = index.get_mut(slot) {
                *cell = u32::try_from(rank).unwrap_or(u32::MAX).saturating_add(1);
            }
        }
        ranks.starts = starts;
        ranks.index = index;
        ranks
    }

    /// Number of tokens in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Heap bytes this table's index uses (the token bytes live in the module's data segment).
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.starts.capacity() + self.index.capacity()) * std::mem::size_of::<u32>()
    }

    /// The rank of `bytes`, if it is a token.
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut slot = fnv1a(bytes) as usize & mask;
        loop {
            let entry = *self.index.get(slot)?;
            if entry == EMPTY {
                return None;
            }
            let rank = entry - 1;
            let start = *self.starts.get(usize::try_from(rank).ok()?)?;
            if token_at(self.blob, start) == bytes {
                return Some(rank);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The bytes of token `rank`.
    #[cfg(test)]
    pub(crate) fn token(&self, rank: u32) -> Option<&'static [u8]> {
        let start = *self.starts.get(usize::try_from(rank).ok()?)?;
        Some(token_at(self.blob, start))
    }

    /// How many tokens byte-pair encoding makes of one pre-tokenized piece.
    pub(crate) fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return usize::from(!piece.is_empty());
        }
        self.merge(piece)
    }

    /// tiktoken's merge loop on a linked list with a heap of candidate pairs: repeatedly merge
    /// the adjacent pair whose concatenation has the lowest rank (leftmost on ties) until no
    /// adjacent pair is a token. O(n log n), so long unbroken pieces (base64, minified blobs)
    /// stay cheap. Returns the number of parts left.
    fn merge(&self, piece: &[u8]) -> usize {
        let n = piece.len();
        // Part i covers piece[start[i]..start[next[i]]]; next = n marks the end.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut pair_rank = vec![u32::MAX; n];
        let mut heap = BinaryHeap::new();
        let end_of = |next: &[usize], i: usize| next.get(i).copied().unwrap_or(n);
        let pair = |next: &[usize], i: usize| -> Option<u32> {
            let j = end_of(next, i);
            if j >= n {
                return None;
            }
            let k = end_of(next, j);
            self.rank(piece.get(i..k)?)
        };
        for i in 0..n {
            if let Some(rank) = pair(&next, i) {
                if let Some(slot) = pair_rank.get_mut(i) {
                    *slot = rank;
                }
                heap.push(Reverse((rank, i)));
            }
        }
        let mut parts = n;
        while let Some(Reverse((rank, i))) = heap.pop() {
            let valid = alive.get(i) == Some(&true) && pair_rank.get(i) == Some(&rank);
            if !valid {
                continue;
            }
            // Merge part i with its successor j.
            let j = end_of(&next, i);
            let after = end_of(&next, j);
            if let Some(slot) = alive.get_mut(j) {
                *slot = false;
            }
            if let Some(slot) = next.get_mut(i) {
                *slot = after;
            }
            if let Some(slot) = prev.get_mut(after) {
                *slot = i;
            }
            parts -= 1;
            let before = prev.get(i).copied().unwrap_or(usize::MAX);
            for part in [i, before] {
                if part >= n {
                    continue;
                }
                let rank = pair(&next, part).unwrap_or(u32::MAX);
                if let Some(slot) = pair_rank.get_mut(part) {
                    *slot = rank;
                }
                if rank != u32::MAX {
                    heap.push(Reverse((rank, part)));
                }
            }
        }
        parts
    }
}

fn token_at(blob: &'static [u8], start: u32) -> &'static [u8] {
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let len = start
        .checked_sub(1)
        .and_then(|at| blob.get(at))
        .map_or(0, |&len| usize::from(len));
    blob.get(start..start.saturating_add(len))
        .unwrap_or_default()
}

/// FNV-1a, 64-bit: a fast, fixed (hence deterministic) hash for the rank index.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

static CL100K: OnceLock<Ranks> = OnceLock::new();
static O200K: OnceLock<Ranks> = OnceLock::new();

/// The cl100k_base table, indexed on first use.
pub(crate) fn cl100k() -> &'static Ranks {
    CL100K.get_or_init(|| Ranks::load(include_bytes!("data/cl100k_base.ranks")))
}

/// The o200k_base table, indexed on first use.
pub(crate) fn o200k() -> &'static Ranks {
    O200K.get_or_init(|| Ranks::load(include_bytes!("data/o200k_base.ranks")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_load_whole() {
        assert_eq!(cl100k().len(), 100_256);
        assert_eq!(o200k().len(), 199_998);
        for table in [cl100k(), o200k()] {
            for rank in [0u32, 1, 255, 1000, 50_000, 99_999] {
                let token = table.token(rank).unwrap();
                assert_eq!(table.rank(token), Some(rank));
            }
            // Every single byte is a token.
            for byte in 0..=255u8 {
                assert!(table.rank(&[byte]).is_some(), "{byte}");
            }
        }
    }

    #[test]
    fn merges_like_tiktoken() {
        // "hello" is one token in both; a long run of one letter merges into long tokens.
        assert_eq!(o200k().count_piece(b"hello"), 1);
        assert_eq!(cl100k().count_piece(b"hello"), 1);
        assert_eq!(o200k().count_piece(b""), 0);
        assert!(o200k().count_piece(&[b'a'; 1000]) < 200);
    }
}
