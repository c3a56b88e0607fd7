//! The provider's usage report in a response, read incrementally: the filter feeds every
//! response body chunk as it passes (never delaying or altering it) and asks for the [`Usage`]
//! at the end of the stream. JSON bodies and `text/event-stream` (SSE) bodies of OpenAI Chat
//! Completions, OpenAI Responses and Anthropic Messages are understood, split into chunks at
//! any byte; every split gives the same answer.
//!
//! Memory is bounded whatever the size of the response: neither the body nor an SSE event is
//! kept. A scanner follows the JSON structure and copies only the few values it needs (the
//! `usage` object, the model name), each up to [`Limits::max_value_bytes`]; a longer value is
//! dropped and counted ([`ParseStats::dropped_values`]).
//!
//! # Where the figures come from (docs/upstream.md §5)
//!
//! | API, mode | model | usage object |
//! |---|---|---|
//! | OpenAI Chat, JSON | `model` | `usage` |
//! | OpenAI Chat, SSE | first chunk's `model` | `usage` of any chunk (the last one wins); it is the final `choices: []` chunk when the request set `stream_options.include_usage` |
//! | OpenAI Responses, JSON | `model` | `usage` |
//! | OpenAI Responses, SSE | first `response.model` | `response.usage` of any event: `response.completed` (also `response.incomplete` / `response.failed`, which carry the same final object) |
//! | Anthropic, JSON | `model` | `usage` |
//! | Anthropic, SSE | `message_start`'s `message.model` | `message_start`'s `message.usage`, then each `message_delta`'s `usage`: a field it reports replaces the earlier value (its figures are cumulative) |
//!
//! Fields of a usage object:
//!
//! - OpenAI (Chat and Responses): input = `prompt_tokens` ?? `input_tokens`, output =
//!   `completion_tokens` ?? `output_tokens`, cache read = (`prompt_tokens_details` ??
//!   `input_tokens_details`).`cached_tokens`, except that a non-zero top-level
//!   `cache_read_input_tokens` (LiteLLM / Bedrock-style backends) is preferred. Cache write is
//!   only what is reported: a non-zero top-level `cache_creation_input_tokens`, else the
//!   details' `cache_write_tokens` (newer OpenAI responses). OpenAI's input **includes** the
//!   cached tokens.
//! - Anthropic: input = `input_tokens`, output = `output_tokens`, cache read =
//!   `cache_read_input_tokens`, cache write = `cache_creation_input_tokens`, TTL buckets =
//!   `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` (only when
//!   `cache_creation` is an object). Anthropic's input **excludes** cache reads and writes:
//!   the prompt was `input + read + write` tokens.
//!
//! A field that is absent, `null` or not a number is `None` ("not reported"); a negative
//! number counts as 0 and a fractional one is truncated (§5 clamps OpenAI figures at 0).
//! [`Usage::cache_figures`] applies §5's per-request rules (missing → 0, OpenAI's inferred
//! write) on top.
//!
//! Deliberate differences from upstream (§5): a `message_delta` may update the input and
//! cache fields, not just `output_tokens` (Anthropic documents them as cumulative totals); an
//! Anthropic stream's uncached figure is the reported `input_tokens` rather than Headroom's
//! own count of the forwarded body minus read and write (use that count only when
//! [`Usage::uncached_input_tokens`] is `None`); OpenAI's reported `cache_write_tokens` counts
//! as a reported write.
//!
//! The body must be the identity-encoded bytes: a compressed body (`content-encoding: gzip`)
//! reads as malformed and yields nothing. Malformed input never panics; it yields what could
//! be read, and `None` when that is nothing.

mod scan;
mod sse;
pub mod strip;
#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::api::{Api, Provider};
use crate::json::{DEFAULT_MAX_DEPTH, Document, Kind, Value};
use scan::{Cap, Capture, PathScanner, Target};
use sse::{EventSink, SseReader};

/// Default for [`Limits::max_value_bytes`]: a usage object is a few hundred bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

