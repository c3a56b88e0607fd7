//! The request-level entry point: finds the tool outputs of an OpenAI Chat, OpenAI Responses
//! or Anthropic Messages body with the span parser, decides for each one (eligibility,
//! replay, compression, token gate), and splices the replacements into the original bytes by
//! byte range. Every other byte of the body is forwarded as the client sent it.
//!
//! Eligible: tool outputs only (OpenAI `role:"tool"`/`"function"` content, Anthropic
//! `tool_result` string content or text parts, Responses `*_call_output` string `output`);
//! never system, tools, user or assistant text, thinking, or images. Left intact: outputs
//! below `min_block_bytes`, outputs of protected tools, short error outputs, and text that
//! already carries a marker. A block is replaced only when the result has strictly fewer
//! tokens.
//!
//! Prompt caches (DESIGN.md decision 5): a tool output's bytes are a pure function of the
//! output, the conversation up to and including the message that carries it (its relevance
//! query is the latest user text at that point, never a later one), the configuration and the
//! tokenizer. So every later turn, in any process of a fleet and after any restart, sends the
//! same bytes for it with no shared state. The [`ReplayStore`] keeps each decision under those
//! same inputs only to save the work of compressing it again: its absence changes no byte.
//!
//! Along the way it finds the waste signals of the outputs the request adds (those after the
//! last model turn; [`super::waste`]) and counts earlier outputs it had to compress again for
//! want of a replay record ([`Outcome::recompressed_history`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use super::block::compress_block;
use super::config::PipelineConfig;
use super::detect::ContentKind;
use super::hash::ContentHash;
use super::marker::contains_marker;
use super::relevance::Query;
use super::settle::{OwedCount, Unsettled, count_for_gate, examine_new_output, gate_passes};
use super::signals::distinct_error_roots;
use super::store::{
    MemoryStore, OmittedStore, ReplayEntry, ReplayStore, Sent, replay_key, waste_key,
};
use super::waste::{RereadTracker, WasteTokens};
use crate::api::Api;
use crate::fail_open::FailOpen;
use crate::json::{Document, ErrorKind, Kind, Value, encode_string};
use crate::shape::{object, required_array, string_field};
use crate::tokens::{Counted, Exactness, Tokenizer};

/// What the pipeline needs from its host: the two shared stores.
pub trait PipelineHost {
    /// Where originals of lossy compressions go.
    fn omitted(&mut self) -> &mut dyn OmittedStore;
    /// Where decisions are kept for replay.
    fn replay(&mut self) -> &mut dyn ReplayStore;
    /// A clock in microseconds for transform timings; `None` (the default) times nothing.
    fn now_us(&self) -> Option<u64> {
        None
    }
    /// How long one transform (a strategy, or `token_count`) took on one tool output.
    fn timed(&mut self, _transform: &'static str, _us: u64) {}
}

/// Runs `f`, telling `host` how long it took under `transform` (when it has a clock).
pub(crate) fn timed<T>(
    host: &mut dyn PipelineHost,
    transform: &'static str,
    f: impl FnOnce() -> T,
) -> T {
    let start = host.now_us();
    let out = f();
    if let (Some(start), Some(end)) = (start, host.now_us()) {
        host.timed(transform, end.saturating_sub(start));
    }
    out
}

/// A [`PipelineHost`] in memory, for tests and the component.
#[derive(Debug, Clone)]
pub struct MemoryHost {
    /// Originals of lossy compressions.
    pub omitted: MemoryStore,
    /// Replay decisions.
    pub replay: MemoryStore,
}

impl MemoryHost {
    /// Stores with these byte budgets.
    pub fn new(omitted_budget: usize, replay_budget: usize) -> MemoryHost {
        MemoryHost {
            omitted: MemoryStore::new(omitted_budget),
            replay: MemoryStore::new(replay_budget),
        }
    }
}

impl Default for MemoryHost {
    fn default() -> Self {
        Self::new(64 << 20, 64 << 20)
    }
}

impl PipelineHost for MemoryHost {
    fn omitted(&mut self) -> &mut dyn OmittedStore {
        &mut self.omitted
    }

