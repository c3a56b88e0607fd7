//! Model prices and what a request cost: the built-in price table (USD per million tokens)
//! for OpenAI and Anthropic models, price overrides from the plugin configuration, model-name
//! normalisation (provider prefixes, Bedrock/Vertex suffixes, dated snapshots), the cost of a
//! request's token figures, and the bounded model label used by metrics.
//!
//! Upstream Headroom prices through LiteLLM's community table (docs/upstream.md §12). The
//! filter cannot fetch or bundle that JSON cheaply, so it carries the list prices of the models
//! it is used with and lets operators add or correct entries in its configuration
//! (`PriceTable::with_overrides`). An unknown model has no price: [`PriceTable::cost`] answers
//! `None`, never 0, so callers can tell "free" from "not priced".

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Tokens in the unit prices are quoted for.
const PER: f64 = 1_000_000.0;

/// Prices of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrices {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning tokens included, as providers bill them).
    pub output: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: f64,
    /// Input tokens written to the prompt cache with the 5-minute TTL.
    pub cache_write_5m: f64,
    /// Input tokens written to the prompt cache with the 1-hour TTL.
    pub cache_write_1h: f64,
}

impl ModelPrices {
    /// Anthropic's published rule: a cache read costs 0.1× input, a 5-minute cache write
    /// 1.25× input and a 1-hour cache write 2× input.
    pub const fn anthropic(input: f64, output: f64) -> ModelPrices {
        ModelPrices {
            input,
            output,
            cache_read: input * 0.1,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
        }
    }

    /// OpenAI's rule: cached input has its own price and writing the cache costs nothing
    /// extra (a write is ordinary input, so both write prices equal the input price; OpenAI
    /// does not report writes anyway). Models without prompt caching pass `cached = input`.
    pub const fn openai(input: f64, cached: f64, output: f64) -> ModelPrices {
        ModelPrices {
            input,
            output,
            cache_read: cached,
            cache_write_5m: input,
            cache_write_1h: input,
        }
    }

    fn is_valid(&self) -> bool {
        [
            self.input,
            self.output,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
        ]
        .iter()
        .all(|price| price.is_finite() && *price >= 0.0)
    }
}

