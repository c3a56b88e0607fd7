//! The filter's metrics: their names, how labels are encoded in those names, and what makes a
//! request count as failed. The glue only defines and increments what this module names.
//!
//! The proxy-wasm ABI has no labels, so a label travels in the name as `name.label.value`
//! (`headroom_requests_by_provider.provider.openai`). Envoy turns it into a Prometheus label
//! with a `stats_tags` regex such as `(\.provider\.([^.]+))`, and the standalone host decodes it
//! the same way; hence label values are restricted to `[a-z0-9_-]` and never contain `.`.

use crate::api::Provider;
use crate::fail_open::FailOpen;
use crate::pipeline::Decision;
use crate::pipeline::waste::WasteSignal;

/// Every request the filter sees.
pub const INBOUND_REQUESTS: &str = "headroom_inbound_requests_total";
/// Requests to a provider API path.
pub const REQUESTS: &str = "headroom_requests_total";
/// Provider requests by provider (label `provider`).
pub const REQUESTS_BY_PROVIDER: &str = "headroom_requests_by_provider";
/// Provider requests that got no upstream response.
pub const REQUESTS_FAILED: &str = "headroom_requests_failed_total";
/// Provider requests forwarded unchanged because of a surprise (label `reason`).
pub const FAIL_OPEN: &str = "headroom_fail_open_total";
/// Bytes removed from request bodies.
pub const BYTES_SAVED: &str = "headroom_bytes_saved_total";
/// Tokens removed from request bodies (exact for OpenAI models, estimated for Anthropic).
pub const TOKENS_SAVED: &str = "headroom_tokens_saved_total";
/// Tool outputs seen, by what the pipeline decided for each (label `decision`).
pub const TOOL_OUTPUTS: &str = "headroom_tool_outputs_total";
/// Lookups on the retrieval endpoint (label `status`: `found` or `missing`).
pub const RETRIEVALS: &str = "headroom_retrievals_total";
/// Provider requests by model (label `model`, bounded).
pub const REQUESTS_BY_MODEL: &str = "headroom_requests_by_model";
/// Provider requests by `X-Headroom-Stack` bucket (label `stack`, bounded).
pub const REQUESTS_BY_STACK: &str = "headroom_requests_by_stack";
/// Input tokens the provider reported (the whole prompt, cached parts included).
pub const TOKENS_INPUT: &str = "headroom_tokens_input_total";
/// Output tokens the provider reported.
pub const TOKENS_OUTPUT: &str = "headroom_tokens_output_total";
/// Requests whose usage shows a prompt-cache read.
pub const REQUESTS_CACHED: &str = "headroom_requests_cached_total";
/// Provider requests answered from the response cache.
pub const RESPONSE_CACHE_HITS: &str = "headroom_response_cache_hits_total";
/// Cacheable provider requests the response cache could not answer.
pub const RESPONSE_CACHE_MISSES: &str = "headroom_response_cache_misses_total";
/// Responses stored into the response cache.
pub const RESPONSE_CACHE_STORES: &str = "headroom_response_cache_stores_total";
/// Langfuse spans of the pipeline accepted by the trace endpoint.
pub const TRACE_SPANS_EXPORTED: &str = "headroom_trace_spans_exported_total";
/// Langfuse spans lost: the queue was full, or their export failed.
pub const TRACE_SPANS_DROPPED: &str = "headroom_trace_spans_dropped_total";
/// Langfuse exports that failed (no answer, or a status other than 2xx).
pub const TRACE_EXPORTS_FAILED: &str = "headroom_trace_exports_failed_total";
/// Provider responses whose usage could not be read (label `reason`).
pub const USAGE_MISSING: &str = "headroom_usage_missing_total";
/// Prompt-cache read tokens (label `provider`).
pub const CACHE_READ_TOKENS: &str = "headroom_cache_read_tokens_total";
/// Prompt-cache write tokens (label `provider`).
pub const CACHE_WRITE_TOKENS: &str = "headroom_cache_write_tokens_total";
/// Prompt-cache write tokens by TTL bucket (labels `provider`, `ttl`).
pub const CACHE_WRITE_TTL_TOKENS: &str = "headroom_cache_write_ttl_tokens_total";
/// Requests that wrote to a TTL bucket (labels `provider`, `ttl`).
pub const CACHE_WRITE_TTL_REQUESTS: &str = "headroom_cache_write_ttl_requests_total";
/// Input tokens neither read from nor written to the prompt cache (label `provider`).
pub const UNCACHED_INPUT_TOKENS: &str = "headroom_uncached_input_tokens_total";
/// Requests with prompt-cache activity (label `provider`).
pub const PROVIDER_CACHE_REQUESTS: &str = "headroom_provider_cache_requests_total";
/// Requests that read from the prompt cache (label `provider`).
pub const PROVIDER_CACHE_HIT_REQUESTS: &str = "headroom_provider_cache_hit_requests_total";