    fn replay(&mut self) -> &mut dyn ReplayStore {
        &mut self.replay
    }
}

/// What was decided for one tool output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Replaced by a compressed form.
    Compressed,
    /// Replaced by the bytes sent for the same original on an earlier request.
    Replayed,
    /// Forwarded unchanged because it was forwarded unchanged before.
    ReplayedUnchanged,
    /// Shorter than `min_block_bytes`.
    TooSmall,
    /// The output of a protected tool.
    ProtectedTool,
    /// A short error output, kept whole for the agent to recover.
    ErrorOutput,
    /// Already carries a marker.
    AlreadyCompressed,
    /// The compressor found nothing to change.
    NoChange,
    /// The compressed form did not have fewer tokens.
    NoGain,
    /// The string holds a lone surrogate escape and has no text to compress.
    Undecodable,
}

impl Decision {
    /// Every decision, in metric-definition order.
    pub const ALL: [Decision; 10] = [
        Self::Compressed,
        Self::Replayed,
        Self::ReplayedUnchanged,
        Self::TooSmall,
        Self::ProtectedTool,
        Self::ErrorOutput,
        Self::AlreadyCompressed,
        Self::NoChange,
        Self::NoGain,
        Self::Undecodable,
    ];

    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compressed => "compressed",
            Self::Replayed => "replayed",
            Self::ReplayedUnchanged => "replayed_unchanged",
            Self::TooSmall => "too_small",
            Self::ProtectedTool => "protected_tool",
            Self::ErrorOutput => "error_output",
            Self::AlreadyCompressed => "already_compressed",
            Self::NoChange => "no_change",
            Self::NoGain => "no_gain",
            Self::Undecodable => "undecodable",
        }
    }

    /// Whether the block's bytes changed.
    pub fn replaced(self) -> bool {
        matches!(self, Self::Compressed | Self::Replayed)
    }
}

/// The manifest entry of one tool output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReport {
    /// Where it is, e.g. `messages[3].content[0].content`.
    pub location: String,
    /// The tool that produced it, when the request names it.
    pub tool: Option<String>,
    /// The detected kind, when detection ran.
    pub kind: Option<ContentKind>,
    /// The strategy that ran, or `none`.
    pub strategy: &'static str,
    /// What was decided.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// Content hash of the original text.
    pub hash: ContentHash,
    /// Bytes of the original text.
    pub bytes_before: usize,
    /// Bytes of the text sent.
    pub bytes_after: usize,
    /// Tokens of the original, when counted (only blocks with a candidate are counted).
    pub tokens_before: Option<u64>,
    /// Tokens of the text sent, when counted.
    pub tokens_after: Option<u64>,
    /// When the decision on it started and how long it took, µs (when the host has a clock).
    pub timing: Option<BlockTiming>,
}

/// When the decision on one tool output started (µs since the Unix epoch, the host's clock)
/// and how long it took, replay lookup, compression and token counts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTiming {
    /// Start, µs since the Unix epoch.
    pub start_us: u64,
    /// Duration, µs.
    pub elapsed_us: u64,
}

/// The result of [`compress_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The new body, or `None` to forward the original unchanged.
    pub body: Option<Vec<u8>>,
    /// The request's `model`, if any.
    pub model: Option<String>,
    /// How tokens were counted.
    pub tokenizer: Tokenizer,
    /// One entry per tool output, in document order.
    pub blocks: Vec<BlockReport>,
    /// Size of the original body.
    pub bytes_before: u64,
    /// Size of the body sent.
    pub bytes_after: u64,
    /// Messages (or Responses input items) in the conversation.
    pub message_count: usize,
    /// A streaming Chat Completions request without `stream_options`: the provider will not
    /// report usage unless `stream_options.include_usage` is set.
    pub stream_without_usage: bool,
    /// Waste found in the tool outputs this request adds (see [`super::waste`]).
    pub waste: WasteTokens,
    /// Tool outputs already in the conversation (before the last model turn) that this request
    /// compressed afresh, with no replay record (a restart, another process of the fleet).
    /// Compression is a pure function of the conversation prefix, so their bytes are the ones
    /// sent before: this measures work the replay cache did not save, not a cache bust.
    pub recompressed_history: usize,
}

impl Outcome {
    /// Whether token figures are exact or estimated.
    pub fn exactness(&self) -> Exactness {
        self.tokenizer.exactness()
    }

    /// Tokens saved over the replaced blocks (this request's, replays included).
    pub fn tokens_saved(&self) -> u64 {
        self.blocks
            .iter()
            .filter(|b| b.decision.replaced())
            .map(|b| {
                b.tokens_before
                    .unwrap_or(0)
                    .saturating_sub(b.tokens_after.unwrap_or(0))
            })
            .sum()
    }

    /// Number of blocks whose bytes changed.
    pub fn replaced_blocks(&self) -> usize {
        self.blocks.iter().filter(|b| b.decision.replaced()).count()
    }
}

