//! Waste signals: how many tokens of the tool outputs a request adds to the conversation are
//! spent on things a model does not need — markup, encoded blobs, padding, repeats, and
//! outputs the agent fetched again. The figures describe what clients send (whether or not
//! the pipeline could remove it) and feed `headroom_waste_signal_tokens_total{signal}` and
//! `/stats.waste_signals`.
//!
//! Only *new* tool outputs are examined: those after the conversation's last model turn. An
//! agent resends its whole history on every turn, so examining every output would count the
//! same waste once per turn; this way each output is counted once, on the request that first
//! carries it, without keeping state between requests. Signals overlap (an indented JSON
//! document counts as JSON bloat and as whitespace), so they are not summed.

use std::collections::BTreeMap;

use super::fixed_hash::StrMap;

use crate::tokens::Tokenizer;

/// One kind of waste, named as upstream Headroom names it. Declared in [`WasteSignal::ALL`]
/// order: the discriminant indexes [`WasteTokens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WasteSignal {
    /// A JSON document (the whole output, or the object in it) of more than
    /// [`JSON_BLOAT_MIN_TOKENS`] tokens: all of its tokens.
    JsonBloat,
    /// HTML/XML tags (`<div class="x">`, `</p>`, `<!DOCTYPE html>`) and comments.
    HtmlNoise,
    /// Runs of 50+ base64 characters holding upper- and lower-case letters and digits.
    Base64,
    /// Tokens that collapsing runs of 4+ spaces/tabs to one space and of 3+ newlines to one
    /// newline would save.
    Whitespace,
    /// Lines of at least [`REPEATED_LINE_MIN_BYTES`] bytes that occur again in the same
    /// output: the tokens of every copy after the first.
    Repetition,
    /// A new output identical to one served earlier in the conversation (more than
    /// [`REREAD_MIN_GAP`] messages before, and at least [`REREAD_MIN_TOKENS`] tokens).
    Reread,
    /// The part of [`WasteSignal::Reread`] whose earlier copy this request forwards
    /// compressed with a marker: the model may have fetched it again because of compression.
    RereadCompressed,
}

impl WasteSignal {
    /// Every signal, in the order `/stats` lists them.
    pub const ALL: [WasteSignal; 7] = [
        Self::JsonBloat,
        Self::HtmlNoise,
        Self::Base64,
        Self::Whitespace,
        Self::Repetition,
        Self::Reread,
        Self::RereadCompressed,
    ];

    /// The name: a `/stats` key and the `signal` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonBloat => "json_bloat",
            Self::HtmlNoise => "html_noise",
            Self::Base64 => "base64",
            Self::Whitespace => "whitespace",
            Self::Repetition => "repetition",
            Self::Reread => "reread",
            Self::RereadCompressed => "reread_compressed",
        }
    }
}

/// A JSON object counts as bloat above this many tokens (upstream's threshold).
pub const JSON_BLOAT_MIN_TOKENS: u64 = 500;
/// Base64 runs shorter than this are not counted.
pub const BASE64_MIN_BYTES: usize = 50;
/// Shorter lines (`}`, `---`, `"ok": true,`) repeat legitimately and are not counted.
pub const REPEATED_LINE_MIN_BYTES: usize = 16;
/// Outputs this small legitimately repeat (`ok`, exit codes) and are not re-reads.
pub const REREAD_MIN_TOKENS: u64 = 50;
/// Repeats at most this many messages after the previous copy are polling, not re-reads
/// (upstream's rule: consecutive tool turns are two apart).
pub const REREAD_MIN_GAP: usize = 3;

/// Tokens per signal, in [`WasteSignal::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WasteTokens([u64; WasteSignal::ALL.len()]);

impl WasteTokens {
    /// The tokens of `signal`.
    pub fn get(&self, signal: WasteSignal) -> u64 {
        self.0.get(signal as usize).copied().unwrap_or(0)
    }

    /// Adds `tokens` to `signal`.
    pub fn add(&mut self, signal: WasteSignal, tokens: u64) {
        if let Some(slot) = self.0.get_mut(signal as usize) {
            *slot = slot.saturating_add(tokens);
        }
    }

