//! Log compressor for build, test and application logs. Each line is one of:
//!
//! - **severe**: an error, warning or exception (a level word, or a severity root such as
//!   `fail`, `exception`, `timeout` inside a word): the first line of each template stays,
//!   verbatim, annotated with how many similar lines followed; an exception that stays keeps
//!   its stack trace (up to [`MAX_TRACE_LINES`]) and `context` lines before it; a Python
//!   traceback is named by its exception line and keeps its last [`MAX_TRACE_LINES`] lines
//!   (the innermost frames and the exception);
//! - **question**: relevant to the latest user text (BM25, at most [`MAX_QUESTION_LINES`]):
//!   kept;
//! - **summary**: test and build summaries, section headers: kept;
//! - **routine**: everything else, reduced to its template (numbers, hex ids, quoted strings
//!   and timestamps masked). Routine templates share a small byte budget
//!   ([`ROUTINE_BUDGET_PERCENT`] of the log): the most frequent ones keep one annotated line
//!   each, the others are left out, counted by the marker.
//!
//! The first and last lines stay. Everything left out is kept under the block's hash (the
//! marker names it). Linear in the lines: one template (written into one buffer) and two hash-map
//! lookups per line.

use super::byte_class::{ALPHANUMERIC, DIGIT, HEX, class, find_digit_or_quote};
use super::fixed_hash::StrMap;

use super::detect::{Level, PANICKED_AT, is_exception_line, is_stack_frame, line_level};
use super::hash::ContentHash;
use super::marker::{Marker, count_of};
use super::needle::CaselessNeedle;
use super::relevance::Query;
use super::signals::has_severity_root;
use super::text::strip_ansi;

/// Logs with fewer lines than this are not reduced.
pub const MIN_LINES: usize = 20;

/// Routine lines keep at most this percentage of the log's bytes (one line per template, the
/// most frequent templates first).
pub const ROUTINE_BUDGET_PERCENT: usize = 4;

/// Lines of one stack trace kept after the line that starts it.
pub const MAX_TRACE_LINES: usize = 64;

/// How far a Python traceback's end (its exception line) is looked for.
pub const MAX_TRACEBACK_SCAN: usize = 4096;

/// Lines relevant to the question kept at most.
pub const MAX_QUESTION_LINES: usize = 64;

/// The result of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedLog {
    /// The new text.
    pub text: String,
    /// Lines left out.
    pub omitted: usize,
    /// Why the kept lines were kept, for the manifest.
    pub kept: String,
}

/// Why a line is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Dropped,
    Edge,
    Severe,
    Trace,
    Context,
    Question,
    Summary,
    Routine,
}