/// Bounds on what a [`UsageParser`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `usage` object kept, in bytes (whitespace included). A longer one is dropped
    /// and counted in [`ParseStats::dropped_values`].
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Whether a response `content-type` value is `text/event-stream` (case-insensitive, with
/// optional parameters): the body is an SSE stream rather than one JSON document.
pub fn is_event_stream(content_type: &[u8]) -> bool {
    content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}

/// What a response reported about its tokens. Token fields are `None` when the provider did
/// not report them (absent, `null` or not a number), so "not reported" differs from 0. Each
/// holds the provider's own figure with the provider's own meaning; see the module docs and
/// [`Usage::cache_figures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The API that answered (it decides what `input_tokens` means).
    pub api: Api,
    /// The model named in the response.
    pub model: Option<String>,
    /// The provider's input figure. OpenAI: `prompt_tokens` / `input_tokens`, which include
    /// the cached tokens. Anthropic: `input_tokens`, which exclude cache reads and writes.
    pub input_tokens: Option<u64>,
    /// Output tokens (`completion_tokens` / `output_tokens`).
    pub output_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache, as reported (OpenAI rarely
    /// reports it; §5's inferred OpenAI write is in [`Usage::cache_figures`]).
    pub cache_write_tokens: Option<u64>,
    /// Of the cache write, tokens written with the 5-minute TTL (Anthropic).
    pub cache_write_5m_tokens: Option<u64>,
    /// Of the cache write, tokens written with the 1-hour TTL (Anthropic).
    pub cache_write_1h_tokens: Option<u64>,
}

/// One request's prompt-cache and token figures as docs/upstream.md §5 defines them ("read,
/// write, write_5m, write_1h, uncached, output"): a figure not reported is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheFigures {
    /// Tokens read from the prompt cache.
    pub read: u64,
    /// Tokens written to the prompt cache. Anthropic: `cache_creation_input_tokens`. OpenAI:
    /// a reported write when non-zero, else inferred as `max(input - read, 0)` (§5; so for
    /// OpenAI it usually equals `uncached`).
    pub write: u64,
    /// Of `write`, the 5-minute TTL bucket (Anthropic only; 0 for OpenAI).
    pub write_5m: u64,
    /// Of `write`, the 1-hour TTL bucket (Anthropic only; 0 for OpenAI).
    pub write_1h: u64,
    /// Input tokens neither read from nor (Anthropic) written to the cache; see
    /// [`Usage::uncached_input_tokens`].
    pub uncached: u64,
    /// Output tokens.
    pub output: u64,
}

impl Usage {
    fn empty(api: Api) -> Self {
        Self {
            api,
            model: None,
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            cache_write_5m_tokens: None,
            cache_write_1h_tokens: None,
        }
    }

    /// Whether nothing at all was read.
    fn is_empty(&self) -> bool {
        self.model.is_none()
            && self.input_tokens.is_none()
            && self.output_tokens.is_none()
            && self.cache_read_tokens.is_none()
            && self.cache_write_tokens.is_none()
            && self.cache_write_5m_tokens.is_none()
            && self.cache_write_1h_tokens.is_none()
    }

    /// Input tokens billed at the full input price (§5 "uncached"). OpenAI: `input - read`
    /// (saturating; the input includes the cached tokens). Anthropic: `input_tokens` itself
    /// (it excludes cache reads and writes). `None` when the input figure was not reported;
    /// §5 then falls back to Headroom's own count of the forwarded body, minus read (and, for
    /// Anthropic, write).
    pub fn uncached_input_tokens(&self) -> Option<u64> {
        let input = self.input_tokens?;
        Some(match self.api.provider() {
            Provider::OpenAi => input.saturating_sub(self.cache_read_tokens.unwrap_or(0)),
            Provider::Anthropic => input,
        })
    }

    /// The whole prompt in tokens. OpenAI: the input figure. Anthropic: `input + cache read +
    /// cache write` (figures not reported count as 0). `None` when none of them was reported.
    pub fn total_input_tokens(&self) -> Option<u64> {
        match self.api.provider() {
            Provider::OpenAi => self.input_tokens,
            Provider::Anthropic => {
                let parts = [
                    self.input_tokens,
                    self.cache_read_tokens,
                    self.cache_write_tokens,
                ];
                parts.iter().any(Option::is_some).then(|| {
                    parts
                        .iter()
                        .flatten()
                        .fold(0u64, |a, &b| a.saturating_add(b))
                })
            }
        }
    }