    /// Adds every signal of `other`.
    pub fn merge(&mut self, other: &WasteTokens) {
        for signal in WasteSignal::ALL {
            self.add(signal, other.get(signal));
        }
    }

    /// Each signal with its tokens, in [`WasteSignal::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (WasteSignal, u64)> + '_ {
        WasteSignal::ALL.into_iter().map(|s| (s, self.get(s)))
    }

    /// Whether no signal fired.
    pub fn is_empty(&self) -> bool {
        self.iter().all(|(_, tokens)| tokens == 0)
    }

    /// The stored form (a store entry): `W` and each signal's tokens as u64 little-endian, in
    /// [`WasteSignal::ALL`] order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 * self.0.len());
        out.push(b'W');
        for tokens in self.0 {
            out.extend_from_slice(&tokens.to_le_bytes());
        }
        out
    }

    /// Parses [`WasteTokens::encode`]'s form; anything else is `None` (treated as absent).
    pub fn decode(bytes: &[u8]) -> Option<WasteTokens> {
        let (b'W', rest) = bytes.split_first()? else {
            return None;
        };
        if rest.len() != 8 * WasteSignal::ALL.len() {
            return None;
        }
        let mut out = WasteTokens::default();
        for (slot, chunk) in out.0.iter_mut().zip(rest.chunks_exact(8)) {
            *slot = u64::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(out)
    }
}

/// The content signals of one tool output (everything but the re-reads, which compare
/// outputs). What the pipeline already knows is not worked out again: `known_tokens` is the
/// output's token count, `parsed_json` says its detection parsed it as a JSON object or array.
pub fn content_signals(
    text: &str,
    tokenizer: Tokenizer,
    known_tokens: Option<u64>,
    parsed_json: bool,
) -> WasteTokens {
    let mut out = WasteTokens::default();
    let json = if parsed_json {
        Some((text.trim(), true))
    } else {
        json_span(text)
    };
    if let Some((span, whole)) = json {
        // Most JSON outputs are one document: its count is the output's (give or take the
        // whitespace around it).
        let tokens = known_tokens
            .filter(|_| whole)
            .unwrap_or_else(|| count(tokenizer, span));
        if tokens > JSON_BLOAT_MIN_TOKENS {
            out.add(WasteSignal::JsonBloat, tokens);
        }
    }
    let tags = html_spans(text).concat();
    if !tags.is_empty() {
        out.add(WasteSignal::HtmlNoise, count(tokenizer, &tags));
    }
    let scan = ByteScan::of(text);
    let blobs = scan.base64.concat();
    if !blobs.is_empty() {
        out.add(WasteSignal::Base64, count(tokenizer, &blobs));
    }
    out.add(
        WasteSignal::Whitespace,
        whitespace_tokens(&scan.whitespace, tokenizer),
    );
    out.add(
        WasteSignal::Repetition,
        repeated_line_tokens(scan.lines, tokenizer),
    );
    out
}

fn count(tokenizer: Tokenizer, text: &str) -> u64 {
    tokenizer.count(text).tokens
}

/// A count with the tokenizer's encoding, not yet scaled (see [`Tokenizer::scale`]).
fn base_count(tokenizer: Tokenizer, text: &str) -> u64 {
    u64::try_from(tokenizer.encoding().count(text)).unwrap_or(u64::MAX)
}

/// What collapsing each run would save, as the tokenizers split text: a run of spaces or
/// tabs before a word leaves its last character to the word (`"    id"` is `"   "` and
/// `" id"`), so the rest of the run is what goes; any other run becomes one token. Runs
/// repeat (indentation), so each distinct run is counted once.
fn whitespace_tokens(runs: &[(&str, bool)], tokenizer: Tokenizer) -> u64 {
    let mut memo: BTreeMap<(&str, bool), u64> = BTreeMap::new();
    let mut total = 0u64;
    for &(run, before_word) in runs {
        let saved = *memo.entry((run, before_word)).or_insert_with(|| {
            if before_word {
                let kept = run.len().saturating_sub(1);
                base_count(tokenizer, run.get(..kept).unwrap_or_default())
            } else {
                base_count(tokenizer, run).saturating_sub(1)
            }
        });
        total = total.saturating_add(saved);
    }
    tokenizer.scale(total)
}