/// Anthropic requests that rewrote most of a model's cached prefix (label `provider`).
pub const PROVIDER_CACHE_BUST: &str = "headroom_provider_cache_bust_total";
/// Tokens written by those requests (label `provider`).
pub const PROVIDER_CACHE_BUST_WRITE_TOKENS: &str =
    "headroom_provider_cache_bust_write_tokens_total";

/// Requests that compressed afresh a tool output already in the conversation (no replay record
/// of what was sent for it before): compression may have broken the prompt cache there.
pub const CACHE_BUST: &str = "headroom_cache_bust_total";
/// Input tokens the provider did not read from its prompt cache on those requests.
pub const CACHE_BUST_TOKENS_LOST: &str = "headroom_cache_bust_tokens_lost_total";

/// Input-side cost (uncached input, cache reads and writes) in nano-USD.
pub const COST_INPUT: &str = "headroom_cost_input_nanousd_total";
/// Output cost in nano-USD.
pub const COST_OUTPUT: &str = "headroom_cost_output_nanousd_total";
/// Compression savings (tokens saved × the model's input price) in nano-USD.
pub const SAVINGS: &str = "headroom_compression_savings_nanousd_total";
/// Responses whose cost was priced.
pub const COST_KNOWN: &str = "headroom_cost_priced_requests_total";
/// Responses of a model without a price: their cost is unknown.
pub const COST_UNKNOWN: &str = "headroom_cost_unknown_model_requests_total";
/// Provider requests refused because the budget was spent.
pub const BUDGET_REJECTED: &str = "headroom_budget_rejected_total";

/// Lifetime requests of the savings ledger (starts from the savings file; survives restarts).
pub const PERSISTENT_REQUESTS: &str = "headroom_persistent_savings_requests_total";
/// Lifetime tokens saved of the savings ledger.
pub const PERSISTENT_TOKENS_SAVED: &str = "headroom_persistent_savings_tokens_saved_total";
/// Lifetime input tokens of the savings ledger.
pub const PERSISTENT_INPUT_TOKENS: &str = "headroom_persistent_savings_input_tokens_total";
/// Lifetime input cost of the savings ledger, nano-USD.
pub const PERSISTENT_INPUT_COST: &str = "headroom_persistent_savings_input_cost_nanousd_total";
/// Lifetime compression savings of the savings ledger, nano-USD.
pub const PERSISTENT_SAVINGS: &str =
    "headroom_persistent_savings_compression_savings_nanousd_total";
/// Tool outputs replaced, by strategy (label `strategy`).
pub const COMPRESSIONS_BY_STRATEGY: &str = "headroom_compressions_by_strategy_total";
/// Tokens saved, by strategy (label `strategy`).
pub const TOKENS_SAVED_BY_STRATEGY: &str = "headroom_tokens_saved_by_strategy_total";
/// Cost (input side and output) by model, nano-USD (label `model`, bounded like
/// [`REQUESTS_BY_MODEL`]).
pub const COST_BY_MODEL: &str = "headroom_cost_by_model_nanousd_total";
/// Compression savings by model, nano-USD (label `model`).
pub const SAVINGS_BY_MODEL: &str = "headroom_compression_savings_by_model_nanousd_total";

