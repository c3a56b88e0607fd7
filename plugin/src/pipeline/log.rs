//! Log compressor for build, test and application logs. Keeps every error, warning,
//! exception and stack-trace line, summary lines, the first and last line and a few lines of
//! context around errors; every other line is reduced to its template (numbers, hex ids,
//! quoted strings and timestamps masked): the first line of each template stays, annotated
//! with how many similar lines followed, and the rest are left out under one marker.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use super::detect::{Level, is_exception_line, is_stack_frame, line_level};
use super::hash::ContentHash;
use super::marker::{Marker, count_of};
use super::text::strip_ansi;

/// Logs with fewer lines than this are not reduced.
pub const MIN_LINES: usize = 20;

/// The result of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedLog {
    /// The new text.
    pub text: String,
    /// Lines left out.
    pub omitted: usize,
}

/// Compresses a log; `None` when nothing would be left out.
pub fn compress(text: &str, context: usize, hash: ContentHash) -> Option<CompressedLog> {
    let clean = strip_ansi(text);
    let lines: Vec<&str> = clean.lines().collect();
    let n = lines.len();
    if n < MIN_LINES {
        return None;
    }
    let mut keep = vec![false; n];
    let important = important_lines(&lines);
    // Lines before `marked` are already decided: each line is marked at most once, so a large
    // `context` costs nothing per important line (linear in the lines).
    let mut marked = 0usize;
    for (i, &level) in important.iter().enumerate() {
        if level {
            let errorish = line_level(lines.get(i).copied().unwrap_or("")) == Level::Error
                || is_stack_frame(lines.get(i).copied().unwrap_or(""));
            let radius = if errorish { context } else { 0 };
            let end = i.saturating_add(radius).min(n - 1);
            for slot in keep
                .get_mut(i.saturating_sub(radius).max(marked)..=end)
                .unwrap_or_default()
            {
                *slot = true;
            }
            marked = marked.max(end + 1);
        }
    }
    if let Some(first) = keep.first_mut() {
        *first = true;
    }
    if let Some(last) = keep.last_mut() {
        *last = true;
    }
    // Every other line: the first of its template stays, annotated with its repeats.
    // Only looked up, never iterated: a hash map with fixed keys (templates share long
    // prefixes, which makes ordered comparisons slow).
    let mut first_of: HashMap<String, usize, BuildHasherDefault<DefaultHasher>> =
        HashMap::default();
    let mut repeats = vec![0usize; n];
    for (i, line) in lines.iter().enumerate() {
        if keep.get(i) == Some(&true) {
            continue;
        }
        let template = template(line);
        match first_of.get(&template) {
            Some(&first) => {
                if let Some(count) = repeats.get_mut(first) {
                    *count += 1;
                }
            }
            None => {
                first_of.insert(template, i);
                if let Some(slot) = keep.get_mut(i) {
                    *slot = true;
                }
            }
        }
    }
    let omitted = keep.iter().filter(|k| !**k).count();
    if omitted == 0 {
        return None;
    }
    let mut out = String::with_capacity(text.len() / 4);
    for (i, line) in lines.iter().enumerate() {
        if keep.get(i) != Some(&true) {
            continue;
        }
        out.push_str(line);
        match repeats.get(i).copied().unwrap_or(0) {
            0 => {}
            count => out.push_str(&format!(" [+{count} similar]")),
        }
        out.push('\n');
    }
    out.push_str(&Marker::new(hash, count_of(omitted, n, "lines")).render());
    if text.ends_with('\n') {
        out.push('\n');
    }
    Some(CompressedLog { text: out, omitted })
}

/// Lines that are always kept: errors, warnings, stack traces (with their header and
/// exception line), and summaries.
fn important_lines(lines: &[&str]) -> Vec<bool> {
    let mut important = vec![false; lines.len()];
    let mut in_trace = false;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indented = trimmed.len() < line.len();
        let starts_trace = trimmed.starts_with("Traceback (most recent call last)")
            || trimmed.starts_with("Exception in thread")
            || trimmed.starts_with("Caused by:")
            || trimmed.contains("' panicked at")
            || trimmed.starts_with("stack backtrace:")
            || trimmed.starts_with("goroutine ")
            || is_exception_line(trimmed);
        if starts_trace {
            in_trace = true;
        } else if in_trace && !(indented || is_stack_frame(line) || trimmed.starts_with("...")) {
            // A Python traceback ends with its unindented exception line.
            in_trace = is_exception_line(trimmed);
            if is_exception_line(trimmed) {
                if let Some(slot) = important.get_mut(i) {
                    *slot = true;
                }
                in_trace = false;
                continue;
            }
        }
        let keep = in_trace
            || is_stack_frame(line)
            || line_level(line) != Level::Other
            || is_summary(trimmed);
        if let Some(slot) = important.get_mut(i) {
            *slot = keep;
        }
    }
    important
}

/// Test and build summaries: `=== 3 failed, 10 passed ===`, `test result:`, `Tests: ...`.
fn is_summary(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    (line.starts_with("===") && line.len() > 6 && !line.trim_matches('=').trim().is_empty())
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

/// A line with its variable parts masked: digit runs become `0`, hex runs of 6+ and quoted
/// strings are collapsed, so `req 123 took 45ms` and `req 124 took 51ms` share a template.
pub fn template(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '"' || c == '\'' {
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
            let has_digit = word.chars().any(|c| c.is_ascii_digit());
            if word.len() >= 6 && has_digit && word.chars().all(|c| c.is_ascii_hexdigit()) {
                out.push('#');
            } else if has_digit {
                // Mask each digit run: `took45ms` and `took7ms` share `took0ms`.
                let mut in_digits = false;
                for ch in word.chars() {
                    if ch.is_ascii_digit() {
                        if !in_digits {
                            out.push('0');
                        }
                        in_digits = true;
                    } else {
                        out.push(ch);
                        in_digits = false;
                    }
                }
            } else {
                out.push_str(word);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        let out = compress(&log, 2, ContentHash::of(log.as_bytes())).unwrap();
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

    #[test]
    fn templates_mask_variable_parts() {
        assert_eq!(template("req 123 took 45ms"), template("req 9 took 7ms"));
        assert_eq!(template("id deadbeef01 ok"), template("id 0badc0de99 ok"));
        assert_ne!(template("GET /a"), template("POST /a"));
    }

    /// A context as large as the log marks each line once, and keeps what a context of the
    /// log's length keeps.
    #[test]
    fn any_context_is_linear() {
        let mut log = String::new();
        for i in 0..2_000 {
            let level = if i % 3 == 0 { "ERROR" } else { "INFO" };
            log.push_str(&format!("2024-05-01 {level} step {i} done\n"));
        }
        log.push_str("INFO request 1 ok\nINFO request 2 ok\nINFO request 3 ok\n");
        let hash = ContentHash::of(log.as_bytes());
        assert_eq!(compress(&log, usize::MAX, hash), None);
        let narrow = compress(&log, 0, hash).unwrap();
        assert!(narrow.omitted > 1_000);
    }

    #[test]
    fn short_logs_are_left_alone() {
        assert!(compress("a\nb\n", 2, ContentHash::of(b"")).is_none());
    }
}
