//! What one provider response adds to the metrics: the usage the provider reported, turned into
//! counter increments (docs/upstream.md §4 and §5), and the bounded set of model labels.
//!
//! Prompt-cache families follow §5's aggregation rule: they move only for a response with cache
//! activity (a read or a write), and then all together, so hit rates divide like quantities.

use crate::api::Provider;
use crate::metrics::{Counter, Ttl};
use crate::pricing::{PriceTable, TokenFigures};
use crate::usage::Usage;

/// Cost counters are kept in nano-USD: proxy-wasm counters are integers, and a small request
/// to a cheap model costs a few micro-USD.
pub const NANO_USD_PER_USD: f64 = 1e9;

/// The token figures a provider bills for one response (docs/upstream.md §12): Anthropic's
/// writes split by TTL (an unsplit remainder counts as 5-minute, Anthropic's default); OpenAI
/// charges no writes, so its inferred write is not billed and the uncached part is the prompt
/// minus reads. With no split at all, the whole prompt is uncached input.
pub fn billed_figures(usage: &Usage) -> TokenFigures {
    let f = usage.cache_figures();
    let mut figures = TokenFigures {
        uncached_input: f.uncached,
        cache_read: f.read,
        output: f.output,
        ..TokenFigures::default()
    };
    if usage.api.provider() == Provider::Anthropic {
        let unsplit = f.write.saturating_sub(f.write_5m + f.write_1h);
        figures.cache_write_5m = f.write_5m + unsplit;
        figures.cache_write_1h = f.write_1h;
    }
    if figures.uncached_input + figures.cache_read + figures.cache_write_5m + figures.cache_write_1h
        == 0
    {
        figures.uncached_input = usage.total_input_tokens().unwrap_or(0);
    }
    figures
}

/// USD as the nano-USD integer the cost counters hold (negative and non-finite → 0).
pub fn nano_usd(usd: f64) -> u64 {
    (usd * NANO_USD_PER_USD).round().max(0.0) as u64
}

/// What one priced exchange cost, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Input side (uncached input, cache reads and writes).
    pub input_usd: f64,
    /// Output.
    pub output_usd: f64,
    /// Tokens saved at the model's input price.
    pub savings_usd: f64,
}

/// The cost of one response of `model` whose request had `tokens_saved` removed: input-side
/// and output cost, and the compression saving (tokens saved × the input price). `None` for a
/// model without a price: its cost is unknown, never zero.
pub fn exchange_costs(
    prices: &PriceTable,
    model: &str,
    usage: &Usage,
    tokens_saved: u64,
) -> Option<Costs> {
    let cost = prices.cost(model, &billed_figures(usage))?;
    Some(Costs {
        input_usd: cost.input_side_usd(),
        output_usd: cost.output_usd,
        savings_usd: prices.savings_usd(model, tokens_saved).unwrap_or(0.0),
    })
}

/// The cost counter increments of one response: its [`Costs`], or only
/// [`Counter::CostUnknownRequests`] when its model has no price.
pub fn cost_increments(costs: Option<&Costs>) -> Vec<(Counter, u64)> {
    let Some(costs) = costs else {
        return vec![(Counter::CostUnknownRequests, 1)];
    };
    let mut out = vec![
        (Counter::CostInputNanoUsd, nano_usd(costs.input_usd)),
        (Counter::CostOutputNanoUsd, nano_usd(costs.output_usd)),
        (Counter::SavingsNanoUsd, nano_usd(costs.savings_usd)),
        (Counter::CostKnownRequests, 1),
    ];
    out.retain(|(_, delta)| *delta > 0);
    out
}

/// The counter increments of one response's usage (zero increments left out).
pub fn usage_increments(provider: Provider, usage: &Usage) -> Vec<(Counter, u64)> {
    let figures = usage.cache_figures();
    let mut out = vec![
        (
            Counter::TokensInput,
            usage.total_input_tokens().unwrap_or(0),
        ),
        (Counter::TokensOutput, figures.output),
    ];
    if figures.read > 0 || figures.write > 0 {
        out.extend([
            (Counter::CacheReadTokens(provider), figures.read),
            (Counter::CacheWriteTokens(provider), figures.write),
            (
                Counter::CacheWriteTtlTokens(provider, Ttl::FiveMinutes),
                figures.write_5m,
            ),
            (
                Counter::CacheWriteTtlTokens(provider, Ttl::OneHour),
                figures.write_1h,
            ),
            (
                Counter::CacheWriteTtlRequests(provider, Ttl::FiveMinutes),
                u64::from(figures.write_5m > 0),
            ),
            (
                Counter::CacheWriteTtlRequests(provider, Ttl::OneHour),
                u64::from(figures.write_1h > 0),
            ),
            (Counter::UncachedInputTokens(provider), figures.uncached),
            (Counter::ProviderCacheRequests(provider), 1),
            (
                Counter::ProviderCacheHitRequests(provider),
                u64::from(figures.read > 0),
            ),
            (Counter::RequestsCached, u64::from(figures.read > 0)),
        ]);
    }
    out.retain(|(_, delta)| *delta > 0);
    out
}

