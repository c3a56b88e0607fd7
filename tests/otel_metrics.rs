//! OTLP metrics from the real `headroom` binary to a real OTLP receiver (the official
//! `opentelemetry-proto` messages decode every export; `tests/support/otel/receiver.py`):
//!
//! - after OpenAI and Anthropic traffic, the seed's instruments (`headroom.proxy.*`,
//!   `headroom.compression.*`), the GenAI ones (`gen_ai.client.token.usage`,
//!   `gen_ai.client.operation.duration`) and the filter's own metrics (`headroom_*`, the names
//!   Envoy's stats sink sends) arrive with the right attributes, units, temporality and values,
//!   and agree with `/stats` and `/metrics`; the configured headers and resource attributes
//!   are sent, and no header value reaches the log;
//! - delta temporality reports what changed since the previous export;
//! - a collector that never answers delays no request, and the failures are counted.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::Process;
use headroom_tests::otel::{self, Receiver};
use headroom_tests::prom;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

const SECRET: &str = "otel-sekrit-4242";

fn anthropic_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hi"}]
    }))
    .unwrap_or_default()
}

async fn start(upstream: &Upstream, env: &[(&str, &str)]) -> Result<Process> {
    Process::stateless(upstream.addr(), env)
}

async fn post(proxy: &Process, path: &str, body: Vec<u8>) -> Result<()> {
    let response =
        client::send(proxy.addr(), &ClientRequest::post_json(path, body), |_| {}).await?;
    ensure!(response.status == 200, "{path}: {}", response.status);
    Ok(())
}

async fn get_json(proxy: &Process, path: &str) -> Result<Value> {
    client::send(proxy.addr(), &ClientRequest::get(path), |_| {})
        .await?
        .json()
}