/// The built-in table: list prices (standard tier, prompts ≤ 200k tokens, no batch or
/// priority discounts) as published on openai.com/api/pricing and
/// docs.anthropic.com/en/docs/about-claude/pricing, as known in early 2026. Keys are
/// normalised model names ([`normalize_model`]) or exact dated snapshots whose price differs
/// from their family's. Assumptions: `claude-opus-4-6` and `claude-sonnet-4-6` are priced like
/// 4.5; long-context (>200k) surcharges and regional (Bedrock/Vertex) uplifts are not
/// modelled. Operators correct or extend it with overrides.
const BUILTIN: &[(&str, ModelPrices)] = &[
    // OpenAI: GPT-5 family.
    ("gpt-5", ModelPrices::openai(1.25, 0.125, 10.0)),
    ("gpt-5-mini", ModelPrices::openai(0.25, 0.025, 2.0)),
    ("gpt-5-nano", ModelPrices::openai(0.05, 0.005, 0.40)),
    ("gpt-5-pro", ModelPrices::openai(15.0, 15.0, 120.0)),
    ("gpt-5.1", ModelPrices::openai(1.25, 0.125, 10.0)),
    ("gpt-5.1-codex-mini", ModelPrices::openai(0.25, 0.025, 2.0)),
    ("gpt-5.2", ModelPrices::openai(1.75, 0.175, 14.0)),
    ("gpt-5.2-pro", ModelPrices::openai(21.0, 21.0, 168.0)),
    ("codex-mini", ModelPrices::openai(1.50, 0.375, 6.0)),
    // OpenAI: GPT-4.1, GPT-4o, GPT-4.5.
    ("gpt-4.1", ModelPrices::openai(2.0, 0.50, 8.0)),
    ("gpt-4.1-mini", ModelPrices::openai(0.40, 0.10, 1.60)),
    ("gpt-4.1-nano", ModelPrices::openai(0.10, 0.025, 0.40)),
    ("gpt-4o", ModelPrices::openai(2.50, 1.25, 10.0)),
    ("gpt-4o-2024-05-13", ModelPrices::openai(5.0, 5.0, 15.0)),
    ("gpt-4o-mini", ModelPrices::openai(0.15, 0.075, 0.60)),
    ("chatgpt-4o", ModelPrices::openai(5.0, 5.0, 15.0)),
    ("gpt-4.5-preview", ModelPrices::openai(75.0, 37.5, 150.0)),
    // OpenAI: reasoning models.
    ("o1", ModelPrices::openai(15.0, 7.50, 60.0)),
    ("o1-mini", ModelPrices::openai(1.10, 0.55, 4.40)),
    ("o1-pro", ModelPrices::openai(150.0, 150.0, 600.0)),
    ("o3", ModelPrices::openai(2.0, 0.50, 8.0)),
    ("o3-mini", ModelPrices::openai(1.10, 0.55, 4.40)),
    ("o3-pro", ModelPrices::openai(20.0, 20.0, 80.0)),
    ("o3-deep-research", ModelPrices::openai(10.0, 2.50, 40.0)),
    ("o4-mini", ModelPrices::openai(1.10, 0.275, 4.40)),
    ("o4-mini-deep-research", ModelPrices::openai(2.0, 0.50, 8.0)),
    // OpenAI: legacy GPT-4 and GPT-3.5 (no prompt caching).
    ("gpt-4-turbo", ModelPrices::openai(10.0, 10.0, 30.0)),
    ("gpt-4-1106-preview", ModelPrices::openai(10.0, 10.0, 30.0)),
    ("gpt-4-0125-preview", ModelPrices::openai(10.0, 10.0, 30.0)),
    (
        "gpt-4-vision-preview",
        ModelPrices::openai(10.0, 10.0, 30.0),
    ),
    ("gpt-4", ModelPrices::openai(30.0, 30.0, 60.0)),
    ("gpt-4-32k", ModelPrices::openai(60.0, 60.0, 120.0)),
    ("gpt-3.5-turbo", ModelPrices::openai(0.50, 0.50, 1.50)),
    ("gpt-3.5-turbo-16k", ModelPrices::openai(3.0, 3.0, 4.0)),
    (
        "gpt-3.5-turbo-instruct",
        ModelPrices::openai(1.50, 1.50, 2.0),
    ),
    // Anthropic: Claude 4.x.
    ("claude-opus-4-6", ModelPrices::anthropic(5.0, 25.0)),
    ("claude-opus-4-5", ModelPrices::anthropic(5.0, 25.0)),
    ("claude-opus-4-1", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-opus-4", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-opus-4-0", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-sonnet-4-6", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-sonnet-4-5", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-sonnet-4", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-sonnet-4-0", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-haiku-4-5", ModelPrices::anthropic(1.0, 5.0)),
    // Anthropic: Claude 3.x.
    ("claude-3-7-sonnet", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-3-5-sonnet", ModelPrices::anthropic(3.0, 15.0)),
    ("claude-3-5-haiku", ModelPrices::anthropic(0.80, 4.0)),
    ("claude-3-opus", ModelPrices::anthropic(15.0, 75.0)),
    ("claude-3-sonnet", ModelPrices::anthropic(3.0, 15.0)),
    // Haiku 3's published cache prices are rounded off the rule: write $0.30, read $0.03.
    (
        "claude-3-haiku",
        ModelPrices {
            input: 0.25,
            output: 1.25,
            cache_read: 0.03,
            cache_write_5m: 0.30,
            cache_write_1h: 0.50,
        },
    ),
];

/// One request's token figures, split the way providers bill them. `uncached_input` excludes
/// cache reads and writes. When a provider reports no split at all (read, write and uncached
/// all zero), the caller puts the whole prompt in `uncached_input`, as upstream does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenFigures {
    /// Input tokens neither read from nor written to the prompt cache.
    pub uncached_input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache with the 5-minute TTL.
    pub cache_write_5m: u64,
    /// Input tokens written to the prompt cache with the 1-hour TTL.
    pub cache_write_1h: u64,
    /// Output tokens.
    pub output: u64,
}

/// What one request cost, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Uncached input.
    pub input_usd: f64,
    /// Prompt-cache reads.
    pub cache_read_usd: f64,
    /// Prompt-cache writes, both TTLs.
    pub cache_write_usd: f64,
    /// Output.
    pub output_usd: f64,
    /// The sum of the four parts.
    pub total_usd: f64,
}