    /// The §5 per-request figures: missing figures are 0; OpenAI's write is the reported one
    /// when non-zero, else inferred as `max(input - read, 0)`, and it has no TTL buckets.
    pub fn cache_figures(&self) -> CacheFigures {
        let read = self.cache_read_tokens.unwrap_or(0);
        let output = self.output_tokens.unwrap_or(0);
        let uncached = self.uncached_input_tokens().unwrap_or(0);
        match self.api.provider() {
            Provider::Anthropic => CacheFigures {
                read,
                write: self.cache_write_tokens.unwrap_or(0),
                write_5m: self.cache_write_5m_tokens.unwrap_or(0),
                write_1h: self.cache_write_1h_tokens.unwrap_or(0),
                uncached,
                output,
            },
            Provider::OpenAi => CacheFigures {
                read,
                write: match self.cache_write_tokens {
                    Some(write) if write > 0 => write,
                    _ => uncached,
                },
                write_5m: 0,
                write_1h: 0,
                uncached,
                output,
            },
        }
    }

    /// Takes every token figure `update` reports (the later report wins where present).
    fn merge(&mut self, update: &Usage) {
        let pairs = [
            (&mut self.input_tokens, update.input_tokens),
            (&mut self.output_tokens, update.output_tokens),
            (&mut self.cache_read_tokens, update.cache_read_tokens),
            (&mut self.cache_write_tokens, update.cache_write_tokens),
            (
                &mut self.cache_write_5m_tokens,
                update.cache_write_5m_tokens,
            ),
            (
                &mut self.cache_write_1h_tokens,
                update.cache_write_1h_tokens,
            ),
        ];
        for (field, value) in pairs {
            if value.is_some() {
                *field = value;
            }
        }
    }
}

/// Counters of one parse, for the filter's metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseStats {
    /// Body bytes fed.
    pub bytes: u64,
    /// SSE events completed (0 for JSON bodies).
    pub events: u64,
    /// `usage` objects dropped for exceeding [`Limits::max_value_bytes`].
    pub dropped_values: u64,
}

/// A complete SSE event, as [`UsageParser::feed_with`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's bytes in the response body, as offsets from its first byte: from the first
    /// byte of its first field line (comment lines before it excluded) to just past the line
    /// ending of the blank line that ends it. Removing exactly these bytes removes the event
    /// and nothing else.
    pub range: Range<u64>,
    /// OpenAI Chat only: the event is the usage-only chunk (`"choices": []` and a `usage`
    /// object) that `stream_options.include_usage` adds at the end of the stream. A filter
    /// that set `include_usage` itself strips this event so the client sees the stream it
    /// asked for.
    pub openai_usage_only: bool,
}

/// `bytes`, which start at body offset `from`, without the parts inside the body ranges
/// `drop` (in order, not overlapping): what a filter forwards after removing events.
pub fn without_ranges(bytes: &[u8], from: u64, drop: &[Range<u64>]) -> Vec<u8> {
    let to = from.saturating_add(bytes.len() as u64);
    let index = |offset: u64| usize::try_from(offset.saturating_sub(from)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = from;
    for range in drop {
        let start = range.start.max(at).min(to);
        let end = range.end.max(start).min(to);
        out.extend_from_slice(bytes.get(index(at)..index(start)).unwrap_or_default());
        at = end;
    }
    out.extend_from_slice(bytes.get(index(at)..).unwrap_or_default());
    out
}

/// The member a filter adds to a streaming Chat Completions request that lacks
/// `stream_options`, so the provider reports usage in a final usage-only chunk.
pub const INCLUDE_USAGE_MEMBER: &[u8] = br#","stream_options":{"include_usage":true}"#;

/// `body` (a JSON object with at least one member, as a streaming request is) with
/// [`INCLUDE_USAGE_MEMBER`] added as its last member, every other byte unchanged; `None` if
/// the body does not end with the object's `}`.
pub fn with_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body.get(end) != Some(&b'}') {
        return None;
    }
    let (head, tail) = body.split_at(end);
    let mut out = Vec::with_capacity(body.len() + INCLUDE_USAGE_MEMBER.len());
    out.extend_from_slice(head);
    out.extend_from_slice(INCLUDE_USAGE_MEMBER);
    out.extend_from_slice(tail);
    Some(out)
}

