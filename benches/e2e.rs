//! The end-to-end overhead benchmark: what Headroom adds to real requests, in our host and in
//! Envoy, measured side by side in one run.
//!
//! It starts a loopback upstream that answers like the providers (JSON, or SSE with a per-chunk
//! delay that simulates generation), the `headroom` binary, and Envoy 1.40 twice (with and
//! without the filter), then drives realistic requests at concurrency 1 and higher. Targets are
//! measured in interleaved rounds (direct, headroom, Envoy, Envoy + filter, order rotated each
//! round) so machine noise hits them alike; results are medians and ratios, never lone times.
//!
//! Every request repeats a body the filter has seen. To measure compression rather than the
//! replay lookup, the cold workloads go to filter targets with the replay map off
//! (`replay_store_bytes: 0`): each request is compressed from scratch, the worst case (the
//! first sight of a tool output). The *later turn* workloads are what an agent's next turn
//! costs: the same conversation resent, its tool outputs decided before. They go to a second
//! `headroom` and a second Envoy + filter with the default configuration (replay on), primed
//! with one request; the filter still parses the body, finds every output, looks its decision
//! up and splices the bytes it sent before.
//!
//! Run: `scripts/bench` (installs Envoy, builds, runs this). Options after `--`:
//! `--quick` (fewer rounds), `--rounds N`, `--concurrency N`, `--chunk-delay-ms N`,
//! `--answer-delay-ms N` (the upstream waits this long before each response, as a model
//! thinks; what a proxy does meanwhile is off the client's clock; default 0),
//! `--think-ms N` (each client pauses this long after a response before its next request, as an
//! agent does while the model answers; default 0, back to back), `--only TEXT` (the workloads
//! whose name contains it), `--out DIR` (default `target/bench-e2e`), `--write-benchmarks-md`
//! (updates BENCHMARKS.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use headroom_tests::corpus;
use headroom_tests::envoy::{Envoy, LocalConfig, plugin_wasm};
use headroom_tests::headroom::Process;
use headroom_tests::upstream::{Reply, Upstream};

/// The filter's configuration in both hosts for the cold workloads: no replay, so every
/// request compresses afresh.
const FILTER_CONFIG: &str = r#"{"replay_store_bytes":0}"#;

/// The filter's configuration for the later-turn workloads: the defaults (replay on).
const WARM_FILTER_CONFIG: &str = "{}";

#[derive(Clone)]
struct Options {
    rounds: usize,
    concurrency: usize,
    chunk_delay_ms: u64,
    /// A client's pause between a response and its next request (0: back to back). Work a
    /// proxy does after a response only delays the next request when there is no pause.
    think_ms: u64,
    /// The upstream's pause before each response (0: at once).
    answer_delay_ms: u64,
    out: PathBuf,
    write_md: bool,
    /// Only the workloads whose name contains this (all when empty).
    only: String,
}

fn options() -> Options {
    let mut o = Options {
        rounds: 5,
        concurrency: 8,
        chunk_delay_ms: 5,
        think_ms: 0,
        answer_delay_ms: 0,
        out: PathBuf::from("target/bench-e2e"),
        write_md: false,
        only: String::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let next = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--quick" => o.rounds = 2,
            "--rounds" => {
                o.rounds = next.parse().unwrap_or(o.rounds);
                i += 1;
            }
            "--concurrency" => {
                o.concurrency = next.parse().unwrap_or(o.concurrency);
                i += 1;
            }
            "--chunk-delay-ms" => {
                o.chunk_delay_ms = next.parse().unwrap_or(o.chunk_delay_ms);
                i += 1;
            }
            "--answer-delay-ms" => {
                o.answer_delay_ms = next.parse().unwrap_or(o.answer_delay_ms);
                i += 1;
            }
            "--think-ms" => {
                o.think_ms = next.parse().unwrap_or(o.think_ms);
                i += 1;
            }
            "--out" => {
                o.out = PathBuf::from(next);
                i += 1;
            }
            "--only" => {
                o.only = next;
                i += 1;
            }
            "--write-benchmarks-md" => o.write_md = true,
            _ => {} // cargo bench passes `--bench`
        }
        i += 1;
    }
    o
}

