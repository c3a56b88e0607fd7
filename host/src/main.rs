//! `headroom`: run the Headroom filter as a standalone LLM proxy, compress one request offline
//! with the pipeline component, read the stored per-request records (`metrics`, `summary`) and
//! check a setup (`validate`).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use headroom_host::abi::vm::VmLimits;
use headroom_host::compress::{Api, Compressed, Compressor, Decision};
use headroom_host::operator::validate::{self, ValidateConfig};
use headroom_host::operator::{self, RecordEndpoints};
use headroom_host::proxy::hardening::Hardening;
use headroom_host::proxy::{Proxy, ProxyConfig};
use headroom_host::records::store::{self, Query, Retention};
use headroom_host::records::{self, record::Record, time};
use headroom_host::{paths, savings_file};

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
    /// List the stored per-request records, newest first (a table, or JSON lines with --json).
    Metrics(MetricsArgs),
    /// Totals of the stored records: requests, tokens before/after/saved, compression ratio,
    /// cost and savings.
    Summary(SummaryArgs),
    /// Check a setup: the filter and its configuration, each upstream, the savings directory
    /// and the request database. Exit code 1 when a check fails.
    Validate(ValidateArgs),
}

/// Where provider requests go (shared by `proxy` and `validate`).
#[derive(clap::Args)]
struct UpstreamArgs {
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
}

/// The filter and its configuration (shared by `proxy` and `validate`).
#[derive(clap::Args)]
struct FilterArgs {
    /// A proxy-wasm filter to run instead of the one built into this binary.
    #[arg(long, env = "HEADROOM_PLUGIN")]
    plugin: Option<PathBuf>,
    /// The filter's JSON configuration, inline or as @FILE (default: {}, every field defaulted).
    #[arg(long, env = "HEADROOM_PLUGIN_CONFIG")]
    plugin_config: Option<String>,
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
    /// The token that opens the operators' endpoints (/stats, /stats-history, /dashboard,
    /// retrieval, /metrics, /v1/headroom/*) to clients not on loopback, as
    /// `Authorization: Bearer <token>` (sets the filter configuration's `admin_token`).
    #[arg(long, env = "HEADROOM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A `Host` name the operators' endpoints accept besides the listener's own: `name` (any
    /// port) or `name:port`; repeat the flag, or separate with commas in the variable (sets
    /// the filter configuration's `allowed_hosts`).
    #[arg(
        long = "allowed-host",
        env = "HEADROOM_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// The deployment secret that keys marker hashes and retrieval scopes; give every replica
    /// the same one (sets the filter configuration's `marker_secret`).
    #[arg(long, env = "HEADROOM_MARKER_SECRET", hide_env_values = true)]
    marker_secret: Option<String>,
}

/// `--stateless`, `HEADROOM_STATELESS`: on for 1, true, yes or on (any case), else off.
fn parse_switch(value: &str) -> Result<bool, String> {
    Ok(paths::is_truthy(value))
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, env = "HEADROOM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "HEADROOM_PORT", default_value_t = 8787)]
    port: u16,
    #[command(flatten)]
    upstreams: UpstreamArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "HEADROOM_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log line format: text (coloured only on a terminal) or json (one object per line).
    #[arg(long, env = "HEADROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
    /// Append one JSON line per provider request (the filter's record) to this file.
    #[arg(long, env = "HEADROOM_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Keep nothing on disk: no savings file, no request database (--log-file still works).
    #[arg(
        long,
        env = "HEADROOM_STATELESS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = parse_switch
    )]
    stateless: bool,
    /// Delete stored request records older than this many days (0: keep them regardless of age).
    #[arg(long, env = "HEADROOM_RECORDS_RETENTION_DAYS", default_value_t = 30)]
    records_retention_days: u32,
    /// Keep at most this many stored request records, the newest (0: no limit).
    #[arg(long, env = "HEADROOM_RECORDS_MAX_ROWS", default_value_t = 1_000_000)]
    records_max_rows: u64,
    #[command(flatten)]
    hardening: HardeningArgs,
}

