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

/// Label of [`REQUESTS_BY_PROVIDER`].
pub const PROVIDER_LABEL: &str = "provider";
/// Label of [`FAIL_OPEN`].
pub const REASON_LABEL: &str = "reason";
/// Label of [`TOOL_OUTPUTS`].
pub const DECISION_LABEL: &str = "decision";
/// Label of [`RETRIEVALS`].
pub const STATUS_LABEL: &str = "status";

/// A counter the filter defines (all are proxy-wasm COUNTER metrics).
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
}

/// Number of counters in [`Counter::ALL`].
pub const COUNTER_COUNT: usize = 24;

impl Counter {
    /// Every counter, in definition order; [`Counter::index`] is the position in this list.
    pub const ALL: [Counter; COUNTER_COUNT] = [
        Self::InboundRequests,
        Self::Requests,
        Self::RequestsByProvider(Provider::OpenAi),
        Self::RequestsByProvider(Provider::Anthropic),
        Self::RequestsFailed,
        Self::FailOpen(FailOpen::NotJson),
        Self::FailOpen(FailOpen::UnexpectedShape),
        Self::FailOpen(FailOpen::TooLarge),
        Self::FailOpen(FailOpen::ContentType),
        Self::FailOpen(FailOpen::Internal),
        Self::BytesSaved,
        Self::TokensSaved,
        Self::ToolOutputs(Decision::ALL[0]),
        Self::ToolOutputs(Decision::ALL[1]),
        Self::ToolOutputs(Decision::ALL[2]),
        Self::ToolOutputs(Decision::ALL[3]),
        Self::ToolOutputs(Decision::ALL[4]),
        Self::ToolOutputs(Decision::ALL[5]),
        Self::ToolOutputs(Decision::ALL[6]),
        Self::ToolOutputs(Decision::ALL[7]),
        Self::ToolOutputs(Decision::ALL[8]),
        Self::ToolOutputs(Decision::ALL[9]),
        Self::Retrievals(true),
        Self::Retrievals(false),
    ];

    /// Position of this counter in [`Counter::ALL`] (for id tables).
    pub fn index(self) -> usize {
        // Every counter is listed (a test checks it); 24 comparisons per increment are nothing.
        Self::ALL
            .iter()
            .position(|counter| *counter == self)
            .unwrap_or(0)
    }

    /// The metric name, labels included.
    pub fn name(self) -> String {
        match self {
            Self::InboundRequests => INBOUND_REQUESTS.to_owned(),
            Self::Requests => REQUESTS.to_owned(),
            Self::RequestsByProvider(provider) => {
                labeled_name(REQUESTS_BY_PROVIDER, PROVIDER_LABEL, provider.as_str())
            }
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
        }
    }
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
        let names: Vec<String> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
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
    fn index_is_the_position_in_all() {
        for (position, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), position, "{counter:?}");
        }
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
