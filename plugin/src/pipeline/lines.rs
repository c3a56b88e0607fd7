//! Lines of a tool output and their trimming, exactly as `str::lines` and `str::trim` make them.
//!
//! Why by hand: std finds each line end with core's word-at-a-time `memchr`, and trims through
//! its generic `char` pattern searcher, decoding every character it looks at. The log, diff and
//! search compressors split every output into lines, and the waste signals trim every line of
//! it (issue 18). Here a line end is found by the `memchr` crate (simd128 in the guest, SSE2 or
//! AVX2 natively), and trimming walks ASCII bytes, handing over to `str::trim` only where a
//! line starts or ends with a non-ASCII character (which may be Unicode whitespace).
//! [`trim_ascii_bytes`] also trims a JSON key's quotes for the JSON selection.

/// The lines of `text`: split at `\n`, each without its `\n` or `\r\n`, and no empty line after
/// a final line break. Property-tested against `str::lines`.
pub(crate) fn lines(text: &str) -> Lines<'_> {
    Lines { rest: text }
}

/// The iterator of [`lines`].
#[derive(Debug, Clone)]
pub(crate) struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(end) = memchr::memchr(b'\n', self.rest.as_bytes()) else {
            // The last line, without a line break: a `\r` at its end is kept, as std keeps it.
            return Some(std::mem::take(&mut self.rest));
        };
        // `\n` is ASCII, so both cuts are character boundaries.
        let line = self.rest.get(..end).unwrap_or_default();
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Whether `b` is an ASCII character `char::is_whitespace` accepts (space, `\t`, `\n`, vertical
/// tab, form feed, `\r`; `u8::is_ascii_whitespace` leaves out the vertical tab).
#[inline(always)]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `text` without the bytes `cut` accepts at either end. `cut` must accept ASCII bytes only, so
/// both cuts fall on character boundaries.
#[inline]
pub(crate) fn trim_ascii_bytes(text: &str, cut: impl Fn(u8) -> bool) -> &str {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|&b| !cut(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !cut(b))
        .map_or(start, |last| last + 1);
    text.get(start..end.max(start)).unwrap_or_default()
}

/// `text.trim()`: ASCII whitespace is cut byte by byte; where what is left starts or ends with
/// a non-ASCII character, `str::trim_start` or `str::trim_end` finishes that side.
#[inline]
pub(crate) fn trim(text: &str) -> &str {
    let mut out = trim_ascii_bytes(text, is_ascii_space);
    if out.as_bytes().first().is_some_and(|b| !b.is_ascii()) {
        out = out.trim_start();
    }
    if out.as_bytes().last().is_some_and(|b| !b.is_ascii()) {
        out = out.trim_end();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that make every case: line breaks of both kinds, lone `\r`, ASCII and Unicode
    /// whitespace (vertical tab, no-break space, ideographic space, line separator), and
    /// non-ASCII characters that are not whitespace.
    fn text() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "\n", "\r\n", "\r", " ", "\t", "\x0b", "\x0c", "\u{a0}", "\u{3000}", "\u{2028}",
            "\u{85}", "a", "Z", "é", "日", "=", "",
        ]);
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn lines_are_std_lines(text in text()) {
            prop_assert_eq!(lines(&text).collect::<Vec<_>>(), text.lines().collect::<Vec<_>>());
        }

        #[test]
        fn trim_is_std_trim(text in text()) {
            prop_assert_eq!(trim(&text), text.trim());
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(lines("").count(), 0);
        assert_eq!(lines("a\r").collect::<Vec<_>>(), ["a\r"]);
        assert_eq!(lines("a\r\n\nb\n").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(trim(" \x0b\u{a0} x \u{3000}\t"), "x");
        assert_eq!(trim("\u{a0}"), "");
        assert_eq!(trim("é "), "é");
    }
}