/// The connection limit and the client and upstream timeouts of `headroom proxy`.
#[derive(clap::Args)]
struct HardeningArgs {
    /// Client connections open at once (every worker together); one more gets 503 and is
    /// closed (0: no limit).
    #[arg(long, env = "HEADROOM_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Milliseconds a client has to send a request's headers, from their first byte.
    #[arg(long, env = "HEADROOM_HEADER_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Milliseconds the proxy waits, in total, for a request's body from the client; then 408
    /// and the connection is closed.
    #[arg(long, env = "HEADROOM_BODY_TIMEOUT_MS", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// Milliseconds a keep-alive connection with no request in flight stays open.
    #[arg(long, env = "HEADROOM_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// Milliseconds to open a TCP connection to an upstream; then 504.
    #[arg(long, env = "HEADROOM_UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    upstream_connect_timeout_ms: u64,
    /// Milliseconds from the end of a request to the upstream's response headers; then 504.
    #[arg(long, env = "HEADROOM_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    upstream_first_byte_timeout_ms: u64,
}

impl HardeningArgs {
    fn limits(&self) -> Hardening {
        Hardening {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            upstream_connect_timeout: Duration::from_millis(self.upstream_connect_timeout_ms),
            upstream_first_byte_timeout: Duration::from_millis(self.upstream_first_byte_timeout_ms),
        }
    }
}

/// Which stored records to read (shared by `metrics` and `summary`).
#[derive(clap::Args)]
struct SelectionArgs {
    /// Records since: a duration back from now (30m, 1h, 2d, 1w), unix seconds or RFC 3339.
    #[arg(long)]
    since: Option<String>,
    /// Records until: a duration back from now, unix seconds or RFC 3339.
    #[arg(long)]
    until: Option<String>,
    /// The request database (default: HEADROOM_DB_PATH, else headroom.db beside the savings
    /// file).
    #[arg(long)]
    db: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MetricsArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// Only records of this model.
    #[arg(long)]
    model: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// One JSON object per line (the record's fields) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SummaryArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ValidateArgs {
    #[command(flatten)]
    upstreams: UpstreamArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Check as `headroom proxy --stateless` would run (no request database).
    #[arg(
        long,
        env = "HEADROOM_STATELESS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = parse_switch
    )]
    stateless: bool,
    /// Seconds each upstream gets to answer.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// The report as one JSON object (as `GET /v1/headroom/validate` gives it).
    #[arg(long)]
    json: bool,
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
        Command::Metrics(args) => run_metrics(args),
        Command::Summary(args) => run_summary(args),
        Command::Validate(args) => run_validate(args),
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

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(filter: &str, format: LogFormat) -> i32 {
    let level = match filter {
        "trace" => 0,
        "debug" => 1,
        "warn" => 3,
        "error" => 4,
        _ => 2,
    };
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    // Colour codes only for a person at a terminal, never in a file or a log shipper.
    use std::io::IsTerminal as _;
    let ansi = format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = builder.with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    level
}

/// The filter configuration with `budget` set from `--budget` / `--budget-period` (the filter
/// validates the values, so a bad period is refused at start with the field named).
/// The filter configuration with the budget's limit and period set; the rest of a configured
/// `budget` object (per-key and per-project budgets, policies) is kept.
fn with_budget(config: &[u8], limit_usd: f64, period: &str) -> Result<Vec<u8>> {
    let mut budget = if config.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(config).context("the filter configuration is not JSON")?;
        value
            .get("budget")
            .cloned()
            .unwrap_or(serde_json::json!({}))
    };
    let object = budget
        .as_object_mut()
        .context("the filter configuration's budget is not a JSON object")?;
    object.insert("limit_usd".into(), limit_usd.into());
    object.insert("period".into(), period.into());
    with_field(config, "budget", budget)
}

