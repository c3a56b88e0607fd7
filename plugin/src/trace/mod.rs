//! Langfuse traces of the compression pipeline (docs/upstream.md §7): each pipeline run
//! becomes a `headroom.compression.pipeline` span with one `headroom.compression.transform`
//! child per tool output a transform rewrote, sent as OTLP/HTTP protobuf to
//! `{base_url}/api/public/otel/v1/traces` with Langfuse's Basic credentials.
//!
//! The filter exports the spans itself, through the host's `http_call` to a named cluster, so
//! Envoy and `headroom` send the same traces with the same code. Spans wait in a bounded
//! queue per VM ([`TraceExporter`]); a tick sends at most one batch at a time; a full queue
//! drops new spans and counts them. Nothing here runs on a request's path but the cheap
//! building of its spans, and nothing blocks one.

pub mod otlp;

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::fail_open::FailOpen;
use crate::pipeline::Outcome;

/// The instrumentation scope of every span (the seed's).
pub const SCOPE: &str = "headroom";

/// The path Langfuse's OTLP endpoint has under its base URL.
pub const TRACES_PATH: &str = "/api/public/otel/v1/traces";

/// The `langfuse` object of the plugin configuration; absent: no traces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LangfuseConfig {
    /// Export spans. False keeps the block only for `/stats.langfuse` (configured, disabled).
    /// Default true.
    pub enabled: bool,
    /// The host's cluster that reaches Langfuse (`http_call`). Default `langfuse`.
    pub cluster: String,
    /// Langfuse's base URL: its authority is the `:authority` of exports, its path prefixes
    /// [`TRACES_PATH`]. Default `https://cloud.langfuse.com`.
    pub base_url: String,
    /// The project's public key (`pk-lf-…`). Required when enabled.
    pub public_key: String,
    /// The project's secret key (`sk-lf-…`). Required when enabled; never shown.
    pub secret_key: Option<Secret>,
    /// The resource's `service.name`. Default `headroom-proxy`.
    pub service_name: String,
    /// More resource attributes (after `service.name` and `service.version`, which they may
    /// override).
    pub resource_attributes: BTreeMap<String, String>,
    /// Spans waiting in one VM at most; beyond it new spans are dropped and counted. Default
    /// 2048.
    pub max_queue_spans: usize,
    /// Spans in one export at most. Default 512.
    pub max_batch_spans: usize,
    /// How often queued spans are sent, ms. Default 1000.
    pub flush_interval_ms: u64,
    /// How long an export may take before it counts as failed, ms. Default 5000.
    pub timeout_ms: u32,
}

impl Default for LangfuseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cluster: "langfuse".to_owned(),
            base_url: "https://cloud.langfuse.com".to_owned(),
            public_key: String::new(),
            secret_key: None,
            service_name: "headroom-proxy".to_owned(),
            resource_attributes: BTreeMap::new(),
            max_queue_spans: 2048,
            max_batch_spans: 512,
            flush_interval_ms: 1000,
            timeout_ms: 5000,
        }
    }
}

/// Where exports go: the base URL's authority and the endpoint's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub authority: String,
    /// The base URL's path prefix followed by [`TRACES_PATH`].
    pub path: String,
}

