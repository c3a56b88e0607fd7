//! The filter's metrics: their names, how labels are encoded in those names, and what makes a
//! request count as failed. The glue only defines and increments what this module names.
//!
//! The proxy-wasm ABI has no labels, so a label travels in the name as `name.label.value`
//! (`headroom_requests_by_provider.provider.openai`). Envoy turns it into a Prometheus label
//! with a `stats_tags` regex such as `(\.provider\.([^.]+))`, and the standalone host decodes it
//! the same way; hence label values are restricted to `[a-z0-9_-]` and never contain `.`.
//!
//! Every metric is declared once, in the `declare_metrics!` table below (name, kind, labels,
//! help), which makes its `pub const` and its [`METRICS`] entry. To add one: a line there, a
//! row in README.md's metrics table, and what the unit tests in `metrics/declaration_tests.rs`
//! then ask for (a [`Counter`] variant, a `stats_tags` line in every Envoy config, …).

use crate::api::Provider;
use crate::fail_open::FailOpen;
use crate::pipeline::Decision;
use crate::pipeline::waste::WasteSignal;

/// How a metric is defined through the proxy-wasm ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only ever grows (proxy-wasm COUNTER).
    Counter,
    /// Set to a value (proxy-wasm GAUGE).
    Gauge,
    /// Samples in buckets (proxy-wasm HISTOGRAM; Prometheus shows `_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One declared metric: everything about it but its label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name without labels: the Prometheus family name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The label names, in the order the full name carries them (`name.label.value…`).
    pub labels: &'static [&'static str],
    /// What it measures (also the doc comment of its constant).
    pub help: &'static str,
}

/// Declares every metric in one table: each line `IDENT: kind "name" [LABEL_CONST, …] "help";`
/// makes `pub const IDENT: &str = "name"` (documented with the help text) and its [`METRICS`]
/// entry, so a metric's name, kind, labels and help cannot be written twice.
macro_rules! declare_metrics {
    (@kind counter) => { MetricKind::Counter };
    (@kind gauge) => { MetricKind::Gauge };
    (@kind histogram) => { MetricKind::Histogram };
    ($($ident:ident: $kind:ident $name:literal [$($label:ident),*] $help:literal;)+) => {
        $(
            #[doc = $help]
            pub const $ident: &str = $name;
        )+

        /// Every metric the filter defines, in declaration order. README.md's metrics table and
        /// the `stats_tags` of every Envoy configuration are tested against it.
        pub const METRICS: &[MetricDef] = &[$(
            MetricDef {
                name: $ident,
                kind: declare_metrics!(@kind $kind),
                labels: &[$($label),*],
                help: $help,
            },
        )+];
    };
}

