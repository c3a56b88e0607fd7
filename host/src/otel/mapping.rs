//! The one table of OpenTelemetry instruments `headroom` exports, and how each is measured.
//!
//! Three groups, each named here and nowhere else:
//!
//! - **The filter's metrics** under the filter's own names (`headroom_requests_total`, …), each
//!   label an attribute: exactly what Envoy's `envoy.stat_sinks.open_telemetry` sends for the
//!   same filter (see `envoy/otel-stats-sink.yaml`), so one backend query serves both hosts. They are
//!   read from the host's registry at each export; the table does not list them.
//! - **The seed's instruments** (`headroom.proxy.*`, `headroom.compression.*`; docs/upstream.md
//!   §6) with the seed's attributes. Most are measured from the filter's per-request record
//!   (provider, model, tokens, cache figures, timings, transforms, fail-open reason); the few
//!   the record does not carry come from a filter metric ([`FROM_FILTER`]).
//! - **The OpenTelemetry GenAI semantic conventions** (`gen_ai.client.token.usage`,
//!   `gen_ai.client.operation.duration`), measured from the same record. The conventions are
//!   still moving (the cache token types especially), so every name and value of theirs is a
//!   constant of this module.

use super::aggregate::{Aggregator, AttrValue, Attrs};
use crate::records::record::Record;

/// What kind of instrument, and for a histogram its explicit bucket bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A monotonic sum.
    Counter,
    /// A histogram with these explicit bounds.
    Histogram(&'static [f64]),
}

/// One exported instrument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Instrument {
    /// The instrument name.
    pub name: &'static str,
    /// Counter or histogram.
    pub kind: Kind,
    /// UCUM unit (`1`, `s`, `{token}`, `USD`).
    pub unit: &'static str,
    /// Description sent with the metric.
    pub description: &'static str,
}

/// Bounds of the seed's duration histograms, seconds (the filter's own overhead is often
/// sub-millisecond; a stream can last minutes).
pub const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];
/// The GenAI conventions' advisory bounds for `gen_ai.client.operation.duration`, seconds.
pub const GEN_AI_SECONDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// The GenAI conventions' advisory bounds for `gen_ai.client.token.usage`.
pub const GEN_AI_TOKENS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bounds of `headroom.compression.stage.duration`: the filter's transform-timing buckets
/// (Envoy's defaults, in ms) in seconds.
pub const STAGE_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0, 1800.0, 3600.0,
];

const fn counter(name: &'static str, unit: &'static str, description: &'static str) -> Instrument {
    Instrument {
        name,
        kind: Kind::Counter,
        unit,
        description,
    }
}

const fn histogram(
    name: &'static str,
    bounds: &'static [f64],
    unit: &'static str,
    description: &'static str,
) -> Instrument {
    Instrument {
        name,
        kind: Kind::Histogram(bounds),
        unit,
        description,
    }
}

// --- The seed's instruments (attributes `provider`, `model`, `cached` unless noted). ---

