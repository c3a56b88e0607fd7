//! The Prometheus exposition, checked by Prometheus itself, in both hosts: the real `headroom`
//! binary and a real Envoy 1.40 with the filter get the same mixed traffic (OpenAI chat JSON
//! and SSE, Anthropic JSON and SSE with prompt-cache reads and 5m / 1h writes, a request whose
//! tool output is compressed, a retrieval, an unknown model, a malformed body, an upstream that
//! hangs up, `/stats`, a budget rejection), so every family the filter defines has samples.
//! Then each scrape (`/metrics`, admin `/stats/prometheus`) goes through
//! `promtool check metrics`: no parse error, and no lint finding but the accepted ones listed
//! in [`ACCEPTED`]. Last, the `headroom_*` families and their label names are compared: the
//! two hosts must expose the filter's metrics identically.
//!
//! promtool comes from the Debian package `prometheus` (`scripts/test` installs it); without
//! it this test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bytes::Bytes;
use headroom_plugin::metrics::{
    Counter, Histogram, REQUESTS_BY_MODEL, REQUESTS_BY_PROVIDER, REQUESTS_BY_STACK,
    requests_by_model, requests_by_stack,
};
use headroom_tests::client::{self, ClientRequest, ClientResponse};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{Process, get as get_from};
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Received, provider_reply};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// A budget of one dollar: the ordinary traffic costs a fraction of a cent, then one response
/// reporting a million Claude Sonnet input tokens ($3) spends it, and the next request is
/// refused (so `headroom_budget_rejected_total` moves). Unpriced models are let through (the
/// budget's default refuses them) so the unknown-model cost counter moves too.
const PLUGIN_CONFIG: &str =
    r#"{"budget":{"limit_usd":1.0,"period":"daily","unknown_model":"allow"}}"#;

/// A lint finding of `promtool check metrics` that is accepted, and why.
struct Accepted {
    /// The scrapes it applies to (`headroom`, `envoy`).
    scrapes: &'static [&'static str],
    /// The metric families it applies to.
    families: Families,
    /// promtool's text for the finding (`None`: any finding).
    finding: Option<&'static str>,
    /// Why it cannot be fixed.
    reason: &'static str,
}

/// Which families an [`Accepted`] entry covers.
enum Families {
    /// These names exactly.
    Named(&'static [&'static str]),
    /// Every name with this prefix.
    Prefix(&'static str),
}

impl Accepted {
    fn covers(&self, scrape: &str, family: &str, finding: &str) -> bool {
        self.scrapes.contains(&scrape)
            && self.finding.is_none_or(|f| f == finding)
            && match self.families {
                Families::Named(names) => names.contains(&family),
                Families::Prefix(prefix) => family.starts_with(prefix),
            }
    }
}

const BOTH: &[&str] = &["headroom", "envoy"];

/// The only lint findings allowed. Each one is forced by a name the seed (docs/upstream.md §4,
/// Grafana queries included) mandates, or comes from Envoy's exporter and Envoy's own stats.
const ACCEPTED: &[Accepted] = &[
    Accepted {
        scrapes: BOTH,
        families: Families::Named(&[
            "headroom_latency_ms",
            "headroom_latency_ms_min",
            "headroom_latency_ms_max",
            "headroom_ttfb_ms",
            "headroom_ttfb_ms_min",
            "headroom_ttfb_ms_max",
            "headroom_overhead_ms",
            "headroom_overhead_ms_min",
            "headroom_overhead_ms_max",
            "headroom_transform_timing_ms",
            "headroom_transform_timing_ms_max",
        ]),
        finding: Some("metric names should not contain abbreviated units"),
        reason: "the seed names the timings in milliseconds with `_ms` (headroom_latency_ms_sum/_count/_min/_max, queried by its Grafana board; headroom_transform_timing_ms_sum/_count/_max{transform})",
    },
    Accepted {
        scrapes: BOTH,
        families: Families::Named(&[REQUESTS_BY_PROVIDER, REQUESTS_BY_MODEL, REQUESTS_BY_STACK]),
        finding: Some("counter metrics should have \"_total\" suffix"),
        reason: "the seed names these counters without `_total` (headroom_requests_by_provider / _by_model / _by_stack)",
    },
    Accepted {
        scrapes: &["envoy"],
        families: Families::Prefix("headroom_"),
        finding: Some("no help text"),
        reason: "Envoy's /stats/prometheus writes no `# HELP` line for any stat, and proxy-wasm's define_metric has no help text to give it",
    },
    Accepted {
        scrapes: &["envoy"],
        families: Families::Prefix("envoy_"),
        finding: None,
        reason: "Envoy's own stats, named by Envoy, not by this project (no HELP, counters without `_total`, `_ms`, `_count` gauges, …)",
    },
];