impl Cost {
    /// The input side (uncached input, cache reads and writes): what upstream's
    /// `cost.cost_with_headroom_usd` sums, which excludes output.
    pub fn input_side_usd(&self) -> f64 {
        self.input_usd + self.cache_read_usd + self.cache_write_usd
    }
}

/// A price override from the plugin configuration, USD per million tokens. `input` and
/// `output` are required; an omitted cache price is derived like the built-in entries:
/// Anthropic's multipliers for `claude*` models, otherwise the input price (upstream's default
/// when LiteLLM has no cache price).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Cache read.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// 5-minute cache write.
    #[serde(default)]
    pub cache_write_5m: Option<f64>,
    /// 1-hour cache write.
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

/// The `prices` map of the plugin configuration: model name → prices. Keys go through
/// [`canonical_model`] (provider prefixes and deployment suffixes removed, dates kept), so
/// `"anthropic/claude-sonnet-4-5"` overrides the built-in `claude-sonnet-4-5` and a dated key
/// such as `"gpt-4o-2024-05-13"` prices only that snapshot.
pub type PriceOverrides = BTreeMap<String, PriceOverride>;

/// An invalid price override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceError {
    /// The override's key as configured.
    pub model: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prices.{}: {}", self.model, self.message)
    }
}

impl std::error::Error for PriceError {}

