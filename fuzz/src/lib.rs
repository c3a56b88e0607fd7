//! The checks the fuzz targets run, one function per target, shared with the plugin's
//! regression test (`plugin/tests/fuzz_regressions.rs` includes this file with `#[path]`), so
//! a saved input is replayed through exactly what found it.
//!
//! Each check asserts more than "no panic":
//!
//! - [`json_span`]: `Document::parse` and `validate` agree; the verdict agrees with serde_json;
//!   every span of the tree is consistent (kinds, nesting, gaps, keys, `get`), every string
//!   decodes as serde_json decodes it and survives `encode_string`; the tree equals serde_json's
//!   value; `minify` keeps the value and is idempotent.
//! - [`usage`]: the usage, the SSE events and the parse counters are the same whether the body
//!   comes whole, byte by byte or in chunks cut where the input's seed says; event ranges lie in
//!   the body, in order, without overlap.
//! - [`compress`]: the same body gives the same bytes with a fresh host and again with the same
//!   host (replay); a rewritten body parses, differs from the original only inside the string
//!   values of the blocks it reports as replaced, and compresses again without error.
//! - [`savings_file`]: what loads renders, loads again to the same ledger, and renders to the
//!   same bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use headroom_plugin::api::Api;
use headroom_plugin::json::{
    Document, ErrorKind, Kind, Value, decode_string, encode_string, minify_bounded, validate,
};
use headroom_plugin::pipeline::{MemoryHost, PipelineConfig, compress_request};
use headroom_plugin::savings::file::{load, render};
use headroom_plugin::usage::{Limits, SseEvent, Usage, UsageParser};

/// Nesting limit of the JSON target: below serde_json's recursion limit (128), so every
/// document we accept serde_json must accept too.
pub const JSON_MAX_DEPTH: u32 = 64;

/// The directory names of the targets under `fuzz/regressions/` and `fuzz/seeds/`.
pub const TARGETS: [&str; 7] = [
    "json_span",
    "usage_json",
    "usage_sse",
    "compress_openai_chat",
    "compress_openai_responses",
    "compress_anthropic",
    "savings_file",
];