/// Families only our host has, and why; every other family of its scrape is the filter's.
const HOST_ONLY: &[(&str, &str)] = &[
    (
        "headroom_host_vm_traps_total",
        "the host's own VM supervision (Envoy reports its wasm VMs as envoy_wasm_*)",
    ),
    (
        "headroom_host_vm_reloads_total",
        "the host's own VM supervision (Envoy reports its wasm VMs as envoy_wasm_*)",
    ),
    (
        "headroom_host_upstream_errors_total",
        "the host's own upstream connections (Envoy has envoy_cluster_upstream_*)",
    ),
    (
        "headroom_host_upstream_timeouts_total",
        "the host's own upstream timeouts (Envoy has envoy_cluster_upstream_rq_timeout)",
    ),
    (
        "headroom_host_client_timeouts_total",
        "the host's own client timeouts (Envoy has envoy_http_downstream_*_timeout)",
    ),
    (
        "headroom_host_connections_rejected_total",
        "the host's own connection limit (Envoy has its overload manager's stats)",
    ),
    (
        "headroom_host_records_dropped_total",
        "the host's request database queue (Envoy hands records to its access log instead)",
    ),
];

/// Prefix of the process metrics of our host (the prometheus crate's process collector;
/// Envoy has envoy_server_* instead).
const HOST_PROCESS_PREFIX: &str = "process_";

// ---------------------------------------------------------------------------------------------
// The upstream

/// Request header choosing a special answer of [`TestUpstream`].
const REPLY_HEADER: &str = "x-test-reply";

/// Anthropic usage with a cache read and cache writes in both TTL buckets.
fn anthropic_cache_usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 70,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 50},
        "output_tokens": output_tokens
    })
}

fn anthropic_message(model: &str, usage: Value) -> Value {
    json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "Hello from the test upstream."}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
    })
}

fn sse_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// A loopback provider: the support upstream's OpenAI and Anthropic shapes, plus the answers
/// `x-test-reply` asks for (cache usage, a costly response, a hang-up). Records request
/// bodies.
struct TestUpstream {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestUpstream {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let recorded = bodies.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(recorded.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, bodies, task })
    }

    fn take_bodies(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.bodies.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    recorded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(body.clone());
    let special = parts
        .headers
        .get(REPLY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("unknown-model");
    let json_reply = |value: Value| (200, "application/json", value.to_string());
    let (status, content_type, payload) = match special.as_str() {
        // Closes the connection without a response: the request fails in the proxy.
        "hangup" => return Err(std::io::Error::other("hanging up without an answer")),
        "openai-cached" => json_reply(json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43,
                      "prompt_tokens_details": {"cached_tokens": 32}}
        })),
        "anthropic-cache" => json_reply(anthropic_message(model, anthropic_cache_usage(9))),
        "anthropic-cache-sse" => {
            let mut start = anthropic_message(model, anthropic_cache_usage(1));
            start["content"] = json!([]);
            start["stop_reason"] = Value::Null;
            let events = [
                sse_event(
                    "message_start",
                    json!({"type": "message_start", "message": start}),
                ),
                sse_event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                ),
                sse_event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": "Hello."}}),
                ),
                sse_event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                sse_event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                           "usage": {"output_tokens": 9}}),
                ),
                sse_event("message_stop", json!({"type": "message_stop"})),
            ];
            (200, "text/event-stream", events.concat())
        }
        // A million input tokens of a $3/M model: spends the budget at once.
        "costly" => json_reply(anthropic_message(
            model,
            json!({"input_tokens": 1_000_000, "output_tokens": 5}),
        )),
        _ => {
            let received = Received {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: Vec::new(),
                body,
            };
            let reply = provider_reply(&received, Duration::ZERO);
            let content_type = if reply
                .headers
                .iter()
                .any(|(_, v)| v.starts_with("text/event-stream"))
            {
                "text/event-stream"
            } else {
                "application/json"
            };
            (
                reply.status,
                content_type,
                String::from_utf8_lossy(&reply.chunks.concat()).into_owned(),
            )
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(payload)))
        .map_err(std::io::Error::other)
}

