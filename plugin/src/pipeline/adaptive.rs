//! How many items a lossy selection keeps: between a floor and a ceiling, growing with how
//! much new information the items carry, times the bias (1.0 neutral; upstream's live-zone path
//! passed 0.0 and collapsed every selection to its floor, bug B1).

use std::borrow::Cow;

use super::byte_class::bytes_in;
use super::fixed_hash::fixed_hash_str;
use super::relevance::{RawWord, WordSink, lowercase, raw_words};
use super::short_eq::same_str;

/// The fraction of items (0..=1) that bring at least one word not seen in earlier items.
/// Digits are masked first, so ids, counters and timestamps do not count as new information.
pub fn novelty<S: AsRef<str>>(items: &[S]) -> f64 {
    let mut counter = Novelty::default();
    for item in items {
        for word in raw_words(item.as_ref()) {
            counter.word(word);
        }
        counter.end_doc();
    }
    counter.fraction()
}

/// [`novelty`] fed a word at a time, so a walk over the items' words made for another signal
/// (BM25's, [`super::relevance::Query::relevant_feeding`]) computes it too.
#[derive(Default)]
pub(crate) struct Novelty<'t> {
    /// Which words were seen is all that matters (not their order), so a hash table with the
    /// fixed hasher keeps this deterministic; it compares words itself ([`same_str`]). A word
    /// with nothing to lowercase or mask is kept as a slice of its item: only the others are
    /// copied.
    seen: hashbrown::HashTable<Cow<'t, str>>,
    /// Short words known to be in `seen`, by [`packed_key`]: most words of a collection
    /// (its keys, its common values, its masked numbers) were seen in an earlier item, and a
    /// hit here spares the word its SipHash and table probe (those two were a ninth of a cold
    /// JSON request's path, issue 18). Only a cache: a word it misses (evicted, never
    /// stored, or a body built to make every word collide) takes the table's path, so the
    /// fraction is the same whatever it holds.
    recent: Option<Box<[u128; RECENT_SLOTS]>>,
    buf: String,
    masked: String,
    /// Items that brought a new word, items ended, and whether the current one has.
    novel: usize,
    items: usize,
    brought: bool,
}

/// Slots of [`Novelty`]'s cache of short seen words (16 KiB).
const RECENT_SLOTS: usize = 1024;

/// A short ASCII word's key (lowercased, ASCII digits made `0`) as one integer: its bytes,
/// little-endian, zero-padded. No byte of a word is zero, so two words share a packed key only
/// when their keys are equal, and no word packs to zero (an empty slot). `None` for a word
/// longer than sixteen bytes or not ASCII.
fn packed_key(word: RawWord<'_>) -> Option<u128> {
    if !word.ascii {
        return None;
    }
    let packed = load_short(word.text.as_bytes())?;
    // Bytes 'A'..='Z' gain 0x20 and '0'..='9' become '0', eight at a time: the cache is
    // checked for every word, so no byte loop (the same folding as `lowercase` and the mask).
    let fold = |half: u64| {
        let folded = half | (bytes_in::<b'A', b'Z'>(half) >> 2);
        let digits = bytes_in::<b'0', b'9'>(folded);
        // A digit's low nibble is cleared ('0'..='9' is 0x30..=0x39): bit 7 shifted onto bits
        // 3 to 0 of its own byte (shifts, not a multiplication).
        folded & !((digits >> 4) | (digits >> 5) | (digits >> 6) | (digits >> 7))
    };
    Some(u128::from(fold(packed as u64)) | u128::from(fold((packed >> 64) as u64)) << 64)
}

/// Up to sixteen bytes as one integer, little-endian, zero-padded (`None` past sixteen).
/// Loaded as two overlapping pieces, not copied into a zeroed buffer first: the copy was a
/// `memcpy` call, and reading the buffer back as one integer stalled on the bytes just stored.
fn load_short(bytes: &[u8]) -> Option<u128> {
    let n = bytes.len();
    let byte = |i: usize| bytes.get(i).map(|&b| u128::from(b));
    let quad = |i: usize| {
        let four = bytes.get(i..i + 4)?;
        <[u8; 4]>::try_from(four)
            .ok()
            .map(|q| u128::from(u32::from_le_bytes(q)))
    };
    let octet = |i: usize| {
        let eight = bytes.get(i..i + 8)?;
        <[u8; 8]>::try_from(eight)
            .ok()
            .map(|o| u128::from(u64::from_le_bytes(o)))
    };
    match n {
        0 => Some(0),
        // Bytes 0, n / 2 and n - 1 cover every byte of a word of one to three.
        1..=3 => Some(byte(0)? | byte(n / 2)? << (8 * (n / 2)) | byte(n - 1)? << (8 * (n - 1))),
        // The first four and the last four, overlapping by 8 - n.
        4..=8 => Some(quad(0)? | quad(n - 4)? << (8 * (n - 4))),
        // The first eight and the last eight, overlapping by 16 - n.
        9..=16 => Some(octet(0)? | octet(n - 8)? << (8 * (n - 8))),
        _ => None,
    }
}

