//! `GET /dashboard` in a real browser: the real `headroom` binary loads a savings file
//! (`proxy_savings.json`, schema 3) spanning hours, days, weeks and two months, forwards one
//! compressing request to a loopback upstream, and headless Chromium, driven over chromedriver's
//! W3C WebDriver API, renders the page the filter serves. What is on the page is checked against
//! the file and against `/stats` and `/stats-history`: the lifetime figure, one bar per rollup
//! bucket, the per-model table (a hostile model name shown as text, never as markup), the CSV
//! links, the live request count and its 5 s refresh; then the same page for a proxy with no
//! history at all. A screenshot is left at `target/test-artifacts/dashboard.png`.
//!
//! Chromium and chromedriver come from the Debian packages `chromium` and `chromium-driver`
//! (`scripts/test` installs them); without them this test fails.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use headroom_plugin::calendar::{self, civil_from_days, days_from_civil};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::{Process, get};
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SERIES: [&str; 4] = ["hourly", "daily", "weekly", "monthly"];
/// A model name a client chose: the page must show it as text.
const HOSTILE_MODEL: &str = r#"evil<b id="pwn">x</b><img src=x onerror="window.__pwned=1">&'"#;
/// The page, as the filter must serve it (verbatim).
const PAGE: &str = include_str!("../plugin/assets/dashboard.html");

/// What the page shows, read in the browser.
const PROBE: &str = r##"
const text = (s) => { const e = document.querySelector(s); return e ? e.textContent : null; };
const charts = {};
for (const svg of document.querySelectorAll("svg[data-series]")) {
  charts[svg.dataset.series] = [...svg.querySelectorAll("rect[data-bucket]")].map((r) => r.dataset.bucket);
}
const csv = {};
for (const a of document.querySelectorAll("a[data-csv]")) csv[a.dataset.csv] = a.href;
return {
  ready: document.body.dataset.ready || null,
  lifetime_tokens: text("#lt-tokens"),
  live_requests: text("#live-requests"),
  charts,
  models: [...document.querySelectorAll("#models tbody tr")].map((tr) => tr.cells[0].textContent),
  csv,
  pwned: document.getElementById("pwn") !== null || window.__pwned === 1,
  resources: performance.getEntriesByType("resource").map((e) => e.name),
  text: document.body.innerText,
};
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_real_history_in_chromium() -> Result<()> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        ensure!(
            Path::new(tool).exists(),
            "{tool} is missing: install the Debian packages chromium and chromium-driver \
             (scripts/test does: apt-get install chromium chromium-driver)"
        );
    }
    let dir = TempDir::new()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let file = savings_file(now);
    let savings_path = dir.path.join("proxy_savings.json");
    std::fs::write(&savings_path, serde_json::to_vec_pretty(&file)?)?;

    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let url = format!("http://{}", upstream.addr());
    let savings_env = savings_path.to_string_lossy().into_owned();
    let proxy = Process::start(
        &["--openai-api-url", &url, "--anthropic-api-url", &url],
        &[("HEADROOM_SAVINGS_PATH", savings_env.as_str())],
    )?;
    let addr = proxy.addr();

    // The page is the filter's asset, verbatim, and pulls in nothing from elsewhere.
    let page = get(addr, "/dashboard").await?;
    ensure!(page.status == 200, "/dashboard: {}", page.status);
    ensure!(
        page.header("content-type").as_deref() == Some("text/html; charset=utf-8"),
        "/dashboard content-type {:?}",
        page.header("content-type")
    );
    ensure!(
        page.body == PAGE.as_bytes(),
        "/dashboard is not plugin/assets/dashboard.html"
    );
    for needle in [
        "Export CSV",
        "Weekly Savings",
        "Monthly Savings",
        "Per-Model Breakdown",
        "Historical",
    ] {
        ensure!(PAGE.contains(needle), "the page lacks {needle:?}");
    }
    for external in ["http://", "https://", " src=", "<iframe", "<img", "<object"] {
        ensure!(
            !PAGE.contains(external),
            "the page refers to an external resource ({external:?})"
        );
    }
    let style = PAGE
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css)
        .context("the page has no <style>")?;
    ensure!(
        !style.contains("url(") && !style.contains("@import"),
        "the page's CSS loads something"
    );
    ensure!(
        PAGE.matches("<link").count() == PAGE.matches(r#"<link rel="icon" href="data:,">"#).count(),
        "the page links something"
    );
    ensure!(
        PAGE.len() < 25_000,
        "the page is {} bytes (it is embedded in the .wasm)",
        PAGE.len()
    );

    // One real compressing request, so the live counters move.
    let sent = post_chat(addr, corpus::agent_json_request(300, false)).await?;
    ensure!(sent.status == 200, "chat request: {}", sent.status);
    let stats = wait_for_stats(addr, 1).await?;
    let live_saved = stats["tokens"]["saved"].as_u64().unwrap_or(0);
    ensure!(live_saved > 0, "the request was not compressed: {stats}");
    let history = stable_history(addr).await?;

    let driver = WebDriver::start(&dir.path)?;
    let outcome = async {
        driver
            .open_session(&dir.path.join("chromium-profile"))
            .await?;
        check_full_page(&driver, addr, &file, &history, live_saved).await?;
        check_refresh(&driver, addr).await?;

        // A proxy with no savings file yet: the same page, empty but whole.
        let empty_path = dir.path.join("empty").join("proxy_savings.json");
        let empty_env = empty_path.to_string_lossy().into_owned();
        let empty = Process::start(
            &["--openai-api-url", &url, "--anthropic-api-url", &url],
            &[("HEADROOM_SAVINGS_PATH", empty_env.as_str())],
        )?;
        check_empty_page(&driver, empty.addr()).await
    }
    .await;
    let closed = driver.close_session().await;
    if let Err(err) = &outcome {
        eprintln!("chromedriver log:\n{}", driver.log_tail());
        eprintln!("headroom log:\n{}", proxy.log().join("\n"));
        return Err(anyhow::anyhow!("{err:#}"));
    }
    closed
}