// ---------------------------------------------------------------------------------------------
// The traffic

fn post(path: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> ClientRequest {
    let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
    if path == "/v1/messages" {
        headers.push(("anthropic-version".into(), b"2023-06-01".to_vec()));
    }
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    ClientRequest {
        method: "POST".into(),
        path: path.into(),
        headers,
        chunks: vec![body],
        ..ClientRequest::default()
    }
}

fn get(path: &str) -> ClientRequest {
    ClientRequest {
        method: "GET".into(),
        path: path.into(),
        ..ClientRequest::default()
    }
}

async fn send(target: &impl Target, what: &str, request: &ClientRequest) -> Result<ClientResponse> {
    client::send(target.addr(), request, |_| {})
        .await
        .with_context(|| format!("{}: {what}", target.name()))
}

async fn expect(
    target: &impl Target,
    what: &str,
    request: &ClientRequest,
    status: impl Fn(u16) -> bool,
) -> Result<ClientResponse> {
    let response = send(target, what, request).await?;
    ensure!(
        status(response.status),
        "{}: {what}: status {}: {}",
        target.name(),
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    Ok(response)
}

fn ok(status: u16) -> bool {
    status == 200
}

fn chat(model: &str, stream: bool, include_usage: bool) -> Vec<u8> {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]});
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string().into_bytes()
}

fn messages(stream: bool) -> Vec<u8> {
    let mut body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hi"}]
    });
    if stream {
        body["stream"] = json!(true);
    }
    body.to_string().into_bytes()
}

/// The 16-hex hashes of the markers in `body`.
fn marker_hashes(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("<<headroom:")
        .filter_map(|(at, open)| text.get(at + open.len()..at + open.len() + 16))
        .map(str::to_owned)
        .collect()
}

