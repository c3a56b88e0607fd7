//! One tool-output text through the pipeline: detect its kind, run the matching compressor,
//! and say what happened. No token counting and no stores here: [`super::request`] gates the
//! result by tokens and keeps originals and decisions.

use super::config::PipelineConfig;
use super::detect::{ContentKind, Parsed, detect_parsed};
use super::hash::ContentHash;
use super::marker::contains_marker;
use super::relevance::Query;
use super::text::{Normalise, normalise};
use super::{diff, json_crush, log, search};

/// What the compressor for one block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResult {
    /// The detected kind.
    pub kind: ContentKind,
    /// The strategy that ran (`json:select`, `log:templates`, `text:normalise`, ...).
    pub strategy: &'static str,
    /// The candidate replacement, if the compressor changed anything.
    pub text: Option<String>,
    /// Whether the candidate leaves something out (and so carries a marker).
    pub lossy: bool,
    /// A note appended to the block's reason (the manifest): why the kept rows or lines were
    /// kept (`"kept 12 error/warning lines (one per template ...)"`), and any deterministic
    /// work limit that changed the result (pathological inputs only), e.g. `"3 arrays nested
    /// deeper than 6 processed arrays copied as they are"`.
    pub limited: Option<String>,
}

/// Compresses one block's text. `hash` is [`ContentHash::of`] the text, named by markers.
pub fn compress_block(
    text: &str,
    config: &PipelineConfig,
    query: &Query,
    hash: ContentHash,
) -> BlockResult {
    let parsed = detect_parsed(text, config.max_json_depth, config.max_json_values);
    let too_many_values = parsed.too_many_values;
    let mut result = compress_detected(text, parsed, config, query, hash);
    if too_many_values {
        let note = format!(
            "JSON of more than {} values (max_json_values) not compressed as JSON",
            config.max_json_values
        );
        result.limited = Some(match result.limited.take() {
            Some(other) => format!("{note}; {other}"),
            None => note,
        });
    }
    result
}

/// Runs the compressor of the detected kind.
fn compress_detected(
    text: &str,
    parsed: Parsed<'_>,
    config: &PipelineConfig,
    query: &Query,
    hash: ContentHash,
) -> BlockResult {
    let (kind, json) = (parsed.detection.kind, parsed.json);
    let unchanged = |strategy| BlockResult {
        kind,
        strategy,
        text: None,
        lossy: false,
        limited: None,
    };
    if contains_marker(text) {
        return unchanged("none:already_compressed");
    }
    match kind {
        ContentKind::Json => match json
            .as_ref()
            .and_then(|doc| json_crush::crush_parsed(text, doc, config, query, hash))
        {
            Some(crushed) => BlockResult {
                kind,
                strategy: crushed.strategy(),
                lossy: crushed.omitted > 0,
                limited: limits(
                    query,
                    join(
                        crushed.kept.describe(),
                        (crushed.too_deep > 0).then(|| {
                            format!(
                                "{} arrays nested deeper than {} processed arrays copied as they are",
                                crushed.too_deep,
                                json_crush::MAX_NESTED_ARRAYS
                            )
                        }),
                    ),
                ),
                text: Some(crushed.text),
            },
            None => unchanged("none:json"),
        },
        ContentKind::Log if config.lossy => {
            match log::compress(text, config.log_context_lines, query, hash) {
                Some(out) => BlockResult {
                    kind,
                    strategy: "log:templates",
                    lossy: true,
                    limited: limits(query, Some(out.kept)),
                    text: Some(out.text),
                },
                None => normalised(text, kind, Normalise::Text),
            }
        }
        ContentKind::Search => {
            match search::compress(
                text,
                query,
                config.search_matches_per_file,
                config.search_max_matches,
                config.lossy,
                hash,
            ) {
                Some(out) => BlockResult {
                    kind,
                    strategy: if out.omitted > 0 {
                        "search:select"
                    } else {
                        "search:group"
                    },
                    lossy: out.omitted > 0,
                    limited: limits(query, out.kept),
                    text: Some(out.text),
                },
                None => normalised(text, kind, Normalise::Text),
            }
        }
        ContentKind::Diff if config.lossy => {
            match diff::compress(text, config.diff_context_lines, query, hash) {
                Some(out) => BlockResult {
                    kind,
                    strategy: "diff:context",
                    lossy: true,
                    limited: Some(out.kept()),
                    text: Some(out.text),
                },
                None => unchanged("none:diff"),
            }
        }
        ContentKind::Code => normalised(text, kind, Normalise::Code),
        ContentKind::Diff => unchanged("none:diff"),
        ContentKind::Log | ContentKind::Html | ContentKind::Text => {
            normalised(text, kind, Normalise::Text)
        }
    }
}

