//! The command line: every subcommand's flags (clap).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use headroom_host::compress::Api;
use headroom_host::paths;
use headroom_host::proxy::hardening::Hardening;

#[derive(Parser)]
#[command(
    name = "headroom",
    version,
    about = "Headroom: compress what an LLM reads, account for every token."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) struct UpstreamArgs {
    /// Upstream for OpenAI-compatible APIs (every /v1/* path but /v1/messages).
    #[arg(
        long,
        env = "HEADROOM_OPENAI_API_URL",
        default_value = "https://api.openai.com"
    )]
    pub(crate) openai_api_url: String,
    /// Upstream for the Anthropic Messages API (/v1/messages).
    #[arg(
        long,
        env = "HEADROOM_ANTHROPIC_API_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub(crate) anthropic_api_url: String,
}

/// The filter and its configuration (shared by `proxy` and `validate`).
#[derive(clap::Args)]
pub(crate) struct FilterArgs {
    /// A proxy-wasm filter to run instead of the one built into this binary.
    #[arg(long, env = "HEADROOM_PLUGIN")]
    pub(crate) plugin: Option<PathBuf>,
    /// The filter's JSON configuration, inline or as @FILE (default: {}, every field defaulted).
    #[arg(long, env = "HEADROOM_PLUGIN_CONFIG")]
    pub(crate) plugin_config: Option<String>,
    /// Spending limit in USD per period: over it, provider requests get a 429 (sets the
    /// filter configuration's `budget`).
    #[arg(long, env = "HEADROOM_BUDGET")]
    pub(crate) budget: Option<f64>,
    /// The budget's period (UTC): hourly, daily, weekly or monthly.
    #[arg(
        long,
        env = "HEADROOM_BUDGET_PERIOD",
        default_value = "daily",
        requires = "budget"
    )]
    pub(crate) budget_period: String,
    /// The token that opens the operators' endpoints (/stats, /stats-history, /dashboard,
    /// retrieval, /metrics, /v1/headroom/*) to clients not on loopback, as
    /// `Authorization: Bearer <token>` (sets the filter configuration's `admin_token`).
    #[arg(long, env = "HEADROOM_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// A `Host` name the operators' endpoints accept besides the listener's own: `name` (any
    /// port) or `name:port`; repeat the flag, or separate with commas in the variable (sets
    /// the filter configuration's `allowed_hosts`).
    #[arg(
        long = "allowed-host",
        env = "HEADROOM_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub(crate) allowed_hosts: Vec<String>,
    /// The deployment secret that keys marker hashes and retrieval scopes; give every replica
    /// the same one (sets the filter configuration's `marker_secret`).
    #[arg(long, env = "HEADROOM_MARKER_SECRET", hide_env_values = true)]
    pub(crate) marker_secret: Option<String>,
}

