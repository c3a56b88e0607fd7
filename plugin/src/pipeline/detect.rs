//! Content detection for one tool-output text: JSON (any value; objects holding arrays are the
//! common case), unified diffs, HTML, search results (`path:line:text`), build and application
//! logs, source code, plain text. Deterministic line heuristics, no model: each detector looks
//! at a bounded prefix of the text, so detection is linear and cheap.

use crate::json::{Document, Kind};

use super::byte_class::{ALPHANUMERIC, UNDERSCORE, class, find_upper};
use super::needle::{CaselessNeedle, Needle};

/// What a tool output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    /// A JSON object or array.
    Json,
    /// A unified diff (`git diff`, `diff -u`, combined diffs).
    Diff,
    /// An HTML document (not compressed: no extractor yet).
    Html,
    /// grep / ripgrep results.
    Search,
    /// Build, test or application logs.
    Log,
    /// Source code.
    Code,
    /// Anything else.
    Text,
}

impl ContentKind {
    /// A short label for manifests and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Diff => "diff",
            Self::Html => "html",
            Self::Search => "search",
            Self::Log => "log",
            Self::Code => "code",
            Self::Text => "text",
        }
    }
}

/// A detection result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The kind.
    pub kind: ContentKind,
    /// How sure the detector is, 0..=1.
    pub confidence: f64,
    /// The programming language, for [`ContentKind::Code`].
    pub language: Option<&'static str>,
}

impl Detection {
    fn new(kind: ContentKind, confidence: f64) -> Detection {
        Detection {
            kind,
            confidence: confidence.clamp(0.0, 1.0),
            language: None,
        }
    }
}

/// Detects the kind of `text`. JSON is recognised by a real parse (nested at most `max_depth`).
pub fn detect(text: &str, max_depth: u32) -> Detection {
    detect_parsed(text, max_depth, crate::json::DEFAULT_MAX_VALUES).detection
}

/// What [`detect_parsed`] found.
pub(crate) struct Parsed<'t> {
    /// The kind.
    pub detection: Detection,
    /// For JSON, the parsed `text.trim()` (so the compressor need not parse again).
    pub json: Option<Document<'t>>,
    /// The text is JSON with more than the allowed number of values, so it was detected as
    /// something else.
    pub too_many_values: bool,
}

/// [`detect`], with JSON holding at most `max_values` values.
pub(crate) fn detect_parsed(text: &str, max_depth: u32, max_values: usize) -> Parsed<'_> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Parsed {
            detection: Detection::new(ContentKind::Text, 0.0),
            json: None,
            too_many_values: false,
        };
    }
    match detect_json(trimmed, max_depth, max_values) {
        Ok((detection, doc)) => Parsed {
            detection,
            json: Some(doc),
            too_many_values: false,
        },
        Err(too_many_values) => Parsed {
            detection: detect_text(text),
            json: None,
            too_many_values,
        },
    }
}

/// Detection of a text that is not JSON.
fn detect_text(text: &str) -> Detection {
    let lines: Vec<&str> = super::lines::lines(text).take(500).collect();
    if let Some(confidence) = diff_confidence(&lines) {
        return Detection::new(ContentKind::Diff, confidence);
    }
    if let Some(confidence) = html_confidence(text) {
        return Detection::new(ContentKind::Html, confidence);
    }
    if let Some(confidence) = search_confidence(&lines) {
        return Detection::new(ContentKind::Search, confidence);
    }
    if let Some(confidence) = log_confidence(&lines) {
        return Detection::new(ContentKind::Log, confidence);
    }
    if let Some((language, confidence)) = code_language(&lines) {
        return Detection {
            language: Some(language),
            ..Detection::new(ContentKind::Code, confidence)
        };
    }
    Detection::new(ContentKind::Text, 0.5)
}

/// The JSON detection of `trimmed`; the error says whether it failed on the value limit.
fn detect_json(
    trimmed: &str,
    max_depth: u32,
    max_values: usize,
) -> Result<(Detection, Document<'_>), bool> {
    if !trimmed.starts_with(['{', '[']) {
        return Err(false);
    }
    let doc = Document::parse_str_bounded(trimmed, max_depth, max_values)
        .map_err(|e| e.kind == crate::json::ErrorKind::TooManyValues)?;
    let root = doc.root();
    let confidence = match root.kind() {
        Kind::Object => 1.0,
        Kind::Array => {
            let mut elements = root.elements().peekable();
            let all_objects =
                elements.peek().is_some() && elements.all(|v| v.kind() == Kind::Object);
            if all_objects { 1.0 } else { 0.8 }
        }
        _ => return Err(false),
    };
    Ok((Detection::new(ContentKind::Json, confidence), doc))
}