declare_metrics! {
    INBOUND_REQUESTS: counter "headroom_inbound_requests_total" []
        "Every request the filter sees.";
    REQUESTS: counter "headroom_requests_total" []
        "Requests to a provider API path.";
    REQUESTS_BY_PROVIDER: counter "headroom_requests_by_provider" [PROVIDER_LABEL]
        "Provider requests by provider (label `provider`).";
    REQUESTS_FAILED: counter "headroom_requests_failed_total" []
        "Provider requests that got no upstream response.";
    FAIL_OPEN: counter "headroom_fail_open_total" [REASON_LABEL]
        "Provider requests forwarded unchanged because of a surprise (label `reason`).";
    BYTES_SAVED: counter "headroom_bytes_saved_total" []
        "Bytes removed from request bodies.";
    TOKENS_SAVED: counter "headroom_tokens_saved_total" []
        "Tokens removed from request bodies (exact for OpenAI models, estimated for Anthropic).";
    TOOL_OUTPUTS: counter "headroom_tool_outputs_total" [DECISION_LABEL]
        "Tool outputs seen, by what the pipeline decided for each (label `decision`).";
    RETRIEVALS: counter "headroom_retrievals_total" [STATUS_LABEL]
        "Lookups on the retrieval endpoint (label `status`: `found` or `missing`).";
    REQUESTS_BY_MODEL: counter "headroom_requests_by_model" [MODEL_LABEL]
        "Provider requests by model (label `model`, bounded).";
    REQUESTS_BY_STACK: counter "headroom_requests_by_stack" [STACK_LABEL]
        "Provider requests by `X-Headroom-Stack` bucket (label `stack`, bounded).";
    TOKENS_INPUT: counter "headroom_tokens_input_total" []
        "Input tokens the provider reported (the whole prompt, cached parts included).";
    TOKENS_OUTPUT: counter "headroom_tokens_output_total" []
        "Output tokens the provider reported.";
    REQUESTS_CACHED: counter "headroom_requests_cached_total" []
        "Requests whose usage shows a prompt-cache read.";
    RESPONSE_CACHE_HITS: counter "headroom_response_cache_hits_total" []
        "Provider requests answered from the response cache.";
    RESPONSE_CACHE_MISSES: counter "headroom_response_cache_misses_total" []
        "Cacheable provider requests the response cache could not answer.";
    RESPONSE_CACHE_STORES: counter "headroom_response_cache_stores_total" []
        "Responses stored into the response cache.";
    TRACE_SPANS_EXPORTED: counter "headroom_trace_spans_exported_total" []
        "Langfuse spans of the pipeline accepted by the trace endpoint.";
    TRACE_SPANS_DROPPED: counter "headroom_trace_spans_dropped_total" []
        "Langfuse spans lost: the queue was full, or their export failed.";
    TRACE_EXPORTS_FAILED: counter "headroom_trace_exports_failed_total" []
        "Langfuse exports that failed (no answer, or a status other than 2xx).";
    USAGE_MISSING: counter "headroom_usage_missing_total" [REASON_LABEL]
        "Provider responses whose usage could not be read (label `reason`).";
    CACHE_READ_TOKENS: counter "headroom_cache_read_tokens_total" [PROVIDER_LABEL]
        "Prompt-cache read tokens (label `provider`).";
    CACHE_WRITE_TOKENS: counter "headroom_cache_write_tokens_total" [PROVIDER_LABEL]
        "Prompt-cache write tokens (label `provider`).";
    CACHE_WRITE_TTL_TOKENS: counter "headroom_cache_write_ttl_tokens_total"
        [PROVIDER_LABEL, TTL_LABEL]
        "Prompt-cache write tokens by TTL bucket (labels `provider`, `ttl`).";
    CACHE_WRITE_TTL_REQUESTS: counter "headroom_cache_write_ttl_requests_total"
        [PROVIDER_LABEL, TTL_LABEL]
        "Requests that wrote to a TTL bucket (labels `provider`, `ttl`).";
    UNCACHED_INPUT_TOKENS: counter "headroom_uncached_input_tokens_total" [PROVIDER_LABEL]
        "Input tokens neither read from nor written to the prompt cache (label `provider`).";
    PROVIDER_CACHE_REQUESTS: counter "headroom_provider_cache_requests_total" [PROVIDER_LABEL]
        "Requests with prompt-cache activity (label `provider`).";
    PROVIDER_CACHE_HIT_REQUESTS: counter "headroom_provider_cache_hit_requests_total"
        [PROVIDER_LABEL]
        "Requests that read from the prompt cache (label `provider`).";
    PROVIDER_CACHE_BUST: counter "headroom_provider_cache_bust_total" [PROVIDER_LABEL]
        "Anthropic requests that rewrote most of a model's cached prefix (label `provider`).";
    PROVIDER_CACHE_BUST_WRITE_TOKENS: counter "headroom_provider_cache_bust_write_tokens_total"
        [PROVIDER_LABEL]
        "Tokens written by those requests (label `provider`).";
    CACHE_BUST: counter "headroom_cache_bust_total" []
        "Requests that compressed afresh a tool output already in the conversation (no replay \
         record of what was sent for it before): compression may have broken the prompt cache \
         there.";
    CACHE_BUST_TOKENS_LOST: counter "headroom_cache_bust_tokens_lost_total" []
        "Input tokens the provider did not read from its prompt cache on those requests.";
    COST_INPUT: counter "headroom_cost_input_nanousd_total" []
        "Input-side cost (uncached input, cache reads and writes) in nano-USD.";
    COST_OUTPUT: counter "headroom_cost_output_nanousd_total" []
        "Output cost in nano-USD.";
    SAVINGS: counter "headroom_compression_savings_nanousd_total" []
        "Compression savings (tokens saved × the model's input price) in nano-USD.";
    COST_KNOWN: counter "headroom_cost_priced_requests_total" []
        "Responses whose cost was priced.";
    COST_UNKNOWN: counter "headroom_cost_unknown_model_requests_total" []
        "Responses of a model without a price: their cost is unknown.";
    BUDGET_REJECTED: counter "headroom_budget_rejected_total" []
        "Provider requests refused because the budget was spent.";
    PERSISTENT_REQUESTS: counter "headroom_persistent_savings_requests_total" []
        "Lifetime requests of the savings ledger (starts from the savings file; survives \
         restarts).";
    PERSISTENT_TOKENS_SAVED: counter "headroom_persistent_savings_tokens_saved_total" []
        "Lifetime tokens saved of the savings ledger.";
    PERSISTENT_INPUT_TOKENS: counter "headroom_persistent_savings_input_tokens_total" []
        "Lifetime input tokens of the savings ledger.";
    PERSISTENT_INPUT_COST: counter "headroom_persistent_savings_input_cost_nanousd_total" []
        "Lifetime input cost of the savings ledger, nano-USD.";
    PERSISTENT_SAVINGS: counter "headroom_persistent_savings_compression_savings_nanousd_total"
        []
        "Lifetime compression savings of the savings ledger, nano-USD.";
    COMPRESSIONS_BY_STRATEGY: counter "headroom_compressions_by_strategy_total" [STRATEGY_LABEL]
        "Tool outputs replaced, by strategy (label `strategy`).";
    TOKENS_SAVED_BY_STRATEGY: counter "headroom_tokens_saved_by_strategy_total" [STRATEGY_LABEL]
        "Tokens saved, by strategy (label `strategy`).";
    COST_BY_MODEL: counter "headroom_cost_by_model_nanousd_total" [MODEL_LABEL]
        "Cost (input side and output) by model, nano-USD (label `model`, bounded like \
         `headroom_requests_by_model`).";
    SAVINGS_BY_MODEL: counter "headroom_compression_savings_by_model_nanousd_total" [MODEL_LABEL]
        "Compression savings by model, nano-USD (label `model`).";
    WASTE_SIGNAL_TOKENS: counter "headroom_waste_signal_tokens_total" [SIGNAL_LABEL]
        "Tokens of new tool outputs spent on a kind of waste (label `signal`; see \
         `pipeline::waste`).";
    TRANSFORM_TIMING: histogram "headroom_transform_timing_ms" [TRANSFORM_LABEL]
        "Time one transform took on one tool output, ms (histogram; label `transform`).";
    BUDGET_LIMIT: gauge "headroom_budget_limit_nanousd" [SCOPE_LABEL, BUDGET_LABEL]
        "A budget's limit in nano-USD (gauge; labels `scope`: `global`, `key` or `project`, and \
         `budget`: the key hash, project id, `overflow` or `global`).";
    BUDGET_SPENT: gauge "headroom_budget_spent_nanousd" [SCOPE_LABEL, BUDGET_LABEL]
        "USD spent in a budget's current period, in nano-USD (gauge; labels `scope`, `budget`).";
    BUDGET_REMAINING: gauge "headroom_budget_remaining_nanousd" [SCOPE_LABEL, BUDGET_LABEL]
        "What a budget can still admit (limit − spent − reserved, ≥ 0), in nano-USD (gauge; \
         labels `scope`, `budget`).";
    LATENCY_MS: histogram "headroom_latency_ms" []
        "Request start to the end of the response, per provider request, ms.";
    TTFB_MS: histogram "headroom_ttfb_ms" []
        "Request start to the response headers, ms.";
    OVERHEAD_MS: histogram "headroom_overhead_ms" []
        "Time the filter itself spent on the request body, ms.";
    LATENCY_MS_MIN: gauge "headroom_latency_ms_min" []
        "Smallest `headroom_latency_ms` sample so far, process-wide, whole ms.";
    LATENCY_MS_MAX: gauge "headroom_latency_ms_max" []
        "Largest `headroom_latency_ms` sample so far, process-wide, whole ms.";
    TTFB_MS_MIN: gauge "headroom_ttfb_ms_min" []
        "Smallest `headroom_ttfb_ms` sample so far, process-wide, whole ms.";
    TTFB_MS_MAX: gauge "headroom_ttfb_ms_max" []
        "Largest `headroom_ttfb_ms` sample so far, process-wide, whole ms.";
    OVERHEAD_MS_MIN: gauge "headroom_overhead_ms_min" []
        "Smallest `headroom_overhead_ms` sample so far, process-wide, whole ms.";
    OVERHEAD_MS_MAX: gauge "headroom_overhead_ms_max" []
        "Largest `headroom_overhead_ms` sample so far, process-wide, whole ms.";
}

