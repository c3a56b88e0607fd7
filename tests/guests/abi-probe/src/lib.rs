//! A proxy-wasm test guest that exercises the parts of the ABI the Headroom filter does not
//! use yet, so the host's support for them is tested against a real module:
//!
//! - `GET /probe/call`: an `http_call` to the `openai` cluster (`GET /v1/models`); answers
//!   `status=<upstream status> bytes=<body size>` from the call's response callback.
//! - `GET /probe/ticks`: how many ticks all VMs have counted in shared data (a CAS loop).
//! - `GET /probe/properties`: `path=<request.path> plugin=<plugin_name>`.
//! - `GET /probe/null-set`: what a `proxy_set_shared_data` with a null value does to an existing
//!   key (`before=<value>,<cas?> after=<value or none>,<cas?> cas_write=<status>`): Envoy 1.40
//!   has no delete, so the key stays with an empty value and a new token.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot) });
}}

const TICKS: &str = "probe.ticks";

struct ProbeRoot;

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        hostcalls::set_tick_period(Duration::from_millis(20)).is_ok()
    }

    fn on_tick(&mut self) {
        // Increment a counter shared by every VM; retry when another VM won the race.
        for _ in 0..16 {
            let Ok((value, cas)) = hostcalls::get_shared_data(TICKS) else {
                return;
            };
            let n = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            let next = (n + 1).to_string();
            if hostcalls::set_shared_data(TICKS, Some(next.as_bytes()), cas).is_ok() {
                return;
            }
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe;

fn reply(body: &str) -> Action {
    let _ = hostcalls::send_http_response(
        200,
        vec![("content-type", "text/plain")],
        Some(body.as_bytes()),
    );
    Action::Pause
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        reply(&format!("status={status} bytes={body_size}"));
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = hostcalls::get_map_value(MapType::HttpRequestHeaders, ":path")
            .ok()
            .flatten()
            .unwrap_or_default();
        match path.as_str() {
            "/probe/call" => {
                let headers = vec![
                    (":method", "GET"),
                    (":path", "/v1/models"),
                    (":authority", "upstream"),
                ];
                match hostcalls::dispatch_http_call(
                    "openai",
                    headers,
                    None,
                    vec![],
                    Duration::from_secs(5),
                ) {
                    Ok(_) => Action::Pause,
                    Err(status) => reply(&format!("dispatch failed: {status:?}")),
                }
            }
            "/probe/ticks" => {
                let ticks = hostcalls::get_shared_data(TICKS)
                    .ok()
                    .and_then(|(v, _)| v)
                    .and_then(|v| String::from_utf8(v).ok());
                reply(&format!("ticks={}", ticks.unwrap_or_else(|| "0".into())))
            }
            "/probe/null-set" => {
                let key = "probe.null-set";
                let describe = |found: Result<(Option<Vec<u8>>, Option<u32>), _>| match found {
                    Ok((value, cas)) => format!(
                        "{},{}",
                        value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned()),
                        if cas.is_some() { "cas" } else { "nocas" }
                    ),
                    Err(status) => format!("{status:?}"),
                };
                let _ = hostcalls::set_shared_data(key, Some(b"v"), None);
                let before = hostcalls::get_shared_data(key);
                let old_cas = before.as_ref().ok().and_then(|(_, cas)| *cas);
                let before = describe(before);
                let _ = hostcalls::set_shared_data(key, None, None);
                let after = hostcalls::get_shared_data(key);
                let new_cas = after.as_ref().ok().and_then(|(_, cas)| *cas);
                let after = describe(after);
                // A CAS write with the token from before the null set must now fail.
                let stale = match hostcalls::set_shared_data(key, Some(b"w"), old_cas) {
                    Ok(()) => "ok".to_string(),
                    Err(status) => format!("{status:?}"),
                };
                let bumped = old_cas != new_cas;
                reply(&format!(
                    "before={before} after={after} bumped={bumped} stale_cas_write={stale}"
                ))
            }
            "/probe/properties" => {
                let text = |path: Vec<&str>| {
                    hostcalls::get_property(path)
                        .ok()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default()
                };
                reply(&format!(
                    "path={} plugin={}",
                    text(vec!["request", "path"]),
                    text(vec!["plugin_name"])
                ))
            }
            _ => Action::Continue,
        }
    }
}
