//! The provider-level prefix-cache bust (docs/upstream.md §5) in both hosts: the first Anthropic
//! response of a model with cache activity never counts; a later one that writes more than it
//! reads counts one bust and its written tokens; one that mostly reads does not.
//!
//! And no compression cache bust (`headroom_cache_bust_total`): a conversation whose earlier
//! tool output reaches a proxy with no replay record of it (a restart, another instance) is
//! compressed afresh to the very bytes a replay sends (compression is a pure function of the
//! conversation prefix), so neither counts a bust.

use anyhow::{Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Scripted, Upstream};

fn answer(read: u64, write: u64) -> Reply {
    let body = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"ok"}}],"usage":{{"input_tokens":10,"cache_read_input_tokens":{read},"cache_creation_input_tokens":{write},"output_tokens":3}}}}"#
    );
    Reply::Scripted(Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![body.into_bytes()],
        ..Scripted::default()
    })
}

async fn stats(target: &impl Target) -> Result<serde_json::Value> {
    let get = ClientRequest {
        method: "GET".into(),
        path: "/stats".into(),
        ..ClientRequest::default()
    };
    client::send(target.addr(), &get, |_| {}).await?.json()
}

async fn busts(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let request = ClientRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("anthropic-version".into(), b"2023-06-01".to_vec()),
        ],
        chunks: vec![br#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#.to_vec()],
        ..ClientRequest::default()
    };
    // First of the model (a write, not a bust), a bust (writes 900 of 1000), a hit.
    for (read, write) in [(0, 1000), (100, 900), (900, 100)] {
        upstream.set_reply(answer(read, write));
        let response = client::send(target.addr(), &request, |_| {}).await?;
        ensure!(response.status == 200, "{name}: {}", response.status);
    }
    for _ in 0..50 {
        let scrape = prom::parse(&target.scrape().await?);
        let empty = prom::parse("");
        let value = |series: &str| prom::delta(&empty, &scrape, series);
        if value(r#"headroom_provider_cache_requests_total{provider="anthropic"}"#) == 3.0 {
            ensure!(
                value(r#"headroom_provider_cache_bust_total{provider="anthropic"}"#) == 1.0,
                "{name}: bust count"
            );
            ensure!(
                value(r#"headroom_provider_cache_bust_write_tokens_total{provider="anthropic"}"#)
                    == 900.0,
                "{name}: bust write tokens"
            );
            let stats = stats(target).await?;
            let anthropic = &stats["prefix_cache"]["by_provider"]["anthropic"];
            ensure!(anthropic["bust_count"] == 1, "{name}: {anthropic}");
            ensure!(anthropic["bust_write_tokens"] == 900, "{name}: {anthropic}");
            ensure!(stats["prefix_cache"]["totals"]["bust_count"] == 1);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name}: the three responses were never counted")
}

/// The second turn of an agent conversation: the first turn's large log output is history.
fn second_turn() -> Vec<u8> {
    let log = serde_json::to_string(&corpus::log_text(24_000, 5)).unwrap_or_default();
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{{"role":"user","content":"Why is it down?"}},{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"bash","input":{{}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":{log}}}]}},{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_2","name":"bash","input":{{}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_2","content":"ok"}}]}}]}}"#
    )
    .into_bytes()
}

async fn compression_busts(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let scrape = || async {
        let empty = prom::parse("");
        let scrape = prom::parse(&target.scrape().await?);
        let value = |series: &str| prom::delta(&empty, &scrape, series);
        anyhow::Ok((
            value("headroom_cache_bust_total"),
            value(r#"headroom_tool_outputs_total{decision="compressed"}"#),
            value(r#"headroom_tool_outputs_total{decision="replayed"}"#),
        ))
    };
    let request = ClientRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![second_turn()],
        ..ClientRequest::default()
    };
    upstream.set_reply(answer(100, 4000));
    upstream.take_received();
    // The first reaches a proxy that never saw the conversation: the earlier log output is
    // compressed afresh; the second is a replay.
    for _ in 0..2 {
        let response = client::send(target.addr(), &request, |_| {}).await?;
        ensure!(response.status == 200, "{name}: {}", response.status);
    }
    let sent = upstream.take_received();
    ensure!(sent.len() == 2, "{name}: {} upstream requests", sent.len());
    ensure!(
        sent[0].body.len() < second_turn().len(),
        "{name}: the history output was not compressed"
    );
    ensure!(
        sent[0].body == sent[1].body,
        "{name}: the fresh compression and the replay sent different bytes"
    );
    for _ in 0..50 {
        let (busts, compressed, replayed) = scrape().await?;
        if replayed >= 1.0 {
            ensure!(compressed >= 1.0, "{name}: {compressed} compressed");
            ensure!(busts == 0.0, "{name}: {busts} busts");
            let stats = stats(target).await?;
            let vs = &stats["prefix_cache"]["compression_vs_cache"];
            ensure!(vs["cache_bust_count"] == 0, "{name}: {vs}");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name}: the replay was never counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_bust_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(answer(0, 0)).await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    busts(&host, &upstream).await?;
    compression_busts(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_bust_in_envoy() -> Result<()> {
    let upstream = Upstream::start(answer(0, 0)).await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    let result = async {
        busts(&target, &upstream).await?;
        compression_busts(&target, &upstream).await
    }
    .await;
    target.explain(result)
}