/// One kind of request.
struct Workload {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    stream: bool,
    /// Requests per target per round at concurrency 1 (scaled up at higher concurrency).
    per_round: usize,
    /// A later turn: sent to the filter targets with replay on, after one priming request.
    later_turn: bool,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "tiny chat",
            path: "/v1/chat/completions",
            body: corpus::tiny_chat(false),
            stream: false,
            per_round: 60,
            later_turn: false,
        },
        Workload {
            name: "agent 110 KB, 300-record JSON tool output",
            path: "/v1/chat/completions",
            body: corpus::agent_json_request(300, false),
            stream: false,
            per_round: 30,
            later_turn: false,
        },
        Workload {
            name: "agent 165 KB log tool output",
            path: "/v1/chat/completions",
            body: corpus::agent_log_request(155_000),
            stream: false,
            per_round: 30,
            later_turn: false,
        },
        Workload {
            name: "agent 325 KB, four tool results",
            path: "/v1/chat/completions",
            body: corpus::agent_multi_request(),
            stream: false,
            per_round: 20,
            later_turn: false,
        },
        Workload {
            name: "agent 110 KB later turn (JSON output decided before)",
            path: "/v1/chat/completions",
            body: corpus::agent_json_request(300, false),
            stream: false,
            per_round: 30,
            later_turn: true,
        },
        Workload {
            name: "agent 325 KB later turn (four outputs decided before)",
            path: "/v1/chat/completions",
            body: corpus::agent_multi_request(),
            stream: false,
            per_round: 20,
            later_turn: true,
        },
        Workload {
            name: "streaming tiny chat (SSE)",
            path: "/v1/chat/completions",
            body: corpus::tiny_chat(true),
            stream: true,
            per_round: 20,
            later_turn: false,
        },
        Workload {
            name: "streaming agent 110 KB (compressed, SSE)",
            path: "/v1/chat/completions",
            body: corpus::agent_json_request(300, true),
            stream: true,
            per_round: 20,
            later_turn: false,
        },
    ]
}

/// A process whose CPU and memory we read from /proc.
#[derive(Clone, Copy)]
struct Pid(u32);

impl Pid {
    fn cpu_seconds(self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let hz = 100.0; // USER_HZ on Linux
        (ticks(11) + ticks(12)) / hz
    }