/// Two notes, in order, when present.
fn join(first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The work limits that applied to a compressor that reads the relevance query: `own`, and
/// the query's term limit when the user text went past it.
fn limits(query: &Query, own: Option<String>) -> Option<String> {
    let query_note = query.truncated().then(|| {
        format!(
            "relevance query cut to its first {} distinct terms",
            super::relevance::MAX_QUERY_TERMS
        )
    });
    join(own, query_note)
}

fn normalised(text: &str, kind: ContentKind, mode: Normalise) -> BlockResult {
    let strategy = match mode {
        Normalise::Text => "text:normalise",
        Normalise::Code => "code:normalise",
    };
    BlockResult {
        kind,
        strategy,
        text: normalise(text, mode),
        lossy: false,
        limited: None,
    }
}

/// The bodies of issue 12 that held a worker (and scaled variants), end to end through
/// [`compress_request`](super::compress_request): each is decided, and the body sent is valid.
/// No timing is asserted; a quadratic path would make these tests run for minutes.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod hostile_tests {
    use super::*;
    use crate::api::Api;
    use crate::pipeline::waste::WasteSignal;
    use crate::pipeline::{Decision, MemoryHost, Outcome, compress_request};
    use serde_json::{Value, json};

    /// A chat request: the user text `query`, then one tool output `output` (which `query` is
    /// the relevance query of).
    fn request(query: &str, output: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": query},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "fetch", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": output},
            ],
        }))
        .unwrap()
    }

    /// Runs `output` under `query` and returns the outcome and the tool output sent.
    fn run(query: &str, output: &str) -> (Outcome, String) {
        let body = request(query, output);
        let mut host = MemoryHost::default();
        let outcome = compress_request(
            Api::OpenAiChat,
            &body,
            &PipelineConfig::default(),
            &mut host,
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(outcome.body.as_deref().unwrap_or(&body)).unwrap();
        let text = sent["messages"][2]["content"].as_str().unwrap().to_owned();
        (outcome, text)
    }

    #[test]
    fn unclosed_html_comments() {
        // 1 MB of openers, none closed: nothing is a comment, no tag is noise.
        for openers in [65_536, 262_144] {
            let (outcome, _) = run("Check the page.", &"<!--".repeat(openers));
            assert_eq!(outcome.waste.get(WasteSignal::HtmlNoise), 0);
            assert_eq!(outcome.blocks.len(), 1);
        }
        // Tags after them still count.
        let output = format!("{}<b>bold</b>", "<!--".repeat(262_144));
        let (outcome, _) = run("Check the page.", &output);
        let expected = crate::tokens::Encoding::O200kBase.count("<b></b>") as u64;
        assert_eq!(outcome.waste.get(WasteSignal::HtmlNoise), expected);
    }

    #[test]
    fn search_results_that_are_all_error_matches() {
        // "a:1:error" is a grep match; every one carries an error word, so all are chosen
        // and kept: the output is regrouped losslessly, linearly in the matches.
        for copies in [100_000, 200_000, 400_000] {
            let (outcome, sent) = run("Why did it fail?", &"a:1:error\n".repeat(copies));
            let block = &outcome.blocks[0];
            assert_eq!(block.decision, Decision::Compressed, "{}", block.reason);
            assert_eq!(block.strategy, "search:group");
            assert!(sent.starts_with("a\n1:error\n1:error\n"));
            assert_eq!(sent.len(), "a\n".len() + copies * "1:error\n".len());
        }
    }

    #[test]
    fn a_huge_query_against_its_own_text() {
        // A 200,000-word user message and a JSON array of that text: every item holds every
        // query term.
        let words = |n: usize| {
            (0..n)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for n in [50_000, 200_000] {
            let query = words(n);
            let output = serde_json::to_string(&vec![query.as_str(); 8]).unwrap();
            let (outcome, sent) = run(&query, &output);
            let block = &outcome.blocks[0];
            // Eight copies of one string: the repeats go.
            assert_eq!(block.decision, Decision::Compressed, "{}", block.reason);
            assert_eq!(block.strategy, "json:select");
            let items: Vec<Value> = serde_json::from_str(&sent).unwrap();
            assert_eq!(items[0].as_str(), Some(query.as_str()));
            assert!(items.len() < 8);
        }
        let query = words(200_000);
        let output = serde_json::to_string(&vec![query.as_str(); 8]).unwrap();
        let result = compress_block(
            &output,
            &PipelineConfig::default(),
            &Query::new(&query),
            ContentHash::of(output.as_bytes()),
        );
        // The note says what was kept, then the limit.
        let note = result.limited.unwrap();
        assert!(
            note.ends_with("; relevance query cut to its first 16384 distinct terms"),
            "{note}"
        );
        // The same words as an array of one-word items: each item names one query term.
        let output = serde_json::to_string(&query.split(' ').collect::<Vec<_>>()).unwrap();
        let (outcome, sent) = run(&query, &output);
        assert_eq!(outcome.blocks[0].decision, Decision::Compressed);
        let items: Vec<Value> = serde_json::from_str(&sent).unwrap();
        assert!(items.len() < 100);
    }

    #[test]
    fn a_large_json_array_of_zeros() {
        // Within max_json_values (2^20) it is JSON; beyond, it is not parsed as JSON at all
        // (the span tree would outgrow a VM's memory), and the reason says so.
        for (zeros, json) in [(1_000_000, true), (6_000_000, false)] {
            let output = format!("[{}0]", "0,".repeat(zeros - 1));
            let (outcome, sent) = run("Sum them.", &output);
            let block = &outcome.blocks[0];
            let kind = block.kind;
            assert_eq!(
                kind == Some(crate::pipeline::detect::ContentKind::Json),
                json
            );
            assert_eq!(
                block.reason.contains("JSON of more than 1048576 values"),
                !json,
                "{}",
                block.reason
            );
            // Valid JSON whatever was decided.
            let items: Vec<Value> = serde_json::from_str(&sent).unwrap();
            assert!(!items.is_empty());
        }
    }

    /// `depth` arrays, each holding `width` numbers and the next one.
    fn nested(depth: usize, width: usize) -> String {
        let level = "1,".repeat(width);
        format!(
            "{}0{}",
            format!("[{level}").repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn deeply_nested_arrays_are_bounded_and_said() {
        let config = PipelineConfig::default();
        let query = Query::default();
        // As deep as processing goes: every array is processed.
        let text = nested(json_crush::MAX_NESTED_ARRAYS, 6);
        let result = compress_block(&text, &config, &query, ContentHash::of(text.as_bytes()));
        assert_eq!(result.limited, None);
        // Deeper: the inner arrays are copied compactly, and the result says so.
        for depth in [50, 200] {
            let text = nested(depth, 5_000);
            let hash = ContentHash::of(text.as_bytes());
            let result = compress_block(&text, &config, &query, hash);
            let note = result.limited.unwrap();
            let deeper = depth - json_crush::MAX_NESTED_ARRAYS;
            assert!(
                note.starts_with(&format!("{deeper} arrays nested deeper than")),
                "{note}"
            );
            let out = result.text.unwrap();
            // Deeper than serde_json's recursion limit: checked with the pipeline's parser.
            crate::json::validate(out.as_bytes(), crate::json::DEFAULT_MAX_DEPTH).unwrap();
            // The copied part is the original, compacted.
            let inner = nested(deeper, 5_000);
            assert!(out.contains(&inner));
            let (_, sent) = run("Check.", &text);
            crate::json::validate(sent.as_bytes(), crate::json::DEFAULT_MAX_DEPTH).unwrap();
        }
    }
}
