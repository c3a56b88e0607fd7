//! The HTTP context: maps each proxy-wasm callback to the exchange layer
//! ([`crate::exchange`]) and moves what it needs across the ABI — header values, the buffered
//! request body, response chunks — then acts on what it decides: a local reply, a rewritten
//! body, the request record. Responses pass straight through while their usage is read.

use std::rc::Rc;

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::abi::{
    property, remove_request_header, request_body, request_header, response_code, response_encoded,
    response_header, send, strip_headroom_headers,
};
use super::shared::Shared;
use crate::api::Api;
use crate::credential::{CREDENTIAL_HEADERS, Scope};
use crate::exchange::cache::Capture;
use crate::exchange::cache::{self, Lookup};
use crate::exchange::deferred::{DeferredRun, QueuedRun};
use crate::exchange::{self, ExchangeState, LocalReply, ProviderHeaders, RequestFacts};
use crate::fail_open::FailOpen;
use crate::operator;
use crate::pipeline::{Outcome, compress_request_unsettled};
use crate::record;
use crate::response_cache::CacheKey;
use crate::routing::{self, BodyPlan, BodyStep, Route};
use crate::savings;
use crate::shared_store::SharedStores;
use crate::stack_header;
use crate::usage;
use crate::usage::strip::{Forward, UsageStrip};

/// Per-request state: the exchange's, and what only the glue needs.
pub(crate) struct HeadroomHttp {
    /// `None` when the root is not configured: pass everything through.
    shared: Option<Rc<Shared>>,
    /// What the exchange layer keeps of this request.
    exchange: ExchangeState,
    /// Whether body callbacks are pausing to buffer the request body.
    buffering: bool,
    /// The retrieval scope of the request's provider credential, read with its headers (Envoy
    /// does not let body callbacks read request headers).
    scope: Option<Scope>,
    /// Set when the filter added `include_usage`: removes the usage-only chunk it causes.
    strip: Option<UsageStrip>,
    /// The response-cache key of a cacheable request the cache could not answer.
    cache_key: Option<CacheKey>,
    /// The response being kept for the cache, as the client receives it.
    capture: Option<Capture>,
    /// The pipeline run whose accounting waits for the end of the exchange.
    pending: Option<PendingRun>,
}

/// A run whose accounting waits for the end of its exchange, with what its spans need.
struct PendingRun {
    api: Api,
    /// Its start and end, µs since the epoch, when traces are on.
    window: Option<(u64, u64)>,
    /// Whether its rewritten body went upstream.
    rewritten: bool,
    /// In the VM's settle queue: the tick may settle it before the exchange ends.
    run: QueuedRun,
}