/// +1 per provider request.
pub const REQUESTS: Instrument = counter("headroom.proxy.requests", "1", "Provider requests");
/// +1 per request whose usage shows a prompt-cache read.
pub const REQUESTS_CACHED: Instrument = counter(
    "headroom.proxy.requests.cached",
    "1",
    "Provider requests whose usage shows a prompt-cache read",
);
/// +1 per request that got no upstream response (`provider`, `model`).
pub const REQUESTS_FAILED: Instrument = counter(
    "headroom.proxy.requests.failed",
    "1",
    "Provider requests that got no upstream response",
);
/// Input tokens the provider reported (the whole prompt, as sent after compression).
pub const TOKENS_INPUT: Instrument = counter(
    "headroom.proxy.tokens.input",
    "1",
    "Input tokens the provider reported",
);
/// Output tokens the provider reported.
pub const TOKENS_OUTPUT: Instrument = counter(
    "headroom.proxy.tokens.output",
    "1",
    "Output tokens the provider reported",
);
/// Tokens compression removed from requests.
pub const TOKENS_SAVED: Instrument = counter(
    "headroom.proxy.tokens.saved",
    "1",
    "Tokens removed from requests by compression",
);
/// Request latency, seconds.
pub const REQUEST_DURATION: Instrument = histogram(
    "headroom.proxy.request.duration",
    SECONDS,
    "s",
    "Time from the request to the end of the response",
);
/// The filter's own time on a request body, seconds (only > 0).
pub const OVERHEAD_DURATION: Instrument = histogram(
    "headroom.proxy.overhead.duration",
    SECONDS,
    "s",
    "Headroom's own time on the request",
);
/// Time to the response headers, seconds (only > 0).
pub const TTFB_DURATION: Instrument = histogram(
    "headroom.proxy.ttfb.duration",
    SECONDS,
    "s",
    "Time to the upstream's response headers",
);
/// Prompt-cache read tokens (only > 0).
pub const CACHE_READ_TOKENS: Instrument = counter(
    "headroom.proxy.cache.read_tokens",
    "1",
    "Prompt-cache read tokens",
);
/// Prompt-cache write tokens (only > 0).
pub const CACHE_WRITE_TOKENS: Instrument = counter(
    "headroom.proxy.cache.write_tokens",
    "1",
    "Prompt-cache write tokens",
);
/// Input tokens neither read from nor written to the prompt cache (only > 0).
pub const CACHE_UNCACHED_TOKENS: Instrument = counter(
    "headroom.proxy.cache.uncached_input_tokens",
    "1",
    "Input tokens neither read from nor written to the prompt cache",
);
/// Prompt-cache writes by TTL bucket (`provider`, `ttl`; the filter's
/// `headroom_cache_write_ttl_tokens_total`, which has no model).
pub const CACHE_WRITE_TTL_TOKENS: Instrument = counter(
    "headroom.proxy.cache.write_ttl_tokens",
    "1",
    "Prompt-cache write tokens by TTL bucket",
);
/// Compression cache busts (no attributes; the filter's `headroom_cache_bust_total`).
pub const CACHE_BUSTS: Instrument = counter(
    "headroom.proxy.cache.busts",
    "1",
    "Requests whose compression may have broken the prompt cache",
);
/// Tokens lost to those busts (the filter's `headroom_cache_bust_tokens_lost_total`).
pub const CACHE_BUST_TOKENS_LOST: Instrument = counter(
    "headroom.proxy.cache.bust_tokens_lost",
    "1",
    "Input tokens not read from the prompt cache on cache-bust requests",
);
/// The request's cost, USD (`provider`, `model`; only priced requests). Not in the seed.
pub const COST: Instrument = counter(
    "headroom.proxy.cost",
    "USD",
    "Cost of provider requests (input side and output)",
);
/// Compression savings, USD (`provider`, `model`; only priced requests). Not in the seed.
pub const SAVINGS: Instrument = counter(
    "headroom.proxy.savings",
    "USD",
    "Tokens saved times the model's input price",
);

// --- Per compression pipeline run (`model`, `provider`). ---

/// +1 per request body the pipeline ran on (it did not fail open).
pub const COMPRESSION_RUNS: Instrument = counter(
    "headroom.compression.runs",
    "1",
    "Request bodies the compression pipeline ran on",
);
/// The prompt's tokens before compression (when the provider reported usage).
pub const COMPRESSION_TOKENS_INPUT: Instrument = counter(
    "headroom.compression.tokens.input",
    "1",
    "Prompt tokens before compression",
);
/// The prompt's tokens after compression.
pub const COMPRESSION_TOKENS_OUTPUT: Instrument = counter(
    "headroom.compression.tokens.output",
    "1",
    "Prompt tokens after compression",
);
/// Tokens the pipeline removed.
pub const COMPRESSION_TOKENS_SAVED: Instrument = counter(
    "headroom.compression.tokens.saved",
    "1",
    "Tokens removed by compression",
);
/// The pipeline's time on a request body, seconds.
pub const COMPRESSION_DURATION: Instrument = histogram(
    "headroom.compression.pipeline.duration",
    SECONDS,
    "s",
    "Compression pipeline time per request",
);
/// +1 per replaced tool output (`model`, `provider`, `transform`).
pub const COMPRESSION_TRANSFORMS: Instrument =
    counter("headroom.compression.transforms", "1", "Transforms applied");
