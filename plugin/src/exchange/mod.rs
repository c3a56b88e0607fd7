//! The exchange layer: every per-request decision and all the bookkeeping of the filter —
//! what a pipeline outcome counts, what an exchange costs and records, the budgets, the local
//! answers — written against the [`Host`] traits only. The proxy-wasm glue maps callbacks to
//! these calls and moves bytes; [`InMemoryHost`](crate::host::InMemoryHost) runs the same
//! calls natively in the tests.

mod budget;
pub(crate) mod cache;
pub(crate) mod deferred;
mod local;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::SystemTime;

use log::{debug, info};

pub(crate) use budget::{BudgetGuard, RequestFacts};
pub(crate) use local::LocalReply;
pub(crate) use local::{dashboard, health, history, operator_refusal, probe, retrieval, stats};

use crate::accounting::{self, OTHER_MODEL, UNKNOWN_MODEL};
use crate::api::{Api, Provider};
use crate::config::Config;
use crate::credential::{Scope, ScopedStore};
use crate::fail_open::FailOpen;
use crate::host::{Host, LedgerData, elapsed_us};
use crate::metrics::{self, Counter, Histogram, UsageMissing};
use crate::pipeline::Outcome;
use crate::pricing::{self, PriceTable};
use crate::record;
use crate::savings;
use crate::shared_store::{self, HostedStore, LabelSet, SharedStore, SharedStores};
use crate::stack_header;
use crate::usage::UsageParser;

/// What every exchange of a configured filter shares: the configuration, the host, the
/// stores and the prices.
pub(crate) struct Shared {
    /// The parsed plugin configuration.
    pub(crate) config: Config,
    /// The proxy the filter runs in.
    pub(crate) host: Rc<dyn Host>,
    /// The pipeline's stores (cheap to clone).
    pub(crate) stores: SharedStores,
    /// The response cache's entries, when it is on.
    pub(crate) responses: Option<HostedStore>,
    /// The built-in prices with the configured overrides.
    pub(crate) prices: PriceTable,
    /// When this VM was configured (for `uptime_seconds`).
    pub(crate) started: SystemTime,
    /// Start of the budget period whose first rejection this VM has logged (0: none yet).
    pub(crate) budget_warned: Cell<u64>,
    /// Models this VM knows have had a response with prompt-cache activity (so the
    /// process-wide set need not be read again for them).
    pub(crate) cache_models_seen: RefCell<HashSet<String>>,
    /// The original text this VM's runs keep until they are settled.
    pub(crate) unsettled: deferred::UnsettledBytes,
    /// This VM's waiting runs, for the root's tick to settle ([`deferred::SETTLE_TICK`]).
    pub(crate) settle_queue: deferred::SettleQueue,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The shared state of a filter configured with `config` in `host`. A ledger the host
    /// restored counts in the persistent counters once per process (the first VM claims it).
    pub(crate) fn configure(config: Config, host: Rc<dyn Host>) -> Shared {
        let data: Rc<dyn crate::host::SharedData> = host.clone();
        let hosted = |store| HostedStore {
            store,
            data: Rc::clone(&data),
        };
        let stores = SharedStores {
            omitted: ScopedStore {
                store: hosted(SharedStore::omitted(config.omitted_store_bytes)),
                scope: Scope::of(&config.pipeline.marker_key, [None; 3]),
            },
            replay: hosted(SharedStore::replay(config.replay_store_bytes)),
            timed: Vec::new(),
            clock: host.clone(),
        };
        // Config::from_bytes has validated the overrides.
        let prices = PriceTable::builtin()
            .with_overrides(&config.prices)
            .unwrap_or_else(|_| PriceTable::builtin());
        let responses = config
            .response_cache
            .map(|cache| hosted(SharedStore::responses(cache.max_bytes)));
        let shared = Shared {
            started: host.now().unwrap_or(std::time::UNIX_EPOCH),
            config,
            stores,
            responses,
            prices,
            budget_warned: Cell::new(0),
            cache_models_seen: RefCell::default(),
            unsettled: deferred::UnsettledBytes::default(),
            settle_queue: deferred::SettleQueue::default(),
            host,
        };
        if let Some(lifetime) = savings::claim_metrics_seed(&LedgerData(&*shared.host)) {
            add_lifetime(&shared, &lifetime);
        }
        shared
    }
}