impl HeadroomHttp {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            exchange: ExchangeState::default(),
            buffering: false,
            scope: None,
            strip: None,
            cache_key: None,
            capture: None,
            pending: None,
        }
    }

    /// Reads the whole buffered body once; answers it from the response cache when it can
    /// (the action of that local reply), else rewrites it and writes it back when it changed;
    /// records the time this took.
    fn rewrite_body(&mut self, shared: &Shared, api: Api, body_size: usize) -> Option<Action> {
        let core = &shared.core;
        let began = core.host.now();
        let Some(body) = request_body(body_size) else {
            self.exchange.fail_open(core, api, FailOpen::Internal);
            return None;
        };
        if let Some(scope) = self.scope {
            match cache::lookup(core, scope, api, &body) {
                Lookup::Hit(reply) => {
                    // Nothing more is recorded for it: no provider usage, cost or budget spend.
                    self.exchange.api = None;
                    return Some(send(&reply));
                }
                Lookup::Miss(key) => self.cache_key = Some(key),
                Lookup::Uncacheable => {}
            }
        }
        if core.config.compress {
            self.compress_body(shared, api, body_size, &body);
        }
        self.exchange.body_done(core, began);
        None
    }

    /// Compresses the body and writes it back when it changed; what the run's accounting
    /// still owes is paid at the end of the exchange when the VM's bound allows, else now.
    fn compress_body(&mut self, shared: &Shared, api: Api, body_size: usize, body: &[u8]) {
        let core = &shared.core;
        let mut stores = core.stores.clone();
        if let Some(scope) = self.scope {
            stores.omitted.scope = scope;
        }
        // The run's clock only when its spans are wanted.
        let started = shared.traces.as_ref().and_then(|_| core.host.now_us());
        let result = compress_request_unsettled(api, body, &core.config.pipeline, &mut stores);
        let window = started.and_then(|start| Some((start, core.host.now_us()?)));
        let (outcome, unsettled) = match result {
            Ok(run) => run,
            Err(reason) => {
                if let Some((start, end)) = window {
                    super::traces::record_run(shared, api, start, end, Err(reason));
                }
                self.exchange.count_run(core, &stores.timed, None);
                return self.exchange.fail_open(core, api, reason);
            }
        };
        let rewritten = self.write_body(core, api, body_size, body, &outcome);
        let run = DeferredRun::new(&core.unsettled, outcome, unsettled, stores);
        if run.waits() {
            let run = core.settle_queue.push(run);
            self.pending = Some(PendingRun {
                api,
                window,
                rewritten,
                run,
            });
        } else {
            let (outcome, stores) = run.settle();
            self.account(shared, api, window, &outcome, &stores, rewritten);
        }
    }

    /// Writes the body the run decided (and `include_usage`, when the filter adds it) back;
    /// whether a rewritten body goes upstream.
    fn write_body(
        &mut self,
        core: &exchange::Shared,
        api: Api,
        body_size: usize,
        body: &[u8],
        outcome: &Outcome,
    ) -> bool {
        let injected =
            if core.config.read_usage && core.config.stream_usage && outcome.stream_without_usage {
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
            return false;
        };
        if let Err(status) =
            hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, new_body)
        {
            warn!("headroom: cannot replace the request body: {status:?}");
            self.exchange.fail_open(core, api, FailOpen::Internal);
            return false;
        }
        true
    }

    /// Records a settled run: its spans (`window`: its start and end, µs), what it did, and
    /// what its rewritten body saved.
    fn account(
        &mut self,
        shared: &Shared,
        api: Api,
        window: Option<(u64, u64)>,
        outcome: &Outcome,
        stores: &SharedStores,
        rewritten: bool,
    ) {
        if let Some((start, end)) = window {
            super::traces::record_run(shared, api, start, end, Ok(outcome));
        }
        self.exchange
            .count_run(&shared.core, &stores.timed, Some(outcome));
        if rewritten {
            self.exchange.count_rewrite(&shared.core, outcome);
        }
    }

    /// Starts keeping the response for the cache when the exchange layer allows it.
    fn start_capture(&mut self, shared: &Shared) {
        if self.cache_key.is_none() {
            return;
        }
        let declared = response_header("content-length")
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<usize>().ok());
        let Some(max) = cache::capture_limit(
            &shared.core,
            self.exchange.status,
            response_encoded(),
            declared,
        ) else {
            return;
        };
        let content_type = response_header("content-type")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "application/json".to_owned());
        self.capture = Some(Capture::new(content_type, max));
    }

    /// Stores the response kept for the cache, once it has ended whole.
    fn store_capture(&mut self, shared: &Shared) {
        if let (Some(capture), Some(key)) = (self.capture.take(), self.cache_key.take()) {
            cache::store(&shared.core, &key, capture);
        }
    }

    /// Records the exchange once and publishes its record for the access log.
    fn finish_exchange(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if let Some(PendingRun {
            api,
            window,
            rewritten,
            run,
        }) = self.pending.take()
            && let Some((outcome, stores)) = run.settle()
        {
            self.account(&shared, api, window, &outcome, &stores, rewritten);
        }
        if let Some(record) = self.exchange.finish(&shared.core)
            && let Err(status) = hostcalls::set_property(vec![record::PROPERTY], Some(&record))
        {
            debug!("headroom: cannot set {}: {status:?}", record::PROPERTY);
        }
    }
}

impl Context for HeadroomHttp {}

