//! `envoy/otel-stats-sink.yaml` in a real Envoy 1.40 (with the test bootstrap, two workers):
//! Envoy's `envoy.stat_sinks.open_telemetry` sends the filter's metrics over OTLP/HTTP to a real
//! receiver (the official `opentelemetry-proto` messages decode them) under the names `headroom`
//! exports, without the `wasmcustom.` namespace, labels as attributes, and with the values the
//! traffic implies; and every filter metric `headroom` exports for the same traffic arrives from
//! Envoy with the same name and kind.
//!
//! Needs Envoy (`envoy/install.sh`, or `HEADROOM_ENVOY`) and the receiver's Python packages
//! (`tests/support/otel/requirements.txt`, installed by `scripts/test`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::{Envoy, LocalConfig, plugin_wasm, repo_root};
use headroom_tests::headroom::Process;
use headroom_tests::otel::{self, Receiver};
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

/// The shipped overlay, pointed at the receiver.
fn overlay(port: u16) -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("envoy/otel-stats-sink.yaml"))?;
    ensure!(text.contains("http://127.0.0.1:4318/v1/metrics") && text.contains("port_value: 4318"));
    Ok(text
        .replace(
            "http://127.0.0.1:4318/v1/metrics",
            &format!("http://127.0.0.1:{port}/v1/metrics"),
        )
        .replace("port_value: 4318", &format!("port_value: {port}")))
}

fn anthropic_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]
    }))
    .unwrap_or_default()
}

async fn traffic(addr: std::net::SocketAddr) -> Result<()> {
    for (path, body) in [
        (
            "/v1/chat/completions",
            corpus::agent_json_request(300, false),
        ),
        ("/v1/chat/completions", corpus::tiny_chat(false)),
        ("/v1/messages", anthropic_body()),
    ] {
        let response = client::send(addr, &ClientRequest::post_json(path, body), |_| {}).await?;
        ensure!(response.status == 200, "{path}: {}", response.status);
    }
    Ok(())
}

/// `(name, kind)` of the filter's metrics in an export (`headroom_*`, the host's own
/// `headroom_host_*` left out); with `used`, only those with a non-zero point (Envoy's sink
/// sends only metrics that have been used; `headroom` sends every defined one).
fn filter_metrics(export: &Value, used: bool) -> BTreeSet<(String, String)> {
    otel::metrics(export)
        .into_iter()
        .filter_map(|(_, m)| {
            let name = m["name"].as_str()?.to_owned();
            let kind = otel::data(&m)?.0.to_owned();
            let nonzero = otel::points(&m).iter().any(|(_, p)| {
                if kind == "histogram" {
                    otel::count(p) > 0
                } else {
                    otel::number(p) != 0.0
                }
            });
            (name.starts_with("headroom_")
                && !name.starts_with("headroom_host_")
                && (nonzero || !used))
                .then_some((name, kind))
        })
        .collect()
}

#[test]
fn every_declared_filter_metric_has_a_conversion() -> Result<()> {
    let overlay = std::fs::read_to_string(repo_root().join("envoy/otel-stats-sink.yaml"))?;
    let source = std::fs::read_to_string(repo_root().join("plugin/src/metrics.rs"))?;
    let mut missing = Vec::new();
    for name in source.split('"').skip(1).step_by(2).filter(|s| {
        s.starts_with("headroom_") && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        if !overlay.contains(&format!("metric_name: {name}}}")) {
            missing.push(name.to_owned());
        }
    }
    ensure!(missing.is_empty(), "no conversion for {missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_otel_sink_sends_the_filters_metrics_under_the_hosts_names() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let port = upstream.addr().port();

    // Envoy with the overlay.
    let from_envoy = Receiver::start(false)?;
    let opts = LocalConfig {
        openai_upstream_port: port,
        anthropic_upstream_port: port,
        wasm_path: Some(plugin_wasm()?),
        ..LocalConfig::default()
    };
    let overlay = overlay(from_envoy.port())?;
    let envoy = Envoy::start_with_args(opts, 2, &["--config-yaml", &overlay]).await?;
    traffic(envoy.listener_addr).await?;
    let got = from_envoy
        .wait_for(Duration::from_secs(60), |got| {
            got.last()
                .is_some_and(|e| otel::value(e, "headroom_requests_total", &[]) == 3.0)
        })
        .await
        .with_context(|| envoy.log_tail())?;
    let export = got.last().cloned().unwrap_or_default();
    ensure!(
        export["content_type"] == "application/x-protobuf",
        "{}",
        export["content_type"]
    );

    let names: Vec<String> = otel::metrics(&export)
        .into_iter()
        .filter_map(|(_, m)| m["name"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !names.iter().any(|n| n.contains("wasmcustom")),
        "a metric kept the wasmcustom namespace: {:?}",
        names
            .iter()
            .filter(|n| n.contains("wasmcustom"))
            .collect::<Vec<_>>()
    );
    let requests = otel::metric(&export, "headroom_requests_total").context("requests")?;
    ensure!(requests["sum"]["is_monotonic"] == true, "{requests}");
    ensure!(
        requests["sum"]["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{requests}"
    );
    let v = |name: &str, want: &[(&str, &str)]| otel::value(&export, name, want);
    ensure!(v("headroom_requests_by_provider", &[("provider", "openai")]) == 2.0);
    ensure!(
        v(
            "headroom_requests_by_provider",
            &[("provider", "anthropic")]
        ) == 1.0
    );
    ensure!(v("headroom_requests_by_model", &[("model", "gpt-4o-mini")]) == 2.0);
    ensure!(v("headroom_tokens_input_total", &[]) == 36.0);
    ensure!(v("headroom_tokens_output_total", &[]) == 15.0);
    ensure!(v("headroom_tokens_saved_total", &[]) > 0.0);
    let envoy_saved = v("headroom_tokens_saved_total", &[]);
    ensure!(otel::hist_count(&export, "headroom_latency_ms", &[]) == 3);
    let envoy_metrics = filter_metrics(&export, false);
    drop(envoy);

    // The same traffic through headroom, exporting to its own receiver.
    let from_host = Receiver::start(false)?;
    let endpoint = format!("http://127.0.0.1:{}/v1/metrics", from_host.port());
    let url = format!("http://{}", upstream.addr());
    let proxy = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--stateless",
        ],
        &[
            ("HEADROOM_OTEL_METRICS_ENABLED", "1"),
            ("HEADROOM_OTEL_METRICS_ENDPOINT", &endpoint),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "300"),
        ],
    )?;
    traffic(proxy.addr()).await?;
    let got = from_host
        .wait_for(Duration::from_secs(30), |got| {
            got.last()
                .is_some_and(|e| otel::value(e, "headroom_requests_total", &[]) == 3.0)
        })
        .await?;
    let host_export = got.last().cloned().unwrap_or_default();
    ensure!(otel::value(&host_export, "headroom_tokens_saved_total", &[]) == envoy_saved);
    // Every metric from Envoy is one headroom sends, with the same kind; every one the traffic
    // moved in headroom came from Envoy too.
    let host_metrics = filter_metrics(&host_export, false);
    let only_envoy: Vec<_> = envoy_metrics.difference(&host_metrics).collect();
    ensure!(only_envoy.is_empty(), "only from Envoy: {only_envoy:?}");
    let host_used = filter_metrics(&host_export, true);
    let missing: Vec<_> = host_used.difference(&envoy_metrics).collect();
    ensure!(
        missing.is_empty(),
        "moved in headroom, not sent by Envoy: {missing:?}"
    );
    ensure!(host_used.len() >= 15, "{host_used:?}");
    drop(proxy);
    Ok(())
}