/// What a body parser found besides the tool outputs.
#[derive(Default)]
struct Scan {
    /// Every user text that can serve as a relevance query, with the position of its message
    /// (or Responses input item), in document order.
    queries: Vec<(usize, String)>,
    /// Position of the last message the model produced, if any.
    last_model_turn: Option<usize>,
    /// Messages (or Responses input items) in the conversation.
    messages: usize,
}

impl Scan {
    /// Records the user text of the message at `position`.
    fn user_text(&mut self, position: usize, text: String) {
        self.queries.push((position, text));
    }

    /// Which user text is the relevance query of a tool output in the message at `position`:
    /// the latest one up to and including that message, never a later one (decision 5: an
    /// output's bytes depend only on the conversation prefix that carries it, so every later
    /// turn, in any process, compresses it the same way).
    fn query_index(&self, position: usize) -> Option<usize> {
        self.queries
            .partition_point(|(at, _)| *at <= position)
            .checked_sub(1)
    }
}

/// The relevance queries of a request and their replay fingerprints, each made once, when a
/// tool output first needs it: a later turn whose outputs are all replayed needs only the
/// fingerprints.
struct Queries<'s> {
    scan: &'s Scan,
    base: ContentHash,
    fingerprints: Vec<Option<ContentHash>>,
    built: Vec<Option<Query>>,
    /// The query (and fingerprint) of a tool output with no user text before it.
    empty: (Query, ContentHash),
}

impl<'s> Queries<'s> {
    /// The queries of `scan`; their fingerprints extend `base` (configuration and tokenizer).
    fn new(scan: &'s Scan, base: ContentHash) -> Self {
        Queries {
            scan,
            base,
            fingerprints: vec![None; scan.queries.len()],
            built: vec![None; scan.queries.len()],
            empty: (Query::default(), Self::fingerprint(base, "")),
        }
    }

    /// The replay fingerprint of an output compressed with the query of `text`: the same
    /// original under another query may keep other rows, so it is another entry.
    fn fingerprint(base: ContentHash, text: &str) -> ContentHash {
        ContentHash::of_parts(&[&base.0, b"query", text.as_bytes()])
    }

    /// The replay fingerprint of a tool output in the message at `position`.
    fn fingerprint_at(&mut self, position: usize) -> ContentHash {
        let base = self.base;
        let Some(i) = self.scan.query_index(position) else {
            return self.empty.1;
        };
        match (self.fingerprints.get_mut(i), self.scan.queries.get(i)) {
            (Some(slot), Some((_, text))) => {
                *slot.get_or_insert_with(|| Self::fingerprint(base, text))
            }
            _ => self.empty.1,
        }
    }

    /// The relevance query of a tool output in the message at `position`.
    fn query_at(&mut self, position: usize) -> &Query {
        let Some(i) = self.scan.query_index(position) else {
            return &self.empty.0;
        };
        match (self.built.get_mut(i), self.scan.queries.get(i)) {
            (Some(slot), Some((_, text))) => slot.get_or_insert_with(|| Query::new(text)),
            _ => &self.empty.0,
        }
    }
}

/// A tool output's text, decoded when first needed: a later turn that replays the output never
/// decodes it.
struct OutputText<'d> {
    value: Value<'d>,
    /// `Some(None)` once decoding failed (a lone surrogate escape).
    decoded: Option<Option<Cow<'d, str>>>,
}

impl<'d> OutputText<'d> {
    fn new(value: Value<'d>) -> Self {
        OutputText {
            value,
            decoded: None,
        }
    }

    /// The decoded text; `None` when the string has no Unicode text.
    fn get(&mut self) -> Option<&str> {
        let value = self.value;
        self.decoded
            .get_or_insert_with(|| value.decode_str().ok())
            .as_deref()
    }
}

/// A tool output found in the body.
struct Slot<'d> {
    value: Value<'d>,
    /// Index of its message (or Responses input item): re-reads are measured in these.
    position: usize,
    location: String,
    tool: Option<String>,
    is_error: bool,
}

/// Compresses the tool outputs of a request body of `api`. Errors say why the original must be
/// forwarded unchanged: [`FailOpen::NotJson`] (invalid or too deep JSON),
/// [`FailOpen::UnexpectedShape`] (not a request of `api`).
pub fn compress_request(
    api: Api,
    body: &[u8],
    config: &PipelineConfig,
    host: &mut dyn PipelineHost,
) -> Result<Outcome, FailOpen> {
    run(api, body, config, host, None)
}