/// Adds lifetime totals to the process's `headroom_persistent_savings_*` counters.
pub(crate) fn add_lifetime(shared: &Shared, lifetime: &savings::Lifetime) {
    let nano = accounting::nano_usd;
    let m = &*shared.host;
    m.add(Counter::PersistentRequests, lifetime.requests);
    m.add(Counter::PersistentTokensSaved, lifetime.tokens_saved);
    m.add(Counter::PersistentInputTokens, lifetime.total_input_tokens);
    m.add(
        Counter::PersistentInputCostNanoUsd,
        nano(lifetime.total_input_cost_usd),
    );
    m.add(
        Counter::PersistentSavingsNanoUsd,
        nano(lifetime.compression_savings_usd),
    );
}

/// Adds one to the counter `name_of(value)` when `value` may have its own label in the bounded
/// `set`, else to `name_of(fallback)`, if any. A VM that has counted `value` before knows it
/// was admitted (labels are never removed), so only a new value reads shared data.
fn inc_bounded(
    shared: &Shared,
    set: LabelSet,
    value: &str,
    name_of: fn(&str) -> String,
    fallback: Option<&str>,
) {
    let host = &*shared.host;
    let name = name_of(value);
    if host.has_named(&name) || set.admit(host, value) {
        host.inc_named(&name);
    } else if let Some(fallback) = fallback {
        host.inc_named(&name_of(fallback));
    }
}

/// Records a sample in `histogram`, in whole milliseconds (proxy-wasm histograms take integers).
fn record_histogram(shared: &Shared, histogram: Histogram, us: Option<u64>) {
    if let Some(us) = us {
        shared.host.record(histogram, us / 1000);
    }
}

/// What one provider request did, from its headers to its end: the facts its record and its
/// metrics are made of.
#[derive(Debug, Default)]
pub(crate) struct ExchangeState {
    /// The provider API of this request.
    pub(crate) api: Option<Api>,
    /// When the request headers arrived.
    pub(crate) start: Option<SystemTime>,
    /// The request's `model`, when the body was parsed.
    pub(crate) model: Option<String>,
    /// Reads the response's usage as it streams past.
    pub(crate) usage: Option<UsageParser>,
    /// Why the response's usage cannot be read, when known before its body.
    pub(crate) usage_missing: Option<UsageMissing>,
    /// Tokens the pipeline removed from this request.
    pub(crate) tokens_saved: u64,
    /// Time to the response headers, µs.
    pub(crate) ttfb_us: Option<u64>,
    /// The filter's own time on the request body, µs.
    pub(crate) overhead_us: Option<u64>,
    /// `X-Headroom-Project`, for the savings ledger.
    pub(crate) project: Option<String>,
    /// The request path without its query (for the request record).
    pub(crate) path: String,
    /// The response status.
    pub(crate) status: Option<u32>,
    /// Whether the response was an SSE stream.
    pub(crate) streamed: bool,
    /// Why the request body went upstream unchanged, if it did.
    pub(crate) fail_open: Option<FailOpen>,
    /// `kind:strategy` of every tool output the pipeline replaced.
    pub(crate) transforms: Vec<String>,
    /// The `X-Headroom-Stack` bucket.
    pub(crate) stack: Option<String>,
    /// The exchange was recorded.
    pub(crate) recorded: bool,
    /// The request's standing with the budgets (reservation, settlement).
    pub(crate) budget: BudgetGuard,
}