/// Whether the `data` of one SSE event (the JSON text) is OpenAI Chat's usage-only final
/// chunk: an object with `"choices": []` and a `usage` object.
pub fn is_openai_usage_only_chunk(data: &[u8]) -> bool {
    let Ok(doc) = Document::parse(data, DEFAULT_MAX_DEPTH) else {
        return false;
    };
    let root = doc.root();
    root.get("choices")
        .is_some_and(|c| c.kind() == Kind::Array && c.elements().next().is_none())
        && root.get("usage").is_some_and(|u| u.kind() == Kind::Object)
}

/// Index of the model target in every target table.
const MODEL: usize = 0;
/// Index of the (first) usage target in every target table.
const USAGE: usize = 1;
/// Index of the third target: Anthropic `message_delta`'s `usage`, OpenAI Chat's `choices`.
const EXTRA: usize = 2;

/// A model name longer than this is not a model name.
const MODEL_CAP: Cap = Cap::Small(1024);

const JSON_TARGETS: &[Target] = &[
    Target {
        path: &[b"model"],
        cap: MODEL_CAP,
    },
    Target {
        path: &[b"usage"],
        cap: Cap::Value,
    },
];

const CHAT_SSE_TARGETS: &[Target] = &[
    Target {
        path: &[b"model"],
        cap: MODEL_CAP,
    },
    Target {
        path: &[b"usage"],
        cap: Cap::Value,
    },
    // Only whether it is `[]` matters: anything longer is not empty.
    Target {
        path: &[b"choices"],
        cap: Cap::Small(16),
    },
];

const RESPONSES_SSE_TARGETS: &[Target] = &[
    Target {
        path: &[b"response", b"model"],
        cap: MODEL_CAP,
    },
    Target {
        path: &[b"response", b"usage"],
        cap: Cap::Value,
    },
];

const MESSAGES_SSE_TARGETS: &[Target] = &[
    Target {
        path: &[b"message", b"model"],
        cap: MODEL_CAP,
    },
    Target {
        path: &[b"message", b"usage"],
        cap: Cap::Value,
    },
    Target {
        path: &[b"usage"],
        cap: Cap::Value,
    },
];

/// The state of an SSE parse between events.
#[derive(Debug)]
struct SseState {
    /// The current event's data.
    scanner: PathScanner,
    usage: Usage,
    events: u64,
}

impl SseState {
    /// The current event is complete: take what it reports.
    fn complete(&mut self, range: Range<u64>) -> SseEvent {
        self.events = self.events.saturating_add(1);
        let api = self.usage.api;
        if self.usage.model.is_none() {
            self.usage.model = read_model(self.scanner.capture(MODEL));
        }
        let mut openai_usage_only = false;
        if let Some(update) = read_usage(api, self.scanner.capture(USAGE)) {
            self.usage.merge(&update);
            openai_usage_only = api == Api::OpenAiChat
                && matches!(self.scanner.capture(EXTRA), Capture::Complete(c) if c.trim_ascii() == b"[]");
        }
        if api == Api::AnthropicMessages
            && let Some(update) = read_usage(api, self.scanner.capture(EXTRA))
        {
            self.usage.merge(&update);
        }
        self.scanner.reset();
        SseEvent {
            range,
            openai_usage_only,
        }
    }
}

/// An [`EventSink`] for one `feed_with` call: the parse state and the caller's callback.
struct Dispatch<'a, F> {
    state: &'a mut SseState,
    on_event: &'a mut F,
}

impl<F: FnMut(&SseEvent)> EventSink for Dispatch<'_, F> {
    fn data(&mut self, bytes: &[u8]) {
        self.state.scanner.feed(bytes);
    }

    fn dispatch(&mut self, range: Range<u64>) {
        let event = self.state.complete(range);
        (self.on_event)(&event);
    }

    fn discard(&mut self) {
        self.state.scanner.reset();
    }
}

