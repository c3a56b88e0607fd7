//! The HTTP context: routes each request, answers health checks and retrievals, buffers
//! provider request bodies until end of stream, runs the pipeline and writes back the
//! compressed body. Responses pass straight through while their usage report is read; `on_log`
//! records latency, usage and whether the request failed.

use std::rc::Rc;
use std::time::SystemTime;

use log::{debug, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::budget_guard::BudgetGuard;
use super::shared::Shared;
use super::shared_store;
use crate::accounting::{self, OTHER_MODEL, UNKNOWN_MODEL};
use crate::api::Api;
use crate::credential::{CREDENTIAL_HEADERS, Scope};
use crate::fail_open::FailOpen;
use crate::metrics::{self, Counter, Histogram, UsageMissing};
use crate::operator;
use crate::pipeline::{ContentHash, PipelineHost as _, compress_request};
use crate::pricing;
use crate::record;
use crate::response_cache::{self, CacheKey, CachedResponse, HIT_HEADER};
use crate::routing::{
    self, BodyPlan, BodyStep, HEALTH_BODY, HEALTH_CONTENT_TYPE, RETRIEVE_CONTENT_TYPE, Route,
};
use crate::savings::{self, history};
use crate::stack_header;
use crate::stats;
use crate::usage::{self, UsageParser};

/// Per-request state.
pub(crate) struct HeadroomHttp {
    /// `None` when the root is not configured: pass everything through.
    shared: Option<Rc<Shared>>,
    /// The provider API of this request, if it is one.
    api: Option<Api>,
    /// Whether body callbacks are pausing to buffer the request body.
    buffering: bool,
    /// The retrieval scope of the request's provider credential, read with its headers (Envoy
    /// does not let body callbacks read request headers).
    scope: Option<Scope>,
    /// When the request headers arrived (provider requests).
    start: Option<SystemTime>,
    /// The request's `model`, when the body was parsed.
    model: Option<String>,
    /// Reads the response's usage as it streams past.
    usage: Option<UsageParser>,
    /// Why the response's usage cannot be read, when known before its body.
    usage_missing: Option<UsageMissing>,
    /// Tokens the pipeline removed from this request.
    tokens_saved: u64,
    /// Set when the filter added `include_usage`: removes the usage-only chunk it causes.
    strip: Option<UsageStrip>,
    /// Time to the response headers, µs.
    ttfb_us: Option<u64>,
    /// The filter's own time on the request body, µs.
    overhead_us: Option<u64>,
    /// `X-Headroom-Project`, for the savings ledger.
    project: Option<String>,
    /// The request path without its query (for the request record).
    path: String,
    /// The response status.
    status: Option<u32>,
    /// Whether the response was an SSE stream.
    streamed: bool,
    /// Why the request body went upstream unchanged, if it did.
    fail_open: Option<FailOpen>,
    /// `kind:strategy` of every tool output the pipeline replaced.
    transforms: Vec<String>,
    /// The `X-Headroom-Stack` bucket.
    stack: Option<String>,
    /// The exchange was recorded (at the response's end, else in `on_log`).
    recorded: bool,
    /// The response-cache key of a cacheable request the cache could not answer.
    cache_key: Option<CacheKey>,
    /// The response being kept for the cache, as the client receives it.
    capture: Option<Capture>,
    /// The request's standing with the budgets (reservation, settlement).
    budget: BudgetGuard,
}

/// A response on its way into the response cache.
struct Capture {
    /// Its `content-type`.
    content_type: String,
    /// The bytes forwarded so far.
    body: Vec<u8>,
    /// The most it may hold; beyond, nothing is kept.
    max: usize,
    /// Set once the response outgrew `max`.
    too_large: bool,
}

impl Capture {
    /// Appends forwarded bytes, giving up past the limit.
    fn push(&mut self, bytes: &[u8]) {
        if self.too_large || self.body.len().saturating_add(bytes.len()) > self.max {
            self.too_large = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }
}

/// The response bytes held back while a usage-only chunk may still be forming: an SSE event
/// is forwarded once it is complete (and dropped if it is the usage-only chunk), so only an
/// incomplete event's bytes ever wait, until the next chunk completes it.
#[derive(Default)]
struct UsageStrip {
    /// Bytes received but not forwarded yet.
    held: Vec<u8>,
    /// Offset in the response body of `held[0]`.
    held_from: u64,
}

impl HeadroomHttp {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            api: None,
            buffering: false,
            scope: None,
            start: None,
            model: None,
            usage: None,
            usage_missing: None,
            tokens_saved: 0,
            strip: None,
            ttfb_us: None,
            overhead_us: None,
            project: None,
            path: String::new(),
            status: None,
            streamed: false,
            fail_open: None,
            transforms: Vec::new(),
            stack: None,
            recorded: false,
            cache_key: None,
            capture: None,
            budget: BudgetGuard::default(),
        }
    }

    /// Counts a fail-open and says so at debug level.
    fn fail_open(&mut self, shared: &Shared, api: Api, reason: FailOpen) {
        self.fail_open = Some(reason);
        shared.counters.inc(Counter::FailOpen(reason));
        debug!(
            "headroom: {} request forwarded unchanged ({reason})",
            api.as_str()
        );
    }

    /// Reads the whole buffered body once; answers it from the response cache when it can
    /// (the action of that local reply), else rewrites it and writes it back when it changed;
    /// records the time this took.
    fn rewrite_body(&mut self, shared: &Shared, api: Api, body_size: usize) -> Option<Action> {
        let began = now();
        let body = if body_size == 0 {
            Vec::new()
        } else {
            match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
                Ok(Some(body)) if body.len() == body_size => body,
                Ok(other) => {
                    let got = other.map_or(0, |body| body.len());
                    warn!("headroom: request body read returned {got} of {body_size} bytes");
                    self.fail_open(shared, api, FailOpen::Internal);
                    return None;
                }
                Err(status) => {
                    warn!("headroom: cannot read the request body: {status:?}");
                    self.fail_open(shared, api, FailOpen::Internal);
                    return None;
                }
            }
        };
        if let Some(reply) = self.answer_from_cache(shared, api, &body) {
            return Some(reply);
        }
        if shared.config.compress {
            self.compress_body(shared, api, body_size, &body);
        }
        self.overhead_us = elapsed_us(began, now());
        record_histogram(shared, Histogram::OverheadMs, self.overhead_us);
        None
    }

    /// Answers the request from the response cache when it holds a fresh answer for it (the
    /// local reply's action); remembers the key of a cacheable request it cannot answer.
    fn answer_from_cache(&mut self, shared: &Shared, api: Api, body: &[u8]) -> Option<Action> {
        let config = shared.config.response_cache.as_ref()?;
        let store = shared.responses.as_ref()?;
        let key = match CacheKey::of(config, self.scope?, api.path(), body) {
            Ok(key) => key,
            Err(reason) => {
                debug!("headroom: response not cacheable ({reason:?})");
                return None;
            }
        };
        let now = unix_now()?;
        let ttl = config.ttl_seconds;
        let hit = key
            .lookup_keys(ttl, now)
            .into_iter()
            .filter_map(|at| store.read(at))
            .filter_map(|bytes| CachedResponse::decode(&bytes))
            .find(|entry| entry.fresh(ttl, now));
        let Some(hit) = hit else {
            shared.counters.inc(Counter::ResponseCacheMisses);
            self.cache_key = Some(key);
            return None;
        };
        shared.counters.inc(Counter::ResponseCacheHits);
        shared.counters.inc(Counter::RequestsCached);
        // Nothing more is recorded for it: no provider usage, cost or budget spend.
        self.api = None;
        let age = now.saturating_sub(hit.stored_at).to_string();
        let headers = [
            ("content-type", hit.content_type.as_str()),
            (HIT_HEADER, "hit"),
            ("age", age.as_str()),
        ];
        Some(send_local_with(
            200,
            &headers,
            &hit.body,
            "response cache hit",
        ))
    }

    /// Starts keeping the response for the cache: a 200 the client receives unencoded and
    /// small enough.
    fn start_capture(&mut self, shared: &Shared) {
        let Some(config) = shared.config.response_cache.as_ref() else {
            return;
        };
        if self.cache_key.is_none() || self.status != Some(200) {
            return;
        }
        if response_encoded() {
            return;
        }
        let max = usize::try_from(config.max_entry_bytes).unwrap_or(usize::MAX);
        let declared = response_header("content-length")
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<usize>().ok());
        if declared.is_some_and(|len| len > max) {
            return;
        }
        let content_type = response_header("content-type")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "application/json".to_owned());
        self.capture = Some(Capture {
            content_type,
            body: Vec::new(),
            max,
            too_large: false,
        });
    }

    /// Stores the response kept for the cache, once it has ended whole.
    fn store_capture(&mut self, shared: &Shared) {
        let (Some(capture), Some(key)) = (self.capture.take(), self.cache_key.take()) else {
            return;
        };
        let (Some(config), Some(store), Some(now)) = (
            shared.config.response_cache.as_ref(),
            shared.responses.as_ref(),
            unix_now(),
        ) else {
            return;
        };
        if capture.too_large || capture.body.is_empty() {
            return;
        }
        let entry = CachedResponse {
            stored_at: now,
            content_type: capture.content_type,
            body: capture.body,
        };
        store.write_in(
            &shared_store::ProxyMap,
            key.store_key(config.ttl_seconds, now),
            &entry.encode(),
        );
        shared.counters.inc(Counter::ResponseCacheStores);
    }

    fn compress_body(&mut self, shared: &Shared, api: Api, body_size: usize, body: &[u8]) {
        let mut stores = shared.stores.clone();
        if let Some(scope) = self.scope {
            stores.omitted.scope = scope;
        }
        // The run's clock only when its spans are wanted.
        let started = shared.traces.as_ref().and_then(|_| stores.now_us());
        let outcome = compress_request(api, body, &shared.config.pipeline, &mut stores);
        if let Some(start) = started
            && let Some(end) = stores.now_us()
        {
            super::traces::record_run(shared, api, start, end, outcome.as_ref().map_err(|r| *r));
        }
        let samples: Vec<(String, u64)> = stores
            .timed
            .iter()
            .map(|(transform, us)| (metrics::sanitize_label_value(transform), *us))
            .collect();
        for (transform, us) in &samples {
            shared
                .counters
                .record_named(&metrics::transform_timing(transform), us / 1000);
        }
        shared_store::record_transform_timings(&samples);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => return self.fail_open(shared, api, reason),
        };
        self.model.clone_from(&outcome.model);
        self.tokens_saved = outcome.tokens_saved();
        for (signal, tokens) in outcome.waste.iter().filter(|(_, t)| *t > 0) {
            shared
                .counters
                .add(Counter::WasteSignalTokens(signal), tokens);
        }
        for block in &outcome.blocks {
            shared.counters.inc(Counter::ToolOutputs(block.decision));
            if block.decision.replaced() {
                self.transforms.push(block.strategy.to_owned());
                if let Some(strategy) = metrics::Strategy::of(block.strategy) {
                    let saved = block
                        .tokens_before
                        .unwrap_or(0)
                        .saturating_sub(block.tokens_after.unwrap_or(0));
                    shared.counters.inc(Counter::Compressions(strategy));
                    shared.counters.add(Counter::TokensSavedBy(strategy), saved);
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
        let injected = if shared.config.read_usage
            && shared.config.stream_usage
            && outcome.stream_without_usage
        {
            usage::with_include_usage(outcome.body.as_deref().unwrap_or(body))
        } else {
            None
        };
        if injected.is_some() {
            self.strip = Some(UsageStrip::default());
            debug!("headroom: set stream_options.include_usage");
        }
        let Some(new_body) = injected.as_deref().or(outcome.body.as_deref()) else {
            debug!(
                "headroom: {} request unchanged ({} tool output(s))",
                api.as_str(),
                outcome.blocks.len()
            );
            return;
        };
        if let Err(status) =
            hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, new_body)
        {
            warn!("headroom: cannot replace the request body: {status:?}");
            return self.fail_open(shared, api, FailOpen::Internal);
        }
        let bytes_saved = outcome.bytes_before.saturating_sub(outcome.bytes_after);
        shared.counters.add(Counter::BytesSaved, bytes_saved);
        shared
            .counters
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
}

impl Context for HeadroomHttp {}

impl HttpContext for HeadroomHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        shared.counters.inc(Counter::InboundRequests);
        let method = request_header(":method");
        let path = request_header(":path");
        let route = routing::route(&shared.config, method.as_deref(), path.as_deref());
        // A retrieval with a provider credential reads only that credential's originals; one
        // without reads those of requests that carried none, which are operators' to see.
        let anonymous_retrieval =
            matches!(route, Route::Retrieve(_)) && !credential_scope(&shared).credentialed;
        if (anonymous_retrieval
            || matches!(route, Route::Stats | Route::History | Route::Dashboard))
            && let Some(refusal) = operator_refusal(&shared)
        {
            return refusal;
        }
        let api = match route {
            Route::Other => return Action::Continue,
            Route::Health => return send_health(),
            Route::Retrieve(hash) => return send_retrieval(&shared, hash),
            Route::Stats => return send_stats(&shared),
            Route::History => return send_history(path.as_deref().unwrap_or_default()),
            Route::Dashboard => return send_dashboard(),
            Route::Probe(probe) => return send_probe(&shared, probe),
            Route::Billed(billed) => {
                // Budget-checked, never compressed.
                let reply = self.budget.on_request_headers(
                    &shared,
                    billed.provider(),
                    Some(billed),
                    end_of_stream,
                );
                strip_headroom_headers();
                return reply.unwrap_or(Action::Continue);
            }
            Route::Provider(api) => api,
        };
        self.api = Some(api);
        self.scope = Some(credential_scope(&shared));
        self.start = now();
        self.path = path
            .as_deref()
            .map(|p| String::from_utf8_lossy(crate::api::strip_query(p)).into_owned())
            .unwrap_or_default();
        self.project = request_header(savings::PROJECT_HEADER)
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        self.stack =
            stack_header::stack_bucket(request_header(stack_header::STACK_HEADER).as_deref());
        if let Some(stack) = self.stack.as_deref() {
            // Beyond the bound a new stack is not counted (docs/upstream.md §8).
            inc_bounded(
                &shared,
                shared_store::STACKS,
                stack,
                metrics::requests_by_stack,
                None,
            );
        }
        // Before the x-headroom-* headers go: the project's budget is read from them.
        if let Some(reply) =
            self.budget
                .on_request_headers(&shared, api.provider(), None, end_of_stream)
        {
            return reply;
        }
        strip_headroom_headers();
        shared.counters.inc(Counter::Requests);
        if shared.config.read_usage {
            // Responses must arrive readable for their usage report (see Config::read_usage).
            if let Err(status) =
                hostcalls::remove_map_value(MapType::HttpRequestHeaders, "accept-encoding")
            {
                debug!("headroom: cannot remove accept-encoding: {status:?}");
            }
        }
        shared
            .counters
            .inc(Counter::RequestsByProvider(api.provider()));
        if !shared.config.compress && shared.config.response_cache.is_none() {
            return Action::Continue;
        }
        let content_type = request_header("content-type");
        let content_encoding = request_header("content-encoding");
        match routing::body_plan(
            content_type.as_deref(),
            content_encoding.as_deref(),
            end_of_stream,
        ) {
            BodyPlan::Buffer => {
                // The body may change size: Envoy re-frames it once content-length is gone.
                if let Err(status) =
                    hostcalls::remove_map_value(MapType::HttpRequestHeaders, "content-length")
                {
                    warn!("headroom: cannot remove content-length: {status:?}");
                    self.fail_open(&shared, api, FailOpen::Internal);
                } else {
                    self.buffering = true;
                    debug!("headroom: {} request, buffering the body", api.as_str());
                }
            }
            BodyPlan::NoBody => debug!("headroom: {} request without a body", api.as_str()),
            BodyPlan::Skip(reason) => self.fail_open(&shared, api, reason),
        }
        // Never Pause here: Envoy would then withhold the body callbacks.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering {
            // Not compressing: the budget may still need the body for its estimate.
            return match self.shared.clone() {
                Some(shared) => self
                    .budget
                    .on_request_body(&shared, body_size, end_of_stream),
                None => Action::Continue,
            };
        }
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            self.buffering = false;
            return Action::Continue;
        };
        match routing::body_step(body_size, end_of_stream, shared.config.max_body_bytes) {
            BodyStep::Wait => Action::Pause,
            BodyStep::TooLarge => {
                // Continue flushes what the host buffered so far and streams the rest.
                self.buffering = false;
                self.fail_open(&shared, api, FailOpen::TooLarge);
                self.budget.body_unreadable(&shared);
                Action::Continue
            }
            BodyStep::Complete => {
                self.buffering = false;
                // Reserved (or refused) before the pipeline spends time on it.
                if let Some(reply) = self.budget.reserve_from_buffer(&shared, body_size) {
                    return reply;
                }
                match self.rewrite_body(&shared, api, body_size) {
                    // Answered from the response cache: it costs nothing, the reservation
                    // goes back.
                    Some(reply) => {
                        self.budget.settle(&shared, None);
                        reply
                    }
                    None => Action::Continue,
                }
            }
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the stream without an end-of-stream body call; LLM APIs never send them.
        if let Some(shared) = self.shared.clone() {
            self.budget.body_unreadable(&shared);
        }
        if self.buffering {
            self.buffering = false;
            if let (Some(shared), Some(api)) = (self.shared.clone(), self.api) {
                debug!("headroom: request trailers while buffering");
                self.fail_open(&shared, api, FailOpen::Internal);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(shared) = self.shared.clone() {
            self.budget.on_response_headers(&shared);
            if end_of_stream {
                self.budget.on_response_body(&shared, 0, true);
            }
        }
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            return Action::Continue;
        };
        self.status = response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.trim().parse().ok());
        let action = self.read_response_headers(&shared, api);
        self.start_capture(&shared);
        if end_of_stream {
            self.store_capture(&shared);
            self.finish_exchange();
        }
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(shared) = self.shared.clone() {
            self.budget
                .on_response_body(&shared, body_size, end_of_stream);
        }
        let action = self.read_response_body(body_size, end_of_stream);
        if end_of_stream && let Some(shared) = self.shared.clone() {
            self.store_capture(&shared);
        }
        if end_of_stream {
            self.finish_exchange();
        }
        action
    }

    fn on_log(&mut self) {
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            if let Some(shared) = self.shared.clone() {
                self.budget.on_log(&shared);
            }
            return;
        };
        self.finish_exchange();
        // Whatever the exchange still holds (its reservation when the stream died).
        self.budget.on_log(&shared);
        self.log_outcome(&shared, api);
    }
}