/// What the headers of a provider request tell the exchange.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProviderHeaders<'a> {
    /// `:path`.
    pub(crate) path: Option<&'a [u8]>,
    /// `X-Headroom-Project`.
    pub(crate) project: Option<&'a [u8]>,
    /// `X-Headroom-Stack`.
    pub(crate) stack: Option<&'a [u8]>,
}

impl ExchangeState {
    /// Starts a provider request at its headers: its path, project and stack bucket (counted,
    /// within the bound on stack labels).
    pub(crate) fn begin(&mut self, shared: &Shared, api: Api, headers: &ProviderHeaders<'_>) {
        self.api = Some(api);
        self.start = shared.host.now();
        self.path = headers
            .path
            .map(|p| String::from_utf8_lossy(crate::api::strip_query(p)).into_owned())
            .unwrap_or_default();
        self.project = headers
            .project
            .map(|v| String::from_utf8_lossy(v).into_owned());
        self.stack = stack_header::stack_bucket(headers.stack);
        if let Some(stack) = self.stack.as_deref() {
            // Beyond the bound a new stack is not counted (docs/upstream.md §8).
            inc_bounded(
                shared,
                shared_store::STACKS,
                stack,
                metrics::requests_by_stack,
                None,
            );
        }
    }

    /// The request was admitted: counts it.
    pub(crate) fn admitted(&self, shared: &Shared, api: Api) {
        shared.host.inc(Counter::Requests);
        shared.host.inc(Counter::RequestsByProvider(api.provider()));
    }

    /// Counts a fail-open and says so at debug level.
    pub(crate) fn fail_open(&mut self, shared: &Shared, api: Api, reason: FailOpen) {
        self.fail_open = Some(reason);
        shared.host.inc(Counter::FailOpen(reason));
        debug!(
            "headroom: {} request forwarded unchanged ({reason})",
            api.as_str()
        );
    }

    /// The filter spent from `began` to now on the request body.
    pub(crate) fn body_done(&mut self, shared: &Shared, began: Option<SystemTime>) {
        self.overhead_us = elapsed_us(began, shared.host.now());
        record_histogram(shared, Histogram::OverheadMs, self.overhead_us);
    }

