//! `headroom`: run the Headroom filter as a standalone LLM proxy, or compress one request
//! offline with the pipeline component.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use headroom_host::abi::vm::VmLimits;
use headroom_host::compress::{Api, Compressed, Compressor, Decision};
use headroom_host::proxy::{Proxy, ProxyConfig};

#[derive(Parser)]
#[command(
    name = "headroom",
    version,
    about = "Headroom: compress what an LLM reads, account for every token."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy: point an OpenAI or Anthropic client's base URL at it.
    Proxy(ProxyArgs),
    /// Compress one request body offline: the compressed body on stdout, what was done on
    /// stderr. Exit code 2 when the input is at fault, 1 on an internal error.
    Compress(CompressArgs),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, env = "HEADROOM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "HEADROOM_PORT", default_value_t = 8787)]
    port: u16,
    /// Upstream for OpenAI-compatible APIs (every /v1/* path but /v1/messages).
    #[arg(
        long,
        env = "HEADROOM_OPENAI_API_URL",
        default_value = "https://api.openai.com"
    )]
    openai_api_url: String,
    /// Upstream for the Anthropic Messages API (/v1/messages).
    #[arg(
        long,
        env = "HEADROOM_ANTHROPIC_API_URL",
        default_value = "https://api.anthropic.com"
    )]
    anthropic_api_url: String,
    /// A proxy-wasm filter to run instead of the one built into this binary.
    #[arg(long, env = "HEADROOM_PLUGIN")]
    plugin: Option<PathBuf>,
    /// The filter's JSON configuration, inline or as @FILE (default: {}, every field defaulted).
    #[arg(long, env = "HEADROOM_PLUGIN_CONFIG")]
    plugin_config: Option<String>,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "HEADROOM_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Worker threads, each with its own filter VM (default: one per core).
    #[arg(long, env = "HEADROOM_WORKERS")]
    workers: Option<usize>,
    /// Memory one filter VM may use, in MiB; beyond it the VM traps and the request fails open.
    #[arg(long, env = "HEADROOM_VM_MEMORY_MB", default_value_t = 512)]
    vm_memory_mb: usize,
    /// CPU time one filter call may take, in milliseconds, before it is interrupted.
    #[arg(long, env = "HEADROOM_VM_CALL_TIMEOUT_MS", default_value_t = 10_000)]
    vm_call_timeout_ms: u64,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "HEADROOM_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Spending limit in USD per period: over it, provider requests get a 429 (sets the
    /// filter configuration's `budget`).
    #[arg(long, env = "HEADROOM_BUDGET")]
    budget: Option<f64>,
    /// The budget's period (UTC): hourly, daily, weekly or monthly.
    #[arg(
        long,
        env = "HEADROOM_BUDGET_PERIOD",
        default_value = "daily",
        requires = "budget"
    )]
    budget_period: String,
}

#[derive(clap::Args)]
struct CompressArgs {
    /// The request body (JSON) to compress; `-` reads stdin.
    file: PathBuf,
    /// The provider API the body is written for (default: inferred from the body).
    #[arg(long, value_enum)]
    api: Option<ApiArg>,
    /// The pipeline's JSON configuration (the filter's `pipeline` object), inline or as @FILE
    /// (default: every field defaulted).
    #[arg(long)]
    config: Option<String>,
    /// Print one JSON object on stdout (the body, the totals and one entry per tool output)
    /// instead of the body alone and a table on stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ApiArg {
    /// OpenAI Chat Completions (/v1/chat/completions).
    OpenaiChat,
    /// OpenAI Responses (/v1/responses).
    OpenaiResponses,
    /// Anthropic Messages (/v1/messages).
    AnthropicMessages,
}

impl From<ApiArg> for Api {
    fn from(api: ApiArg) -> Api {
        match api {
            ApiArg::OpenaiChat => Api::OpenaiChat,
            ApiArg::OpenaiResponses => Api::OpenaiResponses,
            ApiArg::AnthropicMessages => Api::AnthropicMessages,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) => run_proxy(args),
        Command::Compress(args) => run_compress(args),
    };
    if let Err(e) = result {
        eprintln!("headroom: {e:#}");
        let code = if e.is::<BadInput>() { 2 } else { 1 };
        std::process::exit(code);
    }
}