/// Compresses a log under the question `query`; `None` when nothing would be left out.
pub fn compress(
    text: &str,
    context: usize,
    query: &Query,
    hash: ContentHash,
) -> Option<CompressedLog> {
    let clean = strip_ansi(text);
    let lines: Vec<&str> = super::lines::lines(&clean).collect();
    let n = lines.len();
    if n < MIN_LINES {
        return None;
    }
    let mut why = vec![Why::Dropped; n];
    if !query.is_empty() {
        let (best, mentioned) = query.relevant_and_mentions(&lines, MAX_QUESTION_LINES);
        let mentioned = mentioned
            .into_iter()
            .enumerate()
            .filter(|(_, m)| *m)
            .map(|(i, _)| i)
            .take(MAX_QUESTION_LINES);
        for i in best.into_iter().chain(mentioned) {
            if let Some(slot) = why.get_mut(i) {
                *slot = Why::Question;
            }
        }
    }
    // Representatives: the first line of each template, with the count of similar lines.
    // Only looked up, never iterated: hash maps with fixed keys (templates share long
    // prefixes, which makes ordered comparisons slow).
    let mut severe_first: StrMap<String, usize> = StrMap::default();
    let mut routine_first: StrMap<String, usize> = StrMap::default();
    let mut routine: Vec<usize> = Vec::new();
    let mut repeats = vec![0usize; n];
    let (mut severe_lines, mut frames) = (0usize, 0usize);
    // The exception line of a repeated traceback (counted with the traceback).
    let mut counted_exception: Option<usize> = None;
    // The current line's template: one buffer, copied into a map only when new.
    let mut line_template = String::new();
    for i in 0..n {
        let line = lines.get(i).copied().unwrap_or("");
        let trimmed = line.trim_start();
        let current = why.get(i).copied().unwrap_or(Why::Dropped);
        if matches!(current, Why::Trace | Why::Context) || counted_exception == Some(i) {
            continue;
        }
        if trimmed.starts_with("Traceback (most recent call last)") {
            // A Python traceback is named by its exception (its last line), and its innermost
            // frames are at its end: a new exception keeps its head and its last frames.
            severe_lines += 1;
            let end = traceback_end(&lines, i);
            let exception = lines.get(end).copied().unwrap_or("");
            let key = format!("Traceback\n{}", template(exception));
            if let Some(&first) = severe_first.get(&key) {
                if let Some(count) = repeats.get_mut(first) {
                    *count += 1;
                }
                // Its exception line is counted with it.
                counted_exception = Some(end);
                continue;
            }
            severe_first.or_insert(key, i);
            // Its exception line repeated alone later is one more of this one.
            severe_first.or_insert(severe_template(exception), end);
            if current == Why::Dropped
                && let Some(slot) = why.get_mut(i)
            {
                *slot = Why::Severe;
            }
            keep_before(&mut why, i, context);
            let tail_start = (i + 1).max((end + 1).saturating_sub(MAX_TRACE_LINES));
            for slot in why.get_mut(tail_start..=end).unwrap_or_default() {
                if *slot == Why::Dropped {
                    *slot = Why::Trace;
                }
            }
            continue;
        }
        if is_severe(line) {
            severe_lines += 1;
            write_template(line, true, &mut line_template);
            if let Some(&first) = severe_first.get(line_template.as_str()) {
                if let Some(count) = repeats.get_mut(first) {
                    *count += 1;
                }
                continue;
            }
            severe_first.or_insert(line_template.clone(), i);
            if current == Why::Dropped
                && let Some(slot) = why.get_mut(i)
            {
                *slot = Why::Severe;
            }
            // An exception, or an error line its frames follow (`ERROR job failed` then
            // `    at net::tcp::read (src/net/tcp.rs:120)`), keeps its trace.
            // Only a log line (unindented) starts one: an indented line is inside a trace.
            let frames_follow = trimmed.len() == line.len()
                && lines.get(i + 1).is_some_and(|next| is_stack_frame(next));
            if starts_trace(trimmed) || frames_follow {
                keep_trace(&lines, &mut why, i, context);
            }
        } else if current != Why::Dropped {
            // A question line.
        } else if is_summary(trimmed) {
            if let Some(slot) = why.get_mut(i) {
                *slot = Why::Summary;
            }
        } else if is_stack_frame(line) {
            // A frame of a trace whose exception was seen before: its count is the
            // exception's.
            frames += 1;
        } else {
            write_template(line, false, &mut line_template);
            match routine_first.get(line_template.as_str()) {
                Some(&first) => {
                    if let Some(count) = repeats.get_mut(first) {
                        *count += 1;
                    }
                }
                None => {
                    routine_first.or_insert(line_template.clone(), i);
                    routine.push(i);
                }
            }
        }
    }
    // The routine budget goes to the most frequent templates first (ties: the earlier).
    routine.sort_by(|&a, &b| {
        let count = |i: usize| repeats.get(i).copied().unwrap_or(0);
        count(b).cmp(&count(a)).then(a.cmp(&b))
    });
    let budget = clean.len() / 100 * ROUTINE_BUDGET_PERCENT;
    let mut used = 0usize;
    let mut routine_kept = 0usize;
    for &i in &routine {
        let cost = lines.get(i).map_or(0, |l| l.len() + 1);
        if used + cost > budget {
            continue;
        }
        used += cost;
        routine_kept += 1;
        if let Some(slot) = why.get_mut(i) {
            *slot = Why::Routine;
        }
    }
    for i in [0, n - 1] {
        if let Some(slot) = why.get_mut(i)
            && *slot == Why::Dropped
        {
            *slot = Why::Edge;
        }
    }
    let omitted = why.iter().filter(|w| **w == Why::Dropped).count();
    if omitted == 0 {
        return None;
    }
    let mut out = String::with_capacity(text.len() / 8);
    for (i, line) in lines.iter().enumerate() {
        let reason = why.get(i).copied().unwrap_or(Why::Dropped);
        if reason == Why::Dropped {
            continue;
        }
        out.push_str(line);
        let count = repeats.get(i).copied().unwrap_or(0);
        if count > 0
            && matches!(
                reason,
                Why::Severe | Why::Routine | Why::Question | Why::Edge
            )
        {
            out.push_str(&format!(" [+{count} similar]"));
        }
        out.push('\n');
    }
    out.push_str(&Marker::new(hash, count_of(omitted, n, "lines")).render());
    if text.ends_with('\n') {
        out.push('\n');
    }
    let tally = |w: Why| why.iter().filter(|x| **x == w).count();
    let kept = format!(
        "kept {} error/warning lines (one per template of {} such lines), {} stack-trace and {} \
         context lines, {} lines matching the question, {} summary lines, {} of {} routine \
         templates (the most frequent, within {} % of the bytes), first and last line; {} \
         repeated stack frames and the other lines left out",
        tally(Why::Severe),
        severe_lines,
        tally(Why::Trace),
        tally(Why::Context),
        tally(Why::Question),
        tally(Why::Summary),
        routine_kept,
        routine.len(),
        ROUTINE_BUDGET_PERCENT,
        frames,
    );
    Some(CompressedLog {
        text: out,
        omitted,
        kept,
    })
}