/// The slot of a packed key: a multiplicative hash's top bits, over both halves.
fn recent_slot(key: u128) -> usize {
    let low = key as u64;
    let high = (key >> 64) as u64;
    let mixed = low.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ high.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    (mixed >> (64 - RECENT_SLOTS.trailing_zeros())) as usize
}

impl<'t> Novelty<'t> {
    /// The fraction of the items ended so far that brought a new word (0 for none).
    pub(crate) fn fraction(&self) -> f64 {
        if self.items == 0 {
            return 0.0;
        }
        self.novel as f64 / self.items as f64
    }
}

impl<'t> WordSink<'t> for Novelty<'t> {
    fn word(&mut self, word: RawWord<'t>) {
        let packed = packed_key(word);
        let recent = self
            .recent
            .get_or_insert_with(|| Box::new([0; RECENT_SLOTS]));
        let slot = packed.and_then(|key| recent.get_mut(recent_slot(key)));
        if let (Some(key), Some(slot)) = (packed, slot) {
            if *slot == key {
                return;
            }
            *slot = key;
        }
        let lowered = lowercase(word, &mut self.buf);
        let key = if word.digit {
            self.masked.clear();
            self.masked.extend(
                lowered
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '0' } else { c }),
            );
            self.masked.as_str()
        } else {
            lowered
        };
        let hash = fixed_hash_str(key);
        if self.seen.find(hash, |seen| same_str(seen, key)).is_none() {
            // Unchanged by lowercasing and masking: the key is the item's own slice.
            let kept = if word.ascii && !word.upper && !word.digit {
                Cow::Borrowed(word.text)
            } else {
                Cow::Owned(key.to_owned())
            };
            self.seen
                .insert_unique(hash, kept, |seen| fixed_hash_str(seen));
            self.brought = true;
        }
    }

    fn end_doc(&mut self) {
        self.novel += usize::from(std::mem::take(&mut self.brought));
        self.items += 1;
    }
}

