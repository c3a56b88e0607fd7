//! `GET /stats`: the JSON document of docs/upstream.md §1 (the parts this filter measures),
//! built from a [`Snapshot`] of the process-wide counters and timings, so the same traffic
//! gives the same document in every host and from every VM.
//!
//! Timings (latency, TTFB, the filter's own overhead) are kept as a [`Timings`] record in
//! shared data, updated by compare-and-swap, because a histogram cannot be read back through
//! the proxy-wasm ABI.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::Provider;
use crate::fail_open::FailOpen;
use crate::metrics::{Counter, Histogram, Strategy, Ttl};
use crate::pipeline::Decision;
use crate::pipeline::waste::WasteSignal;

/// Count, sum, minimum and maximum of one timing, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum_us: u64,
    /// Smallest sample (0 when there is none).
    pub min_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl Timing {
    /// Adds a sample.
    pub fn record(&mut self, us: u64) {
        self.min_us = if self.count == 0 {
            us
        } else {
            self.min_us.min(us)
        };
        self.max_us = self.max_us.max(us);
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// `{average_ms, min_ms, max_ms}`, 2 decimals, all 0 without samples (§1).
    fn json(&self) -> Value {
        if self.count == 0 {
            return json!({"average_ms": 0, "min_ms": 0, "max_ms": 0});
        }
        let ms = |us: u64| round(us as f64 / 1000.0, 2);
        json!({
            "average_ms": round(self.sum_us as f64 / self.count as f64 / 1000.0, 2),
            "min_ms": ms(self.min_us),
            "max_ms": ms(self.max_us),
        })
    }
}

/// The three timings, stored together in shared data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Request latency.
    pub latency: Timing,
    /// Time to first byte.
    pub ttfb: Timing,
    /// The filter's overhead.
    pub overhead: Timing,
}

impl Timings {
    /// The timing whose samples also go to `histogram`.
    pub fn get(&self, histogram: Histogram) -> Timing {
        let mut copy = *self;
        *copy.get_mut(histogram)
    }

    /// The timing whose samples also go to `histogram`, to record into.
    pub fn get_mut(&mut self, histogram: Histogram) -> &mut Timing {
        match histogram {
            Histogram::LatencyMs => &mut self.latency,
            Histogram::TtfbMs => &mut self.ttfb,
            Histogram::OverheadMs => &mut self.overhead,
        }
    }

    /// The stored form: twelve u64, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        [self.latency, self.ttfb, self.overhead]
            .iter()
            .flat_map(|t| [t.count, t.sum_us, t.min_us, t.max_us])
            .flat_map(u64::to_le_bytes)
            .collect()
    }

    /// Parses [`Timings::encode`]'s form; anything else reads as no samples.
    pub fn decode(bytes: &[u8]) -> Timings {
        if bytes.len() != 96 {
            return Timings::default();
        }
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_le_bytes))
            .collect();
        let timing = |i: usize| Timing {
            count: words.get(i).copied().unwrap_or(0),
            sum_us: words.get(i + 1).copied().unwrap_or(0),
            min_us: words.get(i + 2).copied().unwrap_or(0),
            max_us: words.get(i + 3).copied().unwrap_or(0),
        };
        Timings {
            latency: timing(0),
            ttfb: timing(4),
            overhead: timing(8),
        }
    }
}

/// Timings per transform (a pipeline strategy, or `token_count`), process-wide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformTimings(pub BTreeMap<String, Timing>);

impl TransformTimings {
    /// Adds a sample of `transform`.
    pub fn record(&mut self, transform: &str, us: u64) {
        self.0.entry(transform.to_owned()).or_default().record(us);
    }

    /// The stored form: JSON `{transform: [count, sum_us, min_us, max_us]}`.
    pub fn encode(&self) -> Vec<u8> {
        let map: BTreeMap<&str, [u64; 4]> = self
            .0
            .iter()
            .map(|(k, t)| (k.as_str(), [t.count, t.sum_us, t.min_us, t.max_us]))
            .collect();
        serde_json::to_vec(&map).unwrap_or_default()
    }