/// An error, warning or exception line (a level, an error prefix, a severity root inside a
/// word), or a stack frame naming one.
fn is_severe(line: &str) -> bool {
    line_level(line) != Level::Other || has_severity_root(line)
}

/// A line that starts a stack trace.
fn starts_trace(trimmed: &str) -> bool {
    trimmed.starts_with("Traceback (most recent call last)")
        || trimmed.starts_with("Exception in thread")
        || trimmed.starts_with("Caused by:")
        || PANICKED_AT.is_in(trimmed)
        || trimmed.starts_with("stack backtrace:")
        || trimmed.starts_with("goroutine ")
        || is_exception_line(trimmed)
}

/// The last line of the Python traceback starting at `at`: its exception line (the first
/// unindented line after it), looked for within [`MAX_TRACEBACK_SCAN`] lines. Tracebacks do
/// not overlap, so the scans cost one pass over the log.
fn traceback_end(lines: &[&str], at: usize) -> usize {
    let limit = at.saturating_add(MAX_TRACEBACK_SCAN).min(lines.len());
    let mut last = at;
    for j in at + 1..limit {
        let line = lines.get(j).copied().unwrap_or("");
        if line.trim().is_empty() {
            break;
        }
        last = j;
        if !line.starts_with([' ', '\t']) {
            break;
        }
    }
    last
}

/// Keeps `context` lines before line `at`.
fn keep_before(why: &mut [Why], at: usize, context: usize) {
    for slot in why
        .get_mut(at.saturating_sub(context)..at)
        .unwrap_or_default()
    {
        if *slot == Why::Dropped {
            *slot = Why::Context;
        }
    }
}