/// A price table: the built-in entries, possibly with overrides merged over them.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    entries: BTreeMap<String, ModelPrices>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    /// The built-in table (see the list prices and their date in this module's source).
    pub fn builtin() -> PriceTable {
        PriceTable {
            entries: BUILTIN
                .iter()
                .map(|(model, prices)| ((*model).to_owned(), *prices))
                .collect(),
        }
    }

    /// This table with `overrides` merged over it: an override replaces the entry with the
    /// same canonical name or adds a new one. Errors name the first invalid override (a
    /// negative price, a key that normalises to nothing, or two keys naming the same model).
    pub fn with_overrides(&self, overrides: &PriceOverrides) -> Result<PriceTable, PriceError> {
        let mut entries = self.entries.clone();
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (model, price) in overrides {
            let error = |message: String| PriceError {
                model: model.clone(),
                message,
            };
            let key = canonical_model(model);
            if key.is_empty() {
                return Err(error("the model name is empty".to_owned()));
            }
            if let Some(other) = seen.insert(key.clone(), model) {
                return Err(error(format!("names the same model as `{other}`")));
            }
            let prices = price.resolve(&key);
            if !prices.is_valid() {
                return Err(error(
                    "prices must be finite and non-negative (USD per million tokens)".to_owned(),
                ));
            }
            entries.insert(key, prices);
        }
        Ok(PriceTable { entries })
    }

    /// The entry that prices `model`, with its key: an exact match of the canonical name
    /// (dated snapshots), else the longest key that is a prefix of the normalised name at a
    /// `-` boundary whose next segment is not a bare number (so `claude-opus-4-7` does not
    /// fall back to `claude-opus-4`: a new version is unknown, not mispriced).
    pub fn lookup(&self, model: &str) -> Option<(&str, &ModelPrices)> {
        let canonical = canonical_model(model);
        if let Some((key, prices)) = self.entries.get_key_value(&canonical) {
            return Some((key.as_str(), prices));
        }
        let name = strip_versions(&canonical);
        if name.is_empty() {
            return None;
        }
        self.entries
            .iter()
            .filter(|(key, _)| prefix_matches(key, &name))
            .max_by_key(|(key, _)| key.len())
            .map(|(key, prices)| (key.as_str(), prices))
    }

    /// The prices of `model`, `None` when it is unknown.
    pub fn prices(&self, model: &str) -> Option<&ModelPrices> {
        self.lookup(model).map(|(_, prices)| prices)
    }

    /// What `tokens` cost on `model`; `None` when the model is unknown.
    pub fn cost(&self, model: &str, tokens: &TokenFigures) -> Option<Cost> {
        let prices = self.prices(model)?;
        let usd = |count: u64, price: f64| count as f64 * price / PER;
        let input_usd = usd(tokens.uncached_input, prices.input);
        let cache_read_usd = usd(tokens.cache_read, prices.cache_read);
        let cache_write_usd = usd(tokens.cache_write_5m, prices.cache_write_5m)
            + usd(tokens.cache_write_1h, prices.cache_write_1h);
        let output_usd = usd(tokens.output, prices.output);
        Some(Cost {
            input_usd,
            cache_read_usd,
            cache_write_usd,
            output_usd,
            total_usd: input_usd + cache_read_usd + cache_write_usd + output_usd,
        })
    }

    /// The dollar value of `tokens_saved` input tokens on `model` (saved tokens × input
    /// price, upstream's `compression_savings_usd`); `None` when the model is unknown.
    pub fn savings_usd(&self, model: &str, tokens_saved: u64) -> Option<f64> {
        self.prices(model)
            .map(|prices| tokens_saved as f64 * prices.input / PER)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl PriceOverride {
    fn resolve(&self, key: &str) -> ModelPrices {
        let derived = if key.starts_with("claude") {
            ModelPrices::anthropic(self.input, self.output)
        } else {
            ModelPrices::openai(self.input, self.input, self.output)
        };
        ModelPrices {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read.unwrap_or(derived.cache_read),
            cache_write_5m: self.cache_write_5m.unwrap_or(derived.cache_write_5m),
            cache_write_1h: self.cache_write_1h.unwrap_or(derived.cache_write_1h),
        }
    }
}

/// Whether `key` prices `name`: equal, or a prefix ending at a `-` whose next segment is not
/// all digits.
fn prefix_matches(key: &str, name: &str) -> bool {
    if key == name {
        return true;
    }
    let Some(rest) = name.strip_prefix(key).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let segment = rest.split('-').next().unwrap_or("");
    !segment.is_empty() && !segment.bytes().all(|b| b.is_ascii_digit())
}

/// The model name without provider and deployment decoration, dates kept: lower-cased and
/// trimmed; everything up to the last `/` removed (`openai/`, `openrouter/anthropic/`,
/// `bedrock/`); a Bedrock vendor prefix removed (`anthropic.`, `us.anthropic.`, `openai.`);
/// a Vertex `@version` and anything from a `:` removed (Bedrock `:0`, OpenRouter `:thinking`;
/// fine-tunes `ft:...` are left whole); a trailing `-v<N>` removed (Bedrock `-v1`, Vertex
/// `-v2`); and dots in Claude version numbers turned into dashes (`claude-3.5-sonnet`).
pub fn canonical_model(model: &str) -> String {
    let lower = model.trim().to_lowercase();
    let mut name: &str = lower.rsplit('/').next().unwrap_or("");
    for vendor in ["anthropic.", "openai."] {
        if let Some(at) = name.find(vendor) {
            let before = name.get(..at).unwrap_or("");
            let region_ok = before.is_empty()
                || before.strip_suffix('.').is_some_and(|region| {
                    !region.is_empty()
                        && region.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                });
            if region_ok {
                name = name.get(at + vendor.len()..).unwrap_or("");
                break;
            }
        }
    }
    if let Some((head, _)) = name.split_once('@') {
        name = head;
    }
    if !name.starts_with("ft:")
        && let Some((head, _)) = name.split_once(':')
    {
        name = head;
    }
    let name = strip_deployment_version(name);
    if name.starts_with("claude") {
        name.replace('.', "-")
    } else {
        name.to_owned()
    }
}

/// Removes a trailing `-v<digits>`.
fn strip_deployment_version(name: &str) -> &str {
    match name.rsplit_once("-v") {
        Some((head, digits))
            if !head.is_empty()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            head
        }
        _ => name,
    }
}

