//! What a request may cost, read from its body before it is forwarded, and what it cost, read
//! from the provider's usage report after: the two figures a reservation is made from and
//! replaced by ([`super::BudgetState::reserve`], [`super::BudgetState::settle`]).
//!
//! The estimate is `input tokens × input price + output tokens × output price`, where input
//! tokens are the body's bytes / [`BYTES_PER_TOKEN`] (rounded up: JSON text averages about
//! four bytes per token, so this is above the real count for text; base64 images are
//! over-counted) and output tokens are the request's `max_tokens` (`max_completion_tokens`,
//! `max_output_tokens`, `max_tokens_to_sample`: the largest present) times `n`, or the
//! configured `default_max_output_tokens` when none is set.

use serde::Deserialize;
use serde_json::Value;

use super::{BudgetConfig, UnknownModel};
use crate::accounting::Costs;
use crate::pricing::PriceTable;
use crate::usage::Usage;

/// Body bytes counted as one input token by the estimate.
pub const BYTES_PER_TOKEN: u64 = 3;

/// Tokens in the unit prices are quoted for.
const PER: f64 = 1_000_000.0;

/// Most completions a request's `n` is believed to ask for (providers cap it lower).
const MAX_N: u64 = 128;

/// How an endpoint's cost can be estimated before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// Per token of the request's model; `output` when it generates output tokens.
    Tokens {
        /// Whether the endpoint generates output (embeddings do not).
        output: bool,
    },
    /// Not from the request: batches (priced when the batch runs), images, audio and
    /// fine-tuning (priced per image, second or character, or by the training run).
    Unestimable,
}

/// What a request body says about its cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The `model` field, when it is a string.
    pub model: Option<String>,
    /// The largest output cap the body sets, times `n` (when the body sets one).
    pub max_output_tokens: Option<u64>,
    /// The body's length in bytes.
    pub input_bytes: u64,
}

/// The fields of a request body the estimate reads; every other field is skipped unparsed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields {
    model: Option<Value>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
    max_tokens_to_sample: Option<Value>,
    n: Option<Value>,
}

/// Reads a JSON request body's [`RequestFacts`]; a body that is not a JSON object (or names
/// a field twice) gives only its length.
pub fn request_facts(body: &[u8]) -> RequestFacts {
    let input_bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let Ok(fields) = serde_json::from_slice::<Fields>(body) else {
        return RequestFacts {
            input_bytes,
            ..RequestFacts::default()
        };
    };
    let count = |value: &Option<Value>| value.as_ref().and_then(Value::as_u64);
    let cap = [
        &fields.max_tokens,
        &fields.max_completion_tokens,
        &fields.max_output_tokens,
        &fields.max_tokens_to_sample,
    ]
    .into_iter()
    .filter_map(count)
    .max();
    let n = count(&fields.n).unwrap_or(1).clamp(1, MAX_N);
    RequestFacts {
        model: fields.model.and_then(|m| m.as_str().map(str::to_owned)),
        max_output_tokens: cap.map(|cap| cap.saturating_mul(n)),
        input_bytes,
    }
}

/// Input and output prices of a model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenPrices {
    /// Per million input tokens.
    pub input: f64,
    /// Per million output tokens.
    pub output: f64,
}

/// The prices a budget charges `model` at: the price table's, else the configured fallback.
pub fn token_prices(
    config: &BudgetConfig,
    prices: &PriceTable,
    model: &str,
) -> Option<TokenPrices> {
    if let Some(found) = prices.prices(model) {
        return Some(TokenPrices {
            input: found.input,
            output: found.output,
        });
    }
    config.fallback_price.map(|fallback| TokenPrices {
        input: fallback.input_per_mtok,
        output: fallback.output_per_mtok,
    })
}

/// The estimate of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimate {
    /// Reserve this much, USD.
    Usd(f64),
    /// Nothing to reserve: the cost is not known before the request runs (an unestimable
    /// endpoint, no model in the body, an unpriced model under `"unknown_model": "allow"`).
    Unknown,
    /// Refuse: the model has no price and the policy is `reject`.
    Unpriced(String),
}

/// The estimate of a request with `facts` to an endpoint priced as `pricing`.
pub fn estimate(
    config: &BudgetConfig,
    prices: &PriceTable,
    pricing: Pricing,
    facts: &RequestFacts,
) -> Estimate {
    let Pricing::Tokens { output } = pricing else {
        return Estimate::Unknown;
    };
    let Some(model) = facts.model.as_deref() else {
        return Estimate::Unknown;
    };
    let Some(price) = token_prices(config, prices, model) else {
        return match config.unknown_model {
            UnknownModel::Allow => Estimate::Unknown,
            UnknownModel::Reject => Estimate::Unpriced(model.to_owned()),
        };
    };
    let input_tokens = facts.input_bytes.div_ceil(BYTES_PER_TOKEN);
    let output_tokens = if output {
        facts
            .max_output_tokens
            .unwrap_or(config.default_max_output_tokens)
    } else {
        0
    };
    Estimate::Usd(
        input_tokens as f64 * price.input / PER + output_tokens as f64 * price.output / PER,
    )
}