/// [`compress_request`] with the accounting no byte depends on left owed: the same body, and
/// the same outcome once [`Unsettled::settle`] has run (the exact original counts of outputs
/// whose token gate a prefix settled, their replay records, the new outputs' waste signals).
/// The replay record of an output is written when settled, so a copy of it later in the same
/// request is decided again (to the same bytes) rather than replayed.
pub fn compress_request_unsettled(
    api: Api,
    body: &[u8],
    config: &PipelineConfig,
    host: &mut dyn PipelineHost,
) -> Result<(Outcome, Unsettled), FailOpen> {
    let mut unsettled = Unsettled::default();
    let outcome = run(api, body, config, host, Some(&mut unsettled))?;
    Ok((outcome, unsettled))
}

/// The request path; with `unsettled`, what can wait is owed there instead of done.
fn run(
    api: Api,
    body: &[u8],
    config: &PipelineConfig,
    host: &mut dyn PipelineHost,
    mut unsettled: Option<&mut Unsettled>,
) -> Result<Outcome, FailOpen> {
    let doc = Document::parse_bounded(body, config.max_json_depth, config.max_json_values)
        .map_err(|e| match e.kind {
            ErrorKind::TooManyValues => FailOpen::TooLarge,
            _ => FailOpen::NotJson,
        })?;
    let root = doc.root();
    if root.kind() != Kind::Object {
        return Err(FailOpen::UnexpectedShape);
    }
    let model = match root.get("model") {
        Some(m) if m.kind() == Kind::String => m.decode_str().ok().map(|m| m.into_owned()),
        _ => None,
    };
    let tokenizer = match (&model, api) {
        (Some(model), _) => Tokenizer::for_model(model),
        (None, Api::AnthropicMessages) => Tokenizer::Anthropic,
        (None, _) => Tokenizer::for_model(""),
    };
    let stream_without_usage = api == Api::OpenAiChat
        && root.get("stream").is_some_and(|s| s.raw() == "true")
        && root.get("stream_options").is_none();
    let mut slots = Vec::new();
    let scan = match api {
        Api::OpenAiChat => openai_chat(root, &mut slots)?,
        Api::AnthropicMessages => anthropic(root, &mut slots)?,
        Api::OpenAiResponses => openai_responses(root, &mut slots)?,
    };
    let mut blocks = Vec::with_capacity(slots.len());
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    let mut waste = WasteTokens::default();
    let mut recompressed_history = 0;
    // Most requests (chat turns without tool outputs) stop here: no query, no fingerprint.
    if !slots.is_empty() {
        // Replays are per tokenizer too: the token gate and the reported figures depend on it.
        let base = ContentHash::of_parts(&[
            &config.fingerprint().0,
            tokenizer.exactness().as_str().as_bytes(),
        ]);
        let mut queries = Queries::new(&scan, base);
        let mut rereads = RereadTracker::default();
        for slot in slots {
            let mut text = OutputText::new(slot.value);
            let started = host.now_us();
            let mut key = None;
            let mut owed_reason = None;
            let (mut report, replacement) = decide(
                &slot,
                &mut text,
                config,
                &mut queries,
                tokenizer,
                host,
                (&mut key, unsettled.is_some().then_some(&mut owed_reason)),
            );
            let index = blocks.len();
            // Only an output whose count is owed needs its text (a replayed one is never decoded).
            if let Some(owed) = owed_reason
                && let (Some(unsettled), Some(key), Some(candidate)) =
                    (unsettled.as_deref_mut(), key, replacement.as_ref())
                && let Some(text) = text.get()
            {
                unsettled.owe_count(index, text, key, candidate.clone(), owed);
            }
            if let (Some(start_us), Some(end)) = (started, host.now_us()) {
                report.timing = Some(BlockTiming {
                    start_us,
                    elapsed_us: end.saturating_sub(start_us),
                });
            }
            // New outputs come after the last model turn.
            let fresh = scan.last_model_turn.is_none_or(|turn| slot.position > turn);
            if !fresh && report.decision == Decision::Compressed {
                recompressed_history += 1;
            }
            // An undecodable output has no text to examine.
            if config.waste_signals && report.decision != Decision::Undecodable {
                let marked = replacement.as_deref().is_some_and(contains_marker);
                let counted = report.tokens_before;
                waste.merge(
                    &rereads.observe(report.hash.0, slot.position, fresh, marked, || {
                        counted.unwrap_or_else(|| {
                            text.get().map_or(0, |text| tokenizer.count(text).tokens)
                        })
                    }),
                );
                if fresh {
                    // A replayed output's signals were kept when it was first replayed as new.
                    let replayed = matches!(
                        report.decision,
                        Decision::Replayed | Decision::ReplayedUnchanged
                    );
                    let cache = key.filter(|_| replayed).map(waste_key);
                    let cached = cache
                        .and_then(|k| host.replay().get(k))
                        .and_then(|entry| WasteTokens::decode(&entry));
                    let parsed_json = report.kind == Some(ContentKind::Json);
                    let found = match (cached, unsettled.as_deref_mut()) {
                        (Some(found), _) => found,
                        (None, Some(unsettled)) => {
                            let text = text.get().unwrap_or_default();
                            unsettled.owe_waste(index, text, parsed_json, cache);
                            WasteTokens::default()
                        }
                        (None, None) => {
                            let text = text.get().unwrap_or_default();
                            examine_new_output(host, tokenizer, text, counted, parsed_json, cache)
                        }
                    };
                    waste.merge(&found);
                }
            }
            if let Some(text) = replacement {
                replacements.push((slot.value.span(), encode_string(&text)));
            }
            blocks.push(report);
        }
    }
    let before = to_u64(body.len());
    let new_body = if replacements.is_empty() {
        None
    } else {
        Some(splice(body, &replacements)?)
    };
    let after = new_body.as_ref().map_or(before, |b| to_u64(b.len()));
    Ok(Outcome {
        body: new_body,
        model,
        tokenizer,
        blocks,
        bytes_before: before,
        bytes_after: after,
        message_count: scan.messages,
        stream_without_usage,
        waste,
        recompressed_history,
    })
}