/// The same requests through `target`, whose providers both point at `upstream`.
async fn mixed_traffic(target: &impl Target, upstream: &TestUpstream) -> Result<()> {
    let name = target.name();
    let chat_path = "/v1/chat/completions";
    expect(
        target,
        "OpenAI chat with usage",
        &post(
            chat_path,
            chat("gpt-4o-mini", false, false),
            &[("x-headroom-stack", "wrap_claude")],
        ),
        ok,
    )
    .await?;
    expect(
        target,
        "OpenAI stream with usage",
        &post(chat_path, chat("gpt-4o-mini", true, true), &[]),
        ok,
    )
    .await?;
    expect(
        target,
        "OpenAI stream without usage",
        &post(chat_path, chat("gpt-4o", true, false), &[]),
        ok,
    )
    .await?;
    expect(
        target,
        "OpenAI chat with a cache read",
        &post(
            chat_path,
            chat("gpt-4o-mini", false, false),
            &[(REPLY_HEADER, "openai-cached")],
        ),
        ok,
    )
    .await?;
    expect(
        target,
        "Anthropic JSON with cache usage",
        &post(
            "/v1/messages",
            messages(false),
            &[(REPLY_HEADER, "anthropic-cache")],
        ),
        ok,
    )
    .await?;
    let sse = expect(
        target,
        "Anthropic SSE with cache usage",
        &post(
            "/v1/messages",
            messages(true),
            &[(REPLY_HEADER, "anthropic-cache-sse")],
        ),
        ok,
    )
    .await?;
    ensure!(
        String::from_utf8_lossy(&sse.body).contains("message_stop"),
        "{name}: the SSE stream did not arrive whole"
    );

    // A tool output big enough to be compressed, then its original retrieved (and a miss).
    upstream.take_bodies();
    expect(
        target,
        "a compressible tool output",
        &post(chat_path, corpus::agent_json_request(300, false), &[]),
        ok,
    )
    .await?;
    let sent = upstream.take_bodies();
    let hashes: Vec<String> = sent.iter().flat_map(|b| marker_hashes(b)).collect();
    let hash = hashes
        .first()
        .with_context(|| format!("{name}: the tool output was not compressed (no marker)"))?;
    expect(
        target,
        "a retrieval",
        &get(&format!("/v1/headroom/retrieve/{hash}")),
        ok,
    )
    .await?;
    expect(
        target,
        "a retrieval of an unknown hash",
        &get("/v1/headroom/retrieve/0123456789abcdef"),
        |s| s == 404,
    )
    .await?;

    expect(
        target,
        "an unknown model",
        &post(chat_path, chat("mystery-model-9", false, false), &[]),
        ok,
    )
    .await?;
    expect(
        target,
        "a malformed body",
        &post(
            chat_path,
            b"{\"model\": \"gpt-4o-mini\", \"messages\": [".to_vec(),
            &[],
        ),
        ok,
    )
    .await?;
    expect(
        target,
        "an upstream hang-up",
        &post(
            chat_path,
            chat("gpt-4o-mini", false, false),
            &[(REPLY_HEADER, "hangup")],
        ),
        |s| s >= 500,
    )
    .await?;
    expect(target, "/stats", &get("/stats"), ok).await?;

    // Spend the budget, wait until the filter has recorded it, and be refused.
    expect(
        target,
        "a costly response",
        &post("/v1/messages", messages(false), &[(REPLY_HEADER, "costly")]),
        ok,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = send(target, "/stats", &get("/stats")).await?.json()?;
        if stats["budget"]["exceeded"] == true {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{name}: the budget was not spent: {}",
            stats["budget"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect(
        target,
        "a request over budget",
        &post(chat_path, chat("gpt-4o-mini", false, false), &[]),
        |s| s == 429,
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading an exposition

/// One metric family of a scrape.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Family {
    /// `# TYPE` (`untyped` when there is none).
    kind: String,
    /// Label names over all its samples.
    labels: BTreeSet<String>,
    /// Number of samples.
    samples: usize,
    /// Whether a sample is not zero.
    nonzero: bool,
}

/// A sample line: name, label names, value.
fn parse_sample(line: &str) -> Option<(String, Vec<String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let (mut key, mut in_value, mut escaped, mut end) = (String::new(), false, false, None);
        for (i, c) in rest.char_indices().skip(1) {
            if in_value {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_value = false;
                    labels.push(std::mem::take(&mut key));
                }
            } else {
                match c {
                    '}' => {
                        end = Some(i);
                        break;
                    }
                    '"' => in_value = true,
                    ',' | '=' | ' ' => {}
                    _ => key.push(c),
                }
            }
        }
        rest = &rest[end? + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The families of a text exposition, by name. Histogram and summary samples (`_bucket`,
/// `_sum`, `_count`) count under their family.
fn families(text: &str) -> Result<BTreeMap<String, Family>> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            out.entry(name.to_owned()).or_default().kind = kind.to_owned();
        }
    }
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value) =
            parse_sample(line).with_context(|| format!("unreadable sample line {line:?}"))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| {
                out.get(*base)
                    .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
            })
            .map(str::to_owned)
            .unwrap_or(name);
        let entry = out.entry(family).or_insert_with(|| Family {
            kind: "untyped".into(),
            ..Family::default()
        });
        entry.labels.extend(labels);
        entry.samples += 1;
        entry.nonzero |= value != 0.0;
    }
    Ok(out)
}

/// Every family the filter defines, from the filter's own catalogue (plugin/src/metrics.rs):
/// its Prometheus type and label names (labels travel in the proxy-wasm name as
/// `name.label.value…`; a histogram's buckets carry `le`).
fn filter_catalogue() -> BTreeMap<String, (&'static str, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (&'static str, BTreeSet<String>)> = BTreeMap::new();
    let mut add = |raw: &str, kind: &'static str| {
        let mut parts = raw.split('.');
        let name = parts.next().unwrap_or_default().to_owned();
        let labels: Vec<&str> = parts.collect();
        let entry = out.entry(name).or_insert((kind, BTreeSet::new()));
        entry
            .1
            .extend(labels.chunks(2).map(|pair| pair[0].to_owned()));
    };
    for counter in Counter::all() {
        add(&counter.name(), "counter");
    }
    add(&requests_by_model("gpt-4o-mini"), "counter");
    add(&requests_by_stack("wrap_claude"), "counter");
    for histogram in Histogram::ALL {
        add(&format!("{}.le.1", histogram.name()), "histogram");
        for gauge in histogram.extreme_names() {
            add(&gauge, "gauge");
        }
    }
    out
}

