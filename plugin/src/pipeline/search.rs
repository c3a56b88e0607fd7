//! Search-results compressor for grep/ripgrep output (`path:line:text`, context lines
//! `path-line-text`). Always regroups matches by file (each path written once: lossless but
//! for the interleaving of files, which grep does not produce). When there are more than
//! `max_matches` matches, each file keeps its first and last match, every match relevant to
//! the latest user text or carrying an error word, and its best matches up to `per_file`; the
//! rest is counted per file and named by one marker.

use super::detect::parse_search_line;
use super::fixed_hash::StrMap;
use super::hash::ContentHash;
use super::marker::{Marker, count_of};
use super::relevance::Query;
use super::signals::has_error_word;

/// The result of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedSearch {
    /// The new text.
    pub text: String,
    /// Matches left out.
    pub omitted: usize,
    /// Why the kept matches were kept, when some were left out (for the manifest).
    pub kept: Option<String>,
}

struct Hit<'a> {
    line: u64,
    text: &'a str,
    is_match: bool,
}

/// Compresses search results; `None` when the text is not mostly search results.
pub fn compress(
    text: &str,
    query: &Query,
    per_file: usize,
    max_matches: usize,
    lossy: bool,
    hash: ContentHash,
) -> Option<CompressedSearch> {
    let mut files: Vec<(&str, Vec<Hit<'_>>)> = Vec::new();
    // Each file's place in `files`. Hashed, not ordered: `files` keeps the order, and an
    // ordered map's path comparisons were `memcmp` calls in the guest (issue 18).
    let mut index: StrMap<&str, usize> = StrMap::default();
    let mut other: Vec<&str> = Vec::new();
    let mut total_lines = 0usize;
    for line in super::lines::lines(text) {
        if line.trim().is_empty() || line == "--" {
            continue;
        }
        total_lines += 1;
        match parse_search_line(line) {
            Some((path, number, body, is_match)) => {
                let next = files.len();
                let at = *index.or_insert(path, next);
                if at == next {
                    files.push((path, Vec::new()));
                }
                if let Some((_, hits)) = files.get_mut(at) {
                    hits.push(Hit {
                        line: number,
                        text: body,
                        is_match,
                    });
                }
            }
            None => other.push(line),
        }
    }
    let parsed = total_lines - other.len();
    if parsed * 10 < total_lines * 7 || files.is_empty() {
        return None;
    }
    let matches: usize = files
        .iter()
        .map(|(_, h)| h.iter().filter(|h| h.is_match).count())
        .sum();
    let reduce = lossy && matches > max_matches;
    // Relevance is scored over every match of every file: a term found in most matches of
    // one file (`digest` in test_digest_*) still singles them out among all the results.
    let relevant: Vec<Vec<bool>> = if reduce {
        let docs: Vec<&str> = files
            .iter()
            .flat_map(|(_, hits)| hits.iter().filter(|h| h.is_match).map(|h| h.text))
            .collect();
        // BM25's best matches (at least three quarters of the best score: any positive score
        // would let a short word of the question such as `is` keep most matches) and the
        // matches naming a term inside a word.
        let (best, mut chosen) = query.relevant_and_mentions(&docs, docs.len());
        for i in best {
            if let Some(slot) = chosen.get_mut(i) {
                *slot = true;
            }
        }
        let mut chosen = chosen.into_iter();
        files
            .iter()
            .map(|(_, hits)| {
                hits.iter()
                    .map(|h| h.is_match && chosen.next().unwrap_or(false))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut out = String::with_capacity(text.len() / 2);
    let mut omitted = 0usize;
    // Kept matches: relevant to the question, with error words, the rest (first, last, spread).
    let mut why = (0usize, 0usize, 0usize);
    for (f, (path, hits)) in files.iter().enumerate() {
        out.push_str(path);
        out.push('\n');
        let keep = if reduce {
            select(
                hits,
                relevant.get(f).map_or(&[][..], Vec::as_slice),
                per_file,
            )
        } else {
            vec![true; hits.len()]
        };
        let mut dropped = 0usize;
        let file_relevant = relevant.get(f).map_or(&[][..], Vec::as_slice);
        for (i, (hit, keep)) in hits.iter().zip(&keep).enumerate() {
            if !keep {
                dropped += usize::from(hit.is_match);
                continue;
            }
            if hit.is_match {
                if file_relevant.get(i) == Some(&true) {
                    why.0 += 1;
                } else if has_error_word(hit.text) {
                    why.1 += 1;
                } else {
                    why.2 += 1;
                }
            }
            let sep = if hit.is_match { ':' } else { '-' };
            out.push_str(&format!("{}{sep}{}\n", hit.line, hit.text));
        }
        if dropped > 0 {
            out.push_str(&format!("[+{dropped} more matches]\n"));
            omitted += dropped;
        }
    }
    for line in &other {
        out.push_str(line);
        out.push('\n');
    }
    if omitted > 0 {
        out.push_str(&Marker::new(hash, count_of(omitted, matches, "matches")).render());
        out.push('\n');
    }
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    let kept = (omitted > 0).then(|| {
        format!(
            "kept {} matches relevant to the question, {} with error words, {} more per file \
             (first, last, spread up to {per_file}) of {} files",
            why.0,
            why.1,
            why.2,
            files.len()
        )
    });
    Some(CompressedSearch {
        text: out,
        omitted,
        kept,
    })
}

/// Which hits of one file to keep (`relevant`: per hit, whether it is a match relevant to the
/// question): context lines go with the matches they surround.
fn select(hits: &[Hit<'_>], relevant: &[bool], per_file: usize) -> Vec<bool> {
    let matches: Vec<usize> = (0..hits.len())
        .filter(|&i| hits.get(i).is_some_and(|h| h.is_match))
        .collect();
    let mut keep = vec![false; hits.len()];
    if matches.len() <= per_file {
        return vec![true; hits.len()];
    }
    // Which hits are chosen, as a mask over `hits` (a membership test per match, so the
    // selection stays linear however many matches are chosen), and how many choices were
    // made (first and last count twice when they are the same match, as they always have).
    let mut chosen = vec![false; hits.len()];
    let mut choices = 0usize;
    let choose = |i: usize, chosen: &mut [bool], choices: &mut usize| {
        if let Some(slot) = chosen.get_mut(i) {
            *slot = true;
        }
        *choices += 1;
    };
    if let (Some(&first), Some(&last)) = (matches.first(), matches.last()) {
        choose(first, &mut chosen, &mut choices);
        choose(last, &mut chosen, &mut choices);
    }
    for &i in &matches {
        let relevant = relevant.get(i).copied().unwrap_or(false);
        if relevant || hits.get(i).is_some_and(|h| has_error_word(h.text)) {
            choose(i, &mut chosen, &mut choices);
        }
    }
    // Fill up to per_file with evenly spread matches.
    let filler = matches
        .iter()
        .copied()
        .filter(|&i| chosen.get(i) == Some(&false))
        .collect::<Vec<_>>();
    let room = per_file.saturating_sub(choices);
    if room > 0 && !filler.is_empty() {
        let step = filler.len().div_ceil(room).max(1);
        for i in filler.into_iter().step_by(step).take(room) {
            choose(i, &mut chosen, &mut choices);
        }
    }
    for (i, _) in chosen.iter().enumerate().filter(|(_, c)| **c) {
        if let Some(slot) = keep.get_mut(i) {
            *slot = true;
        }
        // Context lines directly around a kept match stay with it.
        for j in [i.wrapping_sub(1), i + 1] {
            if hits.get(j).is_some_and(|h| !h.is_match)
                && let Some(slot) = keep.get_mut(j)
            {
                *slot = true;
            }
        }
    }
    keep
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn grep(files: usize, per: usize) -> String {
        let mut out = String::new();
        for f in 0..files {
            for m in 0..per {
                out.push_str(&format!(
                    "src/services/module_{f}/handler.rs:{}:    let value = compute_{m}(input);\n",
                    m * 10 + 1
                ));
            }
        }
        out
    }

    #[test]
    fn groups_by_file_losslessly_when_small() {
        let text = grep(3, 4);
        let out = compress(&text, &Query::default(), 5, 30, true, ContentHash::of(b"")).unwrap();
        assert_eq!(out.omitted, 0);
        assert!(
            out.text
                .starts_with("src/services/module_0/handler.rs\n1:    let value")
        );
        assert!(out.text.len() < text.len());
    }

    #[test]
    fn caps_matches_and_keeps_query_hits() {
        let mut text = grep(10, 20);
        text.push_str("src/services/module_3/handler.rs:999:    panic!(\"unreachable state\");\n");
        let out = compress(
            &text,
            &Query::new("where is compute_13 called?"),
            5,
            30,
            true,
            ContentHash::of(b""),
        )
        .unwrap();
        assert!(out.text.contains("compute_13"));
        assert!(out.text.contains("999:"));
        assert!(out.text.contains("more matches]"));
        assert!(out.text.contains("<<headroom:"));
        assert!(out.text.len() * 2 < text.len());
    }
}