    /// Parses [`TransformTimings::encode`]'s form; anything else reads as no samples.
    pub fn decode(bytes: &[u8]) -> TransformTimings {
        let map: BTreeMap<String, [u64; 4]> = serde_json::from_slice(bytes).unwrap_or_default();
        TransformTimings(
            map.into_iter()
                .map(|(k, [count, sum_us, min_us, max_us])| {
                    (
                        k,
                        Timing {
                            count,
                            sum_us,
                            min_us,
                            max_us,
                        },
                    )
                })
                .collect(),
        )
    }

    /// `/stats.pipeline_timing`: `{transform: {average_ms, max_ms, count}}`, sorted.
    fn json(&self) -> Value {
        let ms = |us: f64| round(us / 1000.0, 3);
        let map: Map<String, Value> = self
            .0
            .iter()
            .filter(|(_, t)| t.count > 0)
            .map(|(k, t)| {
                (
                    k.clone(),
                    json!({
                        "average_ms": ms(t.sum_us as f64 / t.count as f64),
                        "max_ms": ms(t.max_us as f64),
                        "count": t.count,
                    }),
                )
            })
            .collect();
        Value::Object(map)
    }
}

/// Everything `/stats` reports, read from the process-wide state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The value of every fixed counter.
    pub counters: BTreeMap<String, u64>,
    /// Requests per model label.
    pub models: Vec<(String, u64)>,
    /// Cost and compression savings per model label, nano-USD.
    pub model_costs: Vec<(String, u64, u64)>,
    /// Requests per stack label.
    pub stacks: Vec<(String, u64)>,
    /// The `budget` block ([`crate::budget::budget_json`]).
    pub budget: Value,
    /// Latency, TTFB and overhead.
    pub timings: Timings,
    /// Per-transform timings of the pipeline.
    pub transform_timings: TransformTimings,
}

impl Snapshot {
    /// The value of `counter` (0 if absent).
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(&counter.name()).copied().unwrap_or(0)
    }
}

/// Rounds to `places` decimals.
fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// `part / whole × 100`, rounded, 0 on a zero denominator.
fn percent(part: u64, whole: u64, places: i32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round(part as f64 / whole as f64 * 100.0, places)
    }
}

/// The `/stats` document.
pub fn render(s: &Snapshot) -> Value {
    let by_provider: Map<String, Value> = Provider::ALL
        .iter()
        .map(|p| {
            (
                p.as_str().to_owned(),
                json!(s.get(Counter::RequestsByProvider(*p))),
            )
        })
        .filter(|(_, n)| n.as_u64() != Some(0))
        .collect();
    let counts = |pairs: &[(String, u64)]| -> Map<String, Value> {
        pairs
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| (m.clone(), json!(n)))
            .collect()
    };
    let input = s.get(Counter::TokensInput);
    let saved = s.get(Counter::TokensSaved);
    let decisions: Map<String, Value> = Decision::ALL
        .iter()
        .map(|d| {
            (
                d.as_str().to_owned(),
                json!(s.get(Counter::ToolOutputs(*d))),
            )
        })
        .collect();
    let fail_open: Map<String, Value> = FailOpen::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(s.get(Counter::FailOpen(*r)))))
        .collect();
    json!({
        "requests": {
            "total": s.get(Counter::Requests),
            "cached": s.get(Counter::RequestsCached),
            "rate_limited": 0,
            "failed": s.get(Counter::RequestsFailed),
            "by_provider": by_provider,
            "by_model": counts(&s.models),
            "by_stack": counts(&s.stacks),
        },
        "tokens": {
            "input": input,
            "output": s.get(Counter::TokensOutput),
            "saved": saved,
            "savings_percent": percent(saved, input + saved, 2),
            "proxy_compression_saved": saved,
            "total_before_compression": input + saved,
        },
        "latency": with_count(s.timings.latency),
        "overhead": s.timings.overhead.json(),
        "ttfb": s.timings.ttfb.json(),
        "compression": {
            "tool_outputs": decisions,
            "bytes_saved": s.get(Counter::BytesSaved),
            "retrievals": {
                "found": s.get(Counter::Retrievals(true)),
                "missing": s.get(Counter::Retrievals(false)),
            },
        },
        "pipeline_timing": s.transform_timings.json(),
        "compressions_by_strategy": by_strategy(s, Counter::Compressions),
        "tokens_saved_by_strategy": by_strategy(s, Counter::TokensSavedBy),
        "waste_signals": waste_signals(s),
        "fail_open": fail_open,
        "prefix_cache": prefix_cache(s),
        "cost": cost(s),
        "budget": s.budget,
    })
}

