//! Issue 18: the filter forwards a request once its bytes are decided and settles the rest of
//! its accounting at the end of the exchange (`compress_request_unsettled`, `Unsettled::settle`).
//! On every benchmark corpus and the real corpus (public logs, API responses, diffs, build and
//! search output), with an OpenAI and a Claude model, cold and then warm through one store,
//! that must give the same body, the same reports and waste figures, and leave the same replay
//! records (the warm run reads them) as settling at once (`compress_request`).

use std::path::PathBuf;

use headroom_plugin::api::Api;
use headroom_plugin::config::Config;
use headroom_plugin::pipeline::{
    MemoryHost, Outcome, compress_request, compress_request_unsettled,
};
use headroom_tests::corpus;

/// A report without its clock readings, for comparison.
fn untimed(outcome: &Outcome) -> String {
    let mut outcome = outcome.clone();
    for block in &mut outcome.blocks {
        block.timing = None;
    }
    format!("{outcome:?}")
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for size in [3_000, 10_000, 100_000, 1_000_000] {
        inputs.push((format!("json/{size}"), corpus::sized_request(size)));
        let req = |name: &str, text: String| {
            (format!("{name}/{size}"), corpus::tool_output_request(text))
        };
        inputs.push(req("log", corpus::log_text(size, 7)));
        inputs.push(req("search", corpus::grep_text(size, 7)));
        inputs.push(req("diff", corpus::diff_text(size, 7)));
        inputs.push(req("code", corpus::code_text(size, 7)));
        inputs.push(req("records", corpus::records_json(size / 380 + 1, 7)));
    }
    inputs.push(("agent_json".into(), corpus::agent_json_request(300, false)));
    inputs.push(("agent_log".into(), corpus::agent_log_request(155_000)));
    inputs.push(("agent_multi".into(), corpus::agent_multi_request()));
    for (name, body) in corpus::hostile_bodies() {
        inputs.push((format!("hostile/{name}"), body));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/real");
    let real = corpus::files_under(&root, |p| {
        p.extension().is_some_and(|e| e != "md" && e != "py")
    });
    assert!(
        real.len() >= 20,
        "the real corpus is in the tree: {}",
        real.len()
    );
    for path in real {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        inputs.push((
            path.display().to_string(),
            corpus::tool_output_request(text),
        ));
    }
    inputs
}

#[test]
fn settling_at_the_end_of_the_exchange_gives_what_settling_at_once_gives() {
    let config = Config::default().pipeline;
    let mut owing = 0;
    let mut compared = 0;
    for (name, body) in inputs() {
        let claude = String::from_utf8_lossy(&body)
            .replace("gpt-4o-mini", "claude-sonnet-4-5")
            .into_bytes();
        for (model, body) in [("openai", body), ("claude", claude)] {
            let mut at_once = MemoryHost::default();
            let mut later = MemoryHost::default();
            for run in ["cold", "warm"] {
                let expected = compress_request(Api::OpenAiChat, &body, &config, &mut at_once);
                let got = compress_request_unsettled(Api::OpenAiChat, &body, &config, &mut later)
                    .map(|(mut outcome, unsettled)| {
                        // What the glue forwards is decided before anything is settled.
                        let sent = outcome.body.clone();
                        if unsettled.retained_bytes() > 0 {
                            owing += 1;
                        }
                        unsettled.settle(&mut outcome, &mut later);
                        assert_eq!(
                            sent, outcome.body,
                            "{name} {model} {run}: settling kept the body"
                        );
                        outcome
                    });
                match (&expected, &got) {
                    (Ok(expected), Ok(got)) => {
                        assert_eq!(expected.body, got.body, "{name} {model} {run}: body");
                        assert_eq!(
                            untimed(expected),
                            untimed(got),
                            "{name} {model} {run}: report"
                        );
                    }
                    (expected, got) => assert_eq!(
                        expected.as_ref().err(),
                        got.as_ref().err(),
                        "{name} {model} {run}: fail-open"
                    ),
                }
                compared += 1;
            }
        }
    }
    println!("{compared} runs compared, {owing} with accounting settled later");
    // Most cold runs compress something; warm runs replay and owe nothing.
    assert!(owing >= compared / 5, "{owing} of {compared}");
}