/// An error the user's input caused (exit code 2).
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn run_compress(args: CompressArgs) -> Result<()> {
    let name = args.file.display().to_string();
    let body = if args.file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| BadInput(format!("reading stdin: {e}")))?;
        body
    } else {
        std::fs::read(&args.file).map_err(|e| BadInput(format!("reading {name}: {e}")))?
    };
    let config = match args.config.as_deref() {
        Some(s) if s.starts_with('@') => Some(
            std::fs::read_to_string(&s[1..])
                .map_err(|e| BadInput(format!("reading the configuration {}: {e}", &s[1..])))?,
        ),
        other => other.map(str::to_owned),
    };
    let api = args
        .api
        .map(Api::from)
        .unwrap_or_else(|| headroom_host::compress::infer_api(&body));
    let mut compressor = Compressor::new()?;
    let out = match compressor.compress(&body, api, config.as_deref())? {
        Ok(out) => out,
        Err(e) if e.is_bad_input() => {
            return Err(BadInput(format!(
                "{name} as {}: {}: {}",
                api.as_str(),
                e.kind(),
                e.message()
            ))
            .into());
        }
        Err(e) => anyhow::bail!("{name}: {}: {}", e.kind(), e.message()),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut line = manifest_json(&out)?;
        line.push(b'\n');
        stdout.write_all(&line)?;
    } else {
        stdout.write_all(&out.body)?;
        eprint!("{}", manifest_table(api, &out));
    }
    stdout.flush()?;
    Ok(())
}

/// The body in `--json` output.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum JsonBody {
    /// The body as it is, byte for byte.
    Raw(Box<serde_json::value::RawValue>),
    /// A body serde_json does not take as JSON (the pipeline's parser accepted it, e.g. a lone
    /// surrogate escape), as a string.
    Text(String),
}

/// `--json`: the body (as JSON, byte for byte) and the manifest in one object.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    body: JsonBody,
    changed: bool,
    model: Option<&'a str>,
    tokenizer: &'a str,
    exact: bool,
    tokens_saved: u64,
    bytes_before: u64,
    bytes_after: u64,
    blocks: Vec<JsonBlock<'a>>,
}

/// One tool output in `--json` output.
#[derive(serde::Serialize)]
struct JsonBlock<'a> {
    location: &'a str,
    tool: Option<&'a str>,
    kind: Option<&'a str>,
    strategy: &'a str,
    decision: &'static str,
    reason: &'a str,
    hash: &'a str,
    bytes_before: u64,
    bytes_after: u64,
    tokens_before: Option<u64>,
    tokens_after: Option<u64>,
}

/// `--json`: one line of JSON.
fn manifest_json(out: &Compressed) -> Result<Vec<u8>> {
    let body = match std::str::from_utf8(&out.body)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
    {
        Some(raw) => JsonBody::Raw(raw),
        None => JsonBody::Text(String::from_utf8_lossy(&out.body).into_owned()),
    };
    let blocks = out
        .blocks
        .iter()
        .map(|b| JsonBlock {
            location: &b.location,
            tool: b.tool.as_deref(),
            kind: b.kind.as_deref(),
            strategy: &b.strategy,
            decision: b.decision.as_str(),
            reason: &b.reason,
            hash: &b.hash,
            bytes_before: b.bytes_before,
            bytes_after: b.bytes_after,
            tokens_before: b.tokens_before,
            tokens_after: b.tokens_after,
        })
        .collect();
    let output = JsonOutput {
        body,
        changed: out.changed,
        model: out.model.as_deref(),
        tokenizer: &out.tokenizer,
        exact: out.exact,
        tokens_saved: out.tokens_saved,
        bytes_before: out.bytes_before,
        bytes_after: out.bytes_after,
        blocks,
    };
    Ok(serde_json::to_vec(&output)?)
}