/// Tokens of new tool outputs spent on a kind of waste (label `signal`; see
/// [`crate::pipeline::waste`]).
pub const WASTE_SIGNAL_TOKENS: &str = "headroom_waste_signal_tokens_total";
/// Label of [`WASTE_SIGNAL_TOKENS`].
pub const SIGNAL_LABEL: &str = "signal";

/// Label of [`COMPRESSIONS_BY_STRATEGY`] and [`TOKENS_SAVED_BY_STRATEGY`].
pub const STRATEGY_LABEL: &str = "strategy";

/// What replaced a tool output: the pipeline's strategy names (`json:select`, …) as label
/// values (`json_select`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Rows selected from a JSON array.
    JsonSelect,
    /// A JSON array as a lossless table.
    JsonTable,
    /// JSON compacted.
    JsonCompact,
    /// Log lines collapsed by template.
    LogTemplates,
    /// Search results selected.
    SearchSelect,
    /// Search results grouped by file.
    SearchGroup,
    /// Diff context trimmed.
    DiffContext,
    /// Text normalised.
    TextNormalise,
    /// Code normalised.
    CodeNormalise,
    /// An earlier decision replayed.
    Replay,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 10] = [
        Self::JsonSelect,
        Self::JsonTable,
        Self::JsonCompact,
        Self::LogTemplates,
        Self::SearchSelect,
        Self::SearchGroup,
        Self::DiffContext,
        Self::TextNormalise,
        Self::CodeNormalise,
        Self::Replay,
    ];

    /// The pipeline's name of the strategy.
    pub fn pipeline_name(self) -> &'static str {
        match self {
            Self::JsonSelect => "json:select",
            Self::JsonTable => "json:table",
            Self::JsonCompact => "json:compact",
            Self::LogTemplates => "log:templates",
            Self::SearchSelect => "search:select",
            Self::SearchGroup => "search:group",
            Self::DiffContext => "diff:context",
            Self::TextNormalise => "text:normalise",
            Self::CodeNormalise => "code:normalise",
            Self::Replay => "replay",
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonSelect => "json_select",
            Self::JsonTable => "json_table",
            Self::JsonCompact => "json_compact",
            Self::LogTemplates => "log_templates",
            Self::SearchSelect => "search_select",
            Self::SearchGroup => "search_group",
            Self::DiffContext => "diff_context",
            Self::TextNormalise => "text_normalise",
            Self::CodeNormalise => "code_normalise",
            Self::Replay => "replay",
        }
    }

    /// The strategy of a pipeline strategy name, if it replaces content.
    pub fn of(pipeline_name: &str) -> Option<Strategy> {
        Self::ALL
            .into_iter()
            .find(|s| s.pipeline_name() == pipeline_name)
    }
}

/// Time one transform took on one tool output, ms (histogram; label `transform`).
pub const TRANSFORM_TIMING: &str = "headroom_transform_timing_ms";

/// The name of the [`TRANSFORM_TIMING`] histogram of `transform`.
pub fn transform_timing(transform: &str) -> String {
    labeled_name(TRANSFORM_TIMING, "transform", transform)
}

/// A budget's limit in nano-USD (gauge; labels `scope`: `global`, `key` or `project`, and
/// `budget`: the key hash, project id, `overflow` or `global`).
pub const BUDGET_LIMIT: &str = "headroom_budget_limit_nanousd";
/// USD spent in a budget's current period, in nano-USD (gauge; labels `scope`, `budget`).
pub const BUDGET_SPENT: &str = "headroom_budget_spent_nanousd";
/// What a budget can still admit (limit − spent − reserved, ≥ 0), in nano-USD (gauge; labels
/// `scope`, `budget`).
pub const BUDGET_REMAINING: &str = "headroom_budget_remaining_nanousd";

/// The name of the budget gauge `base` ([`BUDGET_LIMIT`], [`BUDGET_SPENT`] or
/// [`BUDGET_REMAINING`]) of the budget `id` of kind `scope`.
pub fn budget_gauge(base: &str, scope: &str, id: &str) -> String {
    format!(
        "{base}.scope.{}.budget.{}",
        sanitize_label_value(scope),
        sanitize_label_value(id)
    )
}

