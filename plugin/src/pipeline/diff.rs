//! Diff compressor for unified diffs. Keeps every file header, every added and removed line and
//! `context` unchanged lines on each side of a change; longer unchanged runs inside a hunk
//! split it into smaller hunks with recomputed `@@` headers, so the output is still a valid
//! unified diff. `index` lines (blob hashes) are dropped, and lock files (Cargo.lock,
//! package-lock.json, ...) keep their header with a count of their changes instead of their
//! hunks. Text around the diff (a commit message) is kept. Long runs of added lines keep their
//! first [`ADDED_HEAD`] and last [`ADDED_TAIL`] lines, long runs of removed lines their first
//! [`REMOVED_HEAD`] and last one; lines relevant to the question always stay; what a run leaves
//! out is counted in place (`[+N -M changed lines omitted]`) before the next hunk header. One
//! marker names what was left out.

use super::detect::{is_hunk_header, parse_hunk_header};
use super::hash::ContentHash;
use super::marker::Marker;
use super::relevance::Query;

/// Diffs with fewer lines than this are left alone.
pub const MIN_LINES: usize = 20;

/// A run of added lines longer than `ADDED_HEAD + ADDED_TAIL` keeps its first `ADDED_HEAD`
/// lines and its last `ADDED_TAIL` (a new function's signature and first lines, its end).
pub const ADDED_HEAD: usize = 6;
/// See [`ADDED_HEAD`].
pub const ADDED_TAIL: usize = 2;
/// A run of removed lines longer than `REMOVED_HEAD + 1` keeps its first `REMOVED_HEAD` lines
/// and its last: the old code is in the repository, its start says what went.
pub const REMOVED_HEAD: usize = 3;

const LOCK_FILES: [&str; 10] = [
    "Cargo.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "Gemfile.lock",
    "go.sum",
    "composer.lock",
    "uv.lock",
];

/// The result of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedDiff {
    /// The new text.
    pub text: String,
    /// Unchanged context lines left out.
    pub context_omitted: usize,
    /// Changed lines of lock files left out.
    pub lock_lines_omitted: usize,
    /// `index` lines left out.
    pub index_lines_omitted: usize,
    /// Added and removed lines of long runs left out.
    pub changed_omitted: usize,
}

impl CompressedDiff {
    /// The manifest's words: what was kept and what left out.
    pub fn kept(&self) -> String {
        format!(
            "kept every file header, every changed line but {} of long runs (heads and tails \
             kept, the question's lines always), context around changes; left out {} \
             unchanged, {} lock file and {} index lines",
            self.changed_omitted,
            self.context_omitted,
            self.lock_lines_omitted,
            self.index_lines_omitted
        )
    }
}

