//! The HTTP context: routes each request, answers health checks and retrievals, buffers
//! provider request bodies until end of stream, runs the pipeline and writes back the
//! compressed body, and decides in `on_log` whether the request failed. Responses always pass
//! straight through.

use std::rc::Rc;

use log::{debug, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::root::Shared;
use crate::api::Api;
use crate::fail_open::FailOpen;
use crate::flow::{
    self, BodyPlan, BodyStep, HEALTH_BODY, HEALTH_CONTENT_TYPE, RETRIEVE_CONTENT_TYPE, Route,
};
use crate::metrics::{self, Counter};
use crate::pipeline::{ContentHash, compress_request};

/// Per-request state.
pub(crate) struct HeadroomHttp {
    /// `None` when the root is not configured: pass everything through.
    shared: Option<Rc<Shared>>,
    /// The provider API of this request, if it is one.
    api: Option<Api>,
    /// Whether body callbacks are pausing to buffer the request body.
    buffering: bool,
}

impl HeadroomHttp {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            api: None,
            buffering: false,
        }
    }

    /// Counts a fail-open and says so at debug level.
    fn fail_open(shared: &Shared, api: Api, reason: FailOpen) {
        shared.counters.inc(Counter::FailOpen(reason));
        debug!(
            "headroom: {} request forwarded unchanged ({reason})",
            api.as_str()
        );
    }

    /// Reads the whole buffered body once, rewrites it and writes it back when it changed.
    fn rewrite_body(shared: &Shared, api: Api, body_size: usize) {
        let body = if body_size == 0 {
            Vec::new()
        } else {
            match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
                Ok(Some(body)) if body.len() == body_size => body,
                Ok(other) => {
                    let got = other.map_or(0, |body| body.len());
                    warn!("headroom: request body read returned {got} of {body_size} bytes");
                    return Self::fail_open(shared, api, FailOpen::Internal);
                }
                Err(status) => {
                    warn!("headroom: cannot read the request body: {status:?}");
                    return Self::fail_open(shared, api, FailOpen::Internal);
                }
            }
        };
        let mut stores = shared.stores.clone();
        let outcome = match compress_request(api, &body, &shared.config.pipeline, &mut stores) {
            Ok(outcome) => outcome,
            Err(reason) => return Self::fail_open(shared, api, reason),
        };
        for block in &outcome.blocks {
            shared.counters.inc(Counter::ToolOutputs(block.decision));
        }
        let Some(new_body) = outcome.body.as_deref() else {
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
            return Self::fail_open(shared, api, FailOpen::Internal);
        }
        let bytes_saved = outcome.bytes_before.saturating_sub(outcome.bytes_after);
        shared.counters.add(Counter::BytesSaved, bytes_saved);
        shared
            .counters
            .add(Counter::TokensSaved, outcome.tokens_saved());
        info!(
            "headroom: {} of {} tool output(s) replaced, {} -> {} bytes, {} tokens saved ({})",
            outcome.replaced_blocks(),
            outcome.blocks.len(),
            outcome.bytes_before,
            outcome.bytes_after,
            outcome.tokens_saved(),
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
        let api = match flow::route(&shared.config, method.as_deref(), path.as_deref()) {
            Route::Other => return Action::Continue,
            Route::Health => return send_health(),
            Route::Retrieve(hash) => return send_retrieval(&shared, hash),
            Route::Provider(api) => api,
        };
        self.api = Some(api);
        shared.counters.inc(Counter::Requests);
        shared
            .counters
            .inc(Counter::RequestsByProvider(api.provider()));
        if !shared.config.compress {
            return Action::Continue;
        }
        let content_type = request_header("content-type");
        let content_encoding = request_header("content-encoding");
        match flow::body_plan(
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
                    Self::fail_open(&shared, api, FailOpen::Internal);
                } else {
                    self.buffering = true;
                    debug!("headroom: {} request, buffering the body", api.as_str());
                }
            }
            BodyPlan::NoBody => debug!("headroom: {} request without a body", api.as_str()),
            BodyPlan::Skip(reason) => Self::fail_open(&shared, api, reason),
        }
        // Never Pause here: Envoy would then withhold the body callbacks.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering {
            return Action::Continue;
        }
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            self.buffering = false;
            return Action::Continue;
        };
        match flow::body_step(body_size, end_of_stream, shared.config.max_body_bytes) {
            BodyStep::Wait => Action::Pause,
            BodyStep::TooLarge => {
                // Continue flushes what the host buffered so far and streams the rest.
                self.buffering = false;
                Self::fail_open(&shared, api, FailOpen::TooLarge);
                Action::Continue
            }
            BodyStep::Complete => {
                self.buffering = false;
                Self::rewrite_body(&shared, api, body_size);
                Action::Continue
            }
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the stream without an end-of-stream body call; LLM APIs never send them.
        if self.buffering {
            self.buffering = false;
            if let (Some(shared), Some(api)) = (self.shared.as_deref(), self.api) {
                debug!("headroom: request trailers while buffering");
                Self::fail_open(shared, api, FailOpen::Internal);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(shared), Some(api)) = (self.shared.as_deref(), self.api) else {
            return;
        };
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

/// Answers the health check locally.
fn send_health() -> Action {
    send_local(
        200,
        HEALTH_CONTENT_TYPE,
        HEALTH_BODY.as_bytes(),
        "health check",
    )
}

/// Answers a retrieval from the omitted-originals store.
fn send_retrieval(shared: &Shared, hash: Option<ContentHash>) -> Action {
    let original = hash.and_then(|hash| shared.stores.omitted.read(hash));
    if hash.is_some() {
        shared.counters.inc(Counter::Retrievals(original.is_some()));
    }
    let (status, body) = flow::retrieve_response(hash, original.as_deref());
    send_local(status, RETRIEVE_CONTENT_TYPE, body.as_bytes(), "retrieval")
}

/// Sends a local response; if the host refuses, lets the request through.
fn send_local(status: u32, content_type: &str, body: &[u8], what: &str) -> Action {
    let headers = vec![("content-type", content_type)];
    match hostcalls::send_http_response(status, headers, Some(body)) {
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