/// Keeps `context` lines before line `at` and its stack trace after it: frames, indented
/// lines, `Caused by:` and `... N more`, up to [`MAX_TRACE_LINES`]; a Python traceback ends
/// with its unindented exception line.
fn keep_trace(lines: &[&str], why: &mut [Why], at: usize, context: usize) {
    keep_before(why, at, context);
    let python = lines
        .get(at)
        .is_some_and(|l| l.trim_start().starts_with("Traceback"));
    let end = at.saturating_add(MAX_TRACE_LINES).min(lines.len());
    for j in at + 1..end {
        let line = lines.get(j).copied().unwrap_or("");
        let trimmed = line.trim_start();
        let indented = trimmed.len() < line.len() && !trimmed.is_empty();
        let frame = is_stack_frame(line)
            || indented
            || trimmed.starts_with("Caused by:")
            || (trimmed.starts_with("...") && trimmed.ends_with("more"));
        if !frame {
            if python
                && is_exception_line(trimmed)
                && let Some(slot) = why.get_mut(j)
            {
                *slot = Why::Trace;
            }
            break;
        }
        if let Some(slot) = why.get_mut(j)
            && *slot == Why::Dropped
        {
            *slot = Why::Trace;
        }
    }
}

/// Test and build summaries: `=== 3 failed, 10 passed ===`, `test result:`, `Tests: ...`.
fn is_summary(line: &str) -> bool {
    // Lowercase forms, compared regardless of ASCII case (no lowercased copy of the line).
    static PREFIXES: [CaselessNeedle; 7] = [
        CaselessNeedle::new("running "),
        CaselessNeedle::new("test result:"),
        CaselessNeedle::new("tests:"),
        CaselessNeedle::new("test suites:"),
        CaselessNeedle::new("build success"),
        CaselessNeedle::new("build failure"),
        CaselessNeedle::new("build failed"),
    ];
    static PASSED: CaselessNeedle = CaselessNeedle::new(" passed");
    static FAILED: CaselessNeedle = CaselessNeedle::new("failed");
    static IN: CaselessNeedle = CaselessNeedle::new(" in ");
    (line.starts_with("===") && line.len() > 6 && !line.trim_matches('=').trim().is_empty())
        || (line.starts_with("___") && !line.trim_matches('_').trim().is_empty())
        || PREFIXES.iter().any(|p| p.starts(line))
        || PASSED.is_in(line)
            && line.bytes().any(|b| b.is_ascii_digit())
            && (FAILED.is_in(line) || IN.is_in(line))
}

/// A line with its variable parts masked: digit runs become `0`, hex runs of 6+ and quoted
/// strings are collapsed, so `req 123 took 45ms` and `req 124 took 51ms` share a template.
pub fn template(line: &str) -> String {
    template_with(line, false)
}

/// The template of an error or warning line: as [`template`], but quoted strings are masked
/// like the rest of the line rather than collapsed, because in JSON lines and `key="value"`
/// logs they are the message (`{"level":"error","msg":"disk full"}` and `... "msg":"timeout"}`
/// are two errors).
pub fn severe_template(line: &str) -> String {
    template_with(line, true)
}

fn template_with(line: &str, keep_quoted: bool) -> String {
    let mut out = String::with_capacity(line.len());
    write_template(line, keep_quoted, &mut out);
    out
}