/// Removes dated-snapshot and alias suffixes, repeatedly: `-latest`, `-YYYY-MM-DD`,
/// `-YYYYMMDD`, `-MMDD` (OpenAI's older snapshots) and `-v<N>`.
fn strip_versions(name: &str) -> String {
    let mut name = name;
    loop {
        let before = name.len();
        if let Some(head) = name.strip_suffix("-latest") {
            name = head;
        }
        name = strip_date(name);
        name = strip_deployment_version(name);
        if name.len() == before {
            return name.to_owned();
        }
    }
}

/// Removes one trailing date: `-YYYY-MM-DD`, `-YYYYMMDD` or `-MMDD` with a plausible month
/// and day.
fn strip_date(name: &str) -> &str {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let number = |s: &[u8]| {
        s.iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b.wrapping_sub(b'0')))
    };
    let month_day = |s: &[u8]| {
        let (month, day) = s.split_at(2.min(s.len()));
        (1..=12).contains(&number(month)) && (1..=31).contains(&number(day))
    };
    // -YYYY-MM-DD
    if let Some(tail) = bytes.len().checked_sub(11).and_then(|at| bytes.get(at..))
        && let [b'-', y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *tail
        && digits(&[y0, y1, y2, y3, m0, m1, d0, d1])
        && month_day(&[m0, m1, d0, d1])
    {
        return name.get(..name.len() - 11).unwrap_or(name);
    }
    // -YYYYMMDD, then -MMDD
    for (len, skip) in [(9, 5), (5, 1)] {
        if let Some(tail) = bytes.len().checked_sub(len).and_then(|at| bytes.get(at..))
            && let Some((b'-', rest)) = tail.split_first()
            && digits(rest)
            && month_day(rest.get(skip - 1..).unwrap_or(&[]))
            && bytes.len() > len
        {
            return name.get(..name.len() - len).unwrap_or(name);
        }
    }
    name
}

/// The normalised model name prices are looked up by: [`canonical_model`] with dated
/// snapshot and `-latest` suffixes removed (`claude-sonnet-4-20250514` → `claude-sonnet-4`,
/// `gpt-4o-2024-08-06` → `gpt-4o`, `us.anthropic.claude-3-5-sonnet-20241022-v2:0` →
/// `claude-3-5-sonnet`).
pub fn normalize_model(model: &str) -> String {
    strip_versions(&canonical_model(model))
}

/// Longest model label [`normalize_model_label`] returns.
pub const MODEL_LABEL_MAX_LEN: usize = 64;

