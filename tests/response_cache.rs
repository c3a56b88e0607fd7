//! The exact-match response cache, in both hosts (our host; Envoy 1.40 with two workers, whose
//! VMs share the cache through shared data), against a provider-shaped loopback upstream:
//! - a deterministic request (`"temperature": 0`) asked again with the same credential is
//!   answered without reaching the upstream, with the bytes and content type the first answer
//!   had and `x-headroom-cache: hit`; streaming answers are replayed as the SSE the client got
//!   (without the usage-only chunk the filter asked for itself);
//! - another credential, another body, or a sampled request goes upstream;
//! - `/stats.cache`, `requests.cached` and the Prometheus counters follow;
//! - an answer older than `ttl_seconds` is not served.

use std::time::Duration;

use headroom_tests::client::{self, ClientRequest, ClientResponse};
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

use anyhow::{Result, ensure};

const TTL_SECONDS: u64 = 2;

fn plugin_config() -> String {
    json!({ "response_cache": { "ttl_seconds": TTL_SECONDS } }).to_string()
}

/// An OpenAI chat request for `question`.
fn chat(question: &str, temperature: Option<f64>, stream: bool) -> Vec<u8> {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": question}],
    });
    if let Some(t) = temperature {
        body["temperature"] = json!(t);
    }
    if stream {
        body["stream"] = json!(true);
    }
    body.to_string().into_bytes()
}

/// POSTs `body` to the chat API with `key`.
async fn ask(target: &impl Target, key: &str, body: &[u8]) -> Result<ClientResponse> {
    let mut request = ClientRequest::post_json("/v1/chat/completions", body.to_vec());
    request.headers.push((
        "authorization".to_owned(),
        format!("Bearer {key}").into_bytes(),
    ));
    let response = client::send(target.addr(), &request, |_| {}).await?;
    ensure!(response.status == 200, "status {}", response.status);
    Ok(response)
}

/// How many requests reached the upstream with their body since the last call. (Envoy sends a
/// request's headers upstream before the filter has seen its body; a hit answered from the
/// body resets that upstream stream before any body byte, so the provider never gets a
/// request it could process or bill. The test upstream records such a reset with no body.)
fn upstream_count(upstream: &Upstream) -> usize {
    upstream
        .take_received()
        .iter()
        .filter(|request| !request.body.is_empty())
        .count()
}

async fn stats(target: &impl Target) -> Result<Value> {
    client::send(target.addr(), &ClientRequest::get("/stats"), |_| {})
        .await?
        .json()
}