/// The provider-level prefix-cache bust (docs/upstream.md §5; Anthropic only, model-aware): a
/// response with cache activity, not the first of its model, that wrote more than half of
/// what it read and wrote counts one bust and its written tokens.
pub fn bust_increments(
    provider: Provider,
    figures: &crate::usage::CacheFigures,
    model_seen_before: bool,
) -> Vec<(Counter, u64)> {
    let active = figures.read > 0 || figures.write > 0;
    if provider != Provider::Anthropic
        || !active
        || !model_seen_before
        || figures.write * 2 <= figures.read + figures.write
    {
        return Vec::new();
    }
    vec![
        (Counter::ProviderCacheBust(provider), 1),
        (
            Counter::ProviderCacheBustWriteTokens(provider),
            figures.write,
        ),
    ]
}

/// Label value for a model outside the bounded set.
pub const OTHER_MODEL: &str = "other";

/// Label value when neither the request nor the response named a model.
pub const UNKNOWN_MODEL: &str = "unknown";

/// The model label set as stored in shared data: one name per line, in order of first use.
/// `admit` says whether `model` may have its own label (already present, or room under `cap`)
/// and returns the new stored form when it was added.
pub fn admit_label(stored: &[u8], model: &str, cap: usize) -> (bool, Option<Vec<u8>>) {
    let text = String::from_utf8_lossy(stored);
    let names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if names.contains(&model) {
        return (true, None);
    }
    if names.len() >= cap {
        return (false, None);
    }
    let mut out = stored.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(model.as_bytes());
    out.push(b'\n');
    (true, Some(out))
}

