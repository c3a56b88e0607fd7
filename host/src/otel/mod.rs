//! OpenTelemetry metrics from `headroom`: OTLP/HTTP (protobuf) or the console, configured by
//! the seed's `HEADROOM_OTEL_*` environment variables (docs/upstream.md §6).
//!
//! No OpenTelemetry SDK runs here. One thread owns everything: it takes the filter's
//! per-request records from a bounded queue (a full queue drops and counts; a request never
//! waits), measures the seed's and the GenAI instruments from them ([`mapping`]), and at every
//! interval adds the filter's metrics from the host's registry, builds the OTLP
//! `ExportMetricsServiceRequest` with the official generated messages (`opentelemetry-proto`)
//! and sends it with its own hyper client and runtime, under a deadline. Export failures are
//! counted and logged at most once a minute; the headers are never shown or logged.
//!
//! - [`config`]: the environment variables and `/stats.otel`.
//! - [`mapping`]: the one table of instruments and how a record measures them.
//! - [`aggregate`]: cumulative state, and the registry's families as metrics.
//! - [`encode`]: cumulative or delta reports, as OTLP protobuf or a JSON line.
//! - [`export`]: sending it.
//! - [`langfuse`]: the Langfuse variables, as the filter's `langfuse` block and cluster (the
//!   filter exports the traces itself).
//!
//! `/stats` is the filter's, so the host publishes the `otel` block in shared data under
//! [`STATS_KEY`] (`{"otel": {…}}`), refreshed after every export, for the filter to merge into
//! `/stats`.

pub mod aggregate;
pub mod config;
pub mod encode;
pub mod export;
pub mod langfuse;
pub mod mapping;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::abi::shared::SharedData;
use crate::metrics::HostMetrics;

pub use config::OtelConfig;

/// The shared-data key of the host's `/stats` blocks: a JSON object whose members (`otel`) the
/// filter adds to `/stats`.
pub const STATS_KEY: &str = "headroom.host.stats";

/// Records waiting for the exporter; beyond this many, new ones are dropped and counted.
pub const QUEUE_CAPACITY: usize = 8_192;

/// How often a failing export is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