/// Decides one tool output under its relevance query and replay fingerprint; returns its
/// report and the replacement text, if any, and sets `key_out` to its replay key when it got
/// that far. With `owed_out`, a gate a prefix of the original settles is not counted further:
/// the report then lacks `tokens_before`, the replay record is not written, and `owed_out` is
/// set to the reason's text after the count and the prefix counted so far (see
/// [`super::settle`]).
///
/// A later turn's output is looked up by its raw bytes before anything else: a hit needs
/// neither decoding nor a content hash, both kept in the entry. Only outputs that could have
/// been stored are looked up (not of a protected tool, not too small even before decoding), so
/// a hit reports what the full path would.
fn decide(
    slot: &Slot<'_>,
    text: &mut OutputText<'_>,
    config: &PipelineConfig,
    queries: &mut Queries<'_>,
    tokenizer: Tokenizer,
    host: &mut dyn PipelineHost,
    (key_out, owed_out): (&mut Option<ContentHash>, Option<&mut Option<OwedCount>>),
) -> (BlockReport, Option<String>) {
    let raw = slot.value.raw();
    let mut report = BlockReport {
        location: slot.location.clone(),
        tool: slot.tool.clone(),
        kind: None,
        strategy: "none",
        decision: Decision::NoChange,
        reason: String::new(),
        hash: ContentHash([0; 8]),
        bytes_before: raw.len().saturating_sub(2),
        bytes_after: raw.len().saturating_sub(2),
        tokens_before: None,
        tokens_after: None,
        timing: None,
    };
    let finish = |mut report: BlockReport, decision: Decision, reason: String| {
        report.decision = decision;
        report.reason = reason;
        (report, None)
    };
    let protected_tool = slot.tool.as_deref().filter(|t| config.is_protected_tool(t));
    // A decoded text is never longer than its escaped form (the quotes excluded).
    let storable =
        protected_tool.is_none() && raw.len().saturating_sub(2) >= config.min_block_bytes;
    let key = storable.then(|| replay_key(queries.fingerprint_at(slot.position), raw.as_bytes()));
    *key_out = key;
    if let Some(entry) = key
        .and_then(|key| host.replay().get(key))
        .and_then(|e| ReplayEntry::decode(&e))
    {
        report.hash = entry.hash;
        let original_len = usize::try_from(entry.original_len).unwrap_or(usize::MAX);
        report.bytes_before = original_len;
        report.bytes_after = original_len;
        return match entry.sent {
            Sent::Unchanged => finish(
                report,
                Decision::ReplayedUnchanged,
                "forwarded unchanged before".into(),
            ),
            Sent::Replaced {
                text: sent,
                tokens_before,
                tokens_after,
            } => {
                // The original is kept again for this request's host (its retrieval scope may
                // differ from the one that compressed it first) unless it holds it already.
                if contains_marker(&sent)
                    && !host.omitted().contains(report.hash)
                    && let Some(text) = text.get()
                {
                    host.omitted().put(report.hash, text.as_bytes());
                }
                report.decision = Decision::Replayed;
                report.reason = "same bytes as sent before".into();
                report.strategy = "replay";
                report.bytes_after = sent.len();
                report.tokens_before = Some(tokens_before);
                report.tokens_after = Some(tokens_after);
                (report, Some(sent))
            }
        };
    }
    let Some(text) = text.get() else {
        return finish(
            report,
            Decision::Undecodable,
            "lone surrogate escape".into(),
        );
    };
    let digest = ContentHash::digest(text.as_bytes());
    report.hash = config.marker_key.marker_hash(&digest);
    report.bytes_before = text.len();
    report.bytes_after = text.len();
    if text.len() < config.min_block_bytes {
        let reason = format!(
            "{} bytes < min_block_bytes {}",
            text.len(),
            config.min_block_bytes
        );
        return finish(report, Decision::TooSmall, reason);
    }
    if let Some(tool) = protected_tool {
        let reason = format!("tool {tool} is protected");
        return finish(report, Decision::ProtectedTool, reason);
    }
    // Always computed above (a text long enough decoded is long enough escaped).
    let key =
        key.unwrap_or_else(|| replay_key(queries.fingerprint_at(slot.position), raw.as_bytes()));
    *key_out = Some(key);
    let (hash, original_len) = (report.hash, to_u64(text.len()));
    let entry_of = move |sent: Sent| {
        ReplayEntry {
            hash,
            original_len,
            sent,
        }
        .encode()
    };
    // The size test first: error roots are a scan of the whole text, and only outputs small
    // enough to be protected need it.
    let protected_size = text.len() <= config.protect_errors_below_bytes;
    if protected_size && (slot.is_error || distinct_error_roots(text) >= 2) {
        let reason = format!(
            "error output of {} bytes <= {}",
            text.len(),
            config.protect_errors_below_bytes
        );
        return finish(report, Decision::ErrorOutput, reason);
    }
    let started = host.now_us();
    let result = compress_block(text, config, queries.query_at(slot.position), report.hash);
    if let (Some(start), Some(end)) = (started, host.now_us()) {
        host.timed(result.strategy, end.saturating_sub(start));
    }
    report.kind = Some(result.kind);
    report.strategy = result.strategy;
    // A work limit that shaped the result is said in every reason below.
    let limited = |reason: String| match &result.limited {
        Some(limit) => format!("{reason}; {limit}"),
        None => reason,
    };
    let unchanged = entry_of(Sent::Unchanged);
    let candidate = match result.text.filter(|c| !c.trim().is_empty() && *c != *text) {
        Some(candidate) => candidate,
        None => {
            let (decision, reason) = if result.strategy == "none:already_compressed" {
                (
                    Decision::AlreadyCompressed,
                    "carries a headroom marker".to_owned(),
                )
            } else {
                host.replay().put(key, &unchanged);
                (
                    Decision::NoChange,
                    limited(format!("{} found nothing to remove", result.kind.as_str())),
                )
            };
            return finish(report, decision, reason);
        }
    };
    let early = owed_out.is_some();
    let (counted, after) = timed(host, "token_count", || {
        let after = tokenizer.count(&candidate).tokens;
        let m = config.min_token_savings;
        (count_for_gate(tokenizer, text, after, m, early), after)
    });
    report.tokens_after = Some(after);
    // A prefix that passes the gate leaves the exact count, the reason's figure and the replay
    // record owed (`owed_out`).
    if let Counted::Whole(before) = counted {
        report.tokens_before = Some(before);
        if !gate_passes(before, after, config.min_token_savings) {
            host.replay().put(key, &unchanged);
            let reason = limited(format!(
                "{after} tokens after >= {before} before (or below min_token_savings)"
            ));
            return finish(report, Decision::NoGain, reason);
        }
    }
    if result.lossy {
        host.omitted().put(report.hash, text.as_bytes());
    }
    report.decision = Decision::Compressed;
    report.bytes_after = candidate.len();
    let tail = compressed_reason_tail(after, result.lossy);
    match (counted, owed_out) {
        (Counted::Whole(before), _) => {
            let entry = entry_of(Sent::Replaced {
                text: candidate.clone(),
                tokens_before: before,
                tokens_after: after,
            });
            host.replay().put(key, &entry);
            report.reason = limited(format!("{before}{tail}"));
        }
        (Counted::AtLeast(_, prefix), Some(owed)) => *owed = Some((limited(tail), prefix)),
        // Only an owed count stops at a prefix.
        (Counted::AtLeast(..), None) => {}
    }
    (report, Some(candidate))
}

