//! One HTTP exchange through the filter, in Envoy's order: request headers, request body
//! (buffered while the filter pauses, cumulative sizes, a separate end-of-stream call), the
//! upstream, response headers, response body chunk by chunk, then done/log/delete.
//!
//! The filter fails open here too: when its VM traps, the original request goes upstream
//! unchanged if nothing modified has been sent yet, else the client gets a clear 502.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BodySender, ChannelBody, ClientBody, UpstreamBody, full};
use super::hardening::{self, Hardening};
use super::worker::{VmError, Worker};
use crate::abi::memory::{HeaderMap, HeaderMapExt};
use crate::abi::state::{LocalResponse, StreamInfo};
use crate::abi::types::Action;

/// Where a connection came from and arrived.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The client.
    pub remote: SocketAddr,
    /// The listener address.
    pub local: SocketAddr,
}

/// Headers a proxy never forwards (RFC 9110 §7.6.1), in either direction; so are the headers
/// a message's `Connection` names ([`connection_options`]). `host` becomes `:authority`; `te`
/// goes on only as `te: trailers` ([`te_trailers`]).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The most request body the host buffers for a pausing filter; beyond it the client gets 413,
/// like Envoy's `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT: usize = 64 << 20;

/// A JSON error body in the shape both providers use.
pub fn json_error(status: StatusCode, kind: &str, message: &str) -> LocalResponse {
    let body = serde_json::json!({ "error": { "type": kind, "message": message } });
    json_response(status, &body, kind)
}

/// A local JSON response; `details` becomes `response.code_details`.
fn json_response(status: StatusCode, body: &serde_json::Value, details: &str) -> LocalResponse {
    LocalResponse {
        status: status.as_u16(),
        headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
        body: body.to_string().into_bytes(),
        details: details.to_string(),
    }
}

/// `/livez` and `/readyz` when no filter answered them: the process is alive, but not ready
/// (the filter's VM is failing or reloading, or a filter without the probes was loaded).
fn probe_without_filter(path: &str) -> Option<LocalResponse> {
    let (status, body) = match path.split('?').next().unwrap_or_default() {
        "/livez" => (
            StatusCode::OK,
            serde_json::json!({"service": "headroom", "status": "healthy", "alive": true,
                               "version": env!("CARGO_PKG_VERSION")}),
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"service": "headroom", "status": "unhealthy", "ready": false,
                               "version": env!("CARGO_PKG_VERSION"),
                               "checks": {"filter": {"enabled": true, "ready": false, "status": "unhealthy"}}}),
        ),
        _ => return None,
    };
    Some(json_response(status, &body, "probe"))
}

/// Runs `finish_stream` when the exchange ends, however it ends (the client may go away).
struct StreamGuard {
    worker: Rc<Worker>,
    generation: u64,
    id: u32,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self
            .worker
            .with_vm(self.generation, |vm| vm.finish_stream(id));
        self.worker.forget(id);
    }
}

/// The filter's view of the exchange, or nothing when it is bypassed.
struct Filter {
    guard: StreamGuard,
}

impl Filter {
    fn id(&self) -> u32 {
        self.guard.id
    }

    fn call<R>(
        &self,
        f: impl FnOnce(&mut crate::abi::vm::Vm, u32) -> Result<R, crate::abi::vm::GuestTrap>,
    ) -> Result<R, VmError> {
        let id = self.id();
        self.guard
            .worker
            .with_vm(self.guard.generation, |vm| f(vm, id))
    }

    /// Reads or edits this stream's state (no guest call).
    fn state<R>(&self, f: impl FnOnce(&mut crate::abi::state::StreamState) -> R) -> Option<R> {
        let id = self.id();
        self.guard
            .worker
            .with_vm(self.guard.generation, |vm| Ok(vm.stream(id).map(f)))
            .ok()
            .flatten()
    }

