//! The pipeline component (`wit/headroom.wit`, built from `component/` and embedded in
//! `headroom`) against the native pipeline: for agent requests of the three APIs carrying
//! JSON, logs, grep results, diffs and code, both give byte-identical bodies and equal
//! manifests (decision, strategy, kind, sizes, tokens, hashes, reasons), with the default and
//! with non-default configurations; and both refuse what they must refuse.

use anyhow::{Result, anyhow, ensure};
use headroom_host::compress::{Api, Compressed, Compressor, Error};
use headroom_plugin::api::Api as NativeApi;
use headroom_plugin::fail_open::FailOpen;
use headroom_plugin::pipeline::{MemoryHost, Outcome, PipelineConfig, compress_request};
use headroom_plugin::tokens::Exactness;
use headroom_tests::corpus;
use serde_json::{Value, json};

/// The large tool outputs of the corpus, by name.
fn outputs() -> Vec<(&'static str, String)> {
    vec![
        ("records", corpus::records_json(300, 7)),
        ("log", corpus::log_text(60_000, 11)),
        ("grep", corpus::grep_text(40_000, 3)),
        ("diff", corpus::diff_text(30_000, 5)),
        ("code", corpus::code_text(30_000, 9)),
    ]
}

/// An Anthropic Messages request: the output as a string `tool_result`, again as text parts
/// of an error result, and a small one; a user question last.
fn anthropic_request(output: &str, model: &str) -> Vec<u8> {
    let half = output.len() / 2;
    let split = (half..output.len())
        .find(|&i| output.is_char_boundary(i))
        .unwrap_or(output.len());
    let (first, second) = output.split_at(split);
    let body = json!({
        "model": model,
        "max_tokens": 1024,
        "system": "You are a coding agent.",
        "messages": [
            {"role": "user", "content": "Investigate the failing service."},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Running the tools."},
                {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {"cmd": "inspect"}},
                {"type": "tool_use", "id": "toolu_2", "name": "run_again", "input": {}},
                {"type": "tool_use", "id": "toolu_3", "name": "status", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": output},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": [
                    {"type": "text", "text": first},
                    {"type": "text", "text": second}
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_3", "content": "ok"},
                {"type": "text", "text": "What failed, and where is the timeout?"}
            ]}
        ]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An OpenAI Responses request: a function call and its output, a shell call and its output.
fn responses_request(output: &str, model: &str) -> Vec<u8> {
    let body = json!({
        "model": model,
        "instructions": "You are a coding agent.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Which requests failed?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "query_events", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": output},
            {"type": "local_shell_call", "call_id": "call_2", "action": {"type": "exec", "command": ["cat", "out.txt"]}},
            {"type": "local_shell_call_output", "call_id": "call_2", "output": output},
            {"type": "message", "role": "user", "content": "And why?"}
        ]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Every request of the parity set: (name, API, body).
fn requests() -> Vec<(String, Api, Vec<u8>)> {
    let mut out = vec![
        (
            "chat/agent_json".to_owned(),
            Api::OpenaiChat,
            corpus::agent_json_request(300, false),
        ),
        (
            "chat/agent_json_stream".to_owned(),
            Api::OpenaiChat,
            corpus::agent_json_request(40, true),
        ),
        (
            "chat/agent_log".to_owned(),
            Api::OpenaiChat,
            corpus::agent_log_request(80_000),
        ),
        (
            "chat/agent_multi".to_owned(),
            Api::OpenaiChat,
            corpus::agent_multi_request(),
        ),
        (
            "chat/tiny".to_owned(),
            Api::OpenaiChat,
            corpus::tiny_chat(false),
        ),
    ];
    for (name, output) in outputs() {
        out.push((
            format!("chat/{name}"),
            Api::OpenaiChat,
            corpus::tool_output_request(output.clone()),
        ));
        out.push((
            format!("anthropic/{name}"),
            Api::AnthropicMessages,
            anthropic_request(&output, "claude-sonnet-4-5"),
        ));
        out.push((
            format!("responses/{name}"),
            Api::OpenaiResponses,
            responses_request(&output, "gpt-4.1"),
        ));
    }
    // Other tokenizers: cl100k_base, and the Anthropic estimate without a model.
    let log = corpus::log_text(30_000, 21);
    out.push((
        "responses/log_gpt4".to_owned(),
        Api::OpenaiResponses,
        responses_request(&log, "gpt-4-turbo"),
    ));
    let mut no_model: Value =
        serde_json::from_slice(&anthropic_request(&log, "x")).unwrap_or_default();
    if let Some(root) = no_model.as_object_mut() {
        root.remove("model");
    }
    out.push((
        "anthropic/log_no_model".to_owned(),
        Api::AnthropicMessages,
        serde_json::to_vec(&no_model).unwrap_or_default(),
    ));
    out
}

fn native_api(api: Api) -> NativeApi {
    match api {
        Api::OpenaiChat => NativeApi::OpenAiChat,
        Api::OpenaiResponses => NativeApi::OpenAiResponses,
        Api::AnthropicMessages => NativeApi::AnthropicMessages,
    }
}

fn native(api: Api, body: &[u8], config: Option<&str>) -> Result<Outcome> {
    let config: PipelineConfig = match config {
        Some(json) => serde_json::from_str(json)?,
        None => PipelineConfig::default(),
    };
    compress_request(native_api(api), body, &config, &mut MemoryHost::default())
        .map_err(|e| anyhow!("native pipeline: {e}"))
}

/// Asserts that the component's answer equals the native outcome, field by field.
fn assert_same(name: &str, body: &[u8], native: &Outcome, component: &Compressed) -> Result<()> {
    let expected_body = native.body.as_deref().unwrap_or(body);
    ensure!(
        component.body == expected_body,
        "{name}: bodies differ ({} bytes from the component, {} native)",
        component.body.len(),
        expected_body.len()
    );
    ensure!(
        component.changed == native.body.is_some(),
        "{name}: changed"
    );
    ensure!(component.model == native.model, "{name}: model");
    ensure!(
        component.tokenizer == native.exactness().as_str(),
        "{name}: tokenizer {} vs {}",
        component.tokenizer,
        native.exactness().as_str()
    );
    ensure!(
        component.exact == matches!(native.exactness(), Exactness::Exact(_)),
        "{name}: exact"
    );
    ensure!(
        component.tokens_saved == native.tokens_saved(),
        "{name}: tokens saved"
    );
    ensure!(
        component.bytes_before == native.bytes_before,
        "{name}: bytes before"
    );
    ensure!(
        component.bytes_after == native.bytes_after,
        "{name}: bytes after"
    );
    ensure!(
        component.blocks.len() == native.blocks.len(),
        "{name}: {} blocks from the component, {} native",
        component.blocks.len(),
        native.blocks.len()
    );
    for (c, n) in component.blocks.iter().zip(&native.blocks) {
        let at = format!("{name}: {}", n.location);
        ensure!(c.location == n.location, "{at}: location {}", c.location);
        ensure!(c.tool == n.tool, "{at}: tool {:?} vs {:?}", c.tool, n.tool);
        ensure!(
            c.kind.as_deref() == n.kind.map(|k| k.as_str()),
            "{at}: kind {:?} vs {:?}",
            c.kind,
            n.kind
        );
        ensure!(
            c.strategy == n.strategy,
            "{at}: strategy {} vs {}",
            c.strategy,
            n.strategy
        );
        ensure!(
            c.decision.as_str() == n.decision.as_str(),
            "{at}: decision {} vs {}",
            c.decision.as_str(),
            n.decision.as_str()
        );
        ensure!(
            c.reason == n.reason,
            "{at}: reason {} vs {}",
            c.reason,
            n.reason
        );
        ensure!(c.hash == n.hash.to_hex(), "{at}: hash");
        ensure!(
            c.bytes_before == n.bytes_before as u64,
            "{at}: bytes before"
        );
        ensure!(c.bytes_after == n.bytes_after as u64, "{at}: bytes after");
        ensure!(c.tokens_before == n.tokens_before, "{at}: tokens before");
        ensure!(c.tokens_after == n.tokens_after, "{at}: tokens after");
    }
    Ok(())
}

fn compressor() -> Result<Compressor> {
    Compressor::from_wasm(headroom_host::EMBEDDED_COMPONENT, None)
}

#[test]
fn component_and_native_pipeline_agree() -> Result<()> {
    let mut component = compressor()?;
    let configs = [
        None,
        Some(r#"{"lossy": false}"#),
        Some(r#"{"max_items": 8, "min_block_bytes": 100, "protected_tools": ["run_again"]}"#),
    ];
    let mut compressed = 0;
    let mut strategies = std::collections::BTreeSet::new();
    for config in configs {
        for (name, api, body) in requests() {
            let name = format!("{name} with {}", config.unwrap_or("defaults"));
            let expected = native(api, &body, config)?;
            let got = component
                .compress(&body, api, config)?
                .map_err(|e| anyhow!("{name}: component: {}: {}", e.kind(), e.message()))?;
            assert_same(&name, &body, &expected, &got)?;
            // Stateless: a second call (same instance) gives the same answer, never a replay.
            let again = component
                .compress(&body, api, config)?
                .map_err(|e| anyhow!("{name}: component: {}", e.message()))?;
            ensure!(again == got, "{name}: a second call differs");
            compressed += got
                .blocks
                .iter()
                .filter(|b| b.decision.as_str() == "compressed")
                .count();
            strategies.extend(got.blocks.iter().map(|b| b.strategy.clone()));
        }
    }
    // The comparison is not vacuous: many outputs were compressed, by several compressors.
    ensure!(compressed >= 20, "only {compressed} outputs compressed");
    ensure!(strategies.len() >= 5, "strategies seen: {strategies:?}");
    Ok(())
}

#[test]
fn both_refuse_what_is_not_json() -> Result<()> {
    let mut component = compressor()?;
    for (body, api) in [
        (
            &b"{\"model\": \"gpt-4o\", \"messages\": ["[..],
            Api::OpenaiChat,
        ),
        (&b"not json at all"[..], Api::AnthropicMessages),
        (&b"{\"input\": [] } trailing"[..], Api::OpenaiResponses),
        (&b""[..], Api::OpenaiChat),
    ] {
        let native = compress_request(
            native_api(api),
            body,
            &PipelineConfig::default(),
            &mut MemoryHost::default(),
        );
        ensure!(native == Err(FailOpen::NotJson), "native: {native:?}");
        match component.compress(body, api, None)? {
            Err(Error::NotJson(message)) => ensure!(message.contains("not valid JSON")),
            other => anyhow::bail!("component: {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn both_refuse_a_body_of_the_wrong_shape() -> Result<()> {
    let mut component = compressor()?;
    let body = br#"{"model": "claude-sonnet-4-5", "messages": {"role": "user"}}"#;
    let native = compress_request(
        NativeApi::AnthropicMessages,
        body,
        &PipelineConfig::default(),
        &mut MemoryHost::default(),
    );
    ensure!(
        native == Err(FailOpen::UnexpectedShape),
        "native: {native:?}"
    );
    match component.compress(body, Api::AnthropicMessages, None)? {
        Err(Error::UnexpectedShape(message)) => ensure!(message.contains("/v1/messages")),
        other => anyhow::bail!("component: {other:?}"),
    }
    Ok(())
}

#[test]
fn bad_options_are_refused_with_the_field_named() -> Result<()> {
    let mut component = compressor()?;
    let body = corpus::tiny_chat(false);
    for (config, field) in [
        (r#"{"max_items": "lots"}"#, "'max_items'"),
        (r#"{"max_itemz": 3}"#, "max_itemz"),
        (r#"{"protected_tools": [1]}"#, "'protected_tools[0]'"),
        ("[]", "expected a JSON object"),
        ("{", "EOF"),
    ] {
        // serde alone would take `[]` as a struct of defaults; only an object is a config.
        ensure!(
            config == "[]" || serde_json::from_str::<PipelineConfig>(config).is_err(),
            "native accepted {config}"
        );
        match component.compress(&body, Api::OpenaiChat, Some(config))? {
            Err(Error::BadOptions(message)) => {
                ensure!(message.contains(field), "{config}: {message}")
            }
            other => anyhow::bail!("{config}: component: {other:?}"),
        }
    }
    // Blank and empty objects are the defaults.
    for config in ["", " ", "{}"] {
        let got = component.compress(&body, Api::OpenaiChat, Some(config))?;
        ensure!(got.is_ok(), "{config:?}: {got:?}");
    }
    Ok(())
}
