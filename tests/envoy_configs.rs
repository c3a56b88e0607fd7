//! The Envoy configurations in envoy/ against a real Envoy 1.40 (`envoy/install.sh`).
//!
//! - every config passes `envoy --mode validate` (which also starts the filter's VM);
//! - a live Envoy from the template routes by path, answers unknown paths with the JSON 404, lets
//!   the filter answer `GET /health`, and exports the filter's `name.label.value` metrics with
//!   Prometheus labels.
//!
//! Needs Envoy (`envoy/install.sh`, or `HEADROOM_ENVOY`). The filter is the one the host embeds
//! (`headroom_host::EMBEDDED_PLUGIN`).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use headroom_tests::envoy::{
    Envoy, LocalConfig, plugin_wasm, render_local_config, repo_root, validate_config_in,
};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "headroom-envoy-configs-{}-{name}",
        std::process::id()
    ));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The label names envoy.yaml's stats_tags turn into Prometheus labels. (plugin/src/metrics.rs's
/// unit tests check that they cover every declared label and that every config has the same.)
fn stats_tag_names() -> anyhow::Result<Vec<String>> {
    let production = fs::read_to_string(repo_root().join("envoy/envoy.yaml"))?;
    let names: Vec<String> = production
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("- {tag_name: ")?;
            Some(rest.split(',').next()?.trim().to_owned())
        })
        .collect();
    anyhow::ensure!(!names.is_empty(), "no stats_tags in envoy/envoy.yaml");
    Ok(names)
}

#[test]
fn envoy_yaml_validates() -> anyhow::Result<()> {
    // envoy.yaml names the filter relative to the repo root, where envoy/run.sh builds it; validate
    // from a scratch dir that has the filter at that relative path.
    let wasm = plugin_wasm()?;
    let dir = scratch_dir("validate-production")?;
    let relative = dir.join("target/wasm32-wasip1/wasm-release");
    fs::create_dir_all(&relative)?;
    fs::copy(&wasm, relative.join("headroom_plugin.wasm"))?;
    let result = validate_config_in(&repo_root().join("envoy/envoy.yaml"), &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

#[test]
fn local_template_validates_with_and_without_the_filter() -> anyhow::Result<()> {
    let dir = scratch_dir("validate-local")?;
    let base = LocalConfig {
        openai_upstream_port: 18081,
        anthropic_upstream_port: 18082,
        ..LocalConfig::default()
    };
    let without = dir.join("without.yaml");
    fs::write(&without, render_local_config(&base))?;
    validate_config_in(&without, &dir).context("template without the filter")?;

    let with = dir.join("with.yaml");
    let opts = LocalConfig {
        wasm_path: Some(plugin_wasm()?),
        plugin_config_json: "{}".to_owned(),
        ..base
    };
    fs::write(&with, render_local_config(&opts))?;
    validate_config_in(&with, &dir).context("template with the filter")?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// What a loopback upstream saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body_len: usize,
}

/// A plain HTTP/1.1 upstream on 127.0.0.1:0 that records requests and answers like the provider
/// (a small non-streamed response with usage).
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(provider: &'static str) -> anyhow::Result<Upstream> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let record = record.clone();
                            async move {
                                let method = req.method().to_string();
                                let path = req.uri().to_string();
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let body_len = body.as_ref().map(|b| b.len()).unwrap_or(0);
                                record.lock().unwrap().push(Seen {
                                    method,
                                    path,
                                    body_len,
                                });
                                let answer = provider_answer(provider);
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(answer)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Upstream { addr, seen, task })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn provider_answer(provider: &str) -> String {
    match provider {
        "anthropic" => serde_json::json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 2,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        }),
        _ => serde_json::json!({
            "id": "chatcmpl-test", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
        }),
    }
    .to_string()
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// One request over a fresh connection: HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    h2c: bool,
    headers: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = hyper::Request::builder().method(method);
        request = if h2c {
            request.uri(format!("http://{addr}{path}"))
        } else {
            request.uri(path).header("host", addr.to_string())
        };
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = if h2c {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        } else {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Answer {
            status,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .context("request timed out")?
}

fn chat_request(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}]
    }))
    .unwrap()
}

fn messages_request(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}]
    }))
    .unwrap()
}