/// Compresses a unified diff; `None` when nothing would change.
pub fn compress(
    text: &str,
    context: usize,
    query: &Query,
    hash: ContentHash,
) -> Option<CompressedDiff> {
    let lines: Vec<&str> = super::lines::lines(text).collect();
    if lines.len() < MIN_LINES {
        return None;
    }
    // Lines the question names (a term inside a word, or BM25's best lines) are never cut
    // from a run.
    // (BM25's best lines, at least three quarters of the best score: any positive score would
    // let a short word of the question such as `in` keep half the diff.)
    let relevant: Vec<bool> = if query.is_empty() {
        Vec::new()
    } else {
        let (best, mut relevant) = query.relevant_and_mentions(&lines, lines.len());
        for i in best {
            if let Some(slot) = relevant.get_mut(i) {
                *slot = true;
            }
        }
        relevant
    };
    let mut out = String::with_capacity(text.len());
    let mut result = CompressedDiff {
        text: String::new(),
        context_omitted: 0,
        lock_lines_omitted: 0,
        index_lines_omitted: 0,
        changed_omitted: 0,
    };
    let mut lock_file = false;
    let mut lock_counts = (0usize, 0usize);
    let mut i = 0;
    let flush_lock =
        |out: &mut String, counts: &mut (usize, usize), result: &mut CompressedDiff| {
            if counts.0 + counts.1 > 0 {
                out.push_str(&format!("[lock file: +{} -{} lines]\n", counts.0, counts.1));
                result.lock_lines_omitted += counts.0 + counts.1;
            }
            *counts = (0, 0);
        };
    while let Some(&line) = lines.get(i) {
        if line.starts_with("diff --git ")
            || line.starts_with("diff --cc ")
            || line.starts_with("diff --combined ")
        {
            flush_lock(&mut out, &mut lock_counts, &mut result);
            lock_file = LOCK_FILES
                .iter()
                .any(|name| line.ends_with(&format!("/{name}")));
        }
        if line.starts_with("index ") && line.contains("..") {
            result.index_lines_omitted += 1;
            i += 1;
            continue;
        }
        if let Some(header) = parse_hunk_header(line) {
            // The hunk body: lines starting with ' ', '+', '-' or '\'.
            let mut end = i + 1;
            while lines.get(end).is_some_and(|l| {
                l.is_empty()
                    || l.starts_with([' ', '+', '-', '\\'])
                        && !l.starts_with("--- a/")
                        && !l.starts_with("+++ b/")
            }) {
                end += 1;
            }
            // A trailing empty line belongs to the text after the diff.
            while end > i + 1 && lines.get(end - 1).is_some_and(|l| l.is_empty()) {
                end -= 1;
            }
            let body = lines.get(i + 1..end).unwrap_or_default();
            if lock_file {
                for l in body {
                    if l.starts_with('+') {
                        lock_counts.0 += 1;
                    } else if l.starts_with('-') {
                        lock_counts.1 += 1;
                    }
                }
            } else {
                let relevant = relevant.get(i + 1..end).unwrap_or_default();
                let (context_omitted, changed_omitted) =
                    write_hunk(&mut out, line, header, body, relevant, context);
                result.context_omitted += context_omitted;
                result.changed_omitted += changed_omitted;
            }
            i = end;
            continue;
        }
        if is_hunk_header(line) {
            // Combined diffs (`@@@`) are copied as they are.
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    flush_lock(&mut out, &mut lock_counts, &mut result);
    let dropped = result.context_omitted + result.lock_lines_omitted + result.changed_omitted;
    if dropped == 0 && result.index_lines_omitted == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if result.context_omitted > 0 {
        parts.push(format!("{} unchanged lines", result.context_omitted));
    }
    if result.changed_omitted > 0 {
        parts.push(format!(
            "{} changed lines of long runs",
            result.changed_omitted
        ));
    }
    if result.lock_lines_omitted > 0 {
        parts.push(format!("{} lock file lines", result.lock_lines_omitted));
    }
    if result.index_lines_omitted > 0 {
        parts.push(format!("{} index lines", result.index_lines_omitted));
    }
    out.push_str(&Marker::new(hash, parts.join(", ")).render());
    if text.ends_with('\n') {
        out.push('\n');
    }
    result.text = out;
    Some(result)
}

/// Writes one hunk, split where more than `2 × context` unchanged lines separate changes or
/// where a long run of changes is cut (`relevant`: per body line, whether the question names
/// it). Returns the numbers of unchanged and of changed lines left out.
fn write_hunk(
    out: &mut String,
    header: &str,
    numbers: (u64, u64, u64, u64),
    body: &[&str],
    relevant: &[bool],
    context: usize,
) -> (usize, usize) {
    let is_change = |l: &str| l.starts_with('+') || l.starts_with('-');
    let changes: Vec<usize> = (0..body.len())
        .filter(|&j| body.get(j).is_some_and(|l| is_change(l)))
        .collect();
    let mut keep = vec![false; body.len()];
    // Lines before `marked` are already kept: each line is marked at most once (linear in
    // the hunk, whatever `context` is).
    let mut marked = 0usize;
    for &c in &changes {
        let end = c.saturating_add(context).min(body.len().saturating_sub(1));
        for slot in keep
            .get_mut(c.saturating_sub(context).max(marked)..=end)
            .unwrap_or_default()
        {
            *slot = true;
        }
        marked = marked.max(end + 1);
    }
    // "\ No newline at end of file" follows the line it annotates.
    for j in 0..body.len() {
        if body.get(j).is_some_and(|l| l.starts_with('\\'))
            && j > 0
            && keep.get(j - 1) == Some(&true)
            && let Some(slot) = keep.get_mut(j)
        {
            *slot = true;
        }
    }
    cut_long_runs(body, relevant, &mut keep);
    let omitted = keep.iter().filter(|k| !**k).count();
    if omitted == 0 || changes.is_empty() {
        out.push_str(header);
        out.push('\n');
        for l in body {
            out.push_str(l);
            out.push('\n');
        }
        return (0, 0);
    }
    let mut changed_omitted = 0usize;
    // Changed lines left out since the last kept run: said before the next one.
    let mut pending = (0usize, 0usize);
    let suffix = header.split_once(" @@").map_or("", |(_, rest)| rest);
    let (mut old_line, _, mut new_line, _) = numbers;
    let mut j = 0;
    while j < body.len() {
        if keep.get(j) != Some(&true) {
            let l = body.get(j).copied().unwrap_or("");
            if l.starts_with('+') {
                pending.0 += 1;
            } else if l.starts_with('-') {
                pending.1 += 1;
            }
            if !l.starts_with('+') && !l.starts_with('\\') {
                old_line += 1;
            }
            if !l.starts_with('-') && !l.starts_with('\\') {
                new_line += 1;
            }
            j += 1;
            continue;
        }
        flush_pending(out, &mut pending, &mut changed_omitted);
        let start = j;
        while keep.get(j) == Some(&true) {
            j += 1;
        }
        let run = body.get(start..j).unwrap_or_default();
        let old_count = run
            .iter()
            .filter(|l| !l.starts_with('+') && !l.starts_with('\\'))
            .count() as u64;
        let new_count = run
            .iter()
            .filter(|l| !l.starts_with('-') && !l.starts_with('\\'))
            .count() as u64;
        let range = |start: u64, count: u64| {
            // An empty side names the line before it, as diff does.
            let start = if count == 0 {
                start.saturating_sub(1)
            } else {
                start
            };
            format!("{start},{count}")
        };
        out.push_str(&format!(
            "@@ -{} +{} @@{suffix}\n",
            range(old_line, old_count),
            range(new_line, new_count)
        ));
        for l in run {
            out.push_str(l);
            out.push('\n');
        }
        old_line += old_count;
        new_line += new_count;
    }
    flush_pending(out, &mut pending, &mut changed_omitted);
    (omitted.saturating_sub(changed_omitted), changed_omitted)
}

/// Writes the count of changed lines left out since the last kept run, if any.
fn flush_pending(out: &mut String, pending: &mut (usize, usize), changed_omitted: &mut usize) {
    if pending.0 + pending.1 > 0 {
        out.push_str(&format!(
            "[+{} -{} changed lines omitted]\n",
            pending.0, pending.1
        ));
        *changed_omitted += pending.0 + pending.1;
    }
    *pending = (0, 0);
}

/// Leaves out the middle of long runs of added lines and the tail of long runs of removed
/// lines, except lines the question names.
fn cut_long_runs(body: &[&str], relevant: &[bool], keep: &mut [bool]) {
    let mut j = 0;
    while j < body.len() {
        let sign = match body.get(j).and_then(|l| l.bytes().next()) {
            Some(sign @ (b'+' | b'-')) => sign,
            _ => {
                j += 1;
                continue;
            }
        };
        let start = j;
        while body
            .get(j)
            .is_some_and(|l| l.as_bytes().first() == Some(&sign))
        {
            j += 1;
        }
        let (head, tail) = if sign == b'+' {
            (ADDED_HEAD, ADDED_TAIL)
        } else {
            (REMOVED_HEAD, 1)
        };
        if j - start > head + tail {
            for k in start + head..j - tail {
                if !relevant.get(k).copied().unwrap_or(false)
                    && let Some(slot) = keep.get_mut(k)
                {
                    *slot = false;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file_diff(name: &str, context: usize) -> String {
        let mut out = format!(
            "diff --git a/{name} b/{name}\nindex 3f2a9c1..7b4e2d0 100644\n--- a/{name}\n+++ b/{name}\n"
        );
        out.push_str(&format!(
            "@@ -10,{} +10,{} @@ fn handler()\n",
            2 * context + 1,
            2 * context + 1
        ));
        for k in 0..context {
            out.push_str(&format!(" context before {k}\n"));
        }
        out.push_str("-    let x = old();\n+    let x = new();\n");
        for k in 0..context {
            out.push_str(&format!(" context after {k}\n"));
        }
        out
    }

    #[test]
    fn trims_context_and_keeps_a_valid_header() {
        let text = format!("{}{}", file_diff("src/a.rs", 8), file_diff("src/b.rs", 8));
        let out = compress(
            &text,
            2,
            &Query::default(),
            ContentHash::of(text.as_bytes()),
        )
        .unwrap();
        assert!(out.text.contains("@@ -16,5 +16,5 @@ fn handler()\n context before 6\n context before 7\n-    let x = old();\n+    let x = new();\n context after 0\n context after 1\n"), "{}", out.text);
        assert_eq!(out.context_omitted, 24);
        assert!(!out.text.contains("index 3f2a"));
        assert!(out.text.contains("<<headroom:"));
    }

    #[test]
    fn lock_files_are_counted() {
        let mut text = file_diff("src/a.rs", 3);
        text.push_str("diff --git a/Cargo.lock b/Cargo.lock\n--- a/Cargo.lock\n+++ b/Cargo.lock\n@@ -1,30 +1,30 @@\n");
        for k in 0..15 {
            text.push_str(&format!(
                "-version = \"0.{k}\"\n+version = \"0.{}\"\n",
                k + 1
            ));
        }
        let out = compress(&text, 2, &Query::default(), ContentHash::of(b"")).unwrap();
        assert!(out.text.contains("[lock file: +15 -15 lines]"));
        assert!(out.text.contains("-    let x = old();"));
    }

    /// Context is marked once per line, whatever its size; a context wider than the hunk
    /// keeps it whole.
    #[test]
    fn any_context_is_linear() {
        let text = format!("{}{}", file_diff("src/a.rs", 8), file_diff("src/b.rs", 8));
        let hash = ContentHash::of(text.as_bytes());
        let wide = compress(&text, usize::MAX, &Query::default(), hash).unwrap();
        assert_eq!(wide.context_omitted, 0);
        assert_eq!(wide.index_lines_omitted, 2);
        assert_eq!(
            compress(&text, 8, &Query::default(), hash).unwrap().text,
            wide.text
        );
    }

    /// A new function of 40 lines keeps its head and tail and says how many lines went; the
    /// line the question names stays; the hunk headers still count what is shown.
    #[test]
    fn long_runs_keep_head_tail_and_the_question() {
        let mut text = String::from(
            "diff --git a/src/a.rs b/src/a.rs\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,2 +1,42 @@\n fn a() {}\n",
        );
        for k in 0..40 {
            let extra = if k == 20 { " // retry_budget" } else { "" };
            text.push_str(&format!("+    let v{k} = {k};{extra}\n"));
        }
        text.push_str(" fn b() {}\n");
        let out = compress(
            &text,
            2,
            &Query::new("where is retry_budget?"),
            ContentHash::of(text.as_bytes()),
        )
        .unwrap();
        assert!(out.text.contains("+    let v5 = 5;\n"), "{}", out.text);
        assert!(!out.text.contains("+    let v6 = 6;\n"));
        assert!(out.text.contains("+    let v20 = 20; // retry_budget\n"));
        assert!(out.text.contains("+    let v39 = 39;\n fn b() {}\n"));
        assert!(
            out.text
                .contains("[+14 -0 changed lines omitted]\n@@ -1,0 +22,1 @@"),
            "{}",
            out.text
        );
        assert!(
            out.text
                .contains("[+17 -0 changed lines omitted]\n@@ -2,1 +40,3 @@"),
            "{}",
            out.text
        );
        assert_eq!(out.changed_omitted, 31);
    }

    #[test]
    fn short_diffs_stay() {
        assert!(
            compress(
                &file_diff("a", 1),
                2,
                &Query::default(),
                ContentHash::of(b"")
            )
            .is_none()
        );
    }
}