    fn status_kb(self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

struct Target {
    name: &'static str,
    addr: SocketAddr,
    pid: Option<Pid>,
    /// Where later turns go (a filter target with replay on), when it differs from `addr`.
    later_turn: Option<(SocketAddr, Pid)>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Target {
    /// The address and process that serve `w`.
    fn serving(&self, w: &Workload) -> (SocketAddr, Option<Pid>) {
        match self.later_turn {
            Some((addr, pid)) if w.later_turn => (addr, Some(pid)),
            _ => (self.addr, self.pid),
        }
    }
}

#[derive(Default, Clone)]
struct Samples {
    latency_ms: Vec<f64>,
    ttfb_ms: Vec<f64>,
    wall_s: f64,
    requests: usize,
    cpu_s: f64,
}

async fn one_request(target: &Target, w: &Workload) -> Result<(f64, f64)> {
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://{}{}", target.serving(w).0, w.path))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-bench")
        .body(Full::new(Bytes::from(w.body.clone())))?;
    let start = Instant::now();
    let response = target.client.request(request).await?;
    ensure!(
        response.status() == 200,
        "{}: status {}",
        target.name,
        response.status()
    );
    let mut body = response.into_body();
    let mut ttfb = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data()
            && !data.is_empty()
            && ttfb.is_none()
        {
            ttfb = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    Ok((
        total.as_secs_f64() * 1e3,
        ttfb.unwrap_or(total).as_secs_f64() * 1e3,
    ))
}

async fn batch(
    target: &Arc<Target>,
    w: &Arc<Workload>,
    requests: usize,
    concurrency: usize,
    think: Duration,
) -> Result<Samples> {
    let pid = target.serving(w).1;
    let cpu0 = pid.map(Pid::cpu_seconds).unwrap_or(0.0);
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (target, w, next) = (target.clone(), w.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                out.push(one_request(&target, &w).await?);
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
            anyhow::Ok(out)
        }));
    }
    let mut samples = Samples::default();
    for t in tasks {
        for (latency, ttfb) in t.await?? {
            samples.latency_ms.push(latency);
            samples.ttfb_ms.push(ttfb);
        }
    }
    samples.wall_s = start.elapsed().as_secs_f64();
    samples.requests = requests;
    samples.cpu_s = pid.map(Pid::cpu_seconds).unwrap_or(0.0) - cpu0;
    Ok(samples)
}

fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (q * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(http)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let o = options();
    ensure!(
        o.only.is_empty() || !o.write_md,
        "--write-benchmarks-md needs every workload (no --only)"
    );
    let delay = Duration::from_millis(o.chunk_delay_ms);
    let upstream = Upstream::start(Reply::Provider { chunk_delay: delay }).await?;
    upstream.set_answer_delay(Duration::from_millis(o.answer_delay_ms));
    let up = upstream.addr();
    let url = format!("http://{up}");

    // A module cache of this run's own: the first host compiles the filter into it, the
    // second loads the artifact (what every later start of `headroom` does).
    let cache_dir = o.out.join("module-cache");
    let _ = std::fs::remove_dir_all(&cache_dir);
    let cache = cache_dir.to_string_lossy().into_owned();
    let start_host = |config: &str| {
        Process::start(
            &[
                "--workers",
                "2",
                "--openai-api-url",
                &url,
                "--anthropic-api-url",
                &url,
                "--plugin-config",
                config,
                // Quiet, but for the line that says where it listens.
                "--log-level",
                "warn,headroom_host::proxy=info",
            ],
            &[("HEADROOM_CACHE_DIR", cache.as_str())],
        )
    };
    let host = start_host(FILTER_CONFIG)?;
    let host_warm = start_host(WARM_FILTER_CONFIG)?;
    let host_pid = Pid(host.pid());
    // `HEADROOM_PLUGIN` (which `headroom` reads too) runs another build of the filter in both
    // proxies: how one change is measured against the build before it.
    let wasm = match std::env::var_os("HEADROOM_PLUGIN") {
        Some(path) => PathBuf::from(path),
        None => plugin_wasm()?,
    };
    let local_with = |wasm_path: Option<PathBuf>, config: &str| LocalConfig {
        listener_port: 0,
        admin_port: 0,
        openai_upstream_port: up.port(),
        anthropic_upstream_port: up.port(),
        wasm_path,
        plugin_config_json: config.into(),
    };
    let local = |wasm_path: Option<PathBuf>| local_with(wasm_path, FILTER_CONFIG);
    let envoy_plain = Envoy::start(local(None), 2).await?;
    let envoy_filter = Envoy::start(local(Some(wasm.clone())), 2).await?;
    let envoy_filter_warm =
        Envoy::start(local_with(Some(wasm.clone()), WARM_FILTER_CONFIG), 2).await?;

    let targets: Vec<Arc<Target>> = vec![
        Arc::new(Target {
            name: "direct",
            addr: up,
            pid: None,
            later_turn: None,
            client: client(),
        }),
        Arc::new(Target {
            name: "headroom",
            addr: host.addr(),
            pid: Some(host_pid),
            later_turn: Some((host_warm.addr(), Pid(host_warm.pid()))),
            client: client(),
        }),
        Arc::new(Target {
            name: "envoy",
            addr: envoy_plain.listener_addr,
            pid: Some(Pid(envoy_plain.pid())),
            later_turn: None,
            client: client(),
        }),
        Arc::new(Target {
            name: "envoy+filter",
            addr: envoy_filter.listener_addr,
            pid: Some(Pid(envoy_filter.pid())),
            later_turn: Some((
                envoy_filter_warm.listener_addr,
                Pid(envoy_filter_warm.pid()),
            )),
            client: client(),
        }),
    ];

    // Idle memory: the host after start and one request; Envoy's per-worker VM cost from the
    // RSS of Envoy + filter at one and at four workers.
    let tiny = Arc::new(Workload {
        name: "warm-up",
        path: "/v1/chat/completions",
        body: corpus::tiny_chat(false),
        stream: false,
        per_round: 1,
        later_turn: false,
    });
    for t in &targets {
        batch(t, &tiny, 4, 1, Duration::ZERO)
            .await
            .with_context(|| format!("warm-up of {}", t.name))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let host_idle_rss_kb = host_pid.status_kb("VmRSS:");
    // The second host started after the first had compiled the module: it loaded the cached
    // artifact, as every start after the first does.
    let host_cached_idle_rss_kb = Pid(host_warm.pid()).status_kb("VmRSS:");
    let mut rss_by_workers = BTreeMap::new();
    for workers in [1u32, 4] {
        let e = Envoy::start(local(Some(wasm.clone())), workers).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_by_workers.insert(workers, Pid(e.pid()).status_kb("VmRSS:"));
    }
    let plain_rss_kb = Pid(envoy_plain.pid()).status_kb("VmRSS:");
    let filter_rss_kb = Pid(envoy_filter.pid()).status_kb("VmRSS:");
    let per_worker_vm_kb = (rss_by_workers[&4] as f64 - rss_by_workers[&1] as f64) / 3.0;

    let think = Duration::from_millis(o.think_ms);
    let mut results = Vec::new();
    for w in workloads().into_iter().filter(|w| w.name.contains(&o.only)) {
        let w = Arc::new(w);
        if w.later_turn {
            // The turn that first sent these outputs: afterwards every request is a later turn.
            for t in &targets {
                batch(t, &w, 1, 1, Duration::ZERO)
                    .await
                    .with_context(|| format!("priming {} via {}", w.name, t.name))?;
            }
        }
        for concurrency in [1, o.concurrency] {
            let per_round = if concurrency == 1 {
                w.per_round
            } else {
                w.per_round * 4
            };
            let mut acc: BTreeMap<&str, Samples> = BTreeMap::new();
            for round in 0..o.rounds {
                for k in 0..targets.len() {
                    let t = &targets[(k + round) % targets.len()];
                    let s = batch(t, &w, per_round, concurrency, think)
                        .await
                        .with_context(|| format!("{} via {}", w.name, t.name))?;
                    let a = acc.entry(t.name).or_default();
                    a.latency_ms.extend(s.latency_ms);
                    a.ttfb_ms.extend(s.ttfb_ms);
                    a.wall_s += s.wall_s;
                    a.requests += s.requests;
                    a.cpu_s += s.cpu_s;
                }
            }
            let row = |name: &str| {
                let s = &acc[name];
                json!({
                    "median_ms": quantile(&s.latency_ms, 0.5),
                    "p99_ms": quantile(&s.latency_ms, 0.99),
                    "ttfb_median_ms": quantile(&s.ttfb_ms, 0.5),
                    "ttfb_p99_ms": quantile(&s.ttfb_ms, 0.99),
                    "rps": s.requests as f64 / s.wall_s,
                    "cpu_ms_per_request": s.cpu_s * 1e3 / s.requests as f64,
                    "requests": s.requests,
                })
            };
            let r = json!({
                "workload": w.name, "bytes": w.body.len(), "stream": w.stream, "concurrency": concurrency,
                "direct": row("direct"), "headroom": row("headroom"), "envoy": row("envoy"), "envoy_filter": row("envoy+filter"),
            });
            eprintln!("{}", summary_line(&r));
            results.push(r);
        }
    }

    let host_peak_kb = host_pid.status_kb("VmHWM:");
    let report = json!({
        "date": chrono_like_now(),
        "machine": machine(),
        "command": "scripts/bench",
        "rounds": o.rounds,
        "concurrency": o.concurrency,
        "chunk_delay_ms": o.chunk_delay_ms,
        "think_ms": o.think_ms,
        "answer_delay_ms": o.answer_delay_ms,
        "memory": {
            "headroom_idle_rss_mb": host_idle_rss_kb as f64 / 1024.0,
            "headroom_cached_idle_rss_mb": host_cached_idle_rss_kb as f64 / 1024.0,
            "headroom_peak_rss_mb": host_peak_kb as f64 / 1024.0,
            "envoy_rss_mb": plain_rss_kb as f64 / 1024.0,
            "envoy_filter_rss_mb": filter_rss_kb as f64 / 1024.0,
            "envoy_filter_peak_rss_mb": Pid(envoy_filter.pid()).status_kb("VmHWM:") as f64 / 1024.0,
            "envoy_filter_rss_mb_by_workers": rss_by_workers.iter().map(|(k, v)| (k.to_string(), json!(*v as f64 / 1024.0))).collect::<serde_json::Map<_, _>>(),
            "envoy_per_extra_worker_vm_mb": per_worker_vm_kb / 1024.0,
        },
        "results": results,
    });
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(
        o.out.join("e2e.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(o.out.join("e2e.md"), &md)?;
    println!("{md}");
    if o.write_md {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (start, end) = ("<!-- e2e:start -->", "<!-- e2e:end -->");
        let updated = match (text.find(start), text.find(end)) {
            (Some(a), Some(b)) if a < b => format!("{}{start}\n{md}\n{}", &text[..a], &text[b..]),
            _ => format!("{text}\n{start}\n{md}\n{end}\n"),
        };
        std::fs::write(&path, updated)?;
        eprintln!("updated {}", path.display());
    }
    drop(host);
    drop(host_warm);
    Ok(())
}

fn summary_line(r: &Value) -> String {
    let f = |who: &str, k: &str| r[who][k].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:<44} c={:<2} direct {:>7.2} ms | headroom +{:.2} ms (p99 +{:.2}) | envoy+filter vs envoy +{:.2} ms (p99 +{:.2})",
        r["workload"].as_str().unwrap_or_default(),
        r["concurrency"],
        f("direct", "median_ms"),
        f("headroom", "median_ms") - f("direct", "median_ms"),
        f("headroom", "p99_ms") - f("direct", "p99_ms"),
        f("envoy_filter", "median_ms") - f("envoy", "median_ms"),
        f("envoy_filter", "p99_ms") - f("envoy", "p99_ms"),
    )
}

fn markdown(report: &Value) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Run {} on {} with `{}` ({} interleaved rounds per target, concurrency 1 and {}, SSE chunk delay {} ms).\n\n",
        report["date"].as_str().unwrap_or_default(),
        report["machine"].as_str().unwrap_or_default(),
        report["command"].as_str().unwrap_or_default(),
        report["rounds"],
        report["concurrency"],
        report["chunk_delay_ms"],
    ));
    md.push_str("Added latency is the proxy's median (p99) minus its baseline's: `headroom` against the upstream directly, Envoy + filter against the same Envoy without the filter. TTFB is time to the first body byte.\n\n");
    md.push_str("| workload | c | direct median | headroom added median / p99 | envoy+filter added median / p99 | rps direct / headroom / envoy / envoy+filter | TTFB added headroom / envoy+filter | CPU ms/req headroom / envoy / envoy+filter |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in report["results"].as_array().into_iter().flatten() {
        let f = |who: &str, k: &str| r[who][k].as_f64().unwrap_or(f64::NAN);
        let ttfb = if r["stream"].as_bool().unwrap_or(false) {
            format!(
                "{:+.2} / {:+.2} ms",
                f("headroom", "ttfb_median_ms") - f("direct", "ttfb_median_ms"),
                f("envoy_filter", "ttfb_median_ms") - f("envoy", "ttfb_median_ms")
            )
        } else {
            "–".into()
        };
        md.push_str(&format!(
            "| {} ({} B) | {} | {:.2} ms | {:+.2} / {:+.2} ms | {:+.2} / {:+.2} ms | {:.0} / {:.0} / {:.0} / {:.0} | {} | {:.2} / {:.2} / {:.2} |\n",
            r["workload"].as_str().unwrap_or_default(),
            r["bytes"],
            r["concurrency"],
            f("direct", "median_ms"),
            f("headroom", "median_ms") - f("direct", "median_ms"),
            f("headroom", "p99_ms") - f("direct", "p99_ms"),
            f("envoy_filter", "median_ms") - f("envoy", "median_ms"),
            f("envoy_filter", "p99_ms") - f("envoy", "p99_ms"),
            f("direct", "rps"),
            f("headroom", "rps"),
            f("envoy", "rps"),
            f("envoy_filter", "rps"),
            ttfb,
            f("headroom", "cpu_ms_per_request"),
            f("envoy", "cpu_ms_per_request"),
            f("envoy_filter", "cpu_ms_per_request"),
        ));
    }
    let m = &report["memory"];
    md.push_str(&format!(
        "\nMemory: headroom idle RSS {:.1} MB after compiling the module, {:.1} MB when it loaded the compiled module from its cache (peak {:.1} MB during the run); Envoy {:.1} MB without the filter, {:.1} MB with it (2 workers); each extra Envoy worker VM {:.2} MB (RSS at 1 and 4 workers: {}).\n",
        m["headroom_idle_rss_mb"].as_f64().unwrap_or(f64::NAN),
        m["headroom_cached_idle_rss_mb"].as_f64().unwrap_or(f64::NAN),
        m["headroom_peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        m["envoy_rss_mb"].as_f64().unwrap_or(f64::NAN),
        m["envoy_filter_rss_mb"].as_f64().unwrap_or(f64::NAN),
        m["envoy_per_extra_worker_vm_mb"].as_f64().unwrap_or(f64::NAN),
        m["envoy_filter_rss_mb_by_workers"],
    ));
    md
}

fn chrono_like_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores ({cpu})")
}
