//! Bodies anyone can send (the filter runs before any authentication) that used to hold a
//! worker for seconds to minutes (DESIGN.md decision 10), through `headroom` and through Envoy
//! 1.40, each with ONE worker so a `/health` probe shares the worker with the hostile request:
//! every request is answered 200 with the original or a valid compressed body forwarded, the
//! host never traps (its per-call wall-time limit is 10 s), and `/health` keeps answering.
//! `headroom` runs them twice: with its default call limit, and with none
//! (`--vm-call-timeout-ms 0`), where only the filter's own bounds stand between a hostile body
//! and the worker, as in Envoy.
//!
//! Speed is not asserted here (BENCHMARKS.md measures it); the client gives each request 60 s
//! only so that a regression fails instead of hanging the suite.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use headroom_host::proxy::ProxyConfig;
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};

/// Probes `/health` on `addr` every 100 ms until `stop`, returning how many answered 200 and
/// the longest wait.
async fn probe_health(
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Duration) {
    let (mut ok, mut longest) = (0, Duration::ZERO);
    while !*stop.borrow() {
        let started = Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(60),
            client::send(addr, &ClientRequest::get("/health"), |_| {}),
        )
        .await;
        if matches!(answered, Ok(Ok(ref r)) if r.status == 200) {
            ok += 1;
        }
        longest = longest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, longest)
}

async fn survives(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name().to_owned();
    for (what, body) in corpus::hostile_bodies() {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let probe = tokio::spawn(probe_health(target.addr(), stop_rx));
        let request = ClientRequest::post_json("/v1/messages", body.clone());
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            client::send(target.addr(), &request, |_| {}),
        )
        .await
        .with_context(|| format!("{name}: {what}: no answer within 60 s"))??;
        let took = started.elapsed();
        let _ = stop_tx.send(true);
        let (health_ok, health_longest) = probe.await?;
        eprintln!(
            "{name}: {what}: {} bytes answered in {took:?}; /health answered {health_ok} times, longest wait {health_longest:?}",
            body.len()
        );
        ensure!(
            response.status == 200,
            "{name}: {what}: status {}",
            response.status
        );
        let received = upstream.take_received();
        ensure!(
            received.len() == 1,
            "{name}: {what}: {} upstream requests",
            received.len()
        );
        let sent = &received[0].body;
        ensure!(
            *sent == body || serde_json::from_slice::<serde_json::Value>(sent).is_ok(),
            "{name}: {what}: the upstream got neither the original nor valid JSON"
        );
        let after = client::send(target.addr(), &ClientRequest::get("/health"), |_| {}).await?;
        ensure!(
            after.status == 200,
            "{name}: {what}: /health {}",
            after.status
        );
        ensure!(
            health_ok >= 1,
            "{name}: {what}: /health never answered during the request"
        );
        // The host traps a filter call that exceeds its CPU or memory limit (Envoy has no
        // such counter: its worker would simply have been held).
        let scrape = prom::parse(&target.scrape().await?);
        let traps = prom::delta(&prom::parse(""), &scrape, "headroom_host_vm_traps_total");
        ensure!(traps == 0.0, "{name}: {what}: {traps} VM traps");
    }
    Ok(())
}

/// Runs the hostile bodies through a one-worker `headroom`, its configuration adjusted by
/// `adjust`.
async fn hostile_bodies_through_headroom_with(adjust: impl FnOnce(&mut ProxyConfig)) -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.workers = 1;
    adjust(&mut config);
    let host = InProcess::start(config)?;
    survives(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_through_headroom() -> Result<()> {
    hostile_bodies_through_headroom_with(|config| {
        assert!(
            config.vm_limits.call_timeout.is_some(),
            "a call limit by default"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_through_headroom_without_call_limit() -> Result<()> {
    hostile_bodies_through_headroom_with(|config| config.vm_limits.call_timeout = None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_through_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::ZERO,
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 1).await?;
    let result = survives(&target, &upstream).await;
    target.explain(result)
}