/// Writes the template of `line` (as [`template`], or [`severe_template`] when `keep_quoted`)
/// to `out`, which it clears first: the log compressor makes one per line into one buffer and
/// allocates only for a template it has not seen.
///
/// Every character that matters is ASCII, and most of a line is its own template (words
/// without digits, punctuation, non-ASCII text): only what changes (a word with a digit, a
/// collapsed quoted string) is looked at and written piecewise; the runs before it are copied
/// whole, each ending on a character boundary.
fn write_template(line: &str, keep_quoted: bool, out: &mut String) {
    out.clear();
    let bytes = line.as_bytes();
    // `line[copied..at]` is its own template and is not written yet.
    let mut copied = 0;
    let mut at = 0;
    // Only a digit or a quote changes anything: words without digits, punctuation and
    // non-ASCII text are skipped eight bytes at a time.
    while let Some(found) = find_digit_or_quote(bytes, at) {
        let Some(&b) = bytes.get(found) else { break };
        if class(b) & DIGIT != 0 {
            // The word holding it: back to its start (never before `at`, which is a word's
            // start or follows a byte that ends one), then forward, noting whether it is all
            // hex.
            let mut start = found;
            while start > at
                && bytes
                    .get(start - 1)
                    .is_some_and(|&d| class(d) & ALPHANUMERIC != 0)
            {
                start -= 1;
            }
            out.push_str(line.get(copied..start).unwrap_or_default());
            // One pass over the word: its digit runs masked as they are met, then all of it
            // replaced by `#` if it is a hex id (`took45ms` is `took0ms`, `5f3a9c` is `#`).
            let mark = out.len();
            let mut end = start;
            let mut all_hex = true;
            let mut in_digits = false;
            while let Some(&d) = bytes.get(end) {
                let flags = class(d);
                if flags & ALPHANUMERIC == 0 {
                    break;
                }
                all_hex &= flags & HEX != 0;
                let digit = flags & DIGIT != 0;
                if !(digit && in_digits) {
                    out.push(if digit { '0' } else { char::from(d) });
                }
                in_digits = digit;
                end += 1;
            }
            // It holds the digit at `found`.
            if end - start >= 6 && all_hex {
                out.truncate(mark);
                out.push('#');
            }
            copied = end;
            at = end;
        } else if !keep_quoted && opens_string(line, found) {
            // The opening quote stays, the string goes, the closing quote is written (also
            // when the string is never closed).
            let close = bytes
                .get(found + 1..)
                .and_then(|rest| rest.iter().position(|&d| d == b));
            out.push_str(line.get(copied..=found).unwrap_or_default());
            out.push(char::from(b));
            at = close.map_or(bytes.len(), |i| found + 1 + i + 1);
            copied = at;
        } else {
            // An apostrophe inside a word or, when `keep_quoted`, any quote: its own template.
            at = found + 1;
        }
    }
    out.push_str(line.get(copied..).unwrap_or_default());
}

/// Whether the quote at byte `at` of `line` opens a string: a double quote always, an
/// apostrophe unless it is inside a word (`you've`).
fn opens_string(line: &str, at: usize) -> bool {
    line.as_bytes().get(at) == Some(&b'"')
        || !line
            .get(..at)
            .and_then(|head| head.chars().next_back())
            .is_some_and(char::is_alphanumeric)
}

/// Appends the template of an ASCII word (`has_digit`: it holds an ASCII digit; `all_hex`:
/// every byte is a hex digit): `#` for a hex id of 6+ characters with a digit, else the word
/// with each digit run masked (`took45ms` and `took7ms` share `took0ms`). The reference
/// [`write_template`]'s one pass over a word is tested against.
#[cfg(test)]
fn push_word_template(word: &str, has_digit: bool, all_hex: bool, out: &mut String) {
    if word.len() >= 6 && has_digit && all_hex {
        out.push('#');
    } else if has_digit {
        let mut in_digits = false;
        for ch in word.bytes() {
            if ch.is_ascii_digit() {
                if !in_digits {
                    out.push('0');
                }
                in_digits = true;
            } else {
                out.push(char::from(ch));
                in_digits = false;
            }
        }
    } else {
        out.push_str(word);
    }
}

/// What [`template_with`] computed before it walked bytes: the character-by-character
/// original, kept as the reference the byte walk is property-tested against.
#[cfg(test)]
fn template_by_chars(line: &str, keep_quoted: bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let opens = c == '"'
            || (c == '\''
                && !line
                    .get(..at)
                    .and_then(|head| head.chars().next_back())
                    .is_some_and(char::is_alphanumeric));
        if opens && keep_quoted {
            out.push(c);
        } else if opens {
            out.push(c);
            for (_, d) in chars.by_ref() {
                if d == c {
                    break;
                }
            }
            out.push(c);
        } else if c.is_ascii_alphanumeric() {
            let mut end = at + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if !d.is_ascii_alphanumeric() {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            let word = line.get(at..end).unwrap_or_default();
            let has_digit = word.bytes().any(|c| c.is_ascii_digit());
            let all_hex = word.bytes().all(|c| c.is_ascii_hexdigit());
            push_word_template(word, has_digit, all_hex, &mut out);
        } else {
            out.push(c);
        }
    }
    out
}

