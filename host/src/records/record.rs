//! Reading the per-request record the filter writes to the `headroom_record` property. The
//! record's type is the filter's ([`Record`]): one declaration for both sides.

use super::time;

pub use headroom_plugin::record::Record;

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

/// Parses the filter's value. The time is normalised to `YYYY-MM-DDTHH:MM:SSZ`; a missing or
/// unreadable time becomes `now` (unix seconds).
pub fn parse(bytes: &[u8], now: i64) -> Result<Record, Invalid> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter's documented example.
    pub const SAMPLE: &str = r#"{"time":"2026-11-27T07:10:14Z","provider":"openai","api":"openai_chat","model":"gpt-4o","stack":"unknown","path":"/v1/chat/completions","status":200,"stream":false,"tokens_before":1200,"tokens_after":300,"tokens_saved":900,"input_tokens":400,"output_tokens":20,"cache_read_tokens":0,"cache_write_tokens":null,"cost_usd":0.0012,"savings_usd":0.00225,"latency_ms":812.5,"ttfb_ms":640.25,"overhead_ms":1.5,"transforms":["json:smart_crusher"],"fail_open":null}"#;

    #[test]
    fn parses_and_prints_the_filter_format_verbatim() {
        let r = parse(SAMPLE.as_bytes(), 0).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert_eq!(r.tokens_saved, 900);
        assert_eq!(r.cache_write_tokens, None);
        assert_eq!(r.transforms, vec!["json:smart_crusher"]);
        assert_eq!(r.to_json(), SAMPLE);
    }

    #[test]
    fn lenient_but_not_blind() {
        let r = parse(br#"{"provider":"anthropic","extra":1,"time":"bad"}"#, 0).unwrap();
        assert_eq!(r.time, "1970-01-01T00:00:00Z");
        assert_eq!(r.provider, "anthropic");
        assert_eq!(r.status, None);
        let r = parse(br#"{"time":"2026-11-27T08:10:14+01:00"}"#, 0).unwrap();
        assert_eq!(r.time, "2026-11-27T07:10:14Z");
        assert!(matches!(parse(b"[1,2]", 0), Err(Invalid::NotARecord(_))));
        assert!(matches!(
            parse(b"{\"model\":\"a\"}\n{}", 0),
            Err(Invalid::Multiline)
        ));
        assert!(parse(br#"{"tokens_saved":"many"}"#, 0).is_err());
    }
}