    fn take_local_response(&self) -> Option<LocalResponse> {
        self.state(|s| s.local_response.take()).flatten()
    }

    /// Waits until the guest resumes the stream in `direction` (or answers, or closes it).
    async fn wait_resume(&self, request: bool) -> Result<(), VmError> {
        let waker = self.guard.worker.waker(self.id());
        loop {
            let done = self.state(|s| {
                let resumed = if request {
                    &mut s.resume_request
                } else {
                    &mut s.resume_response
                };
                let r = *resumed || s.local_response.is_some() || s.close;
                *resumed = false;
                r
            });
            match done {
                Some(true) => return Ok(()),
                Some(false) => waker.notified().await,
                None => return Err(VmError::Gone),
            }
        }
    }
}

/// The header names listed in a message's `Connection` header(s), lowercase: options of this
/// hop only, never forwarded (RFC 9110 §7.6.1).
fn connection_options(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Whether a header stays on this hop: a standard hop-by-hop header or one `Connection` names.
fn is_hop_by_hop(name: &HeaderName, options: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || options.iter().any(|o| o == name.as_str())
}

/// Whether the client's `TE` accepts trailers (the `trailers` member, RFC 9110 §10.1.4): then the
/// upstream is told `te: trailers` too, since this proxy forwards trailers (as Envoy does; every
/// other `TE` member is this hop's business).
fn te_trailers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|member| {
            let name = member.split(';').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("trailers")
        })
}

fn header_map_of(parts: &http::request::Parts) -> HeaderMap {
    let authority = parts
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut map: HeaderMap = vec![
        (b":authority".to_vec(), authority),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (
            b":method".to_vec(),
            parts.method.as_str().as_bytes().to_vec(),
        ),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    let options = connection_options(&parts.headers);
    for (name, value) in &parts.headers {
        if name == http::header::HOST || is_hop_by_hop(name, &options) {
            continue;
        }
        map.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    if te_trailers(&parts.headers) && !options.iter().any(|o| o == "trailers") {
        map.push((b"te".to_vec(), b"trailers".to_vec()));
    }
    map
}

fn response_map_of(parts: &http::response::Parts) -> HeaderMap {
    let mut map: HeaderMap = vec![(
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    )];
    let options = connection_options(&parts.headers);
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name, &options) {
            continue;
        }
        map.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    map
}

/// Copies regular (non-pseudo) headers into `headers`, skipping ones hyper cannot carry.
fn apply_headers(map: &HeaderMap, headers: &mut http::HeaderMap) {
    for (name, value) in map.iter().filter(|(n, _)| !n.starts_with(b":")) {
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::debug!("dropping a header hyper cannot send"),
        }
    }
}

fn local_to_response(local: &LocalResponse) -> HeaderMap {
    let mut map: HeaderMap = vec![(b":status".to_vec(), local.status.to_string().into_bytes())];
    map.extend(
        local
            .headers
            .iter()
            .filter(|(n, _)| !n.starts_with(b":"))
            .cloned(),
    );
    if !local.body.is_empty() && map.first(b"content-type").is_none() {
        map.push((b"content-type".to_vec(), b"text/plain".to_vec()));
    }
    map.push((
        b"content-length".to_vec(),
        local.body.len().to_string().into_bytes(),
    ));
    map
}

fn build_response(map: &HeaderMap, body: ClientBody) -> Response<ClientBody> {
    let status = map
        .first(b":status")
        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    apply_headers(map, response.headers_mut());
    response
}