/// What [`is_summary`] computed before it compared without a lowercased copy: the reference
/// it is property-tested against.
#[cfg(test)]
fn is_summary_by_lowercasing(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    (line.starts_with("===") && line.len() > 6 && !line.trim_matches('=').trim().is_empty())
        || (line.starts_with("___") && !line.trim_matches('_').trim().is_empty())
        || lower.starts_with("running ")
        || lower.starts_with("test result:")
        || lower.starts_with("tests:")
        || lower.starts_with("test suites:")
        || lower.starts_with("build success")
        || lower.starts_with("build failure")
        || lower.starts_with("build failed")
        || lower.contains(" passed")
            && lower.chars().any(|c| c.is_ascii_digit())
            && (lower.contains("failed") || lower.contains(" in "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The byte walk makes the templates the character walk made, quotes, apostrophes,
        /// hex ids, digit runs and non-ASCII text included, also into a reused buffer.
        #[test]
        fn templates_agree_with_the_character_walk(
            parts in proptest::collection::vec(
                "(\"|'|you've|é'|日本|ab12cd34|deadbeef99|took45ms|DEADBEEF12|Gz9|x1|[a-z]{1,4}|[0-9]{1,3}| |=|:|\\.|ß)",
                0..16,
            )
        ) {
            let line: String = parts.concat();
            // The compressor's buffer holds the previous line's template.
            let mut reused = String::from("the previous line's 0 template");
            for keep in [false, true] {
                let expected = template_by_chars(&line, keep);
                proptest::prop_assert_eq!(&template_with(&line, keep), &expected);
                write_template(&line, keep, &mut reused);
                proptest::prop_assert_eq!(&reused, &expected);
            }
        }
    }

    proptest::proptest! {
        /// Comparing regardless of case finds the summaries lowercasing the line found.
        #[test]
        fn summaries_are_what_lowercasing_the_line_found(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "Running ", "TEST RESULT:", "Tests:", "Test Suites:", "BUILD SUCCESS",
                    "Build Failure", "build FAILED", " Passed", " passed", "FAILED", " IN ",
                    " in ", "===", "___", "=", "_", " ", "3", "x", "é", "ok",
                ]),
                0..8,
            )
        ) {
            let line: String = parts.concat();
            proptest::prop_assert_eq!(is_summary(&line), is_summary_by_lowercasing(&line), "{:?}", line);
        }
    }

    #[test]
    fn keeps_errors_and_traces_collapses_the_rest() {
        let mut log = String::new();
        for i in 0..300 {
            log.push_str(&format!(
                "2024-05-01T10:00:{:02}Z INFO request id={i} path=/api/items took {}ms\n",
                i % 60,
                i % 17
            ));
            if i == 150 {
                log.push_str("2024-05-01T10:02:30Z ERROR payment failed for order 8812\n");
                log.push_str("Traceback (most recent call last):\n  File \"app.py\", line 10, in pay\n    charge()\nValueError: card declined\n");
            }
            if i == 200 {
                log.push_str("2024-05-01T10:03:20Z WARN retrying upstream\n");
            }
        }
        let out = compress(&log, 2, &Query::default(), ContentHash::of(log.as_bytes())).unwrap();
        for needle in [
            "ERROR payment failed",
            "Traceback",
            "line 10",
            "ValueError: card declined",
            "WARN retrying",
        ] {
            assert!(out.text.contains(needle), "{needle}\n{}", out.text);
        }
        assert!(out.text.contains("similar]"));
        assert!(out.text.contains("<<headroom:"));
        assert!(out.text.len() * 5 < log.len(), "{}", out.text);
    }

    /// JSON lines and logfmt: each distinct error message keeps a line, routine ones share
    /// the budget.
    #[test]
    fn json_lines_and_logfmt_errors_are_told_apart() {
        let mut log = String::new();
        for i in 0..400 {
            log.push_str(&format!(
                "{{\"ts\":\"2026-11-27T10:00:{:02}Z\",\"level\":\"info\",\"msg\":\"served request {i}\"}}\n",
                i % 60
            ));
            match i {
                100 => log.push_str("{\"ts\":\"2026-11-27T10:01:40Z\",\"level\":\"error\",\"msg\":\"disk full\"}\n"),
                200 => log.push_str("{\"ts\":\"2026-11-27T10:03:20Z\",\"level\":\"error\",\"msg\":\"upstream reset\"}\n"),
                300 => log.push_str("ts=2026-11-27T10:05:00Z level=warn msg=\"slow disk\" took=900ms\n"),
                301 => log.push_str("ts=2026-11-27T10:05:01Z level=warn msg=\"cache cold\" took=12ms\n"),
                _ => {}
            }
        }
        let out = compress(&log, 0, &Query::default(), ContentHash::of(log.as_bytes())).unwrap();
        for message in ["disk full", "upstream reset", "slow disk", "cache cold"] {
            assert!(out.text.contains(message), "{message}\n{}", out.text);
        }
        assert!(out.text.len() * 10 < log.len(), "{}", out.text);
    }

    #[test]
    fn templates_mask_variable_parts() {
        assert_eq!(template("req 123 took 45ms"), template("req 9 took 7ms"));
        assert_eq!(template("id deadbeef01 ok"), template("id 0badc0de99 ok"));
        assert_ne!(template("GET /a"), template("POST /a"));
    }

    /// Traces are kept within [`MAX_TRACE_LINES`] and context before them once per line, so
    /// a context as large as the log costs no more than the log: each line is marked at most
    /// twice.
    #[test]
    fn any_context_is_linear() {
        let mut log = String::new();
        for i in 0..2_000 {
            log.push_str(&format!("2024-05-01 INFO step {i} done\n"));
            if i % 500 == 250 {
                log.push_str("java.lang.IllegalStateException: broken\n");
                for f in 0..100 {
                    log.push_str(&format!("    at com.acme.Step.run{f}(Step.java:{f})\n"));
                }
            }
        }
        let hash = ContentHash::of(log.as_bytes());
        let wide = compress(&log, usize::MAX, &Query::default(), hash).unwrap();
        let narrow = compress(&log, 0, &Query::default(), hash).unwrap();
        // The wide context keeps every line before the first trace (the later traces repeat
        // its template: they and their frames are counted, not kept).
        assert!(narrow.omitted >= wide.omitted + 250, "{}", wide.kept);
        assert!(
            narrow
                .text
                .contains("    at com.acme.Step.run62(Step.java:62)")
        );
        assert!(
            !narrow
                .text
                .contains("    at com.acme.Step.run63(Step.java:63)")
        );
        assert!(
            narrow.text.contains("broken [+3 similar]"),
            "{}",
            narrow.text
        );
        assert!(narrow.omitted > 1_900);
    }

    /// An error line followed by frames keeps them (the first of its template); a repeat's
    /// frames are counted, not kept.
    #[test]
    fn error_lines_keep_the_frames_that_follow() {
        let mut log = String::new();
        for i in 0..300 {
            log.push_str(&format!("2026-11-27T10:00:00Z INFO processed batch {i}\n"));
            if i % 100 == 50 {
                log.push_str(&format!(
                    "2026-11-27T10:00:00Z ERROR job {i} failed: reset\n"
                ));
                log.push_str(&format!("    at net::tcp::read (src/net/tcp.rs:{i})\n"));
                log.push_str("    at worker::run (src/worker.rs:88)\n");
            }
        }
        let out = compress(&log, 0, &Query::default(), ContentHash::of(log.as_bytes())).unwrap();
        assert!(
            out.text.contains(
                "ERROR job 50 failed: reset [+2 similar]\n    at net::tcp::read (src/net/tcp.rs:50)\n    at worker::run (src/worker.rs:88)\n"
            ),
            "{}",
            out.text
        );
        assert!(!out.text.contains("tcp.rs:150"));
    }

    /// Python tracebacks are told apart by their exception, and keep their innermost frames.
    #[test]
    fn python_tracebacks_keep_their_innermost_frames() {
        let mut log = String::new();
        for (i, exception) in ["KeyError: 'a'", "ValueError: bad", "KeyError: 'b'"]
            .iter()
            .enumerate()
        {
            for k in 0..30 {
                log.push_str(&format!("INFO step {k} of run {i}\n"));
            }
            log.push_str("Traceback (most recent call last):\n");
            for f in 0..100 {
                log.push_str(&format!(
                    "  File \"m{f}.py\", line {f}, in f{f}\n    g{f}()\n"
                ));
            }
            log.push_str(&format!("{exception}\n"));
        }
        log.push_str("INFO done\n");
        let out = compress(&log, 0, &Query::default(), ContentHash::of(log.as_bytes())).unwrap();
        assert!(out.text.contains("KeyError: 'a'\n"), "{}", out.text);
        assert!(out.text.contains("ValueError: bad\n"));
        assert!(!out.text.contains("KeyError: 'b'"));
        assert_eq!(
            out.text
                .matches("Traceback (most recent call last):")
                .count(),
            2
        );
        assert!(
            out.text
                .contains("Traceback (most recent call last): [+1 similar]")
        );
        // The innermost frame, not the outermost.
        assert!(
            out.text
                .contains("  File \"m99.py\", line 99, in f99\n    g99()\nValueError")
        );
        assert!(!out.text.contains("m0.py"));
    }

    /// Routine templates share a small budget, the most frequent first; every distinct
    /// error template keeps a verbatim line; lines naming the question's term stay.
    #[test]
    fn routine_templates_share_a_budget_errors_and_question_lines_stay() {
        let mut log = String::new();
        for i in 0..3_000 {
            // 30 routine templates of falling frequency.
            let t = (i * i) % 997 % 30;
            log.push_str(&format!(
                "Jun 14 15:16:{:02} host app[{i}]: routine event kind{t} value {i}\n",
                i % 60
            ));
            if i % 300 == 7 {
                let peer = [
                    "db", "cache", "auth", "queue", "mail", "dns", "ntp", "ldap", "sso", "cdn",
                ][i / 300];
                log.push_str(&format!(
                    "Jun 14 15:17:00 host app[{i}]: connection refused by {peer}\n"
                ));
            }
            if i == 1234 {
                log.push_str("Jun 14 15:18:00 host app[1234]: user alice42 logged in\n");
            }
        }
        let hash = ContentHash::of(log.as_bytes());
        let out = compress(&log, 2, &Query::new("What did alice42 do?"), hash).unwrap();
        for peer in [
            "db", "cache", "auth", "queue", "mail", "dns", "ntp", "ldap", "sso", "cdn",
        ] {
            assert!(
                out.text
                    .contains(&format!("connection refused by {peer}\n")),
                "{}",
                out.text
            );
        }
        assert!(out.text.contains("user alice42 logged in"));
        assert!(
            out.text.len() * 10 < log.len(),
            "{} of {}",
            out.text.len(),
            log.len()
        );
        assert!(out.kept.contains("error/warning lines"), "{}", out.kept);
    }

    #[test]
    fn short_logs_are_left_alone() {
        assert!(compress("a\nb\n", 2, &Query::default(), ContentHash::of(b"")).is_none());
    }
}