impl LangfuseConfig {
    /// Why this block is unusable (field, message), if it is.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.endpoint().is_none() {
            return Some((
                "base_url",
                "must be an http:// or https:// URL with a host and no query",
            ));
        }
        if self.cluster.is_empty() {
            return Some(("cluster", "must not be empty"));
        }
        if self.enabled && self.public_key.trim().is_empty() {
            return Some(("public_key", "is required when enabled"));
        }
        if self.enabled
            && self
                .secret_key
                .as_ref()
                .is_none_or(|s| s.expose().trim().is_empty())
        {
            return Some(("secret_key", "is required when enabled"));
        }
        if self.max_batch_spans == 0 || self.max_queue_spans == 0 {
            return Some(("max_batch_spans", "queue and batch must hold a span"));
        }
        if self.flush_interval_ms == 0 {
            return Some(("flush_interval_ms", "must be at least 1"));
        }
        None
    }

    /// The base URL without a trailing `/`.
    pub fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }

    /// The endpoint of [`Self::base_url`], or `None` if it is not a usable URL.
    pub fn endpoint(&self) -> Option<Endpoint> {
        let base = self.base();
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) || base.contains(['?', '#']) {
            return None;
        }
        Some(Endpoint {
            authority: authority.to_owned(),
            path: format!("{prefix}{TRACES_PATH}"),
        })
    }

    /// The resource's attributes: `service.name`, `service.version`, then the configured ones
    /// (a configured key replaces an earlier one in place).
    pub fn resource(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("service.name".to_owned(), self.service_name.clone()),
            (
                "service.version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ];
        for (key, value) in &self.resource_attributes {
            match out.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1.clone_from(value),
                None => out.push((key.clone(), value.clone())),
            }
        }
        out
    }

    /// The headers of an export (pseudo-headers first), or `None` when unusable.
    pub fn export_headers(&self) -> Option<Vec<(&'static str, String)>> {
        let endpoint = self.endpoint()?;
        let secret = self.secret_key.as_ref()?.expose();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.public_key.trim(),
            secret.trim()
        ));
        Some(vec![
            (":method", "POST".to_owned()),
            (":path", endpoint.path),
            (":authority", endpoint.authority),
            ("content-type", "application/x-protobuf".to_owned()),
            ("authorization", format!("Basic {credentials}")),
            ("x-langfuse-ingestion-version", "4".to_owned()),
        ])
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its id.
    pub span_id: [u8; 8],
    /// Its parent's id (none for the root).
    pub parent_span_id: Option<[u8; 8]>,
    /// `headroom.compression.pipeline` or `headroom.compression.transform`.
    pub name: &'static str,
    /// Start, ns since the Unix epoch.
    pub start_ns: u64,
    /// End, ns since the Unix epoch.
    pub end_ns: u64,
    /// Attributes, in order.
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// The error status message, if it failed.
    pub error: Option<String>,
}

/// One pipeline run, as the filter saw it.
#[derive(Debug, Clone, Copy)]
pub struct PipelineRun<'a> {
    /// Distinguishes this run from every other (the filter hashes its context id, a per-VM
    /// sequence number, the time and the request id): trace and span ids derive from it.
    pub seed: &'a [u8],
    /// `openai` or `anthropic`.
    pub provider: &'a str,
    /// When the pipeline started and ended, µs since the Unix epoch.
    pub start_us: u64,
    /// See `start_us`.
    pub end_us: u64,
    /// What it did, or why it failed open.
    pub result: Result<&'a Outcome, FailOpen>,
}