/// `/stats.cost` (§12): upstream's names and the seed's aliases. USD to 6 decimals (upstream
/// rounds to 4, which hides the cost of small requests). Responses of unpriced models are
/// counted apart: their cost is unknown, not zero.
fn cost(s: &Snapshot) -> Value {
    let usd = |c: Counter| round(s.get(c) as f64 / crate::accounting::NANO_USD_PER_USD, 6);
    let input = usd(Counter::CostInputNanoUsd);
    let output = usd(Counter::CostOutputNanoUsd);
    let savings = usd(Counter::SavingsNanoUsd);
    json!({
        "cost_with_headroom_usd": input,
        "output_cost_usd": output,
        "total_cost_usd": round(input + output, 6),
        "savings_usd": savings,
        "total_savings_usd": savings,
        "compression_savings_usd": savings,
        "total_input_tokens": s.get(Counter::TokensInput),
        "total_tokens_saved": s.get(Counter::TokensSaved),
        "priced_requests": s.get(Counter::CostKnownRequests),
        "unknown_model_requests": s.get(Counter::CostUnknownRequests),
        "budget_rejected_requests": s.get(Counter::BudgetRejected),
        "per_model": per_model(s),
    })
}

/// `cost.per_model`: requests, cost and savings of each model label with priced traffic.
fn per_model(s: &Snapshot) -> Value {
    let usd = |nano: u64| round(nano as f64 / crate::accounting::NANO_USD_PER_USD, 6);
    let requests: BTreeMap<&str, u64> = s.models.iter().map(|(m, n)| (m.as_str(), *n)).collect();
    let map: Map<String, Value> = s
        .model_costs
        .iter()
        .filter(|(_, cost, saved)| *cost > 0 || *saved > 0)
        .map(|(model, cost, saved)| {
            (
                model.clone(),
                json!({
                    "requests": requests.get(model.as_str()).copied().unwrap_or(0),
                    "cost_usd": usd(*cost),
                    "savings_usd": usd(*saved),
                }),
            )
        })
        .collect();
    Value::Object(map)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Per-strategy counts (strategies that never ran are left out).
fn by_strategy(s: &Snapshot, counter: fn(Strategy) -> Counter) -> Value {
    let map: Map<String, Value> = Strategy::ALL
        .iter()
        .map(|st| (st.as_str().to_owned(), s.get(counter(*st))))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k, json!(n)))
        .collect();
    Value::Object(map)
}

/// Tokens per waste signal, every signal listed (as upstream does).
fn waste_signals(s: &Snapshot) -> Value {
    let map: Map<String, Value> = WasteSignal::ALL
        .iter()
        .map(|w| {
            (
                w.as_str().to_owned(),
                json!(s.get(Counter::WasteSignalTokens(*w))),
            )
        })
        .collect();
    Value::Object(map)
}

fn with_count(timing: Timing) -> Value {
    let mut value = timing.json();
    if let Some(object) = value.as_object_mut() {
        object.insert("total_requests".into(), json!(timing.count));
    }
    value
}

