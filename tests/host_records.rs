//! Stored per-request metrics through the real `headroom` binary: every provider request leaves
//! one JSON line in `--log-file` and one row in the request database, with figures only (no
//! credential, no content, no query string); `/v1/headroom/metrics`, `/summary` and
//! `/validate` and the `headroom metrics`, `summary` and `validate` commands read them back;
//! retention trims the table; a corrupt database is moved aside and the proxy keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::headroom::{Process, binary, get};
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::Value;

const SIGTERM: i32 = 15;

/// Every field of the filter's record, in its order.
const FIELDS: [&str; 22] = [
    "time",
    "provider",
    "api",
    "model",
    "stack",
    "path",
    "status",
    "stream",
    "tokens_before",
    "tokens_after",
    "tokens_saved",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "savings_usd",
    "latency_ms",
    "ttfb_ms",
    "overhead_ms",
    "transforms",
    "fail_open",
];

const SECRETS: [&str; 5] = [
    "SECRET-BEARER-1",
    "SECRET-KEY-2",
    "SECRET-IN-BODY-3",
    "SECRET-QUERY-4",
    "sk-",
];

/// A temporary directory holding everything a proxy writes; removed on drop.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(tag: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "headroom-records-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("logs/requests.jsonl")
    }

    fn db(&self) -> PathBuf {
        self.dir.join("state/headroom.db")
    }

    /// The environment that keeps every file of the proxy and the CLI in here.
    fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: PathBuf| p.display().to_string();
        vec![
            ("HEADROOM_WORKSPACE_DIR", path(self.dir.join("workspace"))),
            (
                "HEADROOM_SAVINGS_PATH",
                path(self.dir.join("state/proxy_savings.json")),
            ),
            ("HEADROOM_DB_PATH", path(self.db())),
        ]
    }

    fn start(&self, args: &[&str], upstream: &Upstream) -> Result<Process> {
        let url = format!("http://{}", upstream.addr());
        let mut all = vec!["--openai-api-url", &url, "--anthropic-api-url", &url];
        all.extend_from_slice(args);
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Process::start(&all, &env)
    }

    /// Runs `headroom ARGS…` with this sandbox's environment.
    fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(binary()?);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("HEADROOM_STATELESS");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        Ok(cmd.output()?)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn post(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> ClientRequest {
    let mut all = vec![("content-type".to_string(), b"application/json".to_vec())];
    all.extend(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
    );
    ClientRequest {
        method: "POST".into(),
        path: path.into(),
        headers: all,
        chunks: vec![body],
        ..ClientRequest::default()
    }
}

/// A compressible request: a large JSON tool output with a secret in an error row, and a key.
fn compressible() -> ClientRequest {
    let rows = corpus::records_json(200, 5).replacen(
        "\"status\": \"ok\"",
        "\"status\": \"error\", \"detail\": \"token SECRET-IN-BODY-3 rejected\"",
        1,
    );
    post(
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-SECRET-BEARER-1")],
        corpus::tool_output_request(rows),
    )
}

/// A streaming Anthropic request with an API key.
fn anthropic_stream() -> ClientRequest {
    let body = serde_json::json!({
        "model": "claude-haiku-4-5", "max_tokens": 16, "stream": true,
        "messages": [{"role": "user", "content": "Say hi"}]
    });
    post(
        "/v1/messages",
        &[
            ("x-api-key", "sk-ant-SECRET-KEY-2"),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_string().into_bytes(),
    )
}

/// A streaming OpenAI request whose query string carries a key.
fn openai_stream() -> ClientRequest {
    post(
        "/v1/chat/completions?api_key=SECRET-QUERY-4",
        &[("authorization", "Bearer sk-SECRET-BEARER-1")],
        corpus::tiny_chat(true),
    )
}

/// The log file's lines, once it has `n` (records are written as exchanges end).
fn wait_for_lines(path: &Path, n: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            ensure!(text.ends_with('\n'), "a partial line: {text}");
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "{} has {} lines, not {n}:\n{text}",
                path.display(),
                lines.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records keyed by (api, stream, path) — each request of a run differs in one of them.
fn by_request(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| {
            (
                format!("{} {} {}", r["api"], r["stream"], r["tokens_saved"]),
                r.clone(),
            )
        })
        .collect()
}

fn check_record(r: &Value) -> Result<()> {
    let object = r.as_object().context("a record is an object")?;
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = FIELDS.to_vec();
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    ensure!(sorted == expected, "fields {keys:?}");
    ensure!(r["status"] == 200, "{r}");
    ensure!(r["stack"] == "unknown", "{r}");
    ensure!(
        r["time"]
            .as_str()
            .is_some_and(|t| t.len() == 20 && t.ends_with('Z')),
        "{r}"
    );
    ensure!(r["latency_ms"].as_f64().is_some_and(|l| l > 0.0), "{r}");
    ensure!(r["fail_open"].is_null(), "{r}");
    Ok(())
}

async fn get_json(proxy: &Process, path: &str) -> Result<(u16, Value)> {
    let response = get(proxy.addr(), path).await?;
    let value = response
        .json()
        .with_context(|| format!("{path}: {}", String::from_utf8_lossy(&response.body)))?;
    Ok((response.status, value))
}

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// The summary's figures recomputed from the records.
fn check_summary(summary: &Value, records: &[Value]) -> Result<()> {
    let sum = |field: &str| -> i64 { records.iter().filter_map(|r| r[field].as_i64()).sum() };
    let both: Vec<&Value> = records
        .iter()
        .filter(|r| !r["tokens_before"].is_null() && !r["tokens_after"].is_null())
        .collect();
    let before_both: i64 = both
        .iter()
        .filter_map(|r| r["tokens_before"].as_i64())
        .sum();
    let after_both: i64 = both.iter().filter_map(|r| r["tokens_after"].as_i64()).sum();
    let usd = |field: &str| -> f64 { records.iter().filter_map(|r| r[field].as_f64()).sum() };
    ensure!(summary["total_requests"] == records.len(), "{summary}");
    ensure!(
        summary["total_tokens_before"] == sum("tokens_before"),
        "{summary}"
    );
    ensure!(
        summary["total_tokens_after"] == sum("tokens_after"),
        "{summary}"
    );
    ensure!(
        summary["total_tokens_saved"] == sum("tokens_saved"),
        "{summary}"
    );
    ensure!(
        close_to(
            summary["avg_tokens_saved"].as_f64().unwrap_or(-1.0),
            sum("tokens_saved") as f64 / records.len() as f64
        ),
        "{summary}"
    );
    if before_both > 0 {
        ensure!(
            close_to(
                summary["avg_compression_ratio"].as_f64().unwrap_or(-1.0),
                after_both as f64 / before_both as f64
            ),
            "{summary}"
        );
    }
    ensure!(
        close_to(
            summary["total_cost_usd"].as_f64().unwrap_or(-1.0),
            usd("cost_usd")
        ),
        "{summary}"
    );
    ensure!(
        close_to(
            summary["total_cost_saved_usd"].as_f64().unwrap_or(-1.0),
            usd("savings_usd")
        ),
        "{summary}"
    );
    let unknown = records.iter().filter(|r| r["cost_usd"].is_null()).count();
    ensure!(summary["requests_unknown_cost"] == unknown, "{summary}");
    Ok(())
}

fn json_lines(output: &Output) -> Result<Vec<Value>> {
    ensure!(
        output.status.success(),
        "{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_request_is_recorded_and_read_back() -> Result<()> {
    let sandbox = Sandbox::new("main")?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let log_file = sandbox.log_file().display().to_string();
    let mut proxy = sandbox.start(&["--log-file", &log_file], &upstream)?;

    for request in [compressible(), anthropic_stream(), openai_stream()] {
        let response = client::send(proxy.addr(), &request, |_| {}).await?;
        ensure!(
            response.status == 200,
            "{}: {}",
            request.path,
            response.status
        );
    }
    // Not a provider API call: no record.
    let models = get(proxy.addr(), "/v1/models").await?;
    ensure!(models.status == 200);
    let received = upstream.take_received();
    ensure!(received.len() == 4);
    ensure!(
        received[0].body.len() < compressible().chunks[0].len(),
        "the first request was compressed"
    );

    // The log file: one line per provider request, the filter's record, figures only.
    wait_for_lines(&sandbox.log_file(), 3)?;
    // A moment more: a fourth line (for the /v1/models request) would be a bug.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = wait_for_lines(&sandbox.log_file(), 3)?;
    ensure!(lines.len() == 3, "{lines:#?}");
    let logged: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    for r in &logged {
        check_record(r)?;
    }
    let find = |api: &str, stream: bool| {
        logged
            .iter()
            .find(|r| r["api"] == api && r["stream"] == stream)
            .cloned()
            .with_context(|| format!("no {api} stream={stream} record in {logged:#?}"))
    };
    let compressed = find("openai_chat", false)?;
    ensure!(compressed["provider"] == "openai", "{compressed}");
    ensure!(compressed["model"] == "gpt-4o-mini", "{compressed}");
    ensure!(compressed["path"] == "/v1/chat/completions", "{compressed}");
    ensure!(
        compressed["tokens_saved"].as_i64().is_some_and(|s| s > 0),
        "{compressed}"
    );
    ensure!(
        compressed["transforms"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{compressed}"
    );
    ensure!(compressed["input_tokens"] == 12, "{compressed}");
    ensure!(compressed["output_tokens"] == 5, "{compressed}");
    let anthropic = find("anthropic_messages", true)?;
    ensure!(anthropic["provider"] == "anthropic", "{anthropic}");
    ensure!(anthropic["model"] == "claude-haiku-4-5", "{anthropic}");
    ensure!(anthropic["path"] == "/v1/messages", "{anthropic}");
    ensure!(anthropic["output_tokens"] == 5, "{anthropic}");
    ensure!(anthropic["tokens_saved"] == 0, "{anthropic}");
    let streamed = find("openai_chat", true)?;
    ensure!(
        streamed["path"] == "/v1/chat/completions",
        "no query string: {streamed}"
    );

    // Nothing secret, anywhere: the log file, the database and its WAL.
    let mut stored = std::fs::read(sandbox.log_file())?;
    for suffix in ["", "-wal"] {
        let mut db = sandbox.db().into_os_string();
        db.push(suffix);
        stored.extend(std::fs::read(PathBuf::from(db)).unwrap_or_default());
    }
    let stored = String::from_utf8_lossy(&stored);
    for secret in SECRETS {
        ensure!(!stored.contains(secret), "stored records hold {secret}");
    }
    for word in ["Which requests failed", "Say hi", "billing"] {
        ensure!(
            !stored.contains(word),
            "stored records hold content {word:?}"
        );
    }

    // The endpoint gives the same records, newest first.
    let (status, page) = get_json(&proxy, "/v1/headroom/metrics").await?;
    ensure!(status == 200 && page["count"] == 3, "{page}");
    let served: Vec<Value> = page["records"].as_array().cloned().unwrap_or_default();
    ensure!(by_request(&served) == by_request(&logged), "{page}");
    let times: Vec<&str> = served.iter().filter_map(|r| r["time"].as_str()).collect();
    ensure!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let (_, one) = get_json(
        &proxy,
        "/v1/headroom/metrics?model=claude-haiku-4-5&limit=1",
    )
    .await?;
    ensure!(one["count"] == 1 && one["records"][0] == anthropic, "{one}");
    let (_, none) = get_json(&proxy, "/v1/headroom/metrics?start=2099-01-01T00:00:00Z").await?;
    ensure!(none["count"] == 0, "{none}");
    let (_, since) = get_json(&proxy, "/v1/headroom/metrics?start=0&end=4102444800").await?;
    ensure!(since["count"] == 3, "{since}");
    for (query, param) in [
        ("start=yesterday", "start"),
        ("limit=0", "limit"),
        ("colour=blue", "colour"),
    ] {
        let (status, error) = get_json(&proxy, &format!("/v1/headroom/metrics?{query}")).await?;
        ensure!(status == 400, "{query}: {status} {error}");
        ensure!(error["error"]["param"] == param, "{query}: {error}");
        ensure!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(param)),
            "{error}"
        );
    }

    let (status, summary) = get_json(&proxy, "/v1/headroom/summary").await?;
    ensure!(status == 200, "{summary}");
    check_summary(&summary, &logged)?;
    let (status, error) = get_json(&proxy, "/v1/headroom/summary?end=soon").await?;
    ensure!(status == 400 && error["error"]["param"] == "end", "{error}");

    let (status, report) = get_json(&proxy, "/v1/headroom/validate").await?;
    ensure!(status == 200 && report["valid"] == true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names
            == [
                "plugin",
                "upstream openai",
                "upstream anthropic",
                "savings",
                "database"
            ],
        "{report}"
    );
    ensure!(report["issues"] == serde_json::json!([]), "{report}");

    let status = proxy.signal_and_wait(SIGTERM, Duration::from_secs(20))?;
    ensure!(status.success(), "{status}");

    // The CLI reads the same database after the proxy has stopped.
    let cli = json_lines(&sandbox.cli(&["metrics", "--json"])?)?;
    ensure!(by_request(&cli) == by_request(&logged), "{cli:#?}");
    let cli_one = json_lines(&sandbox.cli(&[
        "metrics",
        "--json",
        "--model",
        "gpt-4o-mini",
        "--limit",
        "1",
    ])?)?;
    ensure!(
        cli_one.len() == 1 && cli_one[0]["model"] == "gpt-4o-mini",
        "{cli_one:#?}"
    );
    let cli_summary = json_lines(&sandbox.cli(&["summary", "--json", "--since", "1h"])?)?;
    ensure!(cli_summary.len() == 1);
    check_summary(&cli_summary[0], &logged)?;
    let table = sandbox.cli(&["metrics"])?;
    let table = String::from_utf8(table.stdout)?;
    ensure!(
        table.lines().count() == 4
            && table.contains("claude-haiku-4-5")
            && table.contains("gpt-4o-mini"),
        "{table}"
    );
    let text = String::from_utf8(sandbox.cli(&["summary"])?.stdout)?;
    ensure!(
        text.contains("requests") && text.contains("tokens saved"),
        "{text}"
    );
    let bad = sandbox.cli(&["metrics", "--since", "yesterday"])?;
    ensure!(bad.status.code() == Some(2), "{bad:?}");
    ensure!(
        String::from_utf8_lossy(&bad.stderr).contains("--since"),
        "{bad:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_rows_and_stateless_keeps_no_database() -> Result<()> {
    let sandbox = Sandbox::new("retention")?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let log_file = sandbox.log_file().display().to_string();
    let mut proxy = sandbox.start(
        &["--log-file", &log_file, "--records-max-rows", "2"],
        &upstream,
    )?;
    for (i, model) in ["model-1", "model-2", "model-3", "model-4"]
        .iter()
        .enumerate()
    {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let request = post("/v1/chat/completions", &[], body.to_string().into_bytes());
        ensure!(client::send(proxy.addr(), &request, |_| {}).await?.status == 200);
        // One at a time, so "newest" is well defined.
        wait_for_lines(&sandbox.log_file(), i + 1)?;
    }
    let lines = wait_for_lines(&sandbox.log_file(), 4)?;
    ensure!(lines.len() == 4, "the log file is not trimmed: {lines:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = get_json(&proxy, "/v1/headroom/metrics").await?;
        if page["count"] == 2 {
            let models: Vec<&str> = page["records"]
                .as_array()
                .map(|r| r.iter().filter_map(|r| r["model"].as_str()).collect())
                .unwrap_or_default();
            let mut sorted = models.clone();
            sorted.sort_unstable();
            ensure!(sorted == ["model-3", "model-4"], "{page}");
            break;
        }
        ensure!(Instant::now() < deadline, "retention did not trim: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        proxy
            .signal_and_wait(SIGTERM, Duration::from_secs(20))?
            .success()
    );
    let cli = json_lines(&sandbox.cli(&["metrics", "--json"])?)?;
    ensure!(cli.len() == 2, "{cli:#?}");

    // Stateless: the log file still works; no database is made.
    let stateless = Sandbox::new("stateless")?;
    let log_file = stateless.log_file().display().to_string();
    let mut proxy = stateless.start(&["--log-file", &log_file, "--stateless"], &upstream)?;
    let body = corpus::tiny_chat(false);
    let request = post("/v1/chat/completions", &[], body);
    ensure!(client::send(proxy.addr(), &request, |_| {}).await?.status == 200);
    wait_for_lines(&stateless.log_file(), 1)?;
    let (status, error) = get_json(&proxy, "/v1/headroom/metrics").await?;
    ensure!(status == 503, "{status} {error}");
    ensure!(
        proxy
            .signal_and_wait(SIGTERM, Duration::from_secs(20))?
            .success()
    );
    ensure!(
        !stateless.db().exists(),
        "a stateless proxy made a database"
    );
    let missing = stateless.cli(&["metrics"])?;
    ensure!(missing.status.code() == Some(1), "{missing:?}");
    ensure!(
        String::from_utf8_lossy(&missing.stderr).contains("no request database"),
        "{missing:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_is_moved_aside_and_the_proxy_serves() -> Result<()> {
    let sandbox = Sandbox::new("corrupt")?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    std::fs::create_dir_all(sandbox.dir.join("state"))?;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let junk: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(sandbox.db(), &junk)?;

    let mut proxy = sandbox.start(&[], &upstream)?;
    let request = post("/v1/chat/completions", &[], corpus::tiny_chat(false));
    ensure!(client::send(proxy.addr(), &request, |_| {}).await?.status == 200);
    let aside: Vec<PathBuf> = std::fs::read_dir(sandbox.dir.join("state"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("headroom.db.corrupt-"))
        })
        .collect();
    ensure!(aside.len() == 1, "{aside:?}");
    ensure!(
        std::fs::read(&aside[0])? == junk,
        "the damaged file is kept as it was"
    );
    let log = proxy.log().join("\n");
    ensure!(log.contains("moved it to"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = get_json(&proxy, "/v1/headroom/metrics").await?;
        ensure!(status == 200, "{page}");
        if page["count"] == 1 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no record in the fresh database: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        proxy
            .signal_and_wait(SIGTERM, Duration::from_secs(20))?
            .success()
    );
    let validate = sandbox.cli(&[
        "validate",
        "--openai-api-url",
        &format!("http://{}", upstream.addr()),
        "--anthropic-api-url",
        &format!("http://{}", upstream.addr()),
    ])?;
    ensure!(validate.status.success(), "{validate:?}");

    // A database that cannot even be created: the proxy serves without one.
    let blocked = Sandbox::new("blocked")?;
    std::fs::write(
        blocked.dir.join("state"),
        b"a file where the directory should be",
    )?;
    let mut proxy = blocked.start(&[], &upstream)?;
    ensure!(client::send(proxy.addr(), &request, |_| {}).await?.status == 200);
    let (status, _) = get_json(&proxy, "/v1/headroom/metrics").await?;
    ensure!(status == 503);
    ensure!(
        proxy
            .log()
            .join("\n")
            .contains("running without stored records")
    );
    ensure!(
        proxy
            .signal_and_wait(SIGTERM, Duration::from_secs(20))?
            .success()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_passes_with_good_upstreams_and_names_a_dead_one() -> Result<()> {
    let sandbox = Sandbox::new("validate")?;
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let good = format!("http://{}", upstream.addr());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", listener.local_addr()?)
    };
    let out = sandbox.cli(&[
        "validate",
        "--openai-api-url",
        &good,
        "--anthropic-api-url",
        &good,
    ])?;
    let text = String::from_utf8(out.stdout.clone())?;
    ensure!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(text.lines().count() == 5, "{text}");
    ensure!(text.lines().all(|l| l.starts_with("ok ")), "{text}");

    let out = sandbox.cli(&[
        "validate",
        "--openai-api-url",
        &good,
        "--anthropic-api-url",
        &closed,
    ])?;
    let text = String::from_utf8(out.stdout.clone())?;
    ensure!(out.status.code() == Some(1), "{:?}\n{text}", out.status);
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    ensure!(failed.len() == 1, "{text}");
    ensure!(failed[0].starts_with("FAIL upstream anthropic:"), "{text}");
    ensure!(failed[0].contains(&closed), "{text}");
    ensure!(
        failed[0].contains("fix:") && failed[0].contains("--anthropic-api-url"),
        "{text}"
    );
    ensure!(text.contains("ok   upstream openai"), "{text}");

    let out = sandbox.cli(&[
        "validate",
        "--json",
        "--openai-api-url",
        &closed,
        "--anthropic-api-url",
        &good,
        "--plugin-config",
        r#"{"max_body_bytes":"lots"}"#,
    ])?;
    ensure!(out.status.code() == Some(1));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(report["valid"] == false, "{report}");
    let issues: Vec<&str> = report["issues"]
        .as_array()
        .map(|i| i.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(issues.len() == 2, "{report}");
    ensure!(
        issues[0].starts_with("plugin:") && issues[0].contains("max_body_bytes"),
        "{report}"
    );
    ensure!(issues[1].starts_with("upstream openai:"), "{report}");
    Ok(())
}
