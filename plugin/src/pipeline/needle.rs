//! Substrings looked for in every line of a tool output, each with a searcher built once, and
//! ASCII case-insensitive ones that need no lowercased copy of the line.
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

/// A lowercase ASCII substring looked for regardless of ASCII case, without lowercasing the
/// text: `haystack.to_ascii_lowercase().contains(text)`. The tests of a log line's level and
/// summary run on every line, and a lowercased copy of each line (an allocation) was most of
/// their cost. A search for the needle's first letter in either case (`memchr2`, simd128 in
/// the guest) finds the places where it can start, and a comparison there decides.
pub(crate) struct CaselessNeedle {
    text: &'static str,
    /// The offset of the needle's first letter.
    anchor: usize,
}

impl CaselessNeedle {
    /// The needle `text`: lowercase ASCII with at least one letter (checked when it is built,
    /// which for a `static` is at compile time).
    // Indexing in a constant: evaluation fails the build, not a request.
    #[allow(clippy::indexing_slicing)]
    pub(crate) const fn new(text: &'static str) -> CaselessNeedle {
        let bytes = text.as_bytes();
        let mut anchor = bytes.len();
        let mut i = 0;
        while i < bytes.len() {
            assert!(bytes[i].is_ascii() && !bytes[i].is_ascii_uppercase());
            if anchor == bytes.len() && bytes[i].is_ascii_lowercase() {
                anchor = i;
            }
            i += 1;
        }
        assert!(anchor < bytes.len());
        CaselessNeedle { text, anchor }
    }

    /// Whether `haystack`, ASCII-lowercased, contains the needle.
    pub(crate) fn is_in(&self, haystack: &str) -> bool {
        self.starts_in(haystack).next().is_some()
    }

    /// The byte offsets where the needle starts in `haystack`, ASCII-lowercased, in order
    /// (overlapping occurrences included).
    pub(crate) fn starts_in<'h>(&self, haystack: &'h str) -> impl Iterator<Item = usize> + 'h {
        let needle = self.text.as_bytes();
        let bytes = haystack.as_bytes();
        let anchor = self.anchor;
        // `new` guarantees the anchor is a letter of the needle.
        let letter = needle.get(anchor).copied().unwrap_or(b'a');
        memchr::memchr2_iter(letter, letter.to_ascii_uppercase(), bytes).filter_map(move |at| {
            let start = at.checked_sub(anchor)?;
            bytes
                .get(start..start.checked_add(needle.len())?)
                .filter(|window| window.eq_ignore_ascii_case(needle))
                .map(|_| start)
        })
    }

    /// Whether `haystack`, ASCII-lowercased, starts with the needle.
    pub(crate) fn starts(&self, haystack: &str) -> bool {
        let needle = self.text.as_bytes();
        let bytes = haystack.as_bytes();
        // Lines are tested against a dozen prefixes each and most differ at the first byte:
        // it is compared alone first (the needle is lowercase).
        if let (Some(&first), Some(&byte)) = (needle.first(), bytes.first())
            && first != byte.to_ascii_lowercase()
        {
            return false;
        }
        bytes
            .get(..needle.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(needle))
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

        /// The same answer as lowercasing the haystack first, in mixed case, at the ends,
        /// overlapping and beside non-ASCII text (whose bytes no ASCII letter matches).
        #[test]
        fn a_caseless_needle_is_found_where_the_lowercased_text_holds_it(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "level", "LEVEL", "Level", "=", "error", "ERROR", "err", "l", "L", "é", "É",
                    " ", "' panicked at", "' PANICKED AT", "'", "\"", ":", "passed", " in ",
                    " IN ", "i", "İ", "K", "\u{212a}",
                ]),
                0..30,
            )
        ) {
            let haystack: String = parts.concat();
            let lower = haystack.to_ascii_lowercase();
            for text in ["level=error", "\"level\":\"error\"", "' panicked at", " passed", " in ", "l", "error"] {
                let needle = CaselessNeedle::new(text);
                proptest::prop_assert_eq!(needle.is_in(&haystack), lower.contains(text), "{}", text);
                proptest::prop_assert_eq!(needle.starts(&haystack), lower.starts_with(text), "{}", text);
            }
        }
    }
}