/// The reason of a compressed output after its original's count.
fn compressed_reason_tail(after: u64, lossy: bool) -> String {
    let kept = if lossy {
        ", original kept under its hash"
    } else {
        ", lossless"
    };
    format!(" tokens -> {after}{kept}")
}

/// Chat Completions: `role:"tool"` (named through the assistant's `tool_calls`) and legacy
/// `role:"function"` messages.
fn openai_chat<'d>(root: Value<'d>, out: &mut Vec<Slot<'d>>) -> Result<Scan, FailOpen> {
    let messages = required_array(root, "messages")?;
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut scan = Scan::default();
    for (m, message) in messages.enumerate() {
        scan.messages = m + 1;
        let message = object(message)?;
        let role = string_field(message, "role")?;
        if role.as_deref() == Some("assistant") {
            scan.last_model_turn = Some(m);
        }
        if role.as_deref() == Some("assistant")
            && let Some(calls) = message
                .get("tool_calls")
                .filter(|c| c.kind() == Kind::Array)
        {
            {
                for call in calls.elements().filter(|c| c.kind() == Kind::Object) {
                    let id = string_field(call, "id")?;
                    let name = call
                        .get("function")
                        .map(|f| string_field(f, "name"))
                        .transpose()?
                        .flatten();
                    if let (Some(id), Some(name)) = (id, name) {
                        names.insert(id, name);
                    }
                }
            }
        }
        let Some(content) = message.get("content") else {
            continue;
        };
        match role.as_deref() {
            Some("tool") | Some("function") => {
                let tool = if role.as_deref() == Some("function") {
                    string_field(message, "name")?
                } else {
                    string_field(message, "tool_call_id")?.and_then(|id| names.get(&id).cloned())
                };
                let location = format!("messages[{m}].content");
                text_parts(content, m, &location, tool, false, out)?;
            }
            Some("user") => {
                let text = plain_text(content, "text");
                if !text.trim().is_empty() {
                    scan.user_text(m, text);
                }
            }
            _ => {}
        }
    }
    Ok(scan)
}