/// The name of the [`COST_BY_MODEL`] counter of `model`.
pub fn cost_by_model(model: &str) -> String {
    labeled_name(COST_BY_MODEL, MODEL_LABEL, model)
}

/// The name of the [`SAVINGS_BY_MODEL`] counter of `model`.
pub fn savings_by_model(model: &str) -> String {
    labeled_name(SAVINGS_BY_MODEL, MODEL_LABEL, model)
}

/// Label of [`REQUESTS_BY_PROVIDER`] and the prompt-cache families.
pub const PROVIDER_LABEL: &str = "provider";
/// Label of [`FAIL_OPEN`] and [`USAGE_MISSING`].
pub const REASON_LABEL: &str = "reason";
/// Label of [`TOOL_OUTPUTS`].
pub const DECISION_LABEL: &str = "decision";
/// Label of [`RETRIEVALS`].
pub const STATUS_LABEL: &str = "status";
/// Label of [`REQUESTS_BY_MODEL`].
pub const MODEL_LABEL: &str = "model";
/// Label of the TTL families.
pub const TTL_LABEL: &str = "ttl";

/// A prompt-cache TTL bucket (Anthropic's `ephemeral_5m` / `ephemeral_1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// Five minutes.
    FiveMinutes,
    /// One hour.
    OneHour,
}

impl Ttl {
    /// Both buckets, in label order.
    pub const ALL: [Ttl; 2] = [Self::FiveMinutes, Self::OneHour];

    /// The label value: `5m` or `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::OneHour => "1h",
        }
    }
}

/// Why a provider response's usage was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageMissing {
    /// The response body was content-encoded (gzip, …).
    Encoded,
    /// The body had no usage report (an error response, a stream without usage, …).
    NotReported,
}

impl UsageMissing {
    /// Both reasons.
    pub const ALL: [UsageMissing; 2] = [Self::Encoded, Self::NotReported];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encoded => "encoded",
            Self::NotReported => "not_reported",
        }
    }
}

