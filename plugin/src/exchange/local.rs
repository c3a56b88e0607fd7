//! The answers the filter gives itself, without the upstream: health and probes, the
//! operator endpoints (`/stats`, `/stats-history`, the dashboard) and their refusals,
//! retrievals, and response-cache hits. Each is a [`LocalReply`] the glue sends.

use super::{Shared, budget};
use crate::credential::Scope;
use crate::metrics::{self, Counter};
use crate::operator;
use crate::pipeline::ContentHash;
use crate::response_cache;
use crate::routing::{self, HEALTH_BODY, HEALTH_CONTENT_TYPE, RETRIEVE_CONTENT_TYPE};
use crate::savings::{self, history};
use crate::shared_store::{self, LabelSet};
use crate::stats;

/// A response the filter sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalReply {
    /// The HTTP status.
    pub(crate) status: u32,
    /// Its headers.
    pub(crate) headers: Vec<(String, String)>,
    /// Its body.
    pub(crate) body: Vec<u8>,
    /// What it answers (for the log).
    pub(crate) what: &'static str,
}

impl LocalReply {
    /// A reply with one header, its `content-type`.
    fn typed(
        status: u32,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        what: &'static str,
    ) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
            what,
        }
    }
}

/// The health check's answer.
pub(crate) fn health() -> LocalReply {
    LocalReply::typed(200, HEALTH_CONTENT_TYPE, HEALTH_BODY, "health check")
}

/// `/livez` or `/readyz`.
pub(crate) fn probe(shared: &Shared, probe: routing::Probe) -> LocalReply {
    let now = shared.host.now();
    let uptime = now
        .and_then(|now| now.duration_since(shared.started).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let timestamp = shared
        .host
        .unix_now()
        .map(crate::calendar::format_rfc3339)
        .unwrap_or_default();
    let body = routing::probe_body(probe, &timestamp, uptime);
    LocalReply::typed(200, "application/json", body, "probe")
}

/// The refusal of an operator endpoint request the rule in [`crate::operator`] does not
/// allow; `None`: answer it.
pub(crate) fn operator_refusal(
    shared: &Shared,
    request: &operator::Request<'_>,
) -> Option<LocalReply> {
    let decision = operator::decide(&shared.config.operator_access(), request);
    let body = decision.error_body()?;
    let mut reply = LocalReply::typed(
        decision.status(),
        "application/json",
        body,
        "operator endpoint refusal",
    );
    reply.headers.extend(
        decision
            .headers()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    Some(reply)
}

/// `/stats`: the process-wide counters, timings, budgets, ledger, cache and traces.
pub(crate) fn stats(shared: &Shared) -> LocalReply {
    let host = &*shared.host;
    let counters = Counter::all()
        .into_iter()
        .map(|c| (c.name(), host.value(c)))
        .collect();
    let labelled = |set: LabelSet, name: fn(&str) -> String| -> Vec<(String, u64)> {
        set.values(host)
            .into_iter()
            .map(|value| {
                let n = host.value_named(&name(&value));
                (value, n)
            })
            .collect()
    };
    let snapshot = stats::Snapshot {
        counters,
        models: labelled(shared_store::MODELS, metrics::requests_by_model),
        stacks: labelled(shared_store::STACKS, metrics::requests_by_stack),
        model_costs: shared_store::MODELS
            .values(host)
            .into_iter()
            .map(|model| {
                let cost = host.value_named(&metrics::cost_by_model(&model));
                let saved = host.value_named(&metrics::savings_by_model(&model));
                (model, cost, saved)
            })
            .collect(),
        timings: shared_store::timings(host),
        transform_timings: shared_store::transform_timings(host),
        budget: budget::stats_block(shared),
    };
    let mut body = stats::render(&snapshot);
    let (ledger, storage) = shared_store::savings(host, history::STATS_HISTORY_POINTS);
    if let serde_json::Value::Object(map) = &mut body {
        let now = host.unix_now().unwrap_or(0);
        map.insert(
            "persistent_savings".to_owned(),
            history::persistent_savings(&ledger, &storage, now),
        );
        map.insert(
            "savings_history".to_owned(),
            history::savings_history(&ledger),
        );
        // Blocks the host serves through the filter (our host's `otel`): absent in Envoy.
        if let Ok(Some((bytes, _))) = host.get(shared_store::HOST_STATS_KEY)
            && let Ok(serde_json::Value::Object(blocks)) =
                serde_json::from_slice::<serde_json::Value>(&bytes)
        {
            for (name, block) in blocks {
                map.entry(name).or_insert(block);
            }
        }
        let stored = shared.responses.as_ref().map(|store| store.occupancy());
        map.insert(
            "cache".to_owned(),
            response_cache::stats_json(
                shared.config.response_cache.as_ref(),
                stored.unwrap_or_default(),
                host.value(Counter::ResponseCacheHits),
                host.value(Counter::ResponseCacheMisses),
            ),
        );
        map.insert(
            "langfuse".to_owned(),
            crate::trace::stats_json(
                shared.config.langfuse.as_ref(),
                host.value(Counter::TraceSpansExported),
                host.value(Counter::TraceSpansDropped),
                host.value(Counter::TraceExportsFailed),
            ),
        );
    }
    LocalReply::typed(200, "application/json", body.to_string(), "stats")
}

/// `/stats-history` (JSON or a CSV export) from the shared savings ledger.
pub(crate) fn history(shared: &Shared, path: &[u8]) -> LocalReply {
    let query = match history::parse_query(path) {
        Ok(query) => query,
        Err(bad) => return LocalReply::typed(400, "application/json", bad.body(), "history"),
    };
    let (ledger, storage) = shared_store::savings(&*shared.host, u64::MAX);
    match query.format {
        history::Format::Json => {
            let now = shared.host.unix_now().unwrap_or(0);
            let body = history::document(&ledger, &storage, query.history_mode, now);
            LocalReply::typed(200, "application/json", body, "history")
        }
        history::Format::Csv => {
            let history = savings::Ledger::retained(&ledger.history);
            LocalReply {
                status: 200,
                headers: vec![
                    (
                        "content-type".to_owned(),
                        "text/csv; charset=utf-8".to_owned(),
                    ),
                    (
                        "content-disposition".to_owned(),
                        history::csv_disposition(query.series),
                    ),
                ],
                body: history::csv(query.series, &history).into_bytes(),
                what: "history export",
            }
        }
    }
}

/// The dashboard page (self-contained: no resource from outside the gateway).
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

/// The dashboard.
pub(crate) fn dashboard() -> LocalReply {
    LocalReply::typed(200, "text/html; charset=utf-8", DASHBOARD_HTML, "dashboard")
}

/// A retrieval from the omitted-originals store: only what a request with the same
/// credential (`scope`) stored; anything else is the same 404 as a hash never stored.
pub(crate) fn retrieval(shared: &Shared, scope: Scope, hash: Option<ContentHash>) -> LocalReply {
    let original = hash.and_then(|hash| shared.stores.omitted.store.read(scope.store_key(hash)));
    if hash.is_some() {
        shared.host.inc(Counter::Retrievals(original.is_some()));
    }
    let (status, body) = routing::retrieve_response(hash, original.as_deref());
    LocalReply::typed(status, RETRIEVE_CONTENT_TYPE, body, "retrieval")
}