static SENDER: RwLock<Option<SyncSender<Vec<u8>>>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Hands a finished request's record to the exporter, if one runs. Never blocks.
pub fn observe(record: &[u8]) {
    let guard = SENDER.read().unwrap_or_else(|p| p.into_inner());
    let Some(sender) = guard.as_ref() else {
        return;
    };
    if let Err(TrySendError::Full(_)) = sender.try_send(record.to_vec()) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records the exporter dropped because its queue was full, since the process started.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The running exporter (or, when disabled, only the published status).
pub struct Otel {
    registry: Arc<OnceLock<Arc<HostMetrics>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Publishes `/stats.otel` in shared data.
fn publish(shared: &SharedData, status: Value) {
    let doc = json!({ "otel": status });
    shared.insert(STATS_KEY.as_bytes(), doc.to_string().as_bytes());
}

/// Reads the configuration from the environment, publishes `/stats.otel`, and starts the
/// exporter when `HEADROOM_OTEL_METRICS_ENABLED` is on. Call it before the proxy listens (no
/// record is missed), then [`Otel::attach`] the proxy's registry.
pub fn start_from_env(shared: Arc<SharedData>) -> Otel {
    let (config, warnings) = OtelConfig::from_process_env();
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    start(config, shared)
}

/// [`start_from_env`] with a given configuration.
pub fn start(config: OtelConfig, shared: Arc<SharedData>) -> Otel {
    let registry = Arc::new(OnceLock::new());
    publish(&shared, config.status(None));
    if !config.enabled {
        return Otel {
            registry,
            thread: None,
        };
    }
    let sender = match export::Sender::new(&config) {
        Ok((sender, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            sender
        }
        Err(e) => {
            tracing::warn!("OpenTelemetry metrics are off: {e:#}");
            publish(
                &shared,
                config.status(Some(json!({"error": format!("{e:#}")}))),
            );
            return Otel {
                registry,
                thread: None,
            };
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
    *SENDER.write().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    let worker = Worker {
        reporter: encode::Reporter::new(config.temporality, unix_nanos()),
        config,
        sender,
        shared,
        registry: registry.clone(),
        aggregator: aggregate::Aggregator::default(),
        succeeded: 0,
        failed: 0,
        last_error: None,
        last_warning: None,
    };
    tracing::info!(
        exporter = worker.config.exporter.as_str(),
        endpoint = %config::mask_userinfo(worker.config.export_url()),
        interval_ms = worker.config.interval.as_millis() as u64,
        temporality = worker.config.temporality.as_str(),
        "OpenTelemetry metrics on"
    );
    let thread = std::thread::Builder::new()
        .name("headroom-otel".into())
        .spawn(move || worker.run(rx));
    match thread {
        Ok(thread) => Otel {
            registry,
            thread: Some(thread),
        },
        Err(e) => {
            tracing::warn!("OpenTelemetry metrics are off: starting the exporter: {e}");
            *SENDER.write().unwrap_or_else(|p| p.into_inner()) = None;
            Otel {
                registry,
                thread: None,
            }
        }
    }
}

impl Otel {
    /// Adds the proxy's registry (the filter's metrics) to what is exported.
    pub fn attach(&self, metrics: Arc<HostMetrics>) {
        let _ = self.registry.set(metrics);
    }

    /// Stops taking records, exports what was measured one last time and stops. Call it after
    /// the proxy has stopped, so the last exchanges are in.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Dropping the sender ends the worker's loop.
            *SENDER.write().unwrap_or_else(|p| p.into_inner()) = None;
            let _ = thread.join();
        }
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The exporter thread's state.
struct Worker {
    config: OtelConfig,
    sender: export::Sender,
    shared: Arc<SharedData>,
    registry: Arc<OnceLock<Arc<HostMetrics>>>,
    aggregator: aggregate::Aggregator,
    reporter: encode::Reporter,
    succeeded: u64,
    failed: u64,
    last_error: Option<String>,
    last_warning: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        let mut next = Instant::now() + self.config.interval;
        loop {
            if Instant::now() >= next {
                self.export();
                next += self.config.interval;
                let now = Instant::now();
                if next <= now {
                    // Behind (a slow collector): skip the missed ticks.
                    next = now + self.config.interval;
                }
            }
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(bytes) => self.measure(&bytes),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    while let Ok(bytes) = rx.try_recv() {
                        self.measure(&bytes);
                    }
                    self.export();
                    return;
                }
            }
        }
    }

    fn measure(&mut self, bytes: &[u8]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Ok(record) = crate::records::record::parse(bytes, now) {
            mapping::measure(&record, &mut self.aggregator);
        }
    }

    fn export(&mut self) {
        let mut metrics = self.aggregator.metrics();
        if let Some(registry) = self.registry.get() {
            metrics.extend(aggregate::from_families(&registry.gather()));
        }
        let report = self.reporter.report(metrics, unix_nanos());
        match self.sender.send(&report) {
            Ok(()) => self.succeeded += 1,
            Err(export::Failed(why)) => {
                self.failed += 1;
                if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        "OpenTelemetry metrics export failed ({} so far): {why}",
                        self.failed
                    );
                    self.last_warning = Some(Instant::now());
                }
                self.last_error = Some(why);
            }
        }
        let exports = json!({
            "succeeded": self.succeeded,
            "failed": self.failed,
            "last_error": self.last_error,
            "dropped_records": dropped_total(),
        });
        publish(&self.shared, self.config.status(Some(exports)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_published_in_shared_data_even_when_off() {
        let shared = Arc::new(SharedData::default());
        let (config, _) = OtelConfig::from_env(|name| {
            (name == "HEADROOM_OTEL_METRICS_HEADERS").then(|| "authorization=secret".to_owned())
        });
        let otel = start(config, shared.clone());
        let (bytes, _) = shared.get(STATS_KEY.as_bytes()).expect("published");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["otel"]["configured"], true);
        assert_eq!(doc["otel"]["enabled"], false);
        assert_eq!(doc["otel"]["service_name"], "headroom-proxy");
        assert_eq!(doc["otel"]["exporter"], "otlp_http");
        assert_eq!(doc["otel"]["endpoint"], Value::Null);
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
        otel.shutdown();
    }
}