#[derive(Debug)]
enum Mode {
    Json(PathScanner),
    Sse(SseReader, SseState),
}

/// Reads the usage report of one response body fed chunk by chunk. Create it from the API
/// the request went to and whether the response is an event stream, [`UsageParser::feed`]
/// every body chunk in order, then [`UsageParser::finish`].
#[derive(Debug)]
pub struct UsageParser {
    api: Api,
    mode: Mode,
    bytes: u64,
}

impl UsageParser {
    /// A parser for a response of `api`: an SSE stream when `streaming`, else one JSON
    /// document. Default [`Limits`].
    pub fn new(api: Api, streaming: bool) -> Self {
        Self::with_limits(api, streaming, Limits::default())
    }

    /// A parser for a response of `api` whose `content-type` is `content_type`: SSE when it
    /// is `text/event-stream` ([`is_event_stream`]), JSON otherwise.
    pub fn for_content_type(api: Api, content_type: &[u8]) -> Self {
        Self::new(api, is_event_stream(content_type))
    }

    /// [`UsageParser::new`] with explicit limits.
    pub fn with_limits(api: Api, streaming: bool, limits: Limits) -> Self {
        let cap = limits.max_value_bytes;
        let mode = if streaming {
            let targets = match api {
                Api::OpenAiChat => CHAT_SSE_TARGETS,
                Api::OpenAiResponses => RESPONSES_SSE_TARGETS,
                Api::AnthropicMessages => MESSAGES_SSE_TARGETS,
            };
            Mode::Sse(
                SseReader::new(),
                SseState {
                    scanner: PathScanner::new(targets, cap),
                    usage: Usage::empty(api),
                    events: 0,
                },
            )
        } else {
            Mode::Json(PathScanner::new(JSON_TARGETS, cap))
        };
        Self {
            api,
            mode,
            bytes: 0,
        }
    }

    /// The API this parser reads.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether the body is read as an SSE stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self.mode, Mode::Sse(..))
    }

    /// Reads the next body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.feed_with(chunk, |_| {});
    }

    /// Reads the next body chunk and calls `on_event` for every SSE event it completes, in
    /// stream order (never for JSON bodies). An event whose blank line ends in a bare `\r` is
    /// reported with the next chunk, once it is known whether a `\n` follows (or by
    /// [`UsageParser::finish_with`]).
    pub fn feed_with(&mut self, chunk: &[u8], mut on_event: impl FnMut(&SseEvent)) {
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        match &mut self.mode {
            Mode::Json(scanner) => scanner.feed(chunk),
            Mode::Sse(reader, state) => {
                let mut sink = Dispatch {
                    state,
                    on_event: &mut on_event,
                };
                reader.feed(chunk, &mut sink);
            }
        }
    }

    /// SSE: the offset in the body of the first byte of the event being read, when one has
    /// begun and is not complete yet. Bytes from there on may belong to an event reported
    /// later (a filter that strips events holds them back). `None` for JSON bodies.
    pub fn pending_event_start(&self) -> Option<u64> {
        match &self.mode {
            Mode::Json(_) => None,
            Mode::Sse(reader, _) => reader.pending_event_start(),
        }
    }

    /// Counters of the parse so far.
    pub fn stats(&self) -> ParseStats {
        let (events, dropped_values) = match &self.mode {
            Mode::Json(scanner) => (0, scanner.overflows()),
            Mode::Sse(_, state) => (state.events, state.scanner.overflows()),
        };
        ParseStats {
            bytes: self.bytes,
            events,
            dropped_values,
        }
    }

    /// The body ended: what it reported, or `None` when nothing could be read (no usage and
    /// no model). SSE: an event cut off by the end of the stream still counts when its data
    /// holds complete values.
    pub fn finish(self) -> Option<Usage> {
        self.finish_with(|_| {})
    }

    /// [`UsageParser::finish`], calling `on_event` for the SSE event the end of the body
    /// completes, if any: one whose blank line ended in a bare `\r`, or one cut off without
    /// its blank line (its range then ends at the end of the body).
    pub fn finish_with(self, mut on_event: impl FnMut(&SseEvent)) -> Option<Usage> {
        let usage = match self.mode {
            Mode::Json(scanner) => {
                let mut usage = Usage::empty(self.api);
                usage.model = read_model(scanner.capture(MODEL));
                if let Some(update) = read_usage(self.api, scanner.capture(USAGE)) {
                    usage.merge(&update);
                }
                usage
            }
            Mode::Sse(mut reader, mut state) => {
                reader.finish(&mut Dispatch {
                    state: &mut state,
                    on_event: &mut on_event,
                });
                state.usage
            }
        };
        (!usage.is_empty()).then_some(usage)
    }
}

