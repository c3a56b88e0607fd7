//! `dashboards/headroom.json` against a real Prometheus (the Debian package `prometheus`)
//! scraping the real `headroom` binary after real traffic:
//!
//! - the dashboard imports by the UI and by file provisioning alike: a `datasource` template
//!   variable (no `__inputs` / `${DS_…}`), every panel and query on it, unique panel ids;
//! - every metric it names is declared by the filter (`plugin/src/metrics.rs`);
//! - every PromQL expression, with Grafana's variables substituted, parses and returns a
//!   non-empty result through Prometheus's HTTP API, and the headline figures are positive.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::Process;
use headroom_tests::upstream::{Reply, Scripted, Upstream};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> Result<Value> {
    let text = std::fs::read_to_string(root().join("dashboards/headroom.json"))?;
    Ok(serde_json::from_str(&text)?)
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        for nested in p["panels"].as_array().into_iter().flatten() {
            out.push(nested.clone());
        }
    }
    out
}

/// Every PromQL expression of the dashboard, with its panel's title.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or_default().to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    out
}

/// The metric names an expression uses (`headroom_…` identifiers).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("headroom_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The metric names the filter declares: every `"headroom_…"` string of its metrics module,
/// and the `_min` / `_max` gauges of its timing histograms.
fn declared() -> Result<BTreeSet<String>> {
    let source = std::fs::read_to_string(root().join("plugin/src/metrics.rs"))?;
    let mut names = BTreeSet::new();
    for piece in source.split('"').skip(1).step_by(2) {
        if piece.starts_with("headroom_")
            && piece.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            names.insert(piece.to_owned());
        }
    }
    for h in [
        "headroom_latency_ms",
        "headroom_ttfb_ms",
        "headroom_overhead_ms",
    ] {
        ensure!(names.contains(h), "{h} is no longer declared");
        names.insert(format!("{h}_min"));
        names.insert(format!("{h}_max"));
    }
    Ok(names)
}

fn is_declared(name: &str, declared: &BTreeSet<String>) -> bool {
    declared.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| declared.contains(base))
        })
}

/// Grafana's variables as a dashboard viewer would have them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "10m")
        .replace("$__interval", "15s")
        .replace("$job", ".*")
}