impl HttpContext for HeadroomHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let core = &shared.core;
        core.host.inc(crate::metrics::Counter::InboundRequests);
        let method = request_header(":method");
        let path = request_header(":path");
        let route = routing::route(&core.config, method.as_deref(), path.as_deref());
        // A retrieval with a provider credential reads only that credential's originals; one
        // without reads those of requests that carried none, which are operators' to see.
        let anonymous_retrieval =
            matches!(route, Route::Retrieve(_)) && !credential_scope(core).credentialed;
        if (anonymous_retrieval
            || matches!(route, Route::Stats | Route::History | Route::Dashboard))
            && let Some(refusal) = operator_refusal(core)
        {
            return send(&refusal);
        }
        let api = match route {
            Route::Other => return Action::Continue,
            Route::Health => return send(&exchange::health()),
            Route::Retrieve(hash) => {
                return send(&exchange::retrieval(core, credential_scope(core), hash));
            }
            Route::Stats => return send(&exchange::stats(core)),
            Route::History => {
                return send(&exchange::history(
                    core,
                    path.as_deref().unwrap_or_default(),
                ));
            }
            Route::Dashboard => return send(&exchange::dashboard()),
            Route::Probe(probe) => return send(&exchange::probe(core, probe)),
            Route::Billed(billed) => {
                // Budget-checked, never compressed.
                let reply =
                    self.check_budget(&shared, billed.provider(), Some(billed), end_of_stream);
                strip_headroom_headers();
                return reply.unwrap_or(Action::Continue);
            }
            Route::Provider(api) => api,
        };
        self.scope = Some(credential_scope(core));
        let project = request_header(savings::PROJECT_HEADER);
        let stack = request_header(stack_header::STACK_HEADER);
        self.exchange.begin(
            core,
            api,
            &ProviderHeaders {
                path: path.as_deref(),
                project: project.as_deref(),
                stack: stack.as_deref(),
            },
        );
        // Before the x-headroom-* headers go: the project's budget is read from them.
        if let Some(reply) = self.check_budget(&shared, api.provider(), None, end_of_stream) {
            return reply;
        }
        strip_headroom_headers();
        self.exchange.admitted(core, api);
        if core.config.read_usage {
            // Responses must arrive readable for their usage report (see Config::read_usage).
            remove_request_header("accept-encoding");
        }
        if !core.config.compress && core.config.response_cache.is_none() {
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
                    self.exchange.fail_open(core, api, FailOpen::Internal);
                } else {
                    self.buffering = true;
                    debug!("headroom: {} request, buffering the body", api.as_str());
                }
            }
            BodyPlan::NoBody => debug!("headroom: {} request without a body", api.as_str()),
            BodyPlan::Skip(reason) => self.exchange.fail_open(core, api, reason),
        }
        // Never Pause here: Envoy would then withhold the body callbacks.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if !self.buffering {
            // Not compressing: the budget may still need the body for its estimate.
            return match self
                .exchange
                .budget
                .body_step(&shared.core, body_size, end_of_stream)
            {
                Some(BodyStep::Wait) => Action::Pause,
                Some(BodyStep::Complete) => {
                    self.reserve(&shared, body_size).unwrap_or(Action::Continue)
                }
                Some(BodyStep::TooLarge) | None => Action::Continue,
            };
        }
        let Some(api) = self.exchange.api else {
            self.buffering = false;
            return Action::Continue;
        };
        match routing::body_step(body_size, end_of_stream, shared.core.config.max_body_bytes) {
            BodyStep::Wait => Action::Pause,
            BodyStep::TooLarge => {
                // Continue flushes what the host buffered so far and streams the rest.
                self.buffering = false;
                self.exchange
                    .fail_open(&shared.core, api, FailOpen::TooLarge);
                self.exchange.budget.body_unreadable(&shared.core);
                Action::Continue
            }
            BodyStep::Complete => {
                self.buffering = false;
                // Reserved (or refused) before the pipeline spends time on it.
                if let Some(reply) = self.reserve(&shared, body_size) {
                    return reply;
                }
                match self.rewrite_body(&shared, api, body_size) {
                    // Answered from the response cache: it costs nothing, the reservation
                    // goes back.
                    Some(reply) => {
                        self.exchange.budget.settle(&shared.core, None);
                        reply
                    }
                    None => Action::Continue,
                }
            }
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the stream without an end-of-stream body call; LLM APIs never send them.
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        self.exchange.budget.body_unreadable(&shared.core);
        if std::mem::take(&mut self.buffering)
            && let Some(api) = self.exchange.api
        {
            debug!("headroom: request trailers while buffering");
            self.exchange
                .fail_open(&shared.core, api, FailOpen::Internal);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let core = &shared.core;
        let content_type = response_header("content-type").unwrap_or_default();
        let encoded = response_encoded();
        self.exchange
            .budget
            .on_response_headers(core, encoded, &content_type);
        if end_of_stream {
            self.exchange.budget.on_response_body(core, Some(&[]), true);
        }
        let Some(api) = self.exchange.api else {
            return Action::Continue;
        };
        let status = response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.trim().parse().ok());
        self.exchange.response_started(core, status);
        self.read_response_headers(core, api, encoded, &content_type);
        self.start_capture(&shared);
        if end_of_stream {
            self.store_capture(&shared);
            self.finish_exchange();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if self.exchange.budget.reads_response() || end_of_stream {
            let chunk = if self.exchange.budget.reads_response() && body_size > 0 {
                hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .map(Option::unwrap_or_default)
            } else {
                Some(Vec::new())
            };
            self.exchange
                .budget
                .on_response_body(&shared.core, chunk.as_deref(), end_of_stream);
        }
        let action = self.read_response_body(body_size, end_of_stream);
        if end_of_stream {
            self.store_capture(&shared);
            self.finish_exchange();
        }
        action
    }

    fn on_log(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.exchange.api.is_none() {
            self.exchange.budget.on_log(&shared.core);
            return;
        }
        self.finish_exchange();
        // Whatever the exchange still holds (its reservation when the stream died).
        self.exchange.budget.on_log(&shared.core);
        if let Some((code, details)) = response_code() {
            self.exchange
                .count_failure(&shared.core, code, details.as_deref());
        }
    }
}