/// `--stateless`, `HEADROOM_STATELESS`: on for 1, true, yes or on (any case), else off.
pub(crate) fn parse_switch(value: &str) -> Result<bool, String> {
    Ok(paths::is_truthy(value))
}

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, env = "HEADROOM_HOST", default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "HEADROOM_PORT", default_value_t = 8787)]
    pub(crate) port: u16,
    #[command(flatten)]
    pub(crate) upstreams: UpstreamArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "HEADROOM_LOG_LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    /// Log line format: text (coloured only on a terminal) or json (one object per line).
    #[arg(long, env = "HEADROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Worker threads, each with its own filter VM (default: one per core).
    #[arg(long, env = "HEADROOM_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// Memory one filter VM may use, in MiB; beyond it the VM traps and the request fails open.
    #[arg(long, env = "HEADROOM_VM_MEMORY_MB", default_value_t = 512)]
    pub(crate) vm_memory_mb: usize,
    /// Wall time one filter call may take, in milliseconds, before it is interrupted (the
    /// request fails open and the VM is replaced); 0 for no limit, as in Envoy. The limit's
    /// checks cost about a quarter of the filter's CPU time (BENCHMARKS.md).
    #[arg(long, env = "HEADROOM_VM_CALL_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) vm_call_timeout_ms: u64,
    /// Write /tmp/perf-PID.map naming the filter's compiled functions, for `perf record` /
    /// `perf report` (profiling the guest).
    #[arg(
        long,
        env = "HEADROOM_GUEST_PERF_MAP",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = parse_switch
    )]
    pub(crate) guest_perf_map: bool,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "HEADROOM_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub(crate) shutdown_grace_secs: u64,
    /// Append one JSON line per provider request (the filter's record) to this file.
    #[arg(long, env = "HEADROOM_LOG_FILE")]
    pub(crate) log_file: Option<PathBuf>,
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
    pub(crate) stateless: bool,
    /// Delete stored request records older than this many days (0: keep them regardless of age).
    #[arg(long, env = "HEADROOM_RECORDS_RETENTION_DAYS", default_value_t = 30)]
    pub(crate) records_retention_days: u32,
    /// Keep at most this many stored request records, the newest (0: no limit).
    #[arg(long, env = "HEADROOM_RECORDS_MAX_ROWS", default_value_t = 1_000_000)]
    pub(crate) records_max_rows: u64,
    #[command(flatten)]
    pub(crate) hardening: HardeningArgs,
}

/// The connection limit and the client and upstream timeouts of `headroom proxy`.
#[derive(clap::Args)]
pub(crate) struct HardeningArgs {
    /// Client connections open at once (every worker together); one more gets 503 and is
    /// closed (0: no limit).
    #[arg(long, env = "HEADROOM_MAX_CONNECTIONS", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Milliseconds a client has to send a request's headers, from their first byte.
    #[arg(long, env = "HEADROOM_HEADER_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) header_timeout_ms: u64,
    /// Milliseconds the proxy waits, in total, for a request's body from the client; then 408
    /// and the connection is closed.
    #[arg(long, env = "HEADROOM_BODY_TIMEOUT_MS", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) body_timeout_ms: u64,
    /// Milliseconds a keep-alive connection with no request in flight stays open.
    #[arg(long, env = "HEADROOM_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idle_timeout_ms: u64,
    /// Milliseconds to open a TCP connection to an upstream; then 504.
    #[arg(long, env = "HEADROOM_UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) upstream_connect_timeout_ms: u64,
    /// Milliseconds from the end of a request to the upstream's response headers; then 504.
    #[arg(long, env = "HEADROOM_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) upstream_first_byte_timeout_ms: u64,
}

impl HardeningArgs {
    pub(crate) fn limits(&self) -> Hardening {
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
pub(crate) struct SelectionArgs {
    /// Records since: a duration back from now (30m, 1h, 2d, 1w), unix seconds or RFC 3339.
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Records until: a duration back from now, unix seconds or RFC 3339.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// The request database (default: HEADROOM_DB_PATH, else headroom.db beside the savings
    /// file).
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct MetricsArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    /// Only records of this model.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u64,
    /// One JSON object per line (the record's fields) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct SummaryArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) upstreams: UpstreamArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
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
    pub(crate) stateless: bool,
    /// Seconds each upstream gets to answer.
    #[arg(long, default_value_t = 5)]
    pub(crate) timeout_secs: u64,
    /// The report as one JSON object (as `GET /v1/headroom/validate` gives it).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub(crate) struct CompressArgs {
    /// The request body (JSON) to compress; `-` reads stdin.
    pub(crate) file: PathBuf,
    /// The provider API the body is written for (default: inferred from the body).
    #[arg(long, value_enum)]
    pub(crate) api: Option<ApiArg>,
    /// The pipeline's JSON configuration (the filter's `pipeline` object), inline or as @FILE
    /// (default: every field defaulted).
    #[arg(long)]
    pub(crate) config: Option<String>,
    /// Print one JSON object on stdout (the body, the totals and one entry per tool output)
    /// instead of the body alone and a table on stderr.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ApiArg {
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

/// `--log-format`.
/// `--log-format`: human-readable text or one JSON object per line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}
