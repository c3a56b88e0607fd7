//! Substrings looked for in every line of a tool output, each with a searcher built once.
//!
//! Why not `str::contains`: outside x86-64 (in the wasm guest) it builds a two-way searcher on
//! every call, and these tests run on every line of every log. That setup was 8 % of a cold
//! log compression in the guest (issue 18). `memchr::memmem` searches with `simd128` there.

use std::sync::OnceLock;

use memchr::memmem::Finder;

/// A substring and its searcher, built on first use.
pub(crate) struct Needle {
    text: &'static str,
    finder: OnceLock<Finder<'static>>,
}

impl Needle {
    /// The needle `text` (its searcher is built on first use).
    pub(crate) const fn new(text: &'static str) -> Needle {
        Needle {
            text,
            finder: OnceLock::new(),
        }
    }

    /// Whether `haystack` contains the needle: `haystack.contains(text)`.
    pub(crate) fn is_in(&self, haystack: &str) -> bool {
        self.finder
            .get_or_init(|| Finder::new(self.text))
            .find(haystack.as_bytes())
            .is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The same answer as `str::contains`, for needles that occur, overlap and do not.
        #[test]
        fn a_needle_is_found_where_contains_finds_it(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["level", "=", "error", "err", "l", "é", " ", "' panicked at", "'"]),
                0..30,
            )
        ) {
            let haystack: String = parts.concat();
            for text in ["level=error", "' panicked at", "err", "é ", "="] {
                let needle = Needle::new(text);
                proptest::prop_assert_eq!(needle.is_in(&haystack), haystack.contains(text));
            }
        }
    }
}
