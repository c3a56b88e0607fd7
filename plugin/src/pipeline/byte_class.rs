//! What each byte value is to the walks over the words of a tool output (relevance's words, log
//! templates, log level words): one table, so a walk pays one load per byte instead of a chain
//! of range tests.
//! These walks run over every item and line, some of them twice.

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

#[cfg(test)]
mod tests {
    use super::*;

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
