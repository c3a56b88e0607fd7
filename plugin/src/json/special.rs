//! The search every pass over a JSON string makes: the next byte that is not plain string
//! content (`"`, `\` or a control character). The scan, the decoder and the encoder spend most
//! of their time here on large tool outputs, so it tests eight bytes at a time with integer
//! arithmetic (SWAR): portable, safe, and as fast in wasm as natively, where a byte loop was
//! the parser's largest cost (issue 18's profile).

/// The low seven bits of every byte.
pub(crate) const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);
const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
/// The bits a byte below 0x20 has clear.
const CONTROL: u64 = u64::from_ne_bytes([0xe0; 8]);

/// The high bit of each zero byte of `word`, exactly: the sum of two 7-bit values never
/// carries into the next byte.
pub(crate) const fn zero_bytes(word: u64) -> u64 {
    !(((word & LOWS).wrapping_add(LOWS)) | word | LOWS)
}

/// The high bit of each byte of `word` that is `"`, `\` or a control character.
pub(crate) const fn special_bytes(word: u64) -> u64 {
    zero_bytes(word ^ QUOTES) | zero_bytes(word ^ BACKSLASHES) | zero_bytes(word & CONTROL)
}

/// The eight bytes of `bytes` at `at` as a little-endian word (the lowest bits are the first
/// byte), or `None` past the end.
pub(crate) fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at.checked_add(8)?)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

/// Offset in a word of the byte whose high bit is the lowest set in `flags`.
pub(crate) fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// Whether `byte` is `"`, `\` or a control character (U+0000..U+001F).
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Offset of the first `"`, `\` or control character in `bytes`.
pub(crate) fn find_special(bytes: &[u8]) -> Option<usize> {
    find_flagged(bytes, 0, special_bytes, is_special)
}

/// Offset of the first byte at or after `from` that `flags` flags in a word (the high bit of
/// each such byte, exactly) and `is_flagged` says of a byte alone (for the last few bytes):
/// eight bytes at a time, then byte by byte. Always inlined: each caller specialises it with
/// its own flag test, and one build kept a copy out of line (a call per search in the log
/// templates' loop).
#[inline(always)]
pub(crate) fn find_flagged(
    bytes: &[u8],
    from: usize,
    flags: impl Fn(u64) -> u64,
    is_flagged: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(bytes, at) {
        let flagged = flags(word);
        if flagged != 0 {
            return Some(at + first_flagged(flagged));
        }
        at += 8;
    }
    let tail = bytes.get(at..).unwrap_or_default();
    tail.iter().position(|&b| is_flagged(b)).map(|i| at + i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(bytes: &[u8]) -> Option<usize> {
        bytes.iter().position(|&b| is_special(b))
    }

    #[test]
    fn flags_are_exact_for_every_byte_value_in_every_lane() {
        for byte in 0..=255u8 {
            for lane in 0..8 {
                for fill in [0u8, b'a', b'"' + 1, b'\\' + 1, 0x20, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = byte;
                    let flags = special_bytes(u64::from_le_bytes(bytes));
                    for (i, b) in bytes.iter().enumerate() {
                        let flagged = flags & (0x80 << (8 * i)) != 0;
                        assert_eq!(flagged, is_special(*b), "{bytes:?} lane {i}");
                    }
                    assert_eq!(flags & !HIGHS_FOR_TEST, 0);
                }
            }
        }
    }

    const HIGHS_FOR_TEST: u64 = u64::from_ne_bytes([0x80; 8]);

    #[test]
    fn every_byte_value_at_every_lane() {
        for byte in 0..=255u8 {
            for at in 0..20 {
                // Special bytes right after the match must not hide it, nor borrow into it.
                let mut bytes = vec![b'a'; 24];
                bytes[at] = byte;
                bytes[at + 1] = 0;
                assert_eq!(find_special(&bytes), naive(&bytes), "{byte:#x} at {at}");
                let mut bytes = vec![0xffu8; 24];
                bytes[at] = byte;
                assert_eq!(find_special(&bytes), naive(&bytes), "{byte:#x} at {at}");
            }
        }
        assert_eq!(find_special(b""), None);
        assert_eq!(find_special("plain text, é and 😀".as_bytes()), None);
    }

    proptest! {
        #[test]
        fn agrees_with_the_byte_loop(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff], 0..80)) {
            prop_assert_eq!(find_special(&bytes), naive(&bytes));
        }
    }
}
