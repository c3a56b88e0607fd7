//! The scenario suite against the same filter in a real Envoy 1.40 (V8), with the same
//! assertions as in our host.

use std::net::SocketAddr;

use headroom_tests::envoy::{Envoy, LocalConfig, plugin_wasm};
use headroom_tests::scenario::{self, Target};
use headroom_tests::upstream::{Reply, Upstream};

struct EnvoyTarget(Envoy);

impl Target for EnvoyTarget {
    fn name(&self) -> &str {
        "envoy"
    }

    fn addr(&self) -> SocketAddr {
        self.0.listener_addr
    }

    async fn scrape(&self) -> anyhow::Result<String> {
        self.0.prometheus().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_envoy() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Default::default(),
    })
    .await?;
    let port = upstream.addr().port();
    let envoy = Envoy::start(
        LocalConfig {
            listener_port: 0,
            admin_port: 0,
            openai_upstream_port: port,
            anthropic_upstream_port: port,
            wasm_path: Some(plugin_wasm()?),
            plugin_config_json: "{}".into(),
        },
        2,
    )
    .await?;
    let target = EnvoyTarget(envoy);
    let result = scenario::run_all(&target, &upstream).await;
    if result.is_err() {
        eprintln!("Envoy log tail:\n{}", target.0.log_tail());
    }
    result
}