/// A counter the filter defines (all are proxy-wasm COUNTER metrics) with fixed labels; the
/// model label is open-ended and defined on first use ([`REQUESTS_BY_MODEL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// [`INBOUND_REQUESTS`]
    InboundRequests,
    /// [`REQUESTS`]
    Requests,
    /// [`REQUESTS_BY_PROVIDER`] with its provider label.
    RequestsByProvider(Provider),
    /// [`REQUESTS_FAILED`]
    RequestsFailed,
    /// [`FAIL_OPEN`] with its reason label.
    FailOpen(FailOpen),
    /// [`BYTES_SAVED`]
    BytesSaved,
    /// [`TOKENS_SAVED`]
    TokensSaved,
    /// [`TOOL_OUTPUTS`] with its decision label.
    ToolOutputs(Decision),
    /// [`RETRIEVALS`]: whether the original was found.
    Retrievals(bool),
    /// [`TOKENS_INPUT`]
    TokensInput,
    /// [`TOKENS_OUTPUT`]
    TokensOutput,
    /// [`REQUESTS_CACHED`]
    RequestsCached,
    /// [`RESPONSE_CACHE_HITS`]
    ResponseCacheHits,
    /// [`RESPONSE_CACHE_MISSES`]
    ResponseCacheMisses,
    /// [`RESPONSE_CACHE_STORES`]
    ResponseCacheStores,
    /// [`TRACE_SPANS_EXPORTED`]
    TraceSpansExported,
    /// [`TRACE_SPANS_DROPPED`]
    TraceSpansDropped,
    /// [`TRACE_EXPORTS_FAILED`]
    TraceExportsFailed,
    /// [`USAGE_MISSING`] with its reason.
    UsageMissing(UsageMissing),
    /// [`CACHE_READ_TOKENS`]
    CacheReadTokens(Provider),
    /// [`CACHE_WRITE_TOKENS`]
    CacheWriteTokens(Provider),
    /// [`CACHE_WRITE_TTL_TOKENS`]
    CacheWriteTtlTokens(Provider, Ttl),
    /// [`CACHE_WRITE_TTL_REQUESTS`]
    CacheWriteTtlRequests(Provider, Ttl),
    /// [`UNCACHED_INPUT_TOKENS`]
    UncachedInputTokens(Provider),
    /// [`PROVIDER_CACHE_REQUESTS`]
    ProviderCacheRequests(Provider),
    /// [`PROVIDER_CACHE_HIT_REQUESTS`]
    ProviderCacheHitRequests(Provider),
    /// [`PROVIDER_CACHE_BUST`]
    ProviderCacheBust(Provider),
    /// [`PROVIDER_CACHE_BUST_WRITE_TOKENS`]
    ProviderCacheBustWriteTokens(Provider),
    /// [`CACHE_BUST`]
    CacheBust,
    /// [`CACHE_BUST_TOKENS_LOST`]
    CacheBustTokensLost,
    /// [`COST_INPUT`]
    CostInputNanoUsd,
    /// [`COST_OUTPUT`]
    CostOutputNanoUsd,
    /// [`SAVINGS`]
    SavingsNanoUsd,
    /// [`COST_KNOWN`]
    CostKnownRequests,
    /// [`COST_UNKNOWN`]
    CostUnknownRequests,
    /// [`BUDGET_REJECTED`]
    BudgetRejected,
    /// [`PERSISTENT_REQUESTS`]
    PersistentRequests,
    /// [`PERSISTENT_TOKENS_SAVED`]
    PersistentTokensSaved,
    /// [`PERSISTENT_INPUT_TOKENS`]
    PersistentInputTokens,
    /// [`PERSISTENT_INPUT_COST`]
    PersistentInputCostNanoUsd,
    /// [`PERSISTENT_SAVINGS`]
    PersistentSavingsNanoUsd,
    /// [`COMPRESSIONS_BY_STRATEGY`]
    Compressions(Strategy),
    /// [`TOKENS_SAVED_BY_STRATEGY`]
    TokensSavedBy(Strategy),
    /// [`WASTE_SIGNAL_TOKENS`]
    WasteSignalTokens(WasteSignal),
}

impl Counter {
    /// Every counter, in definition order.
    pub fn all() -> Vec<Counter> {
        let mut all = vec![Self::InboundRequests, Self::Requests];
        all.extend(Provider::ALL.map(Self::RequestsByProvider));
        all.push(Self::RequestsFailed);
        all.extend(FailOpen::ALL.map(Self::FailOpen));
        all.extend([Self::BytesSaved, Self::TokensSaved]);
        all.extend(Decision::ALL.map(Self::ToolOutputs));
        all.extend([Self::Retrievals(true), Self::Retrievals(false)]);
        all.extend([Self::TokensInput, Self::TokensOutput, Self::RequestsCached]);
        all.extend([
            Self::ResponseCacheHits,
            Self::ResponseCacheMisses,
            Self::ResponseCacheStores,
            Self::TraceSpansExported,
            Self::TraceSpansDropped,
            Self::TraceExportsFailed,
        ]);
        all.extend(UsageMissing::ALL.map(Self::UsageMissing));
        for provider in Provider::ALL {
            all.extend([
                Self::CacheReadTokens(provider),
                Self::CacheWriteTokens(provider),
            ]);
            all.extend(Ttl::ALL.map(|ttl| Self::CacheWriteTtlTokens(provider, ttl)));
            all.extend(Ttl::ALL.map(|ttl| Self::CacheWriteTtlRequests(provider, ttl)));
            all.extend([
                Self::UncachedInputTokens(provider),
                Self::ProviderCacheRequests(provider),
                Self::ProviderCacheHitRequests(provider),
                Self::ProviderCacheBust(provider),
                Self::ProviderCacheBustWriteTokens(provider),
            ]);
        }
        all.extend([
            Self::CacheBust,
            Self::CacheBustTokensLost,
            Self::CostInputNanoUsd,
            Self::CostOutputNanoUsd,
            Self::SavingsNanoUsd,
            Self::CostKnownRequests,
            Self::CostUnknownRequests,
            Self::BudgetRejected,
            Self::PersistentRequests,
            Self::PersistentTokensSaved,
            Self::PersistentInputTokens,
            Self::PersistentInputCostNanoUsd,
            Self::PersistentSavingsNanoUsd,
        ]);
        all.extend(Strategy::ALL.map(Self::Compressions));
        all.extend(Strategy::ALL.map(Self::TokensSavedBy));
        all.extend(WasteSignal::ALL.map(Self::WasteSignalTokens));
        all
    }