    /// Counts what the pipeline did: per-transform timings (`timed`, µs), tool outputs by
    /// decision, compressions and tokens by strategy, waste signals.
    pub(crate) fn count_run(
        &mut self,
        shared: &Shared,
        timed: &[(&'static str, u64)],
        outcome: Option<&Outcome>,
    ) {
        let samples: Vec<(String, u64)> = timed
            .iter()
            .map(|(transform, us)| (metrics::sanitize_label_value(transform), *us))
            .collect();
        for (transform, us) in &samples {
            shared
                .host
                .record_named(&metrics::transform_timing(transform), us / 1000);
        }
        shared_store::record_transform_timings(&*shared.host, &samples);
        let Some(outcome) = outcome else {
            return;
        };
        self.model.clone_from(&outcome.model);
        self.tokens_saved = outcome.tokens_saved();
        for (signal, tokens) in outcome.waste.iter().filter(|(_, t)| *t > 0) {
            shared.host.add(Counter::WasteSignalTokens(signal), tokens);
        }
        for block in &outcome.blocks {
            shared.host.inc(Counter::ToolOutputs(block.decision));
            if block.decision.replaced() {
                self.transforms.push(block.strategy.to_owned());
                if let Some(strategy) = metrics::Strategy::of(block.strategy) {
                    let saved = block
                        .tokens_before
                        .unwrap_or(0)
                        .saturating_sub(block.tokens_after.unwrap_or(0));
                    shared.host.inc(Counter::Compressions(strategy));
                    shared.host.add(Counter::TokensSavedBy(strategy), saved);
                }
            }
            debug!(
                "headroom: {} ({}): {} by {}, {} -> {} bytes: {}",
                block.location,
                block.tool.as_deref().unwrap_or("-"),
                block.decision.as_str(),
                block.strategy,
                block.bytes_before,
                block.bytes_after,
                block.reason
            );
        }
    }

    /// The rewritten body went upstream: counts the bytes and tokens it saved.
    pub(crate) fn count_rewrite(&self, shared: &Shared, outcome: &Outcome) {
        let bytes_saved = outcome.bytes_before.saturating_sub(outcome.bytes_after);
        shared.host.add(Counter::BytesSaved, bytes_saved);
        shared
            .host
            .add(Counter::TokensSaved, outcome.tokens_saved());
        let (before, after) = outcome
            .blocks
            .iter()
            .filter(|b| b.decision.replaced())
            .fold((0u64, 0u64), |(b, a), block| {
                (
                    b + block.tokens_before.unwrap_or(0),
                    a + block.tokens_after.unwrap_or(0),
                )
            });
        let saved = before.saturating_sub(after);
        let reduction = if before == 0 {
            0.0
        } else {
            saved as f64 * 100.0 / before as f64
        };
        info!(
            "headroom: Pipeline complete: {before} -> {after} tokens (saved {saved}, {reduction:.1}% reduction; {} of {} tool outputs, {} -> {} bytes, {})",
            outcome.replaced_blocks(),
            outcome.blocks.len(),
            outcome.bytes_before,
            outcome.bytes_after,
            outcome.exactness().as_str(),
        );
    }

    /// The response headers arrived: time to first byte.
    pub(crate) fn response_started(&mut self, shared: &Shared, status: Option<u32>) {
        self.status = status;
        self.ttfb_us = elapsed_us(self.start, shared.host.now());
        record_histogram(shared, Histogram::TtfbMs, self.ttfb_us);
    }

    /// The response headers say how its usage will be read (`encoded`: the body is
    /// content-encoded, so it cannot be). Returns whether the usage-only chunk the filter asked
    /// for (`strip_requested`) can be removed: only from a stream whose usage is read.
    pub(crate) fn read_usage(
        &mut self,
        shared: &Shared,
        api: Api,
        encoded: bool,
        content_type: &[u8],
        strip_requested: bool,
    ) -> bool {
        if !shared.config.read_usage {
            return false;
        }
        if encoded {
            self.usage_missing = Some(UsageMissing::Encoded);
            return false;
        }
        let parser = UsageParser::for_content_type(api, content_type);
        self.streamed = parser.is_streaming();
        self.usage = Some(parser);
        strip_requested && self.streamed
    }

    /// Records the exchange once (at the end of the response, else at the end of the stream):
    /// its timings, the provider's usage, cost and savings, the budgets' settlement, the
    /// bounded model labels and the savings ledger. Returns the request record (JSON) the
    /// glue publishes for the access log, `None` when already recorded or without a clock.
    pub(crate) fn finish(&mut self, shared: &Shared) -> Option<Vec<u8>> {
        let api = self.api?;
        if std::mem::replace(&mut self.recorded, true) {
            return None;
        }
        let host = &*shared.host;
        let latency_us = elapsed_us(self.start, host.now());
        record_histogram(shared, Histogram::LatencyMs, latency_us);
        let samples: Vec<(Histogram, u64)> = [
            (Histogram::LatencyMs, latency_us),
            (Histogram::TtfbMs, self.ttfb_us),
            (Histogram::OverheadMs, self.overhead_us),
        ]
        .into_iter()
        .filter_map(|(h, us)| Some((h, us?)))
        .collect();
        // One update of the shared timings per exchange; the gauges follow what it holds.
        if let Some(timings) = shared_store::record_timings(host, &samples) {
            for (histogram, _) in samples {
                let timing = timings.get(histogram);
                host.set_extremes(histogram, timing.min_us / 1000, timing.max_us / 1000);
            }
        }
        let usage = self.usage.take().and_then(UsageParser::finish);
        match &usage {
            Some(usage) => {
                for (counter, delta) in accounting::usage_increments(api.provider(), usage) {
                    host.add(counter, delta);
                }
            }
            None if shared.config.read_usage => {
                let reason = self.usage_missing.unwrap_or(UsageMissing::NotReported);
                host.inc(Counter::UsageMissing(reason));
            }
            None => {}
        }
        let raw_model = self
            .model
            .take()
            .or_else(|| usage.as_ref().and_then(|u| u.model.clone()));
        let mut costs = None;
        let mut budget_cost = None;
        if let (Some(usage), Some(model)) = (&usage, &raw_model) {
            costs = accounting::exchange_costs(&shared.prices, model, usage, self.tokens_saved);
            budget_cost = BudgetGuard::charge(shared, model, usage, costs.as_ref());
            for (counter, delta) in accounting::cost_increments(costs.as_ref()) {
                host.add(counter, delta);
            }
        }
        // The reservation becomes the real cost (released when there is none).
        self.budget.settle(shared, budget_cost);
        let model = raw_model
            .map(|m| pricing::normalize_model_label(&m))
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned());
        if let Some(usage) = &usage {
            let figures = usage.cache_figures();
            if api.provider() == Provider::Anthropic && (figures.read > 0 || figures.write > 0) {
                let seen = cache_model_seen_before(shared, &model);
                for (counter, delta) in accounting::bust_increments(api.provider(), &figures, seen)
                {
                    host.add(counter, delta);
                }
            }
        }
        inc_bounded(
            shared,
            shared_store::MODELS,
            &model,
            metrics::requests_by_model,
            Some(OTHER_MODEL),
        );
        if let Some(costs) = &costs {
            // The label the request was counted under: its model, or `other` beyond the cap.
            let label = if host.has_named(&metrics::requests_by_model(&model)) {
                model.as_str()
            } else {
                OTHER_MODEL
            };
            host.add_named(
                &metrics::cost_by_model(label),
                accounting::nano_usd(costs.input_usd + costs.output_usd),
            );
            host.add_named(
                &metrics::savings_by_model(label),
                accounting::nano_usd(costs.savings_usd),
            );
        }
        let exchange = record::Exchange {
            api,
            model: &model,
            project: self.project.as_deref(),
            stack: self.stack.as_deref().unwrap_or(stack_header::UNKNOWN),
            path: &self.path,
            status: self.status,
            streamed: self.streamed,
            usage: usage.as_ref(),
            tokens_saved: self.tokens_saved,
            costs,
            latency_us,
            ttfb_us: self.ttfb_us,
            overhead_us: self.overhead_us,
            transforms: &self.transforms,
            fail_open: self.fail_open,
        };
        let now = host.unix_now()?;
        let request = exchange.savings();
        if savings::record_shared(&LedgerData(host), &request, now) {
            add_lifetime(shared, &request.lifetime_delta());
        } else {
            debug!("headroom: savings ledger kept changing; this request is not in it");
        }
        Some(exchange.record(now))
    }

    /// Counts a failed request, decided from the response code and its details.
    pub(crate) fn count_failure(&self, shared: &Shared, code: Option<u64>, details: Option<&[u8]>) {
        if metrics::request_failed(code, details) {
            shared.host.inc(Counter::RequestsFailed);
            if let Some(api) = self.api {
                debug!(
                    "headroom: {} request failed (response code {code:?})",
                    api.as_str()
                );
            }
        }
    }
}

/// Whether `model` had prompt-cache activity before (the bust rule's "seen"): models enter
/// the process-wide set and never leave it, so once this VM has seen one it need not ask.
fn cache_model_seen_before(shared: &Shared, model: &str) -> bool {
    let seen_here = &shared.cache_models_seen;
    let known = seen_here.try_borrow().is_ok_and(|m| m.contains(model));
    let seen = known || shared_store::CACHE_MODELS.seen_before(&*shared.host, model);
    if let Ok(mut local) = seen_here.try_borrow_mut()
        // Bounded like the process-wide set: model names come from clients.
        && !known
        && local.len() < shared_store::CACHE_MODELS_CAP
    {
        local.insert(model.to_owned());
    }
    seen
}
