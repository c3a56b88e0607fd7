//! One provider exchange as the filter hands it to its host: the per-request record (one JSON
//! object, set as the property [`PROPERTY`], which Envoy keeps as filter state
//! `wasm.headroom_record` for its access log and our host stores in its database) and what the
//! exchange adds to the savings ledger.
//!
//! A record holds figures and labels only: never message content, headers or credentials. The
//! path is kept without its query string (a query can carry a key).

use serde::{Deserialize, Serialize};

use crate::accounting::Costs;
use crate::api::Api;
use crate::calendar::format_rfc3339;
use crate::fail_open::FailOpen;
use crate::savings::{RequestSavings, usd6};
use crate::usage::Usage;

/// The property the record is set under.
pub const PROPERTY: &str = "headroom_record";

/// What the filter knows about an exchange when it ends.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// The API.
    pub api: Api,
    /// The model label (normalised; `unknown` when not known).
    pub model: &'a str,
    /// `X-Headroom-Project`, unsanitised.
    pub project: Option<&'a str>,
    /// The `X-Headroom-Stack` bucket (`unknown` when absent).
    pub stack: &'a str,
    /// The request path without its query.
    pub path: &'a str,
    /// The response status.
    pub status: Option<u32>,
    /// Whether the response was an SSE stream.
    pub streamed: bool,
    /// The provider's usage report, if one was read.
    pub usage: Option<&'a Usage>,
    /// Tokens the pipeline removed.
    pub tokens_saved: u64,
    /// Cost, when the model is priced and usage was read.
    pub costs: Option<Costs>,
    /// Whole exchange, µs.
    pub latency_us: Option<u64>,
    /// To the response headers, µs.
    pub ttfb_us: Option<u64>,
    /// The filter's own time on the request body, µs.
    pub overhead_us: Option<u64>,
    /// `kind:strategy` of each replaced tool output.
    pub transforms: &'a [String],
    /// Why the body went upstream unchanged, if it did.
    pub fail_open: Option<FailOpen>,
}

/// One provider exchange's record, as the filter writes it (one JSON line, fields in this order,
/// as the README documents) and as hosts read it back (leniently: unknown fields ignored,
/// missing ones null or zero). `None` is unknown (no usage reported, a model without a price, no
/// response). It never holds message content, headers or credentials. The one declaration of
/// the record: `headroom` parses, stores and exports this type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// When the exchange ended and the record was written, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub time: String,
    /// `openai` or `anthropic`.
    pub provider: String,
    /// `openai_chat`, `openai_responses` or `anthropic_messages`.
    pub api: String,
    /// The model the request named, normalised as in the metric labels (`unknown` when none).
    pub model: Option<String>,
    /// The `X-Headroom-Stack` bucket (`unknown` when absent).
    pub stack: String,
    /// The request path without its query string.
    pub path: String,
    /// The response status (`None`: no response).
    pub status: Option<u16>,
    /// Whether the response was streamed (SSE).
    pub stream: bool,
    /// The prompt's input tokens had nothing been compressed (`input_tokens + tokens_saved`).
    pub tokens_before: Option<i64>,
    /// The prompt's input tokens as sent (`input_tokens`).
    pub tokens_after: Option<i64>,
    /// Tokens removed from the request.
    pub tokens_saved: i64,
    /// Input tokens the provider reported (the whole prompt, cached parts included).
    pub input_tokens: Option<i64>,
    /// Output tokens the provider reported.
    pub output_tokens: Option<i64>,
    /// Prompt-cache reads the provider reported.
    pub cache_read_tokens: Option<i64>,
    /// Prompt-cache writes the provider reported.
    pub cache_write_tokens: Option<i64>,
    /// The request's cost in USD.
    pub cost_usd: Option<f64>,
    /// Tokens saved × the model's input price, USD.
    pub savings_usd: Option<f64>,
    /// Time from the request to the end of the response, ms.
    pub latency_ms: Option<f64>,
    /// Time to the response headers, ms.
    pub ttfb_ms: Option<f64>,
    /// The filter's own time on the request body, ms.
    pub overhead_ms: Option<f64>,
    /// What was done to the request, e.g. `json:smart_crusher`.
    pub transforms: Vec<String>,
    /// Why the filter forwarded the request unchanged, if it failed open.
    pub fail_open: Option<String>,
}

impl Record {
    /// The record as one line of JSON (no newline), in the documented field order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A token count as the record holds it.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|us| (us as f64 / 10.0).round() / 100.0)
}

