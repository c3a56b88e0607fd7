//! Langfuse traces of the compression pipeline, from the real `headroom` binary and from a real
//! Envoy 1.40, to a real OTLP receiver serving Langfuse's path (the official
//! `opentelemetry-proto` messages decode every export; `tests/support/otel/receiver.py`):
//!
//! - `headroom` configured by the seed's variables sends OTLP/HTTP protobuf to
//!   `{LANGFUSE_BASE_URL}/api/public/otel/v1/traces` with Langfuse's Basic credentials and
//!   ingestion version; each pipeline run is a `headroom.compression.pipeline` span whose
//!   `headroom.compression.transform` children carry the tokens the transforms saved, which
//!   agree with `/stats`; `/stats.langfuse` says where they go and shows no key; neither key
//!   reaches the log;
//! - a Langfuse that is down delays no request: the lost spans and failed exports are counted;
//! - Envoy with `envoy/langfuse.yaml`'s cluster sends the same spans.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::{Envoy, LocalConfig, plugin_wasm, repo_root};
use headroom_tests::headroom::Process;
use headroom_tests::otel::{self, Receiver};
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

const PUBLIC_KEY: &str = "pk-lf-test";
const SECRET_KEY: &str = "sk-lf-sekrit-9191";
/// base64("pk-lf-test:sk-lf-sekrit-9191"), computed outside this code base (Python's base64).
const BASIC: &str = "Basic cGstbGYtdGVzdDpzay1sZi1zZWtyaXQtOTE5MQ==";

/// A provider upstream on loopback.
async fn provider() -> Result<Upstream> {
    Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await
}

/// The `headroom` binary in front of `upstream`, with `env`.
fn headroom(upstream: &Upstream, env: &[(&str, &str)]) -> Result<Process> {
    Process::stateless(upstream.addr(), env)
}

async fn post(addr: std::net::SocketAddr, path: &str, body: Vec<u8>) -> Result<()> {
    let response = client::send(addr, &ClientRequest::post_json(path, body), |_| {}).await?;
    ensure!(response.status == 200, "{path}: {}", response.status);
    Ok(())
}

/// One compressing agent request and one plain chat (both OpenAI, gpt-4o-mini), then the
/// receiver's exports once both pipeline spans arrived.
async fn traffic_then_spans(addr: std::net::SocketAddr, receiver: &Receiver) -> Result<Vec<Value>> {
    post(
        addr,
        "/v1/chat/completions",
        corpus::agent_json_request(300, false),
    )
    .await?;
    post(addr, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    receiver
        .wait_for(Duration::from_secs(30), |got| {
            named(&spans(got), "headroom.compression.pipeline").len() >= 2
        })
        .await
}

async fn stats(addr: std::net::SocketAddr) -> Result<Value> {
    client::send(addr, &ClientRequest::get("/stats"), |_| {})
        .await?
        .json()
}

/// Every span received, with its resource, scope and the export it came in.
fn spans(got: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for export in got.iter().filter(|e| e["signal"] == "traces") {
        for rs in export["body"]["resource_spans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for ss in rs["scope_spans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let mut span = span.clone();
                    span["scope"] = ss["scope"]["name"].clone();
                    out.push((export.clone(), span));
                }
            }
        }
    }
    out
}

fn named<'a>(spans: &'a [(Value, Value)], name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s["name"] == name)
        .collect()
}

fn attr(span: &Value, key: &str) -> Option<String> {
    otel::attrs(&span["attributes"]).get(key).cloned()
}

fn int_attr(span: &Value, key: &str) -> i64 {
    attr(span, key).and_then(|v| v.parse().ok()).unwrap_or(-1)
}