/// A hunk header `@@ -a[,b] +c[,d] @@` (two-way) or `@@@ ... @@@` (combined).
pub(crate) fn is_hunk_header(line: &str) -> bool {
    if line.starts_with("@@@ ") {
        return line.get(4..).is_some_and(|rest| rest.contains("@@@"));
    }
    parse_hunk_header(line).is_some()
}

/// The four numbers of a two-way hunk header: old start, old count, new start, new count.
pub(crate) fn parse_hunk_header(line: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |text: &str| -> Option<(u64, u64)> {
        match text.split_once(',') {
            Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
            None => Some((text.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

fn diff_confidence(lines: &[&str]) -> Option<f64> {
    let mut headers = 0u32;
    let mut changes = 0u32;
    for line in lines {
        if line.starts_with("diff --git ")
            || line.starts_with("diff --combined ")
            || line.starts_with("diff --cc ")
            || line.starts_with("--- a/")
            || line.starts_with("--- /dev/null")
            || is_hunk_header(line)
        {
            headers += 1;
        } else if (line.starts_with('+') && !line.starts_with("+++"))
            || (line.starts_with('-') && !line.starts_with("---"))
        {
            changes += 1;
        }
    }
    let confidence = (0.5 + 0.2 * f64::from(headers) + 0.05 * f64::from(changes)).min(1.0);
    (headers > 0 && confidence >= 0.7).then_some(confidence)
}

fn html_confidence(text: &str) -> Option<f64> {
    let head: String = text
        .chars()
        .take(3000)
        .collect::<String>()
        .to_ascii_lowercase();
    let doctype = head.contains("<!doctype html");
    let html = head.contains("<html");
    let structural = [
        "<head", "<body", "<div", "<nav", "<header", "<footer", "<main", "<article",
    ]
    .iter()
    .filter(|tag| head.contains(*tag))
    .count();
    if !doctype && !html && structural < 3 {
        return None;
    }
    let mut confidence = 0.0;
    if doctype {
        confidence += 0.5;
    }
    if html {
        confidence += 0.3;
    }
    confidence += (0.03 * structural as f64).min(0.3);
    (confidence >= 0.7).then_some(confidence)
}

/// Splits a search-result line `path:line:text` (or ripgrep's context form `path-line-text`)
/// into path, line number and text. A Windows drive letter (`C:\`) belongs to the path.
pub(crate) fn parse_search_line(line: &str) -> Option<(&str, u64, &str, bool)> {
    let skip = if line.len() > 2
        && line.as_bytes().get(1) == Some(&b':')
        && line.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && matches!(line.as_bytes().get(2), Some(b'\\' | b'/'))
    {
        2
    } else {
        0
    };
    let body = line.get(skip..)?;
    // The first `:digits:` (match) or `-digits-` (context) after a non-empty path.
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let sep = bytes.get(i).copied()?;
        if (sep == b':' || sep == b'-') && i > 0 {
            let digits = bytes
                .get(i + 1..)?
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 0 && bytes.get(i + 1 + digits) == Some(&sep) {
                let path = line.get(..skip + i)?;
                // A path names something: `20171223-22:15:29` is a timestamp, not a file.
                if path.contains(char::is_whitespace) || !path.contains(|c: char| c.is_alphabetic())
                {
                    return None;
                }
                let number = body.get(i + 1..i + 1 + digits)?.parse().ok()?;
                let text = body.get(i + 2 + digits..)?;
                return Some((path, number, text, sep == b':'));
            }
            if sep == b':' {
                return None;
            }
        }
        if sep.is_ascii_whitespace() {
            return None;
        }
        i += 1;
    }
    None
}

fn search_confidence(lines: &[&str]) -> Option<f64> {
    // `--` separates the groups of `grep -C` / `rg -C`; their context lines count with the
    // matches they surround.
    let sample = lines
        .iter()
        .take(100)
        .filter(|l| !l.trim().is_empty() && l.trim() != "--");
    let (mut total, mut matching, mut context) = (0u32, 0u32, 0u32);
    for line in sample {
        total += 1;
        match parse_search_line(line) {
            Some((_, _, _, true)) => matching += 1,
            Some((_, _, _, false)) => context += 1,
            None => {}
        }
    }
    if total == 0 || matching == 0 {
        return None;
    }
    let ratio = f64::from(matching + context) / f64::from(total);
    let confidence = 0.4 + 0.6 * ratio;
    (ratio >= 0.3 && confidence >= 0.6).then_some(confidence)
}

/// Severity words of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Trace, debug, info or no level.
    Other,
    /// A warning.
    Warn,
    /// An error, failure, fatal or panic.
    Error,
}

/// ASCII letters, digits and `_`: the bytes of a word [`line_level`] looks at, by their
/// [`class`] (this test runs on every byte of every log line).
fn is_word_byte(b: u8) -> bool {
    class(b) & (ALPHANUMERIC | UNDERSCORE) != 0
}

/// Upper-case level names a log line may hold as whole words.
const ERROR_LEVEL_WORDS: [&str; 9] = [
    "ERROR", "FATAL", "CRITICAL", "FAILED", "FAIL", "PANIC", "SEVERE", "EMERG", "ALERT",
];
const WARN_LEVEL_WORDS: [&str; 2] = ["WARN", "WARNING"];

// [`level_word`]'s filter relies on every level word being 4 to 8 bytes, upper case first.
// Indexing in a constant: evaluation fails the build, not a request.
#[allow(clippy::indexing_slicing)]
const _: () = {
    let mut i = 0;
    while i < ERROR_LEVEL_WORDS.len() + WARN_LEVEL_WORDS.len() {
        let word = if i < ERROR_LEVEL_WORDS.len() {
            ERROR_LEVEL_WORDS[i].as_bytes()
        } else {
            WARN_LEVEL_WORDS[i - ERROR_LEVEL_WORDS.len()].as_bytes()
        };
        assert!(word.len() >= 4 && word.len() <= 8 && word[0].is_ascii_uppercase());
        i += 1;
    }
};

/// The level a line's upper-case level words give (`Other` when none). Words are split on
/// bytes: a non-ASCII character is a separator either way, and this runs on every line of
/// every log. Only words of a level word's length that start with an upper-case letter are
/// compared, and those letters are found eight bytes at a time ([`find_upper`]).
fn level_word(line: &str) -> Level {
    let bytes = line.as_bytes();
    let mut level = Level::Other;
    let mut at = 0;
    while let Some(start) = find_upper(bytes, at) {
        // The word holding it, if it starts there.
        let length = bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(9)
            .take_while(|&&b| is_word_byte(b))
            .count();
        at = start + length.max(1);
        let starts_word = start
            .checked_sub(1)
            .and_then(|before| bytes.get(before))
            .is_none_or(|&b| !is_word_byte(b));
        if !starts_word || !(4..=8).contains(&length) {
            continue;
        }
        let word = bytes.get(start..start + length).unwrap_or_default();
        if ERROR_LEVEL_WORDS.iter().any(|e| e.as_bytes() == word) {
            return Level::Error;
        }
        if WARN_LEVEL_WORDS.iter().any(|w| w.as_bytes() == word) {
            level = Level::Warn;
        }
    }
    level
}

/// The level of a log line, from its words: uppercase level names anywhere, lowercase ones in
/// the common prefixed forms (`error:`, `[error]`, `level=error`), and failure words.
pub(crate) fn line_level(line: &str) -> Level {
    let mut level = level_word(line);
    if level == Level::Error {
        return level;
    }
    match logcat_level(line) {
        Some(b'E' | b'F' | b'A') => return Level::Error,
        Some(b'W') => level = Level::Warn,
        _ => {}
    }
    written_level(line, level)
}

/// The level of `line` given `level`, the one its upper-case words and logcat letter gave:
/// the error and warning forms written out (`error:`, `[warn]`, `level=error`, a panic, an
/// exception line, a deprecation), compared regardless of ASCII case without a lowercased
/// copy of the line.
fn written_level(line: &str, mut level: Level) -> Level {
    static ERROR_PREFIXES: [CaselessNeedle; 11] = [
        CaselessNeedle::new("error:"),
        CaselessNeedle::new("error["),
        CaselessNeedle::new("[error]"),
        CaselessNeedle::new("fatal:"),
        CaselessNeedle::new("panic:"),
        CaselessNeedle::new("npm err!"),
        CaselessNeedle::new("yarn error"),
        CaselessNeedle::new("e "),
        CaselessNeedle::new("traceback (most recent call last)"),
        CaselessNeedle::new("exception in thread"),
        CaselessNeedle::new("caused by:"),
    ];
    static CASELESS_PANICKED_AT: CaselessNeedle = CaselessNeedle::new(PANICKED_AT_TEXT);
    static WARNING: CaselessNeedle = CaselessNeedle::new("warning:");
    static WARN_BRACKET: CaselessNeedle = CaselessNeedle::new("[warn");
    static DEPRECAT: CaselessNeedle = CaselessNeedle::new("deprecat");
    let trimmed = line.trim_start();
    let level_key = level_key(trimmed);
    if ERROR_PREFIXES.iter().any(|p| p.starts(trimmed))
        || level_key == Some(Level::Error)
        || CASELESS_PANICKED_AT.is_in(trimmed)
        || is_exception_line(trimmed)
    {
        return Level::Error;
    }
    if level == Level::Other
        && (WARNING.starts(trimmed)
            || WARN_BRACKET.starts(trimmed)
            || level_key == Some(Level::Warn)
            || DEPRECAT.is_in(trimmed))
    {
        level = Level::Warn;
    }
    level
}

/// The level a `level` key of `line` names, regardless of ASCII case: `Error` for
/// `level=error` or `"level":"error"` anywhere, else `Warn` for `level=warn`, else `None`.
/// One search for `level` serves all three forms: each was a search of its own over every
/// line of every log, and `l` is common enough that each search stopped often.
fn level_key(line: &str) -> Option<Level> {
    static LEVEL: CaselessNeedle = CaselessNeedle::new("level");
    let bytes = line.as_bytes();
    let mut found = None;
    for at in LEVEL.starts_in(line) {
        let value = bytes.get(at + "level".len()..).unwrap_or_default();
        let is = |form: &[u8]| {
            value
                .get(..form.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(form))
        };
        let quoted = at > 0 && bytes.get(at - 1) == Some(&b'"');
        if is(b"=error") || (quoted && is(b"\":\"error\"")) {
            return Some(Level::Error);
        }
        if is(b"=warn") {
            found = Some(Level::Warn);
        }
    }
    found
}

/// The priority letter of an Android logcat line: `03-17 16:13:38.811  1702  2395 W Tag: ...`
/// (threadtime: a lone letter after the pid and tid) or `W/Tag( 123): ...` (brief).
fn logcat_level(line: &str) -> Option<u8> {
    let bytes = line.as_bytes();
    if bytes.get(1) == Some(&b'/') {
        return bytes.first().copied().filter(|b| b"VDIWEFA".contains(b));
    }
    let mut previous_numeric = false;
    for word in line.split_ascii_whitespace().take(6) {
        if previous_numeric && word.len() == 1 {
            return word.bytes().next().filter(|b| b"VDIWEFA".contains(b));
        }
        previous_numeric = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
    }
    None
}

/// A Rust panic (`thread 'main' panicked at src/main.rs:2:5`).
pub(crate) static PANICKED_AT: Needle = Needle::new(PANICKED_AT_TEXT);

/// The text of [`PANICKED_AT`], which [`line_level`] also looks for regardless of case.
const PANICKED_AT_TEXT: &str = "' panicked at";

/// `SomethingError: ...` / `java.lang.IllegalStateException: ...` / `FooException`.
pub(crate) fn is_exception_line(line: &str) -> bool {
    // What `split([':', ' ', '(']).next()` and `rsplit('.').next()` give, found by byte: std's
    // char-set splitter decoded every character of every log line (issue 18). All four are
    // ASCII, so the cuts are character boundaries.
    let head_end = line
        .bytes()
        .position(|b| matches!(b, b':' | b' ' | b'('))
        .unwrap_or(line.len());
    let head = line.get(..head_end).unwrap_or("");
    let name = head
        .bytes()
        .rposition(|b| b == b'.')
        .and_then(|dot| head.get(dot + 1..))
        .unwrap_or(head);
    name.len() > 5
        && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (name.ends_with("Error") || name.ends_with("Exception"))
        && (line.get(head.len()..).is_some_and(|r| r.starts_with(':')) || line.len() == head.len())
}

/// A stack-trace frame line: JVM/JS `at ...`, Python `File "...", line N`, Rust/Go frames.
pub(crate) fn is_stack_frame(line: &str) -> bool {
    static LINE: Needle = Needle::new("line ");
    static GO_FILE: Needle = Needle::new(".go:");
    static GO_OFFSET: Needle = Needle::new(" +0x");
    let trimmed = line.trim_start();
    let indented = trimmed.len() < line.len();
    (indented && trimmed.starts_with("at "))
        || (indented && trimmed.starts_with("File \"") && LINE.is_in(trimmed))
        || trimmed.starts_with("... ") && trimmed.ends_with(" more")
        || (indented
            && trimmed
                .split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
        || (indented && trimmed.starts_with("at /"))
        || trimmed.starts_with("goroutine ") && trimmed.ends_with(':')
        || (indented && GO_FILE.is_in(trimmed) && GO_OFFSET.is_in(trimmed))
}

fn starts_with_timestamp(line: &str) -> bool {
    let b = line.trim_start_matches('[').as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // 2024-01-31 / 2024/01/31 ...
    let date = (0..4).all(digit)
        && matches!(b.get(4), Some(b'-' | b'/'))
        && digit(5)
        && digit(6)
        && matches!(b.get(7), Some(b'-' | b'/'));
    // 12:34:56
    let time = digit(0)
        && digit(1)
        && b.get(2) == Some(&b':')
        && digit(3)
        && digit(4)
        && b.get(5) == Some(&b':');
    date || time
}

/// A clock time `HH:MM:SS` within the first 48 bytes: syslog (`Jun 14 15:16:01 host ...`),
/// Android (`03-17 16:13:38.811`), Apache (`[Sun Dec 04 04:47:44 2005]`), loghub's
/// `- 1131566461 2005.11.09 dn228 Nov 9 12:01:01` and `20171223-22:15:29:606|` forms.
fn has_clock_time_near_start(line: &str) -> bool {
    let b = line.as_bytes();
    let head = b.get(..b.len().min(48)).unwrap_or_default();
    head.windows(8).enumerate().any(|(i, w)| {
        let d = |k: usize| w.get(k).is_some_and(u8::is_ascii_digit);
        d(0) && d(1)
            && w.get(2) == Some(&b':')
            && d(3)
            && d(4)
            && w.get(5) == Some(&b':')
            && d(6)
            && d(7)
            && (i == 0 || !head.get(i - 1).is_some_and(u8::is_ascii_digit))
    })
}

/// A JSON-lines record or a logfmt line of a logger: `{"level":"info","msg":...}`,
/// `level=info msg="served" took=3ms`.
fn is_structured_log_line(trimmed: &str) -> bool {
    let json = trimmed.starts_with('{')
        && trimmed.ends_with('}')
        && [
            "\"level\"",
            "\"severity\"",
            "\"msg\"",
            "\"message\"",
            "\"lvl\"",
        ]
        .iter()
        .any(|key| trimmed.contains(key));
    let logfmt = ["level=", "lvl=", "msg=", "severity="]
        .iter()
        .any(|key| trimmed.starts_with(key) || trimmed.contains(&format!(" {key}")));
    json || logfmt
}

/// `test path::name ... ok` (cargo test), `tests/a.py::test_b PASSED [ 12%]` (pytest -v).
fn is_test_result_line(trimmed: &str) -> bool {
    (trimmed.starts_with("test ")
        && [" ... ok", " ... FAILED", " ... ignored"]
            .iter()
            .any(|end| trimmed.contains(end)))
        || (trimmed.contains("::")
            && [" PASSED", " FAILED", " SKIPPED", " XFAIL", " ERROR"]
                .iter()
                .any(|word| trimmed.contains(word)))
}

/// The frame of a compiler diagnostic: `--> src/a.rs:3:5`, ` |`, `12 |     code`, `= note:`.
pub(crate) fn is_diagnostic_frame(trimmed: &str) -> bool {
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    trimmed.starts_with("--> ")
        || trimmed == "|"
        || trimmed.starts_with("| ")
        || trimmed.starts_with("= note:")
        || trimmed.starts_with("= help:")
        || (digits > 0
            && trimmed
                .get(digits..)
                .is_some_and(|rest| rest.trim_start().starts_with('|')))
}

fn log_confidence(lines: &[&str]) -> Option<f64> {
    let sample: Vec<&&str> = lines.iter().take(200).collect();
    if sample.is_empty() {
        return None;
    }
    let (mut hits, mut errors) = (0u32, 0u32);
    for line in &sample {
        let level = line_level(line);
        let trimmed = line.trim_start();
        let words_hit = trimmed.split_whitespace().any(|w| {
            matches!(
                w.trim_matches(|c: char| !c.is_ascii_alphabetic()),
                "INFO"
                    | "DEBUG"
                    | "TRACE"
                    | "PASSED"
                    | "SKIPPED"
                    | "PASS"
                    | "OK"
                    | "Compiling"
                    | "Finished"
                    | "Running"
            )
        });
        let hit = level != Level::Other
            || words_hit
            || starts_with_timestamp(line)
            || has_clock_time_near_start(line)
            || is_test_result_line(trimmed)
            || is_diagnostic_frame(trimmed)
            || is_structured_log_line(trimmed)
            || trimmed.starts_with("===")
            || (trimmed.starts_with("---") && !trimmed.starts_with("--- a/"))
            || is_stack_frame(line);
        if hit {
            hits += 1;
        }
        if level == Level::Error {
            errors += 1;
        }
    }
    let ratio = f64::from(hits) / sample.len() as f64;
    let confidence = (0.3 + 0.5 * ratio + 0.05 * f64::from(errors.min(4))).min(1.0);
    (ratio >= 0.1 && confidence >= 0.5).then_some(confidence)
}

/// Per-language line signals: the language wins with the most matching lines (at least 3, and
/// at least a tenth of the non-empty lines).
fn code_language(lines: &[&str]) -> Option<(&'static str, f64)> {
    type Rule = fn(&str) -> bool;
    let languages: [(&str, Rule); 6] = [
        ("python", |l| {
            let t = l.trim_start();
            t.starts_with("def ")
                || t.starts_with("class ") && t.ends_with(':')
                || t.starts_with("import ") && !t.ends_with(';') && !t.contains(" from ")
                || t.starts_with("from ") && t.contains(" import ")
                || t.starts_with("async def ")
                || t.starts_with("@") && !t.contains(' ')
                || t.starts_with("return ") && !t.ends_with(';')
                || t.starts_with("\"\"\"")
                || (t.starts_with("if ") || t.starts_with("elif ") || t.starts_with("for "))
                    && t.ends_with(':')
        }),
        ("javascript", |l| {
            let t = l.trim_start();
            t.starts_with("const ")
                || t.starts_with("let ")
                || t.starts_with("var ")
                || t.starts_with("function ")
                || t.starts_with("export ")
                || t.starts_with("import ") && (t.contains(" from ") || t.ends_with(';'))
                || t.contains("module.exports")
                || t.contains("require(")
                || t.contains("=> {")
                || t.starts_with("async function")
        }),
        ("typescript", |l| {
            let t = l.trim_start().trim_start_matches("export ");
            t.starts_with("interface ")
                || t.starts_with("type ") && t.contains(" = ")
                || t.starts_with("enum ")
                || t.contains(": string")
                || t.contains(": number")
                || t.contains(": boolean")
                || t.contains("): ") && t.contains("function")
        }),
        ("go", |l| {
            let t = l.trim_start();
            t.starts_with("package ") && !t.ends_with(';')
                || t.starts_with("func ")
                || t.starts_with("import \"")
                || t.starts_with("import (")
                || t.starts_with("type ") && (t.contains(" struct") || t.contains(" interface"))
                || t.contains(" := ")
                || t.starts_with("defer ")
        }),
        ("rust", |l| {
            let t = l.trim_start();
            t.starts_with("fn ")
                || t.starts_with("pub ")
                || t.starts_with("impl ")
                || t.starts_with("impl<")
                || t.starts_with("use ") && t.ends_with(';')
                || t.starts_with("mod ")
                || t.starts_with("struct ")
                || t.starts_with("enum ") && t.ends_with('{')
                || t.starts_with("let mut ")
                || t.starts_with("#[")
                || t.starts_with("match ")
        }),
        ("java", |l| {
            let t = l.trim_start();
            t.starts_with("public ")
                || t.starts_with("private ")
                || t.starts_with("protected ")
                || t.starts_with("package ") && t.ends_with(';')
                || t.starts_with("import ")
                    && t.ends_with(';')
                    && !t.contains(" from ")
                    && !t.contains('\'')
                || t.starts_with("@Override")
                || t.contains("System.out.")
        }),
    ];
    let non_empty: Vec<&str> = lines
        .iter()
        .take(100)
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if non_empty.is_empty() {
        return None;
    }
    let mut best: Option<(&'static str, usize)> = None;
    for (name, rule) in languages {
        let hits = non_empty.iter().filter(|l| rule(l)).count();
        // Earlier languages win ties, except that TypeScript beats JavaScript on a tie because
        // its signals are specific.
        let better = match best {
            None => true,
            Some((best_name, best_hits)) => {
                hits > best_hits
                    || (hits == best_hits && name == "typescript" && best_name == "javascript")
            }
        };
        if better {
            best = Some((name, hits));
        }
    }
    let (name, hits) = best?;
    let ratio = hits as f64 / non_empty.len() as f64;
    if hits < 3 || ratio < 0.1 {
        return None;
    }
    Some((name, (0.5 + ratio).min(1.0)))
}

/// What [`written_level`] computed before it compared without a lowercased copy: the
/// reference it is property-tested against.
#[cfg(test)]
fn written_level_by_lowercasing(line: &str, mut level: Level) -> Level {
    let lower = line.trim_start().to_ascii_lowercase();
    let error_prefixes = [
        "error:",
        "error[",
        "[error]",
        "fatal:",
        "panic:",
        "npm err!",
        "yarn error",
        "e ",
        "traceback (most recent call last)",
        "exception in thread",
        "caused by:",
    ];
    static LEVEL_ERROR: Needle = Needle::new("level=error");
    static JSON_LEVEL_ERROR: Needle = Needle::new("\"level\":\"error\"");
    static LEVEL_WARN: Needle = Needle::new("level=warn");
    static DEPRECAT: Needle = Needle::new("deprecat");
    if error_prefixes.iter().any(|p| lower.starts_with(p))
        || LEVEL_ERROR.is_in(&lower)
        || JSON_LEVEL_ERROR.is_in(&lower)
        || PANICKED_AT.is_in(&lower)
        || is_exception_line(line.trim_start())
    {
        return Level::Error;
    }
    if level == Level::Other
        && (lower.starts_with("warning:")
            || lower.starts_with("[warn")
            || LEVEL_WARN.is_in(&lower)
            || DEPRECAT.is_in(&lower))
    {
        level = Level::Warn;
    }
    level
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn kind(text: &str) -> ContentKind {
        detect(text, 256).kind
    }

    proptest::proptest! {
        /// The exception test that finds the name by byte decides as the char splits did.
        #[test]
        fn exception_lines_are_what_the_char_splits_found(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "ValueError", "java.lang.", "IllegalStateException", "Error", "Exception",
                    "Foo", ":", " ", "(", ".", "_", "é", "x", "7", "Err", "a.b", "",
                ]),
                0..8,
            )
        ) {
            let line: String = parts.concat();
            let head = line.split([':', ' ', '(']).next().unwrap_or("");
            let name = head.rsplit('.').next().unwrap_or(head);
            let expected = name.len() > 5
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (name.ends_with("Error") || name.ends_with("Exception"))
                && (line.get(head.len()..).is_some_and(|r| r.starts_with(':'))
                    || line.len() == head.len());
            proptest::prop_assert_eq!(is_exception_line(&line), expected, "{:?}", line);
        }

        /// The level words found through the byte table and the length filter are the ones
        /// the plain word split finds.
        #[test]
        fn level_words_are_what_the_word_split_finds(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "ERROR", "error", "WARN", "WARNING", "ERRORS", "_", "FAIL", "FAILED", "fail",
                    "ALERT", "Alert", " ", ":", "é", "x", "7", "[", "CRITICAL", "CRITICALS", "-",
                    "\u{a0}", "EMERG", "W",
                ]),
                0..12,
            )
        ) {
            let line: String = parts.concat();
            let mut expected = Level::Other;
            for word in line
                .as_bytes()
                .split(|&b| !b.is_ascii_alphanumeric() && b != b'_')
                .filter(|w| !w.is_empty())
            {
                if ERROR_LEVEL_WORDS.iter().any(|e| e.as_bytes() == word) {
                    expected = Level::Error;
                    break;
                }
                if WARN_LEVEL_WORDS.iter().any(|w| w.as_bytes() == word) {
                    expected = Level::Warn;
                }
            }
            proptest::prop_assert_eq!(level_word(&line), expected, "{:?}", line);
        }

        /// Comparing regardless of case gives the level lowercasing the line gave: prefixes,
        /// logfmt and JSON levels, panics and deprecations in any case, after indentation.
        #[test]
        fn levels_are_what_lowercasing_the_line_gave(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "Error:", "ERROR[", "[Error]", "Fatal:", "PANIC:", "npm ERR!", "Yarn Error",
                    "E ", "e ", "Traceback (most recent call last)", "Exception in thread",
                    "Caused By:", "Level=Error", "level=warn", "LEVEL=WARN", "\"Level\":\"ERROR\"",
                    "thread 'main' Panicked at", "Deprecated", "DEPRECATION", "Warning:", "[WARN]",
                    "[warning]", "ValueError:", "  ", "\t", " ", "x", "é", "É", "7", ":", "'",
                    "\"", "=", "level", "info", "INFO", "=ERROR", "=Warn", "\":\"error\"",
                    "\":\"Warn\"", "LeVeL", "levell",
                ]),
                0..8,
            )
        ) {
            let line: String = parts.concat();
            for level in [Level::Other, Level::Warn, Level::Error] {
                proptest::prop_assert_eq!(
                    written_level(&line, level),
                    written_level_by_lowercasing(&line, level),
                    "{:?} {:?}", line, level
                );
            }
        }
    }

    #[test]
    fn detects_each_kind() {
        assert_eq!(kind(r#"{"results":[{"id":1}]}"#), ContentKind::Json);
        assert_eq!(kind(" [1,2] "), ContentKind::Json);
        assert_eq!(kind("\"just a string\""), ContentKind::Text);
        assert_eq!(kind("{not json"), ContentKind::Text);
        assert_eq!(
            kind("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n"),
            ContentKind::Diff
        );
        assert_eq!(
            kind("src/a.rs:12:fn main() {\nsrc/b.rs:3:use x;\nC:\\w\\c.rs:9:let y;\n"),
            ContentKind::Search
        );
        assert_eq!(
            kind("2024-01-01T00:00:00Z INFO start\n2024-01-01T00:00:01Z ERROR boom\n"),
            ContentKind::Log
        );
        assert_eq!(
            kind("use std::io;\n\npub fn main() {\n    let mut x = 1;\n}\nimpl Foo {}\n"),
            ContentKind::Code
        );
        assert_eq!(kind("Some plain prose, nothing else."), ContentKind::Text);
        assert_eq!(kind("   "), ContentKind::Text);
    }

    /// Issue 15: real log formats (one line of each loghub sample kind, repeated) are logs;
    /// a `path-line-text` context form of `rg -C` is search; a timestamp is not a path.
    #[test]
    fn real_formats() {
        let many = |line: &str| format!("{line}\n").repeat(30);
        for line in [
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
            "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
            "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/w.properties",
            "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: (root) CMD",
            "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
            "test pipeline::log::tests::short_logs_are_left_alone ... ok",
            r#"{"level":"info","msg":"served request","path":"/api/items"}"#,
            r#"level=info msg="served request" path=/api/items took=3ms"#,
        ] {
            assert_eq!(kind(&many(line)), ContentKind::Log, "{line}");
        }
        let rg = "src/a.py-10-    try:\nsrc/a.py:11:        raise ValueError(x)\nsrc/a.py-12-    except:\n--\n";
        assert_eq!(kind(&rg.repeat(10)), ContentKind::Search);
        assert_eq!(parse_search_line("20171223-22:15:29:606|Step"), None);
        assert_eq!(
            line_level("03-17 16:13:46.654  1702 10454 W ActivityManager: Sending broadcast"),
            Level::Warn
        );
        assert_eq!(line_level("E/AndroidRuntime( 123): FATAL"), Level::Error);
        assert_eq!(line_level("took 5 s to finish"), Level::Other);
    }

    #[test]
    fn parses_search_lines() {
        assert_eq!(
            parse_search_line("src/a-b.rs:12:x: y"),
            Some(("src/a-b.rs", 12, "x: y", true))
        );
        assert_eq!(
            parse_search_line("src/a.rs-13-ctx"),
            Some(("src/a.rs", 13, "ctx", false))
        );
        assert_eq!(
            parse_search_line("C:\\src\\a.rs:7:z"),
            Some(("C:\\src\\a.rs", 7, "z", true))
        );
        assert_eq!(parse_search_line("no match here"), None);
        assert_eq!(parse_search_line("key: value"), None);
    }

    #[test]
    fn levels_and_frames() {
        assert_eq!(line_level("2024 ERROR x"), Level::Error);
        assert_eq!(line_level("error[E0308]: mismatched types"), Level::Error);
        assert_eq!(line_level("ValueError: bad"), Level::Error);
        assert_eq!(line_level("WARN slow"), Level::Warn);
        assert_eq!(line_level("INFO fine, no errors"), Level::Other);
        assert!(is_stack_frame("    at com.x.Y.z(Y.java:10)"));
        assert!(is_stack_frame("  File \"a.py\", line 3, in f"));
        assert!(!is_stack_frame("at the end"));
    }

    /// Upstream's content_detector fixtures: the kind must match (upstream `json_array` is our
    /// `json`, `build` our `log`, `search`/`source_code` our `search`/`code`), and the language
    /// for code. Differences, each deliberate:
    ///
    /// | input | upstream | ours | why |
    /// |---|---|---|---|
    /// | `{"foo": "bar"}` | text | json | upstream detects JSON only when it starts with `[` (bug B3) |
    #[test]
    fn upstream_content_detector_fixtures() {
        let Some(dir) = super::super::fixtures::dir("content_detector") else {
            return;
        };
        let known_differences = [(r#"{"foo": "bar"}"#, "json")];
        let (mut matched, mut differ, mut total) = (0, 0, 0);
        for (name, case) in super::super::fixtures::load(&dir) {
            let text = case["input"].as_str().unwrap();
            let expected = case["output"]["content_type"].as_str().unwrap();
            let ours = detect(text, 256);
            let mapped = match ours.kind {
                ContentKind::Json => "json_array",
                ContentKind::Log => "build",
                ContentKind::Code => "source_code",
                other => other.as_str(),
            };
            total += 1;
            if let Some((_, ours_expected)) = known_differences.iter().find(|(t, _)| *t == text) {
                assert_eq!(ours.kind.as_str(), *ours_expected, "{name}");
                differ += 1;
                continue;
            }
            assert_eq!(mapped, expected, "{name}: {text:?}");
            if let Some(language) = case["output"]["metadata"]["language"].as_str() {
                assert_eq!(ours.language, Some(language), "{name}");
            }
            matched += 1;
        }
        println!("content_detector fixtures: {matched}/{total} match, {differ} listed differences");
        assert_eq!(matched + differ, total);
    }
}
