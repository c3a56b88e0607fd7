//! Retrieval is scoped to the credential that produced the original, and markers are keyed
//! with the deployment's secret, in both hosts (our host; Envoy 1.40 with two workers, so the
//! request and its retrieval may meet different VMs):
//! - the marker a keyed filter sends is not the content hash of the original (it cannot be
//!   computed from guessed content) and is what the native pipeline sends with the same secret;
//! - the original is served to the credential that sent it, and to no other: another key,
//!   the same key under another header, and no credential all get the 404 a hash never stored
//!   gets, byte for byte;
//! - a second client that sends the same output (a replay) can retrieve it under its own key.

use headroom_plugin::api::Api;
use headroom_plugin::pipeline::{ContentHash, MemoryHost, compress_request};
use headroom_tests::client::{self, ClientRequest, ClientResponse};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::json;

use anyhow::{Context as _, Result, ensure};

const SECRET: &str = "fleet-marker-secret-for-tests";

/// The plugin configuration under test.
fn plugin_config() -> String {
    json!({ "marker_secret": SECRET }).to_string()
}

/// An Anthropic request whose one tool result is `output`.
fn request(output: &str) -> Vec<u8> {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [
            {"role": "user", "content": "Why did the deploy fail?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": output}]}
        ]
    })
    .to_string()
    .into_bytes()
}

/// `request` with `headers` added.
fn with_headers(mut request: ClientRequest, headers: &[(&str, &str)]) -> ClientRequest {
    for (name, value) in headers {
        request
            .headers
            .push(((*name).to_owned(), value.as_bytes().to_vec()));
    }
    request
}

/// GET the retrieval of `hash` with `headers`.
async fn retrieve(
    target: &impl Target,
    hash: &str,
    headers: &[(&str, &str)],
) -> Result<ClientResponse> {
    let request = with_headers(
        ClientRequest::get(&format!("/v1/headroom/retrieve/{hash}")),
        headers,
    );
    client::send(target.addr(), &request, |_| {}).await
}

async fn scoped_retrieval(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    let output = corpus::log_text(24_000, 7);
    let body = request(&output);
    let alice = [("x-api-key", "sk-ant-alice")];
    let bob = [("x-api-key", "sk-ant-bob")];

    let sent = |headers: &[(&str, &str)]| {
        with_headers(
            ClientRequest::post_json("/v1/messages", body.clone()),
            headers,
        )
    };
    let response = client::send(target.addr(), &sent(&alice), |_| {}).await?;
    ensure!(response.status == 200, "{name}: status {}", response.status);
    let received = upstream.take_received();
    let upstream_body = &received.first().context("nothing reached upstream")?.body;

    // The bytes are the native pipeline's with the same secret.
    let config = headroom_plugin::config::Config::from_bytes(plugin_config().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let native = compress_request(
        Api::AnthropicMessages,
        &body,
        &config.pipeline,
        &mut MemoryHost::default(),
    )
    .map_err(|e| anyhow::anyhow!("native pipeline: {e}"))?;
    ensure!(
        native.body.as_deref() == Some(upstream_body.as_slice()),
        "{name}: the upstream body is not the native pipeline's"
    );
    let text = String::from_utf8_lossy(upstream_body);
    let at = text.find("<<headroom:").context("no marker sent")? + "<<headroom:".len();
    let hash = text.get(at..at + 16).context("short marker")?.to_owned();
    ensure!(
        hash != ContentHash::of(output.as_bytes()).to_hex(),
        "{name}: the marker names the plain content hash"
    );

    let found = retrieve(target, &hash, &alice).await?;
    ensure!(found.status == 200, "{name}: alice: {}", found.status);
    ensure!(
        found.json()?["original"] == output.as_str(),
        "{name}: alice got another text"
    );

    let never = retrieve(target, "0123456789abcdef", &alice).await?;
    ensure!(
        never.status == 404,
        "{name}: never stored: {}",
        never.status
    );
    // What a hash never stored answers, for this hash.
    let (_, never_body) =
        headroom_plugin::routing::retrieve_response(ContentHash::from_hex(&hash), None);
    for (who, headers) in [
        ("bob", &bob[..]),
        (
            "alice's key as a bearer token",
            &[("authorization", "sk-ant-alice")][..],
        ),
        ("no credential", &[][..]),
    ] {
        let response = retrieve(target, &hash, headers).await?;
        ensure!(
            response.status == 404,
            "{name}: {who}: status {}",
            response.status
        );
        // Indistinguishable from a hash never stored.
        ensure!(
            response.body == never_body.as_bytes(),
            "{name}: {who}: {:?} vs {never_body:?}",
            String::from_utf8_lossy(&response.body),
        );
    }

    // Bob sends the same output: the replay sends the same bytes, and Bob can retrieve it now.
    let response = client::send(target.addr(), &sent(&bob), |_| {}).await?;
    ensure!(response.status == 200, "{name}: bob: {}", response.status);
    let received = upstream.take_received();
    ensure!(
        received.first().map(|r| &r.body) == Some(upstream_body),
        "{name}: bob's request was sent other bytes"
    );
    let found = retrieve(target, &hash, &bob).await?;
    ensure!(
        found.status == 200,
        "{name}: bob after his request: {}",
        found.status
    );
    ensure!(
        upstream.take_received().is_empty(),
        "{name}: retrievals reached the upstream"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_is_scoped_to_the_credential_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = plugin_config().into_bytes();
    let host = InProcess::start(config)?;
    scoped_retrieval(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_is_scoped_to_the_credential_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), &plugin_config(), 2).await?;
    target.explain(scoped_retrieval(&target, &upstream).await)
}