    /// The metric name, labels included.
    pub fn name(self) -> String {
        let by_provider =
            |base: &str, provider: Provider| labeled_name(base, PROVIDER_LABEL, provider.as_str());
        let by_ttl = |base: &str, provider: Provider, ttl: Ttl| {
            format!(
                "{}.{TTL_LABEL}.{}",
                by_provider(base, provider),
                ttl.as_str()
            )
        };
        match self {
            Self::InboundRequests => INBOUND_REQUESTS.to_owned(),
            Self::Requests => REQUESTS.to_owned(),
            Self::RequestsByProvider(provider) => by_provider(REQUESTS_BY_PROVIDER, provider),
            Self::RequestsFailed => REQUESTS_FAILED.to_owned(),
            Self::FailOpen(reason) => labeled_name(FAIL_OPEN, REASON_LABEL, reason.as_str()),
            Self::BytesSaved => BYTES_SAVED.to_owned(),
            Self::TokensSaved => TOKENS_SAVED.to_owned(),
            Self::ToolOutputs(decision) => {
                labeled_name(TOOL_OUTPUTS, DECISION_LABEL, decision.as_str())
            }
            Self::Retrievals(found) => labeled_name(
                RETRIEVALS,
                STATUS_LABEL,
                if found { "found" } else { "missing" },
            ),
            Self::TokensInput => TOKENS_INPUT.to_owned(),
            Self::TokensOutput => TOKENS_OUTPUT.to_owned(),
            Self::RequestsCached => REQUESTS_CACHED.to_owned(),
            Self::ResponseCacheHits => RESPONSE_CACHE_HITS.to_owned(),
            Self::ResponseCacheMisses => RESPONSE_CACHE_MISSES.to_owned(),
            Self::ResponseCacheStores => RESPONSE_CACHE_STORES.to_owned(),
            Self::TraceSpansExported => TRACE_SPANS_EXPORTED.to_owned(),
            Self::TraceSpansDropped => TRACE_SPANS_DROPPED.to_owned(),
            Self::TraceExportsFailed => TRACE_EXPORTS_FAILED.to_owned(),
            Self::UsageMissing(reason) => {
                labeled_name(USAGE_MISSING, REASON_LABEL, reason.as_str())
            }
            Self::CacheReadTokens(p) => by_provider(CACHE_READ_TOKENS, p),
            Self::CacheWriteTokens(p) => by_provider(CACHE_WRITE_TOKENS, p),
            Self::CacheWriteTtlTokens(p, ttl) => by_ttl(CACHE_WRITE_TTL_TOKENS, p, ttl),
            Self::CacheWriteTtlRequests(p, ttl) => by_ttl(CACHE_WRITE_TTL_REQUESTS, p, ttl),
            Self::UncachedInputTokens(p) => by_provider(UNCACHED_INPUT_TOKENS, p),
            Self::ProviderCacheRequests(p) => by_provider(PROVIDER_CACHE_REQUESTS, p),
            Self::ProviderCacheHitRequests(p) => by_provider(PROVIDER_CACHE_HIT_REQUESTS, p),
            Self::ProviderCacheBust(p) => by_provider(PROVIDER_CACHE_BUST, p),
            Self::ProviderCacheBustWriteTokens(p) => {
                by_provider(PROVIDER_CACHE_BUST_WRITE_TOKENS, p)
            }
            Self::CacheBust => CACHE_BUST.to_owned(),
            Self::CacheBustTokensLost => CACHE_BUST_TOKENS_LOST.to_owned(),
            Self::CostInputNanoUsd => COST_INPUT.to_owned(),
            Self::CostOutputNanoUsd => COST_OUTPUT.to_owned(),
            Self::SavingsNanoUsd => SAVINGS.to_owned(),
            Self::CostKnownRequests => COST_KNOWN.to_owned(),
            Self::CostUnknownRequests => COST_UNKNOWN.to_owned(),
            Self::BudgetRejected => BUDGET_REJECTED.to_owned(),
            Self::PersistentRequests => PERSISTENT_REQUESTS.to_owned(),
            Self::PersistentTokensSaved => PERSISTENT_TOKENS_SAVED.to_owned(),
            Self::PersistentInputTokens => PERSISTENT_INPUT_TOKENS.to_owned(),
            Self::PersistentInputCostNanoUsd => PERSISTENT_INPUT_COST.to_owned(),
            Self::PersistentSavingsNanoUsd => PERSISTENT_SAVINGS.to_owned(),
            Self::Compressions(s) => {
                labeled_name(COMPRESSIONS_BY_STRATEGY, STRATEGY_LABEL, s.as_str())
            }
            Self::TokensSavedBy(s) => {
                labeled_name(TOKENS_SAVED_BY_STRATEGY, STRATEGY_LABEL, s.as_str())
            }
            Self::WasteSignalTokens(signal) => {
                labeled_name(WASTE_SIGNAL_TOKENS, SIGNAL_LABEL, signal.as_str())
            }
        }
    }
}