/// The filter's families in a scrape: `headroom_*` but the host-only ones.
fn filter_families(all: &BTreeMap<String, Family>) -> BTreeMap<String, Family> {
    all.iter()
        .filter(|(name, _)| {
            name.starts_with("headroom_") && !HOST_ONLY.iter().any(|(n, _)| n == name)
        })
        .map(|(n, f)| (n.clone(), f.clone()))
        .collect()
}

/// Families the traffic moves, in both hosts: the scrape is taken once each has a non-zero
/// sample. (Families the filter defines up front have samples from the start; those it defines
/// on first use, such as `headroom_requests_by_model`, appear only once moved.)
const MOVED: &[&str] = &[
    "headroom_inbound_requests_total",
    "headroom_requests_total",
    "headroom_requests_by_provider",
    "headroom_requests_by_model",
    "headroom_requests_by_stack",
    "headroom_requests_failed_total",
    "headroom_requests_cached_total",
    "headroom_fail_open_total",
    "headroom_bytes_saved_total",
    "headroom_tokens_saved_total",
    "headroom_tool_outputs_total",
    "headroom_retrievals_total",
    "headroom_tokens_input_total",
    "headroom_tokens_output_total",
    "headroom_usage_missing_total",
    "headroom_cache_read_tokens_total",
    "headroom_cache_write_tokens_total",
    "headroom_cache_write_ttl_tokens_total",
    "headroom_cache_write_ttl_requests_total",
    "headroom_uncached_input_tokens_total",
    "headroom_provider_cache_requests_total",
    "headroom_provider_cache_hit_requests_total",
    "headroom_cost_input_nanousd_total",
    "headroom_cost_output_nanousd_total",
    "headroom_compression_savings_nanousd_total",
    "headroom_cost_priced_requests_total",
    "headroom_cost_unknown_model_requests_total",
    "headroom_budget_rejected_total",
    "headroom_latency_ms",
    "headroom_ttfb_ms",
    "headroom_overhead_ms",
];

/// What `scrape` still lacks: a family of the filter's catalogue without samples, or one of
/// [`MOVED`] without a non-zero sample; empty when the traffic shows everywhere.
fn missing_samples(scrape: &str) -> Result<Vec<String>> {
    let all = families(scrape)?;
    let mut missing = Vec::new();
    let catalogue = filter_catalogue();
    let names: BTreeSet<&str> = catalogue
        .keys()
        .map(String::as_str)
        .chain(MOVED.iter().copied())
        .collect();
    for name in names {
        match all.get(name) {
            None => missing.push(format!("{name}: absent")),
            Some(f) if f.samples == 0 => missing.push(format!("{name}: no sample")),
            Some(f) if MOVED.contains(&name) && !f.nonzero => {
                missing.push(format!("{name}: every sample is 0"))
            }
            Some(_) => {}
        }
    }
    Ok(missing)
}

/// Scrapes `target` until every filter family has samples (metrics are recorded when an
/// exchange ends, Envoy's histograms at its next stats flush).
async fn settled_scrape(target: &impl Target) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = target.scrape().await?;
        let missing = missing_samples(&scrape)?;
        if missing.is_empty() {
            return Ok(scrape);
        }
        if Instant::now() > deadline {
            bail!(
                "{}: after the traffic, families without samples:\n  {}\n--- scrape\n{scrape}",
                target.name(),
                missing.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// promtool

/// `promtool check metrics` on `text` (stdin): exit code and everything it printed.
fn promtool(text: &str) -> Result<(Option<i32>, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "promtool is not installed: run scripts/test, or as root \
                     `apt-get install -y --no-install-recommends prometheus`"
                )
            } else {
                anyhow!("starting promtool: {e}")
            }
        })?;
    let mut stdin = child.stdin.take().context("promtool stdin")?;
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().context("running promtool")?;
    writer
        .join()
        .map_err(|_| anyhow!("writing to promtool panicked"))?
        .context("writing to promtool")?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code(), printed))
}