/// Serves one request through the filter.
pub async fn serve(
    worker: Rc<Worker>,
    request: Request<Incoming>,
    conn: ConnInfo,
    limits: &Hardening,
) -> Response<ClientBody> {
    let (parts, body) = request.into_parts();
    let mut headers = header_map_of(&parts);
    let request_eos = body.is_end_stream();
    let info = StreamInfo {
        source: Some(conn.remote),
        destination: Some(conn.local),
        protocol: match parts.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        request_id: request_id(),
        start: SystemTime::now(),
    };

    // Attach the filter, unless its VM cannot be had (then the request passes untouched).
    let filter = worker.generation().and_then(|generation| {
        let id = worker
            .with_vm(generation, |vm| vm.create_stream(info))
            .ok()?;
        Some(Filter {
            guard: StreamGuard {
                worker: worker.clone(),
                generation,
                id,
            },
        })
    });

    let mut filter = filter;
    if let Some(f) = &filter {
        let map = headers.clone();
        f.state(|s| s.request_headers = Some(map));
        match f.call(|vm, id| vm.on_request_headers(id, request_eos)) {
            Ok(action) => {
                if action == Action::Pause && f.wait_resume(true).await.is_err() {
                    filter = None;
                }
            }
            Err(_) => filter = None,
        }
    }
    if let Some(f) = &filter {
        if let Some(local) = f.take_local_response() {
            return respond_locally(filter, local).await;
        }
        if let Some(Some(edited)) = f.state(|s| s.request_headers.clone()) {
            headers = edited;
        }
    }

    let path = headers
        .first(b":path")
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let anthropic_client = headers.first(b"anthropic-version").is_some();
    // A running filter answers the probes itself; reaching here means it is not running.
    if let Some(local) = probe_without_filter(&path) {
        return respond_locally(filter, local).await;
    }
    let Some(upstream) = worker.upstreams.route(&path, anthropic_client).cloned() else {
        let method = headers
            .first(b":method")
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        let local = json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {method} {path}"),
        );
        return respond_locally(
            filter,
            LocalResponse {
                details: "route_not_found".into(),
                ..local
            },
        )
        .await;
    };

    // Headers go upstream now (as Envoy's router does); the body follows as the filter releases it.
    let mut builder = Request::builder()
        .method(headers.first(b":method").unwrap_or(b"GET"))
        .uri(match upstream.uri(&path) {
            Ok(uri) => uri,
            Err(e) => {
                let local = json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("invalid path: {e}"),
                );
                return respond_locally(filter, local).await;
            }
        });
    if let Some(h) = builder.headers_mut() {
        apply_headers(&headers, h);
        if let Ok(host) = HeaderValue::from_str(upstream.authority()) {
            h.insert(http::header::HOST, host);
        }
    }
    let (body_tx, upstream_body) = if request_eos {
        (None, UpstreamBody::Empty)
    } else {
        let (tx, body) = ChannelBody::new();
        (Some(tx), UpstreamBody::Channel(body))
    };
    let upstream_request = match builder.body(upstream_body) {
        Ok(r) => r,
        Err(e) => {
            let local = json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("invalid request: {e}"),
            );
            return respond_locally(filter, local).await;
        }
    };
    let client = worker.upstreams.client.clone();
    let mut upstream_call =
        tokio::task::spawn_local(async move { client.request(upstream_request).await });

    if let Some(tx) = body_tx {
        match pump_request_body(&mut filter, body, tx, limits.body_read_timeout).await {
            Ok(()) => {}
            Err(BodyOutcome::Local(local)) => {
                upstream_call.abort();
                return respond_locally(filter, local).await;
            }
            Err(BodyOutcome::TimedOut) => {
                upstream_call.abort();
                worker
                    .metrics
                    .client_timeouts
                    .with_label_values(&["body"])
                    .inc();
                tracing::debug!(client = %conn.remote, "client request body timed out; connection closed");
                let mut local = json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    &format!(
                        "the request body did not arrive within {}",
                        describe(limits.body_read_timeout)
                    ),
                );
                local.details = "request_body_timeout".into();
                local
                    .headers
                    .push((b"connection".to_vec(), b"close".to_vec()));
                return respond_locally(filter, local).await;
            }
            Err(BodyOutcome::ClientGone) => {
                upstream_call.abort();
                return Response::new(full(Bytes::new()));
            }
        }
    }

    let first_byte = limits.upstream_first_byte_timeout;
    let upstream_response = match tokio::time::timeout(first_byte, &mut upstream_call).await {
        Ok(Ok(Ok(response))) => response,
        Err(_) => {
            upstream_call.abort();
            return upstream_timeout(&worker, filter, upstream.name, "first_byte", first_byte)
                .await;
        }
        Ok(Ok(Err(e))) if hardening::is_timeout(&e) => {
            let connect = limits.upstream_connect_timeout;
            return upstream_timeout(&worker, filter, upstream.name, "connect", connect).await;
        }
        Ok(Ok(Err(e))) => {
            worker.metrics.upstream_errors.inc();
            tracing::warn!(upstream = upstream.name, "upstream request failed: {e:#}");
            let local = json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("the {} upstream could not be reached: {e}", upstream.name),
            );
            return respond_locally(
                filter,
                LocalResponse {
                    details: "upstream_reset_before_response_started".into(),
                    ..local
                },
            )
            .await;
        }
        Ok(Err(_)) => {
            let local = json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream request was cancelled",
            );
            return respond_locally(filter, local).await;
        }
    };
    respond_from_upstream(filter, upstream_response).await
}

