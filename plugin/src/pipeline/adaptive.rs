//! How many items a lossy selection keeps: between a floor and a ceiling, growing with how
//! much new information the items carry, times the bias (1.0 neutral; upstream's live-zone path
//! passed 0.0 and collapsed every selection to its floor, bug B1).

use std::borrow::Cow;

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
    buf: String,
    masked: String,
    /// Items that brought a new word, items ended, and whether the current one has.
    novel: usize,
    items: usize,
    brought: bool,
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