/// Runs promtool on the scrape of `scrape_name`; fails on a parse error or on a finding not
/// in [`ACCEPTED`]. Returns the findings as (family, text) and marks the entries used.
fn check_with_promtool(
    scrape_name: &str,
    text: &str,
    used: &mut [bool],
) -> Result<Vec<(String, String)>> {
    let (code, printed) = promtool(text)?;
    let known = families(text)?;
    let mut findings = Vec::new();
    let mut unexplained = Vec::new();
    for line in printed.lines().filter(|l| !l.trim().is_empty()) {
        // A lint finding is `<family> <text>`; anything else (a parse error, "error while
        // linting: …") is not accepted.
        let finding = line
            .split_once(' ')
            .filter(|(family, _)| known.contains_key(*family));
        let Some((family, finding)) = finding else {
            unexplained.push(line.to_owned());
            continue;
        };
        findings.push((family.to_owned(), finding.to_owned()));
        match ACCEPTED
            .iter()
            .position(|a| a.covers(scrape_name, family, finding))
        {
            Some(i) => used[i] = true,
            None => unexplained.push(line.to_owned()),
        }
    }
    // 0: clean; 3: lint findings only (promtool's lint exit code); anything else is an error.
    let code_ok = match code {
        Some(0) => findings.is_empty(),
        Some(3) => !findings.is_empty(),
        _ => false,
    };
    if !code_ok || !unexplained.is_empty() {
        bail!(
            "{scrape_name}: promtool check metrics exited {code:?}; not accepted:\n  {}\n\
             --- full promtool output\n{printed}",
            unexplained.join("\n  ")
        );
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// The test

/// A fresh temporary directory, removed when dropped.
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "headroom-prometheus-exposition-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run_host(upstream: &TestUpstream) -> Result<String> {
    let url = format!("http://{}", upstream.addr);
    // The binary as users run it, keeping its savings file and request database in a
    // directory of its own (removed afterwards) rather than in ~/.headroom.
    let state = StateDir::new()?;
    let dir = state.0.display().to_string();
    let savings = state.0.join("proxy_savings.json").display().to_string();
    let database = state.0.join("headroom.db").display().to_string();
    let host = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--plugin-config",
            PLUGIN_CONFIG,
            "--workers",
            "2",
        ],
        &[
            ("HEADROOM_WORKSPACE_DIR", dir.as_str()),
            ("HEADROOM_SAVINGS_PATH", savings.as_str()),
            ("HEADROOM_DB_PATH", database.as_str()),
        ],
    )?;
    let result = async {
        mixed_traffic(&host, upstream).await?;
        let metrics = get_from(host.addr(), "/metrics").await?;
        let content_type = metrics.header("content-type");
        ensure!(
            content_type.as_deref() == Some("text/plain; version=0.0.4; charset=utf-8"),
            "/metrics content type {content_type:?}"
        );
        settled_scrape(&host).await
    }
    .await;
    if result.is_err() {
        eprintln!("headroom log:\n{}", host.log().join("\n"));
    }
    result
}

async fn run_envoy(upstream: &TestUpstream) -> Result<String> {
    let envoy = EnvoyTarget::start(upstream.addr.port(), PLUGIN_CONFIG, 2).await?;
    let result = async {
        mixed_traffic(&envoy, upstream).await?;
        settled_scrape(&envoy).await
    }
    .await;
    envoy.explain(result)
}

