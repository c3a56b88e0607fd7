//! tiktoken's pre-tokenizer: the split of text into pieces before byte-pair encoding, for
//! cl100k_base and o200k_base, as a hand-written matcher of their regular expressions.
//!
//! ```text
//! cl100k_base: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//!              | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! o200k_base:  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!              |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!              |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! At each position the first alternative that matches wins, with the match a backtracking
//! engine finds (greedy quantifiers, giving back only as far as needed). Every character is
//! matched by some alternative, so pieces are contiguous. The matcher works on bytes: ASCII
//! characters are classified by a table, others by the range table of [`super::unicode`].
//!
//! One loop per piece, no allocation, linear in the text: each alternative scans forward from
//! the piece start, and only the piece's own characters are looked at more than once (at most
//! a constant number of times).
//!
//! The tests check the splits against the `regex` crate running the patterns (with the
//! lookahead `\s+(?!\S)` emulated, as the previous implementation did) on generated corpora,
//! every code point, and upstream's tokenizer fixtures.

use std::ops::ControlFlow;

use super::Encoding;
use super::unicode::{END, LETTER, LOWER, MARK, NEWLINE, NUMBER, OTHER, SPACE, UPPER, at};

/// A set of classes, as a bit mask (`END` is in none).
type Classes = u16;

const fn set(mut classes: &[u8]) -> Classes {
    let mut mask = 0;
    while let [class, rest @ ..] = classes {
        mask |= 1 << *class;
        classes = rest;
    }
    mask
}

/// `\p{L}`.
const LETTERS: Classes = set(&[LOWER, UPPER, LETTER]);
/// `[^\r\n\p{L}\p{N}]`: the optional character before a word.
const PREFIX: Classes = set(&[MARK, SPACE, OTHER]);
/// `[^\s\p{L}\p{N}]`: punctuation and symbols (marks included).
const PUNCT: Classes = set(&[MARK, OTHER]);
/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
const UPPERISH: Classes = set(&[UPPER, LETTER, MARK]);
/// o200k's `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
const LOWERISH: Classes = set(&[LOWER, LETTER, MARK]);
/// Letters and marks: what o200k's word alternatives start with (after the prefix).
const WORDISH: Classes = set(&[LOWER, UPPER, LETTER, MARK]);

#[inline(always)]
const fn is(classes: Classes, class: u8) -> bool {
    (classes >> class) & 1 != 0
}

/// The end of the run of characters of `classes` starting at `i`.
#[inline(always)]
fn run(b: &[u8], mut i: usize, classes: Classes) -> usize {
    loop {
        let (class, len) = at(b, i);
        if !is(classes, class) {
            return i;
        }
        i += len;
    }
}

/// The end of the run of bytes in `set` starting at `i` (ASCII bytes only).
#[inline(always)]
fn run_bytes(b: &[u8], mut i: usize, set: impl Fn(u8) -> bool) -> usize {
    while b.get(i).is_some_and(|&x| set(x)) {
        i += 1;
    }
    i
}

