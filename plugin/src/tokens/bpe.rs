//! Byte-pair encoding over tiktoken's rank tables, for counting: the rank tables are embedded in
//! the module (`data/*.ranks`, built by `data/generate.py` from the published `.tiktoken` files),
//! indexed once per VM on first use, and pieces are merged exactly as tiktoken merges them
//! (lowest rank first, leftmost on ties).
//!
//! Counting is what the pipeline does most, so it has three fast paths, all exact: a piece of
//! one byte is one token; a [`PieceCache`] remembers the counts of recent short pieces (tool
//! outputs repeat the same words endlessly); a piece that is itself a token is one token. Only
//! then are pieces merged: on the stack for short pieces, with a heap for long ones.
//!
//! One exception bounds the work (DESIGN.md decision 10): a piece longer than [`LONG_PIECE`]
//! bytes — which no real text has (it would be one word, or one run of spaces or punctuation,
//! over a kilobyte) — is counted from its first [`LONG_PIECE`] bytes, scaled to its length.
//! Merging a megabyte of letter salad costs about a microsecond per byte, and a body holds
//! tens of megabytes; the sample keeps any piece at a constant cost.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

/// Magic bytes of a `.ranks` table (see `data/generate.py`).
const MAGIC: &[u8; 8] = b"HRBPE\0\0\x01";

/// "Empty slot" in the hash index.
const EMPTY: u32 = 0;

/// Bits of an index slot holding `rank + 1` (both tables have fewer than 2^18 tokens); the
/// bits above hold a tag from the hash, so most probes that miss never touch the token bytes.
const RANK_BITS: u32 = 18;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;

/// Pieces up to this many bytes are merged on the stack.
const SMALL_PIECE: usize = 64;

/// Pieces longer than this many bytes are counted from a sample of this size, scaled.
pub(crate) const LONG_PIECE: usize = 1024;

/// A rank table: the token bytes in rank order and an open-addressing index from bytes to rank.
pub(crate) struct Ranks {
    blob: &'static [u8],
    /// Offset in `blob` of each token's bytes; the length byte sits just before it.
    starts: Vec<u32>,
    /// Linear-probing table of `tag << RANK_BITS | (rank + 1)` (0 = empty), power-of-two
    /// sized, at most half full.
    index: Vec<u32>,
}

/// A 64-bit hash of `bytes`: fast, fixed (hence deterministic), eight bytes at a time.
#[inline]
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        for (slot, byte) in buf.iter_mut().zip(rest) {
            *slot = *byte;
        }
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    finish(h)
}

/// Spreads `h` over the bits the index reads: the low bits (the slot) and the top ones (the
/// tag). A product's top bits depend on every bit of `h`; the shift folds them into the low
/// ones. 64-bit products only: wasm has no 64 × 64 → 128-bit multiply, and the folded
/// 128-bit product this used to take was a `__multi3` call per piece there (2.5 % of a cold
/// request's guest time).
#[inline(always)]
fn finish(h: u64) -> u64 {
    let p = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    p ^ (p >> 45)
}

