//! tiktoken's pre-tokenizer: the regular expressions that split text into pieces before
//! byte-pair encoding, for cl100k_base and o200k_base.
//!
//! tiktoken's patterns contain one lookahead, `\s+(?!\S)`, which the linear-time `regex` crate
//! does not support. It is dropped from the pattern and reproduced by one rule instead: a match
//! of the final `\s+` alternative (whitespace without a line break) that is longer than one
//! character and followed by more text gives back its last character, which is exactly what
//! the backtracking `\s+(?!\S)` does. Every other alternative is unchanged, and the `regex`
//! crate's leftmost-first semantics equal the backtracking engine's for them.

use regex::Regex;
use std::sync::OnceLock;

use super::Encoding;

const CL100K: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+"
);

const O200K: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+"
);

static CL100K_RE: OnceLock<Option<Regex>> = OnceLock::new();
static O200K_RE: OnceLock<Option<Regex>> = OnceLock::new();

fn regex(encoding: Encoding) -> Option<&'static Regex> {
    let (cell, pattern) = match encoding {
        Encoding::Cl100kBase => (&CL100K_RE, CL100K),
        Encoding::O200kBase => (&O200K_RE, O200K),
    };
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// Calls `piece` with each pre-tokenized piece of `text`, in order; the pieces concatenate to
/// `text`. Returns false if the pattern could not be built (a test rules that out).
pub(crate) fn for_each_piece(encoding: Encoding, text: &str, mut piece: impl FnMut(&str)) -> bool {
    let Some(re) = regex(encoding) else {
        return false;
    };
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
            // `\s+(?!\S)`: leave the last whitespace character to the next piece.
            end -= matched.chars().next_back().map_or(0, char::len_utf8);
        }
        // Every character is matched by some alternative, so pieces are contiguous; guard anyway.
        let start = found.start().min(end);
        if let Some(gap) = text.get(pos..start).filter(|g| !g.is_empty()) {
            piece(gap);
        }
        if let Some(found) = text.get(start..end) {
            piece(found);
        }
        if end <= pos {
            break;
        }
        pos = end;
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pieces(encoding: Encoding, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        assert!(for_each_piece(encoding, text, |p| out.push(p.to_owned())));
        out
    }

    #[test]
    fn patterns_compile() {
        assert!(regex(Encoding::Cl100kBase).is_some());
        assert!(regex(Encoding::O200kBase).is_some());
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
}