/// What one pass over an output's bytes finds for the whitespace, base64 and repetition
/// signals. One pass, not three: on a cold request these walks were a sixth of the pipeline's
/// time (issue 18), most of it spent deciding what each byte is, once per walk.
#[derive(Debug, Default)]
struct ByteScan<'a> {
    /// Runs of 4+ spaces/tabs and of 3+ newlines, each with whether a space/tab run is
    /// followed by a non-whitespace character.
    whitespace: Vec<(&'a str, bool)>,
    /// Maximal runs of `[A-Za-z0-9+/]` of at least [`BASE64_MIN_BYTES`] with up to two `=`
    /// after them, that mix upper case, lower case and digits (so paths, words and hex digests
    /// are not taken for encoded data).
    base64: Vec<&'a str>,
    /// Each line (split at `\n`, trimmed) of at least [`REPEATED_LINE_MIN_BYTES`] bytes, with
    /// its number of copies. Hashed with fixed keys: many lines share long prefixes
    /// (`"status": "…`), which makes ordered comparisons slow; the signal's sum does not depend
    /// on iteration order. Each line's hash is kept, so growing the table never hashes a line
    /// again (SipHash over every line at each growth was a third of the table's cost).
    lines: StrMap<&'a str, u64>,
}

/// Byte classes of [`ByteScan`]: a space or tab, a newline, and the base64 alphabet by kind.
const SPACE: u8 = 1;
const NEWLINE: u8 = 2;
const UPPER: u8 = 4;
const LOWER: u8 = 8;
const DIGIT: u8 = 16;
const SYMBOL: u8 = 32;
const BASE64: u8 = UPPER | LOWER | DIGIT | SYMBOL;
const MIXED: u8 = UPPER | LOWER | DIGIT;

/// Each byte's class, built at compile time; 0 for every other byte (non-ASCII included).
// Indexing in a constant: evaluation fails the build, not a request, if it ever could not.
#[allow(clippy::indexing_slicing)]
const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b' ' | b'\t' => SPACE,
            b'\n' => NEWLINE,
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'0'..=b'9' => DIGIT,
            b'+' | b'/' => SYMBOL,
            _ => 0,
        };
        b += 1;
    }
    table
};

fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// The `=` padding (at most two) at `end` of a base64 run.
fn base64_padding(bytes: &[u8], end: usize) -> usize {
    bytes
        .get(end..)
        .unwrap_or_default()
        .iter()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count()
}

impl<'a> ByteScan<'a> {
    /// Scans `text` once. Every run found is ASCII, so its ends are character boundaries.
    fn of(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut out = ByteScan::default();
        let mut line_start = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let kind = class(b);
            if kind == 0 {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            if kind & BASE64 != 0 {
                let mut seen = kind;
                while let Some(kind) = bytes.get(i).map(|&b| class(b)) {
                    if kind & BASE64 == 0 {
                        break;
                    }
                    seen |= kind;
                    i += 1;
                }
                if i - start >= BASE64_MIN_BYTES && seen & MIXED == MIXED {
                    out.base64
                        .extend(text.get(start..i + base64_padding(bytes, i)));
                }
                continue;
            }
            // A run of spaces and tabs, or of newlines.
            while bytes.get(i).is_some_and(|&b| class(b) == kind) {
                i += 1;
            }
            if kind == NEWLINE {
                // The first newline ends a line; the others end empty ones.
                out.line(text.get(line_start..start));
                line_start = i;
                if i - start >= 3 {
                    out.whitespace
                        .extend(text.get(start..i).map(|run| (run, false)));
                }
            } else if i - start >= 4 {
                let before_word = bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace());
                out.whitespace
                    .extend(text.get(start..i).map(|run| (run, before_word)));
            }
        }
        out.line(text.get(line_start..));
        out
    }

    fn line(&mut self, line: Option<&'a str>) {
        let line = super::lines::trim(line.unwrap_or_default());
        if line.len() >= REPEATED_LINE_MIN_BYTES {
            *self.lines.or_insert(line, 0) += 1;
        }
    }
}