/// A histogram the filter defines (proxy-wasm HISTOGRAM metrics, values in milliseconds).
/// Prometheus shows each as `<name>_bucket`, `<name>_sum` and `<name>_count`, the last two
/// under the names upstream Headroom exports as counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Histogram {
    /// `headroom_latency_ms`: request start to the end of the response, per provider request.
    LatencyMs,
    /// `headroom_ttfb_ms`: request start to the response headers.
    TtfbMs,
    /// `headroom_overhead_ms`: time the filter itself spent on the request body.
    OverheadMs,
}

impl Histogram {
    /// Every histogram.
    pub const ALL: [Histogram; 3] = [Self::LatencyMs, Self::TtfbMs, Self::OverheadMs];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LatencyMs => "headroom_latency_ms",
            Self::TtfbMs => "headroom_ttfb_ms",
            Self::OverheadMs => "headroom_overhead_ms",
        }
    }

    /// The names of the gauges holding the smallest and largest sample so far, process-wide
    /// (`<name>_min`, `<name>_max`, as upstream Headroom exports them).
    pub fn extreme_names(self) -> [String; 2] {
        [
            format!("{}_min", self.name()),
            format!("{}_max", self.name()),
        ]
    }
}

/// The name of the [`REQUESTS_BY_MODEL`] counter of `model` (sanitised here).
pub fn requests_by_model(model: &str) -> String {
    labeled_name(REQUESTS_BY_MODEL, MODEL_LABEL, model)
}

/// The name of the [`REQUESTS_BY_STACK`] counter of `stack` (sanitised here).
pub fn requests_by_stack(stack: &str) -> String {
    labeled_name(REQUESTS_BY_STACK, "stack", stack)
}

/// `base.label.value` with `value` sanitised by [`sanitize_label_value`].
pub fn labeled_name(base: &str, label: &str, value: &str) -> String {
    format!("{base}.{label}.{}", sanitize_label_value(value))
}