/// Checks the spans of one compressing request and one plain chat (both OpenAI, gpt-4o-mini) and
/// returns the tokens the transform spans say were saved.
fn check_spans(spans: &[(Value, Value)]) -> Result<i64> {
    let pipelines = named(spans, "headroom.compression.pipeline");
    let transforms = named(spans, "headroom.compression.transform");
    ensure!(pipelines.len() == 2, "{pipelines:?}");
    ensure!(!transforms.is_empty(), "no transform span: {spans:?}");
    for span in pipelines.iter().chain(&transforms) {
        ensure!(span["scope"] == "headroom", "scope: {span}");
        ensure!(span["kind"] == "SPAN_KIND_INTERNAL", "kind: {span}");
        ensure!(attr(span, "headroom.provider").as_deref() == Some("openai"));
        // The corpus requests' model.
        ensure!(
            attr(span, "headroom.model").as_deref() == Some("gpt-4o-mini"),
            "model: {span}"
        );
        let (start, end) = (
            span["start_time_unix_nano"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()?,
            span["end_time_unix_nano"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()?,
        );
        ensure!(
            start > 1_600_000_000_000_000_000 && end >= start,
            "times: {span}"
        );
    }
    ensure!(pipelines[0]["trace_id"] != pipelines[1]["trace_id"]);
    let mut saved = 0;
    for child in &transforms {
        let parent = pipelines
            .iter()
            .find(|p| p["span_id"] == child["parent_span_id"])
            .context("a transform span without its pipeline span")?;
        ensure!(parent["trace_id"] == child["trace_id"]);
        let before = int_attr(child, "headroom.tokens.before");
        let after = int_attr(child, "headroom.tokens.after");
        ensure!(before > after && after > 0, "{child}");
        ensure!(int_attr(child, "headroom.tokens.saved") == before - after);
        ensure!(attr(child, "headroom.transform").is_some_and(|t| t != "none"));
        saved += before - after;
    }
    let compressing = pipelines
        .iter()
        .find(|p| int_attr(p, "headroom.transforms_applied") > 0)
        .context("no pipeline span applied a transform")?;
    ensure!(int_attr(compressing, "headroom.tokens.saved") == saved);
    ensure!(int_attr(compressing, "headroom.message_count") > 2);
    let plain = pipelines
        .iter()
        .find(|p| int_attr(p, "headroom.transforms_applied") == 0)
        .context("the plain chat's pipeline span")?;
    ensure!(int_attr(plain, "headroom.tool_outputs") == 0, "{plain}");
    Ok(saved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headroom_sends_pipeline_spans_to_langfuse() -> Result<()> {
    let receiver = Receiver::start(false)?;
    let upstream = provider().await?;
    // A self-hosted Langfuse under a path prefix.
    let base = format!("http://127.0.0.1:{}/langfuse/", receiver.port());
    let proxy = headroom(
        &upstream,
        &[
            ("HEADROOM_LANGFUSE_ENABLED", "true"),
            ("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY),
            ("LANGFUSE_SECRET_KEY", SECRET_KEY),
            ("LANGFUSE_BASE_URL", &base),
            ("HEADROOM_LANGFUSE_SERVICE_NAME", "headroom-langfuse-test"),
            (
                "HEADROOM_LANGFUSE_RESOURCE_ATTRIBUTES",
                "deployment.environment=test",
            ),
        ],
    )?;
    let got = traffic_then_spans(proxy.addr(), &receiver).await?;
    let spans = spans(&got);
    let (export, _) = spans.first().context("no span")?;
    ensure!(
        export["path"] == "/langfuse/api/public/otel/v1/traces",
        "{}",
        export["path"]
    );
    ensure!(export["content_type"] == "application/x-protobuf");
    ensure!(
        export["headers"]["authorization"] == BASIC,
        "{}",
        export["headers"]
    );
    ensure!(export["headers"]["x-langfuse-ingestion-version"] == "4");
    let resource = otel::attrs(&export["body"]["resource_spans"][0]["resource"]["attributes"]);
    ensure!(resource.get("service.name").map(String::as_str) == Some("headroom-langfuse-test"));
    ensure!(resource.get("deployment.environment").map(String::as_str) == Some("test"));
    ensure!(resource.contains_key("service.version"));
    let saved = check_spans(&spans)?;

    // The same saving as /stats; /stats.langfuse says where spans go, and shows no key.
    let stats = stats(proxy.addr()).await?;
    ensure!(
        stats["tokens"]["saved"].as_i64() == Some(saved),
        "{}",
        stats["tokens"]
    );
    let block = &stats["langfuse"];
    ensure!(
        block["configured"] == true && block["enabled"] == true,
        "{block}"
    );
    ensure!(block["service_name"] == "headroom-langfuse-test");
    ensure!(block["base_url"] == base.trim_end_matches('/'));
    ensure!(
        block["endpoint"] == format!("{}api/public/otel/v1/traces", base),
        "{block}"
    );
    ensure!(
        block["spans_exported"].as_u64() == Some(spans.len() as u64),
        "{block}"
    );
    ensure!(block["spans_dropped"] == 0 && block["exports_failed"] == 0);
    let text = stats.to_string();
    ensure!(
        !text.contains(SECRET_KEY) && !text.contains(PUBLIC_KEY),
        "{block}"
    );
    let log = proxy.log().join("\n");
    ensure!(!log.contains(SECRET_KEY), "the secret key reached the log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_langfuse_that_is_down_delays_nothing_and_the_loss_is_counted() -> Result<()> {
    let upstream = provider().await?;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let base = format!("http://{closed}");
    let proxy = headroom(
        &upstream,
        &[
            ("HEADROOM_LANGFUSE_ENABLED", "1"),
            ("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY),
            ("LANGFUSE_SECRET_KEY", SECRET_KEY),
            ("LANGFUSE_BASE_URL", &base),
        ],
    )?;
    for _ in 0..3 {
        post(
            proxy.addr(),
            "/v1/chat/completions",
            corpus::agent_json_request(300, false),
        )
        .await?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let block = stats(proxy.addr()).await?["langfuse"].clone();
        if block["exports_failed"].as_u64() >= Some(1) {
            ensure!(block["spans_dropped"].as_u64() >= Some(2), "{block}");
            ensure!(block["spans_exported"] == 0, "{block}");
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no failed export counted: {block}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(!proxy.log().join("\n").contains(SECRET_KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_langfuse_variables_stats_says_not_configured() -> Result<()> {
    let upstream = provider().await?;
    let proxy = headroom(&upstream, &[])?;
    let block = stats(proxy.addr()).await?["langfuse"].clone();
    ensure!(
        block
            == json!({"configured": false, "enabled": false, "service_name": null,
                      "base_url": null, "endpoint": null}),
        "{block}"
    );
    Ok(())
}

/// `envoy/langfuse.yaml` pointed at the receiver over plain HTTP (its TLS tail dropped, as its
/// comment says for a self-hosted Langfuse).
fn overlay(port: u16) -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("envoy/langfuse.yaml"))?;
    let head = text
        .split("    transport_socket:")
        .next()
        .context("the overlay")?;
    ensure!(head.contains("{address: cloud.langfuse.com, port_value: 443}"));
    Ok(head.replace(
        "{address: cloud.langfuse.com, port_value: 443}",
        &format!("{{address: 127.0.0.1, port_value: {port}}}"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sends_the_same_spans_through_its_langfuse_cluster() -> Result<()> {
    let receiver = Receiver::start(false)?;
    let upstream = provider().await?;
    let port = upstream.addr().port();
    let config = json!({
        "langfuse": {
            "base_url": format!("http://127.0.0.1:{}", receiver.port()),
            "public_key": PUBLIC_KEY,
            "secret_key": SECRET_KEY,
            "flush_interval_ms": 200,
        }
    });
    let opts = LocalConfig {
        openai_upstream_port: port,
        anthropic_upstream_port: port,
        wasm_path: Some(plugin_wasm()?),
        plugin_config_json: config.to_string(),
        ..LocalConfig::default()
    };
    let overlay = overlay(receiver.port())?;
    let envoy = Envoy::start_with_args(opts, 2, &["--config-yaml", &overlay]).await?;
    let got = traffic_then_spans(envoy.listener_addr, &receiver)
        .await
        .with_context(|| envoy.log_tail())?;
    let spans = spans(&got);
    let (export, _) = spans.first().context("no span")?;
    ensure!(export["path"] == "/api/public/otel/v1/traces");
    ensure!(export["headers"]["authorization"] == BASIC);
    ensure!(export["headers"]["x-langfuse-ingestion-version"] == "4");
    let resource = otel::attrs(&export["body"]["resource_spans"][0]["resource"]["attributes"]);
    ensure!(resource.get("service.name").map(String::as_str) == Some("headroom-proxy"));
    let saved = check_spans(&spans)?;
    let stats = stats(envoy.listener_addr).await?;
    ensure!(
        stats["tokens"]["saved"].as_i64() == Some(saved),
        "{}",
        stats["tokens"]
    );
    ensure!(!stats.to_string().contains(SECRET_KEY));
    Ok(())
}

/// The shipped overlay, TLS to Langfuse Cloud included, is a valid Envoy configuration with the
/// local bootstrap and the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_overlay_validates_in_envoy() -> Result<()> {
    let dir = tempfile_dir()?;
    let opts = LocalConfig {
        wasm_path: Some(plugin_wasm()?),
        plugin_config_json: json!({"langfuse": {"public_key": "pk", "secret_key": "sk"}})
            .to_string(),
        ..LocalConfig::default()
    };
    let bootstrap = dir.join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        headroom_tests::envoy::render_local_config(&opts),
    )?;
    let output = std::process::Command::new(headroom_tests::envoy::envoy_binary()?)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&bootstrap)
        .arg("--config-yaml")
        .arg(std::fs::read_to_string(
            repo_root().join("envoy/langfuse.yaml"),
        )?)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("headroom-langfuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