impl Exchange<'_> {
    /// Input tokens the provider billed (all of the prompt, cached or not), when reported.
    fn input_tokens(&self) -> Option<u64> {
        let usage = self.usage?;
        usage.input_tokens?;
        let f = usage.cache_figures();
        Some(
            f.uncached
                + f.read
                + if self.api.provider() == crate::api::Provider::Anthropic {
                    f.write
                } else {
                    0
                },
        )
    }

    /// The record as one JSON line (no newline).
    pub fn record(&self, now: u64) -> Vec<u8> {
        let usage = self.usage;
        let input = self.input_tokens();
        let record = Record {
            time: format_rfc3339(now),
            provider: self.api.provider().as_str().to_owned(),
            api: self.api.as_str().to_owned(),
            model: Some(self.model.to_owned()),
            stack: self.stack.to_owned(),
            path: self.path.to_owned(),
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            stream: self.streamed,
            tokens_before: input.map(|i| count(i + self.tokens_saved)),
            tokens_after: input.map(count),
            tokens_saved: count(self.tokens_saved),
            input_tokens: input.map(count),
            output_tokens: usage.and_then(|u| u.output_tokens).map(count),
            cache_read_tokens: usage.and_then(|u| u.cache_read_tokens).map(count),
            cache_write_tokens: usage.and_then(|u| u.cache_write_tokens).map(count),
            cost_usd: self.costs.map(|c| usd6(c.input_usd + c.output_usd)),
            savings_usd: self.costs.map(|c| usd6(c.savings_usd)),
            latency_ms: ms(self.latency_us),
            ttfb_ms: ms(self.ttfb_us),
            overhead_ms: ms(self.overhead_us),
            transforms: self.transforms.to_vec(),
            fail_open: self.fail_open.map(|f| f.as_str().to_owned()),
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// What the exchange adds to the savings ledger.
    pub fn savings(&self) -> RequestSavings {
        let costs = self.costs;
        RequestSavings {
            provider: self.api.provider().as_str().to_owned(),
            model: self.model.to_owned(),
            project: self.project.map(str::to_owned),
            input_tokens: self.input_tokens().unwrap_or(0),
            tokens_saved: self.tokens_saved,
            savings_usd: costs.map_or(0.0, |c| c.savings_usd),
            input_cost_usd: costs.map_or(0.0, |c| c.input_usd),
            output_cost_usd: costs.map_or(0.0, |c| c.output_usd),
            cache_read_tokens: self.usage.and_then(|u| u.cache_read_tokens).unwrap_or(0),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn usage() -> Usage {
        Usage {
            api: Api::AnthropicMessages,
            model: Some("claude-sonnet-4-5".into()),
            input_tokens: Some(100),
            output_tokens: Some(20),
            cache_read_tokens: Some(40),
            cache_write_tokens: Some(60),
            cache_write_5m_tokens: Some(10),
            cache_write_1h_tokens: Some(50),
        }
    }

    #[test]
    fn record_carries_figures_and_nothing_else() {
        let usage = usage();
        let transforms = vec!["json:smart_crusher".to_owned()];
        let exchange = Exchange {
            api: Api::AnthropicMessages,
            model: "claude-sonnet-4-5",
            project: Some("web"),
            stack: "claude-code",
            path: "/v1/messages",
            status: Some(200),
            streamed: true,
            usage: Some(&usage),
            tokens_saved: 300,
            costs: Some(Costs {
                input_usd: 0.001,
                output_usd: 0.0003,
                savings_usd: 0.0009,
            }),
            latency_us: Some(12_345),
            ttfb_us: None,
            overhead_us: Some(1_500),
            transforms: &transforms,
            fail_open: None,
        };
        let record: serde_json::Value =
            serde_json::from_slice(&exchange.record(1_795_737_615)).unwrap_or_default();
        assert_eq!(record["time"], "2026-11-27T00:00:15Z");
        assert_eq!(record["provider"], "anthropic");
        assert_eq!(record["input_tokens"], 200, "uncached + read + write");
        assert_eq!(record["tokens_before"], 500);
        assert_eq!(record["tokens_after"], 200);
        assert_eq!(record["cost_usd"], 0.0013);
        assert_eq!(record["latency_ms"], 12.35);
        assert_eq!(record["ttfb_ms"], serde_json::Value::Null);
        assert_eq!(record["transforms"][0], "json:smart_crusher");
        assert_eq!(record.as_object().map(|o| o.len()), Some(22));
        let savings = exchange.savings();
        assert_eq!(savings.input_tokens, 200);
        assert_eq!(savings.cache_read_tokens, 40);
        assert_eq!(savings.project.as_deref(), Some("web"));
    }

    #[test]
    fn unknown_usage_and_price_are_null_not_zero() {
        let exchange = Exchange {
            api: Api::OpenAiChat,
            model: "unknown",
            project: None,
            stack: "unknown",
            path: "/v1/chat/completions",
            status: None,
            streamed: false,
            usage: None,
            tokens_saved: 0,
            costs: None,
            latency_us: None,
            ttfb_us: None,
            overhead_us: None,
            transforms: &[],
            fail_open: Some(FailOpen::NotJson),
        };
        let record: serde_json::Value =
            serde_json::from_slice(&exchange.record(0)).unwrap_or_default();
        for field in ["tokens_before", "input_tokens", "cost_usd", "savings_usd"] {
            assert_eq!(record[field], serde_json::Value::Null, "{field}");
        }
        assert_eq!(record["fail_open"], "not_json");
    }
}