/// Prompt-cache figures of one provider (or the totals), as §5 names them.
#[derive(Debug, Clone, Copy, Default)]
struct CacheSums {
    read: u64,
    write: u64,
    write_5m: u64,
    write_1h: u64,
    write_5m_requests: u64,
    write_1h_requests: u64,
    uncached: u64,
    requests: u64,
    hit_requests: u64,
}

impl CacheSums {
    fn of(s: &Snapshot, p: Provider) -> CacheSums {
        CacheSums {
            read: s.get(Counter::CacheReadTokens(p)),
            write: s.get(Counter::CacheWriteTokens(p)),
            write_5m: s.get(Counter::CacheWriteTtlTokens(p, Ttl::FiveMinutes)),
            write_1h: s.get(Counter::CacheWriteTtlTokens(p, Ttl::OneHour)),
            write_5m_requests: s.get(Counter::CacheWriteTtlRequests(p, Ttl::FiveMinutes)),
            write_1h_requests: s.get(Counter::CacheWriteTtlRequests(p, Ttl::OneHour)),
            uncached: s.get(Counter::UncachedInputTokens(p)),
            requests: s.get(Counter::ProviderCacheRequests(p)),
            hit_requests: s.get(Counter::ProviderCacheHitRequests(p)),
        }
    }

    fn add(&mut self, o: &CacheSums) {
        self.read += o.read;
        self.write += o.write;
        self.write_5m += o.write_5m;
        self.write_1h += o.write_1h;
        self.write_5m_requests += o.write_5m_requests;
        self.write_1h_requests += o.write_1h_requests;
        self.uncached += o.uncached;
        self.requests += o.requests;
        self.hit_requests += o.hit_requests;
    }

    /// The numeric fields shared by a provider entry and the totals.
    fn json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put("cache_read_tokens", json!(self.read));
        put("cache_write_tokens", json!(self.write));
        put("cache_write_5m_tokens", json!(self.write_5m));
        put("cache_write_1h_tokens", json!(self.write_1h));
        put("cache_write_5m_requests", json!(self.write_5m_requests));
        put("cache_write_1h_requests", json!(self.write_1h_requests));
        put("uncached_input_tokens", json!(self.uncached));
        put("requests", json!(self.requests));
        put("hit_requests", json!(self.hit_requests));
        put(
            "hit_rate",
            json!(percent(
                self.read,
                self.read + self.write + self.uncached,
                1
            )),
        );
        put(
            "request_hit_rate",
            json!(percent(self.hit_requests, self.requests, 1)),
        );
        put(
            "observed_ttl_buckets",
            json!({
                "5m": {"tokens": self.write_5m, "requests": self.write_5m_requests},
                "1h": {"tokens": self.write_1h, "requests": self.write_1h_requests},
            }),
        );
        m
    }

    /// §5's `observed_ttl_mix`.
    fn ttl_mix(&self) -> Value {
        let both = self.write_5m + self.write_1h;
        let active: Vec<&str> = [("5m", self.write_5m), ("1h", self.write_1h)]
            .iter()
            .filter(|(_, t)| *t > 0)
            .map(|(b, _)| *b)
            .collect();
        json!({
            "5m_pct": percent(self.write_5m, both, 1),
            "1h_pct": percent(self.write_1h, both, 1),
            "active_buckets": active,
        })
    }
}

/// Cache economics per provider (§5): read discount, write premium, label.
fn economics(p: Provider) -> (&'static str, &'static str, &'static str) {
    match p {
        Provider::Anthropic => ("90%", "25%", "Explicit breakpoints, 5-min TTL"),
        Provider::OpenAi => ("50%", "none", "Automatic, no TTL control"),
    }
}

