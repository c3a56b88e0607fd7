//! The compression pipeline as a WebAssembly component (`wit/headroom.wit`), run on wasmtime:
//! what `headroom compress` calls. The component is built from the same pure modules as the
//! filter (`component/` wraps `headroom-plugin` without its proxy-wasm glue) and embedded in
//! this binary ([`crate::EMBEDDED_COMPONENT`]).
//!
//! [`Compressor`] compiles the component once (cached on disk like the filter, see
//! [`crate::abi::module_cache`]) and keeps one instance for successive calls; a trap is an
//! error, never a panic, and the next call gets a fresh instance.
//!
//! The component is built by Rust for `wasm32-wasip2`, so it imports the WASI interfaces of
//! Rust's standard library (stdio, environment, exit); the pipeline calls none of them. They
//! are linked as traps: the component runs with no access to anything outside its memory.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "headroom",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::exports::headroom::pipeline::compressor::{
    Api, Block, Compressed, Decision, Error, Options,
};
use bindings::{Headroom, HeadroomPre};

/// Runs the pipeline component: one compiled component, one live instance at a time.
pub struct Compressor {
    pre: HeadroomPre<StoreLimits>,
    engine: Engine,
    memory_limit: Option<usize>,
    live: Option<(Store<StoreLimits>, Headroom)>,
}

impl Compressor {
    /// The component built into this binary, its compiled form cached in the default cache
    /// directory (`$HEADROOM_CACHE_DIR`, else `~/.cache/headroom`).
    pub fn new() -> Result<Self> {
        let cache_dir = crate::abi::module_cache::default_dir();
        Self::from_wasm(crate::EMBEDDED_COMPONENT, cache_dir.as_deref())
    }

    /// The component `wasm`, cached in `cache_dir` if given.
    pub fn from_wasm(wasm: &[u8], cache_dir: Option<&Path>) -> Result<Self> {
        let engine = Engine::default();
        let component = crate::abi::module_cache::load_component(&engine, wasm, cache_dir)
            .context("loading the pipeline component")?;
        let mut linker = Linker::new(&engine);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| anyhow!("linking the pipeline component: {e:#}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(HeadroomPre::new)
            .map_err(|e| {
                anyhow!("the pipeline component does not export wit/headroom.wit: {e:#}")
            })?;
        Ok(Self {
            pre,
            engine,
            memory_limit: None,
            live: None,
        })
    }

    /// Limits the component's linear memory to `bytes` (default: the 4 GiB of wasm32). An
    /// instance that needs more traps, and the call returns an error.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self.live = None;
        self
    }

    /// Compresses `body`, a request of `api`, with the pipeline configuration `config_json`
    /// (none: every default). The outer error is the host's (the component trapped or could
    /// not be instantiated); the inner one is the component's answer about the input.
    pub fn compress(
        &mut self,
        body: &[u8],
        api: Api,
        config_json: Option<&str>,
    ) -> Result<std::result::Result<Compressed, Error>> {
        let (mut store, instance) = match self.live.take() {
            Some(live) => live,
            None => {
                let mut limits = StoreLimitsBuilder::new();
                if let Some(bytes) = self.memory_limit {
                    limits = limits.memory_size(bytes);
                }
                let mut store = Store::new(&self.engine, limits.build());
                store.limiter(|limits| limits);
                let instance = self
                    .pre
                    .instantiate(&mut store)
                    .map_err(|e| anyhow!("instantiating the pipeline component: {e:#}"))?;
                (store, instance)
            }
        };
        let options = Options {
            config: config_json.map(str::to_owned),
        };
        // A trap leaves `live` empty: the next call starts from a fresh instance.
        let answer = instance
            .headroom_pipeline_compressor()
            .call_compress(&mut store, body, api, &options)
            .map_err(|e| anyhow!("the pipeline component trapped: {e:#}"))?;
        self.live = Some((store, instance));
        Ok(answer)
    }
}

impl Api {
    /// Every API, in WIT order.
    pub const ALL: [Api; 3] = [
        Api::OpenaiChat,
        Api::OpenaiResponses,
        Api::AnthropicMessages,
    ];

    /// The WIT name: `openai-chat`, `openai-responses` or `anthropic-messages`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenaiChat => "openai-chat",
            Api::OpenaiResponses => "openai-responses",
            Api::AnthropicMessages => "anthropic-messages",
        }
    }
}

impl Decision {
    /// The label the pipeline's manifests and metrics use (`compressed`, `too_small`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Compressed => "compressed",
            Decision::Replayed => "replayed",
            Decision::ReplayedUnchanged => "replayed_unchanged",
            Decision::TooSmall => "too_small",
            Decision::ProtectedTool => "protected_tool",
            Decision::ErrorOutput => "error_output",
            Decision::AlreadyCompressed => "already_compressed",
            Decision::NoChange => "no_change",
            Decision::NoGain => "no_gain",
            Decision::Undecodable => "undecodable",
        }
    }
}

impl Error {
    /// Whether the input (body or options) is at fault, rather than the pipeline.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::NotJson(m)
            | Error::UnexpectedShape(m)
            | Error::BadOptions(m)
            | Error::Internal(m) => m,
        }
    }

    /// The kind: `not-json`, `unexpected-shape`, `bad-options` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotJson(_) => "not-json",
            Error::UnexpectedShape(_) => "unexpected-shape",
            Error::BadOptions(_) => "bad-options",
            Error::Internal(_) => "internal",
        }
    }
}