/// Messages: `tool_result` blocks (named through `tool_use` blocks).
fn anthropic<'d>(root: Value<'d>, out: &mut Vec<Slot<'d>>) -> Result<Scan, FailOpen> {
    let messages = required_array(root, "messages")?;
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut scan = Scan::default();
    for (m, message) in messages.enumerate() {
        scan.messages = m + 1;
        let message = object(message)?;
        let role = string_field(message, "role")?;
        if role.as_deref() == Some("assistant") {
            scan.last_model_turn = Some(m);
        }
        let Some(content) = message.get("content") else {
            continue;
        };
        match content.kind() {
            Kind::String => {
                if role.as_deref() == Some("user") {
                    let text = content
                        .decode_str()
                        .map(|s| s.into_owned())
                        .unwrap_or_default();
                    scan.user_text(m, text);
                }
                continue;
            }
            Kind::Null => continue,
            Kind::Array => {}
            _ => return Err(FailOpen::UnexpectedShape),
        }
        let mut user_text = String::new();
        for (b, block) in content.elements().enumerate() {
            let block = object(block)?;
            match string_field(block, "type")?.as_deref() {
                Some("tool_use") | Some("server_tool_use") => {
                    if let (Some(id), Some(name)) =
                        (string_field(block, "id")?, string_field(block, "name")?)
                    {
                        names.insert(id, name);
                    }
                }
                Some("tool_result") => {
                    let Some(result) = block.get("content") else {
                        continue;
                    };
                    let tool =
                        string_field(block, "tool_use_id")?.and_then(|id| names.get(&id).cloned());
                    let is_error = block.get("is_error").is_some_and(|e| e.raw() == "true");
                    text_parts(
                        result,
                        m,
                        &format!("messages[{m}].content[{b}].content"),
                        tool,
                        is_error,
                        out,
                    )?;
                }
                Some("text") if role.as_deref() == Some("user") => {
                    if let Some(text) = block.get("text").and_then(|t| t.decode_str().ok()) {
                        user_text.push_str(&text);
                        user_text.push('\n');
                    }
                }
                _ => {}
            }
        }
        if !user_text.trim().is_empty() {
            scan.user_text(m, user_text);
        }
    }
    Ok(scan)
}