/// The number of items to keep out of `n`: `bias × (min_k + novelty × (max_k − min_k))`,
/// rounded, at least `min_k`, at most `n`.
pub fn keep_count(n: usize, novelty: f64, bias: f64, min_k: usize, max_k: usize) -> usize {
    let max_k = max_k.max(min_k);
    let span = (max_k - min_k) as f64;
    let base = min_k as f64 + novelty.clamp(0.0, 1.0) * span;
    let k = (base * bias).round();
    let k = if k.is_finite() && k > 0.0 {
        k as usize
    } else {
        min_k
    };
    k.max(min_k).min(n)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The definition of [`novelty`]: every word lowercased, then its ASCII digits masked,
    /// in a set of owned strings.
    fn reference_novelty(items: &[String]) -> f64 {
        let mut seen = std::collections::BTreeSet::new();
        let novel = items
            .iter()
            .filter(|item| {
                let mut brought = false;
                for word in super::super::relevance::words(item) {
                    let masked: String = word
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '0' } else { c })
                        .collect();
                    brought |= seen.insert(masked);
                }
                brought
            })
            .count();
        if items.is_empty() {
            0.0
        } else {
            novel as f64 / items.len() as f64
        }
    }

    proptest::proptest! {
        /// Items of words in either case, with digits, non-ASCII letters (a final sigma, which
        /// lowercases by its position) and separators: the same fraction as the definition.
        #[test]
        fn novelty_is_its_definition(
            items in proptest::collection::vec(
                proptest::collection::vec(
                    "(id|ID|Id7|id8|ok|OK|caf\u{e9}|CAF\u{c9}|\u{3a3}\u{3a3}|x1y|_|[a-c]{1,3}| |,|:)",
                    0..8,
                ),
                0..12,
            )
        ) {
            let items: Vec<String> = items.into_iter().map(|parts| parts.concat()).collect();
            proptest::prop_assert_eq!(novelty(&items).to_bits(), reference_novelty(&items).to_bits());
        }
    }

    proptest::proptest! {
        /// Novelty counted on BM25's walk (with a question or none) is the novelty of its own
        /// walk, and feeding it changes nothing BM25 finds.
        #[test]
        fn novelty_fed_by_bm25_is_novelty(
            items in proptest::collection::vec(
                proptest::collection::vec("(id|ID|Id7|ok|caf\u{e9}|x1y|failed|retry|_| |,|:)", 0..8),
                0..12,
            ),
            question in "(failed|retry|id|what)( (failed|retry|id|what)){0,2}|",
        ) {
            let items: Vec<String> = items.into_iter().map(|parts| parts.concat()).collect();
            let query = super::super::relevance::Query::new(&question);
            let mut counter = Novelty::default();
            let fed = query.relevant_feeding(&items, 5, &mut counter);
            proptest::prop_assert_eq!(fed, query.relevant(&items, 5));
            proptest::prop_assert_eq!(counter.fraction().to_bits(), novelty(&items).to_bits());
        }
    }

    proptest::proptest! {
        /// A short ASCII word packs to its key's bytes (lowercased, digits masked), zero-padded;
        /// any other word packs to nothing.
        #[test]
        fn packed_key_is_the_keys_bytes(text in "[\\x01-\\x7f]{1,20}|[a-zA-Z0-9_\u{e9}]{1,18}") {
            let word = RawWord {
                text: &text,
                ascii: text.is_ascii(),
                upper: text.bytes().any(|b| b.is_ascii_uppercase()),
                digit: text.bytes().any(|b| b.is_ascii_digit()),
            };
            let key: Vec<u8> = text
                .to_ascii_lowercase()
                .bytes()
                .map(|b| if b.is_ascii_digit() { b'0' } else { b })
                .collect();
            let expected = (text.is_ascii() && key.len() <= 16).then(|| {
                let mut padded = [0u8; 16];
                padded[..key.len()].copy_from_slice(&key);
                u128::from_le_bytes(padded)
            });
            proptest::prop_assert_eq!(packed_key(word), expected);
        }
    }

    /// Far more distinct words (4 to 20 bytes) than the cache has slots, each seen again later: words
    /// the cache evicted or never held still count as seen, as the definition says.
    #[test]
    fn novelty_past_the_cache_is_its_definition() {
        let word = |i: usize| {
            format!("w{}", (b'a' + (i % 26) as u8) as char).repeat(1 + i / 26 % 9)
                + &char::from(b'a' + (i / 78 % 26) as u8).to_string()
                + &char::from(b'a' + (i / 2028 % 26) as u8).to_string()
        };
        let items: Vec<String> = (0..6000)
            .map(|i| {
                format!(
                    "{} {}",
                    word(i * 7 % 5000),
                    word(i * 13 % 5000).to_uppercase()
                )
            })
            .collect();
        assert_eq!(
            novelty(&items).to_bits(),
            reference_novelty(&items).to_bits()
        );
        let fraction = novelty(&items);
        assert!(fraction > 0.1 && fraction < 0.9, "{fraction}");
    }

    proptest::proptest! {
        #[test]
        fn load_short_is_the_bytes_zero_padded(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..20)) {
            let expected = (bytes.len() <= 16).then(|| {
                let mut padded = [0u8; 16];
                padded[..bytes.len()].copy_from_slice(&bytes);
                u128::from_le_bytes(padded)
            });
            proptest::prop_assert_eq!(load_short(&bytes), expected);
        }
    }

    #[test]
    fn neutral_bias_scales_with_novelty() {
        let same: Vec<String> = (0..50).map(|i| format!("request {i} ok")).collect();
        let varied: Vec<String> = (0..50)
            .map(|i| format!("word{} other{}", (b'a' + (i % 26) as u8) as char, i))
            .collect();
        assert!(novelty(&same) < 0.05);
        assert!(novelty(&varied) > 0.4);
        assert_eq!(keep_count(50, 0.0, 1.0, 3, 15), 3);
        assert_eq!(keep_count(50, 1.0, 1.0, 3, 15), 15);
        assert_eq!(keep_count(50, 1.0, 1.5, 3, 15), 23);
        assert_eq!(keep_count(2, 1.0, 1.0, 3, 15), 2);
        // Bias 0 would collapse to the floor; it is never the neutral value.
        assert_eq!(keep_count(50, 1.0, 0.0, 3, 15), 3);
    }
}
