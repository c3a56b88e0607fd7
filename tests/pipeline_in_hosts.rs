//! The pipeline inside the filter, in both hosts: an agent conversation of several turns (each
//! appends a tool result and resends the whole history) goes through our host and through a
//! real Envoy with two workers. For every turn the upstream body is byte-identical to the
//! native pipeline's output (parity), its prefix is byte-identical to the previous turn's
//! (prompt caches survive, also across VMs), and every marker's hash is served by the
//! filter's retrieval endpoint from shared data. The counters, `/stats` and the waste signals
//! agree with the native pipeline's figures.

use headroom_plugin::api::Api;
use headroom_plugin::pipeline::waste::WasteTokens;
use headroom_plugin::pipeline::{MemoryHost, PipelineConfig, compress_request};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

use anyhow::{Context as _, Result, ensure};

/// The tool output of turn `turn`: JSON with errors, logs with a stack trace, grep results
/// and a diff, in rotation, each distinct.
fn tool_output(turn: usize) -> String {
    let seed = turn as u64 + 11;
    match turn % 4 {
        0 => corpus::records_json(150, seed),
        1 => corpus::log_text(24_000, seed),
        2 => corpus::grep_text(12_000, seed),
        _ => corpus::diff_text(12_000, seed),
    }
}

/// The Anthropic request of turn `turns` (1-based): the history up to it, messages last so
/// that the previous turn's body minus its closing `]}` is a prefix of this one.
fn anthropic_request(turns: usize) -> Vec<u8> {
    let mut messages = vec![json!({"role": "user", "content": "Investigate the failing service."})];
    for t in 0..turns {
        let id = format!("toolu_{t:02}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": format!("Step {t}: running a tool.")},
            {"type": "tool_use", "id": id, "name": "run", "input": {"step": t}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": tool_output(t)},
            {"type": "text", "text": format!("Question {t}: what failed, and where is the timeout?")}
        ]}));
    }
    let messages: Vec<String> = messages.iter().map(Value::to_string).collect();
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{}]}}"#,
        messages.join(",")
    )
    .into_bytes()
}

/// The 16-hex hashes of every marker in `body`.
fn marker_hashes(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("<<headroom:")
        .filter_map(|(at, open)| text.get(at + open.len()..at + open.len() + 16))
        .map(str::to_owned)
        .collect()
}