/// The filter configuration with the top-level `field` set to `value`.
fn with_field(config: &[u8], field: &str, value: serde_json::Value) -> Result<Vec<u8>> {
    let field_value = value;
    let mut value: serde_json::Value = if config.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(config).context("the filter configuration is not JSON")?
    };
    let object = value
        .as_object_mut()
        .context("the filter configuration is not a JSON object")?;
    object.insert(field.into(), field_value);
    Ok(serde_json::to_vec(&value)?)
}

/// The filter module, where it came from, and its configuration (with `--budget`,
/// `--admin-token`, `--allowed-host` and `--marker-secret` applied).
fn load_filter(args: &FilterArgs) -> Result<(Vec<u8>, String, Vec<u8>)> {
    let (plugin_wasm, source) = match &args.plugin {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("reading the filter {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            headroom_host::EMBEDDED_PLUGIN.to_vec(),
            "the built-in filter".to_string(),
        ),
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
    let plugin_config = match args.admin_token.as_deref() {
        Some(token) => with_field(&plugin_config, "admin_token", token.into())?,
        None => plugin_config,
    };
    let plugin_config = match args.allowed_hosts.as_slice() {
        [] => plugin_config,
        hosts => with_field(&plugin_config, "allowed_hosts", hosts.into())?,
    };
    let plugin_config = match args.marker_secret.as_deref() {
        Some(secret) => with_field(&plugin_config, "marker_secret", secret.into())?,
        None => plugin_config,
    };
    Ok((plugin_wasm, source, plugin_config))
}

/// Hands the filter's per-request record (its `headroom_record` property) to the record
/// writer and the OTLP exporter when a stream ends: the binary wires the layers together.
struct RecordHook;

impl headroom_host::abi::state::StreamEndHook for RecordHook {
    fn stream_ended(&self, properties: &mut std::collections::HashMap<String, Vec<u8>>) {
        if let Some(record) = properties.remove(records::PROPERTY) {
            headroom_host::otel::observe(&record);
            records::submit(record);
        }
    }
}

/// `http_call` clusters beside the providers: (name, base URL).
type Clusters = Vec<(String, String)>;

/// The seed's Langfuse variables as the filter's `langfuse` block (unless the configuration
/// has one) and the `langfuse` cluster it exports through.
fn with_langfuse_env(plugin_config: Vec<u8>) -> Result<(Vec<u8>, Clusters)> {
    let (langfuse, warnings) =
        headroom_host::otel::langfuse::from_env(|name| std::env::var(name).ok());
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let Some(langfuse) = langfuse else {
        return Ok((plugin_config, Vec::new()));
    };
    let configured = serde_json::from_slice::<serde_json::Value>(&plugin_config)
        .ok()
        .is_some_and(|v| v.get("langfuse").is_some());
    let clusters = langfuse
        .cluster_url
        .map(|url| vec![("langfuse".to_owned(), url)])
        .unwrap_or_default();
    if configured {
        return Ok((plugin_config, clusters));
    }
    Ok((
        with_field(&plugin_config, "langfuse", langfuse.block)?,
        clusters,
    ))
}

fn vm_limits(memory_mb: usize, call_timeout_ms: u64) -> VmLimits {
    VmLimits {
        memory_bytes: memory_mb << 20,
        call_timeout: Duration::from_millis(call_timeout_ms),
    }
}

fn run_proxy(args: ProxyArgs) -> Result<()> {
    let guest_log_level = init_logging(&args.log_level, args.log_format);
    let (plugin_wasm, plugin_source, plugin_config) = load_filter(&args.filter)?;
    let (plugin_config, clusters) = with_langfuse_env(plugin_config)?;
    let database = (!args.stateless).then(|| paths::database_path(&paths::process_env));
    let limits = vm_limits(args.vm_memory_mb, args.vm_call_timeout_ms);
    let cache_dir = headroom_host::abi::module_cache::default_dir();
    let records = records::start(records::Config {
        log_file: args.log_file.clone(),
        database: database.clone(),
        retention: Retention {
            days: args.records_retention_days,
            max_rows: args.records_max_rows,
        },
    })?;
    headroom_host::abi::state::set_stream_end_hook(std::sync::Arc::new(RecordHook));
    let endpoints = RecordEndpoints::new(Some(ValidateConfig {
        plugin_wasm: plugin_wasm.as_slice().into(),
        plugin_source,
        plugin_config: plugin_config.clone(),
        openai_url: args.upstreams.openai_api_url.clone(),
        anthropic_url: args.upstreams.anthropic_api_url.clone(),
        savings_path: paths::savings_path(&paths::process_env),
        database_path: database,
        vm_limits: limits.clone(),
        cache_dir: cache_dir.clone(),
        timeout: Duration::from_secs(5),
    }));
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // The savings ledger is in shared data before the first request can reach a VM.
    let shared_data = std::sync::Arc::new(headroom_host::abi::shared::SharedData::default());
    let savings = savings_file::start(
        paths::savings_path(&paths::process_env),
        args.stateless,
        shared_data.clone(),
    );
    let config = ProxyConfig {
        listen: SocketAddr::new(args.host, args.port),
        openai_url: args.upstreams.openai_api_url,
        anthropic_url: args.upstreams.anthropic_api_url,
        plugin_wasm,
        plugin_config,
        workers,
        vm_limits: limits,
        cache_dir,
        guest_log_level,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        shared_data: shared_data.clone(),
        hardening: args.hardening.limits(),
        clusters,
        endpoints: Some(std::sync::Arc::new(endpoints)),
    };
    // OpenTelemetry metrics (HEADROOM_OTEL_METRICS_*): started before the proxy listens, so no
    // request's record is missed; `/stats.otel` is published in shared data either way.
    let otel = headroom_host::otel::start_from_env(shared_data.clone());
    let proxy = Proxy::start(config)?;
    otel.attach(proxy.metrics().clone());
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
    otel.shutdown();
    if let Some(savings) = savings {
        savings.shutdown();
    }
    records.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// `--since`/`--until` and `--db` as a query and a database path.
fn selection(args: &SelectionArgs) -> Result<(Query, PathBuf)> {
    let now = time::now_unix();
    let instant = |flag: &str, value: &Option<String>| -> Result<Option<i64>> {
        match value {
            None => Ok(None),
            Some(v) => time::parse_since(v, now).map(Some).ok_or_else(|| {
                BadInput(format!(
                    "{flag} {v:?}: expected a duration (30m, 1h, 2d, 1w), unix seconds or an RFC 3339 time (2026-11-27T07:10:14Z)"
                ))
                .into()
            }),
        }
    };
    let query = Query {
        start: instant("--since", &args.since)?,
        end: instant("--until", &args.until)?,
        ..Query::default()
    };
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| paths::database_path(&paths::process_env));
    Ok((query, path))
}

/// Opens the request database for reading, saying where it was looked for when it is missing.
fn open_database(path: &std::path::Path) -> Result<rusqlite::Connection> {
    if !path.exists() {
        anyhow::bail!(
            "no request database at {} (the proxy creates it unless --stateless; set HEADROOM_DB_PATH or --db if it lives elsewhere)",
            path.display()
        );
    }
    store::open_for_reading(path)
        .with_context(|| format!("opening the request database {}", path.display()))
}

fn run_metrics(args: MetricsArgs) -> Result<()> {
    let (mut query, path) = selection(&args.selection)?;
    query.model = args.model;
    query.limit = Some(args.limit);
    let conn = open_database(&path)?;
    let records =
        store::list(&conn, &query).with_context(|| format!("reading {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        for record in &records {
            writeln!(stdout, "{}", record.to_json())?;
        }
    } else {
        stdout.write_all(records_table(&records).as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

/// Lines of cells, columns padded to their widest cell.
fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `headroom metrics`' table.
fn records_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no records\n".into();
    }
    let dash = || "-".to_string();
    let int = |v: Option<i64>| v.map_or_else(dash, |v| v.to_string());
    let mut rows = vec![
        [
            "time",
            "provider",
            "model",
            "status",
            "stream",
            "tokens",
            "saved",
            "in",
            "out",
            "cost_usd",
            "latency_ms",
            "transforms",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in records {
        rows.push(vec![
            r.time.clone(),
            r.provider.clone(),
            r.model.clone().unwrap_or_else(dash),
            r.status.map_or_else(dash, |s| s.to_string()),
            if r.stream { "yes" } else { "no" }.to_string(),
            match (r.tokens_before, r.tokens_after) {
                (Some(b), Some(a)) => format!("{b}→{a}"),
                _ => dash(),
            },
            r.tokens_saved.to_string(),
            int(r.input_tokens),
            int(r.output_tokens),
            r.cost_usd.map_or_else(dash, |c| format!("{c:.6}")),
            r.latency_ms.map_or_else(dash, |l| format!("{l:.1}")),
            if r.transforms.is_empty() {
                dash()
            } else {
                r.transforms.join(",")
            },
        ]);
    }
    render_table(&rows)
}

fn run_summary(args: SummaryArgs) -> Result<()> {
    let (query, path) = selection(&args.selection)?;
    let conn = open_database(&path)?;
    let summary =
        store::summary(&conn, &query).with_context(|| format!("reading {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = operator::endpoints::summary_json(&summary, &query, None);
        writeln!(stdout, "{value}")?;
    } else {
        let range =
            |t: Option<i64>, open: &str| t.map_or_else(|| open.to_string(), time::format_unix);
        let unknown = match summary.requests_unknown_cost {
            0 => "every request priced".to_string(),
            1 => "1 request of unknown cost not included".to_string(),
            n => format!("{n} requests of unknown cost not included"),
        };
        let ratio = summary.avg_compression_ratio.map_or_else(
            || "-".to_string(),
            |r| format!("{r:.3} (tokens after / before)"),
        );
        let rows = vec![
            vec![
                "records".to_string(),
                format!(
                    "{} to {}",
                    range(query.start, "the first"),
                    range(query.end, "the last")
                ),
            ],
            vec!["requests".into(), summary.total_requests.to_string()],
            vec![
                "tokens before".into(),
                summary.total_tokens_before.to_string(),
            ],
            vec![
                "tokens after".into(),
                summary.total_tokens_after.to_string(),
            ],
            vec![
                "tokens saved".into(),
                format!(
                    "{} ({:.1} per request)",
                    summary.total_tokens_saved, summary.avg_tokens_saved
                ),
            ],
            vec!["compression ratio".into(), ratio],
            vec![
                "input tokens".into(),
                summary.total_input_tokens.to_string(),
            ],
            vec![
                "output tokens".into(),
                summary.total_output_tokens.to_string(),
            ],
            vec![
                "cost".into(),
                format!("${:.6} ({unknown})", summary.total_cost_usd),
            ],
            vec![
                "savings".into(),
                format!("${:.6}", summary.total_cost_saved_usd),
            ],
        ];
        stdout.write_all(render_table(&rows).as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

fn run_validate(args: ValidateArgs) -> Result<()> {
    let (plugin_wasm, plugin_source, plugin_config) = load_filter(&args.filter)?;
    let config = ValidateConfig {
        plugin_wasm: plugin_wasm.into(),
        plugin_source,
        plugin_config,
        openai_url: args.upstreams.openai_api_url,
        anthropic_url: args.upstreams.anthropic_api_url,
        savings_path: paths::savings_path(&paths::process_env),
        database_path: (!args.stateless).then(|| paths::database_path(&paths::process_env)),
        vm_limits: VmLimits::default(),
        cache_dir: headroom_host::abi::module_cache::default_dir(),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(validate::run(std::sync::Arc::new(config)));
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        for check in &report.checks {
            writeln!(stdout, "{}", check.line())?;
        }
    }
    stdout.flush()?;
    if !report.valid {
        drop(stdout);
        std::process::exit(1);
    }
    Ok(())
}
