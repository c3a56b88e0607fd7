//! The worst case, as milliseconds per MB of body: the hostile bodies of issue 12
//! (`corpus::hostile_bodies`) through the pipeline natively, through `headroom` and through
//! Envoy 1.40 with the filter (one worker each, the replay map off so every request compresses
//! afresh), measured in interleaved rounds. What the filter adds is the host's time minus the
//! same request sent straight to the upstream.
//!
//! Run: `cargo build --release -p headroom-host && cargo bench --bench hostile` (Envoy is
//! installed by `envoy/install.sh`). `-- --rounds N` (default 3).

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use headroom_plugin::api::Api;
use headroom_plugin::pipeline::{MemoryHost, PipelineConfig, compress_request};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::Process;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};

const FILTER_CONFIG: &str = r#"{"replay_store_bytes":0}"#;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn per_mb(took: Duration, bytes: usize) -> f64 {
    took.as_secs_f64() * 1000.0 / (bytes as f64 / 1_000_000.0)
}

async fn post(addr: std::net::SocketAddr, body: &[u8]) -> Result<Duration> {
    let request = ClientRequest::post_json("/v1/messages", body.to_vec());
    let started = Instant::now();
    let response = client::send(addr, &request, |_| {}).await?;
    ensure!(response.status == 200, "status {}", response.status);
    Ok(started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3usize);
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let headroom = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--workers",
            "1",
            "--stateless",
            "--plugin-config",
            FILTER_CONFIG,
        ],
        &[],
    )?;
    let envoy = EnvoyTarget::start(upstream.addr().port(), FILTER_CONFIG, 1).await?;
    let config = PipelineConfig::default();
    println!(
        "| body | MB | native ms/MB | headroom ms/MB (added) | Envoy + filter ms/MB (added) |"
    );
    println!("|---|---|---|---|---|");
    for (name, body) in corpus::hostile_bodies() {
        let (mut native, mut direct, mut host, mut proxy) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let started = Instant::now();
            let outcome = compress_request(
                Api::AnthropicMessages,
                &body,
                &config,
                &mut MemoryHost::default(),
            );
            native.push(started.elapsed());
            ensure!(outcome.is_ok(), "{name}: native pipeline failed");
            direct.push(post(upstream.addr(), &body).await?);
            host.push(post(headroom.addr(), &body).await?);
            proxy.push(post(envoy.addr(), &body).await?);
            upstream.take_received();
        }
        let (native, direct, host, proxy) =
            (median(native), median(direct), median(host), median(proxy));
        let mb = body.len();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} ({:.1}) | {:.1} ({:.1}) |",
            mb as f64 / 1e6,
            per_mb(native, mb),
            per_mb(host, mb),
            per_mb(host.saturating_sub(direct), mb),
            per_mb(proxy, mb),
            per_mb(proxy.saturating_sub(direct), mb),
        );
    }
    Ok(())
}