async fn conversation(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let before = prom::parse(&target.scrape().await?);
    let config = PipelineConfig::default();
    let mut native = MemoryHost::default();
    let mut previous: Option<Vec<u8>> = None;
    let mut hashes = Vec::new();
    let mut waste = WasteTokens::default();
    const TURNS: usize = 6;
    for turn in 1..=TURNS {
        let body = anthropic_request(turn);
        let outcome = compress_request(Api::AnthropicMessages, &body, &config, &mut native)
            .map_err(|e| anyhow::anyhow!("native pipeline: {e}"))?;
        waste.merge(&outcome.waste);
        let expected = outcome.body.unwrap_or_else(|| body.clone());
        let response = client::send(
            target.addr(),
            &ClientRequest::post_json("/v1/messages", body),
            |_| {},
        )
        .await?;
        ensure!(
            response.status == 200,
            "{name}: turn {turn}: status {}",
            response.status
        );
        let received = upstream.take_received();
        ensure!(
            received.len() == 1,
            "{name}: turn {turn}: {} upstream requests",
            received.len()
        );
        let sent = &received[0].body;
        ensure!(
            *sent == expected,
            "{name}: turn {turn}: upstream body differs from the native pipeline's ({} vs {} bytes)",
            sent.len(),
            expected.len()
        );
        if let Some(previous) = &previous {
            let prefix = &previous[..previous.len() - 2];
            ensure!(
                sent.starts_with(prefix),
                "{name}: turn {turn}: the previous turn's bytes are not a prefix of this turn's"
            );
        }
        hashes.extend(marker_hashes(sent));
        previous = Some(sent.clone());
    }
    hashes.sort();
    hashes.dedup();
    ensure!(!hashes.is_empty(), "{name}: no lossy compression happened");

    // Every marker's original is served, and it is one of the tool outputs sent.
    let originals: Vec<String> = (0..TURNS).map(tool_output).collect();
    for hash in &hashes {
        let path = format!("/v1/headroom/retrieve/{hash}");
        let response = client::send(target.addr(), &ClientRequest::get(&path), |_| {}).await?;
        ensure!(
            response.status == 200,
            "{name}: {path}: status {}",
            response.status
        );
        let found = response.json()?;
        let original = found["original"].as_str().context("original is a string")?;
        ensure!(
            originals.iter().any(|o| o == original),
            "{name}: {path} answered text that no tool output had"
        );
    }
    let missing = client::send(
        target.addr(),
        &ClientRequest::get("/v1/headroom/retrieve/0123456789abcdef"),
        |_| {},
    )
    .await?;
    ensure!(
        missing.status == 404,
        "{name}: unknown hash: {}",
        missing.status
    );
    ensure!(missing.json()?["error"]["type"] == "not_found");
    ensure!(
        upstream.take_received().is_empty(),
        "{name}: retrievals reached the upstream"
    );

    // Counters: one decision per tool output and turn, replays from turn 2 on.
    let mut last = String::new();
    for _ in 0..50 {
        let after = prom::parse(&target.scrape().await?);
        let delta = |series: &str| prom::delta(&before, &after, series);
        let decided: f64 = [
            "compressed",
            "replayed",
            "replayed_unchanged",
            "no_change",
            "no_gain",
            "error_output",
            "too_small",
        ]
        .iter()
        .map(|d| delta(&format!("headroom_tool_outputs_total{{decision=\"{d}\"}}")))
        .sum();
        let want_decided = (TURNS * (TURNS + 1) / 2) as f64;
        let replayed = delta(r#"headroom_tool_outputs_total{decision="replayed"}"#)
            + delta(r#"headroom_tool_outputs_total{decision="replayed_unchanged"}"#);
        let found = delta(r#"headroom_retrievals_total{status="found"}"#);
        let not_found = delta(r#"headroom_retrievals_total{status="missing"}"#);
        let saved = delta("headroom_tokens_saved_total");
        if decided == want_decided
            && replayed == (want_decided - TURNS as f64)
            && found == hashes.len() as f64
            && not_found == 1.0
            && saved > 0.0
        {
            // `/stats`, served by the filter from the same process-wide counters (the target
            // is fresh, so its absolute figures are this conversation's).
            let stats = client::send(target.addr(), &ClientRequest::get("/stats"), |_| {})
                .await?
                .json()?;
            ensure!(
                stats["tokens"]["saved"].as_f64() == Some(saved),
                "{name}: /stats {stats}"
            );
            ensure!(
                stats["requests"]["total"] == TURNS,
                "{name}: /stats {stats}"
            );
            ensure!(stats["requests"]["by_provider"]["anthropic"] == TURNS);
            ensure!(stats["requests"]["by_model"]["claude-sonnet-4-5"] == TURNS);
            // The test upstream reports 12 input and 5 output tokens per response.
            ensure!(
                stats["tokens"]["input"] == 12 * TURNS,
                "{name}: /stats {stats}"
            );
            ensure!(stats["tokens"]["output"] == 5 * TURNS);
            ensure!(stats["latency"]["total_requests"] == TURNS);
            // The `_max` / `_min` gauges hold the same process-wide extremes, in whole ms.
            let empty = prom::parse("");
            let max_gauge = prom::delta(&empty, &after, "headroom_latency_ms_max");
            let min_gauge = prom::delta(&empty, &after, "headroom_latency_ms_min");
            let max_ms = stats["latency"]["max_ms"].as_f64().unwrap_or(-1.0);
            let min_ms = stats["latency"]["min_ms"].as_f64().unwrap_or(-1.0);
            // Whole ms (truncated) against /stats's 2-decimal rounding of the same sample.
            let same = |gauge: f64, ms: f64| gauge <= ms && ms - gauge < 1.0 + 0.005;
            ensure!(
                same(max_gauge, max_ms) && same(min_gauge, min_ms) && max_ms >= min_ms,
                "{name}: gauges {min_gauge}..{max_gauge} vs /stats {min_ms}..{max_ms}"
            );
            ensure!(stats["compression"]["retrievals"]["found"] == hashes.len());
            // Per strategy: every replaced output is counted under one strategy, the tokens
            // saved add up, and /stats shows the same counters.
            let compressed = delta(r#"headroom_tool_outputs_total{decision="compressed"}"#)
                + delta(r#"headroom_tool_outputs_total{decision="replayed"}"#);
            let by_strategy = stats["compressions_by_strategy"]
                .as_object()
                .context("compressions_by_strategy")?;
            let mut counted = 0.0;
            for (strategy, n) in by_strategy {
                let series =
                    format!("headroom_compressions_by_strategy_total{{strategy=\"{strategy}\"}}");
                ensure!(n.as_f64() == Some(delta(&series)), "{name}: {series}");
                counted += delta(&series);
            }
            ensure!(
                counted == compressed,
                "{name}: {counted} by strategy, {compressed} replaced"
            );
            let saved_by: f64 = stats["tokens_saved_by_strategy"]
                .as_object()
                .context("tokens_saved_by_strategy")?
                .values()
                .filter_map(Value::as_f64)
                .sum();
            ensure!(
                saved_by == saved,
                "{name}: {saved_by} by strategy, {saved} saved"
            );
            // Transform timings: token counting ran once per fresh tool output with a
            // candidate (replays skip it), and each strategy that compressed was timed.
            let timing = &stats["pipeline_timing"];
            let fresh = delta(r#"headroom_tool_outputs_total{decision="compressed"}"#);
            ensure!(
                timing["token_count"]["count"].as_f64() >= Some(fresh),
                "{name}: pipeline_timing {timing}"
            );
            for strategy in by_strategy.keys().filter(|s| *s != "replay") {
                ensure!(
                    timing[strategy.as_str()]["count"].as_u64() >= Some(1),
                    "{name}: {strategy} not timed: {timing}"
                );
            }
            // Every earlier output was a replay: compression never broke the prompt cache.
            ensure!(
                delta("headroom_cache_bust_total") == 0.0,
                "{name}: compression cache busts in a replayed conversation"
            );
            // Waste signals: each turn's new output examined once, the same figures as the
            // native pipeline's, in the counters and in /stats.
            ensure!(!waste.is_empty(), "{name}: the corpus shows no waste");
            for (signal, tokens) in waste.iter() {
                let series = format!(
                    "headroom_waste_signal_tokens_total{{signal=\"{}\"}}",
                    signal.as_str()
                );
                ensure!(
                    delta(&series) == tokens as f64
                        && stats["waste_signals"][signal.as_str()] == tokens,
                    "{name}: {series}: {} counted, /stats {}, native {tokens}",
                    delta(&series),
                    stats["waste_signals"]
                );
            }
            // The savings ledger: one request per turn, a checkpoint per turn that saved.
            let ledger = &stats["persistent_savings"];
            ensure!(ledger["lifetime"]["requests"] == TURNS, "{name}: {ledger}");
            ensure!(
                ledger["lifetime"]["tokens_saved"].as_f64() == Some(saved),
                "{name}: {ledger}"
            );
            ensure!(ledger["history_points"] == TURNS, "{name}: {ledger}");
            return Ok(());
        }
        last = format!(
            "decided {decided}/{want_decided}, replayed {replayed}, found {found}, missing {not_found}, tokens saved {saved}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("{name}: metrics: {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    conversation(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    target.explain(conversation(&target, &upstream).await)
}
