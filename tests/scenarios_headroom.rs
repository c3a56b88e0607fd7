//! The scenario suite against the filter running in our host (`headroom`).

use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::scenario::{self, Target};
use headroom_tests::upstream::{Reply, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_the_headroom_host() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let host = InProcess::start(test_config(upstream.addr()))?;
    let mut failures = Vec::new();
    let scenarios = scenario::load_all()?;
    for (name, s) in &scenarios {
        if let Some(why) = s.skip.get(host.name()) {
            println!("skip {name}: {why}");
            continue;
        }
        match scenario::run(name, s, &host, &upstream).await {
            Ok(()) => println!("ok   {name}"),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n\n")
    );
    Ok(())
}
