//! The spending limit in both hosts: once the day's recorded cost passes the limit, provider
//! requests get a 429 in the provider's own error shape (OpenAI on OpenAI paths, Anthropic on
//! Anthropic paths) without reaching the upstream, and `/stats` shows the budget state.

use std::time::Duration;

use anyhow::{Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::Value;

/// A millionth of a dollar: the first request (12 input and 5 output tokens of gpt-4o-mini,
/// about 4.8 micro-USD) spends it.
const CONFIG: &str = r#"{"budget":{"limit_usd":0.000001,"period":"daily"}}"#;

fn request(path: &str, body: &str) -> ClientRequest {
    ClientRequest::post_json(path, body.as_bytes().to_vec())
}

async fn stats(target: &impl Target) -> Result<Value> {
    let get = ClientRequest {
        method: "GET".into(),
        path: "/stats".into(),
        ..ClientRequest::default()
    };
    client::send(target.addr(), &get, |_| {}).await?.json()
}

async fn budget_holds(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let first = client::send(
        target.addr(),
        &request("/v1/chat/completions", chat),
        |_| {},
    )
    .await?;
    ensure!(
        first.status == 200,
        "{name}: first request: {}",
        first.status
    );
    // The cost is recorded when the exchange ends, a moment after the client has the body.
    let mut spent = 0.0;
    for _ in 0..50 {
        spent = stats(target).await?["budget"]["spent_usd"]
            .as_f64()
            .unwrap_or(0.0);
        if spent > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(spent > 0.000001, "{name}: spent {spent}");

    let second = client::send(
        target.addr(),
        &request("/v1/chat/completions", chat),
        |_| {},
    )
    .await?;
    ensure!(
        second.status == 429,
        "{name}: over budget: {}",
        second.status
    );
    let body = second.json()?;
    ensure!(body["error"]["code"] == "budget_exceeded", "{name}: {body}");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("daily")),
        "{name}: {body}"
    );

    let messages = r#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let third = client::send(target.addr(), &request("/v1/messages", messages), |_| {}).await?;
    ensure!(third.status == 429, "{name}: over budget: {}", third.status);
    let body = third.json()?;
    ensure!(body["type"] == "error", "{name}: {body}");
    ensure!(
        body["error"]["type"] == "rate_limit_error",
        "{name}: {body}"
    );

    ensure!(
        upstream.take_received().len() == 1,
        "{name}: a rejected request reached the upstream"
    );
    let stats = stats(target).await?;
    ensure!(stats["budget"]["exceeded"] == true, "{name}: {stats}");
    ensure!(
        stats["cost"]["budget_rejected_requests"] == 2,
        "{name}: {stats}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = CONFIG.as_bytes().to_vec();
    let host = InProcess::start(config)?;
    budget_holds(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), CONFIG, 2).await?;
    target.explain(budget_holds(&target, &upstream).await)
}
