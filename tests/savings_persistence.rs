//! The durable savings ledger through the real `headroom` binary: a restart keeps every figure,
//! SIGKILL during load never leaves an unreadable file and loses at most the last second,
//! corrupt files are moved aside, the Python proxy's file is imported, stateless mode writes
//! nothing; and `/stats-history` (JSON and CSV) is served by the filter in Envoy too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use headroom_plugin::savings::file;
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{Process, get};
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::Value;

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "headroom-savings-test-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Starts the binary with its savings file (and request database) in `dir`.
fn start(upstream: &Upstream, dir: &Path, extra_env: &[(&str, &str)]) -> Result<Process> {
    let url = format!("http://{}", upstream.addr());
    let savings = dir.join("proxy_savings.json");
    let db = dir.join("headroom.db");
    let mut env = vec![
        ("HEADROOM_SAVINGS_PATH", savings.to_str().context("path")?),
        ("HEADROOM_DB_PATH", db.to_str().context("path")?),
    ];
    env.extend_from_slice(extra_env);
    Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--workers",
            "2",
        ],
        &env,
    )
}

/// An OpenAI agent request whose tool output the pipeline compresses; `n` varies the content.
fn compressing(n: usize) -> ClientRequest {
    ClientRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![corpus::agent_json_request(40 + n, false)],
        ..ClientRequest::default()
    }
}

async fn json(target: &impl Target, path: &str) -> Result<Value> {
    let response = get(target.addr(), path).await?;
    ensure!(response.status == 200, "{path}: {}", response.status);
    response.json()
}

