//! The character classes tiktoken's pre-tokenizer patterns distinguish, for every code point:
//! a 128-entry table for ASCII and a sorted range table for the rest (`unicode_table.rs`,
//! generated from the `regex` crate's Unicode tables by the ignored test
//! `tokens::unicode::tests::generate_table`, and checked code point by code point against them
//! by `table_matches_regex_classes`).

/// `\p{Ll}`.
pub(crate) const LOWER: u8 = 0;
/// `\p{Lu}` or `\p{Lt}`.
pub(crate) const UPPER: u8 = 1;
/// `\p{Lm}` or `\p{Lo}` (a letter on both sides of o200k's case split).
pub(crate) const LETTER: u8 = 2;
/// `\p{M}` (not a letter; on both sides of o200k's case split).
pub(crate) const MARK: u8 = 3;
/// `\p{N}`.
pub(crate) const NUMBER: u8 = 4;
/// `\s` (Unicode `White_Space`) other than `\r` and `\n`.
pub(crate) const SPACE: u8 = 5;
/// `\r` or `\n`.
pub(crate) const NEWLINE: u8 = 6;
/// Anything else.
pub(crate) const OTHER: u8 = 7;
/// Past the end of the text.
pub(crate) const END: u8 = 8;

#[allow(clippy::indexing_slicing)]
mod table {
    include!("unicode_table.rs");
}
use table::{ASCII, CLASSES, STARTS};

/// The class of code point `cp`.
#[inline]
pub(crate) fn class_of(cp: u32) -> u8 {
    if let Some(&class) = usize::try_from(cp).ok().and_then(|i| ASCII.get(i)) {
        return class;
    }
    let at = STARTS.partition_point(|&start| start <= cp);
    at.checked_sub(1)
        .and_then(|i| CLASSES.get(i))
        .copied()
        .unwrap_or(OTHER)
}

/// Marks a byte that starts (or continues) a non-ASCII character in [`BYTE_CLASS`].
const NON_ASCII: u8 = 9;

/// The class of each byte value: ASCII characters as [`ASCII`], the rest [`NON_ASCII`].
#[allow(clippy::indexing_slicing)]
static BYTE_CLASS: [u8; 256] = {
    let mut table = [NON_ASCII; 256];
    let mut i = 0;
    while i < 128 {
        table[i] = ASCII[i];
        i += 1;
    }
    table
};

/// The class and byte length of the character starting at byte `i` of `bytes` (valid UTF-8,
/// `i` on a character boundary); `(END, 0)` past the end.
#[inline(always)]
pub(crate) fn at(bytes: &[u8], i: usize) -> (u8, usize) {
    let Some(&b0) = bytes.get(i) else {
        return (END, 0);
    };
    let class = BYTE_CLASS
        .get(usize::from(b0))
        .copied()
        .unwrap_or(NON_ASCII);
    if class != NON_ASCII {
        return (class, 1);
    }
    at_non_ascii(bytes, i, b0)
}

#[inline(never)]
fn at_non_ascii(bytes: &[u8], i: usize, b0: u8) -> (u8, usize) {
    let cont = |k: usize| u32::from(bytes.get(i + k).copied().unwrap_or(0x80) & 0x3f);
    let (cp, len) = if b0 < 0xe0 {
        ((u32::from(b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xf0 {
        ((u32::from(b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            (u32::from(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    };
    (class_of(cp), len)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use regex::Regex;

    /// The class of `c` according to the `regex` crate's Unicode tables (the engine the
    /// reference pre-tokenizer runs on).
    pub(crate) struct Oracle {
        classes: Vec<(Regex, u8)>,
    }

    impl Oracle {
        pub(crate) fn new() -> Oracle {
            let classes = [
                (r"\A\p{Ll}\z", LOWER),
                (r"\A[\p{Lu}\p{Lt}]\z", UPPER),
                (r"\A[\p{Lm}\p{Lo}]\z", LETTER),
                (r"\A\p{M}\z", MARK),
                (r"\A\p{N}\z", NUMBER),
                (r"\A[\r\n]\z", NEWLINE),
                (r"\A\s\z", SPACE),
            ]
            .into_iter()
            .map(|(pattern, class)| (Regex::new(pattern).unwrap(), class))
            .collect();
            Oracle { classes }
        }

        pub(crate) fn class(&self, c: char) -> u8 {
            let text = c.to_string();
            let matching: Vec<u8> = self
                .classes
                .iter()
                .filter(|(re, _)| re.is_match(&text))
                .map(|(_, class)| *class)
                .collect();
            match matching.as_slice() {
                [] => OTHER,
                [class] => *class,
                // A line break is also `\s`; nothing else may be in two classes.
                [NEWLINE, SPACE] => NEWLINE,
                other => panic!("{c:?} is in several classes: {other:?}"),
            }
        }
    }

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=0x10ffffu32).filter_map(char::from_u32)
    }

    #[test]
    fn table_matches_regex_classes() {
        let oracle = Oracle::new();
        for c in all_chars() {
            assert_eq!(
                class_of(u32::from(c)),
                oracle.class(c),
                "{c:?} U+{:04X}",
                c as u32
            );
            let mut buf = [0u8; 4];
            let encoded = c.encode_utf8(&mut buf);
            assert_eq!(at(encoded.as_bytes(), 0), (oracle.class(c), c.len_utf8()));
        }
        assert_eq!(at(b"", 0), (END, 0));
    }

    /// Regenerates `unicode_table.rs`:
    /// `cargo test -p headroom-plugin --release -- --ignored generate_table`.
    #[test]
    #[ignore]
    fn generate_table() {
        let oracle = Oracle::new();
        let ascii: Vec<String> = (0..128u32)
            .map(|cp| oracle.class(char::from_u32(cp).unwrap()).to_string())
            .collect();
        let mut ranges: Vec<(u32, u8)> = Vec::new();
        for cp in 0x80..=0x10ffffu32 {
            // Surrogates are not characters; they continue the range before them.
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let class = oracle.class(c);
            if ranges.last().map(|r| r.1) != Some(class) {
                ranges.push((cp, class));
            }
        }
        let mut out = String::from(
            "// Generated by `tokens::unicode::tests::generate_table` from the `regex` crate's\n\
             // Unicode tables; do not edit.\n\n",
        );
        out.push_str(&format!(
            "/// The class of each ASCII character.\npub(super) static ASCII: [u8; 128] = [{}];\n\n",
            ascii.join(", ")
        ));
        let starts: Vec<String> = ranges.iter().map(|r| format!("0x{:x}", r.0)).collect();
        let classes: Vec<String> = ranges.iter().map(|r| r.1.to_string()).collect();
        out.push_str(&format!(
            "/// First code point of each range of one class, from U+0080 on.\npub(super) static STARTS: [u32; {}] = [{}];\n\n",
            starts.len(),
            starts.join(", ")
        ));
        out.push_str(&format!(
            "/// The class of each range.\npub(super) static CLASSES: [u8; {}] = [{}];\n",
            classes.len(),
            classes.join(", ")
        ));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tokens/unicode_table.rs");
        std::fs::write(path, out).unwrap();
    }
}