async fn response_cache(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let before = prom::parse(&target.scrape().await?);
    let question = chat("What is 2 + 2?", Some(0.0), false);

    let first = ask(target, "sk-alice", &question).await?;
    ensure!(upstream_count(upstream) == 1, "{name}: first request");
    ensure!(
        first.header("x-headroom-cache").is_none(),
        "{name}: a miss is marked as a hit"
    );
    let again = ask(target, "sk-alice", &question).await?;
    ensure!(
        upstream_count(upstream) == 0,
        "{name}: the repeat reached the upstream"
    );
    ensure!(
        again.header("x-headroom-cache").as_deref() == Some("hit"),
        "{name}: the hit is not marked"
    );
    ensure!(again.body == first.body, "{name}: the hit has other bytes");
    ensure!(
        again.header("content-type") == first.header("content-type"),
        "{name}: content type {:?} vs {:?}",
        again.header("content-type"),
        first.header("content-type")
    );

    // Isolation and what is not cached.
    ask(target, "sk-bob", &question).await?;
    ensure!(
        upstream_count(upstream) == 1,
        "{name}: bob got alice's answer"
    );
    ask(
        target,
        "sk-alice",
        &chat("What is 2 + 3?", Some(0.0), false),
    )
    .await?;
    ensure!(
        upstream_count(upstream) == 1,
        "{name}: another body was a hit"
    );
    let sampled = chat("Write a haiku.", None, false);
    ask(target, "sk-alice", &sampled).await?;
    ask(target, "sk-alice", &sampled).await?;
    ensure!(
        upstream_count(upstream) == 2,
        "{name}: a sampled request was answered from the cache"
    );

    // A stream is replayed as the stream the client received.
    let streamed = chat("Count to five.", Some(0.0), true);
    let first_stream = ask(target, "sk-alice", &streamed).await?;
    ensure!(upstream_count(upstream) == 1, "{name}: first stream");
    let text = String::from_utf8_lossy(&first_stream.body).into_owned();
    ensure!(
        text.contains("data: [DONE]"),
        "{name}: not a stream: {text}"
    );
    ensure!(
        !text.contains(r#""choices":[]"#),
        "{name}: the client got the usage-only chunk"
    );
    let replayed = ask(target, "sk-alice", &streamed).await?;
    ensure!(
        upstream_count(upstream) == 0,
        "{name}: the stream repeat went upstream"
    );
    ensure!(
        replayed.body == first_stream.body,
        "{name}: the replayed stream differs"
    );
    ensure!(
        replayed
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{name}: replayed stream content type {:?}",
        replayed.header("content-type")
    );

    // The figures.
    let stats = stats(target).await?;
    let cache = &stats["cache"];
    ensure!(cache["enabled"] == true, "{name}: {cache}");
    ensure!(cache["total_hits"] == 2, "{name}: {cache}");
    ensure!(cache["entries"].as_u64() >= Some(4), "{name}: {cache}");
    ensure!(cache["ttl_seconds"] == TTL_SECONDS, "{name}: {cache}");
    ensure!(
        stats["requests"]["cached"].as_u64() >= Some(2),
        "{name}: requests {}",
        stats["requests"]
    );
    let after = prom::parse(&target.scrape().await?);
    for (series, want) in [
        ("headroom_response_cache_hits_total", 2.0),
        ("headroom_response_cache_stores_total", 4.0),
        // bob's, 2 + 3, and the two first asks.
        ("headroom_response_cache_misses_total", 4.0),
    ] {
        let got = prom::delta(&before, &after, series);
        ensure!(got == want, "{name}: {series}: {got}, want {want}");
    }

    // Past the TTL the answer is not served (and a fresh one is stored).
    tokio::time::sleep(Duration::from_millis(TTL_SECONDS * 1000 + 1100)).await;
    let late = ask(target, "sk-alice", &question).await?;
    ensure!(
        upstream_count(upstream) == 1,
        "{name}: an expired answer was served"
    );
    ensure!(
        late.header("x-headroom-cache").is_none(),
        "{name}: late hit"
    );
    ask(target, "sk-alice", &question).await?;
    ensure!(
        upstream_count(upstream) == 0,
        "{name}: the fresh answer was not stored"
    );
    Ok(())
}

/// Without `response_cache` nothing is cached and `/stats.cache` says so.
async fn off_by_default(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let question = chat("What is 2 + 2?", Some(0.0), false);
    ask(target, "sk-alice", &question).await?;
    ask(target, "sk-alice", &question).await?;
    ensure!(upstream_count(upstream) == 2, "{name}: cached while off");
    let stats = stats(target).await?;
    ensure!(
        stats["cache"]["enabled"] == false,
        "{name}: {}",
        stats["cache"]
    );
    ensure!(
        stats["cache"]["total_hits"] == 0,
        "{name}: {}",
        stats["cache"]
    );
    Ok(())
}

async fn provider() -> Result<Upstream> {
    Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_cache_in_the_headroom_host() -> Result<()> {
    let upstream = provider().await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = plugin_config().into_bytes();
    let host = InProcess::start(config)?;
    response_cache(&host, &upstream).await?;

    let upstream = provider().await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    off_by_default(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_cache_in_envoy() -> Result<()> {
    let upstream = provider().await?;
    let target = EnvoyTarget::start(upstream.addr().port(), &plugin_config(), 2).await?;
    target.explain(response_cache(&target, &upstream).await)?;

    let upstream = provider().await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    target.explain(off_by_default(&target, &upstream).await)
}