/// Maps a label value into `[a-z0-9_-]`: ASCII letters are lower-cased, every other character
/// becomes `_` (one per character), and an empty value becomes `unknown`.
pub fn sanitize_label_value(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_owned();
    }
    value
        .chars()
        .map(|ch| match ch {
            'a'..='z' | '0'..='9' | '_' | '-' => ch,
            'A'..='Z' => ch.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

/// Decodes an integer property as Envoy serialises it: 8 bytes, little-endian.
pub fn decode_u64_property(bytes: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Whether a provider request got no upstream response: it has no response code (0 counts as
/// none), or a 5xx that did not come from upstream (`response.code_details` is not
/// `via_upstream`, e.g. a connect failure or an upstream timeout answered by the gateway).
pub fn request_failed(code: Option<u64>, code_details: Option<&[u8]>) -> bool {
    match code {
        None | Some(0) => true,
        Some(code) if code >= 500 => code_details != Some(b"via_upstream".as_slice()),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_counter() {
        let names: Vec<String> = Counter::all().iter().map(|c| c.name()).collect();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no name twice");
        assert!(names.contains(
            &"headroom_cache_write_ttl_tokens_total.provider.anthropic.ttl.5m".to_owned()
        ));
        assert!(names.contains(&"headroom_usage_missing_total.reason.encoded".to_owned()));
        assert_eq!(
            names.get(..24).unwrap_or_default(),
            [
                "headroom_inbound_requests_total",
                "headroom_requests_total",
                "headroom_requests_by_provider.provider.openai",
                "headroom_requests_by_provider.provider.anthropic",
                "headroom_requests_failed_total",
                "headroom_fail_open_total.reason.not_json",
                "headroom_fail_open_total.reason.unexpected_shape",
                "headroom_fail_open_total.reason.too_large",
                "headroom_fail_open_total.reason.content_type",
                "headroom_fail_open_total.reason.internal",
                "headroom_bytes_saved_total",
                "headroom_tokens_saved_total",
                "headroom_tool_outputs_total.decision.compressed",
                "headroom_tool_outputs_total.decision.replayed",
                "headroom_tool_outputs_total.decision.replayed_unchanged",
                "headroom_tool_outputs_total.decision.too_small",
                "headroom_tool_outputs_total.decision.protected_tool",
                "headroom_tool_outputs_total.decision.error_output",
                "headroom_tool_outputs_total.decision.already_compressed",
                "headroom_tool_outputs_total.decision.no_change",
                "headroom_tool_outputs_total.decision.no_gain",
                "headroom_tool_outputs_total.decision.undecodable",
                "headroom_retrievals_total.status.found",
                "headroom_retrievals_total.status.missing",
            ]
        );
    }

    #[test]
    fn sanitises_label_values() {
        assert_eq!(sanitize_label_value("openai"), "openai");
        assert_eq!(sanitize_label_value("GPT-4o_mini"), "gpt-4o_mini");
        assert_eq!(
            sanitize_label_value("claude-3.5 sonnet"),
            "claude-3_5_sonnet"
        );
        assert_eq!(sanitize_label_value("a.b/c=d{e}"), "a_b_c_d_e_");
        assert_eq!(sanitize_label_value("\u{e9}t\u{e9}"), "_t_");
        assert_eq!(sanitize_label_value(""), "unknown");
        assert_eq!(labeled_name("m", "model", "x.y"), "m.model.x_y");
        assert!(
            !labeled_name("m", "l", "...")
                .trim_start_matches("m.l.")
                .contains('.')
        );
    }

    #[test]
    fn decodes_integer_properties() {
        assert_eq!(decode_u64_property(&200u64.to_le_bytes()), Some(200));
        assert_eq!(decode_u64_property(&[1, 2, 3]), None);
        assert_eq!(decode_u64_property(&[]), None);
    }

    #[test]
    fn decides_failed_requests() {
        assert!(request_failed(None, None));
        assert!(request_failed(Some(0), None));
        assert!(!request_failed(Some(200), None));
        assert!(!request_failed(Some(429), Some(b"via_upstream")));
        assert!(!request_failed(
            Some(413),
            Some(b"request_payload_too_large")
        ));
        assert!(!request_failed(Some(503), Some(b"via_upstream")));
        assert!(request_failed(
            Some(503),
            Some(b"upstream_reset_before_response_started{connection_failure}")
        ));
        assert!(request_failed(
            Some(504),
            Some(b"upstream_response_timeout")
        ));
        assert!(request_failed(Some(500), None));
    }
}