fn int(value: u64) -> AttrValue {
    AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn ms(us: u64) -> AttrValue {
    AttrValue::Float(us as f64 / 1000.0)
}

/// The spans of one run: the pipeline span and a child per tool output a transform rewrote
/// (compressed now or replayed). Token figures are those of the tool outputs the pipeline
/// examined (the rest of the request is never rewritten).
pub fn pipeline_spans(run: &PipelineRun<'_>) -> Vec<Span> {
    let digest: [u8; 32] = Sha256::digest(run.seed).into();
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    let span_id = |index: u64| -> [u8; 8] {
        let d: [u8; 32] = Sha256::new()
            .chain_update(digest)
            .chain_update(index.to_le_bytes())
            .finalize()
            .into();
        let mut id = [0u8; 8];
        id.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        id
    };
    let root_id = span_id(0);
    // The request's model as the metrics and the record label it: bounded and sanitised (a
    // client's megabyte-long model name must not be copied into every span of the queue).
    let model = run
        .result
        .ok()
        .and_then(|o| o.model.as_deref())
        .map_or_else(
            || "unknown".to_owned(),
            crate::pricing::normalize_model_label,
        );
    let common = |attributes: &mut Vec<(&'static str, AttrValue)>| {
        attributes.push(("headroom.model", AttrValue::Str(model.clone())));
        attributes.push(("headroom.provider", AttrValue::Str(run.provider.to_owned())));
    };
    let mut root = Span {
        trace_id,
        span_id: root_id,
        parent_span_id: None,
        name: "headroom.compression.pipeline",
        start_ns: run.start_us.saturating_mul(1000),
        end_ns: run.end_us.max(run.start_us).saturating_mul(1000),
        attributes: Vec::new(),
        error: None,
    };
    common(&mut root.attributes);
    let outcome = match run.result {
        Ok(outcome) => outcome,
        Err(reason) => {
            root.attributes.push((
                "headroom.duration_ms",
                ms(run.end_us.saturating_sub(run.start_us)),
            ));
            root.error = Some(format!("failed open: {}", reason.as_str()));
            return vec![root];
        }
    };
    let mut children = Vec::new();
    let (mut before, mut after) = (0u64, 0u64);
    for block in &outcome.blocks {
        let tokens_before = block.tokens_before.unwrap_or(0);
        let tokens_after = block.tokens_after.unwrap_or(tokens_before);
        before += tokens_before;
        after += tokens_after;
        if !block.decision.replaced() {
            continue;
        }
        let timing = block.timing.unwrap_or(crate::pipeline::BlockTiming {
            start_us: run.start_us,
            elapsed_us: 0,
        });
        let mut span = Span {
            trace_id,
            span_id: span_id(children.len() as u64 + 1),
            parent_span_id: Some(root_id),
            name: "headroom.compression.transform",
            start_ns: timing.start_us.saturating_mul(1000),
            end_ns: (timing.start_us + timing.elapsed_us).saturating_mul(1000),
            attributes: Vec::new(),
            error: None,
        };
        common(&mut span.attributes);
        span.attributes.extend([
            (
                "headroom.transform",
                AttrValue::Str(block.strategy.to_owned()),
            ),
            (
                "headroom.decision",
                AttrValue::Str(block.decision.as_str().to_owned()),
            ),
            ("headroom.location", AttrValue::Str(block.location.clone())),
            ("headroom.tokens.before", int(tokens_before)),
            ("headroom.tokens.after", int(tokens_after)),
            (
                "headroom.tokens.saved",
                int(tokens_before.saturating_sub(tokens_after)),
            ),
            ("headroom.duration_ms", ms(timing.elapsed_us)),
            ("headroom.transforms_applied", AttrValue::Int(1)),
        ]);
        children.push(span);
    }
    root.attributes.extend([
        ("headroom.message_count", int(outcome.message_count as u64)),
        ("headroom.tool_outputs", int(outcome.blocks.len() as u64)),
        ("headroom.tokens.before", int(before)),
        ("headroom.tokens.after", int(after)),
        ("headroom.tokens.saved", int(before.saturating_sub(after))),
        (
            "headroom.duration_ms",
            ms(run.end_us.saturating_sub(run.start_us)),
        ),
        ("headroom.transforms_applied", int(children.len() as u64)),
    ]);
    let mut spans = vec![root];
    spans.append(&mut children);
    spans
}

/// One VM's queue of spans waiting for export, and the export in flight.
#[derive(Debug)]
pub struct TraceExporter {
    config: LangfuseConfig,
    /// Every export's headers and resource, derived once from `config`.
    headers: Vec<(&'static str, String)>,
    resource: Vec<(String, String)>,
    queue: VecDeque<Span>,
    /// The export in flight: its token and how many spans it carries.
    in_flight: Option<(u32, usize)>,
    /// Runs recorded by this VM (part of each run's id seed).
    runs: u64,
}

/// An export ready to send.
#[derive(Debug)]
pub struct Export {
    /// The headers, pseudo-headers first.
    pub headers: Vec<(&'static str, String)>,
    /// The `ExportTraceServiceRequest`.
    pub body: Vec<u8>,
    /// How many spans it carries.
    pub spans: usize,
}

impl TraceExporter {
    /// An exporter for `config`, or `None` when it does not export.
    pub fn new(config: &LangfuseConfig) -> Option<Self> {
        if !config.enabled || config.problem().is_some() {
            return None;
        }
        Some(Self {
            config: config.clone(),
            headers: config.export_headers()?,
            resource: config.resource(),
            queue: VecDeque::new(),
            in_flight: None,
            runs: 0,
        })
    }

    /// The configuration it exports with.
    pub fn config(&self) -> &LangfuseConfig {
        &self.config
    }

    /// The next run's sequence number in this VM.
    pub fn next_run(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }

    /// Queues `spans`; returns how many were dropped because the queue is full (a run is
    /// kept whole or dropped whole, so no trace arrives without its root).
    pub fn push(&mut self, spans: Vec<Span>) -> usize {
        if self.queue.len() + spans.len() > self.config.max_queue_spans {
            return spans.len();
        }
        self.queue.extend(spans);
        0
    }

    /// Spans waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The next batch to send, unless one is in flight or nothing waits.
    pub fn next_export(&mut self) -> Option<Export> {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(self.config.max_batch_spans);
        let batch: Vec<Span> = self.queue.drain(..n).collect();
        Some(Export {
            headers: self.headers.clone(),
            body: otlp::export_request(&self.resource, (SCOPE, env!("CARGO_PKG_VERSION")), &batch),
            spans: n,
        })
    }

    /// The export of `spans` spans was dispatched under `token`.
    pub fn sent(&mut self, token: u32, spans: usize) {
        self.in_flight = Some((token, spans));
    }

    /// The response to `token` arrived (or it failed): how many spans it carried, if it was
    /// ours.
    pub fn finished(&mut self, token: u32) -> Option<usize> {
        match self.in_flight {
            Some((t, n)) if t == token => {
                self.in_flight = None;
                Some(n)
            }
            _ => None,
        }
    }
}

/// `/stats.langfuse`: the seed's fields (never a key) plus the export counters.
pub fn stats_json(
    config: Option<&LangfuseConfig>,
    exported: u64,
    dropped: u64,
    failed_exports: u64,
) -> Value {
    match config {
        None => json!({
            "configured": false,
            "enabled": false,
            "service_name": null,
            "base_url": null,
            "endpoint": null,
        }),
        Some(config) => json!({
            "configured": true,
            "enabled": config.enabled && config.problem().is_none(),
            "service_name": config.service_name,
            "base_url": config.base(),
            "endpoint": format!("{}{TRACES_PATH}", config.base()),
            "cluster": config.cluster,
            "spans_exported": exported,
            "spans_dropped": dropped,
            "exports_failed": failed_exports,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::api::Api;
    use crate::pipeline::{MemoryHost, PipelineConfig, compress_request};

    fn config() -> LangfuseConfig {
        LangfuseConfig {
            public_key: "pk-lf-1".into(),
            secret_key: Some(Secret::new("sk-lf-2")),
            base_url: "http://127.0.0.1:3000/langfuse/".into(),
            ..LangfuseConfig::default()
        }
    }

    #[test]
    fn endpoint_and_headers_follow_langfuse() {
        let config = config();
        assert_eq!(
            config.endpoint(),
            Some(Endpoint {
                authority: "127.0.0.1:3000".into(),
                path: "/langfuse/api/public/otel/v1/traces".into()
            })
        );
        let headers = config.export_headers().unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        // base64("pk-lf-1:sk-lf-2")
        assert_eq!(get("authorization"), Some("Basic cGstbGYtMTpzay1sZi0y"));
        assert_eq!(get("x-langfuse-ingestion-version"), Some("4"));
        assert_eq!(get("content-type"), Some("application/x-protobuf"));
        assert_eq!(get(":method"), Some("POST"));
        for bad in ["ftp://x", "https://", "https://a?b", "cloud.langfuse.com"] {
            let c = LangfuseConfig {
                base_url: bad.into(),
                ..config.clone()
            };
            assert_eq!(c.problem().map(|p| p.0), Some("base_url"), "{bad}");
        }
    }

    #[test]
    fn keys_are_required_only_when_enabled_and_never_shown() {
        let missing = LangfuseConfig {
            secret_key: None,
            ..config()
        };
        assert_eq!(missing.problem().map(|p| p.0), Some("secret_key"));
        assert!(TraceExporter::new(&missing).is_none());
        let disabled = LangfuseConfig {
            enabled: false,
            ..missing
        };
        assert_eq!(disabled.problem(), None);
        let stats = stats_json(Some(&config()), 3, 1, 0).to_string();
        assert!(
            !stats.contains("sk-lf-2") && !stats.contains("pk-lf-1"),
            "{stats}"
        );
        assert!(!format!("{:?}", config()).contains("sk-lf-2"));
        assert_eq!(stats_json(None, 0, 0, 0)["configured"], Value::Bool(false));
    }

    #[test]
    fn resource_attributes_override_in_place() {
        let mut config = config();
        config
            .resource_attributes
            .insert("service.name".into(), "edge".into());
        config
            .resource_attributes
            .insert("deployment.environment".into(), "prod".into());
        let resource = config.resource();
        assert_eq!(resource[0], ("service.name".into(), "edge".into()));
        assert_eq!(resource[1].0, "service.version");
        assert_eq!(
            resource[2],
            ("deployment.environment".into(), "prod".into())
        );
    }

    fn outcome() -> Outcome {
        let rows: Vec<String> = (0..300)
            .map(|i| format!(r#"{{"id":{i},"status":"ok","name":"row {i}"}}"#))
            .collect();
        let output = format!("[{}]", rows.join(","));
        let body = serde_json::json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "list rows"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "rows", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": output},
                {"role": "tool", "tool_call_id": "c1", "content": "short"},
            ]
        })
        .to_string();
        compress_request(
            Api::OpenAiChat,
            body.as_bytes(),
            &PipelineConfig::default(),
            &mut MemoryHost::default(),
        )
        .unwrap()
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue> {
        span.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_run_is_a_pipeline_span_with_a_child_per_rewritten_output() {
        let outcome = outcome();
        let compressed = &outcome.blocks[0];
        assert!(compressed.decision.replaced(), "{compressed:?}");
        let run = |seed: &[u8]| {
            pipeline_spans(&PipelineRun {
                seed,
                provider: "openai",
                start_us: 1_000,
                end_us: 5_000,
                result: Ok(&outcome),
            })
        };
        let spans = run(b"run-1");
        let [root, child] = spans.as_slice() else {
            panic!("{spans:?}");
        };
        assert_eq!(root.name, "headroom.compression.pipeline");
        assert_eq!(child.name, "headroom.compression.transform");
        assert_eq!(child.parent_span_id, Some(root.span_id));
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!((root.start_ns, root.end_ns), (1_000_000, 5_000_000));
        assert_eq!(
            attr(root, "headroom.message_count"),
            Some(&AttrValue::Int(4))
        );
        assert_eq!(
            attr(root, "headroom.tool_outputs"),
            Some(&AttrValue::Int(2))
        );
        assert_eq!(
            attr(root, "headroom.duration_ms"),
            Some(&AttrValue::Float(4.0))
        );
        assert_eq!(
            attr(root, "headroom.model"),
            Some(&AttrValue::Str("gpt-4o".into()))
        );
        let before = compressed.tokens_before.unwrap() as i64;
        let after = compressed.tokens_after.unwrap() as i64;
        assert_eq!(
            attr(child, "headroom.tokens.before"),
            Some(&AttrValue::Int(before))
        );
        assert_eq!(
            attr(child, "headroom.tokens.after"),
            Some(&AttrValue::Int(after))
        );
        assert_eq!(
            attr(root, "headroom.tokens.saved"),
            Some(&AttrValue::Int(before - after))
        );
        assert_eq!(
            attr(child, "headroom.transform"),
            Some(&AttrValue::Str(compressed.strategy.into()))
        );
        // Another seed, another trace.
        let other = run(b"run-2");
        assert_ne!(other[0].trace_id, root.trace_id);
    }

    /// A hostile model name is the metrics' bounded label in every span, not a copy.
    #[test]
    fn a_huge_model_name_is_bounded_in_spans() {
        let mut outcome = outcome();
        outcome.model = Some(format!("GPT-4o {}", "x".repeat(1 << 20)));
        let spans = pipeline_spans(&PipelineRun {
            seed: b"h",
            provider: "openai",
            start_us: 0,
            end_us: 1,
            result: Ok(&outcome),
        });
        for span in &spans {
            let Some(AttrValue::Str(model)) = attr(span, "headroom.model") else {
                panic!("{span:?}");
            };
            assert!(
                model.len() <= crate::pricing::MODEL_LABEL_MAX_LEN,
                "{}",
                model.len()
            );
            assert!(model.starts_with("gpt-4o_"), "{model}");
        }
    }

    #[test]
    fn a_failed_run_is_an_error_span() {
        let spans = pipeline_spans(&PipelineRun {
            seed: b"x",
            provider: "anthropic",
            start_us: 10,
            end_us: 20,
            result: Err(FailOpen::NotJson),
        });
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].error.as_deref(), Some("failed open: not_json"));
        assert_eq!(
            attr(&spans[0], "headroom.model"),
            Some(&AttrValue::Str("unknown".into()))
        );
    }

    #[test]
    fn the_queue_is_bounded_whole_runs_at_a_time_and_one_export_flies() {
        let mut exporter = TraceExporter::new(&LangfuseConfig {
            max_queue_spans: 5,
            max_batch_spans: 3,
            ..config()
        })
        .unwrap();
        let run = |n: usize| {
            let outcome = outcome();
            let mut spans = pipeline_spans(&PipelineRun {
                seed: b"s",
                provider: "openai",
                start_us: 0,
                end_us: 1,
                result: Ok(&outcome),
            });
            spans.truncate(n);
            spans
        };
        assert_eq!(exporter.push(run(2)), 0);
        assert_eq!(exporter.push(run(2)), 0);
        // Two more would make 6 > 5: the whole run is dropped.
        assert_eq!(exporter.push(run(2)), 2);
        assert_eq!(exporter.queued(), 4);
        let first = exporter.next_export().unwrap();
        assert_eq!(first.spans, 3);
        exporter.sent(7, first.spans);
        assert!(exporter.next_export().is_none(), "one export at a time");
        assert_eq!(exporter.finished(8), None);
        assert_eq!(exporter.finished(7), Some(3));
        assert_eq!(exporter.next_export().unwrap().spans, 1);
    }
}