/// The labels in the stored form, in order of first use.
pub fn stored_labels(stored: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stored)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::api::Api;

    fn anthropic(read: u64, write: u64, w5: u64, w1h: u64) -> Usage {
        Usage {
            api: Api::AnthropicMessages,
            model: Some("claude-sonnet-4-5".into()),
            input_tokens: Some(20),
            output_tokens: Some(20),
            cache_read_tokens: Some(read),
            cache_write_tokens: Some(write),
            cache_write_5m_tokens: Some(w5),
            cache_write_1h_tokens: Some(w1h),
        }
    }

    fn get(increments: &[(Counter, u64)], counter: Counter) -> u64 {
        increments
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, d)| *d)
    }

    #[test]
    fn anthropic_cache_activity_moves_every_family() {
        // The cache figures of docs/upstream.md §16's sample: read 40, write 60 (5m 10, 1h 50),
        // uncached 20, output 20. Anthropic's prompt is uncached + read + write.
        let p = Provider::Anthropic;
        let inc = usage_increments(p, &anthropic(40, 60, 10, 50));
        assert_eq!(get(&inc, Counter::TokensInput), 120);
        assert_eq!(get(&inc, Counter::TokensOutput), 20);
        assert_eq!(get(&inc, Counter::CacheReadTokens(p)), 40);
        assert_eq!(get(&inc, Counter::CacheWriteTokens(p)), 60);
        assert_eq!(
            get(&inc, Counter::CacheWriteTtlTokens(p, Ttl::FiveMinutes)),
            10
        );
        assert_eq!(get(&inc, Counter::CacheWriteTtlTokens(p, Ttl::OneHour)), 50);
        assert_eq!(
            get(&inc, Counter::CacheWriteTtlRequests(p, Ttl::OneHour)),
            1
        );
        assert_eq!(get(&inc, Counter::UncachedInputTokens(p)), 20);
        assert_eq!(get(&inc, Counter::ProviderCacheRequests(p)), 1);
        assert_eq!(get(&inc, Counter::ProviderCacheHitRequests(p)), 1);
        assert_eq!(get(&inc, Counter::RequestsCached), 1);
        assert!(inc.iter().all(|(_, d)| *d > 0));
    }

    #[test]
    fn no_cache_activity_moves_only_token_totals() {
        let inc = usage_increments(Provider::Anthropic, &anthropic(0, 0, 0, 0));
        assert_eq!(
            inc,
            vec![(Counter::TokensInput, 20), (Counter::TokensOutput, 20)]
        );
    }

    #[test]
    fn openai_write_is_inferred_as_section_5_says() {
        let usage = Usage {
            api: Api::OpenAiChat,
            model: Some("gpt-4o".into()),
            input_tokens: Some(1000),
            output_tokens: Some(5),
            cache_read_tokens: Some(600),
            cache_write_tokens: None,
            cache_write_5m_tokens: None,
            cache_write_1h_tokens: None,
        };
        let p = Provider::OpenAi;
        let inc = usage_increments(p, &usage);
        assert_eq!(get(&inc, Counter::TokensInput), 1000);
        assert_eq!(get(&inc, Counter::CacheReadTokens(p)), 600);
        assert_eq!(get(&inc, Counter::CacheWriteTokens(p)), 400);
        assert_eq!(get(&inc, Counter::UncachedInputTokens(p)), 400);
        assert_eq!(
            get(&inc, Counter::CacheWriteTtlRequests(p, Ttl::FiveMinutes)),
            0
        );
    }

    #[test]
    fn a_bust_is_a_later_anthropic_request_that_mostly_writes() {
        let usage = anthropic(100, 300, 300, 0);
        let figures = usage.cache_figures();
        assert_eq!(
            bust_increments(Provider::Anthropic, &figures, false),
            vec![]
        );
        assert_eq!(
            bust_increments(Provider::Anthropic, &figures, true),
            vec![
                (Counter::ProviderCacheBust(Provider::Anthropic), 1),
                (
                    Counter::ProviderCacheBustWriteTokens(Provider::Anthropic),
                    300
                )
            ]
        );
        let mostly_read = anthropic(300, 300, 300, 0).cache_figures();
        assert_eq!(
            bust_increments(Provider::Anthropic, &mostly_read, true),
            vec![]
        );
        assert_eq!(bust_increments(Provider::OpenAi, &figures, true), vec![]);
    }

    #[test]
    fn costs_are_priced_or_unknown() {
        let prices = PriceTable::builtin();
        // Sonnet: $3 / $15 per million; read 0.1x, 5m write 1.25x, 1h write 2x input.
        let usage = anthropic(1_000_000, 1_000_000, 0, 1_000_000);
        let inc = cost_increments(
            exchange_costs(&prices, "claude-sonnet-4-5", &usage, 1_000_000).as_ref(),
        );
        let usd = |c| get(&inc, c) as f64 / NANO_USD_PER_USD;
        // uncached 20 tokens (0.00006) + read 0.3 + 1h write 6.0.
        assert!((usd(Counter::CostInputNanoUsd) - 6.30006).abs() < 1e-9);
        assert!((usd(Counter::CostOutputNanoUsd) - 0.0003).abs() < 1e-9);
        assert!((usd(Counter::SavingsNanoUsd) - 3.0).abs() < 1e-9);
        assert_eq!(get(&inc, Counter::CostKnownRequests), 1);
        let unknown =
            cost_increments(exchange_costs(&prices, "my-local-llama", &usage, 5).as_ref());
        assert_eq!(unknown, vec![(Counter::CostUnknownRequests, 1)]);
    }

    #[test]
    fn billed_figures_follow_each_provider() {
        let split = billed_figures(&anthropic(40, 60, 10, 30));
        assert_eq!(
            (
                split.cache_write_5m,
                split.cache_write_1h,
                split.uncached_input
            ),
            (30, 30, 20)
        );
        let openai = Usage {
            api: Api::OpenAiChat,
            model: None,
            input_tokens: Some(1000),
            output_tokens: Some(5),
            cache_read_tokens: Some(600),
            cache_write_tokens: None,
            cache_write_5m_tokens: None,
            cache_write_1h_tokens: None,
        };
        let figures = billed_figures(&openai);
        assert_eq!((figures.uncached_input, figures.cache_read), (400, 600));
        assert_eq!(figures.cache_write_5m + figures.cache_write_1h, 0);
    }

    #[test]
    fn label_set_is_bounded() {
        let (ok, stored) = admit_label(b"", "gpt-4o", 2);
        assert!(ok);
        let stored = stored.unwrap();
        assert_eq!(admit_label(&stored, "gpt-4o", 2), (true, None));
        let (ok, stored) = admit_label(&stored, "claude", 2);
        assert!(ok);
        let stored = stored.unwrap();
        assert_eq!(admit_label(&stored, "third", 2), (false, None));
        assert_eq!(stored_labels(&stored), ["gpt-4o", "claude"]);
    }
}
