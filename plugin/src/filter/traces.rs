//! The glue of Langfuse traces ([`crate::trace`]): a request's pipeline run becomes queued
//! spans; the root's tick sends them with `http_call` to the configured cluster, one export
//! at a time per VM; the answer counts them as exported or dropped.

use std::cell::RefCell;
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
}

impl Traces {
    /// The traces of a configured root, starting its tick; `None` when there are none (or the
    /// tick cannot be set: then nothing would ever be sent).
    pub(crate) fn start(config: Option<&crate::trace::LangfuseConfig>) -> Option<Traces> {
        let exporter = TraceExporter::new(config?)?;
        let period = Duration::from_millis(exporter.config().flush_interval_ms);
        if let Err(status) = hostcalls::set_tick_period(period) {
            warn!("headroom: langfuse traces off: cannot set the tick period: {status:?}");
            return None;
        }
        let salt = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Some(Traces {
            exporter: RefCell::new(exporter),
            salt,
        })
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

/// Sends the next batch, unless one is in flight or nothing waits.
pub(crate) fn flush(shared: &Shared) {
    let Some(traces) = &shared.traces else {
        return;
    };
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
