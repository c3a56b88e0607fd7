//! `headroom proxy`: the filter's configuration from flags and the environment, the layers
//! wired together, and the proxy run until a signal.

use std::net::SocketAddr;
use std::time::Duration;

use super::args::*;
use anyhow::{Context as _, Result};
use headroom_host::abi::vm::VmLimits;
use headroom_host::operator::RecordEndpoints;
use headroom_host::operator::validate::ValidateConfig;
use headroom_host::proxy::{Proxy, ProxyConfig};
use headroom_host::records;
use headroom_host::records::store::Retention;
use headroom_host::{paths, savings_file};

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
pub(crate) fn load_filter(args: &FilterArgs) -> Result<(Vec<u8>, String, Vec<u8>)> {
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

fn vm_limits(memory_mb: usize, call_timeout_ms: u64, perf_map: bool) -> VmLimits {
    VmLimits {
        memory_bytes: memory_mb << 20,
        // 0: no limit (see VmLimits::call_timeout for what the limit costs).
        call_timeout: (call_timeout_ms > 0).then(|| Duration::from_millis(call_timeout_ms)),
        perf_map,
    }
}

pub(crate) fn run_proxy(args: ProxyArgs) -> Result<()> {
    let guest_log_level = init_logging(&args.log_level, args.log_format);
    let (plugin_wasm, plugin_source, plugin_config) = load_filter(&args.filter)?;
    let (plugin_config, clusters) = with_langfuse_env(plugin_config)?;
    let database = (!args.stateless).then(|| paths::database_path(&paths::process_env));
    let limits = vm_limits(
        args.vm_memory_mb,
        args.vm_call_timeout_ms,
        args.guest_perf_map,
    );
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