/// Label of [`REQUESTS_BY_PROVIDER`] and the prompt-cache families.
pub const PROVIDER_LABEL: &str = "provider";
/// Label of [`FAIL_OPEN`] and [`USAGE_MISSING`].
pub const REASON_LABEL: &str = "reason";
/// Label of [`TOOL_OUTPUTS`].
pub const DECISION_LABEL: &str = "decision";
/// Label of [`RETRIEVALS`].
pub const STATUS_LABEL: &str = "status";
/// Label of [`REQUESTS_BY_MODEL`], [`COST_BY_MODEL`] and [`SAVINGS_BY_MODEL`].
pub const MODEL_LABEL: &str = "model";
/// Label of [`REQUESTS_BY_STACK`].
pub const STACK_LABEL: &str = "stack";
/// Label of the TTL families.
pub const TTL_LABEL: &str = "ttl";
/// Label of [`WASTE_SIGNAL_TOKENS`].
pub const SIGNAL_LABEL: &str = "signal";
/// Label of [`COMPRESSIONS_BY_STRATEGY`] and [`TOKENS_SAVED_BY_STRATEGY`].
pub const STRATEGY_LABEL: &str = "strategy";
/// Label of [`TRANSFORM_TIMING`].
pub const TRANSFORM_LABEL: &str = "transform";
/// First label of the budget gauges: `global`, `key` or `project`.
pub const SCOPE_LABEL: &str = "scope";
/// Second label of the budget gauges: the budget's id.
pub const BUDGET_LABEL: &str = "budget";

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

