//! Prints one line per input: its name, a hash of the body `compress_request` produces and a
//! hash of the report (decisions, token figures, reasons). Run before and after a performance
//! change and diff the two outputs: the compression results must stay byte-identical.
//!
//! Inputs: the benchmark corpora (JSON records, logs, search results, diffs, code, the agent
//! requests, the hostile bodies), each with an OpenAI and a Claude model, and every string of
//! at least 200 bytes in upstream's parity fixtures (`HEADROOM_UPSTREAM_FIXTURES`, else
//! `../shared/headroom-fixtures`) as a tool output. Each body runs twice through one store
//! (the second run is the replay path a later turn takes).
//!
//! Run: `cargo run --release --example pipeline_digest > digests.txt`.

use std::path::PathBuf;

use headroom_plugin::api::Api;
use headroom_plugin::config::Config;
use headroom_plugin::pipeline::{ContentHash, MemoryHost, compress_request};
use headroom_tests::corpus;

fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if s.len() >= 200 => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn main() {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for size in [3_000, 10_000, 100_000, 1_000_000] {
        inputs.push((format!("json/{size}"), corpus::sized_request(size)));
        for seed in [1, 7] {
            let req = |name: &str, text: String| {
                (
                    format!("{name}/{size}/{seed}"),
                    corpus::tool_output_request(text),
                )
            };
            inputs.push(req("log", corpus::log_text(size, seed)));
            inputs.push(req("search", corpus::grep_text(size, seed)));
            inputs.push(req("diff", corpus::diff_text(size, seed)));
            inputs.push(req("code", corpus::code_text(size, seed)));
            inputs.push(req("records", corpus::records_json(size / 380 + 1, seed)));
        }
    }
    inputs.push(("agent_json".into(), corpus::agent_json_request(300, false)));
    inputs.push((
        "agent_json_stream".into(),
        corpus::agent_json_request(300, true),
    ));
    inputs.push(("agent_log".into(), corpus::agent_log_request(155_000)));
    inputs.push(("agent_multi".into(), corpus::agent_multi_request()));
    for (name, body) in corpus::hostile_bodies() {
        inputs.push((format!("hostile/{name}"), body));
    }
    let root = std::env::var_os("HEADROOM_UPSTREAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/headroom-fixtures")
        });
    let files = corpus::files_under(&root, |p| p.extension().is_some_and(|e| e == "json"));
    for path in files {
        let Some(value) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            continue;
        };
        let mut found = Vec::new();
        strings(&value, &mut found);
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (i, text) in found.into_iter().enumerate() {
            inputs.push((
                format!("fixture/{name}/{i}"),
                corpus::tool_output_request(text),
            ));
        }
    }
    let config = Config::default().pipeline;
    for (name, body) in inputs {
        let text = String::from_utf8_lossy(&body).into_owned();
        let claude = text
            .replace("gpt-4o-mini", "claude-sonnet-4-5")
            .into_bytes();
        for (model, body) in [("openai", body), ("claude", claude)] {
            let mut host = MemoryHost::default();
            for run in ["cold", "warm"] {
                let out = compress_request(Api::OpenAiChat, &body, &config, &mut host);
                let (body_hash, report_hash) = match &out {
                    Ok(o) => {
                        let body = o.body.as_deref().unwrap_or(b"<unchanged>");
                        let mut report = o.clone();
                        report.body = None;
                        for b in &mut report.blocks {
                            b.timing = None;
                        }
                        (
                            ContentHash::of(body),
                            ContentHash::of(format!("{report:?}").as_bytes()),
                        )
                    }
                    Err(e) => {
                        let e = ContentHash::of(format!("{e:?}").as_bytes());
                        (e, e)
                    }
                };
                println!("{name} {model} {run} {body_hash} {report_hash}");
            }
        }
    }
}