/// A duration as people write it: `250 ms`, `30 s`.
fn describe(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The client's answer when the upstream timed out in `phase` (`connect`, `first_byte`): 504
/// with a JSON error, counted as an upstream error and as a timeout of that phase.
async fn upstream_timeout(
    worker: &Worker,
    filter: Option<Filter>,
    upstream: &str,
    phase: &str,
    limit: Duration,
) -> Response<ClientBody> {
    worker.metrics.upstream_errors.inc();
    worker
        .metrics
        .upstream_timeouts
        .with_label_values(&[phase])
        .inc();
    let (what, details) = if phase == "connect" {
        ("could not be connected to", "upstream_connect_timeout")
    } else {
        ("sent no response", "upstream_response_timeout")
    };
    tracing::warn!(
        upstream,
        phase,
        "upstream timed out after {}",
        describe(limit)
    );
    let mut local = json_error(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        &format!("the {upstream} upstream {what} within {}", describe(limit)),
    );
    local.details = details.into();
    respond_locally(filter, local).await
}

enum BodyOutcome {
    /// Answer the client with this instead (413, 502).
    Local(LocalResponse),
    /// The client did not send its body within the body-read timeout.
    TimedOut,
    /// The client went away.
    ClientGone,
}

/// The next step of a body: a non-empty data chunk and/or trailers, and whether the body
/// ends here (trailers always end it). Empty data frames are skipped.
struct BodyStep {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    end: bool,
}

async fn next_step(body: &mut Incoming) -> Result<BodyStep, hyper::Error> {
    loop {
        let step = match body.frame().await.transpose()?.map(Frame::into_data) {
            None => BodyStep {
                data: None,
                trailers: None,
                end: true,
            },
            Some(Ok(data)) if data.is_empty() => continue,
            Some(Ok(data)) => BodyStep {
                data: Some(data),
                trailers: None,
                end: false,
            },
            Some(Err(frame)) => BodyStep {
                data: None,
                trailers: frame.into_trailers().ok(),
                end: true,
            },
        };
        return Ok(step);
    }
}

/// Feeds the request body through the filter and on to `tx`.
/// `timeout` bounds the total time spent waiting for the client's bytes (not the time the
/// upstream takes to accept them).
async fn pump_request_body(
    filter: &mut Option<Filter>,
    mut body: Incoming,
    tx: BodySender,
    timeout: Duration,
) -> Result<(), BodyOutcome> {
    let mut remaining = timeout;
    // Original bytes not yet forwarded: what goes upstream if the filter traps.
    let mut pending_original: Vec<Bytes> = Vec::new();
    let mut sent_modified = false;
    let send = async |data: Bytes| tx.send(Ok(Frame::data(data))).await.is_ok();
    loop {
        let BodyStep {
            data,
            trailers,
            end,
        } = {
            let waiting = tokio::time::Instant::now();
            let step = tokio::time::timeout(remaining, next_step(&mut body)).await;
            remaining = remaining.saturating_sub(waiting.elapsed());
            match step {
                Ok(Ok(step)) => step,
                Ok(Err(e)) => {
                    tracing::debug!("client request body failed: {e}");
                    abort_body(tx, "the client's request body failed");
                    return Err(BodyOutcome::ClientGone);
                }
                Err(_) => {
                    abort_body(tx, "the client's request body timed out");
                    return Err(BodyOutcome::TimedOut);
                }
            }
        };
        let Some(f) = filter.as_ref() else {
            if let Some(data) = data
                && !send(data).await
            {
                return Ok(());
            }
            if let Some(t) = trailers {
                let _ = tx.send(Ok(Frame::trailers(t))).await;
            }
            if end {
                return Ok(());
            }
            continue;
        };
        if let Some(data) = &data {
            pending_original.push(data.clone());
            let over = f.state(|s| {
                s.request_body.extend_from_slice(data);
                s.request_body.len() > DEFAULT_BUFFER_LIMIT
            });
            if over == Some(true) {
                let local = json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    "the request body exceeds the proxy's buffer limit",
                );
                return Err(BodyOutcome::Local(LocalResponse {
                    details: "request_payload_too_large".into(),
                    ..local
                }));
            }
        }
        let action = f.call(|vm, id| vm.on_request_body(id, end));
        let action = match action {
            Ok(Action::Pause) if end => f.wait_resume(true).await.map(|()| Action::Continue),
            other => other,
        };
        match action {
            Ok(Action::Continue) => {
                if let Some(local) = f.take_local_response() {
                    return Err(BodyOutcome::Local(local));
                }
                let buffered = f
                    .state(|s| std::mem::take(&mut s.request_body))
                    .unwrap_or_default();
                let original_len: usize = pending_original.iter().map(Bytes::len).sum();
                if buffered.len() != original_len || !same_bytes(&buffered, &pending_original) {
                    sent_modified = true;
                }
                pending_original.clear();
                if !buffered.is_empty() && !send(Bytes::from(buffered)).await {
                    return Ok(());
                }
            }
            Ok(Action::Pause) => {
                if let Some(local) = f.take_local_response() {
                    return Err(BodyOutcome::Local(local));
                }
            }
            Err(_) => {
                // The filter is gone: fail open with the original bytes, if that is still honest.
                *filter = None;
                if sent_modified {
                    let local = json_error(
                        StatusCode::BAD_GATEWAY,
                        "filter_error",
                        "the Headroom filter failed after part of a modified request body was sent",
                    );
                    return Err(BodyOutcome::Local(local));
                }
                for chunk in pending_original.drain(..) {
                    if !send(chunk).await {
                        return Ok(());
                    }
                }
            }
        }
        if let Some(t) = trailers {
            let _ = tx.send(Ok(Frame::trailers(t))).await;
        }
        if end {
            return Ok(());
        }
    }
}

