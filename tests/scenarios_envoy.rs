//! The scenario suite against the same filter in a real Envoy 1.40 (V8), with the same
//! assertions as in our host.

use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::scenario;
use headroom_tests::upstream::{Reply, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_envoy() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    target.explain(scenario::run_all(&target, &upstream).await)
}
