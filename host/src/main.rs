//! `headroom`: run the Headroom filter as a standalone LLM proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use headroom_host::abi::vm::VmLimits;
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) => run_proxy(args),
    };
    if let Err(e) = result {
        eprintln!("headroom: {e:#}");
        std::process::exit(1);
    }
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