/// The model name in a captured JSON string.
fn read_model(capture: Capture<'_>) -> Option<String> {
    let Capture::Complete(raw) = capture else {
        return None;
    };
    let doc = Document::parse(raw, 1).ok()?;
    let name = doc.root().decode_str().ok()?;
    (!name.is_empty()).then(|| name.into_owned())
}

/// The token figures of a captured `usage` object (`None` unless it is one).
fn read_usage(api: Api, capture: Capture<'_>) -> Option<Usage> {
    let Capture::Complete(raw) = capture else {
        return None;
    };
    // Most stream events say `"usage": null`: not worth a parse.
    if raw.first() != Some(&b'{') {
        return None;
    }
    let doc = Document::parse(raw, DEFAULT_MAX_DEPTH).ok()?;
    let usage = doc.root();
    if usage.kind() != Kind::Object {
        return None;
    }
    let field = |name: &str| count(usage.get(name));
    let mut out = Usage::empty(api);
    match api.provider() {
        Provider::OpenAi => {
            let details = ["prompt_tokens_details", "input_tokens_details"]
                .into_iter()
                .filter_map(|name| usage.get(name))
                .find(|d| d.kind() == Kind::Object);
            let detail = |name: &str| details.and_then(|d| count(d.get(name)));
            out.input_tokens = field("prompt_tokens").or_else(|| field("input_tokens"));
            out.output_tokens = field("completion_tokens").or_else(|| field("output_tokens"));
            out.cache_read_tokens =
                prefer_nonzero(field("cache_read_input_tokens"), detail("cached_tokens"));
            out.cache_write_tokens = prefer_nonzero(
                field("cache_creation_input_tokens"),
                detail("cache_write_tokens"),
            );
        }
        Provider::Anthropic => {
            out.input_tokens = field("input_tokens");
            out.output_tokens = field("output_tokens");
            out.cache_read_tokens = field("cache_read_input_tokens");
            out.cache_write_tokens = field("cache_creation_input_tokens");
            if let Some(ttl) = usage
                .get("cache_creation")
                .filter(|c| c.kind() == Kind::Object)
            {
                out.cache_write_5m_tokens = count(ttl.get("ephemeral_5m_input_tokens"));
                out.cache_write_1h_tokens = count(ttl.get("ephemeral_1h_input_tokens"));
            }
        }
    }
    Some(out)
}

/// `top` when it is non-zero, else `details`, else `top` (a reported 0).
fn prefer_nonzero(top: Option<u64>, details: Option<u64>) -> Option<u64> {
    match top {
        Some(n) if n > 0 => top,
        _ => details.or(top),
    }
}

