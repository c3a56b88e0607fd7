//! One per-request record as the filter writes it to the `headroom_record` property: its fields,
//! parsing (lenient: unknown fields ignored, missing ones null or zero) and its JSON form.

use serde::{Deserialize, Serialize};

use super::time;

/// One provider request, as the filter reports it once the exchange ends. `None` is unknown
/// (no usage reported, a model without a price, no response). It never holds message content
/// or credentials: the filter only reports counts, names and timings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// When the request started, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
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

/// Why a `headroom_record` value was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not a JSON object of the record's shape.
    NotARecord(String),
    /// It spans lines (a record is one line of the log file).
    Multiline,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotARecord(why) => write!(f, "not a record: {why}"),
            Self::Multiline => f.write_str("a record spans lines"),
        }
    }
}

impl Record {
    /// Parses the filter's value. The time is normalised to `YYYY-MM-DDTHH:MM:SSZ`; a missing or
    /// unreadable time becomes `now` (unix seconds).
    pub fn parse(bytes: &[u8], now: i64) -> Result<Self, Invalid> {
        if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            return Err(Invalid::Multiline);
        }
        let mut record: Record = serde_json::from_slice(bytes).map_err(|e| {
            // serde's message can quote the value: only its kind and place are reported.
            Invalid::NotARecord(format!("{:?} error at column {}", e.classify(), e.column()))
        })?;
        record.time = time::format_unix(time::parse_rfc3339(&record.time).unwrap_or(now));
        Ok(record)
    }

    /// The record as one line of JSON (no newline), in the filter's field order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter's documented example.
    pub const SAMPLE: &str = r#"{"time":"2026-11-27T07:10:14Z","provider":"openai","api":"openai_chat","model":"gpt-4o","stack":"unknown","path":"/v1/chat/completions","status":200,"stream":false,"tokens_before":1200,"tokens_after":300,"tokens_saved":900,"input_tokens":400,"output_tokens":20,"cache_read_tokens":0,"cache_write_tokens":null,"cost_usd":0.0012,"savings_usd":0.00225,"latency_ms":812.5,"ttfb_ms":640.25,"overhead_ms":1.5,"transforms":["json:smart_crusher"],"fail_open":null}"#;

    #[test]
    fn parses_and_prints_the_filter_format_verbatim() {
        let r = Record::parse(SAMPLE.as_bytes(), 0).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert_eq!(r.tokens_saved, 900);
        assert_eq!(r.cache_write_tokens, None);
        assert_eq!(r.transforms, vec!["json:smart_crusher"]);
        assert_eq!(r.to_json(), SAMPLE);
    }

    #[test]
    fn lenient_but_not_blind() {
        let r = Record::parse(br#"{"provider":"anthropic","extra":1,"time":"bad"}"#, 0).unwrap();
        assert_eq!(r.time, "1970-01-01T00:00:00Z");
        assert_eq!(r.provider, "anthropic");
        assert_eq!(r.status, None);
        let r = Record::parse(br#"{"time":"2026-11-27T08:10:14+01:00"}"#, 0).unwrap();
        assert_eq!(r.time, "2026-11-27T07:10:14Z");
        assert!(matches!(
            Record::parse(b"[1,2]", 0),
            Err(Invalid::NotARecord(_))
        ));
        assert!(matches!(
            Record::parse(b"{\"model\":\"a\"}\n{}", 0),
            Err(Invalid::Multiline)
        ));
        assert!(Record::parse(br#"{"tokens_saved":"many"}"#, 0).is_err());
    }
}
