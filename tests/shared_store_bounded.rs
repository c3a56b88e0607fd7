//! The filter's omitted-originals store stays within its budget in both hosts: many lossy
//! compressions (far more originals than the budget holds) go through our host and through
//! Envoy 1.40 with two workers; the oldest marker's original is evicted (404), the newest is
//! served (200). In our host the store's keys and bytes in shared data are measured: evicted
//! entries leave 16-byte tombstones in reused keys, so both stay bounded.

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use headroom_host::abi::shared::SharedData;
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::json;

/// Budget of the omitted store: room for a few 24 KB originals.
const BUDGET: u64 = 100_000;
const CONFIG: &str = r#"{"omitted_store_bytes":100000,"replay_store_bytes":20000}"#;
const REQUESTS: u64 = 24;

fn request(seed: u64) -> ClientRequest {
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "Find the failure."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": corpus::log_text(24_000, seed)},
                {"type": "text", "text": "What failed?"}]}
        ]
    });
    ClientRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("anthropic-version".into(), b"2023-06-01".to_vec()),
        ],
        chunks: vec![body.to_string().into_bytes()],
        ..ClientRequest::default()
    }
}

fn marker(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let at = text.find("<<headroom:")? + "<<headroom:".len();
    text.get(at..at + 16).map(str::to_owned)
}

async fn status(addr: std::net::SocketAddr, hash: &str) -> Result<u16> {
    let req = ClientRequest {
        method: "GET".into(),
        path: format!("/v1/headroom/retrieve/{hash}"),
        ..ClientRequest::default()
    };
    Ok(client::send(addr, &req, |_| {}).await?.status)
}

/// Sends the requests; returns the first and the last marker.
async fn fill(addr: std::net::SocketAddr, upstream: &Upstream) -> Result<(String, String)> {
    let mut markers = Vec::new();
    for seed in 0..REQUESTS {
        let response = client::send(addr, &request(1000 + seed), |_| {}).await?;
        ensure!(
            response.status == 200,
            "request {seed}: {}",
            response.status
        );
        let sent = upstream.take_received();
        let hash = sent
            .first()
            .and_then(|r| marker(&r.body))
            .context("no marker: the tool output was not compressed lossily")?;
        markers.push(hash);
    }
    let first = markers.first().cloned().context("no requests")?;
    let last = markers.last().cloned().context("no requests")?;
    ensure!(
        status(addr, &first).await? == 404,
        "oldest original still served"
    );
    ensure!(
        status(addr, &last).await? == 200,
        "newest original not served"
    );
    Ok((first, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_store_stays_bounded_in_our_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = CONFIG.as_bytes().to_vec();
    let shared = Arc::new(SharedData::default());
    config.shared_data = shared.clone();
    let host = InProcess::start(config)?;
    fill(host.proxy().local_addr(), &upstream).await?;
    let (keys, bytes) = shared.footprint_of(b"headroom.omitted.");
    let (replay_keys, replay_bytes) = shared.footprint_of(b"headroom.replay.");
    eprintln!(
        "omitted store, budget {BUDGET} B, {REQUESTS} originals of ~24 KB: {keys} keys, {bytes} B; \
         replay store (budget 20000 B): {replay_keys} keys, {replay_bytes} B"
    );
    // Head, and per position ever claimed one ring slot, one value slot, one bucket.
    ensure!(keys as u64 <= 1 + 3 * REQUESTS, "{keys} keys");
    // The live values fit the budget; evicted ones are 16-byte tombstones; records are small.
    ensure!(bytes as u64 <= BUDGET + keys as u64 * 64, "{bytes} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_store_stays_bounded_in_envoy() -> Result<()> {
    if headroom_tests::envoy::envoy_binary().is_err() {
        eprintln!("skipped: Envoy is not installed (envoy/install.sh)");
        return Ok(());
    }
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::ZERO,
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), CONFIG, 2).await?;
    let result = fill(target.0.listener_addr, &upstream).await;
    target.explain(result).map(|_| ())
}
