//! The ABI calls the HTTP context makes, each returning what it got or `None`, never an
//! error: a header, a property, the buffered body, a local reply. Host errors are logged at
//! debug level (warn where a request loses something) and read as absent.

use log::{debug, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::exchange::LocalReply;
use crate::stack_header;

/// The response code (`None` inside: there was no response) and, for a 5xx, its details
/// (whether it came from upstream); `None` when the host cannot tell.
pub(super) fn response_code() -> Option<(Option<u64>, Option<Vec<u8>>)> {
    let code = match hostcalls::get_property(vec!["response", "code"]) {
        Ok(Some(bytes)) => match crate::metrics::decode_u64_property(&bytes) {
            Some(code) => Some(code),
            None => {
                debug!(
                    "headroom: malformed response.code property ({} bytes)",
                    bytes.len()
                );
                return None;
            }
        },
        Ok(None) => None,
        Err(status) => {
            debug!("headroom: cannot read response.code: {status:?}");
            return None;
        }
    };
    // Only a 5xx needs to know whether it came from upstream.
    let details = match code {
        Some(code) if code >= 500 => property(&["response", "code_details"]),
        _ => None,
    };
    Some((code, details))
}

/// The buffered request body (`body_size` bytes); `None` when the host cannot give it whole.
pub(super) fn request_body(body_size: usize) -> Option<Vec<u8>> {
    if body_size == 0 {
        return Some(Vec::new());
    }
    match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
        Ok(Some(body)) if body.len() == body_size => Some(body),
        Ok(other) => {
            let got = other.map_or(0, |body| body.len());
            warn!("headroom: request body read returned {got} of {body_size} bytes");
            None
        }
        Err(status) => {
            warn!("headroom: cannot read the request body: {status:?}");
            None
        }
    }
}

/// Removes every `x-headroom-*` request header: they are for the filter, not the provider.
pub(super) fn strip_headroom_headers() {
    let Ok(headers) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else {
        return;
    };
    for (name, _) in headers {
        if stack_header::is_headroom_header(name.as_bytes()) {
            remove_request_header(&name);
        }
    }
}

/// Removes a request header; a refusal is only logged.
pub(super) fn remove_request_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
        debug!("headroom: cannot remove {name}: {status:?}");
    }
}

/// Whether the response body is content-encoded (anything but absent, empty or `identity`).
pub(super) fn response_encoded() -> bool {
    response_header("content-encoding")
        .as_deref()
        .map(<[u8]>::trim_ascii)
        .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"))
}

/// A response header's value as bytes; errors count as absent.
pub(super) fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// A request header's value as bytes (values need not be UTF-8); errors count as absent.
pub(super) fn request_header(name: &str) -> Option<Vec<u8>> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(value) => value,
        Err(status) => {
            debug!("headroom: cannot read request header {name}: {status:?}");
            None
        }
    }
}

/// A property's value; errors count as absent.
pub(super) fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// Sends a local reply; if the host refuses, lets the request through.
pub(super) fn send(reply: &LocalReply) -> Action {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    match hostcalls::send_http_response(reply.status, headers, Some(&reply.body)) {
        Ok(()) => {
            debug!("headroom: answered {} ({})", reply.what, reply.status);
            Action::Pause
        }
        Err(status) => {
            warn!(
                "headroom: cannot send the {} response: {status:?}",
                reply.what
            );
            Action::Continue
        }
    }
}