/// Responses: `input` items whose `type` ends with `_call_output` and whose `output` is a
/// string (named through the matching `*_call` item). The model's items are its calls,
/// its reasoning and its (assistant) messages.
fn openai_responses<'d>(root: Value<'d>, out: &mut Vec<Slot<'d>>) -> Result<Scan, FailOpen> {
    let mut scan = Scan::default();
    let Some(input) = root.get("input") else {
        return Ok(scan);
    };
    match input.kind() {
        Kind::String => {
            let text = input
                .decode_str()
                .map(|s| s.into_owned())
                .unwrap_or_default();
            scan.user_text(0, text);
            scan.messages = 1;
            return Ok(scan);
        }
        Kind::Null => return Ok(scan),
        Kind::Array => {}
        _ => return Err(FailOpen::UnexpectedShape),
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (i, item) in input.elements().enumerate() {
        scan.messages = i + 1;
        let item = object(item)?;
        let kind = string_field(item, "type")?;
        if kind.is_none() || kind.as_deref() == Some("message") {
            let role = string_field(item, "role")?;
            if role.as_deref() == Some("assistant") {
                scan.last_model_turn = Some(i);
            }
            if role.as_deref() == Some("user")
                && let Some(content) = item.get("content")
            {
                let text = plain_text(content, "input_text");
                if !text.trim().is_empty() {
                    scan.user_text(i, text);
                }
            }
            continue;
        }
        let Some(kind) = kind else { continue };
        let call_id = string_field(item, "call_id")?;
        if let Some(stem) = kind.strip_suffix("_call_output") {
            if let Some(output) = item.get("output").filter(|o| o.kind() == Kind::String) {
                let tool = call_id
                    .and_then(|id| names.get(&id).cloned())
                    .or_else(|| Some(stem.to_owned()));
                out.push(Slot {
                    value: output,
                    position: i,
                    location: format!("input[{i}].output"),
                    tool,
                    is_error: false,
                });
            }
        } else {
            if kind.ends_with("_call") || kind == "reasoning" {
                scan.last_model_turn = Some(i);
            }
            if let (Some(stem), Some(id)) = (kind.strip_suffix("_call"), call_id) {
                let name = string_field(item, "name")?.unwrap_or_else(|| stem.to_owned());
                names.insert(id, name);
            }
        }
    }
    Ok(scan)
}

/// Collects a tool output `content`: a string, or the `text` of its `{type:"text"}` parts.
fn text_parts<'d>(
    content: Value<'d>,
    position: usize,
    location: &str,
    tool: Option<String>,
    is_error: bool,
    out: &mut Vec<Slot<'d>>,
) -> Result<(), FailOpen> {
    match content.kind() {
        Kind::String => out.push(Slot {
            value: content,
            position,
            location: location.to_owned(),
            tool,
            is_error,
        }),
        Kind::Null => {}
        Kind::Array => {
            for (p, part) in content.elements().enumerate() {
                let part = object(part)?;
                if string_field(part, "type")?.as_deref() == Some("text") {
                    match part.get("text") {
                        Some(text) if text.kind() == Kind::String => out.push(Slot {
                            value: text,
                            position,
                            location: format!("{location}[{p}].text"),
                            tool: tool.clone(),
                            is_error,
                        }),
                        _ => return Err(FailOpen::UnexpectedShape),
                    }
                }
            }
        }
        _ => return Err(FailOpen::UnexpectedShape),
    }
    Ok(())
}

/// The text of a user `content`: a string, or its parts of type `part_type`, joined.
fn plain_text(content: Value<'_>, part_type: &str) -> String {
    match content.kind() {
        Kind::String => content
            .decode_str()
            .map(|s| s.into_owned())
            .unwrap_or_default(),
        Kind::Array => content
            .elements()
            .filter(|p| p.get("type").is_some_and(|t| t.is_str(part_type)))
            .filter_map(|p| p.get("text").and_then(|t| t.decode_str().ok()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Copies `body` with each range replaced; ranges are in document order and disjoint.
fn splice(body: &[u8], replacements: &[(Range<usize>, String)]) -> Result<Vec<u8>, FailOpen> {
    let mut out = Vec::with_capacity(body.len());
    let mut cursor = 0;
    for (range, replacement) in replacements {
        out.extend_from_slice(body.get(cursor..range.start).ok_or(FailOpen::Internal)?);
        out.extend_from_slice(replacement.as_bytes());
        cursor = range.end;
    }
    out.extend_from_slice(body.get(cursor..).ok_or(FailOpen::Internal)?);
    Ok(out)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