/// Whether the character at `i` is one of `lower` (ASCII), its uppercase, or for `s` also
/// U+017F LATIN SMALL LETTER LONG S (the `regex` crate's simple case folding); returns its
/// length.
#[inline(always)]
fn fold_eq(b: &[u8], i: usize, lower: u8) -> Option<usize> {
    match b.get(i) {
        Some(&x) if x | 0x20 == lower => Some(1),
        Some(0xc5) if lower == b's' && b.get(i + 1) == Some(&0xbf) => Some(2),
        _ => None,
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i`: the end of the match.
#[inline]
fn contraction(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'\'') {
        return None;
    }
    let i = i + 1;
    for single in [b's', b't', b'm', b'd'] {
        if let Some(len) = fold_eq(b, i, single) {
            return Some(i + len);
        }
    }
    for (first, second) in [(b'r', b'e'), (b'v', b'e'), (b'l', b'l')] {
        if let Some(len) = fold_eq(b, i, first)
            && let Some(len2) = fold_eq(b, i + len, second)
        {
            return Some(i + len + len2);
        }
    }
    None
}

/// `\s*[\r\n]+|\s+(?!\S)|\s+` at `i` (a whitespace character): up to and including the last
/// line break of the whitespace run; without one, the run, less its last character when more
/// text follows and the run has more than one character (which `\s+(?!\S)` gives back).
#[inline]
fn whitespace(b: &[u8], start: usize) -> usize {
    let mut i = start;
    let mut after_newline = None;
    let mut last = start;
    loop {
        let (class, len) = at(b, i);
        match class {
            SPACE => {}
            NEWLINE => after_newline = Some(i + len),
            _ => break,
        }
        last = i;
        i += len;
    }
    if let Some(end) = after_newline {
        return end;
    }
    if i < b.len() && last > start {
        return last;
    }
    i
}

/// `\p{N}{1,3}` at `i` (a number character).
#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    for _ in 0..3 {
        let (class, len) = at(b, i);
        if class != NUMBER {
            break;
        }
        i += len;
    }
    i
}

/// The end of the cl100k_base piece starting at `p` (`p < b.len()`).
#[inline(always)]
fn cl100k_end(b: &[u8], p: usize) -> usize {
    let (class, len) = at(b, p);
    let q = p + len;
    if is(LETTERS, class) {
        return run(b, q, LETTERS);
    }
    if let Some(end) = contraction(b, p) {
        return end;
    }
    let (next, next_len) = at(b, q);
    if is(PREFIX, class) && is(LETTERS, next) {
        return run(b, q + next_len, LETTERS);
    }
    if class == NUMBER {
        return digits(b, p);
    }
    let punct_from = if b.get(p) == Some(&b' ') && is(PUNCT, next) {
        Some(q + next_len)
    } else if is(PUNCT, class) {
        Some(q)
    } else {
        None
    };
    if let Some(from) = punct_from {
        let end = run(b, from, PUNCT);
        return run_bytes(b, end, |x| x == b'\r' || x == b'\n');
    }
    whitespace(b, p)
}

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` at `s`: the greedy
/// upper run, then a lower run; without one, the upper run given back to its last character
/// that is on both sides.
#[inline(always)]
fn o200k_lower_word(b: &[u8], s: usize) -> Option<usize> {
    let mut i = s;
    let mut last_both = None;
    loop {
        let (class, len) = at(b, i);
        if !is(UPPERISH, class) {
            if is(LOWERISH, class) {
                return Some(run(b, i + len, LOWERISH));
            }
            return last_both;
        }
        i += len;
        if class != UPPER {
            last_both = Some(i);
        }
    }
}

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` at `s`.
#[inline(always)]
fn o200k_upper_word(b: &[u8], s: usize) -> Option<usize> {
    let (class, len) = at(b, s);
    if !is(UPPERISH, class) {
        return None;
    }
    let upper_end = run(b, s + len, UPPERISH);
    Some(run(b, upper_end, LOWERISH))
}

/// The end of the o200k_base piece starting at `p` (`p < b.len()`).
#[inline(always)]
fn o200k_end(b: &[u8], p: usize) -> usize {
    let (class, len) = at(b, p);
    let q = p + len;
    if class == LOWER {
        // The common case: a lowercase word, without a prefix (a prefix is no letter).
        let end = run(b, q, LOWERISH);
        return contraction(b, end).unwrap_or(end);
    }
    let (next, next_len) = at(b, q);
    let prefix = is(PREFIX, class) && is(WORDISH, next);
    if prefix || is(WORDISH, class) {
        // The word alternatives, in order; one of them matches (the prefix is followed by a
        // letter or mark, or the piece starts with one).
        let word = |matcher: fn(&[u8], usize) -> Option<usize>| {
            prefix
                .then(|| matcher(b, q))
                .flatten()
                .or_else(|| matcher(b, p))
        };
        if let Some(end) = word(o200k_lower_word).or_else(|| word(o200k_upper_word)) {
            return contraction(b, end).unwrap_or(end);
        }
    }
    if class == NUMBER {
        return digits(b, p);
    }
    let punct_from = if b.get(p) == Some(&b' ') && is(PUNCT, next) {
        Some(q + next_len)
    } else if is(PUNCT, class) {
        Some(q)
    } else {
        None
    };
    if let Some(from) = punct_from {
        let end = run(b, from, PUNCT);
        return run_bytes(b, end, |x| x == b'\r' || x == b'\n' || x == b'/');
    }
    whitespace(b, p)
}

/// Calls `piece` with each pre-tokenized piece of `text`, in order, and the text from the
/// piece's start to the end, until it breaks; the pieces concatenate to `text`.
#[inline]
pub(crate) fn for_each_piece(
    encoding: Encoding,
    text: &str,
    piece: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) {
    match encoding {
        Encoding::Cl100kBase => split(text.as_bytes(), cl100k_end, piece),
        Encoding::O200kBase => split(text.as_bytes(), o200k_end, piece),
    }
}

#[inline(always)]
fn split(
    b: &[u8],
    end_of: fn(&[u8], usize) -> usize,
    mut piece: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) {
    let mut p = 0;
    while let Some(tail) = b.get(p..).filter(|t| !t.is_empty()) {
        let mut end = end_of(b, p);
        if end <= p || end > b.len() {
            // Every alternative consumes a character; guard against a bug anyway.
            end = (p + at(b, p).1.max(1)).min(b.len());
        }
        if let Some(found) = tail.get(..end - p)
            && piece(found, tail).is_break()
        {
            return;
        }
        p = end;
    }
}

// `at` returns END past the end, where no class set above holds.
const _: () = assert!(END > OTHER && !is(LETTERS | PREFIX | PUNCT | WORDISH, END));

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use regex::Regex;

    const CL100K: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+"
    );

    const O200K: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+"
    );

    /// The reference: the patterns run by the `regex` crate (leftmost-first, like the
    /// backtracking engine for these patterns), with tiktoken's one lookahead `\s+(?!\S)`
    /// reproduced by a rule: a match of the final `\s+` alternative (whitespace without a line
    /// break) longer than one character and followed by more text gives back its last
    /// character. This was the shipped implementation before the hand-written matcher.
    pub(crate) struct Reference {
        cl100k: Regex,
        o200k: Regex,
    }

    impl Reference {
        pub(crate) fn new() -> Reference {
            Reference {
                cl100k: Regex::new(CL100K).unwrap(),
                o200k: Regex::new(O200K).unwrap(),
            }
        }

        pub(crate) fn pieces<'t>(&self, encoding: Encoding, text: &'t str) -> Vec<&'t str> {
            let re = match encoding {
                Encoding::Cl100kBase => &self.cl100k,
                Encoding::O200kBase => &self.o200k,
            };
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < text.len() {
                let Some(found) = re.find_at(text, pos) else {
                    break;
                };
                let mut end = found.end();
                let matched = found.as_str();
                if end < text.len()
                    && !matched.contains(['\r', '\n'])
                    && matched.chars().all(char::is_whitespace)
                    && matched.chars().nth(1).is_some()
                {
                    end -= matched.chars().next_back().map_or(0, char::len_utf8);
                }
                let start = found.start().min(end);
                if let Some(gap) = text.get(pos..start).filter(|g| !g.is_empty()) {
                    out.push(gap);
                }
                if let Some(found) = text.get(start..end) {
                    out.push(found);
                }
                if end <= pos {
                    break;
                }
                pos = end;
            }
            out
        }
    }

    pub(crate) fn pieces(encoding: Encoding, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let base = text.as_ptr() as usize;
        for_each_piece(encoding, text, |p, _| {
            let start = p.as_ptr() as usize - base;
            out.push(&text[start..start + p.len()]);
            ControlFlow::Continue(())
        });
        out
    }

    const BOTH: [Encoding; 2] = [Encoding::Cl100kBase, Encoding::O200kBase];

    fn same_as_reference(reference: &Reference, text: &str) {
        for encoding in BOTH {
            let ours = pieces(encoding, text);
            let theirs = reference.pieces(encoding, text);
            if ours != theirs {
                let at = ours
                    .iter()
                    .zip(&theirs)
                    .position(|(a, b)| a != b)
                    .unwrap_or(ours.len().min(theirs.len()));
                panic!(
                    "{encoding:?} differs at piece {at} of {text:?}:\nours   {:?}\ntheirs {:?}",
                    &ours[at.saturating_sub(3)..(at + 3).min(ours.len())],
                    &theirs[at.saturating_sub(3)..(at + 3).min(theirs.len())]
                );
            }
        }
    }

    #[test]
    fn whitespace_before_a_word_gives_one_space_to_it() {
        assert_eq!(pieces(Encoding::Cl100kBase, "a   b"), vec!["a", "  ", " b"]);
        assert_eq!(
            pieces(Encoding::O200kBase, "x \n\n  y  "),
            vec!["x", " \n\n", " ", " y", "  "]
        );
        assert_eq!(
            pieces(Encoding::O200kBase, "I'm HELLO's"),
            vec!["I'm", " HELLO's"]
        );
    }

    /// A deterministic generator of nasty text: every class of character, contractions with
    /// odd cases, runs of whitespace and line breaks, marks after letters.
    fn nasty_text(seed: u64, len: usize) -> String {
        const ATOMS: &[&str] = &[
            "a",
            "Z",
            "é",
            "É",
            "ǅ",
            "ʰ",
            "中",
            "ー",
            "\u{301}",
            "\u{20dd}",
            "7",
            "٣",
            "Ⅻ",
            "½",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "\u{a0}",
            "\u{2028}",
            "\u{3000}",
            "\u{85}",
            "'",
            "'s",
            "'S",
            "'ſ",
            "'re",
            "'RE",
            "'Ve",
            "'ll",
            "'lL",
            "'d",
            "'m",
            "'t",
            "'x",
            "/",
            "//",
            "{",
            "}",
            "\"",
            ":",
            ",",
            ".",
            "-",
            "_",
            "😀",
            "\u{0}",
            "\u{7f}",
            "ß",
            "İ",
            "K",
            "ſ",
            "Ǆ",
            "ǆ",
            "ᾈ",
            "ᵃ",
            "ℌ",
            "𝐀",
            "𝐚",
            "\u{e000}",
            "\u{10ffff}",
            "١٢٣٤",
            "hello",
            "World",
            "HTTP",
            "JSONDecodeError",
            "don't",
            "YOU'RE",
            "x\u{301}y",
        ];
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = String::new();
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push_str(ATOMS[(state % ATOMS.len() as u64) as usize]);
        }
        out
    }

    #[test]
    fn matches_the_reference_on_nasty_text() {
        let reference = Reference::new();
        for seed in 0..3000 {
            same_as_reference(&reference, &nasty_text(seed, 1 + (seed as usize % 97)));
        }
        same_as_reference(&reference, &nasty_text(99_999, 200_000));
    }

    /// Every code point alone, before and after letters, digits, spaces, punctuation and line
    /// breaks, after an apostrophe, and in runs.
    #[test]
    fn matches_the_reference_on_every_code_point() {
        let reference = Reference::new();
        let contexts = [
            ("", ""),
            ("a", "b"),
            ("A", "B"),
            (" ", " x"),
            ("'", "e"),
            ("'r", ""),
            ("\n", "\n"),
            ("7", "8"),
            ("{", "}"),
            ("  ", "  "),
            ("É", "中"),
            ("\u{301}", "\u{301}"),
        ];
        let mut text = String::new();
        for cp in 0..=0x10ffffu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            // Every context for ASCII, Latin and every 16th code point, three for the rest
            // (the reference is slow on non-ASCII text).
            let all = cp < 0x800 || cp % 16 == 0;
            for &(before, after) in contexts.iter().take(if all { contexts.len() } else { 3 }) {
                text.push_str(before);
                text.push(c);
                text.push(c);
                text.push_str(after);
                text.push(' ');
            }
            if text.len() > 4096 {
                same_as_reference(&reference, &text);
                text.clear();
            }
        }
        same_as_reference(&reference, &text);
    }

    #[test]
    fn matches_the_reference_on_realistic_text() {
        let reference = Reference::new();
        let texts = [
            crate::pipeline::tests::corpus_texts(),
            vec![
                include_str!("mod.rs").to_owned(),
                include_str!("bpe.rs").to_owned(),
            ],
        ]
        .concat();
        for text in texts {
            same_as_reference(&reference, &text);
        }
    }
}