/// The JSON in `text` and whether it is the whole output: the text (trimmed) when it is a
/// JSON object or array, otherwise the span from the first `{` to the last `}` (upstream's
/// `\{[\s\S]{500,}\}`) when at least 500 bytes lie between and it parses: code and prose
/// with braces are not JSON.
fn json_span(text: &str) -> Option<(&str, bool)> {
    let parses = |span: &str| {
        crate::json::Document::parse(span.as_bytes(), crate::json::DEFAULT_MAX_DEPTH).is_ok()
    };
    let trimmed = text.trim();
    if trimmed.len() > 500 && trimmed.starts_with(['{', '[']) && parses(trimmed) {
        return Some((trimmed, true));
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    if end < start + 501 {
        return None;
    }
    text.get(start..=end)
        .filter(|span| parses(span))
        .map(|span| (span, false))
}

/// Tags (`<` then a letter, `/`, `!` or `?`, up to the next `>`, no `<` inside) and comments
/// (`<!--` to `-->`). A `<` between operands (`a < b`) is not a tag, nor is a `<` and a
/// letter right after a name (`Vec<String>`, `List<int>`); closing tags (`Price</p>`) are.
///
/// Linear: every byte is looked at a bounded number of times. A search for `-->` that fails
/// is remembered, since no later comment can be closed either (otherwise `"<!--" × n` would
/// rescan the rest of the text once per opener).
fn html_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut rest = text;
    let mut no_close_after_here = false;
    // Found with the `memchr` crate (simd128 in the guest): `str::find` searches with core's
    // word-at-a-time loop, and in the guest each of its steps pays a call-limit check, over
    // the whole of an output that holds no tag at all.
    while let Some(open) = memchr::memchr(b'<', rest.as_bytes()) {
        let Some(tail) = rest.get(open..) else { break };
        if tail.starts_with("<!--") {
            // An unclosed comment is not one; tags after it still count.
            let close = if no_close_after_here {
                None
            } else {
                // From the opener's dashes on: `<!-->` is a (closed) comment.
                tail.get(2..).and_then(|body| body.find("-->"))
            };
            no_close_after_here = close.is_none();
            let end = close.map_or(4, |close| close + 5);
            if end > 4 {
                spans.extend(tail.get(..end));
            }
            rest = tail.get(end..).unwrap_or_default();
            continue;
        }
        let consumed = text.len() - tail.len();
        let after_name = consumed > 0
            && text
                .as_bytes()
                .get(consumed - 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':'));
        let starts_tag = tail.as_bytes().get(1).is_some_and(|b| {
            (b.is_ascii_alphabetic() && !after_name) || matches!(b, b'/' | b'!' | b'?')
        });
        let close = tail
            .get(1..)
            .and_then(|t| memchr::memchr2(b'<', b'>', t.as_bytes()));
        match close {
            Some(at) if starts_tag && tail.as_bytes().get(at + 1) == Some(&b'>') => {
                spans.extend(tail.get(..at + 2));
                rest = tail.get(at + 2..).unwrap_or_default();
            }
            _ => rest = tail.get(1..).unwrap_or_default(),
        }
    }
    spans
}

/// Tokens of every copy after the first of each line in `lines` (copies per line).
fn repeated_line_tokens(lines: StrMap<&str, u64>, tokenizer: Tokenizer) -> u64 {
    let base: u64 = lines
        .iter()
        .filter(|&(_, &copies)| copies > 1)
        .map(|(line, &copies)| base_count(tokenizer, line).saturating_mul(copies - 1))
        .sum();
    tokenizer.scale(base)
}

/// Finds re-reads among the tool outputs of one request, fed in document order.
#[derive(Debug, Default)]
pub struct RereadTracker {
    /// Per content hash: the position of the latest copy, and whether the first copy is
    /// forwarded with a marker.
    seen: BTreeMap<[u8; 8], (usize, bool)>,
}