/// What an exchange is charged to its budgets: the priced cost (`costs`, input + output) when
/// the model has a price, else the usage at the fallback price; `None` when neither applies.
pub fn charge(
    config: &BudgetConfig,
    prices: &PriceTable,
    model: &str,
    usage: &Usage,
    costs: Option<&Costs>,
) -> Option<f64> {
    if let Some(costs) = costs {
        return Some(costs.input_usd + costs.output_usd);
    }
    if prices.prices(model).is_some() {
        return None;
    }
    let fallback = config.fallback_price?;
    let input = usage.total_input_tokens().unwrap_or(0);
    let output = usage.output_tokens.unwrap_or(0);
    Some(
        input as f64 * fallback.input_per_mtok / PER
            + output as f64 * fallback.output_per_mtok / PER,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::budget::{FallbackPrice, Period};

    fn config() -> BudgetConfig {
        BudgetConfig::global_only(1.0, Period::Daily)
    }

    #[test]
    fn reads_the_fields_that_decide_the_cost() {
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100,"max_tokens":50,"n":2}"#;
        let facts = request_facts(body);
        assert_eq!(facts.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(facts.max_output_tokens, Some(200));
        assert_eq!(facts.input_bytes, body.len() as u64);
        let responses = request_facts(br#"{"model":"o3","input":"x","max_output_tokens":7}"#);
        assert_eq!(responses.max_output_tokens, Some(7));
        let legacy =
            request_facts(br#"{"model":"claude-2","prompt":"x","max_tokens_to_sample":9}"#);
        assert_eq!(legacy.max_output_tokens, Some(9));
        // Not an object, a non-string model, a duplicate field: only the length is known.
        for body in [
            &b"[1]"[..],
            b"{\"model\":5}",
            b"{\"model\":\"a\",\"model\":\"b\"}",
            b"{",
        ] {
            let facts = request_facts(body);
            assert_eq!(facts.model, None, "{body:?}");
            assert_eq!(facts.input_bytes, body.len() as u64);
        }
        let huge_n = request_facts(br#"{"model":"m","max_tokens":10,"n":100000}"#);
        assert_eq!(huge_n.max_output_tokens, Some(10 * MAX_N));
    }

    #[test]
    fn estimates_from_bytes_and_the_output_cap() {
        let prices = PriceTable::builtin();
        let mini = prices.prices("gpt-4o-mini").unwrap();
        let facts = RequestFacts {
            model: Some("gpt-4o-mini".to_owned()),
            max_output_tokens: Some(1_000),
            input_bytes: 3_001,
        };
        let expected = 1_001.0 * mini.input / PER + 1_000.0 * mini.output / PER;
        let chat = Pricing::Tokens { output: true };
        assert_eq!(
            estimate(&config(), &prices, chat, &facts),
            Estimate::Usd(expected)
        );
        // Embeddings generate nothing; no cap means the configured default.
        let embeddings = Pricing::Tokens { output: false };
        assert_eq!(
            estimate(&config(), &prices, embeddings, &facts),
            Estimate::Usd(1_001.0 * mini.input / PER)
        );
        let uncapped = RequestFacts {
            max_output_tokens: None,
            ..facts.clone()
        };
        let expected = 1_001.0 * mini.input / PER + 4_096.0 * mini.output / PER;
        assert_eq!(
            estimate(&config(), &prices, chat, &uncapped),
            Estimate::Usd(expected)
        );
        assert_eq!(
            estimate(&config(), &prices, Pricing::Unestimable, &facts),
            Estimate::Unknown
        );
        let no_model = RequestFacts {
            model: None,
            ..facts
        };
        assert_eq!(
            estimate(&config(), &prices, chat, &no_model),
            Estimate::Unknown
        );
    }

    #[test]
    fn unpriced_models_follow_the_policy() {
        let prices = PriceTable::builtin();
        let facts = RequestFacts {
            model: Some("acme-llm-9".to_owned()),
            max_output_tokens: Some(10),
            input_bytes: 30,
        };
        let chat = Pricing::Tokens { output: true };
        let mut config = config();
        assert_eq!(
            estimate(&config, &prices, chat, &facts),
            Estimate::Unpriced("acme-llm-9".to_owned())
        );
        config.unknown_model = UnknownModel::Allow;
        assert_eq!(estimate(&config, &prices, chat, &facts), Estimate::Unknown);
        config.unknown_model = UnknownModel::Reject;
        config.fallback_price = Some(FallbackPrice {
            input_per_mtok: 1_000_000.0,
            output_per_mtok: 2_000_000.0,
        });
        assert_eq!(
            estimate(&config, &prices, chat, &facts),
            Estimate::Usd(10.0 + 20.0)
        );
    }

    #[test]
    fn charges_priced_costs_or_the_fallback() {
        let prices = PriceTable::builtin();
        let usage = Usage {
            api: crate::api::Api::OpenAiChat,
            model: None,
            input_tokens: Some(1_000_000),
            output_tokens: Some(2_000_000),
            cache_read_tokens: None,
            cache_write_tokens: None,
            cache_write_5m_tokens: None,
            cache_write_1h_tokens: None,
        };
        let costs = Costs {
            input_usd: 1.0,
            output_usd: 2.0,
            savings_usd: 5.0,
        };
        let mut config = config();
        assert_eq!(
            charge(&config, &prices, "gpt-4o-mini", &usage, Some(&costs)),
            Some(3.0)
        );
        assert_eq!(charge(&config, &prices, "acme", &usage, None), None);
        config.fallback_price = Some(FallbackPrice {
            input_per_mtok: 1.0,
            output_per_mtok: 10.0,
        });
        assert_eq!(
            charge(&config, &prices, "acme", &usage, None),
            Some(1.0 + 20.0)
        );
    }
}