/// `/stats.prefix_cache`: providers with cache activity, and totals.
fn prefix_cache(s: &Snapshot) -> Value {
    let mut totals = CacheSums::default();
    let mut by_provider = Map::new();
    let (mut busts, mut bust_tokens) = (0, 0);
    for p in Provider::ALL {
        let sums = CacheSums::of(s, p);
        totals.add(&sums);
        if sums.requests == 0 {
            continue;
        }
        let mut entry = sums.json();
        let (discount, premium, label) = economics(p);
        let bust = s.get(Counter::ProviderCacheBust(p));
        let bust_write = s.get(Counter::ProviderCacheBustWriteTokens(p));
        busts += bust;
        bust_tokens += bust_write;
        entry.insert("bust_count".into(), json!(bust));
        entry.insert("bust_write_tokens".into(), json!(bust_write));
        entry.insert("read_discount".into(), json!(discount));
        entry.insert("write_premium".into(), json!(premium));
        entry.insert("label".into(), json!(label));
        if sums.write_5m + sums.write_1h > 0 {
            entry.insert("observed_ttl_mix".into(), sums.ttl_mix());
        }
        by_provider.insert(p.as_str().to_owned(), Value::Object(entry));
    }
    let mut totals_json = totals.json();
    totals_json.insert("bust_count".into(), json!(busts));
    totals_json.insert("bust_write_tokens".into(), json!(bust_tokens));
    totals_json.insert("observed_ttl_mix".into(), totals.ttl_mix());
    let saved = s.get(Counter::TokensSaved);
    let lost = s.get(Counter::CacheBustTokensLost);
    json!({
        "by_provider": by_provider,
        "totals": totals_json,
        "compression_vs_cache": {
            "tokens_saved_by_compression": saved,
            "tokens_lost_to_cache_bust": lost,
            "cache_bust_count": s.get(Counter::CacheBust),
            "net_tokens": signed(saved).saturating_sub(signed(lost)),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn snapshot(values: &[(Counter, u64)]) -> Snapshot {
        Snapshot {
            counters: values.iter().map(|(c, v)| (c.name(), *v)).collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn transform_timings_round_trip_and_summarise() {
        let mut t = TransformTimings::default();
        t.record("json_select", 1500);
        t.record("json_select", 500);
        t.record("token_count", 250);
        let decoded = TransformTimings::decode(&t.encode());
        assert_eq!(decoded, t);
        let mut s = snapshot(&[]);
        s.transform_timings = decoded;
        assert_eq!(
            render(&s)["pipeline_timing"],
            json!({
                "json_select": {"average_ms": 1.0, "max_ms": 1.5, "count": 2},
                "token_count": {"average_ms": 0.25, "max_ms": 0.25, "count": 1},
            })
        );
        assert_eq!(
            TransformTimings::decode(b"garbage"),
            TransformTimings::default()
        );
    }

    #[test]
    fn strategies_and_per_model_cost() {
        let mut s = snapshot(&[
            (Counter::Compressions(Strategy::JsonSelect), 3),
            (Counter::TokensSavedBy(Strategy::JsonSelect), 900),
            (Counter::Compressions(Strategy::Replay), 2),
        ]);
        s.models = vec![("gpt-4o".into(), 4), ("claude-x".into(), 1)];
        s.model_costs = vec![
            ("gpt-4o".into(), 1_500_000, 250_000),
            ("claude-x".into(), 0, 0),
        ];
        let v = render(&s);
        assert_eq!(
            v["compressions_by_strategy"],
            json!({"json_select": 3, "replay": 2})
        );
        assert_eq!(v["tokens_saved_by_strategy"], json!({"json_select": 900}));
        assert_eq!(
            v["cost"]["per_model"],
            json!({"gpt-4o": {"requests": 4, "cost_usd": 0.0015, "savings_usd": 0.00025}})
        );
    }

    #[test]
    fn timings_round_trip_and_summarise() {
        let mut timings = Timings::default();
        for us in [1500, 500, 4000] {
            timings.get_mut(Histogram::LatencyMs).record(us);
        }
        let decoded = Timings::decode(&timings.encode());
        assert_eq!(decoded, timings);
        assert_eq!(Timings::decode(b"junk"), Timings::default());
        let v = with_count(decoded.latency);
        assert_eq!(v["average_ms"], 2.0);
        assert_eq!(v["min_ms"], 0.5);
        assert_eq!(v["max_ms"], 4.0);
        assert_eq!(v["total_requests"], 3);
        assert_eq!(Timing::default().json()["max_ms"], 0);
    }

    #[test]
    fn cost_block_in_usd() {
        let doc = render(&snapshot(&[
            (Counter::CostInputNanoUsd, 1_500_000),
            (Counter::CostOutputNanoUsd, 250_000),
            (Counter::SavingsNanoUsd, 3_000_000_000),
            (Counter::CostUnknownRequests, 2),
        ]));
        let cost = &doc["cost"];
        assert_eq!(cost["cost_with_headroom_usd"], 0.0015);
        assert_eq!(cost["total_cost_usd"], 0.00175);
        assert_eq!(cost["total_savings_usd"], 3.0);
        assert_eq!(cost["unknown_model_requests"], 2);
        assert!(cost.get("cost_without_headroom_usd").is_none());
    }

    #[test]
    fn tokens_and_requests() {
        let doc = render(&snapshot(&[
            (Counter::Requests, 4),
            (Counter::RequestsByProvider(Provider::OpenAi), 3),
            (Counter::RequestsByProvider(Provider::Anthropic), 1),
            (Counter::TokensInput, 300),
            (Counter::TokensSaved, 100),
            (Counter::TokensOutput, 7),
        ]));
        assert_eq!(doc["requests"]["total"], 4);
        assert_eq!(doc["requests"]["by_provider"]["openai"], 3);
        assert_eq!(doc["tokens"]["savings_percent"], 25.0);
        assert_eq!(doc["tokens"]["total_before_compression"], 400);
        assert_eq!(
            render(&Snapshot::default())["tokens"]["savings_percent"],
            0.0
        );
    }

    #[test]
    fn prefix_cache_matches_the_seed_numbers() {
        // docs/upstream.md §16: read 300000, write 70000 (5m 20000, 1h 50000), uncached 30000,
        // 20 requests, 15 hits.
        let p = Provider::Anthropic;
        let doc = render(&snapshot(&[
            (Counter::CacheReadTokens(p), 300_000),
            (Counter::CacheWriteTokens(p), 70_000),
            (Counter::CacheWriteTtlTokens(p, Ttl::FiveMinutes), 20_000),
            (Counter::CacheWriteTtlTokens(p, Ttl::OneHour), 50_000),
            (Counter::UncachedInputTokens(p), 30_000),
            (Counter::ProviderCacheRequests(p), 20),
            (Counter::ProviderCacheHitRequests(p), 15),
        ]));
        let entry = &doc["prefix_cache"]["by_provider"]["anthropic"];
        assert_eq!(entry["hit_rate"], 75.0);
        assert_eq!(entry["request_hit_rate"], 75.0);
        assert_eq!(entry["observed_ttl_mix"]["5m_pct"], 28.6);
        assert_eq!(entry["observed_ttl_mix"]["1h_pct"], 71.4);
        assert_eq!(
            entry["observed_ttl_mix"]["active_buckets"],
            json!(["5m", "1h"])
        );
        assert!(doc["prefix_cache"]["by_provider"].get("openai").is_none());
        let totals = &doc["prefix_cache"]["totals"];
        assert_eq!(totals["cache_read_tokens"], 300_000);
        assert_eq!(totals["observed_ttl_buckets"]["1h"]["tokens"], 50_000);
        let empty = render(&Snapshot::default());
        assert_eq!(
            empty["prefix_cache"]["totals"]["observed_ttl_mix"]["active_buckets"],
            json!([])
        );
    }
}