#[test]
fn the_dashboard_imports_and_names_only_declared_metrics() -> Result<()> {
    let dash = dashboard()?;
    ensure!(
        dash.get("__inputs").is_none(),
        "no ${{DS_…}} inputs: provisioning cannot fill them"
    );
    ensure!(
        !dash.to_string().contains("${DS_"),
        "no ${{DS_…}} references"
    );
    ensure!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = dash["templating"]["list"]
        .as_array()
        .context("templating")?;
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .context("a datasource variable")?;
    ensure!(ds["query"] == "prometheus");
    let ds_ref = json!({"type": "prometheus", "uid": format!("${{{}}}", ds["name"].as_str().unwrap_or_default())});
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        ensure!(
            ids.insert(p["id"].as_u64().context("panel id")?),
            "duplicate id {}",
            p["id"]
        );
        let grid = &p["gridPos"];
        ensure!(
            grid["x"].as_u64().unwrap_or(99) + grid["w"].as_u64().unwrap_or(99) <= 24,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        ensure!(
            p["datasource"] == ds_ref,
            "{}: {}",
            p["title"],
            p["datasource"]
        );
        let targets = p["targets"].as_array().context("targets")?;
        ensure!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            ensure!(t["datasource"] == ds_ref, "{}", p["title"]);
        }
    }
    let declared = declared()?;
    let mut used = BTreeSet::new();
    for (title, expr) in expressions(&dash) {
        for name in metric_names(&expr) {
            ensure!(
                is_declared(&name, &declared),
                "{title}: {name} is not a metric the filter declares"
            );
            used.insert(name);
        }
    }
    ensure!(used.len() >= 30, "{used:?}");
    Ok(())
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A real Prometheus; killed by PID when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "headroom-prometheus-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: headroom\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = free_port()?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting prometheus (Debian package `prometheus`; scripts/test installs it)",
            )?;
        Ok(Self { child, port, dir })
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse()?;
        let response = client::send(addr, &ClientRequest::get(path), |_| {}).await?;
        let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok((response.status, body))
    }

    /// An instant query's result (an error when Prometheus refuses the expression).
    async fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", encode(expr)))
            .await?;
        if status != 200 || body["status"] != "success" {
            bail!("{status}: {body}");
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An Anthropic answer that reads 40 and writes 60 prompt-cache tokens (10 for 5 minutes, 50
/// for an hour).
fn anthropic_cache_reply() -> Scripted {
    let body = json!({
        "id": "msg_cache", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 40,
                  "cache_creation_input_tokens": 60,
                  "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 50}}
    });
    Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![body.to_string().into_bytes()],
        chunk_delay: Duration::ZERO,
        lockstep: false,
    }
}

async fn send(proxy: &Process, path: &str, body: Vec<u8>, stack: Option<&str>) -> Result<u16> {
    let mut request = ClientRequest::post_json(path, body);
    if let Some(stack) = stack {
        request
            .headers
            .push(("x-headroom-stack".into(), stack.as_bytes().to_vec()));
    }
    Ok(client::send(proxy.addr(), &request, |_| {}).await?.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() -> Result<()> {
    let dash = dashboard()?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let proxy = Process::start(
        &[
            "--openai-api-url",
            &url,
            "--anthropic-api-url",
            &url,
            "--stateless",
            "--budget",
            "100",
        ],
        &[],
    )?;
    let prometheus = Prometheus::start(proxy.addr())?;

    // Wait for Prometheus and its first scrapes, so the traffic below shows up in rates.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(result) = prometheus.query(r#"up{job="headroom"}"#).await
            && result.first().is_some_and(|r| r["value"][1] == "1")
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "prometheus never scraped headroom"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Traffic: OpenAI chat (one with a large JSON tool output that compresses), per stack;
    // Anthropic answers with prompt-cache reads and writes in both TTL buckets (twice: the
    // second is a provider cache bust); a body that is not JSON (fails open).
    for stack in ["wrap_claude", "adapter_py_openai"] {
        ensure!(
            send(
                &proxy,
                "/v1/chat/completions",
                corpus::agent_json_request(300, false),
                Some(stack)
            )
            .await?
                == 200
        );
        ensure!(
            send(
                &proxy,
                "/v1/chat/completions",
                corpus::tiny_chat(false),
                Some(stack)
            )
            .await?
                == 200
        );
    }
    upstream.set_reply(Reply::Scripted(anthropic_cache_reply()));
    let messages = serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]
    }))?;
    for _ in 0..2 {
        ensure!(send(&proxy, "/v1/messages", messages.clone(), None).await? == 200);
    }
    upstream.set_reply(Reply::Provider {
        chunk_delay: Duration::ZERO,
    });
    send(&proxy, "/v1/chat/completions", b"{not json".to_vec(), None).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut failures = Vec::new();
    for (title, expr) in expressions(&dash) {
        let query = substitute(&expr);
        match prometheus.query(&query).await {
            Ok(result) if result.is_empty() => failures.push(format!("{title}: empty: {query}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{title}: {e}: {query}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} queries failed:\n{}",
        failures.len(),
        expressions(&dash).len(),
        failures.join("\n")
    );

    // The headline figures hold what the traffic implies.
    let value = |result: &[Value]| -> f64 {
        result
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum()
    };
    for (title, at_least) in [
        ("Requests (range)", 7.0),
        ("Tokens saved (range)", 1.0),
        ("Savings % (range)", 0.01),
        ("Cost USD (range)", 1e-9),
        ("Savings USD (range)", 1e-9),
    ] {
        let (_, expr) = expressions(&dash)
            .into_iter()
            .find(|(t, _)| t == title)
            .with_context(|| format!("no panel {title}"))?;
        let got = value(&prometheus.query(&substitute(&expr)).await?);
        ensure!(got >= at_least, "{title}: {got} < {at_least}");
    }
    let ttl = prometheus
        .query(r#"sum by (ttl) (headroom_cache_write_ttl_tokens_total{job=~".*"})"#)
        .await?;
    let of = |ttl_value: &str| {
        ttl.iter()
            .find(|r| r["metric"]["ttl"] == ttl_value)
            .map(|r| value(std::slice::from_ref(r)))
    };
    ensure!(of("5m") == Some(20.0) && of("1h") == Some(100.0), "{ttl:?}");
    let stacks = prometheus
        .query("sum by (stack) (headroom_requests_by_stack)")
        .await?;
    ensure!(
        stacks.iter().any(|r| r["metric"]["stack"] == "wrap_claude"),
        "{stacks:?}"
    );
    drop(prometheus);
    drop(proxy);
    Ok(())
}
