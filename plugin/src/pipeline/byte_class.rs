//! What each byte value is to the walks over the words of a tool output (relevance's words, log
//! templates, log level words): one table, so a walk pays one load per byte instead of a chain
//! of range tests.
//! These walks run over every item and line, some of them twice. A log template only changes
//! at digits and quotes, so its walk first skips to the next one eight bytes at a time
//! ([`find_digit_or_quote`]).

use crate::json::special::{LOWS, find_flagged, zero_bytes};

/// `a`–`z`.
pub(crate) const LOWER: u8 = 1;
/// `A`–`Z`.
pub(crate) const UPPER: u8 = 2;
/// `0`–`9`.
pub(crate) const DIGIT: u8 = 4;
/// `_`.
pub(crate) const UNDERSCORE: u8 = 8;
/// `0`–`9`, `a`–`f`, `A`–`F`.
pub(crate) const HEX: u8 = 16;
/// `"` or `'`.
pub(crate) const QUOTE: u8 = 32;
/// A byte of a multi-byte UTF-8 character.
pub(crate) const NON_ASCII: u8 = 64;
/// An ASCII letter or digit.
pub(crate) const ALPHANUMERIC: u8 = LOWER | UPPER | DIGIT;

/// The flags of every byte value.
// Indexing in a constant: a byte indexes 256 entries, and evaluation fails the build, not a
// request, if it ever could not.
#[allow(clippy::indexing_slicing)]
static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let byte = b as u8;
        table[b] = match byte {
            b'a'..=b'z' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'0'..=b'9' => DIGIT,
            b'_' => UNDERSCORE,
            b'"' | b'\'' => QUOTE,
            0x80..=0xff => NON_ASCII,
            _ => 0,
        } | if byte.is_ascii_hexdigit() { HEX } else { 0 };
        b += 1;
    }
    table
};

/// The flags of `byte`.
pub(crate) fn class(byte: u8) -> u8 {
    CLASSES.get(usize::from(byte)).copied().unwrap_or(0)
}

/// The high bit of every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `word` in `LOW..=HIGH`, exactly, for ASCII bounds with `LOW`
/// above zero (checked at compile time): a 7-bit value plus `0x80 - LOW` (at most `0x7f`)
/// never carries into the next byte, its high bit is set from `LOW` on, that of the value plus
/// `0x80 - HIGH - 1` from past `HIGH` on, and a byte with its high bit set is in no ASCII range.
pub(crate) const fn bytes_in<const LOW: u8, const HIGH: u8>(word: u64) -> u64 {
    let from = const {
        assert!(0 < LOW && LOW <= HIGH && HIGH < 0x80);
        u64::from_ne_bytes([0x80 - LOW; 8])
    };
    let past = const { u64::from_ne_bytes([0x80 - HIGH - 1; 8]) };
    let seven = word & LOWS;
    seven.wrapping_add(from) & !seven.wrapping_add(past) & !word & HIGHS
}

/// The high bit of each byte of `word` that is an ASCII digit or a quote (`"`, `'`), exactly.
const fn digit_or_quote_bytes(word: u64) -> u64 {
    const DOUBLE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const SINGLE: u64 = u64::from_ne_bytes([b'\''; 8]);
    bytes_in::<b'0', b'9'>(word) | zero_bytes(word ^ DOUBLE) | zero_bytes(word ^ SINGLE)
}

/// Offset in `bytes` of the first ASCII digit or quote at or after `from`: what a log
/// template changes (everything else of a line is its own template). Eight bytes at a time,
/// like the JSON string scan ([`crate::json::special`]); this runs over every log line.
pub(crate) fn find_digit_or_quote(bytes: &[u8], from: usize) -> Option<usize> {
    find_flagged(bytes, from, digit_or_quote_bytes, |b| {
        class(b) & (DIGIT | QUOTE) != 0
    })
}

/// The high bit of each byte of `word` that is an ASCII upper-case letter, exactly.
const fn upper_bytes(word: u64) -> u64 {
    bytes_in::<b'A', b'Z'>(word)
}

/// Offset in `bytes` of the first ASCII upper-case letter at or after `from`, eight bytes at a
/// time: where a log line's level words can start (most of a line is lower case, digits and
/// punctuation).
pub(crate) fn find_upper(bytes: &[u8], from: usize) -> Option<usize> {
    find_flagged(bytes, from, upper_bytes, |b| b.is_ascii_uppercase())
}

/// The high bit of each byte of `word` that is an ASCII letter, digit or `_` (what
/// [`super::relevance::raw_words`] joins into words), and of each that is a digit, exactly.
/// `| 0x20` folds `A`–`Z` onto `a`–`z` and nothing else onto them, and leaves the high bits.
const fn word_and_digit_bytes(word: u64) -> (u64, u64) {
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    const UNDERSCORES: u64 = u64::from_ne_bytes([b'_'; 8]);
    let digits = bytes_in::<b'0', b'9'>(word);
    let letters = bytes_in::<b'a', b'z'>(word | CASE);
    (digits | letters | zero_bytes(word ^ UNDERSCORES), digits)
}

