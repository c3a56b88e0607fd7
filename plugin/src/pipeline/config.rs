//! The pipeline's configuration: every knob with its default, deserialisable from the filter's
//! JSON configuration, and a fingerprint that keys the replay map (a new configuration starts
//! new decisions).

use serde::{Deserialize, Serialize};

use super::hash::ContentHash;

/// How the pipeline compresses. Every field has a default; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Tool outputs shorter than this many bytes (decoded text) are left intact. Default 512.
    pub min_block_bytes: usize,
    /// Tool names whose outputs are never rewritten, case-insensitive; a trailing `*` matches
    /// any suffix (`mcp__files__*`). Default as upstream: Read, Glob, Grep, Write, Edit, and
    /// their relatives (MultiEdit, NotebookRead, NotebookEdit, LS), and `headroom_retrieve`.
    pub protected_tools: Vec<String>,
    /// Error outputs (Anthropic `is_error`, or text with two or more error words) up to this
    /// many bytes are left intact: the agent needs them whole to recover. Default 8000.
    pub protect_errors_below_bytes: usize,
    /// Whether lossy compression (row or line selection, with a marker) is allowed at all;
    /// false keeps every transformation lossless. Default true.
    pub lossy: bool,
    /// Multiplier of the adaptive number of rows/lines kept; 1.0 is neutral (upstream's live
    /// zone passed 0.0, bug B1). Default 1.0.
    pub bias: f64,
    /// Arrays shorter than this are never reduced. Default 5.
    pub min_items: usize,
    /// Upper bound of the adaptive number of array items kept (signalled items come on top).
    /// Default 15.
    pub max_items: usize,
    /// The lossless table form replaces an array of objects only when it saves at least this
    /// fraction of the array's compact bytes. Default 0.15.
    pub table_min_savings: f64,
    /// Logs: lines kept around each error, warning and stack trace. Default 2.
    pub log_context_lines: usize,
    /// Search results: matches shown per file when a file has more. Default 5.
    pub search_matches_per_file: usize,
    /// Search results: results with at most this many matches are only regrouped (lossless).
    /// Default 30.
    pub search_max_matches: usize,
    /// Diffs: unchanged lines kept on each side of a change. Default 2.
    pub diff_context_lines: usize,
    /// A block is replaced only when it saves at least this fraction of its tokens (and
    /// always at least one token). Default 0.0.
    pub min_token_savings: f64,
    /// Nesting limit for JSON inside tool outputs. Default 256.
    pub max_json_depth: u32,
    /// The most JSON values a body, or a tool output compressed as JSON, may hold (a
    /// deterministic bound on the filter's memory and work). A body with more is forwarded
    /// unchanged (fail-open `too_large`); a tool output with more is not treated as JSON.
    /// Default 1,048,576.
    pub max_json_values: usize,
    /// Whether new tool outputs are examined for waste signals (`/stats.waste_signals`).
    /// Changes no byte sent; costs some token counting. Default true.
    pub waste_signals: bool,
    /// Keys the hashes markers name (set from the filter's `marker_secret`, never from this
    /// block, never serialised). Default none: plain content hashes.
    #[serde(skip)]
    pub marker_key: super::hash::MarkerKey,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            min_block_bytes: 512,
            protected_tools: [
                "Read",
                "Glob",
                "Grep",
                "Write",
                "Edit",
                "MultiEdit",
                "NotebookRead",
                "NotebookEdit",
                "LS",
                "headroom_retrieve",
            ]
            .map(str::to_owned)
            .to_vec(),
            protect_errors_below_bytes: 8000,
            lossy: true,
            bias: 1.0,
            min_items: 5,
            max_items: 15,
            table_min_savings: 0.15,
            log_context_lines: 2,
            search_matches_per_file: 5,
            search_max_matches: 30,
            diff_context_lines: 2,
            min_token_savings: 0.0,
            max_json_depth: crate::json::DEFAULT_MAX_DEPTH,
            max_json_values: crate::json::DEFAULT_MAX_VALUES,
            waste_signals: true,
            marker_key: super::hash::MarkerKey::default(),
        }
    }
}

impl PipelineConfig {
    /// A hash of every field that can change what is sent: part of each replay key.
    pub fn fingerprint(&self) -> ContentHash {
        let sends_the_same = PipelineConfig {
            waste_signals: true,
            ..self.clone()
        };
        let canonical = serde_json::to_string(&sends_the_same).unwrap_or_default();
        let version = env!("CARGO_PKG_VERSION").as_bytes();
        match self.marker_key.id() {
            // Without a secret the fingerprint is what it always was.
            None => ContentHash::of_parts(&[b"headroom-pipeline", version, canonical.as_bytes()]),
            Some(key) => ContentHash::of_parts(&[
                b"headroom-pipeline",
                version,
                canonical.as_bytes(),
                &key.0,
            ]),
        }
    }

    /// Whether outputs of tool `name` are protected.
    pub fn is_protected_tool(&self, name: &str) -> bool {
        self.protected_tools
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
                None => pattern.eq_ignore_ascii_case(name),
            })
    }

    /// The bias, made safe: non-finite or negative values count as neutral.
    pub(crate) fn effective_bias(&self) -> f64 {
        if self.bias.is_finite() && self.bias > 0.0 {
            self.bias
        } else {
            1.0
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protects_tools_by_name_and_prefix() {
        let mut config = PipelineConfig::default();
        assert!(config.is_protected_tool("read"));
        assert!(config.is_protected_tool("Grep"));
        assert!(!config.is_protected_tool("Bash"));
        config.protected_tools.push("mcp__fs__*".to_owned());
        assert!(config.is_protected_tool("MCP__fs__read_file"));
        assert!(!config.is_protected_tool("mcp__git__log"));
    }

    #[test]
    fn fingerprint_follows_every_field() {
        let config = PipelineConfig::default();
        let other = PipelineConfig {
            bias: 1.5,
            ..PipelineConfig::default()
        };
        assert_eq!(
            config.fingerprint(),
            PipelineConfig::default().fingerprint()
        );
        assert_ne!(config.fingerprint(), other.fingerprint());
        let parsed: PipelineConfig = serde_json::from_str(r#"{"max_items":8}"#).unwrap();
        assert_eq!(parsed.max_items, 8);
        assert!(serde_json::from_str::<PipelineConfig>(r#"{"nope":1}"#).is_err());
    }
}