fn describe(family: Option<&Family>) -> String {
    match family {
        None => "absent".into(),
        Some(f) => format!(
            "{} {{{}}}",
            f.kind,
            f.labels.iter().cloned().collect::<Vec<_>>().join(",")
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hosts_expose_the_same_valid_metrics() -> Result<()> {
    let started = Instant::now();
    // Fail early and clearly when promtool is missing (before starting anything).
    promtool("")?;

    let (host_upstream, envoy_upstream) =
        (TestUpstream::start().await?, TestUpstream::start().await?);
    let (host_scrape, envoy_scrape) =
        tokio::join!(run_host(&host_upstream), run_envoy(&envoy_upstream));
    let (host_scrape, envoy_scrape) = (host_scrape?, envoy_scrape?);

    // 1. Prometheus reads both scrapes; the only lint findings are the accepted ones.
    let mut used = vec![false; ACCEPTED.len()];
    let mut report = String::new();
    for (name, text) in [("headroom", &host_scrape), ("envoy", &envoy_scrape)] {
        let findings = check_with_promtool(name, text, &mut used)?;
        let ours: Vec<String> = findings
            .iter()
            .filter(|(family, _)| !family.starts_with("envoy_"))
            .map(|(family, finding)| format!("{family} {finding}"))
            .collect();
        report.push_str(&format!(
            "{name}: {} accepted promtool findings ({} on envoy_* families); on ours:\n  {}\n",
            findings.len(),
            findings.len() - ours.len(),
            ours.join("\n  ")
        ));
    }
    let stale: Vec<&str> = ACCEPTED
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(a, _)| a.reason)
        .collect();
    ensure!(
        stale.is_empty(),
        "accepted findings promtool no longer reports (remove them from ACCEPTED): {stale:?}"
    );

    // 2. The filter's families, with their types and label names, are the same in both.
    let host_all = families(&host_scrape)?;
    let envoy_all = families(&envoy_scrape)?;
    let unclassified: Vec<&String> = host_all
        .keys()
        .filter(|n| {
            !n.starts_with("headroom_")
                && !n.starts_with(HOST_PROCESS_PREFIX)
                && !HOST_ONLY.iter().any(|(h, _)| h == n)
        })
        .collect();
    ensure!(
        unclassified.is_empty(),
        "host families neither the filter's nor listed in HOST_ONLY: {unclassified:?}"
    );
    let missing_host_only: Vec<&str> = HOST_ONLY
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !host_all.contains_key(*n))
        .collect();
    ensure!(
        missing_host_only.is_empty(),
        "HOST_ONLY lists families the host does not have: {missing_host_only:?}"
    );
    let foreign: Vec<&String> = envoy_all
        .keys()
        .filter(|n| !n.starts_with("envoy_") && !n.starts_with("headroom_"))
        .collect();
    ensure!(
        foreign.is_empty(),
        "Envoy families neither envoy_* nor the filter's: {foreign:?}"
    );
    let host = filter_families(&host_all);
    let envoy = filter_families(&envoy_all);
    let names: BTreeSet<&String> = host.keys().chain(envoy.keys()).collect();
    let mut diff = Vec::new();
    for name in names {
        let (h, e) = (host.get(name), envoy.get(name));
        let same = match (h, e) {
            (Some(h), Some(e)) => h.kind == e.kind && h.labels == e.labels,
            _ => false,
        };
        if !same {
            diff.push(format!(
                "{name}\n    headroom: {}\n    envoy:    {}",
                describe(h),
                describe(e)
            ));
        }
    }
    ensure!(
        diff.is_empty(),
        "the filter's families differ between the hosts (a family only our host has belongs \
         in HOST_ONLY; a name Envoy renders differently needs its stats_tags):\n  {}",
        diff.join("\n  ")
    );
    // 3. Every family of the filter's catalogue is there, with its type and label names.
    // Families the filter defines on first use beyond the catalogue (labelled by an open-ended
    // value) need not be listed: step 2 has compared them between the hosts.
    let catalogue = filter_catalogue();
    let mut diff = Vec::new();
    for (name, (kind, labels)) in &catalogue {
        let scraped = host.get(name).map(|f| (f.kind.as_str(), &f.labels));
        if scraped != Some((*kind, labels)) {
            diff.push(format!(
                "{name}\n    scraped: {scraped:?}\n    filter:  {:?}",
                (kind, labels)
            ));
        }
    }
    ensure!(
        diff.is_empty(),
        "the scraped families differ from the filter's catalogue:\n  {}",
        diff.join("\n  ")
    );
    let beyond: Vec<&String> = host
        .keys()
        .filter(|n| !catalogue.contains_key(*n))
        .collect();
    report.push_str(&format!(
        "filter families beyond the catalogue (defined on first use): {beyond:?}\n"
    ));

    for accepted in ACCEPTED {
        report.push_str(&format!(
            "accepted in {:?}: {:?}: {}\n",
            accepted.scrapes, accepted.finding, accepted.reason
        ));
    }
    println!(
        "{report}{} filter families identical in both hosts; took {:.1} s",
        host.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