impl HeadroomHttp {
    /// The budgets' check at the request headers; `Some(action)` when it refused.
    fn check_budget(
        &mut self,
        shared: &Shared,
        provider: crate::api::Provider,
        billed: Option<crate::api::Billed>,
        end_of_stream: bool,
    ) -> Option<Action> {
        let content_type = request_header("content-type");
        let content_encoding = request_header("content-encoding");
        let project = request_header(savings::PROJECT_HEADER);
        let credentials = CREDENTIAL_HEADERS.map(request_header);
        let [a, b, c] = &credentials;
        let facts = RequestFacts {
            content_type: content_type.as_deref(),
            content_encoding: content_encoding.as_deref(),
            project: project.as_deref(),
            credentials: [a.as_deref(), b.as_deref(), c.as_deref()],
        };
        let budget = &mut self.exchange.budget;
        if let Some(refusal) =
            budget.on_request_headers(&shared.core, provider, billed, &facts, end_of_stream)
        {
            return Some(send(&refusal));
        }
        if budget.wants_readable_response(&shared.core) {
            remove_request_header("accept-encoding");
        }
        None
    }

    /// Reserves the budgets' estimate from the buffered body; `Some(action)` when refused.
    fn reserve(&mut self, shared: &Shared, body_size: usize) -> Option<Action> {
        if !self.exchange.budget.wants_body() {
            return None;
        }
        let body = request_body(body_size);
        self.exchange
            .budget
            .reserve(&shared.core, body.as_deref())
            .map(|refusal| send(&refusal))
    }

    /// Starts reading the response's usage; keeps stripping the usage-only chunk only from a
    /// stream whose body the host lets the filter re-frame.
    fn read_response_headers(
        &mut self,
        core: &exchange::Shared,
        api: Api,
        encoded: bool,
        content_type: &[u8],
    ) {
        let strip =
            self.exchange
                .read_usage(core, api, encoded, content_type, self.strip.is_some());
        // The body may shrink by the usage-only chunk: let the host re-frame it.
        if !strip
            || hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length")
                .map_err(|status| debug!("headroom: cannot remove content-length: {status:?}"))
                .is_err()
        {
            self.strip = None;
        }
    }

    /// Reads a response chunk's usage; removes the usage-only chunk the filter asked for.
    fn read_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Without a Pause, the buffer holds just this chunk: read it; alter it only to remove
        // the usage-only chunk the filter itself asked for.
        if self.exchange.usage.is_none() && self.capture.is_none() {
            return Action::Continue;
        }
        let chunk = if body_size == 0 {
            Vec::new()
        } else {
            match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                Ok(chunk) => chunk.unwrap_or_default(),
                Err(status) => {
                    debug!("headroom: cannot read a response chunk: {status:?}");
                    self.exchange.usage = None;
                    self.capture = None;
                    self.flush_held(body_size);
                    return Action::Continue;
                }
            }
        };
        let Some(parser) = self.exchange.usage.as_mut() else {
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
        let forward = match strip.process(parser, &chunk, end_of_stream) {
            Forward::Chunk => chunk,
            Forward::Bytes(bytes) => {
                if let Err(status) =
                    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &bytes)
                {
                    warn!("headroom: cannot rewrite a response chunk: {status:?}");
                    self.capture = None;
                }
                bytes
            }
        };
        if let Some(capture) = self.capture.as_mut() {
            capture.push(&forward);
        }
        Action::Continue
    }

    /// Stops stripping: the bytes held back go out ahead of the current chunk.
    fn flush_held(&mut self, body_size: usize) {
        let mut out = self
            .strip
            .take()
            .map(UsageStrip::release)
            .unwrap_or_default();
        if !out.is_empty() {
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
}

/// The refusal of an operator endpoint request (client from `source.address`, the listener
/// from `destination.address`); `None`: answer it.
fn operator_refusal(core: &exchange::Shared) -> Option<LocalReply> {
    let source = property(&["source", "address"]);
    let destination = property(&["destination", "address"]);
    let host = request_header(":authority");
    let authorization = request_header("authorization");
    exchange::operator_refusal(
        core,
        &operator::Request {
            source: source.as_deref(),
            destination: destination.as_deref(),
            host: host.as_deref(),
            authorization: authorization.as_deref(),
        },
    )
}

/// The retrieval scope of the request's provider credential.
fn credential_scope(core: &exchange::Shared) -> Scope {
    let values = CREDENTIAL_HEADERS.map(request_header);
    let [a, b, c] = &values;
    Scope::of(
        &core.config.pipeline.marker_key,
        [a.as_deref(), b.as_deref(), c.as_deref()],
    )
}