/// How many words [`super::relevance::raw_words`] finds in `bytes` if they are all ASCII (here
/// a byte that is not counts as a separator): runs of letters, digits and `_` of two bytes or
/// more or holding a digit. Eight bytes at a time and without a branch per word, for BM25's
/// document lengths where no word needs looking up.
pub(crate) fn ascii_word_count(bytes: &[u8]) -> usize {
    let (chunks, tail) = bytes.as_chunks::<8>();
    let mut last = [0u8; 8];
    last.get_mut(..tail.len())
        .unwrap_or_default()
        .copy_from_slice(tail);
    let mut count = 0usize;
    // The word bytes of the eight bytes before, and their words of one letter but for the
    // last byte's, whose successor is in these eight.
    let mut previous = 0u64;
    let mut lone = 0u64;
    for word in chunks.iter().chain([&last]) {
        let (words, digits) = word_and_digit_bytes(u64::from_le_bytes(*word));
        // A word byte whose predecessor is none starts a word; one whose successor is none
        // too is a word of one byte, which counts only when it is a digit.
        let starts = words & !((words << 8) | (previous >> 56));
        count += starts.count_ones() as usize;
        count -= (lone & !(words << 56)).count_ones() as usize;
        lone = starts & !digits & !(words >> 8);
        previous = words;
    }
    count - lone.count_ones() as usize
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn digit_and_quote_flags_are_exact_for_every_byte_value_in_every_lane() {
        for byte in 0..=255u8 {
            for lane in 0..8 {
                for fill in [0u8, b'a', b'/', b':', b'!', b'(', 0x7f, 0xff, 0xb0] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = byte;
                    let flags = digit_or_quote_bytes(u64::from_le_bytes(bytes));
                    for (i, b) in bytes.iter().enumerate() {
                        let flagged = flags & (0x80 << (8 * i)) != 0;
                        let expected = b.is_ascii_digit() || *b == b'"' || *b == b'\'';
                        assert_eq!(flagged, expected, "{bytes:?} lane {i}");
                    }
                    assert_eq!(flags & !u64::from_ne_bytes([0x80; 8]), 0);
                }
            }
        }
    }

    #[test]
    fn finds_the_first_digit_or_quote_from_any_start() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len())
                .find(|&i| bytes[i].is_ascii_digit() || matches!(bytes[i], b'"' | b'\''))
        };
        for byte in 0..=255u8 {
            for at in 0..20 {
                let mut bytes = vec![b'x'; 24];
                bytes[at] = byte;
                bytes[at + 1] = b'7';
                for from in [0, at, at + 1, at + 2, 23, 24, 30] {
                    assert_eq!(
                        find_digit_or_quote(&bytes, from),
                        naive(&bytes, from),
                        "{byte:#x} at {at} from {from}"
                    );
                }
            }
        }
        assert_eq!(
            find_digit_or_quote("plain text, é and 😀".as_bytes(), 0),
            None
        );
    }

    #[test]
    fn upper_flags_are_exact_and_found_from_any_start() {
        for byte in 0..=255u8 {
            for lane in 0..8 {
                for fill in [0u8, b'a', b'@', b'[', b'Z', 0xc1, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = byte;
                    let flags = upper_bytes(u64::from_le_bytes(bytes));
                    for (i, b) in bytes.iter().enumerate() {
                        let flagged = flags & (0x80 << (8 * i)) != 0;
                        assert_eq!(flagged, b.is_ascii_uppercase(), "{bytes:?} lane {i}");
                    }
                }
                let mut line = vec![b'x'; 20];
                line[lane + 3] = byte;
                for from in 0..22 {
                    let naive = (from..line.len()).find(|&i| line[i].is_ascii_uppercase());
                    assert_eq!(find_upper(&line, from), naive, "{byte} {lane} {from}");
                }
            }
        }
    }

    #[test]
    fn word_and_digit_flags_are_exact_for_every_byte_value_in_every_lane() {
        for byte in 0..=255u8 {
            for lane in 0..8 {
                for fill in [
                    0u8, b'a', b'Z', b'_', b'7', b'@', b'[', b'`', b'{', 0xdf, 0xff,
                ] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = byte;
                    let (words, digits) = word_and_digit_bytes(u64::from_le_bytes(bytes));
                    for (i, b) in bytes.iter().enumerate() {
                        let bit = 0x80u64 << (8 * i);
                        let word = b.is_ascii_alphanumeric() || *b == b'_';
                        assert_eq!(words & bit != 0, word, "{bytes:?} lane {i}");
                        assert_eq!(digits & bit != 0, b.is_ascii_digit(), "{bytes:?} lane {i}");
                    }
                    assert_eq!((words | digits) & !HIGHS, 0);
                }
            }
        }
    }

    proptest::proptest! {
        /// ASCII texts of words, lone letters and digits and separators at every offset: the
        /// count is the number of words the walk finds.
        #[test]
        fn ascii_word_count_is_the_walks(
            text in "([a-zA-Z0-9_]{1,11}|[ .:=/@\\[`{\\-]{1,3}|\\n){0,40}",
        ) {
            let walked = super::super::relevance::raw_words(&text).count();
            proptest::prop_assert_eq!(ascii_word_count(text.as_bytes()), walked, "{:?}", text);
        }
    }

    #[test]
    fn flags_are_the_std_predicates() {
        for byte in 0..=255u8 {
            let flags = class(byte);
            let has = |flag: u8| flags & flag != 0;
            assert_eq!(has(LOWER), byte.is_ascii_lowercase(), "{byte}");
            assert_eq!(has(UPPER), byte.is_ascii_uppercase(), "{byte}");
            assert_eq!(has(DIGIT), byte.is_ascii_digit(), "{byte}");
            assert_eq!(has(UNDERSCORE), byte == b'_', "{byte}");
            assert_eq!(has(HEX), byte.is_ascii_hexdigit(), "{byte}");
            assert_eq!(has(QUOTE), byte == b'"' || byte == b'\'', "{byte}");
            assert_eq!(has(NON_ASCII), !byte.is_ascii(), "{byte}");
            assert_eq!(has(ALPHANUMERIC), byte.is_ascii_alphanumeric(), "{byte}");
        }
    }
}