/// Waits until `/stats-history` reports `requests` lifetime requests.
async fn wait_requests(target: &impl Target, requests: u64) -> Result<Value> {
    for _ in 0..200 {
        let doc = json(target, "/stats-history?history_mode=full").await?;
        if doc["lifetime"]["requests"].as_u64() == Some(requests) {
            return Ok(doc);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("lifetime requests never reached {requests}")
}

/// The parts of a `/stats-history` document that must survive a restart.
fn durable(doc: &Value) -> Value {
    serde_json::json!({
        "lifetime": doc["lifetime"],
        "history": doc["history"],
        "series": doc["series"],
        "projects": doc["projects"],
    })
}

fn stop(mut proxy: Process) -> Result<()> {
    let status = proxy.signal_and_wait(SIGTERM, Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "exit {status}: {}",
        proxy.log().join("\n")
    );
    Ok(())
}

fn read_file(dir: &Path) -> Result<file::Loaded> {
    let bytes = std::fs::read(dir.join("proxy_savings.json"))?;
    file::load(&bytes).map_err(|e| anyhow::anyhow!("unreadable savings file: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_figure() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("restart")?;
    let proxy = start(&upstream, &dir, &[])?;
    for n in 0..4 {
        let mut request = compressing(n);
        if n % 2 == 0 {
            request
                .headers
                .push(("x-headroom-project".into(), b"web%20app".to_vec()));
        }
        let response = client::send(proxy.addr(), &request, |_| {}).await?;
        ensure!(response.status == 200, "status {}", response.status);
    }
    let tiny = ClientRequest {
        chunks: vec![corpus::tiny_chat(false)],
        ..compressing(0)
    };
    client::send(proxy.addr(), &tiny, |_| {}).await?;
    let before = wait_requests(&proxy, 5).await?;
    ensure!(
        before["history"].as_array().map(Vec::len) == Some(4),
        "one checkpoint per request that saved tokens: {before}"
    );
    ensure!(before["lifetime"]["tokens_saved"].as_u64() > Some(0));
    ensure!(before["projects"]["web app"]["requests"] == 2, "{before}");
    for upstream_saw in upstream.take_received() {
        ensure!(
            upstream_saw.header("x-headroom-project").is_none(),
            "the project header went upstream"
        );
    }
    stop(proxy)?;

    let on_disk = read_file(&dir)?;
    ensure!(on_disk.schema_version == Some(3));
    ensure!(on_disk.ledger.head.lifetime.requests == 5);

    let proxy = start(&upstream, &dir, &[])?;
    let after = json(&proxy, "/stats-history?history_mode=full").await?;
    ensure!(
        durable(&after) == durable(&before),
        "before: {}\nafter: {}",
        durable(&before),
        durable(&after)
    );
    let stats = json(&proxy, "/stats").await?;
    ensure!(
        stats["persistent_savings"]["lifetime"] == before["lifetime"],
        "{}",
        stats["persistent_savings"]
    );
    ensure!(stats["persistent_savings"]["history_points"] == 4);
    // The persistent counters start from the restored ledger, once per process (2 VMs here).
    let scrape = String::from_utf8(get(proxy.addr(), "/metrics").await?.body)?;
    ensure!(
        scrape.contains("\nheadroom_persistent_savings_requests_total 5\n"),
        "{scrape}"
    );
    let saved = before["lifetime"]["tokens_saved"].as_u64().unwrap_or(0);
    ensure!(
        scrape.contains(&format!(
            "\nheadroom_persistent_savings_tokens_saved_total {saved}\n"
        )),
        "{scrape}"
    );

    let csv = get(proxy.addr(), "/stats-history?format=csv&series=daily").await?;
    ensure!(csv.status == 200);
    ensure!(csv.header("content-type").as_deref() == Some("text/csv; charset=utf-8"));
    ensure!(
        csv.header("content-disposition").as_deref()
            == Some("attachment; filename=\"headroom-stats-history-daily.csv\"")
    );
    let text = String::from_utf8(csv.body)?;
    let rows = after["series"]["daily"].as_array().map_or(0, Vec::len);
    ensure!(text.matches("\r\n").count() == rows + 1, "{text}");
    ensure!(text.starts_with("timestamp,tokens_saved,compression_savings_usd_delta,"));

    let bad = get(proxy.addr(), "/stats-history?series=yearly&format=csv").await?;
    ensure!(bad.status == 400, "{}", bad.status);
    let error = bad.json()?;
    ensure!(error["error"]["param"] == "series", "{error}");
    ensure!(
        error["error"]["allowed"]
            == serde_json::json!(["history", "hourly", "daily", "weekly", "monthly"]),
        "{error}"
    );
    stop(proxy)?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_never_corrupts_and_loses_at_most_a_second() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("sigkill")?;
    let mut on_disk = 0usize;
    let mut acknowledged_total = 0usize;
    let mut worst_lag = Duration::ZERO;
    for round in 0..50u64 {
        let mut proxy = start(&upstream, &dir, &[])?;
        let addr = proxy.addr();
        let done = Arc::new(Mutex::new(Vec::new()));
        let sink = done.clone();
        let load = tokio::spawn(async move {
            for n in 0.. {
                let request = compressing((n % 7) as usize);
                match client::send(addr, &request, |_| {}).await {
                    Ok(r) if r.status == 200 => sink
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Instant::now()),
                    _ => break,
                }
            }
        });
        // Kill at a different moment of the write cycle every round (0.6 to 1.5 s in).
        tokio::time::sleep(Duration::from_millis(600 + (round * 37) % 900)).await;
        let killed_at = Instant::now();
        tokio::task::spawn_blocking(move || {
            proxy.signal_and_wait(SIGKILL, Duration::from_secs(10))
        })
        .await??;
        load.abort();
        let _ = load.await;
        let acknowledged: Vec<Instant> = done.lock().unwrap_or_else(|p| p.into_inner()).clone();
        acknowledged_total += acknowledged.len();

        let loaded = read_file(&dir).with_context(|| format!("round {round}"))?;
        let recorded = loaded.ledger.head.lifetime.requests as usize - on_disk;
        // Every request of this round acknowledged more than a second before the kill is on
        // disk; at most the one in flight at the kill is there unacknowledged.
        let old_enough = acknowledged
            .iter()
            .filter(|t| killed_at.duration_since(**t) > Duration::from_secs(1))
            .count();
        ensure!(
            recorded >= old_enough,
            "round {round}: {recorded} on disk, {old_enough} acknowledged over a second before the kill"
        );
        ensure!(
            recorded <= acknowledged.len() + 1,
            "round {round}: {recorded} recorded of {} acknowledged",
            acknowledged.len()
        );
        if recorded < acknowledged.len() {
            let oldest_lost = acknowledged[recorded];
            worst_lag = worst_lag.max(killed_at.duration_since(oldest_lost));
        }
        on_disk += recorded;
        let leftovers: Vec<String> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-"))
            .collect();
        ensure!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
    eprintln!(
        "50 SIGKILLs: {acknowledged_total} requests acknowledged, {on_disk} on disk; the oldest one lost was {worst_lag:?} old at its kill"
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_files_are_moved_aside_and_the_proxy_starts() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let peer = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plugin/tests/data/peer_proxy_savings.json"
    ))?;
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", peer[..peer.len() / 3].to_vec()),
        ("empty", Vec::new()),
        (
            "invalid utf-8",
            b"{\"lifetime\": {\"requests\": 1}, \"x\": \"\xff\xfe\"}".to_vec(),
        ),
        (
            "wrong schema",
            br#"{"schema_version":3,"history":{"a":1}}"#.to_vec(),
        ),
        ("random bytes", random),
    ];
    for (name, bytes) in cases {
        let dir = temp_dir("corrupt")?;
        std::fs::write(dir.join("proxy_savings.json"), &bytes)?;
        let proxy = start(&upstream, &dir, &[])?;
        let stats = json(&proxy, "/stats").await?;
        let storage = &stats["persistent_savings"]["storage"];
        let moved = storage["corrupt_file_moved_to"]
            .as_str()
            .with_context(|| format!("{name}: not moved aside: {storage}"))?;
        ensure!(
            std::fs::read(moved)? == bytes,
            "{name}: the moved file changed"
        );
        ensure!(storage["load_error"].is_string(), "{name}: {storage}");
        ensure!(
            proxy
                .log()
                .iter()
                .any(|l| l.contains("WARN") && l.contains("moved aside")),
            "{name}: not logged"
        );
        ensure!(stats["persistent_savings"]["lifetime"]["requests"] == 0);
        client::send(proxy.addr(), &compressing(1), |_| {}).await?;
        wait_requests(&proxy, 1).await?;
        stop(proxy)?;
        let loaded = read_file(&dir).with_context(|| name.to_owned())?;
        ensure!(loaded.ledger.head.lifetime.requests == 1, "{name}");
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_proxys_file_is_imported() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("import")?;
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plugin/tests/data/peer_proxy_savings.json"
        ),
        dir.join("proxy_savings.json"),
    )?;
    let proxy = start(&upstream, &dir, &[])?;
    let doc = json(&proxy, "/stats-history").await?;
    ensure!(doc["lifetime"]["requests"] == 11, "{}", doc["lifetime"]);
    ensure!(doc["lifetime"]["tokens_saved"] == 166_893);
    ensure!(doc["lifetime"]["compression_savings_usd"] == 0.542041);
    ensure!(doc["history"].as_array().map(Vec::len) == Some(6));
    ensure!(doc["storage"]["imported_schema"] == 6, "{}", doc["storage"]);
    ensure!(doc["series"]["daily"][0]["timestamp"] == "2026-11-27T00:00:00Z");

    client::send(proxy.addr(), &compressing(3), |_| {}).await?;
    wait_requests(&proxy, 12).await?;
    stop(proxy)?;
    let loaded = read_file(&dir)?;
    ensure!(loaded.schema_version == Some(3));
    ensure!(loaded.ledger.head.lifetime.requests == 12);
    ensure!(loaded.ledger.head.lifetime.tokens_saved > 166_893);
    ensure!(loaded.ledger.history.len() == 7);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_writes_nothing() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let dir = temp_dir("stateless")?;
    let proxy = start(&upstream, &dir, &[("HEADROOM_STATELESS", "yes")])?;
    client::send(proxy.addr(), &compressing(2), |_| {}).await?;
    let doc = wait_requests(&proxy, 1).await?;
    ensure!(doc["storage"]["stateless"] == true, "{}", doc["storage"]);
    stop(proxy)?;
    let files: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(files.is_empty(), "stateless left {files:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_history_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?;
    let run = async {
        for n in 0..3 {
            let r = client::send(target.addr(), &compressing(n), |_| {}).await?;
            ensure!(r.status == 200, "status {}", r.status);
        }
        let doc = wait_requests(&target, 3).await?;
        ensure!(doc["history"].as_array().map(Vec::len) == Some(3), "{doc}");
        ensure!(doc["storage_path"].is_null(), "Envoy keeps no file");
        ensure!(doc["series"]["hourly"].as_array().map(Vec::len) >= Some(1));
        let csv = get(target.addr(), "/stats-history?format=csv").await?;
        ensure!(csv.status == 200);
        ensure!(String::from_utf8(csv.body)?.matches("\r\n").count() == 4);
        let stats = json(&target, "/stats").await?;
        ensure!(stats["persistent_savings"]["history_points"] == 3);
        ensure!(stats["savings_history"].as_array().map(Vec::len) == Some(3));
        Ok(())
    };
    target.explain(run.await)
}