/// Envoy's catch-all route answers like our host: `{"error":{"type":"not_found","message":"no
/// route for GET /x"}}`.
async fn assert_json_404(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<()> {
    let body = if method == "GET" {
        Vec::new()
    } else {
        chat_request("x")
    };
    let answer = send(addr, method, path, body, false, &[]).await?;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    let expected = serde_json::json!({
        "error": {"type": "not_found", "message": format!("no route for {method} {path}")}
    });
    assert_eq!(json, expected);
    Ok(())
}

/// Sample lines of one metric family (`name{...} value` or `name value`).
fn samples<'a>(prometheus: &'a str, name: &str) -> Vec<&'a str> {
    prometheus
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// Polls `/stats/prometheus` until `line` shows up (counters are immediate; allow for a flush).
async fn wait_for_sample(envoy: &Envoy, line: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = envoy.prometheus().await?;
        if text.lines().any(|l| l == line) || Instant::now() > deadline {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_envoy_with_the_filter() -> anyhow::Result<()> {
    let wasm = plugin_wasm()?;
    let openai = Upstream::start("openai").await?;
    let anthropic = Upstream::start("anthropic").await?;
    let envoy = Envoy::start(
        LocalConfig {
            openai_upstream_port: openai.addr.port(),
            anthropic_upstream_port: anthropic.addr.port(),
            wasm_path: Some(wasm),
            ..LocalConfig::default()
        },
        2,
    )
    .await?;
    eprintln!(
        "envoy pid {} ready in {:?}, listener {}, admin {}, rss {:?} bytes",
        envoy.pid(),
        envoy.started_in(),
        envoy.listener_addr,
        envoy.admin_addr,
        envoy.rss_bytes()
    );
    let addr = envoy.listener_addr;
    let context = || format!("Envoy log:\n{}", envoy.log_tail());

    // One OpenAI chat completion through the filter.
    let answer = send(
        addr,
        "POST",
        "/v1/chat/completions",
        chat_request("hi"),
        false,
        &[],
    )
    .await?;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, context());
    assert_eq!(openai.seen().len(), 1);
    assert_eq!(openai.seen()[0].path, "/v1/chat/completions");

    // The filter's labelled counter, exported with a Prometheus label by stats_tags.
    let expected = r#"headroom_requests_by_provider{provider="openai"} 1"#;
    let prometheus = wait_for_sample(&envoy, expected).await?;
    assert!(
        prometheus.lines().any(|l| l == expected),
        "missing `{expected}` in:\n{}",
        samples(&prometheus, "headroom_requests_by_provider").join("\n")
    );
    let raw = envoy
        .stat_value("wasmcustom.headroom_requests_by_provider.provider.openai")
        .await?;
    assert_eq!(raw, Some(1));

    // Anthropic, with a query string, over h2c (codec_type AUTO).
    let answer = send(
        addr,
        "POST",
        "/v1/messages?beta=true",
        messages_request("hi"),
        true,
        &[],
    )
    .await?;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, context());
    let seen = anthropic.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages?beta=true");

    // The filter answers /health itself, before routing (the catch-all route would say 404).
    let before = openai.seen().len() + anthropic.seen().len();
    let health = send(addr, "GET", "/health", Vec::new(), false, &[]).await?;
    assert_eq!(health.status, 200, "{}\n{}", health.body, context());
    let health_json: serde_json::Value = serde_json::from_str(&health.body)
        .with_context(|| format!("/health body is not JSON: {}", health.body))?;
    assert!(health_json.is_object());
    assert_eq!(openai.seen().len() + anthropic.seen().len(), before);

    // Any other path: the route table's JSON 404.
    assert_json_404(addr, "GET", "/nope").await?;
    assert_json_404(addr, "POST", "/v2/chat?x=%22y%22").await?;

    // A body above Envoy's 1 MiB default buffer limit is buffered by the filter, not refused (413).
    let big = chat_request(&"lorem ipsum dolor sit amet ".repeat(80_000)); // ~2.1 MB
    let answer = send(addr, "POST", "/v1/chat/completions", big, false, &[]).await?;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, context());
    let last = openai.seen().last().cloned().unwrap();
    assert_eq!(
        (last.method.as_str(), last.body_len > 1_000_000),
        ("POST", true)
    );

    // stats_tags touch nothing but our metrics: no Envoy stat carries one of our labels.
    let prometheus = envoy.prometheus().await?;
    let labels = stats_tag_names()?;
    let mut offenders = BTreeSet::new();
    for line in prometheus.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with("headroom_") {
            continue;
        }
        if labels.iter().any(|label| {
            line.contains(&format!("{{{label}=\"")) || line.contains(&format!(",{label}=\""))
        }) {
            offenders.insert(line.to_owned());
        }
    }
    assert!(
        offenders.is_empty(),
        "Envoy stats with our labels: {offenders:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_envoy_without_the_filter_routes_the_same() -> anyhow::Result<()> {
    let openai = Upstream::start("openai").await?;
    let anthropic = Upstream::start("anthropic").await?;
    let envoy = Envoy::start(
        LocalConfig {
            openai_upstream_port: openai.addr.port(),
            anthropic_upstream_port: anthropic.addr.port(),
            wasm_path: None,
            ..LocalConfig::default()
        },
        1,
    )
    .await?;
    eprintln!(
        "envoy (no filter) pid {} ready in {:?}, rss {:?} bytes",
        envoy.pid(),
        envoy.started_in(),
        envoy.rss_bytes()
    );
    let addr = envoy.listener_addr;
    for path in ["/v1/chat/completions", "/v1/responses", "/v1/messagesX"] {
        let answer = send(addr, "POST", path, chat_request("hi"), false, &[]).await?;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let answer = send(addr, "POST", path, messages_request("hi"), false, &[]).await?;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let openai_paths: Vec<String> = openai.seen().into_iter().map(|s| s.path).collect();
    let anthropic_paths: Vec<String> = anthropic.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        openai_paths,
        ["/v1/chat/completions", "/v1/responses", "/v1/messagesX"]
    );
    assert_eq!(
        anthropic_paths,
        ["/v1/messages", "/v1/messages/count_tokens"]
    );
    // Other /v1/ paths go to Anthropic when the client is an Anthropic SDK (anthropic-version).
    let models = [("anthropic-version", "2023-06-01")];
    let answer = send(addr, "GET", "/v1/models", Vec::new(), false, &models).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        anthropic.seen().last().map(|s| s.path.as_str()),
        Some("/v1/models")
    );
    assert_eq!(openai.seen().len(), 3);
    // Without the filter nobody answers /health: it falls through to the JSON 404.
    assert_json_404(addr, "GET", "/health").await?;
    assert!(
        envoy
            .prometheus()
            .await?
            .lines()
            .all(|l| !l.starts_with("headroom_"))
    );
    Ok(())
}