/// The page with the file's history and one live request.
async fn check_full_page(
    driver: &WebDriver,
    addr: SocketAddr,
    file: &Value,
    history: &Value,
    live_saved: u64,
) -> Result<()> {
    let started = Instant::now();
    driver.navigate(&format!("http://{addr}/dashboard")).await?;
    let seen = driver.wait_ready().await?;
    eprintln!("dashboard rendered in {:?}", started.elapsed());
    let shot = driver.screenshot().await?;
    let artifact = artifacts_dir()?.join("dashboard.png");
    std::fs::write(&artifact, shot)?;
    eprintln!("screenshot: {}", artifact.display());

    // Lifetime: what /stats-history reports, which is the file's lifetime plus (once the proxy
    // records it) the live request's savings.
    let file_lifetime = file["lifetime"]["tokens_saved"].as_u64().unwrap_or(0);
    let served_lifetime = history["lifetime"]["tokens_saved"]
        .as_u64()
        .context("/stats-history lifetime.tokens_saved")?;
    ensure!(
        served_lifetime == file_lifetime || served_lifetime == file_lifetime + live_saved,
        "/stats-history lifetime {served_lifetime}, file {file_lifetime}, live {live_saved}"
    );
    let shown = digits(seen["lifetime_tokens"].as_str().unwrap_or_default());
    ensure!(
        shown == Some(served_lifetime),
        "lifetime tokens saved shown {:?}, served {served_lifetime}",
        seen["lifetime_tokens"]
    );

    // One bar per bucket, in the server's order; every bucket the file implies is there.
    for series in SERIES {
        let served: Vec<&str> = history["series"][series]
            .as_array()
            .with_context(|| format!("/stats-history series.{series}"))?
            .iter()
            .map(|b| b["timestamp"].as_str().unwrap_or_default())
            .collect();
        let bars: Vec<&str> = seen["charts"][series]
            .as_array()
            .with_context(|| format!("no chart svg[data-series={series}]"))?
            .iter()
            .map(|b| b.as_str().unwrap_or_default())
            .collect();
        ensure!(
            bars == served,
            "{series}: the chart has bars {bars:?}, /stats-history buckets {served:?}"
        );
        let expected = file_buckets(file, series);
        let missing: Vec<&String> = expected
            .iter()
            .filter(|b| !served.contains(&b.as_str()))
            .collect();
        ensure!(
            missing.is_empty(),
            "{series}: buckets of the file missing from /stats-history: {missing:?} (served {served:?})"
        );
    }
    ensure!(
        file_buckets(file, "monthly").len() >= 2 && file_buckets(file, "weekly").len() >= 4,
        "the fixture spans too little"
    );

    // Per-model breakdown: every model of the rollups, the hostile name as plain text.
    let mut served_models = BTreeSet::new();
    for bucket in history["series"]["monthly"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(models) = bucket["by_model"].as_object() {
            served_models.extend(models.keys().cloned());
        }
    }
    let shown_models: BTreeSet<String> = seen["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    ensure!(
        shown_models == served_models,
        "Per-Model Breakdown shows {shown_models:?}, the rollups have {served_models:?}"
    );
    for checkpoint in file["history"].as_array().into_iter().flatten() {
        let model = checkpoint["model"].as_str().unwrap_or_default();
        ensure!(
            shown_models.contains(model),
            "Per-Model Breakdown lacks {model:?}: {shown_models:?}"
        );
    }
    ensure!(
        seen["pwned"] == false,
        "a model name was inserted as markup"
    );

    // Export links, resolved against the page, and what they serve.
    for series in ["history", "hourly", "daily", "weekly", "monthly"] {
        let want = format!("http://{addr}/stats-history?format=csv&series={series}");
        ensure!(
            seen["csv"][series] == want.as_str(),
            "Export CSV link for {series}: {}, want {want}",
            seen["csv"][series]
        );
        let csv = get(addr, &format!("/stats-history?format=csv&series={series}")).await?;
        ensure!(csv.status == 200, "{want}: {}", csv.status);
        let body = String::from_utf8_lossy(&csv.body);
        ensure!(
            body.starts_with("timestamp,"),
            "{want}: {}",
            body.lines().next().unwrap_or_default()
        );
        if series != "history" {
            let rows = history["series"][series].as_array().map_or(0, Vec::len);
            ensure!(
                body.lines().count() == rows + 1,
                "{want}: {} lines for {rows} buckets",
                body.lines().count()
            );
        }
    }

    // Live counters, and nothing fetched from anywhere but the proxy.
    let stats = get(addr, "/stats").await?.json()?;
    let total = stats["requests"]["total"].as_u64().unwrap_or(0);
    ensure!(
        digits(seen["live_requests"].as_str().unwrap_or_default()) == Some(total),
        "live requests shown {:?}, /stats {total}",
        seen["live_requests"]
    );
    let origin = format!("http://{addr}/");
    for resource in seen["resources"].as_array().into_iter().flatten() {
        let name = resource.as_str().unwrap_or_default();
        ensure!(name.starts_with(&origin), "the page fetched {name}");
    }

    // The tabs switch charts.
    let weekly = driver
        .execute(
            r#"document.querySelector('[data-tab="weekly"]').click();
               return !document.querySelector('[data-panel="weekly"]').hidden
                   && document.querySelector('[data-panel="daily"]').hidden;"#,
        )
        .await?;
    ensure!(
        weekly == true,
        "the Weekly Savings tab does not show its chart"
    );
    Ok(())
}