impl RereadTracker {
    /// Records one output at message `position` with content hash `hash`, forwarded as
    /// `sent` (`None` when unchanged). For a new output (`fresh`) that repeats an earlier
    /// one far enough back, returns the signals it adds; `tokens` counts the output and is
    /// only called then.
    pub fn observe(
        &mut self,
        hash: [u8; 8],
        position: usize,
        fresh: bool,
        sent_with_marker: bool,
        tokens: impl FnOnce() -> u64,
    ) -> WasteTokens {
        let mut out = WasteTokens::default();
        let Some((previous, first_marked)) = self.seen.get_mut(&hash) else {
            self.seen.insert(hash, (position, sent_with_marker));
            return out;
        };
        let gap = position.saturating_sub(*previous);
        *previous = position;
        if !fresh || gap == 0 || gap <= REREAD_MIN_GAP {
            return out;
        }
        let tokens = tokens();
        if tokens >= REREAD_MIN_TOKENS {
            out.add(WasteSignal::Reread, tokens);
            if *first_marked {
                out.add(WasteSignal::RereadCompressed, tokens);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::super::fixed_hash::FixedMap;
    use super::*;

    #[test]
    fn waste_tokens_round_trip_as_store_entries() {
        let mut tokens = WasteTokens::default();
        tokens.add(WasteSignal::Whitespace, 7);
        tokens.add(WasteSignal::RereadCompressed, u64::MAX);
        assert_eq!(WasteTokens::decode(&tokens.encode()), Some(tokens));
        assert_eq!(WasteTokens::decode(b"W"), None);
        assert_eq!(WasteTokens::decode(b"U"), None);
        assert_eq!(WasteTokens::decode(&[]), None);
    }
    use crate::tokens::Encoding;

    const O200K: Tokenizer = Tokenizer::OpenAi(Encoding::O200kBase);

    fn tokens(text: &str) -> u64 {
        O200K.count(text).tokens
    }

    fn only(signal: WasteSignal, found: &WasteTokens) -> u64 {
        for (other, n) in found.iter() {
            if other != signal {
                assert_eq!(n, 0, "{} fired: {found:?}", other.as_str());
            }
        }
        found.get(signal)
    }

    #[test]
    fn every_signal_has_its_own_slot() {
        let mut tokens = WasteTokens::default();
        for (i, signal) in WasteSignal::ALL.into_iter().enumerate() {
            assert_eq!(signal as usize, i);
            tokens.add(signal, i as u64 + 1);
        }
        let sums: Vec<u64> = tokens.iter().map(|(_, n)| n).collect();
        assert_eq!(sums, vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_large_json_object_is_bloat_and_a_small_one_is_not() {
        let rows: Vec<String> = (0..150)
            .map(|i| format!(r#"{{"id":{i},"name":"item number {i}","ok":true}}"#))
            .collect();
        let doc = format!(r#"{{"data":[{}]}}"#, rows.join(","));
        assert!(tokens(&doc) > JSON_BLOAT_MIN_TOKENS);
        let found = content_signals(&doc, O200K, None, false);
        assert_eq!(only(WasteSignal::JsonBloat, &found), tokens(&doc));
        // A known count is used as is for a whole-document output.
        let found = content_signals(&doc, O200K, Some(12_345), false);
        assert_eq!(found.get(WasteSignal::JsonBloat), 12_345);
        let found = content_signals(&format!("{doc}\n"), O200K, Some(12_345), false);
        assert_eq!(found.get(WasteSignal::JsonBloat), 12_345);
        // Parsed by the pipeline's detection: taken as one document without a second parse.
        let found = content_signals(&doc, O200K, Some(12_345), true);
        assert_eq!(found.get(WasteSignal::JsonBloat), 12_345);
        // Prose around the object is not bloat.
        let wrapped = format!("Result follows. {doc} End of result.");
        let found = content_signals(&wrapped, O200K, None, false);
        assert_eq!(found.get(WasteSignal::JsonBloat), tokens(&doc));
        let small = r#"{"id":1,"name":"one"}"#;
        assert!(content_signals(small, O200K, None, false).is_empty());
        // A top-level array is one document too.
        let array = format!("[{}]\n", rows.join(","));
        let found = content_signals(&array, O200K, None, false);
        assert_eq!(found.get(WasteSignal::JsonBloat), tokens(&array));
        // Braces of code are not JSON.
        let code: String = (0..60)
            .map(|i| format!("fn f{i}(x: u32) -> u32 {{ x + {i} }}\n"))
            .collect();
        let code = format!("impl A {{\n{code}}}");
        assert_eq!(
            content_signals(&code, O200K, None, false).get(WasteSignal::JsonBloat),
            0
        );
    }

    #[test]
    fn html_tags_and_comments_are_noise_but_comparisons_are_not() {
        let text = "<div class=\"card\"><p>Price</p><!-- a > b --></div> if a < b and c > d";
        let found = content_signals(text, O200K, None, false);
        let tags = "<div class=\"card\"><p></p><!-- a > b --></div>";
        assert_eq!(only(WasteSignal::HtmlNoise, &found), tokens(tags));
        assert!(content_signals("x <> y, 1 << 4, a <b", O200K, None, false).is_empty());
        let generics = "let v: Vec<String> = HashMap::<u8, Option<T>>::new(); List<int> x;";
        assert!(content_signals(generics, O200K, None, false).is_empty());
        let unclosed = "<!-- never closed <b>bold</b>";
        assert_eq!(html_spans(unclosed), vec!["<b>", "</b>"]);
        // `<!-->` closes itself; a closed comment after unclosed openers cannot exist.
        assert_eq!(html_spans("<!--> <b>"), vec!["<!-->", "<b>"]);
        assert_eq!(html_spans("<!---->x"), vec!["<!---->"]);
    }

    /// Issue 12: a megabyte of unclosed comment openers was rescanned once per opener.
    #[test]
    fn unclosed_comment_openers_are_scanned_once() {
        for openers in [1 << 16, 1 << 18, 1 << 20] {
            let text = "<!--".repeat(openers);
            assert!(html_spans(&text).is_empty());
            let text = format!("<i>{text}<p>x</p>");
            assert_eq!(html_spans(&text), vec!["<i>", "<p>", "</p>"]);
            assert_eq!(
                only(
                    WasteSignal::HtmlNoise,
                    &content_signals(&text, O200K, None, false)
                ),
                tokens("<i><p></p>")
            );
        }
        // Closed comments between unclosed openers' text are found as before.
        let text = format!("<!-- a -->{}<!-- b", "x".repeat(1000));
        assert_eq!(html_spans(&text), vec!["<!-- a -->"]);
    }

    #[test]
    fn base64_blobs_count_but_hex_digests_and_paths_do_not() {
        let blob = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
        let text = format!("image: {blob} (png)");
        let found = content_signals(&text, O200K, None, false);
        assert_eq!(only(WasteSignal::Base64, &found), tokens(blob));
        let hex = "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let path = "/usr/local/lib/python/site/packages/somewhere/deep/inside/module";
        assert!(content_signals(hex, O200K, None, false).is_empty());
        assert!(content_signals(path, O200K, None, false).is_empty());
    }

    #[test]
    fn whitespace_is_what_collapsing_the_runs_saves() {
        // Space runs before words: exactly the difference the tokenizer sees.
        let text = "name:        alpha\nkey:     beta\nlast  line";
        let collapsed = "name: alpha\nkey: beta\nlast  line";
        let found = content_signals(text, O200K, None, false);
        assert_eq!(
            only(WasteSignal::Whitespace, &found),
            tokens(text) - tokens(collapsed)
        );
        assert!(found.get(WasteSignal::Whitespace) > 0);
        // Newline runs and trailing runs become one token each.
        let text = "a\n\n\n\n\n\nb        ";
        let found = content_signals(text, O200K, None, false);
        assert_eq!(
            found.get(WasteSignal::Whitespace),
            tokens("\n\n\n\n\n\n") - 1 + tokens("        ") - 1
        );
        assert!(content_signals("a b\n\nc   d", O200K, None, false).is_empty());
        // Multi-byte text around a run is fine.
        assert_eq!(
            ByteScan::of("é     ü\n\n\n✓").whitespace,
            vec![("     ", true), ("\n\n\n", false)]
        );
    }

    #[test]
    fn repeated_long_lines_count_every_copy_after_the_first() {
        let line = "connection reset by peer, retrying";
        let text = format!("{line}\nok\nok\nok\n  {line}\n{line}  \nsomething else entirely here");
        let found = content_signals(&text, O200K, None, false);
        assert_eq!(only(WasteSignal::Repetition, &found), 2 * tokens(line));
    }

    #[test]
    fn rereads_count_new_copies_far_from_the_previous_one() {
        let big = 200;
        let mut t = RereadTracker::default();
        assert!(t.observe([1; 8], 1, false, true, || big).is_empty());
        // Polling: two messages later.
        assert!(t.observe([1; 8], 3, false, false, || big).is_empty());
        // An old copy is never counted, however far.
        assert!(t.observe([1; 8], 9, false, false, || big).is_empty());
        // A new copy more than three messages after the previous one is.
        let found = t.observe([1; 8], 13, true, false, || big);
        assert_eq!(found.get(WasteSignal::Reread), big);
        // The first copy went out with a marker: attributable to compression.
        assert_eq!(found.get(WasteSignal::RereadCompressed), big);
        // Too small to be a re-read.
        let mut t = RereadTracker::default();
        t.observe([2; 8], 1, false, false, || 10);
        assert!(t.observe([2; 8], 9, true, false, || 10).is_empty());
        // The tokenizer is not consulted for a first copy.
        let mut t = RereadTracker::default();
        t.observe([3; 8], 1, true, false, || panic!("counted"));
    }
    /// The three walks [`ByteScan`] replaced, kept as its reference.
    mod reference {
        use super::*;

        pub(super) fn whitespace_runs(text: &str) -> Vec<(&str, bool)> {
            let bytes = text.as_bytes();
            let mut runs = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let (spaces, min) = match bytes.get(i) {
                    Some(b' ' | b'\t') => (true, 4),
                    Some(b'\n') => (false, 3),
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                let start = i;
                while bytes.get(i).is_some_and(|&b| {
                    if spaces {
                        b == b' ' || b == b'\t'
                    } else {
                        b == b'\n'
                    }
                }) {
                    i += 1;
                }
                if i - start >= min {
                    let before_word =
                        spaces && bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace());
                    runs.extend(text.get(start..i).map(|run| (run, before_word)));
                }
            }
            runs
        }

        pub(super) fn base64_runs(text: &str) -> Vec<&str> {
            let bytes = text.as_bytes();
            let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
            let mixed = |body: &[u8]| {
                body.iter().any(u8::is_ascii_uppercase)
                    && body.iter().any(u8::is_ascii_lowercase)
                    && body.iter().any(u8::is_ascii_digit)
            };
            let mut runs = Vec::new();
            let mut start = 0;
            for body in bytes.split(|b| !is_b64(b)) {
                let end = start + body.len();
                if body.len() >= BASE64_MIN_BYTES && mixed(body) {
                    runs.extend(text.get(start..end + base64_padding(bytes, end)));
                }
                start = end + 1;
            }
            runs
        }

        pub(super) fn lines(text: &str) -> FixedMap<&str, u64> {
            let mut lines: FixedMap<&str, u64> = FixedMap::default();
            for line in text.lines().map(str::trim) {
                if line.len() >= REPEATED_LINE_MIN_BYTES {
                    *lines.entry(line).or_default() += 1;
                }
            }
            lines
        }
    }

    proptest::proptest! {
        /// One pass finds exactly what the three walks found, in the same order.
        #[test]
        fn the_byte_scan_finds_what_the_three_walks_found(
            parts in proptest::collection::vec(
                (proptest::sample::select(vec![
                    " ", "\t", "\n", "\r", "=", "A", "z", "7", "+", "/", "-", "é", "\u{3000}",
                    "aB3", "connection reset by peer", "QUJD", "\u{1F600}", "<", ">",
                ]), 1usize..60),
                0..40,
            )
        ) {
            let text: String = parts.iter().map(|(part, n)| part.repeat(*n)).collect();
            let scan = ByteScan::of(&text);
            proptest::prop_assert_eq!(&scan.whitespace, &reference::whitespace_runs(&text));
            proptest::prop_assert_eq!(&scan.base64, &reference::base64_runs(&text));
            let lines: FixedMap<&str, u64> =
                scan.lines.iter().map(|(&line, &copies)| (line, copies)).collect();
            proptest::prop_assert_eq!(&lines, &reference::lines(&text));
        }
    }
}