/// Time of each transform on one tool output, seconds (`stage`; the filter's
/// `headroom_transform_timing_ms`).
pub const COMPRESSION_STAGE_DURATION: Instrument = histogram(
    "headroom.compression.stage.duration",
    STAGE_SECONDS,
    "s",
    "Time of each pipeline stage on one tool output",
);
/// Tokens of new tool outputs per waste signal (`signal`; the filter's
/// `headroom_waste_signal_tokens_total`).
pub const COMPRESSION_WASTE_TOKENS: Instrument = counter(
    "headroom.compression.waste.tokens",
    "1",
    "Tokens of new tool outputs per waste signal",
);
/// Request bodies forwarded unchanged because of a surprise (`model`, `operation`=`compress`,
/// `error_type`= the fail-open reason).
pub const COMPRESSION_FAILURES: Instrument = counter(
    "headroom.compression.failures",
    "1",
    "Request bodies forwarded unchanged because compression could not run",
);

// --- The GenAI semantic conventions. ---

/// `gen_ai.client.token.usage`: tokens per request, by `gen_ai.token.type`.
pub const GEN_AI_TOKEN_USAGE: Instrument = histogram(
    "gen_ai.client.token.usage",
    GEN_AI_TOKENS,
    "{token}",
    "Number of input and output tokens used",
);
/// `gen_ai.client.operation.duration`: the whole exchange, seconds.
pub const GEN_AI_OPERATION_DURATION: Instrument = histogram(
    "gen_ai.client.operation.duration",
    GEN_AI_SECONDS,
    "s",
    "GenAI operation duration",
);
/// Attribute: the operation (`chat` for every API the filter handles).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Attribute: the provider (`openai`, `anthropic`: the conventions' well-known values).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Attribute: the model the request named.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// Attribute: which tokens a `gen_ai.client.token.usage` sample counts.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// Attribute: why an operation failed (the HTTP status, or `_OTHER` with no response).
pub const ERROR_TYPE: &str = "error.type";
/// Token type: the whole prompt (cached parts included, as the conventions count it).
pub const TOKEN_TYPE_INPUT: &str = "input";
/// Token type: the completion.
pub const TOKEN_TYPE_OUTPUT: &str = "output";
/// Token type: prompt tokens read from the provider's cache (Envoy AI Gateway's value; not yet
/// in the conventions, which carry it as the span attribute
/// `gen_ai.usage.cache_read.input_tokens`). Only > 0.
pub const TOKEN_TYPE_CACHE_READ: &str = "cached_input";
/// Token type: prompt tokens written to the provider's cache (span attribute
/// `gen_ai.usage.cache_creation.input_tokens` in the conventions). Only > 0.
pub const TOKEN_TYPE_CACHE_CREATION: &str = "cache_creation_input";

/// The `gen_ai.operation.name` of a record's API.
pub fn gen_ai_operation(api: &str) -> &'static str {
    match api {
        // Chat Completions, Responses and Messages are all chat in the conventions.
        "openai_chat" | "openai_responses" | "anthropic_messages" => "chat",
        "openai_completions" | "anthropic_complete" => "text_completion",
        "openai_embeddings" => "embeddings",
        _ => "chat",
    }
}

/// Every instrument measured by the host, seed's and GenAI's.
pub const INSTRUMENTS: &[Instrument] = &[
    REQUESTS,
    REQUESTS_CACHED,
    REQUESTS_FAILED,
    TOKENS_INPUT,
    TOKENS_OUTPUT,
    TOKENS_SAVED,
    REQUEST_DURATION,
    OVERHEAD_DURATION,
    TTFB_DURATION,
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    CACHE_UNCACHED_TOKENS,
    CACHE_WRITE_TTL_TOKENS,
    CACHE_BUSTS,
    CACHE_BUST_TOKENS_LOST,
    COST,
    SAVINGS,
    COMPRESSION_RUNS,
    COMPRESSION_TOKENS_INPUT,
    COMPRESSION_TOKENS_OUTPUT,
    COMPRESSION_TOKENS_SAVED,
    COMPRESSION_DURATION,
    COMPRESSION_TRANSFORMS,
    COMPRESSION_STAGE_DURATION,
    COMPRESSION_WASTE_TOKENS,
    COMPRESSION_FAILURES,
    GEN_AI_TOKEN_USAGE,
    GEN_AI_OPERATION_DURATION,
];