/// The tag bits of a hash, never zero together with a rank.
#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 50) as u32) << RANK_BITS
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
        if starts.len() >= RANK_MASK as usize {
            return ranks;
        }
        let capacity = starts.len().saturating_mul(2).next_power_of_two().max(2);
        let mut index = vec![EMPTY; capacity];
        let mask = capacity - 1;
        for (rank, &start) in starts.iter().enumerate() {
            let bytes = token_at(blob, start);
            let hash = hash_bytes(bytes);
            let mut slot = hash as usize & mask;
            while index.get(slot).is_some_and(|&s| s != EMPTY) {
                slot = (slot + 1) & mask;
            }
            if let Some(cell) = index.get_mut(slot) {
                *cell = tag_of(hash) | (u32::try_from(rank).unwrap_or(RANK_MASK - 1) + 1);
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
    #[inline]
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let hash = hash_bytes(bytes);
        let tag = tag_of(hash);
        let mut slot = hash as usize & mask;
        loop {
            let entry = *self.index.get(slot)?;
            if entry == EMPTY {
                return None;
            }
            if entry & !RANK_MASK == tag {
                let rank = (entry & RANK_MASK) - 1;
                let start = *self.starts.get(usize::try_from(rank).ok()?)?;
                if token_at(self.blob, start) == bytes {
                    return Some(rank);
                }
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
        if piece.len() > LONG_PIECE {
            return self.estimate_long(piece);
        }
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return usize::from(!piece.is_empty());
        }
        if piece.len() <= SMALL_PIECE {
            self.merge_small(piece)
        } else {
            self.merge(piece)
        }
    }

    /// The count of a piece longer than [`LONG_PIECE`]: its first [`LONG_PIECE`] bytes merged
    /// exactly, scaled to the piece's length (rounded up).
    fn estimate_long(&self, piece: &[u8]) -> usize {
        let sample = piece.get(..LONG_PIECE).unwrap_or(piece);
        let tokens = self.merge(sample).max(1);
        tokens
            .saturating_mul(piece.len())
            .div_ceil(sample.len().max(1))
    }

    /// The rank of `piece[from..to]`, or `u32::MAX`.
    #[inline(always)]
    fn pair_rank(&self, piece: &[u8], from: u8, to: u8) -> u32 {
        piece
            .get(usize::from(from)..usize::from(to))
            .and_then(|pair| self.rank(pair))
            .unwrap_or(u32::MAX)
    }

    /// tiktoken's merge loop for a piece of at most [`SMALL_PIECE`] bytes, on the stack:
    /// repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on
    /// ties) until no adjacent pair is a token. Returns the number of parts left.
    fn merge_small(&self, piece: &[u8]) -> usize {
        let n = piece.len().min(SMALL_PIECE);
        // Part i covers piece[bounds[i]..bounds[i + 1]]; ranks[i] is the rank of parts i, i+1.
        let mut bounds = [0u8; SMALL_PIECE + 1];
        for (i, bound) in bounds.iter_mut().enumerate().take(n + 1) {
            *bound = u8::try_from(i).unwrap_or(u8::MAX);
        }
        let mut ranks = [u32::MAX; SMALL_PIECE];
        let bound = |bounds: &[u8; SMALL_PIECE + 1], i: usize| bounds.get(i).copied().unwrap_or(0);
        for (i, rank) in ranks.iter_mut().enumerate().take(n.saturating_sub(1)) {
            *rank = self.pair_rank(piece, bound(&bounds, i), bound(&bounds, i + 2));
        }
        let mut parts = n;
        while parts > 1 {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &rank) in ranks.iter().enumerate().take(parts - 1) {
                if rank < best {
                    best = rank;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            // Merge parts `at` and `at + 1`: drop the boundary between them.
            bounds.copy_within(at + 2..=parts, at + 1);
            ranks.copy_within(at + 1..parts - 1, at);
            parts -= 1;
            if at + 1 < parts {
                let rank = self.pair_rank(piece, bound(&bounds, at), bound(&bounds, at + 2));
                if let Some(slot) = ranks.get_mut(at) {
                    *slot = rank;
                }
            }
            if at > 0 {
                let rank = self.pair_rank(piece, bound(&bounds, at - 1), bound(&bounds, at + 1));
                if let Some(slot) = ranks.get_mut(at - 1) {
                    *slot = rank;
                }
            }
        }
        parts
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

/// Pieces up to this many bytes are remembered by a [`PieceCache`].
pub(crate) const CACHED_PIECE: usize = 24;

/// Number of entries of a [`PieceCache`] (a power of two).
pub(crate) const CACHE_ENTRIES: usize = 8192;

/// One remembered piece: its bytes (zero-padded little-endian words), length and token count.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct CacheEntry {
    words: [u64; 3],
    len: u8,
    count: u8,
}

/// A bounded, direct-mapped memory of piece → token count for one encoding: each piece has one
/// slot (by hash), and a new piece overwrites whatever was there. Counts are a pure function of
/// the piece, so the cache changes no result, only the time; its size is fixed
/// ([`PieceCache::BYTES`]).
pub(crate) struct PieceCache {
    entries: Box<[CacheEntry]>,
}

/// The little-endian word of `bytes[at..at + 8]`, zero-padded.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(word) = bytes.get(at..at + 8) {
        return <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
    }
    let mut buf = [0u8; 8];
    for (slot, byte) in buf.iter_mut().zip(bytes.get(at..).unwrap_or_default()) {
        *slot = *byte;
    }
    u64::from_le_bytes(buf)
}

/// The first `len` (≤ 8) bytes of `word`.
#[inline(always)]
fn keep_bytes(word: u64, len: usize) -> u64 {
    if len >= 8 {
        word
    } else {
        word & ((1u64 << (8 * len)) - 1)
    }
}

impl PieceCache {
    /// Heap bytes of one cache.
    pub(crate) const BYTES: usize = CACHE_ENTRIES * std::mem::size_of::<CacheEntry>();

    /// An empty cache.
    pub(crate) fn new() -> PieceCache {
        let empty = CacheEntry {
            words: [0; 3],
            len: 0,
            count: 0,
        };
        PieceCache {
            entries: vec![empty; CACHE_ENTRIES].into_boxed_slice(),
        }
    }

    /// The token count of `piece` under `ranks`, remembered; `tail` is the text from the
    /// piece's start on (so short pieces are read a word at a time).
    #[inline(always)]
    pub(crate) fn count(&mut self, ranks: &Ranks, piece: &[u8], tail: &[u8]) -> usize {
        let len = piece.len();
        if len <= 1 {
            return len;
        }
        if len > CACHED_PIECE {
            return ranks.count_piece(piece);
        }
        // The text after the piece pads its words: read whole words, then cut at the piece end.
        let source = if tail.len() >= CACHED_PIECE {
            tail
        } else {
            piece
        };
        let first = keep_bytes(word_at(source, 0), len);
        let words = if len <= 8 {
            [first, 0, 0]
        } else {
            [
                first,
                keep_bytes(word_at(source, 8), len - 8),
                keep_bytes(word_at(source, 16), len.saturating_sub(16)),
            ]
        };
        let [w0, w1, w2] = words;
        let hash = finish(
            w0 ^ (w1 ^ w2.rotate_left(29) ^ 0x1319_8a2e_0370_7344)
                .wrapping_add(len as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let slot = hash as usize & (CACHE_ENTRIES - 1);
        let Some(entry) = self.entries.get_mut(slot) else {
            return ranks.count_piece(piece);
        };
        if usize::from(entry.len) == len && entry.words == words {
            return usize::from(entry.count);
        }
        let count = ranks.count_piece(piece);
        *entry = CacheEntry {
            words,
            len: u8::try_from(len).unwrap_or(0),
            count: u8::try_from(count).unwrap_or(u8::MAX),
        };
        count
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
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

    /// The stack merge and the heap merge agree, and the cache changes no count.
    #[test]
    fn merge_paths_and_cache_agree() {
        let texts = [
            crate::pipeline::tests::corpus_texts(),
            vec![
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
                "Supercalifragilisticexpialidocious antidisestablishmentarianism".to_owned(),
                "日本語のテキストと😀絵文字 ÜBERGRÖẞENTRÄGER ǅemal".to_owned(),
                "0123456789abcdefABCDEF+/=".repeat(40),
            ],
        ]
        .concat();
        for table in [cl100k(), o200k()] {
            let mut cache = PieceCache::new();
            for text in &texts {
                for encoding in [
                    crate::tokens::Encoding::Cl100kBase,
                    crate::tokens::Encoding::O200kBase,
                ] {
                    crate::tokens::pretokenize::for_each_piece(encoding, text, |piece, tail| {
                        let heap = if piece.len() <= 1 || table.rank(piece).is_some() {
                            usize::from(!piece.is_empty())
                        } else {
                            table.merge(piece)
                        };
                        assert_eq!(table.count_piece(piece), heap, "{piece:?}");
                        assert_eq!(cache.count(table, piece, tail), heap, "{piece:?}");
                        assert_eq!(cache.count(table, piece, piece), heap, "{piece:?}");
                        std::ops::ControlFlow::Continue(())
                    });
                    // Every prefix of a long word, merged both ways.
                    for end in 2..=SMALL_PIECE.min(text.len()) {
                        let piece = &text.as_bytes()[..end];
                        if table.rank(piece).is_none() {
                            assert_eq!(table.merge_small(piece), table.merge(piece));
                        }
                    }
                }
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