/// The model as a metric label value: [`normalize_model`], every byte outside
/// `[a-z0-9._-]` replaced by `_`, at most [`MODEL_LABEL_MAX_LEN`] bytes, and `unknown` when
/// nothing is left. (The number of distinct labels is capped elsewhere.)
pub fn normalize_model_label(model: &str) -> String {
    let normalised = normalize_model(model);
    let label: String = normalised
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .take(MODEL_LABEL_MAX_LEN)
        .collect();
    if label.is_empty() {
        "unknown".to_owned()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn normalises_model_names() {
        let cases = [
            ("gpt-4o", "gpt-4o"),
            ("GPT-4o", "gpt-4o"),
            ("  gpt-4o\n", "gpt-4o"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("openai/gpt-4o-mini", "gpt-4o-mini"),
            ("azure/openai/gpt-4.1-2025-04-14", "gpt-4.1"),
            ("gpt-5-2025-08-07", "gpt-5"),
            ("gpt-5.1-codex", "gpt-5.1-codex"),
            ("o3-mini-2025-01-31", "o3-mini"),
            ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
            ("gpt-4-0613", "gpt-4"),
            ("gpt-4-1106-preview", "gpt-4-1106-preview"),
            ("chatgpt-4o-latest", "chatgpt-4o"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
            ("anthropic/claude-opus-4-1-20250805", "claude-opus-4-1"),
            (
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet",
            ),
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5",
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5",
            ),
            (
                "bedrock/eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "claude-3-7-sonnet",
            ),
            ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
            ("claude-sonnet-4@20250514", "claude-sonnet-4"),
            ("vertex_ai/claude-opus-4-5@20251101", "claude-opus-4-5"),
            ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
            (
                "openrouter/anthropic/claude-sonnet-4.5:thinking",
                "claude-sonnet-4-5",
            ),
            ("openai.gpt-oss-120b-1:0", "gpt-oss-120b-1"),
            (
                "ft:gpt-4o-mini-2024-07-18:acme::abc123",
                "ft:gpt-4o-mini-2024-07-18:acme::abc123",
            ),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("", ""),
            ("-latest", ""),
            ("my-model-2048", "my-model-2048"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_model(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn canonical_names_keep_dates() {
        assert_eq!(
            canonical_model("openai/gpt-4o-2024-05-13"),
            "gpt-4o-2024-05-13"
        );
        assert_eq!(
            canonical_model("us.anthropic.claude-sonnet-4-20250514-v1:0"),
            "claude-sonnet-4-20250514"
        );
        // A dot before `anthropic.` that is not a region prefix is left alone.
        assert_eq!(
            canonical_model("my.model.anthropic.x"),
            "my.model.anthropic.x"
        );
    }

    #[test]
    fn model_labels_are_bounded() {
        let cases = [
            ("GPT-4o-2024-08-06", "gpt-4o"),
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5",
            ),
            ("gpt-4.1", "gpt-4.1"),
            ("my model{x=\"1\"}", "my_model_x__1__"),
            ("ft:gpt-4o:acme", "ft_gpt-4o_acme"),
            ("modèle", "mod_le"),
            ("", "unknown"),
            ("   ", "unknown"),
            ("anthropic/", "unknown"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_model_label(raw), want, "{raw:?}");
        }
        let long = "x".repeat(200);
        assert_eq!(normalize_model_label(&long).len(), MODEL_LABEL_MAX_LEN);
        let odd = "é".repeat(100);
        let label = normalize_model_label(&odd);
        assert_eq!(label, "_".repeat(MODEL_LABEL_MAX_LEN));
    }

    #[test]
    fn looks_up_by_longest_prefix() {
        let table = PriceTable::builtin();
        let cases = [
            ("gpt-4o", Some("gpt-4o")),
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
            ("openai/gpt-4o-2024-05-13", Some("gpt-4o-2024-05-13")),
            ("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini")),
            ("gpt-4o-audio-preview", Some("gpt-4o")),
            ("gpt-4.1-mini", Some("gpt-4.1-mini")),
            ("gpt-4.1", Some("gpt-4.1")),
            ("gpt-5-chat-latest", Some("gpt-5")),
            ("gpt-5-codex", Some("gpt-5")),
            ("gpt-5-mini-2025-08-07", Some("gpt-5-mini")),
            ("gpt-5.1-codex", Some("gpt-5.1")),
            ("gpt-5.1-codex-mini", Some("gpt-5.1-codex-mini")),
            ("gpt-5.2-pro-2025-12-11", Some("gpt-5.2-pro")),
            ("codex-mini-latest", Some("codex-mini")),
            ("o1-preview", Some("o1")),
            ("o3-pro-2025-06-10", Some("o3-pro")),
            ("o4-mini", Some("o4-mini")),
            ("gpt-4-32k-0613", Some("gpt-4-32k")),
            ("gpt-4-turbo-2024-04-09", Some("gpt-4-turbo")),
            ("gpt-3.5-turbo-1106", Some("gpt-3.5-turbo")),
            ("claude-opus-4-20250514", Some("claude-opus-4")),
            ("claude-opus-4-0", Some("claude-opus-4-0")),
            ("claude-opus-4-5-20251101", Some("claude-opus-4-5")),
            ("claude-sonnet-4-5", Some("claude-sonnet-4-5")),
            ("claude-haiku-4-5-20251001", Some("claude-haiku-4-5")),
            ("claude-3-5-haiku-latest", Some("claude-3-5-haiku")),
            (
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                Some("claude-3-7-sonnet"),
            ),
            // A new version number is unknown, not its predecessor's price.
            ("claude-opus-4-7", None),
            ("gpt-5.3", None),
            ("gpt-4.5", None),
            ("o2", None),
            ("gemini-2.5-pro", None),
            ("ft:gpt-4o-mini-2024-07-18:acme::abc", None),
            ("", None),
        ];
        for (model, want) in cases {
            assert_eq!(table.lookup(model).map(|(key, _)| key), want, "{model:?}");
        }
    }

    #[test]
    fn builtin_entries_are_normalised_and_valid() {
        for (key, prices) in BUILTIN {
            assert!(prices.is_valid(), "{key}");
            assert_eq!(canonical_model(key), *key, "{key}");
            // Every entry is reachable by its own name.
            assert_eq!(
                PriceTable::builtin().lookup(key).map(|(k, _)| k),
                Some(*key)
            );
        }
        assert_eq!(PriceTable::builtin().len(), BUILTIN.len());
    }

    #[test]
    fn anthropic_cost_has_cache_parts() {
        let table = PriceTable::builtin();
        let tokens = TokenFigures {
            uncached_input: 1_000_000,
            cache_read: 2_000_000,
            cache_write_5m: 1_000_000,
            cache_write_1h: 1_000_000,
            output: 100_000,
        };
        let cost = table.cost("claude-sonnet-4-5-20250929", &tokens).unwrap();
        assert!(close(cost.input_usd, 3.0));
        assert!(close(cost.cache_read_usd, 0.6));
        assert!(close(cost.cache_write_usd, 3.75 + 6.0));
        assert!(close(cost.output_usd, 1.5));
        assert!(close(cost.total_usd, 3.0 + 0.6 + 9.75 + 1.5));
        assert!(close(cost.input_side_usd(), 13.35));

        let haiku3 = table.cost("claude-3-haiku-20240307", &tokens).unwrap();
        assert!(close(haiku3.cache_read_usd, 0.06));
        assert!(close(haiku3.cache_write_usd, 0.30 + 0.50));
    }

    #[test]
    fn openai_cost_uses_cached_input_price() {
        let table = PriceTable::builtin();
        let tokens = TokenFigures {
            uncached_input: 10_000,
            cache_read: 90_000,
            output: 1_000,
            ..TokenFigures::default()
        };
        let cost = table.cost("gpt-4o-2024-08-06", &tokens).unwrap();
        assert!(close(cost.input_usd, 0.025));
        assert!(close(cost.cache_read_usd, 0.1125));
        assert!(close(cost.cache_write_usd, 0.0));
        assert!(close(cost.output_usd, 0.01));
        assert!(close(cost.total_usd, 0.1475));
        let prices = table.prices("gpt-4o").unwrap();
        assert!(close(prices.cache_write_5m, prices.input));
        assert!(close(prices.cache_write_1h, prices.input));
    }

    #[test]
    fn cost_table() {
        let table = PriceTable::builtin();
        let per_million = TokenFigures {
            uncached_input: 1_000_000,
            output: 1_000_000,
            ..TokenFigures::default()
        };
        let cases = [
            ("gpt-4o", 12.5),
            ("gpt-4o-mini", 0.75),
            ("gpt-4.1", 10.0),
            ("gpt-4.1-nano", 0.5),
            ("gpt-5", 11.25),
            ("gpt-5-nano", 0.45),
            ("o1", 75.0),
            ("o3", 10.0),
            ("o4-mini", 5.5),
            ("gpt-3.5-turbo", 2.0),
            ("claude-opus-4-1", 90.0),
            ("claude-opus-4-5", 30.0),
            ("claude-sonnet-4", 18.0),
            ("claude-haiku-4-5", 6.0),
            ("claude-3-5-haiku", 4.8),
            ("claude-3-haiku", 1.5),
        ];
        for (model, want) in cases {
            let cost = table.cost(model, &per_million).unwrap();
            assert!(close(cost.total_usd, want), "{model}: {}", cost.total_usd);
        }
        // Zero tokens cost zero on a known model.
        let zero = table.cost("gpt-4o", &TokenFigures::default()).unwrap();
        assert_eq!(zero, Cost::default());
    }

    #[test]
    fn unknown_model_has_no_cost() {
        let table = PriceTable::builtin();
        let tokens = TokenFigures {
            uncached_input: 100,
            ..TokenFigures::default()
        };
        for model in [
            "",
            "llama-3.1-70b",
            "gemini-2.5-flash",
            "claude-opus-5",
            "my-deployment",
        ] {
            assert_eq!(table.cost(model, &tokens), None, "{model}");
            assert_eq!(table.savings_usd(model, 1000), None, "{model}");
        }
    }

    #[test]
    fn savings_are_saved_tokens_at_input_price() {
        let table = PriceTable::builtin();
        assert!(close(table.savings_usd("gpt-4o", 1_000_000).unwrap(), 2.5));
        assert!(close(
            table.savings_usd("claude-sonnet-4-5", 99_933).unwrap(),
            0.299_799
        ));
        assert_eq!(table.savings_usd("gpt-4o", 0), Some(0.0));
    }

    #[test]
    fn overrides_replace_and_extend() {
        let overrides: PriceOverrides = serde_json::from_str(
            r#"{
                "openai/gpt-4o": {"input": 2.0, "output": 8.0, "cache_read": 0.5},
                "my-llama": {"input": 0.2, "output": 0.4},
                "claude-opus-4-7": {"input": 5.0, "output": 25.0},
                "claude-custom": {"input": 1.0, "output": 2.0, "cache_write_1h": 3.0}
            }"#,
        )
        .unwrap();
        let table = PriceTable::builtin().with_overrides(&overrides).unwrap();
        assert_eq!(table.len(), BUILTIN.len() + 3);

        let gpt = table.prices("gpt-4o-2024-11-20").unwrap();
        assert_eq!(*gpt, ModelPrices::openai(2.0, 0.5, 8.0));
        // The dated snapshot keeps its own built-in entry.
        assert!(close(table.prices("gpt-4o-2024-05-13").unwrap().input, 5.0));
        assert_eq!(
            *table.prices("my-llama-2025-01-01").unwrap(),
            ModelPrices::openai(0.2, 0.2, 0.4)
        );
        assert_eq!(
            *table.prices("claude-opus-4-7-20260101").unwrap(),
            ModelPrices::anthropic(5.0, 25.0)
        );
        let custom = table.prices("claude-custom").unwrap();
        assert!(close(custom.cache_write_5m, 1.25));
        assert!(close(custom.cache_write_1h, 3.0));
        // The built-in table is unchanged.
        assert_eq!(PriceTable::builtin().prices("my-llama"), None);
        // No overrides: the same table.
        assert_eq!(
            PriceTable::builtin()
                .with_overrides(&PriceOverrides::new())
                .unwrap(),
            PriceTable::default()
        );
    }

    #[test]
    fn invalid_overrides_are_rejected() {
        let parse = |json: &str| serde_json::from_str::<PriceOverrides>(json);
        // Unknown field, missing field, wrong type.
        assert!(parse(r#"{"gpt-4o": {"input": 1, "output": 2, "cached": 1}}"#).is_err());
        assert!(parse(r#"{"gpt-4o": {"input": 1}}"#).is_err());
        assert!(parse(r#"{"gpt-4o": {"input": "1", "output": 2}}"#).is_err());

        let err = |json: &str| {
            PriceTable::builtin()
                .with_overrides(&parse(json).unwrap())
                .unwrap_err()
        };
        let negative = err(r#"{"gpt-4o": {"input": -1, "output": 2}}"#);
        assert_eq!(negative.model, "gpt-4o");
        assert!(negative.to_string().starts_with("prices.gpt-4o: "));
        assert_eq!(
            err(r#"{"x": {"input": 1, "output": 2, "cache_read": -0.1}}"#).model,
            "x"
        );
        assert_eq!(
            err(r#"{"openai/": {"input": 1, "output": 2}}"#).model,
            "openai/"
        );
        let duplicate = err(
            r#"{"gpt-4o": {"input": 1, "output": 2}, "openai/gpt-4o": {"input": 1, "output": 2}}"#,
        );
        assert!(duplicate.message.contains("same model"), "{duplicate}");
    }
}