/// A seed instrument read from one of the filter's metric families.
#[derive(Clone, Copy, Debug)]
pub struct FromFilter {
    /// The filter's family (its Prometheus name).
    pub family: &'static str,
    /// The instrument it becomes.
    pub instrument: Instrument,
    /// Label renames (`(filter label, attribute)`); other labels keep their names.
    pub rename: &'static [(&'static str, &'static str)],
    /// Factor applied to values and bounds (ms → s: 0.001).
    pub scale: f64,
}

/// The seed's instruments that come from filter metrics rather than the per-request record.
pub const FROM_FILTER: &[FromFilter] = &[
    FromFilter {
        family: "headroom_cache_write_ttl_tokens_total",
        instrument: CACHE_WRITE_TTL_TOKENS,
        rename: &[],
        scale: 1.0,
    },
    FromFilter {
        family: "headroom_cache_bust_total",
        instrument: CACHE_BUSTS,
        rename: &[],
        scale: 1.0,
    },
    FromFilter {
        family: "headroom_cache_bust_tokens_lost_total",
        instrument: CACHE_BUST_TOKENS_LOST,
        rename: &[],
        scale: 1.0,
    },
    FromFilter {
        family: "headroom_waste_signal_tokens_total",
        instrument: COMPRESSION_WASTE_TOKENS,
        rename: &[],
        scale: 1.0,
    },
    FromFilter {
        family: "headroom_transform_timing_ms",
        instrument: COMPRESSION_STAGE_DURATION,
        rename: &[("transform", "stage")],
        scale: 0.001,
    },
];

fn s(value: &str) -> AttrValue {
    AttrValue::Str(value.to_owned())
}

fn positive(v: Option<i64>) -> Option<f64> {
    v.filter(|v| *v > 0).map(|v| v as f64)
}