/// The live counters follow new requests without a reload.
async fn check_refresh(driver: &WebDriver, addr: SocketAddr) -> Result<()> {
    let sent = post_chat(addr, corpus::tiny_chat(false)).await?;
    ensure!(sent.status == 200, "second request: {}", sent.status);
    let stats = wait_for_stats(addr, 2).await?;
    let total = stats["requests"]["total"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = driver
            .execute("return document.querySelector('#live-requests').textContent;")
            .await?;
        if digits(shown.as_str().unwrap_or_default()) == Some(total) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("live requests still show {shown} 15 s after /stats says {total}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// No history: the page renders, every chart empty, and says so.
async fn check_empty_page(driver: &WebDriver, addr: SocketAddr) -> Result<()> {
    driver.navigate(&format!("http://{addr}/dashboard")).await?;
    let seen = driver.wait_ready().await?;
    for series in SERIES {
        let bars = seen["charts"][series]
            .as_array()
            .with_context(|| format!("empty history: no chart for {series}"))?;
        ensure!(bars.is_empty(), "empty history: {series} has bars {bars:?}");
    }
    ensure!(
        seen["text"]
            .as_str()
            .unwrap_or_default()
            .contains("No savings recorded yet"),
        "empty history: no \"No savings recorded yet\""
    );
    ensure!(
        digits(seen["lifetime_tokens"].as_str().unwrap_or_default()) == Some(0),
        "empty history: lifetime {:?}",
        seen["lifetime_tokens"]
    );
    ensure!(
        digits(seen["live_requests"].as_str().unwrap_or_default()) == Some(0),
        "empty history: live requests {:?}",
        seen["live_requests"]
    );
    Ok(())
}

async fn post_chat(addr: SocketAddr, body: Vec<u8>) -> Result<client::ClientResponse> {
    let req = ClientRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        chunks: vec![body],
        ..ClientRequest::default()
    };
    client::send(addr, &req, |_| {}).await
}

/// `/stats` once it counts `requests` provider requests with their usage recorded (the
/// accounting ends a moment after the client has the response).
async fn wait_for_stats(addr: SocketAddr, requests: u64) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = get(addr, "/stats").await?.json()?;
        let total = stats["requests"]["total"].as_u64().unwrap_or(0);
        let priced = stats["cost"]["priced_requests"].as_u64().unwrap_or(0)
            + stats["cost"]["unknown_model_requests"]
                .as_u64()
                .unwrap_or(0);
        if total >= requests && priced >= requests {
            return Ok(stats);
        }
        if Instant::now() > deadline {
            bail!("/stats did not count {requests} requests: {stats}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/stats-history` once two reads 200 ms apart agree (the live request's checkpoint is in).
async fn stable_history(addr: SocketAddr) -> Result<Value> {
    let mut last: Option<Value> = None;
    for _ in 0..50 {
        let resp = get(addr, "/stats-history").await?;
        ensure!(
            resp.status == 200,
            "/stats-history: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        let mut doc = resp.json()?;
        if let Some(map) = doc.as_object_mut() {
            map.remove("generated_at");
        }
        if last.as_ref() == Some(&doc) {
            return Ok(doc);
        }
        last = Some(doc);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("/stats-history keeps changing")
}

/// A schema-3 savings file: cumulative checkpoints from 45 days to 10 minutes ago (two months,
/// several weeks, days and hours), four models including a hostile name, one project.
fn savings_file(now: u64) -> Value {
    const MIN: u64 = 60;
    const DAY: u64 = 86_400;
    let ages = [
        45 * DAY,
        40 * DAY,
        22 * DAY,
        15 * DAY,
        8 * DAY,
        3 * DAY,
        2 * DAY,
        DAY,
        130 * MIN,
        70 * MIN,
        10 * MIN,
    ];
    let models = [
        ("anthropic", "claude-sonnet-4-6"),
        ("openai", "gpt-4o"),
        ("openai", HOSTILE_MODEL),
        ("anthropic", "claude-haiku-4-5"),
    ];
    let (mut saved, mut usd, mut input, mut cost) = (0u64, 0.0f64, 0u64, 0.0f64);
    let mut history = Vec::new();
    for (i, age) in ages.iter().enumerate() {
        let (provider, model) = models[i % models.len()];
        let step = 1_000 * (i as u64 + 1);
        saved += step;
        usd = round6(usd + step as f64 * 3e-6);
        input += 2 * step;
        cost = round6(cost + 2.0 * step as f64 * 3e-6);
        history.push(json!({
            "timestamp": iso(now - age),
            "provider": provider,
            "model": model,
            "total_tokens_saved": saved,
            "compression_savings_usd": usd,
            "total_input_tokens": input,
            "total_input_cost_usd": cost,
        }));
    }
    json!({
        "schema_version": 3,
        "lifetime": {
            "requests": 42,
            "tokens_saved": saved,
            "compression_savings_usd": usd,
            "total_input_tokens": input,
            "total_input_cost_usd": cost,
        },
        "display_session": {
            "requests": 3,
            "tokens_saved": 30_000,
            "compression_savings_usd": 0.09,
            "total_input_tokens": 60_000,
            "total_input_cost_usd": 0.18,
            "savings_percent": 33.33,
            "started_at": iso(now - 130 * MIN),
            "last_activity_at": iso(now - 10 * MIN),
        },
        "history": history,
        "projects": {
            "web": {
                "requests": 5,
                "tokens_saved": 3_000,
                "compression_savings_usd": 0.009,
                "total_input_tokens": 6_000,
                "total_input_cost_usd": 0.018,
                "last_activity_at": iso(now - 10 * MIN),
            }
        }
    })
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The rollup bucket labels (docs/upstream.md §3: UTC hour, day, ISO week from Monday, month) the
/// file's checkpoints fall into, deduplicated.
fn file_buckets(file: &Value, series: &str) -> BTreeSet<String> {
    file["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| parse_iso(c["timestamp"].as_str()?))
        .map(|t| {
            let day = t / 86_400;
            let start = match series {
                "hourly" => t - t % 3_600,
                "daily" => day * 86_400,
                // 1970-01-01 was a Thursday: 3 days after a Monday.
                "weekly" => (day - (day + 3) % 7) * 86_400,
                _ => {
                    let (y, m, _) = civil_from_days(day as i64);
                    days_from_civil(y, m, 1) as u64 * 86_400
                }
            };
            iso(start)
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
fn iso(t: u64) -> String {
    calendar::format_rfc3339(t)
}

fn parse_iso(s: &str) -> Option<u64> {
    u64::try_from(calendar::parse_rfc3339(s)?).ok()
}

/// The number in a formatted figure ("12,345" → 12345).
fn digits(text: &str) -> Option<u64> {
    let only: String = text.chars().filter(char::is_ascii_digit).collect();
    only.parse().ok()
}

/// `target/test-artifacts/`, next to the build's output.
fn artifacts_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target
    let target = exe.ancestors().nth(3).context("test executable location")?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let path =
            std::env::temp_dir().join(format!("headroom-dashboard-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// chromedriver on a loopback port, with at most one session; killed by PID when dropped.
struct WebDriver {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    session: std::sync::Mutex<Option<String>>,
}

impl WebDriver {
    fn start(dir: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let mut driver = Self {
            child,
            addr,
            log,
            session: std::sync::Mutex::new(None),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = driver.child.try_wait()? {
                bail!("chromedriver exited with {status}:\n{}", driver.log_tail());
            }
            if let Ok(status) = driver.blocking("GET", "/status")
                && status["value"]["ready"] == true
            {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                bail!("chromedriver not ready within 20 s:\n{}", driver.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn open_session(&self, profile: &Path) -> Result<()> {
        std::fs::create_dir_all(profile)?;
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,2000".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = self.call("POST", "/session", Some(caps)).await?;
        let id = value["sessionId"]
            .as_str()
            .with_context(|| format!("new session: {value}"))?;
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_owned());
        Ok(())
    }

    fn session_path(&self, rest: &str) -> Result<String> {
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let id = session.as_deref().context("no WebDriver session")?;
        Ok(format!("/session/{id}{rest}"))
    }

    async fn navigate(&self, url: &str) -> Result<()> {
        self.call(
            "POST",
            &self.session_path("/url")?,
            Some(json!({"url": url})),
        )
        .await?;
        Ok(())
    }

    async fn execute(&self, script: &str) -> Result<Value> {
        let body = json!({"script": script, "args": []});
        self.call("POST", &self.session_path("/execute/sync")?, Some(body))
            .await
    }

    /// Waits for `body[data-ready="1"]`, then reads the page with [`PROBE`].
    async fn wait_ready(&self) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self
                .execute("return [document.body.dataset.ready || null, document.body.dataset.error || null];")
                .await?;
            if state[0] == "1" {
                return self.execute(PROBE).await;
            }
            if Instant::now() > deadline {
                let status = self
                    .execute(
                        "const e = document.querySelector('#status'); return e && e.textContent;",
                    )
                    .await
                    .unwrap_or(Value::Null);
                bail!(
                    "the dashboard did not render within 20 s: error {}, status {status}",
                    state[1]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self
            .call("GET", &self.session_path("/screenshot")?, None)
            .await?;
        base64_decode(value.as_str().context("screenshot is not a string")?)
    }

    async fn close_session(&self) -> Result<()> {
        let id = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(id) = id {
            self.call("DELETE", &format!("/session/{id}"), None).await?;
        }
        Ok(())
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let req = ClientRequest {
            method: method.into(),
            path: path.into(),
            headers: vec![(
                "content-type".into(),
                b"application/json; charset=utf-8".to_vec(),
            )],
            chunks: body
                .map(|b| vec![b.to_string().into_bytes()])
                .unwrap_or_default(),
            ..ClientRequest::default()
        };
        let resp = client::send(self.addr, &req, |_| {})
            .await
            .with_context(|| format!("WebDriver {method} {path}"))?;
        let doc: Value = serde_json::from_slice(&resp.body).with_context(|| {
            format!(
                "WebDriver {method} {path}: {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            )
        })?;
        if resp.status != 200 {
            bail!(
                "WebDriver {method} {path}: {} {}: {}",
                resp.status,
                doc["value"]["error"],
                doc["value"]["message"]
            );
        }
        Ok(doc["value"].clone())
    }

    /// A request without the async client (for start-up and for `Drop`).
    fn blocking(&self, method: &str, path: &str) -> Result<Value> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .context("WebDriver response without Content-Length")?;
                if body.len() >= length {
                    return Ok(serde_json::from_str(body.get(..length).unwrap_or(body))?);
                }
            }
            let n = stream.read(&mut buf)?;
            ensure!(n > 0, "WebDriver closed the connection mid-response");
            raw.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        // A session left open (an early error) still gets its browser closed.
        let id = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(id) = id {
            let _ = self.blocking("DELETE", &format!("/session/{id}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the WebDriver screenshot).
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("not base64: {c:#x}"),
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    ensure!(out.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    Ok(out)
}