impl HeadroomHttp {
    /// Reads the response headers: TTFB, and how the usage report will be read.
    fn read_response_headers(&mut self, shared: &Shared, api: Api) -> Action {
        self.ttfb_us = elapsed_us(self.start, now());
        record_histogram(shared, Histogram::TtfbMs, self.ttfb_us);
        if !shared.config.read_usage {
            return Action::Continue;
        }
        if response_encoded() {
            self.usage_missing = Some(UsageMissing::Encoded);
        } else {
            let content_type = response_header("content-type").unwrap_or_default();
            let parser = UsageParser::for_content_type(api, &content_type);
            self.streamed = parser.is_streaming();
            if parser.is_streaming() && self.strip.is_some() {
                // The body may shrink by the usage-only chunk: let the host re-frame it.
                if let Err(status) =
                    hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length")
                {
                    debug!("headroom: cannot remove content-length: {status:?}");
                    self.strip = None;
                }
            } else {
                self.strip = None;
            }
            self.usage = Some(parser);
        }
        if self.usage.is_none() {
            self.strip = None;
        }
        Action::Continue
    }

    /// Reads a response chunk's usage; removes the usage-only chunk the filter asked for.
    fn read_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Without a Pause, the buffer holds just this chunk: read it; alter it only to remove
        // the usage-only chunk the filter itself asked for.
        if self.usage.is_none() && self.capture.is_none() {
            return Action::Continue;
        }
        let chunk = if body_size == 0 {
            Vec::new()
        } else {
            match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                Ok(chunk) => chunk.unwrap_or_default(),
                Err(status) => {
                    debug!("headroom: cannot read a response chunk: {status:?}");
                    self.usage = None;
                    self.capture = None;
                    self.flush_held(body_size);
                    return Action::Continue;
                }
            }
        };
        let Some(parser) = self.usage.as_mut() else {
            if let Some(capture) = self.capture.as_mut() {
                capture.push(&chunk);
            }
            return Action::Continue;
        };
        let Some(strip) = self.strip.as_mut() else {
            parser.feed(&chunk);
            if let Some(capture) = self.capture.as_mut() {
                capture.push(&chunk);
            }
            return Action::Continue;
        };
        let mut drop_ranges = Vec::new();
        parser.feed_with(&chunk, |event| {
            if event.openai_usage_only {
                drop_ranges.push(event.range.clone());
            }
        });
        let was_holding = !strip.held.is_empty();
        strip.held.extend_from_slice(&chunk);
        let end = strip.held_from + strip.held.len() as u64;
        let cut = if end_of_stream {
            end
        } else {
            parser
                .pending_event_start()
                .unwrap_or(end)
                .max(strip.held_from)
                .min(end)
        };
        let split = usize::try_from(cut - strip.held_from).unwrap_or(0);
        let rest = strip.held.split_off(split.min(strip.held.len()));
        let ready = std::mem::replace(&mut strip.held, rest);
        let ready_from = strip.held_from;
        strip.held_from = cut;
        let untouched = !was_holding && cut == end && drop_ranges.is_empty();
        if untouched {
            // `ready` is this very chunk.
            if let Some(capture) = self.capture.as_mut() {
                capture.push(&ready);
            }
        } else {
            let forward = usage::without_ranges(&ready, ready_from, &drop_ranges);
            if let Err(status) =
                hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &forward)
            {
                warn!("headroom: cannot rewrite a response chunk: {status:?}");
                self.capture = None;
            } else if let Some(capture) = self.capture.as_mut() {
                capture.push(&forward);
            }
        }
        Action::Continue
    }

    /// Records the exchange once: at the end of the response, so the request record is in
    /// place before the gateway's access log runs; `on_log` catches streams that never ended.
    fn finish_exchange(&mut self) {
        if self.recorded {
            return;
        }
        if let (Some(shared), Some(api)) = (self.shared.clone(), self.api) {
            self.recorded = true;
            self.record_exchange(&shared, api);
        }
    }

    /// Counts a failed request (decided from the response code and its details).
    fn log_outcome(&mut self, shared: &Shared, api: Api) {
        let code = match hostcalls::get_property(vec!["response", "code"]) {
            Ok(Some(bytes)) => match metrics::decode_u64_property(&bytes) {
                Some(code) => Some(code),
                None => {
                    debug!(
                        "headroom: malformed response.code property ({} bytes)",
                        bytes.len()
                    );
                    return;
                }
            },
            Ok(None) => None,
            Err(status) => {
                debug!("headroom: cannot read response.code: {status:?}");
                return;
            }
        };
        // Only a 5xx needs to know whether it came from upstream.
        let details = match code {
            Some(code) if code >= 500 => {
                match hostcalls::get_property(vec!["response", "code_details"]) {
                    Ok(details) => details,
                    Err(status) => {
                        debug!("headroom: cannot read response.code_details: {status:?}");
                        None
                    }
                }
            }
            _ => None,
        };
        if metrics::request_failed(code, details.as_deref()) {
            shared.counters.inc(Counter::RequestsFailed);
            debug!(
                "headroom: {} request failed (response code {code:?})",
                api.as_str()
            );
        }
    }

    /// Stops stripping: the bytes held back go out ahead of the current chunk.
    fn flush_held(&mut self, body_size: usize) {
        if let Some(strip) = self.strip.take()
            && !strip.held.is_empty()
        {
            let mut out = strip.held;
            if let Ok(Some(chunk)) =
                hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            {
                out.extend_from_slice(&chunk);
            }
            if let Err(status) =
                hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out)
            {
                warn!("headroom: cannot release held response bytes: {status:?}");
            }
        }
    }

    /// Records what the exchange cost: its timings, the provider's usage and the model.
    fn record_exchange(&mut self, shared: &Shared, api: Api) {
        let latency_us = elapsed_us(self.start, now());
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
        if let Some(timings) = shared_store::record_timings(&samples) {
            for (histogram, _) in samples {
                let timing = timings.get(histogram);
                shared
                    .counters
                    .set_extremes(histogram, timing.min_us / 1000, timing.max_us / 1000);
            }
        }
        let usage = self.usage.take().and_then(UsageParser::finish);
        match &usage {
            Some(usage) => {
                for (counter, delta) in accounting::usage_increments(api.provider(), usage) {
                    shared.counters.add(counter, delta);
                }
            }
            None if shared.config.read_usage => {
                let reason = self.usage_missing.unwrap_or(UsageMissing::NotReported);
                shared.counters.inc(Counter::UsageMissing(reason));
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
                shared.counters.add(counter, delta);
            }
        }
        // The reservation becomes the real cost (released when there is none).
        self.budget.settle(shared, budget_cost);
        let model = raw_model
            .map(|m| pricing::normalize_model_label(&m))
            .unwrap_or_else(|| UNKNOWN_MODEL.to_owned());
        if let Some(usage) = &usage {
            let figures = usage.cache_figures();
            if api.provider() == crate::api::Provider::Anthropic
                && (figures.read > 0 || figures.write > 0)
            {
                // Models enter the set and never leave it: once seen here, no need to ask.
                let seen_here = &shared.cache_models_seen;
                let known = seen_here.try_borrow().is_ok_and(|m| m.contains(&model));
                let seen = known || shared_store::CACHE_MODELS.seen_before(&model);
                if let Ok(mut local) = seen_here.try_borrow_mut()
                    // Bounded like the process-wide set: model names come from clients.
                    && !known
                    && local.len() < shared_store::CACHE_MODELS_CAP
                {
                    local.insert(model.clone());
                }
                for (counter, delta) in accounting::bust_increments(api.provider(), &figures, seen)
                {
                    shared.counters.add(counter, delta);
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
            let label = if shared
                .counters
                .has_named(&metrics::requests_by_model(&model))
            {
                model.as_str()
            } else {
                OTHER_MODEL
            };
            shared.counters.add_named(
                &metrics::cost_by_model(label),
                accounting::nano_usd(costs.input_usd + costs.output_usd),
            );
            shared.counters.add_named(
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
        let Some(now) = unix_now() else {
            return;
        };
        let request = exchange.savings();
        if savings::record_shared(&shared_store::ProxyKv, &request, now) {
            add_lifetime(shared, &request.lifetime_delta());
        } else {
            debug!("headroom: savings ledger kept changing; this request is not in it");
        }
        if let Err(status) =
            hostcalls::set_property(vec![record::PROPERTY], Some(&exchange.record(now)))
        {
            debug!("headroom: cannot set {}: {status:?}", record::PROPERTY);
        }
    }
}

/// Adds lifetime totals to the process's `headroom_persistent_savings_*` counters.
pub(crate) fn add_lifetime(shared: &Shared, lifetime: &savings::Lifetime) {
    let nano = accounting::nano_usd;
    let c = &shared.counters;
    c.add(Counter::PersistentRequests, lifetime.requests);
    c.add(Counter::PersistentTokensSaved, lifetime.tokens_saved);
    c.add(Counter::PersistentInputTokens, lifetime.total_input_tokens);
    c.add(
        Counter::PersistentInputCostNanoUsd,
        nano(lifetime.total_input_cost_usd),
    );
    c.add(
        Counter::PersistentSavingsNanoUsd,
        nano(lifetime.compression_savings_usd),
    );
}

/// Removes every `x-headroom-*` request header: they are for the filter, not the provider.
fn strip_headroom_headers() {
    let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return;
    };
    for (name, _) in headers {
        if stack_header::is_headroom_header(name.as_bytes())
            && let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name)
        {
            debug!("headroom: cannot remove {name}: {status:?}");
        }
    }
}

/// Unix seconds now.
fn unix_now() -> Option<u64> {
    now()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The host's clock; `None` if it cannot be read.
fn now() -> Option<SystemTime> {
    hostcalls::get_current_time().ok()
}

/// Microseconds from `from` to `to` (0 if the clock went backwards); `None` without both.
fn elapsed_us(from: Option<SystemTime>, to: Option<SystemTime>) -> Option<u64> {
    let elapsed = to?.duration_since(from?).unwrap_or_default();
    Some(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

/// Records a sample in `histogram`, in whole milliseconds (proxy-wasm histograms take integers).
fn record_histogram(shared: &Shared, histogram: Histogram, us: Option<u64>) {
    if let Some(us) = us {
        shared.counters.record(histogram, us / 1000);
    }
}

/// Adds one to the counter `name_of(value)` when `value` may have its own label in the bounded
/// `set`, else to `name_of(fallback)`, if any. A VM that has counted `value` before knows it
/// was admitted (labels are never removed), so only a new value reads shared data.
fn inc_bounded(
    shared: &Shared,
    set: shared_store::LabelSet,
    value: &str,
    name_of: fn(&str) -> String,
    fallback: Option<&str>,
) {
    let name = name_of(value);
    if shared.counters.has_named(&name) || set.admit(value) {
        shared.counters.inc_named(&name);
    } else if let Some(fallback) = fallback {
        shared.counters.inc_named(&name_of(fallback));
    }
}

/// Whether the response body is content-encoded (anything but absent, empty or `identity`).
fn response_encoded() -> bool {
    response_header("content-encoding")
        .as_deref()
        .map(<[u8]>::trim_ascii)
        .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"))
}

/// A response header's value as bytes; errors count as absent.
fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// A request header's value as bytes (values need not be UTF-8); errors count as absent.
fn request_header(name: &str) -> Option<Vec<u8>> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(value) => value,
        Err(status) => {
            debug!("headroom: cannot read request header {name}: {status:?}");
            None
        }
    }
}

/// A property's value; errors count as absent.
fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// The refusal of an operator endpoint request the rule in [`crate::operator`] does not allow
/// (client from `source.address`, the listener from `destination.address`); `None`: answer it.
fn operator_refusal(shared: &Shared) -> Option<Action> {
    let source = property(&["source", "address"]);
    let destination = property(&["destination", "address"]);
    let host = request_header(":authority");
    let authorization = request_header("authorization");
    let decision = operator::decide(
        &shared.config.operator_access(),
        &operator::Request {
            source: source.as_deref(),
            destination: destination.as_deref(),
            host: host.as_deref(),
            authorization: authorization.as_deref(),
        },
    );
    let body = decision.error_body()?;
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(decision.headers());
    Some(send_local_with(
        decision.status(),
        &headers,
        body.as_bytes(),
        "operator endpoint refusal",
    ))
}

/// Answers the health check locally.
fn send_health() -> Action {
    send_local(
        200,
        HEALTH_CONTENT_TYPE,
        HEALTH_BODY.as_bytes(),
        "health check",
    )
}

/// Answers `/livez` or `/readyz`.
fn send_probe(shared: &Shared, probe: routing::Probe) -> Action {
    let now = now();
    let uptime = now
        .and_then(|now| now.duration_since(shared.started).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let timestamp = unix_now()
        .map(crate::calendar::format_rfc3339)
        .unwrap_or_default();
    let body = routing::probe_body(probe, &timestamp, uptime);
    send_local(200, "application/json", body.as_bytes(), "probe")
}

/// Answers `/stats` from the process-wide counters and timings.
fn send_stats(shared: &Shared) -> Action {
    let counters = Counter::all()
        .into_iter()
        .map(|c| (c.name(), shared.counters.get(c)))
        .collect();
    let labelled = |set: shared_store::LabelSet, name: fn(&str) -> String| -> Vec<(String, u64)> {
        set.values()
            .into_iter()
            .map(|value| {
                let n = shared.counters.get_named(&name(&value));
                (value, n)
            })
            .collect()
    };
    let budget = super::budget_guard::stats_block(shared);
    let snapshot = stats::Snapshot {
        counters,
        models: labelled(shared_store::MODELS, metrics::requests_by_model),
        stacks: labelled(shared_store::STACKS, metrics::requests_by_stack),
        model_costs: shared_store::MODELS
            .values()
            .into_iter()
            .map(|model| {
                let cost = shared.counters.get_named(&metrics::cost_by_model(&model));
                let saved = shared
                    .counters
                    .get_named(&metrics::savings_by_model(&model));
                (model, cost, saved)
            })
            .collect(),
        timings: shared_store::timings(),
        transform_timings: shared_store::transform_timings(),
        budget,
    };
    let mut body = stats::render(&snapshot);
    let (ledger, storage) = shared_store::savings(history::STATS_HISTORY_POINTS);
    if let serde_json::Value::Object(map) = &mut body {
        let now = unix_now().unwrap_or(0);
        map.insert(
            "persistent_savings".to_owned(),
            history::persistent_savings(&ledger, &storage, now),
        );
        map.insert(
            "savings_history".to_owned(),
            history::savings_history(&ledger),
        );
        // Blocks the host serves through the filter (our host's `otel`): absent in Envoy.
        if let Ok(Some((bytes, _))) =
            shared_store::SharedMap::get(&shared_store::ProxyMap, shared_store::HOST_STATS_KEY)
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
                shared.counters.get(Counter::ResponseCacheHits),
                shared.counters.get(Counter::ResponseCacheMisses),
            ),
        );
        map.insert(
            "langfuse".to_owned(),
            crate::trace::stats_json(
                shared.config.langfuse.as_ref(),
                shared.counters.get(Counter::TraceSpansExported),
                shared.counters.get(Counter::TraceSpansDropped),
                shared.counters.get(Counter::TraceExportsFailed),
            ),
        );
    }
    let body = body.to_string();
    send_local(200, "application/json", body.as_bytes(), "stats")
}

/// Answers `/stats-history` (JSON or a CSV export) from the shared savings ledger.
fn send_history(path: &[u8]) -> Action {
    let query = match history::parse_query(path) {
        Ok(query) => query,
        Err(bad) => return send_local(400, "application/json", bad.body().as_bytes(), "history"),
    };
    let (ledger, storage) = shared_store::savings(u64::MAX);
    match query.format {
        history::Format::Json => {
            let now = unix_now().unwrap_or(0);
            let body = history::document(&ledger, &storage, query.history_mode, now);
            send_local(200, "application/json", body.as_bytes(), "history")
        }
        history::Format::Csv => {
            let history = savings::Ledger::retained(&ledger.history);
            let body = history::csv(query.series, &history);
            let disposition = history::csv_disposition(query.series);
            let headers = [
                ("content-type", "text/csv; charset=utf-8"),
                ("content-disposition", disposition.as_str()),
            ];
            send_local_with(200, &headers, body.as_bytes(), "history export")
        }
    }
}

/// The dashboard page (self-contained: no resource from outside the gateway).
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

/// Answers the dashboard page.
fn send_dashboard() -> Action {
    send_local(
        200,
        "text/html; charset=utf-8",
        DASHBOARD_HTML.as_bytes(),
        "dashboard",
    )
}

/// The retrieval scope of the request's provider credential.
fn credential_scope(shared: &Shared) -> Scope {
    let values = CREDENTIAL_HEADERS.map(request_header);
    let [a, b, c] = &values;
    Scope::of(
        &shared.config.pipeline.marker_key,
        [a.as_deref(), b.as_deref(), c.as_deref()],
    )
}

/// Answers a retrieval from the omitted-originals store: only what a request with the same
/// credential stored; anything else is the same 404 as a hash never stored.
fn send_retrieval(shared: &Shared, hash: Option<ContentHash>) -> Action {
    let scope = credential_scope(shared);
    let original = hash.and_then(|hash| shared.stores.omitted.store.read(scope.store_key(hash)));
    if hash.is_some() {
        shared.counters.inc(Counter::Retrievals(original.is_some()));
    }
    let (status, body) = routing::retrieve_response(hash, original.as_deref());
    send_local(status, RETRIEVE_CONTENT_TYPE, body.as_bytes(), "retrieval")
}

/// Sends a local response; if the host refuses, lets the request through.
fn send_local(status: u32, content_type: &str, body: &[u8], what: &str) -> Action {
    send_local_with(status, &[("content-type", content_type)], body, what)
}

/// Sends a local response with `headers`; if the host refuses, lets the request through.
fn send_local_with(status: u32, headers: &[(&str, &str)], body: &[u8], what: &str) -> Action {
    match hostcalls::send_http_response(status, headers.to_vec(), Some(body)) {
        Ok(()) => {
            debug!("headroom: answered {what} ({status})");
            Action::Pause
        }
        Err(status) => {
            warn!("headroom: cannot send the {what} response: {status:?}");
            Action::Continue
        }
    }
}