async fn get_text(proxy: &Process, path: &str) -> Result<String> {
    let response = client::send(proxy.addr(), &ClientRequest::get(path), |_| {}).await?;
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

fn requests(export: &Value) -> f64 {
    otel::value(export, "headroom.proxy.requests", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_genai_and_filter_metrics_reach_a_real_receiver() -> Result<()> {
    let receiver = Receiver::start(false)?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let endpoint = format!("http://127.0.0.1:{}/v1/metrics", receiver.port());
    let headers = format!("authorization=Bearer {SECRET},x-tenant=acme");
    let proxy = start(
        &upstream,
        &[
            ("HEADROOM_OTEL_METRICS_ENABLED", "true"),
            ("HEADROOM_OTEL_METRICS_EXPORTER", "otlp_http"),
            ("HEADROOM_OTEL_METRICS_ENDPOINT", &endpoint),
            ("HEADROOM_OTEL_METRICS_HEADERS", &headers),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "300"),
            ("HEADROOM_OTEL_SERVICE_NAME", "headroom-otel-test"),
            (
                "HEADROOM_OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,team=llm",
            ),
        ],
    )
    .await?;

    post(
        &proxy,
        "/v1/chat/completions",
        corpus::agent_json_request(300, false),
    )
    .await?;
    post(&proxy, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    post(&proxy, "/v1/messages", anthropic_body()).await?;

    let got = receiver
        .wait_for(Duration::from_secs(30), |got| {
            got.last().is_some_and(|e| {
                requests(e) == 3.0 && otel::value(e, "headroom_requests_total", &[]) == 3.0
            })
        })
        .await?;
    let export = got.last().cloned().unwrap_or_default();

    // Transport: OTLP/HTTP protobuf to the configured path, with the configured headers.
    ensure!(
        export["content_type"] == "application/x-protobuf",
        "{export}"
    );
    ensure!(export["path"] == "/v1/metrics");
    ensure!(export["headers"]["authorization"] == format!("Bearer {SECRET}"));
    ensure!(export["headers"]["x-tenant"] == "acme");

    // Resource and scope.
    let resource = otel::resource(&export);
    ensure!(resource.get("service.name").map(String::as_str) == Some("headroom-otel-test"));
    ensure!(resource.get("deployment.environment").map(String::as_str) == Some("test"));
    ensure!(resource.get("team").map(String::as_str) == Some("llm"));
    ensure!(resource.contains_key("service.version"));
    ensure!(
        otel::metrics(&export)
            .iter()
            .all(|(scope, _)| scope == "headroom")
    );

    // The seed's request counter: attributes provider, model, cached; cumulative, monotonic.
    let m = otel::metric(&export, "headroom.proxy.requests").unwrap_or_default();
    ensure!(
        m["sum"]["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{m}"
    );
    ensure!(m["sum"]["is_monotonic"] == true);
    ensure!(m["unit"] == "1");
    let openai = [
        ("provider", "openai"),
        ("model", "gpt-4o-mini"),
        ("cached", "false"),
    ];
    ensure!(
        otel::value(&export, "headroom.proxy.requests", &openai) == 2.0,
        "{m}"
    );
    let anthropic = otel::points(&m)
        .into_iter()
        .find(|(a, _)| a.get("provider").map(String::as_str) == Some("anthropic"))
        .map(|(a, p)| (a, otel::number(&p)));
    let Some((anthropic_attrs, n)) = anthropic else {
        anyhow::bail!("no anthropic point: {m}")
    };
    ensure!(n == 1.0);
    let claude = anthropic_attrs.get("model").cloned().unwrap_or_default();
    ensure!(claude.starts_with("claude"), "{anthropic_attrs:?}");

    // Tokens: the upstream reports 12 input and 5 output tokens per answer.
    let v = |name: &str, want: &[(&str, &str)]| otel::value(&export, name, want);
    ensure!(v("headroom.proxy.tokens.input", &[("provider", "openai")]) == 24.0);
    ensure!(v("headroom.proxy.tokens.input", &[("provider", "anthropic")]) == 12.0);
    ensure!(v("headroom.proxy.tokens.output", &[]) == 15.0);
    let saved = v("headroom.proxy.tokens.saved", &[]);
    ensure!(saved > 0.0, "the JSON tool output was compressed");
    ensure!(
        v(
            "headroom.compression.tokens.saved",
            &[("provider", "openai")]
        ) == saved
    );
    ensure!(v("headroom.compression.runs", &[]) == 3.0);
    ensure!(v("headroom.compression.transforms", &[("provider", "openai")]) >= 1.0);
    ensure!(otel::hist_count(&export, "headroom.proxy.request.duration", &[]) == 3);
    let duration = otel::metric(&export, "headroom.proxy.request.duration").unwrap_or_default();
    ensure!(duration["unit"] == "s");
    ensure!(
        duration["histogram"]["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );

    // GenAI semantic conventions.
    let usage = otel::metric(&export, "gen_ai.client.token.usage").unwrap_or_default();
    ensure!(usage["unit"] == "{token}", "{usage}");
    let genai_openai = |t: &'static str| {
        [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.token.type", t),
        ]
    };
    ensure!(otel::hist_count(&export, "gen_ai.client.token.usage", &genai_openai("input")) == 2);
    ensure!(otel::value(&export, "gen_ai.client.token.usage", &genai_openai("input")) == 24.0);
    ensure!(
        otel::value(
            &export,
            "gen_ai.client.token.usage",
            &genai_openai("output")
        ) == 10.0
    );
    ensure!(
        otel::value(
            &export,
            "gen_ai.client.token.usage",
            &[
                ("gen_ai.provider.name", "anthropic"),
                ("gen_ai.token.type", "input")
            ]
        ) == 12.0
    );
    let op = otel::metric(&export, "gen_ai.client.operation.duration").unwrap_or_default();
    ensure!(op["unit"] == "s");
    ensure!(otel::hist_count(&export, "gen_ai.client.operation.duration", &[]) == 3);
    ensure!(
        otel::points(&op)
            .iter()
            .all(|(a, _)| !a.contains_key("error.type")),
        "every answer was a 200: {op}"
    );

    // The filter's own metrics, under the names Envoy's stats sink sends.
    ensure!(v("headroom_requests_by_provider", &[("provider", "openai")]) == 2.0);
    ensure!(v("headroom_tokens_saved_total", &[]) == saved);
    ensure!(otel::hist_count(&export, "headroom_latency_ms", &[]) == 3);

    // The same figures as /stats and /metrics.
    let stats = get_json(&proxy, "/stats").await?;
    ensure!(stats["requests"]["total"] == 3);
    ensure!(
        stats["tokens"]["input"].as_f64() == Some(36.0),
        "{}",
        stats["tokens"]
    );
    ensure!(stats["tokens"]["saved"].as_f64() == Some(saved));
    let scrape = prom::parse(&get_text(&proxy, "/metrics").await?);
    ensure!(scrape.get("headroom_tokens_input_total").copied() == Some(36.0));
    ensure!(scrape.get("headroom_tokens_saved_total").copied() == Some(saved));
    // `/stats.otel`: the host's block, served by the filter, in the seed's shape, no secret.
    {
        let block = stats.get("otel").context("no /stats.otel block")?;
        ensure!(
            block["configured"] == true && block["enabled"] == true,
            "{block}"
        );
        ensure!(block["service_name"] == "headroom-otel-test");
        ensure!(block["exporter"] == "otlp_http");
        ensure!(block["endpoint"] == endpoint.as_str());
        ensure!(block["resource_attributes"]["team"] == "llm");
        ensure!(!block.to_string().contains(SECRET));
    }
    ensure!(
        !proxy.log().iter().any(|l| l.contains(SECRET)),
        "a header value reached the log"
    );
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_reports_what_changed() -> Result<()> {
    let receiver = Receiver::start(false)?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let endpoint = format!("http://127.0.0.1:{}/v1/metrics", receiver.port());
    let proxy = start(
        &upstream,
        &[
            ("HEADROOM_OTEL_METRICS_ENABLED", "1"),
            ("HEADROOM_OTEL_METRICS_ENDPOINT", &endpoint),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "200"),
            ("HEADROOM_OTEL_METRICS_TEMPORALITY", "delta"),
        ],
    )
    .await?;
    post(&proxy, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    post(&proxy, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    let first = receiver
        .wait_for(Duration::from_secs(30), |got| {
            got.iter().any(|e| requests(e) > 0.0)
        })
        .await?;
    let seen = first.len();
    let reported: f64 = first.iter().map(requests).sum();
    ensure!(reported == 2.0, "{reported}");
    let m = first
        .iter()
        .find_map(|e| otel::metric(e, "headroom.proxy.requests"))
        .unwrap_or_default();
    ensure!(
        m["sum"]["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_DELTA",
        "{m}"
    );
    ensure!(
        otel::resource(&first[0])
            .get("service.name")
            .map(String::as_str)
            == Some("headroom-proxy")
    );

    // Exports with nothing new carry no request points; the next request is reported as 1.
    post(&proxy, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    let later = receiver
        .wait_for(Duration::from_secs(30), |got| {
            got[seen..].iter().map(requests).sum::<f64>() >= 1.0
        })
        .await?;
    let after: Vec<f64> = later[seen..].iter().map(requests).collect();
    ensure!(after.iter().sum::<f64>() == 1.0, "{after:?}");
    ensure!(after.iter().all(|n| *n == 0.0 || *n == 1.0));
    // Delta sums and histograms move together: three requests in all.
    let durations: u64 = later
        .iter()
        .map(|e| otel::hist_count(e, "gen_ai.client.operation.duration", &[]))
        .sum();
    ensure!(durations == 3, "{durations}");
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_delays_no_request() -> Result<()> {
    // Accepts connections and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = blackhole.local_addr()?.port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in blackhole.incoming().take(64).flatten() {
            open.push(stream);
        }
    });
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let endpoint = format!("http://127.0.0.1:{port}/v1/metrics");
    let proxy = start(
        &upstream,
        &[
            ("HEADROOM_OTEL_METRICS_ENABLED", "on"),
            ("HEADROOM_OTEL_METRICS_ENDPOINT", &endpoint),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "50"),
        ],
    )
    .await?;
    // An export is in flight (and stuck) for every request below.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for _ in 0..20 {
        post(&proxy, "/v1/chat/completions", corpus::tiny_chat(false)).await?;
    }
    let took = started.elapsed();
    ensure!(took < Duration::from_secs(5), "20 requests took {took:?}");
    let stats = get_json(&proxy, "/stats").await?;
    ensure!(stats["requests"]["total"] == 20);
    drop(proxy);
    drop(held);
    Ok(())
}