/// A token count: a JSON number, negatives clamped to 0, fractions truncated. `None` for
/// anything else (absent, `null`, strings, ...).
fn count(value: Option<Value<'_>>) -> Option<u64> {
    let value = value?;
    if value.kind() != Kind::Number {
        return None;
    }
    let raw = value.raw();
    if let Ok(n) = raw.parse::<u64>() {
        return Some(n);
    }
    if raw.starts_with('-') {
        return Some(0);
    }
    // Too large for u64, or with a fraction or exponent (`as` saturates).
    raw.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unit_tests {
    use super::*;

    fn usage(api: Api) -> Usage {
        Usage::empty(api)
    }

    #[test]
    fn content_types() {
        assert!(is_event_stream(b"text/event-stream"));
        assert!(is_event_stream(b"Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream(b"application/json"));
        assert!(!is_event_stream(b""));
        assert!(
            UsageParser::for_content_type(Api::OpenAiChat, b"text/event-stream").is_streaming()
        );
        assert!(
            !UsageParser::for_content_type(Api::OpenAiChat, b"application/json").is_streaming()
        );
    }

    #[test]
    fn counts_are_clamped_and_typed() {
        let doc = Document::parse(
            br#"{"a":5,"b":-3,"c":7.9,"d":"5","e":null,"f":1e3,"g":99999999999999999999999}"#,
            8,
        )
        .unwrap();
        let root = doc.root();
        let get = |k: &str| count(root.get(k));
        assert_eq!(get("a"), Some(5));
        assert_eq!(get("b"), Some(0));
        assert_eq!(get("c"), Some(7));
        assert_eq!(get("d"), None);
        assert_eq!(get("e"), None);
        assert_eq!(get("f"), Some(1000));
        assert_eq!(get("g"), Some(u64::MAX));
        assert_eq!(get("missing"), None);
    }

    #[test]
    fn openai_semantics_follow_metrics_spec_section_5() {
        // 1000 prompt tokens of which 800 cached: 200 uncached, write inferred = 200.
        let u = Usage {
            model: Some("gpt-4o".into()),
            input_tokens: Some(1000),
            output_tokens: Some(50),
            cache_read_tokens: Some(800),
            ..usage(Api::OpenAiChat)
        };
        assert_eq!(u.uncached_input_tokens(), Some(200));
        assert_eq!(u.total_input_tokens(), Some(1000));
        assert_eq!(
            u.cache_figures(),
            CacheFigures {
                read: 800,
                write: 200,
                write_5m: 0,
                write_1h: 0,
                uncached: 200,
                output: 50
            }
        );
        // A reported non-zero write wins over the inference.
        let reported = Usage {
            cache_write_tokens: Some(300),
            ..u.clone()
        };
        assert_eq!(reported.cache_figures().write, 300);
        // Nothing reported: all zero.
        assert_eq!(
            usage(Api::OpenAiResponses).cache_figures(),
            CacheFigures::default()
        );
        assert_eq!(usage(Api::OpenAiResponses).uncached_input_tokens(), None);
        // Read larger than input (malformed): uncached saturates at 0.
        let odd = Usage {
            input_tokens: Some(10),
            cache_read_tokens: Some(20),
            ..usage(Api::OpenAiChat)
        };
        assert_eq!(odd.uncached_input_tokens(), Some(0));
    }

    #[test]
    fn anthropic_semantics_follow_metrics_spec_section_5() {
        // The §16 sample request: read 40 / write 60 (5m 10, 1h 50), uncached 20, output 20.
        let u = Usage {
            input_tokens: Some(20),
            output_tokens: Some(20),
            cache_read_tokens: Some(40),
            cache_write_tokens: Some(60),
            cache_write_5m_tokens: Some(10),
            cache_write_1h_tokens: Some(50),
            ..usage(Api::AnthropicMessages)
        };
        assert_eq!(u.uncached_input_tokens(), Some(20));
        assert_eq!(u.total_input_tokens(), Some(120));
        assert_eq!(
            u.cache_figures(),
            CacheFigures {
                read: 40,
                write: 60,
                write_5m: 10,
                write_1h: 50,
                uncached: 20,
                output: 20
            }
        );
        let only_read = Usage {
            cache_read_tokens: Some(7),
            ..usage(Api::AnthropicMessages)
        };
        assert_eq!(only_read.total_input_tokens(), Some(7));
        assert_eq!(only_read.uncached_input_tokens(), None);
        assert_eq!(usage(Api::AnthropicMessages).total_input_tokens(), None);
    }

    #[test]
    fn usage_only_chunk_helper() {
        assert!(is_openai_usage_only_chunk(
            br#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!is_openai_usage_only_chunk(
            br#"{"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!is_openai_usage_only_chunk(
            br#"{"choices":[],"usage":null}"#
        ));
        assert!(!is_openai_usage_only_chunk(b"[DONE]"));
        assert!(!is_openai_usage_only_chunk(b""));
    }
}
