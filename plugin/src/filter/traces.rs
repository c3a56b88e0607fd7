//! The glue of Langfuse traces ([`crate::trace`]): a request's pipeline run becomes queued
//! spans; the root's tick sends them with `http_call` to the configured cluster, one export
//! at a time per VM, every flush interval; the answer counts them as exported or dropped.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use super::shared::Shared;
use crate::api::Api;
use crate::fail_open::FailOpen;
use crate::metrics::Counter;
use crate::pipeline::Outcome;
use crate::trace::{PipelineRun, TraceExporter, pipeline_spans};

/// One VM's exporter and what makes its runs' ids unique.
#[derive(Debug)]
pub(crate) struct Traces {
    exporter: RefCell<TraceExporter>,
    /// When this VM was configured, ns: with the run's number and time, the seed of its ids
    /// (two VMs would have to be configured in the same nanosecond to share one).
    salt: u128,
    /// How often batches go out (the configured `flush_interval_ms`).
    flush_interval: Duration,
    /// The root's tick may be shorter than the flush interval (it also settles runs): exports
    /// go every `flush_every` ticks, counted in `ticks`.
    flush_every: Cell<u64>,
    ticks: Cell<u64>,
}

impl Traces {
    /// The traces of a configured root; `None` when there are none. The root's tick must
    /// run (at most every [`Traces::flush_interval`], then [`Traces::ticks_at`]), or nothing
    /// is ever sent.
    pub(crate) fn start(config: Option<&crate::trace::LangfuseConfig>) -> Option<Traces> {
        let exporter = TraceExporter::new(config?)?;
        let flush_interval = Duration::from_millis(exporter.config().flush_interval_ms);
        let salt = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Some(Traces {
            exporter: RefCell::new(exporter),
            salt,
            flush_interval,
            flush_every: Cell::new(1),
            ticks: Cell::new(0),
        })
    }

    /// How often batches go out.
    pub(crate) fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// The root's tick runs every `period` (no longer than the flush interval): flush every
    /// so many ticks.
    pub(crate) fn ticks_at(&self, period: Duration) {
        let period = period.as_millis().max(1);
        let every = self.flush_interval().as_millis() / period;
        self.flush_every
            .set(u64::try_from(every).unwrap_or(u64::MAX).max(1));
    }
}

/// Queues the spans of one pipeline run (µs since the epoch at its start and end).
pub(crate) fn record_run(
    shared: &Shared,
    api: Api,
    start_us: u64,
    end_us: u64,
    result: Result<&Outcome, FailOpen>,
) {
    let Some(traces) = &shared.traces else {
        return;
    };
    let Ok(mut exporter) = traces.exporter.try_borrow_mut() else {
        return;
    };
    let run = exporter.next_run();
    let mut seed = Vec::with_capacity(40);
    seed.extend_from_slice(&traces.salt.to_le_bytes());
    seed.extend_from_slice(&run.to_le_bytes());
    seed.extend_from_slice(&start_us.to_le_bytes());
    let spans = pipeline_spans(&PipelineRun {
        seed: &seed,
        provider: api.provider().as_str(),
        start_us,
        end_us,
        result,
    });
    let dropped = exporter.push(spans);
    if dropped > 0 {
        shared
            .core
            .host
            .add(Counter::TraceSpansDropped, dropped as u64);
    }
}

/// At the flush interval's tick, sends the next batch, unless one is in flight or nothing waits.
pub(crate) fn flush(shared: &Shared) {
    let Some(traces) = &shared.traces else {
        return;
    };
    let ticks = traces.ticks.get().saturating_add(1);
    if ticks < traces.flush_every.get() {
        traces.ticks.set(ticks);
        return;
    }
    traces.ticks.set(0);
    let Ok(mut exporter) = traces.exporter.try_borrow_mut() else {
        return;
    };
    let Some(export) = exporter.next_export() else {
        return;
    };
    let cluster = exporter.config().cluster.clone();
    let timeout = Duration::from_millis(u64::from(exporter.config().timeout_ms));
    let headers: Vec<(&str, &str)> = export
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    match hostcalls::dispatch_http_call(&cluster, headers, Some(&export.body), vec![], timeout) {
        Ok(token) => exporter.sent(token, export.spans),
        Err(status) => {
            warn!("headroom: langfuse export to cluster {cluster:?} not sent: {status:?}");
            shared.core.host.inc(Counter::TraceExportsFailed);
            shared
                .core
                .host
                .add(Counter::TraceSpansDropped, export.spans as u64);
        }
    }
}

/// The answer to an export: counts its spans, then sends what waits.
pub(crate) fn on_response(shared: &Shared, token: u32) {
    let Some(traces) = &shared.traces else {
        return;
    };
    let Some(spans) = traces
        .exporter
        .try_borrow_mut()
        .ok()
        .and_then(|mut e| e.finished(token))
    else {
        return;
    };
    // Bytes, not a string: the SDK's string read panics on a value that is not UTF-8. The
    // response headers are readable here (this is their callback), so no other status comes.
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .map(|s| String::from_utf8_lossy(&s).into_owned());
    if status.as_deref().is_some_and(|s| s.starts_with('2')) {
        shared
            .core
            .host
            .add(Counter::TraceSpansExported, spans as u64);
    } else {
        warn!(
            "headroom: langfuse export of {spans} spans failed (status {})",
            status.as_deref().unwrap_or("none")
        );
        shared.core.host.inc(Counter::TraceExportsFailed);
        shared
            .core
            .host
            .add(Counter::TraceSpansDropped, spans as u64);
    }
    flush(shared);
}
