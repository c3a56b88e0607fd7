//! The scenario suite against the filter running in our host (`headroom`).

use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::scenario;
use headroom_tests::upstream::{Reply, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_the_headroom_host() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    scenario::run_all(&host, &upstream).await
}