/// Runs the check of target `name` on one input.
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "json_span" => json_span(data),
        "usage_json" => usage_input(data, false),
        "usage_sse" => usage_input(data, true),
        "compress_openai_chat" => drop(compress(Api::OpenAiChat, data)),
        "compress_openai_responses" => drop(compress(Api::OpenAiResponses, data)),
        "compress_anthropic" => drop(compress(Api::AnthropicMessages, data)),
        "savings_file" => savings_file(data),
        _ => panic!("unknown fuzz target {name}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON span parser

/// The span parser on arbitrary bytes.
pub fn json_span(data: &[u8]) {
    let parsed = Document::parse(data, JSON_MAX_DEPTH);
    let validated = validate(data, JSON_MAX_DEPTH);
    assert_eq!(
        parsed.as_ref().err().copied(),
        validated.err(),
        "parse and validate disagree"
    );
    let Ok(text) = std::str::from_utf8(data) else {
        let err = parsed.expect_err("accepted invalid UTF-8");
        assert_eq!(err.kind, ErrorKind::InvalidUtf8);
        return;
    };
    let theirs = serde_json::from_str::<serde::de::IgnoredAny>(text);
    let doc = match parsed {
        Ok(doc) => doc,
        Err(err) => {
            // Deeper than our limit but within serde_json's: serde_json may accept it.
            if err.kind != ErrorKind::TooDeep {
                assert!(
                    theirs.is_err(),
                    "we reject ({err:?}) what serde_json accepts"
                );
            }
            return;
        }
    };
    assert!(
        theirs.is_ok(),
        "we accept what serde_json rejects: {:?}",
        theirs.err()
    );
    assert_eq!(doc.source(), text);
    let root = doc.root();
    let span = root.span();
    assert!(span.start < span.end && span.end <= text.len());
    assert!(text[..span.start].bytes().all(is_ws));
    assert!(text[span.end..].bytes().all(is_ws));
    assert!(root.key_raw().is_none());
    let ours = check_value(root, text, 0);
    // serde_json's full parse refuses numbers beyond f64 (1e400); compare where it answers.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        assert_eq!(ours, Some(value), "tree differs from serde_json's value");
    }
    let minified = minify_bounded(text, JSON_MAX_DEPTH);
    match root.kind() {
        Kind::Object | Kind::Array => {
            let minified = minified.expect("a valid container must minify");
            assert!(minified.len() <= span.len());
            assert_eq!(
                minify_bounded(&minified, JSON_MAX_DEPTH).as_deref(),
                Some(minified.as_str()),
                "minify is not idempotent"
            );
            let again = Document::parse(minified.as_bytes(), JSON_MAX_DEPTH)
                .expect("minified text must parse");
            assert_eq!(check_value(again.root(), &minified, 0), ours);
        }
        _ => assert!(minified.is_none(), "minify accepts a scalar"),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Checks one value and its subtree; returns it as a serde_json value (`None` when a number
/// is beyond what serde_json represents).
fn check_value(value: Value<'_>, text: &str, depth: u32) -> Option<serde_json::Value> {
    assert!(depth < JSON_MAX_DEPTH + 1);
    let span = value.span();
    let raw = value.raw();
    assert_eq!(raw, &text[span.clone()]);
    let first = raw.as_bytes()[0];
    let kind = value.kind();
    match kind {
        Kind::Object => assert!(first == b'{' && raw.ends_with('}')),
        Kind::Array => assert!(first == b'[' && raw.ends_with(']')),
        Kind::String => assert!(first == b'"' && raw.ends_with('"') && raw.len() >= 2),
        Kind::Number => assert!(first == b'-' || first.is_ascii_digit()),
        Kind::Bool => assert!(raw == "true" || raw == "false"),
        Kind::Null => assert_eq!(raw, "null"),
    }
    match kind {
        Kind::String => {
            assert!(value.children().next().is_none());
            let theirs = serde_json::from_str::<String>(raw);
            match value.decode_str() {
                Ok(decoded) => {
                    assert_eq!(theirs.as_deref().ok(), Some(&*decoded));
                    assert!(value.is_str(&decoded));
                    let encoded = encode_string(&decoded);
                    assert_eq!(decode_string(&encoded).as_deref().ok(), Some(&*decoded));
                    let doc = Document::parse(encoded.as_bytes(), 1).expect("encoded parses");
                    assert_eq!(doc.root().kind(), Kind::String);
                    Some(serde_json::Value::String(decoded.into_owned()))
                }
                Err(err) => {
                    assert_eq!(err.kind, ErrorKind::LoneSurrogate, "{err:?} in {raw}");
                    assert!(theirs.is_err());
                    // serde_json cannot hold it either: the comparison is skipped.
                    None
                }
            }
        }
        Kind::Number => serde_json::from_str::<serde_json::Value>(raw).ok(),
        Kind::Bool => Some(serde_json::Value::Bool(raw == "true")),
        Kind::Null => Some(serde_json::Value::Null),
        Kind::Object | Kind::Array => {
            let children: Vec<Value<'_>> = value.children().collect();
            assert_eq!(
                children.len(),
                value.elements().count().max(value.members().count())
            );
            // Children lie inside, in order, and the bytes between them are punctuation,
            // whitespace and (objects) keys.
            let mut at = span.start + 1;
            let mut out = Some(Vec::new());
            for child in &children {
                let c = child.span();
                assert!(
                    at <= c.start && c.end < span.end,
                    "child outside its parent"
                );
                let gap = &text[at..c.start];
                if kind == Kind::Object {
                    let key = child.key_raw().expect("member without key");
                    let trimmed = gap.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8));
                    let trimmed = trimmed.strip_prefix(',').unwrap_or(trimmed);
                    let trimmed =
                        trimmed.trim_start_matches(|c: char| c.is_ascii() && is_ws(c as u8));
                    let rest = trimmed
                        .strip_prefix(key)
                        .expect("gap does not start with the key");
                    assert!(
                        rest.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8)) == ":",
                        "bad gap {gap:?}"
                    );
                } else {
                    assert!(child.key_raw().is_none());
                    assert!(
                        gap.bytes().all(|b| is_ws(b) || b == b','),
                        "bad gap {gap:?}"
                    );
                }
                let sub = check_value(*child, text, depth + 1);
                match (&mut out, sub) {
                    (Some(items), Some(sub)) => items.push((child.key_raw(), sub)),
                    _ => out = None,
                }
                at = c.end;
            }
            assert!(text[at..span.end - 1].bytes().all(is_ws));
            if kind == Kind::Object {
                // `get` finds the last member of each name (checked for a few names: each
                // `get` walks the members, and the check must stay linear).
                let mut last = std::collections::BTreeMap::new();
                for (key, member) in value.members() {
                    if let Ok(name) = decode_string(key) {
                        last.insert(name.into_owned(), member.span());
                    }
                }
                for (name, span) in last.iter().take(8) {
                    let found = value.get(name).expect("get misses a member");
                    assert_eq!(&found.span(), span, "get is not the last {name:?}");
                }
                assert!(value.elements().next().is_none());
            } else {
                assert!(value.members().next().is_none());
            }
            let items = out?;
            if kind == Kind::Array {
                Some(serde_json::Value::Array(
                    items.into_iter().map(|(_, v)| v).collect(),
                ))
            } else {
                let mut map = serde_json::Map::new();
                for (key, v) in items {
                    map.insert(decode_string(key?).ok()?.into_owned(), v);
                }
                Some(serde_json::Value::Object(map))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Usage scanners

/// A usage-target input: byte 0 picks the API, bytes 1..4 seed the split points, the rest is
/// the response body.
pub fn usage_input(data: &[u8], streaming: bool) {
    let (head, body) = data.split_at(data.len().min(4));
    let mut head = head.to_vec();
    head.resize(4, 0);
    let api = Api::ALL[usize::from(head[0]) % 3];
    let seed = u32::from_le_bytes([head[1], head[2], head[3], head[0]]);
    usage(api, streaming, body, seed);
}

type Parsed = (Option<Usage>, Vec<SseEvent>, [u64; 3]);

fn parse_chunks<'a>(
    api: Api,
    streaming: bool,
    limits: Limits,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> Parsed {
    let mut parser = UsageParser::with_limits(api, streaming, limits);
    let mut events = Vec::new();
    let mut fed = 0u64;
    for chunk in chunks {
        parser.feed_with(chunk, |e| events.push(e.clone()));
        fed += chunk.len() as u64;
        if let Some(start) = parser.pending_event_start() {
            assert!(start <= fed, "pending event starts past the bytes fed");
        }
        assert_eq!(parser.stats().bytes, fed);
    }
    let stats = parser.stats();
    let usage = parser.finish_with(|e| events.push(e.clone()));
    (
        usage,
        events,
        [stats.bytes, stats.events, stats.dropped_values],
    )
}

/// xorshift32: the chunk lengths a seed stands for.
fn chunk_lengths(seed: u32, len: usize) -> Vec<usize> {
    let mut state = seed | 1;
    let max = 1 + (seed >> 24) as usize % 64;
    let mut out = Vec::new();
    let mut total = 0;
    while total < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Empty chunks too: a host may call with zero bytes.
        let n = (state as usize % (max + 1)).min(len - total);
        out.push(n);
        total += n;
    }
    out.push(0);
    out
}

/// The usage parser on one body of `api`: the same answer for every split.
pub fn usage(api: Api, streaming: bool, body: &[u8], seed: u32) {
    for limits in [
        Limits::default(),
        Limits {
            max_value_bytes: 1 + (seed as usize >> 8) % 256,
        },
    ] {
        let whole = parse_chunks(api, streaming, limits, std::iter::once(body));
        let bytes = parse_chunks(api, streaming, limits, body.chunks(1));
        assert_eq!(whole, bytes, "byte-by-byte feeding differs ({api:?})");
        let mut at = 0;
        let chunks = chunk_lengths(seed, body.len()).into_iter().map(|n| {
            let chunk = &body[at..at + n];
            at += n;
            chunk
        });
        let split = parse_chunks(api, streaming, limits, chunks);
        assert_eq!(
            whole, split,
            "split feeding differs ({api:?}, seed {seed:#x})"
        );
        let (usage, events, [fed, count, _]) = whole;
        assert_eq!(fed, body.len() as u64);
        if let Some(usage) = &usage {
            assert_eq!(usage.api, api);
        }
        if streaming {
            let mut end = 0;
            for event in &events {
                assert!(event.range.start >= end && event.range.start < event.range.end);
                assert!(event.range.end <= body.len() as u64);
                end = event.range.end;
                if event.openai_usage_only {
                    assert_eq!(api, Api::OpenAiChat);
                }
            }
            assert!(events.len() as u64 >= count);
        } else {
            assert!(events.is_empty());
            assert_eq!(count, 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// compress_request

/// The configuration of the compression targets: defaults, except that small outputs are
/// eligible so the fuzzer reaches the compressors with short inputs.
pub fn fuzz_config() -> PipelineConfig {
    PipelineConfig {
        min_block_bytes: 48,
        protect_errors_below_bytes: 256,
        ..PipelineConfig::default()
    }
}

/// Small stores, so eviction runs too.
fn fuzz_host() -> MemoryHost {
    MemoryHost::new(4096, 4096)
}

/// `compress_request` for `api` on one body; whether it rewrote the body.
pub fn compress(api: Api, body: &[u8]) -> bool {
    let config = fuzz_config();
    let mut host = fuzz_host();
    let first = compress_request(api, body, &config, &mut host);
    let fresh = compress_request(api, body, &config, &mut fuzz_host());
    let replayed = compress_request(api, body, &config, &mut host);
    let (first, fresh, replayed) = match (first, fresh, replayed) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(a), Err(b), Err(c)) => {
            assert!(a == b && b == c, "fail-open reasons differ");
            return false;
        }
        (a, b, c) => panic!(
            "results differ: {:?} / {:?} / {:?}",
            a.err(),
            b.err(),
            c.err()
        ),
    };
    assert_eq!(first.body, fresh.body, "not a pure function of the body");
    assert_eq!(first.body, replayed.body, "replay sends other bytes");
    assert_eq!(first.blocks.len(), replayed.blocks.len());
    assert_eq!(first.bytes_before, body.len() as u64);
    let Some(new_body) = first.body.as_deref() else {
        assert_eq!(first.replaced_blocks(), 0);
        assert_eq!(first.bytes_after, first.bytes_before);
        return false;
    };
    assert_eq!(first.bytes_after, new_body.len() as u64);
    assert!(first.replaced_blocks() > 0);
    let replaced: BTreeSet<&str> = first
        .blocks
        .iter()
        .filter(|b| b.decision.replaced())
        .map(|b| b.location.as_str())
        .collect();
    let before = Document::parse(body, config.max_json_depth).expect("the original parsed");
    let after = Document::parse(new_body, config.max_json_depth)
        .unwrap_or_else(|e| panic!("the rewritten body is not JSON: {e:?}"));
    let (a, b) = (before.source(), after.source());
    let (ra, rb) = (before.root(), after.root());
    assert_eq!(&a[..ra.span().start], &b[..rb.span().start]);
    assert_eq!(&a[ra.span().end..], &b[rb.span().end..]);
    let mut changed = Vec::new();
    same_outside_strings(ra, rb, a, b, String::new(), &mut changed);
    assert!(
        !changed.is_empty(),
        "a body was returned but nothing changed"
    );
    for path in &changed {
        assert!(
            replaced.contains(path.as_str()),
            "{path} changed but is not a replaced block ({replaced:?})"
        );
    }
    // The rewritten body is still a request of `api`, and compressing it again is stable.
    let mut again_host = fuzz_host();
    let again = compress_request(api, new_body, &config, &mut again_host)
        .unwrap_or_else(|e| panic!("the rewritten body fails open: {e:?}"));
    let twice = compress_request(api, new_body, &config, &mut fuzz_host())
        .unwrap_or_else(|e| panic!("the rewritten body fails open: {e:?}"));
    assert_eq!(again.body, twice.body);
    true
}

/// Walks two documents side by side: everything but string values must be byte-identical;
/// collects the paths (in the pipeline's location syntax) of the strings that differ.
fn same_outside_strings(
    a: Value<'_>,
    b: Value<'_>,
    sa: &str,
    sb: &str,
    path: String,
    changed: &mut Vec<String>,
) {
    assert_eq!(a.kind(), b.kind(), "kind changed at {path}");
    match a.kind() {
        Kind::String => {
            if a.raw() != b.raw() {
                changed.push(path);
            }
        }
        Kind::Object | Kind::Array => {
            let ca: Vec<Value<'_>> = a.children().collect();
            let cb: Vec<Value<'_>> = b.children().collect();
            assert_eq!(ca.len(), cb.len(), "children changed at {path}");
            let (mut at_a, mut at_b) = (a.span().start, b.span().start);
            for (i, (x, y)) in ca.iter().zip(&cb).enumerate() {
                assert_eq!(
                    &sa[at_a..x.span().start],
                    &sb[at_b..y.span().start],
                    "bytes changed before child {i} of {path}"
                );
                let sub = match x.key_raw() {
                    Some(key) => {
                        let key = decode_string(key)
                            .map(|k| k.into_owned())
                            .unwrap_or_default();
                        if path.is_empty() {
                            key
                        } else {
                            format!("{path}.{key}")
                        }
                    }
                    None => format!("{path}[{i}]"),
                };
                same_outside_strings(*x, *y, sa, sb, sub, changed);
                at_a = x.span().end;
                at_b = y.span().end;
            }
            assert_eq!(
                &sa[at_a..a.span().end],
                &sb[at_b..b.span().end],
                "bytes changed at the end of {path}"
            );
        }
        _ => assert_eq!(a.raw(), b.raw(), "scalar changed at {path}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Savings file

/// The savings-file loader on arbitrary bytes.
pub fn savings_file(data: &[u8]) {
    let Ok(loaded) = load(data) else {
        return;
    };
    let bytes = render(&loaded.ledger);
    let again = load(&bytes).unwrap_or_else(|e| panic!("a rendered file does not load: {e}"));
    assert_eq!(again.schema_version, Some(3));
    assert_eq!(
        again.ledger, loaded.ledger,
        "the ledger changed on a round trip"
    );
    assert_eq!(render(&again.ledger), bytes, "rendering is not a fixpoint");
}
