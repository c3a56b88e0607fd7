//! The one marker grammar for every lossy omission:
//!
//! ```text
//! <<headroom:HASH omitted SUMMARY>>
//! ```
//!
//! `HASH` is the [`ContentHash`] (16 hex digits) of the whole original block, which is kept in
//! the [`OmittedStore`](super::store::OmittedStore) under that hash; `SUMMARY` says what was
//! left out (`85 of 100 rows`, `412 lines`), never contains `>>` or a line break. Every
//! compressor writes markers through [`Marker::render`]; text holding a marker is never
//! compressed again ([`contains_marker`]).

use super::hash::ContentHash;
use super::needle::Needle;

/// The literal that opens every marker.
pub const MARKER_OPEN: &str = "<<headroom:";

/// A marker for one omission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Hash of the original block.
    pub hash: ContentHash,
    /// What was omitted.
    pub summary: String,
}

impl Marker {
    /// A marker for an omission from the block whose original hashes to `hash`.
    pub fn new(hash: ContentHash, summary: impl Into<String>) -> Marker {
        let summary: String = summary.into();
        // Keep the grammar unambiguous whatever a caller passes.
        let summary = summary.replace(">>", "> >").replace(['\n', '\r'], " ");
        Marker { hash, summary }
    }

    /// The marker text.
    pub fn render(&self) -> String {
        format!("{MARKER_OPEN}{} omitted {}>>", self.hash, self.summary)
    }

    /// Parses the first marker in `text`.
    pub fn find(text: &str) -> Option<Marker> {
        let start = text.find(MARKER_OPEN)?;
        let rest = text.get(start + MARKER_OPEN.len()..)?;
        let hash = ContentHash::from_hex(rest.get(..16)?)?;
        let rest = rest.get(16..)?.strip_prefix(" omitted ")?;
        let end = rest.find(">>")?;
        let summary = rest.get(..end)?;
        if summary.contains('\n') {
            return None;
        }
        Some(Marker {
            hash,
            summary: summary.to_owned(),
        })
    }
}

/// Whether `text` already carries a marker (so it was compressed before: leave it).
pub fn contains_marker(text: &str) -> bool {
    static OPEN: Needle = Needle::new(MARKER_OPEN);
    OPEN.is_in(text)
}

/// `"N of M things"` with a plural-aware noun, for summaries.
pub fn count_of(omitted: usize, total: usize, noun: &str) -> String {
    let noun = if total == 1 {
        noun.trim_end_matches('s').to_owned()
    } else {
        noun.to_owned()
    };
    format!("{omitted} of {total} {noun}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let marker = Marker::new(ContentHash::of(b"x"), count_of(85, 100, "rows"));
        let text = marker.render();
        assert!(text.starts_with("<<headroom:"));
        assert!(text.ends_with(" omitted 85 of 100 rows>>"));
        assert_eq!(Marker::find(&format!("a {text} b")), Some(marker));
        assert!(contains_marker(&text));
        assert!(!contains_marker("<<headroom"));
    }

    #[test]
    fn summaries_cannot_break_the_grammar() {
        let marker = Marker::new(ContentHash::of(b"x"), "a>>b\nc");
        assert_eq!(Marker::find(&marker.render()).unwrap().summary, "a> >b c");
    }
}
