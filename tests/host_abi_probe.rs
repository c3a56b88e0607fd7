//! The host's ABI features the Headroom filter does not use yet — `http_call` to a named
//! cluster, ticks per root context, shared data across VMs, properties — tested against a real
//! module: the probe guest in `tests/guests/abi-probe`, built here for wasm32-wasip1.
//!
//! `proxy_set_shared_data` with a null value is checked in both hosts: Envoy 1.40 (with two
//! workers) and ours must answer the same — no delete, an empty value with a new token.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use headroom_tests::envoy::{Envoy, LocalConfig};
use headroom_tests::headroom::{InProcess, get, test_config};
use headroom_tests::upstream::{Reply, Upstream};

fn probe_wasm() -> anyhow::Result<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target/probe-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--locked",
            "-p",
            "abi-probe",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "wasm-release",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()?;
    anyhow::ensure!(status.success(), "building the probe guest failed");
    Ok(std::fs::read(
        target_dir.join("wasm32-wasip1/wasm-release/abi_probe.wasm"),
    )?)
}

fn text(body: Vec<u8>) -> String {
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_call_ticks_shared_data_and_properties_work() -> anyhow::Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_wasm = probe_wasm()?;
    let host = InProcess::start(config)?;
    let addr = host.proxy().local_addr();

    // http_call: dispatched after the guest call returns, answered through the response callback.
    let call = get(addr, "/probe/call").await?;
    let models = upstream.take_received();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].path, "/v1/models");
    let expected_bytes = headroom_tests::upstream::provider_reply(&models[0], Duration::ZERO)
        .chunks
        .concat()
        .len();
    assert_eq!(
        (call.status, text(call.body)),
        (200, format!("status=200 bytes={expected_bytes}"))
    );

    // Ticks: every 20 ms on each worker's root context, counted across VMs with CAS.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = text(get(addr, "/probe/ticks").await?.body);
    let n: u64 = first.trim_start_matches("ticks=").parse()?;
    assert!(n >= 10, "{first}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later: u64 = text(get(addr, "/probe/ticks").await?.body)
        .trim_start_matches("ticks=")
        .parse()?;
    assert!(later > n, "ticks stopped at {n}");

    // A null set keeps the key (empty value, new token), as in Envoy.
    let null_set = text(get(addr, "/probe/null-set").await?.body);
    assert_eq!(null_set, NULL_SET, "our host");

    // Properties.
    let props = get(addr, "/probe/properties").await?;
    assert_eq!(text(props.body), "path=/probe/properties plugin=headroom");

    // A filter that does not answer the probes: the host says it is alive but not ready.
    let ready = get(addr, "/readyz").await?;
    assert_eq!(ready.status, 503, "{}", text(ready.body.clone()));
    assert_eq!(ready.json()?["ready"], false);
    assert_eq!(get(addr, "/livez").await?.status, 200);
    Ok(())
}

/// What both hosts answer to `/probe/null-set`: the key is still there (a token, no bytes), the
/// token changed, and a write with the old token is a CAS mismatch.
const NULL_SET: &str = "before=v,cas after=none,cas bumped=true stale_cas_write=CasMismatch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_shared_data_set_in_envoy_keeps_the_key() -> anyhow::Result<()> {
    if headroom_tests::envoy::envoy_binary().is_err() {
        eprintln!("skipped: Envoy is not installed (envoy/install.sh)");
        return Ok(());
    }
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let wasm = std::env::temp_dir().join(format!("abi-probe-{}.wasm", std::process::id()));
    std::fs::write(&wasm, probe_wasm()?)?;
    let envoy = Envoy::start(
        LocalConfig {
            openai_upstream_port: upstream.addr().port(),
            anthropic_upstream_port: upstream.addr().port(),
            wasm_path: Some(wasm.clone()),
            ..LocalConfig::default()
        },
        2,
    )
    .await;
    let _ = std::fs::remove_file(&wasm);
    let envoy = envoy?;
    let null_set = text(get(envoy.listener_addr, "/probe/null-set").await?.body);
    assert_eq!(null_set, NULL_SET, "Envoy 1.40; log:\n{}", envoy.log_tail());
    Ok(())
}