/// The API a request body is most likely written for, from its keys alone:
///
/// - an `input` key: OpenAI Responses;
/// - a `model` naming Claude (`claude-…`, also behind a provider prefix such as
///   `anthropic/` or `us.anthropic.`), a top-level `system` (Chat Completions puts it in
///   `messages`), or `messages` holding Anthropic-only content blocks (`tool_use`,
///   `tool_result`, `thinking`, …): Anthropic Messages;
/// - anything else, including a body that is not JSON: OpenAI Chat Completions.
pub fn infer_api(body: &[u8]) -> Api {
    let Ok(serde_json::Value::Object(root)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return Api::OpenaiChat;
    };
    if root.contains_key("input") {
        return Api::OpenaiResponses;
    }
    let claude = root.get("model").and_then(|m| m.as_str()).is_some_and(|m| {
        m.to_ascii_lowercase()
            .split(['/', '.'])
            .any(|part| part.starts_with("claude"))
    });
    let anthropic_blocks = root
        .get("messages")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|message| message.get("content")?.as_array())
        .flatten()
        .filter_map(|block| block.get("type")?.as_str())
        .any(|kind| {
            matches!(
                kind,
                "tool_use"
                    | "tool_result"
                    | "server_tool_use"
                    | "thinking"
                    | "redacted_thinking"
                    | "image"
                    | "document"
            )
        });
    if claude || root.contains_key("system") || anthropic_blocks {
        Api::AnthropicMessages
    } else {
        Api::OpenaiChat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_the_api_from_the_body() {
        let cases: [(&str, Api); 10] = [
            (r#"{"model":"gpt-4o","input":"hi"}"#, Api::OpenaiResponses),
            (r#"{"model":"gpt-4o","input":[]}"#, Api::OpenaiResponses),
            (
                r#"{"model":"claude-sonnet-4-5","messages":[]}"#,
                Api::AnthropicMessages,
            ),
            (
                r#"{"model":"us.anthropic.claude-3-5-haiku-20241022-v1:0","messages":[]}"#,
                Api::AnthropicMessages,
            ),
            (
                r#"{"model":"anthropic/Claude-Opus-4","messages":[]}"#,
                Api::AnthropicMessages,
            ),
            (
                r#"{"model":"x","system":"be brief","max_tokens":10,"messages":[]}"#,
                Api::AnthropicMessages,
            ),
            (
                r#"{"model":"x","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}]}"#,
                Api::AnthropicMessages,
            ),
            (
                r#"{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
                Api::OpenaiChat,
            ),
            (
                r#"{"model":"gpt-4o","messages":[{"role":"system","content":"x"}]}"#,
                Api::OpenaiChat,
            ),
            ("not json", Api::OpenaiChat),
        ];
        for (body, api) in cases {
            assert_eq!(infer_api(body.as_bytes()), api, "{body}");
        }
    }

    #[test]
    fn the_embedded_component_compresses_and_reports() {
        let mut compressor = Compressor::from_wasm(crate::EMBEDDED_COMPONENT, None).unwrap();
        let rows: Vec<_> = (0..200)
            .map(|i| serde_json::json!({"id": i, "status": "ok", "latency_ms": i * 3}))
            .collect();
        let output = serde_json::to_string_pretty(&rows).unwrap();
        let body = serde_json::to_vec(&serde_json::json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "query", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": output}]},
            ]
        }))
        .unwrap();
        assert_eq!(infer_api(&body), Api::AnthropicMessages);
        let out = compressor
            .compress(&body, Api::AnthropicMessages, None)
            .unwrap()
            .unwrap();
        assert!(out.changed);
        assert!(!out.exact);
        assert_eq!(out.tokenizer, "estimate");
        assert_eq!(out.bytes_after, out.body.len() as u64);
        assert_eq!(out.blocks.len(), 1);
        assert_eq!(out.blocks[0].decision, Decision::Compressed);
        assert_eq!(out.blocks[0].tool.as_deref(), Some("query"));
        // The same instance answers again, identically.
        let again = compressor
            .compress(&body, Api::AnthropicMessages, None)
            .unwrap()
            .unwrap();
        assert_eq!(again, out);
        // Errors about the input come back as values.
        let err = compressor
            .compress(b"{", Api::OpenaiChat, None)
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), "not-json");
        assert!(err.is_bad_input());
        let err = compressor
            .compress(&body, Api::OpenaiChat, Some(r#"{"bias":"x"}"#))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), "bad-options");
        assert!(err.message().contains("'bias'"), "{}", err.message());
    }

    #[test]
    fn deep_nesting_is_an_answer_not_a_stack_overflow() {
        let mut compressor = Compressor::from_wasm(crate::EMBEDDED_COMPONENT, None).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let answer = compressor
            .compress(deep.as_bytes(), Api::OpenaiChat, None)
            .unwrap();
        assert_eq!(answer.unwrap_err().kind(), "not-json");
    }

    #[test]
    fn a_trap_is_an_error_and_the_next_call_gets_a_fresh_instance() {
        // Room for the component's data (the BPE rank tables) and small requests only.
        let mut compressor = Compressor::from_wasm(crate::EMBEDDED_COMPONENT, None)
            .unwrap()
            .with_memory_limit(16 << 20);
        let small = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(
            !compressor
                .compress(small, Api::OpenaiChat, None)
                .unwrap()
                .unwrap()
                .changed
        );
        let output = "x".repeat(24 << 20);
        let huge = serde_json::to_vec(&serde_json::json!({
            "messages": [{"role": "tool", "tool_call_id": "c", "content": output}]
        }))
        .unwrap();
        let trapped = compressor.compress(&huge, Api::OpenaiChat, None);
        assert!(trapped.is_err(), "{trapped:?}");
        // A fresh instance answers the next call.
        assert!(
            !compressor
                .compress(small, Api::OpenaiChat, None)
                .unwrap()
                .unwrap()
                .changed
        );
    }
}
