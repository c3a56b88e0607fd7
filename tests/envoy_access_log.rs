//! The per-request record in Envoy: the filter sets it as filter state `wasm.headroom_record`
//! before the response ends, and the access-log configuration the README shows prints it as one
//! JSON line per provider request (requests without a record print nothing).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::{Envoy, EnvoyTarget, LocalConfig, plugin_wasm, render_local_config};
use headroom_tests::headroom::get;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::Value;

/// The README's access-log block, at the indentation of the template's
/// `http_connection_manager` `typed_config`.
fn access_log_block(path: &str) -> String {
    format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {path}
              log_format:
                text_format_source:
                  inline_string: "%FILTER_STATE(wasm.headroom_record:PLAIN)%\n"
            filter:
              extension_filter:
                name: envoy.access_loggers.extension_filters.cel
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                  expression: "'wasm.headroom_record' in filter_state"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_access_log_prints_one_record_per_provider_request() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("headroom-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log_path = dir.join("requests.jsonl");
    let _ = std::fs::remove_file(&log_path);
    let base = render_local_config(&LocalConfig {
        openai_upstream_port: upstream.addr().port(),
        anthropic_upstream_port: upstream.addr().port(),
        wasm_path: Some(plugin_wasm()?),
        ..LocalConfig::default()
    });
    let anchor = "          stat_prefix: headroom\n";
    ensure!(base.contains(anchor), "the template changed");
    let yaml = base.replacen(
        anchor,
        &format!(
            "{anchor}{}",
            access_log_block(log_path.to_str().context("path")?)
        ),
        1,
    );
    let envoy = Envoy::start_config(&yaml, 2, &["--file-flush-interval-msec", "100"]).await?;
    let target = EnvoyTarget(envoy);
    let run = async {
        let secret = "sk-access-log-secret-0000";
        let mut compressing = ClientRequest {
            method: "POST".into(),
            path: "/v1/chat/completions?api_key=query-secret".into(),
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                (
                    "authorization".into(),
                    format!("Bearer {secret}").into_bytes(),
                ),
            ],
            chunks: vec![corpus::agent_json_request(120, false)],
            ..ClientRequest::default()
        };
        let r = client::send(target.0.listener_addr, &compressing, |_| {}).await?;
        ensure!(r.status == 200, "status {}", r.status);
        compressing.chunks = vec![corpus::tiny_chat(true)];
        compressing.path = "/v1/chat/completions".into();
        let r = client::send(target.0.listener_addr, &compressing, |_| {}).await?;
        ensure!(r.status == 200, "status {}", r.status);
        ensure!(get(target.0.listener_addr, "/health").await?.status == 200);

        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.lines().count() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lines: Vec<&str> = text.lines().collect();
        ensure!(
            lines.len() == 2,
            "expected 2 records (not /health):\n{text}"
        );
        ensure!(
            !text.contains(secret) && !text.contains("query-secret"),
            "{text}"
        );
        let first: Value = serde_json::from_str(lines[0])?;
        let second: Value = serde_json::from_str(lines[1])?;
        ensure!(first["provider"] == "openai", "{first}");
        ensure!(first["path"] == "/v1/chat/completions", "{first}");
        ensure!(first["status"] == 200, "{first}");
        ensure!(first["tokens_saved"].as_u64() > Some(0), "{first}");
        ensure!(first["transforms"][0] == "json:select", "{first}");
        ensure!(first["input_tokens"] == 12, "{first}");
        ensure!(first["cost_usd"].as_f64() > Some(0.0), "{first}");
        ensure!(second["stream"] == true, "{second}");
        ensure!(second["output_tokens"] == 5, "{second}");
        Ok(())
    };
    let result = target.explain(run.await);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