/// Adds what one provider request's record measures.
pub fn measure(record: &Record, agg: &mut Aggregator) {
    let provider = if record.provider.is_empty() {
        "unknown"
    } else {
        &record.provider
    };
    let model = record
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown");
    let read = record.cache_read_tokens.unwrap_or(0).max(0);
    let write = record.cache_write_tokens.unwrap_or(0).max(0);
    let cached = read > 0;
    let pm: Attrs = vec![("provider".into(), s(provider)), ("model".into(), s(model))];
    let mut pmc = pm.clone();
    pmc.push(("cached".into(), AttrValue::Bool(cached)));

    agg.add(&REQUESTS, &pmc, 1.0);
    if cached {
        agg.add(&REQUESTS_CACHED, &pmc, 1.0);
    }
    if record.status.is_none() {
        agg.add(&REQUESTS_FAILED, &pm, 1.0);
    }
    if let Some(input) = record.input_tokens {
        agg.add(&TOKENS_INPUT, &pmc, input.max(0) as f64);
    }
    if let Some(output) = record.output_tokens {
        agg.add(&TOKENS_OUTPUT, &pmc, output.max(0) as f64);
    }
    agg.add(&TOKENS_SAVED, &pmc, record.tokens_saved.max(0) as f64);
    if let Some(ms) = record.latency_ms.filter(|v| *v >= 0.0) {
        agg.add(&REQUEST_DURATION, &pmc, ms / 1000.0);
    }
    if let Some(ms) = record.overhead_ms.filter(|v| *v > 0.0) {
        agg.add(&OVERHEAD_DURATION, &pmc, ms / 1000.0);
    }
    if let Some(ms) = record.ttfb_ms.filter(|v| *v > 0.0) {
        agg.add(&TTFB_DURATION, &pmc, ms / 1000.0);
    }
    if read > 0 {
        agg.add(&CACHE_READ_TOKENS, &pmc, read as f64);
    }
    if write > 0 {
        agg.add(&CACHE_WRITE_TOKENS, &pmc, write as f64);
    }
    if let Some(input) = record.input_tokens {
        // The record's input is the whole prompt: Anthropic's counts its cache writes, OpenAI's
        // does not (its "write" is inferred from the uncached part).
        let written = if provider == "anthropic" { write } else { 0 };
        let uncached = input - read - written;
        if uncached > 0 {
            agg.add(&CACHE_UNCACHED_TOKENS, &pmc, uncached as f64);
        }
    }
    if let Some(cost) = record.cost_usd {
        agg.add(&COST, &pm, cost.max(0.0));
    }
    if let Some(savings) = record.savings_usd {
        agg.add(&SAVINGS, &pm, savings.max(0.0));
    }

    let mp: Attrs = vec![("model".into(), s(model)), ("provider".into(), s(provider))];
    match &record.fail_open {
        Some(reason) => {
            let attrs = vec![
                ("model".into(), s(model)),
                ("operation".into(), s("compress")),
                ("error_type".into(), s(reason)),
            ];
            agg.add(&COMPRESSION_FAILURES, &attrs, 1.0);
        }
        None => {
            agg.add(&COMPRESSION_RUNS, &mp, 1.0);
            if let (Some(before), Some(after)) = (record.tokens_before, record.tokens_after) {
                agg.add(&COMPRESSION_TOKENS_INPUT, &mp, before.max(0) as f64);
                agg.add(&COMPRESSION_TOKENS_OUTPUT, &mp, after.max(0) as f64);
            }
            agg.add(
                &COMPRESSION_TOKENS_SAVED,
                &mp,
                record.tokens_saved.max(0) as f64,
            );
            if let Some(ms) = record.overhead_ms.filter(|v| *v >= 0.0) {
                agg.add(&COMPRESSION_DURATION, &mp, ms / 1000.0);
            }
            for transform in &record.transforms {
                let mut attrs = mp.clone();
                attrs.push(("transform".into(), s(transform)));
                agg.add(&COMPRESSION_TRANSFORMS, &attrs, 1.0);
            }
        }
    }

    let gen_ai: Attrs = vec![
        (
            GEN_AI_OPERATION_NAME.into(),
            s(gen_ai_operation(&record.api)),
        ),
        (GEN_AI_PROVIDER_NAME.into(), s(provider)),
        (GEN_AI_REQUEST_MODEL.into(), s(model)),
    ];
    let token_types = [
        (
            TOKEN_TYPE_INPUT,
            record.input_tokens.map(|v| v.max(0) as f64),
        ),
        (
            TOKEN_TYPE_OUTPUT,
            record.output_tokens.map(|v| v.max(0) as f64),
        ),
        (TOKEN_TYPE_CACHE_READ, positive(record.cache_read_tokens)),
        (
            TOKEN_TYPE_CACHE_CREATION,
            positive(record.cache_write_tokens),
        ),
    ];
    for (token_type, value) in token_types {
        if let Some(value) = value {
            let mut attrs = gen_ai.clone();
            attrs.push((GEN_AI_TOKEN_TYPE.into(), s(token_type)));
            agg.add(&GEN_AI_TOKEN_USAGE, &attrs, value);
        }
    }
    if let Some(ms) = record.latency_ms.filter(|v| *v >= 0.0) {
        let mut attrs = gen_ai;
        match record.status {
            Some(status) if status < 400 => {}
            Some(status) => attrs.push((ERROR_TYPE.into(), s(&status.to_string()))),
            None => attrs.push((ERROR_TYPE.into(), s("_OTHER"))),
        }
        agg.add(&GEN_AI_OPERATION_DURATION, &attrs, ms / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_bounds_ascend() {
        let mut names: Vec<&str> = INSTRUMENTS.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), INSTRUMENTS.len());
        for i in INSTRUMENTS {
            if let Kind::Histogram(bounds) = i.kind {
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{}", i.name);
            }
        }
        for f in FROM_FILTER {
            assert!(INSTRUMENTS.contains(&f.instrument), "{}", f.family);
        }
        // The filter's transform-timing buckets, scaled, are the stage histogram's bounds.
        let scaled: Vec<f64> = crate::abi::shared::HISTOGRAM_BUCKETS
            .iter()
            .map(|b| b * 0.001)
            .collect();
        assert_eq!(scaled.len(), STAGE_SECONDS.len());
        for (a, b) in scaled.iter().zip(STAGE_SECONDS) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }
}
