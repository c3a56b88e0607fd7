//! Headroom's compression pipeline as a WebAssembly component: implements the `compressor`
//! interface of `wit/headroom.wit` by calling [`compress_request`] of `headroom-plugin`'s pure
//! modules, built without the proxy-wasm glue.
//!
//! Every call starts from empty stores ([`MemoryHost::default`]): the component keeps no state
//! between calls, so the same body, API and options always give the same result.

#![warn(missing_docs)]

use headroom_plugin::api::Api as PluginApi;
use headroom_plugin::fail_open::FailOpen;
use headroom_plugin::pipeline::{
    BlockReport, Decision as PluginDecision, MemoryHost, Outcome, PipelineConfig, compress_request,
};

/// The bindings generated from `wit/headroom.wit`.
#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "headroom",
    });
}

use bindings::exports::headroom::pipeline::compressor::{
    Api, Block, Compressed, Decision, Error, Guest, Options,
};

bindings::export!(Component with_types_in bindings);

/// The component's implementation of the `compressor` interface.
pub struct Component;

impl Guest for Component {
    fn compress(body: Vec<u8>, api: Api, options: Options) -> Result<Compressed, Error> {
        compress(body, api, options.config.as_deref())
    }
}

/// `compress` of the WIT interface.
fn compress(body: Vec<u8>, api: Api, config: Option<&str>) -> Result<Compressed, Error> {
    let config = parse_config(config)?;
    let api = match api {
        Api::OpenaiChat => PluginApi::OpenAiChat,
        Api::OpenaiResponses => PluginApi::OpenAiResponses,
        Api::AnthropicMessages => PluginApi::AnthropicMessages,
    };
    let mut host = MemoryHost::default();
    let outcome = compress_request(api, &body, &config, &mut host).map_err(|e| error(e, api))?;
    Ok(compressed(body, outcome))
}

/// Parses `options.config` with the filter's own parser: absent, blank or `{}` is every
/// default; anything but a JSON object of known fields is refused with the offending field named.
fn parse_config(raw: Option<&str>) -> Result<PipelineConfig, Error> {
    let raw = raw.unwrap_or_default();
    headroom_plugin::config::parse_object(raw.as_bytes()).map_err(|e| {
        Error::BadOptions(match e.path {
            Some(path) => format!("invalid pipeline configuration at '{path}': {}", e.message),
            None => format!("invalid pipeline configuration: {}", e.message),
        })
    })
}

fn error(reason: FailOpen, api: PluginApi) -> Error {
    match reason {
        FailOpen::NotJson => Error::NotJson(
            "the body is not valid JSON (or nests deeper than max_json_depth)".to_owned(),
        ),
        FailOpen::UnexpectedShape => Error::UnexpectedShape(format!(
            "the JSON does not have the shape of a {} request ({})",
            api.as_str(),
            api.path()
        )),
        other => Error::Internal(format!("the pipeline failed: {other}")),
    }
}

fn compressed(original: Vec<u8>, outcome: Outcome) -> Compressed {
    let exactness = outcome.exactness();
    let tokens_saved = outcome.tokens_saved();
    let Outcome {
        body,
        model,
        blocks,
        bytes_before,
        bytes_after,
        ..
    } = outcome;
    let changed = body.is_some();
    Compressed {
        body: body.unwrap_or(original),
        changed,
        model,
        tokenizer: exactness.as_str().to_owned(),
        exact: matches!(exactness, headroom_plugin::tokens::Exactness::Exact(_)),
        tokens_saved,
        bytes_before,
        bytes_after,
        blocks: blocks.into_iter().map(block).collect(),
    }
}

fn block(report: BlockReport) -> Block {
    Block {
        location: report.location,
        tool: report.tool,
        kind: report.kind.map(|k| k.as_str().to_owned()),
        strategy: report.strategy.to_owned(),
        decision: decision(report.decision),
        reason: report.reason,
        hash: report.hash.to_hex(),
        bytes_before: to_u64(report.bytes_before),
        bytes_after: to_u64(report.bytes_after),
        tokens_before: report.tokens_before,
        tokens_after: report.tokens_after,
    }
}

fn decision(decision: PluginDecision) -> Decision {
    match decision {
        PluginDecision::Compressed => Decision::Compressed,
        PluginDecision::Replayed => Decision::Replayed,
        PluginDecision::ReplayedUnchanged => Decision::ReplayedUnchanged,
        PluginDecision::TooSmall => Decision::TooSmall,
        PluginDecision::ProtectedTool => Decision::ProtectedTool,
        PluginDecision::ErrorOutput => Decision::ErrorOutput,
        PluginDecision::AlreadyCompressed => Decision::AlreadyCompressed,
        PluginDecision::NoChange => Decision::NoChange,
        PluginDecision::NoGain => Decision::NoGain,
        PluginDecision::Undecodable => Decision::Undecodable,
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn chat(output: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "which rows failed?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "query", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": output},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn unchanged_bodies_come_back_byte_for_byte() {
        let body = chat("ok");
        let out = compress(body.clone(), Api::OpenaiChat, None).unwrap();
        assert!(!out.changed);
        assert_eq!(out.body, body);
        assert_eq!(out.tokenizer, "o200k_base");
        assert!(out.exact);
        assert_eq!(out.blocks.len(), 1);
        assert!(matches!(out.blocks[0].decision, Decision::TooSmall));
        assert_eq!(out.blocks[0].hash.len(), 16);
    }

    #[test]
    fn a_large_json_output_is_compressed() {
        let rows: Vec<_> = (0..200)
            .map(|i| serde_json::json!({"id": i, "status": "ok", "latency_ms": i * 3}))
            .collect();
        let output = serde_json::to_string_pretty(&rows).unwrap();
        let body = chat(&output);
        let out = compress(body.clone(), Api::OpenaiChat, Some("{}")).unwrap();
        assert!(out.changed);
        assert!(out.body.len() < body.len());
        assert_eq!(out.bytes_after, out.body.len() as u64);
        assert!(out.tokens_saved > 0);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        match compress(b"{nope".to_vec(), Api::OpenaiChat, None) {
            Err(Error::NotJson(m)) => assert!(m.contains("not valid JSON")),
            other => panic!("{other:?}"),
        }
        match compress(br#"{"messages": 3}"#.to_vec(), Api::AnthropicMessages, None) {
            Err(Error::UnexpectedShape(m)) => assert!(m.contains("/v1/messages")),
            other => panic!("{other:?}"),
        }
        match compress(chat("ok"), Api::OpenaiChat, Some(r#"{"max_items": "x"}"#)) {
            Err(Error::BadOptions(m)) => assert!(m.contains("'max_items'"), "{m}"),
            other => panic!("{other:?}"),
        }
        match compress(chat("ok"), Api::OpenaiChat, Some("[]")) {
            Err(Error::BadOptions(m)) => assert!(m.contains("expected a JSON object"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
