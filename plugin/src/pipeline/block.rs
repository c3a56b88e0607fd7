//! One tool-output text through the pipeline: detect its kind, run the matching compressor,
//! and say what happened. No token counting and no stores here: [`super::request`] gates the
//! result by tokens and keeps originals and decisions.

use super::config::PipelineConfig;
use super::detect::{ContentKind, detect_parsed};
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
}

/// Compresses one block's text. `hash` is [`ContentHash::of`] the text, named by markers.
pub fn compress_block(
    text: &str,
    config: &PipelineConfig,
    query: &Query,
    hash: ContentHash,
) -> BlockResult {
    let (detection, json) = detect_parsed(text, config.max_json_depth);
    let kind = detection.kind;
    let unchanged = |strategy| BlockResult {
        kind,
        strategy,
        text: None,
        lossy: false,
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
                text: Some(crushed.text),
            },
            None => unchanged("none:json"),
        },
        ContentKind::Log if config.lossy => {
            match log::compress(text, config.log_context_lines, hash) {
                Some(out) => BlockResult {
                    kind,
                    strategy: "log:templates",
                    lossy: true,
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
                    text: Some(out.text),
                },
                None => normalised(text, kind, Normalise::Text),
            }
        }
        ContentKind::Diff if config.lossy => {
            match diff::compress(text, config.diff_context_lines, hash) {
                Some(out) => BlockResult {
                    kind,
                    strategy: "diff:context",
                    lossy: true,
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
    }
}