/// The human-readable manifest: one line per tool output and a totals line.
fn manifest_table(api: Api, out: &Compressed) -> String {
    let dash = || "-".to_owned();
    let tokens = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => format!("{b}→{a}"),
        _ => dash(),
    };
    let mut rows = vec![
        [
            "location", "tool", "kind", "strategy", "decision", "bytes", "tokens", "reason",
        ]
        .map(str::to_owned),
    ];
    for b in &out.blocks {
        rows.push([
            b.location.clone(),
            b.tool.clone().unwrap_or_else(dash),
            b.kind.clone().unwrap_or_else(dash),
            b.strategy.clone(),
            b.decision.as_str().to_owned(),
            format!("{}→{}", b.bytes_before, b.bytes_after),
            tokens(b.tokens_before, b.tokens_after),
            b.reason.clone(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    if out.blocks.is_empty() {
        text.push_str("no tool outputs found\n");
    } else {
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    let replaced = out
        .blocks
        .iter()
        .filter(|b| matches!(b.decision, Decision::Compressed | Decision::Replayed))
        .count();
    let percent = if out.bytes_before == 0 {
        0.0
    } else {
        100.0 * (out.bytes_before as f64 - out.bytes_after as f64) / out.bytes_before as f64
    };
    let exactness = if out.exact {
        format!("exact, {}", out.tokenizer)
    } else {
        format!("estimated, {}", out.tokenizer)
    };
    text.push_str(&format!(
        "total: {} of {} tool outputs replaced ({}, model {}); body {}→{} bytes ({percent:.1}% smaller); {} tokens saved ({exactness})\n",
        replaced,
        out.blocks.len(),
        api.as_str(),
        out.model.as_deref().unwrap_or("-"),
        out.bytes_before,
        out.bytes_after,
        out.tokens_saved,
    ));
    text
}

fn init_logging(filter: &str) -> i32 {
    let level = match filter {
        "trace" => 0,
        "debug" => 1,
        "warn" => 3,
        "error" => 4,
        _ => 2,
    };
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .init();
    level
}

/// The filter configuration with `budget` set from `--budget` / `--budget-period` (the filter
/// validates the values, so a bad period is refused at start with the field named).
fn with_budget(config: &[u8], limit_usd: f64, period: &str) -> Result<Vec<u8>> {
    let mut value: serde_json::Value = if config.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(config).context("the filter configuration is not JSON")?
    };
    let object = value
        .as_object_mut()
        .context("the filter configuration is not a JSON object")?;
    object.insert(
        "budget".into(),
        serde_json::json!({"limit_usd": limit_usd, "period": period}),
    );
    Ok(serde_json::to_vec(&value)?)
}

fn run_proxy(args: ProxyArgs) -> Result<()> {
    let guest_log_level = init_logging(&args.log_level);
    let plugin_wasm = match &args.plugin {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("reading the filter {}", path.display()))?
        }
        None => headroom_host::EMBEDDED_PLUGIN.to_vec(),
    };
    let plugin_config = match args.plugin_config.as_deref() {
        Some(s) if s.starts_with('@') => std::fs::read(&s[1..])
            .with_context(|| format!("reading the filter configuration {}", &s[1..]))?,
        Some(s) => s.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let plugin_config = match args.budget {
        Some(limit) => with_budget(&plugin_config, limit, &args.budget_period)?,
        None => plugin_config,
    };
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let config = ProxyConfig {
        listen: SocketAddr::new(args.host, args.port),
        openai_url: args.openai_api_url,
        anthropic_url: args.anthropic_api_url,
        plugin_wasm,
        plugin_config,
        workers,
        vm_limits: VmLimits {
            memory_bytes: args.vm_memory_mb << 20,
            call_timeout: Duration::from_millis(args.vm_call_timeout_ms),
        },
        cache_dir: headroom_host::abi::module_cache::default_dir(),
        guest_log_level,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    };
    let proxy = Proxy::start(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        anyhow::Ok(())
    })?;
    proxy.shutdown();
    tracing::info!("stopped");
    Ok(())
}