/// The name of the [`TRANSFORM_TIMING`] histogram of `transform`.
pub fn transform_timing(transform: &str) -> String {
    labeled_name(TRANSFORM_TIMING, TRANSFORM_LABEL, transform)
}

/// The name of the budget gauge `base` ([`BUDGET_LIMIT`], [`BUDGET_SPENT`] or
/// [`BUDGET_REMAINING`]) of the budget `id` of kind `scope`.
pub fn budget_gauge(base: &str, scope: &str, id: &str) -> String {
    format!(
        "{base}.{SCOPE_LABEL}.{}.{BUDGET_LABEL}.{}",
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
    /// [`LATENCY_MS`]
    LatencyMs,
    /// [`TTFB_MS`]
    TtfbMs,
    /// [`OVERHEAD_MS`]
    OverheadMs,
}

impl Histogram {
    /// Every histogram.
    pub const ALL: [Histogram; 3] = [Self::LatencyMs, Self::TtfbMs, Self::OverheadMs];

    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LatencyMs => LATENCY_MS,
            Self::TtfbMs => TTFB_MS,
            Self::OverheadMs => OVERHEAD_MS,
        }
    }

    /// The names of the gauges holding the smallest and largest sample so far, process-wide
    /// (`<name>_min`, `<name>_max`, as upstream Headroom exports them).
    pub fn extreme_names(self) -> [String; 2] {
        match self {
            Self::LatencyMs => [LATENCY_MS_MIN, LATENCY_MS_MAX],
            Self::TtfbMs => [TTFB_MS_MIN, TTFB_MS_MAX],
            Self::OverheadMs => [OVERHEAD_MS_MIN, OVERHEAD_MS_MAX],
        }
        .map(str::to_owned)
    }
}

/// The name of the [`REQUESTS_BY_MODEL`] counter of `model` (sanitised here).
pub fn requests_by_model(model: &str) -> String {
    labeled_name(REQUESTS_BY_MODEL, MODEL_LABEL, model)
}

/// The name of the [`REQUESTS_BY_STACK`] counter of `stack` (sanitised here).
pub fn requests_by_stack(stack: &str) -> String {
    labeled_name(REQUESTS_BY_STACK, STACK_LABEL, stack)
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

#[cfg(test)]
mod declaration_tests;