/// Ends the upstream request body with an error, so the upstream never takes a truncated body
/// for a whole one (a dropped sender would end it cleanly). A full channel gets the error as
/// soon as it has room, for at most a second.
fn abort_body(tx: BodySender, why: &'static str) {
    use tokio::sync::mpsc::error::TrySendError;
    match tx.try_send(Err(why.into())) {
        Ok(()) | Err(TrySendError::Closed(_)) => {}
        Err(TrySendError::Full(error)) => {
            tokio::task::spawn_local(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(error)).await;
            });
        }
    }
}

fn same_bytes(buffer: &[u8], chunks: &[Bytes]) -> bool {
    let mut at = 0;
    chunks.iter().all(|c| {
        let ok = buffer.get(at..at + c.len()) == Some(&c[..]);
        at += c.len();
        ok
    })
}

/// Sends a local response, through the filter's response callbacks as Envoy does.
async fn respond_locally(filter: Option<Filter>, local: LocalResponse) -> Response<ClientBody> {
    let mut map = local_to_response(&local);
    let mut body = local.body;
    if let Some(f) = &filter {
        let (code, details) = (local.status, local.details.clone());
        let response_map = map.clone();
        let response_body = body.clone();
        f.state(|s| {
            s.response_code = Some(code);
            s.response_code_details = details;
            s.response_headers = Some(response_map);
            s.response_body = response_body;
        });
        // A filter that answers from its response callbacks is not followed into a loop.
        if f.call(|vm, id| vm.on_response_headers(id, body.is_empty()))
            .is_ok()
            && !body.is_empty()
        {
            let _ = f.call(|vm, id| vm.on_response_body(id, true));
        }
        if let Some((Some(edited), edited_body)) = f.state(|s| {
            (
                s.response_headers.clone(),
                std::mem::take(&mut s.response_body),
            )
        }) {
            map = edited;
            body = edited_body;
        }
    }
    drop(filter);
    build_response(&map, full(body))
}

