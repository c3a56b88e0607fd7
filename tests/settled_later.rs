//! Issue 18: the filter forwards a request once its bytes are decided and settles the rest of
//! its accounting at the end of the exchange (`compress_request_unsettled`, `Unsettled::settle`).
//! On every benchmark corpus and the real corpus (public logs, API responses, diffs, build and
//! search output), with an OpenAI and a Claude model, cold and then warm through one store,
//! that must give the same body, the same reports and waste figures, and leave the same replay
//! records (the warm run reads them) as settling at once (`compress_request`).
//!
//! And in both hosts, with the real filter: a compressed request reaches the upstream before
//! its tool outputs are counted; once its response has ended, the counters hold what settling
//! at once gives.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Result, ensure};
use headroom_plugin::api::Api;
use headroom_plugin::config::Config;
use headroom_plugin::pipeline::{
    MemoryHost, Outcome, compress_request, compress_request_unsettled,
};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Scripted, Upstream};

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

/// An OpenAI stream whose chunks after the first wait for [`Upstream::release`].
fn held_stream() -> Reply {
    let chunk = |data: &str| format!("data: {data}\n\n").into_bytes();
    Reply::Scripted(Scripted {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: vec![
            chunk(
                r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"}}]}"#,
            ),
            chunk(
                r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":500,"completion_tokens":1,"total_tokens":501}}"#,
            ),
            chunk("[DONE]"),
        ],
        lockstep: true,
        ..Scripted::default()
    })
}

/// The filter's counters that matter here: requests, compressed tool outputs, tokens saved.
async fn counters(target: &impl Target) -> Result<(f64, f64, f64)> {
    let empty = prom::parse("");
    let scrape = prom::parse(&target.scrape().await?);
    let value = |series: &str| prom::delta(&empty, &scrape, series);
    Ok((
        value("headroom_requests_total"),
        value(r#"headroom_tool_outputs_total{decision="compressed"}"#),
        value("headroom_tokens_saved_total"),
    ))
}

async fn accounting_waits_for_the_end_of_the_exchange(
    target: &impl Target,
    upstream: &Upstream,
) -> Result<()> {
    let name = target.name().to_owned();
    let body = corpus::agent_json_request(300, true);
    let expected = compress_request(
        Api::OpenAiChat,
        &body,
        &Config::default().pipeline,
        &mut MemoryHost::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?
    .tokens_saved();
    ensure!(expected > 1000, "the corpus compresses: {expected}");
    let request = ClientRequest::post_json("/v1/chat/completions", body.clone());
    let addr = target.addr();
    let exchange = tokio::spawn(async move { client::send(addr, &request, |_| {}).await });
    let sent = received(upstream, 1).await;
    ensure!(sent.len() == 1, "{name}: {} upstream requests", sent.len());
    ensure!(
        sent[0].body.len() < body.len() / 4,
        "{name}: the upstream got {} bytes of {}",
        sent[0].body.len(),
        body.len()
    );
    // The upstream holds its answer: the request is counted, its tool output not yet.
    let (requests, compressed, saved) = counters(target).await?;
    ensure!(requests == 1.0, "{name}: {requests} requests while held");
    ensure!(
        compressed == 0.0 && saved == 0.0,
        "{name}: counted before the exchange ended: {compressed} compressed, {saved} saved"
    );
    upstream.release();
    upstream.release();
    let response = exchange.await??;
    ensure!(response.status == 200, "{name}: {}", response.status);
    for _ in 0..100 {
        let (_, compressed, saved) = counters(target).await?;
        if compressed >= 1.0 {
            ensure!(compressed == 1.0, "{name}: {compressed} compressed");
            ensure!(
                saved == expected as f64,
                "{name}: {saved} tokens saved, settling at once gives {expected}"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name}: the tool output was never counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_counts_a_compressed_request_when_its_exchange_ends() -> Result<()> {
    let upstream = Upstream::start(held_stream()).await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    accounting_waits_for_the_end_of_the_exchange(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_counts_a_compressed_request_when_its_exchange_ends() -> Result<()> {
    let upstream = Upstream::start(held_stream()).await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    let result = accounting_waits_for_the_end_of_the_exchange(&target, &upstream).await;
    target.explain(result)
}

/// Waits until the upstream has received `n` requests; returns them.
async fn received(upstream: &Upstream, n: usize) -> Vec<headroom_tests::upstream::Received> {
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(upstream.take_received());
        if got.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    got
}

/// While a compressed request's upstream is still answering, the root's tick settles its run:
/// its replay record exists before its response ends, so the same conversation sent meanwhile
/// replays the decision instead of compressing it again (settling at the end of the exchange,
/// the second request would find nothing and compress afresh).
async fn the_tick_settles_a_run_while_its_upstream_answers(
    target: &impl Target,
    upstream: &Upstream,
) -> Result<()> {
    let name = target.name().to_owned();
    let body = corpus::agent_json_request(300, true);
    let request = ClientRequest::post_json("/v1/chat/completions", body.clone());
    let addr = target.addr();
    let first = {
        let request = request.clone();
        tokio::spawn(async move { client::send(addr, &request, |_| {}).await })
    };
    let sent = received(upstream, 1).await;
    ensure!(sent.len() == 1, "{name}: {} upstream requests", sent.len());
    // The first response is held after its first chunk. Many ticks (20 ms) pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = tokio::spawn(async move { client::send(addr, &request, |_| {}).await });
    let again = received(upstream, 1).await;
    ensure!(
        again.len() == 1,
        "{name}: {} upstream requests",
        again.len()
    );
    ensure!(
        again[0].body == sent[0].body,
        "{name}: the same conversation went upstream as different bytes"
    );
    for _ in 0..4 {
        upstream.release();
    }
    for exchange in [first, second] {
        let response = exchange.await??;
        ensure!(response.status == 200, "{name}: {}", response.status);
    }
    let empty = prom::parse("");
    for _ in 0..100 {
        let scrape = prom::parse(&target.scrape().await?);
        let value = |series: &str| prom::delta(&empty, &scrape, series);
        let compressed = value(r#"headroom_tool_outputs_total{decision="compressed"}"#);
        let replayed = value(r#"headroom_tool_outputs_total{decision="replayed"}"#);
        if compressed + replayed >= 2.0 {
            ensure!(
                compressed == 1.0 && replayed == 1.0,
                "{name}: {compressed} compressed, {replayed} replayed: the first run was not \
                 settled while its upstream answered"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name}: the tool outputs were never counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_settles_a_run_while_its_upstream_answers() -> Result<()> {
    let upstream = Upstream::start(held_stream()).await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    the_tick_settles_a_run_while_its_upstream_answers(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_settles_a_run_while_its_upstream_answers() -> Result<()> {
    let upstream = Upstream::start(held_stream()).await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    let result = the_tick_settles_a_run_while_its_upstream_answers(&target, &upstream).await;
    target.explain(result)
}