async fn respond_from_upstream(
    mut filter: Option<Filter>,
    response: Response<Incoming>,
) -> Response<ClientBody> {
    let (parts, mut body) = response.into_parts();
    let mut map = response_map_of(&parts);
    let eos = body.is_end_stream();
    if let Some(f) = &filter {
        let response_map = map.clone();
        f.state(|s| {
            s.response_code = Some(parts.status.as_u16());
            s.response_code_details = "via_upstream".into();
            s.response_headers = Some(response_map);
        });
        match f.call(|vm, id| vm.on_response_headers(id, eos)) {
            Ok(action) => {
                if action == Action::Pause {
                    let _ = f.wait_resume(false).await;
                }
                if let Some(local) = f.take_local_response() {
                    return respond_locally(filter, local).await;
                }
                if let Some(Some(edited)) = f.state(|s| s.response_headers.clone()) {
                    map = edited;
                }
            }
            Err(_) => filter = None,
        }
    }
    if eos {
        drop(filter);
        return build_response(&map, full(Bytes::new()));
    }
    let (tx, client_body) = ChannelBody::new();
    tokio::task::spawn_local(async move {
        loop {
            let BodyStep {
                data,
                trailers,
                end,
            } = match next_step(&mut body).await {
                Ok(step) => step,
                Err(e) => {
                    tracing::debug!("upstream response body failed: {e}");
                    let _ = tx.send(Err(Box::new(e))).await;
                    return;
                }
            };
            let out = match &filter {
                None => data,
                Some(f) => {
                    if let Some(data) = &data {
                        f.state(|s| s.response_body.extend_from_slice(data));
                    }
                    match f.call(|vm, id| vm.on_response_body(id, end)) {
                        Ok(Action::Continue) => f
                            .state(|s| std::mem::take(&mut s.response_body))
                            .map(Bytes::from),
                        Ok(Action::Pause) if !end => None,
                        Ok(Action::Pause) => {
                            let _ = f.wait_resume(false).await;
                            f.state(|s| std::mem::take(&mut s.response_body))
                                .map(Bytes::from)
                        }
                        Err(_) => {
                            // Bytes already sent cannot be taken back: pass the rest through.
                            filter = None;
                            data
                        }
                    }
                }
            };
            if let Some(out) = out.filter(|b| !b.is_empty())
                && tx.send(Ok(Frame::data(out))).await.is_err()
            {
                return;
            }
            if let Some(t) = trailers {
                let _ = tx.send(Ok(Frame::trailers(t))).await;
            }
            if end {
                return;
            }
        }
    });
    build_response(&map, client_body.boxed_unsync())
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!("{:016x}-{:08x}-{:08x}", t, std::process::id(), n)
}
