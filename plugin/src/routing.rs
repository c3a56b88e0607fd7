//! Per-request decisions of the filter, host-agnostic: which route a request takes, whether
//! its body is buffered, when buffering stops, and the health document. The proxy-wasm glue
//! feeds header values and body sizes in and acts on the answers.

use crate::api::{Api, Billed, is_json_content_type, strip_query};
use crate::config::Config;
use crate::fail_open::FailOpen;
use crate::json::encode_string;
use crate::pipeline::ContentHash;

/// Body of the local health response.
pub const HEALTH_BODY: &str = concat!(
    r#"{"status":"healthy","service":"headroom","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
);

/// Content type of [`HEALTH_BODY`].
pub const HEALTH_CONTENT_TYPE: &str = "application/json";

/// What the filter does with a request, decided from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET` on the health path: answer [`HEALTH_BODY`] locally.
    Health,
    /// `GET` on the stats path: answer the `/stats` document locally.
    Stats,
    /// `GET` on the history path: answer `/stats-history` locally.
    History,
    /// `GET` on the dashboard path: answer the dashboard page locally.
    Dashboard,
    /// `GET /livez` or `GET /readyz` (enabled with the health path): the filter runs, so the
    /// gateway is alive and ready.
    Probe(Probe),
    /// `GET {retrieve_path}/{hash}`: answer the original kept under the hash (`None`: the last
    /// segment is not a hash).
    Retrieve(Option<ContentHash>),
    /// A provider API request.
    Provider(Api),
    /// A billed provider request the filter does not compress (budget-checked only).
    Billed(Billed),
    /// Anything else: pass through untouched.
    Other,
}

/// Routes a request. A missing method or path routes to [`Route::Other`].
pub fn route(config: &Config, method: Option<&[u8]>, path: Option<&[u8]>) -> Route {
    let (Some(method), Some(path)) = (method, path) else {
        return Route::Other;
    };
    if method == b"GET"
        && !config.health_path.is_empty()
        && strip_query(path) == config.health_path.as_bytes()
    {
        return Route::Health;
    }
    if method == b"GET" && !config.health_path.is_empty() {
        match strip_query(path) {
            b"/livez" => return Route::Probe(Probe::Live),
            b"/readyz" => return Route::Probe(Probe::Ready),
            _ => {}
        }
    }
    if method == b"GET"
        && !config.stats_path.is_empty()
        && strip_query(path) == config.stats_path.as_bytes()
    {
        return Route::Stats;
    }
    if method == b"GET" {
        let bare = strip_query(path);
        if !config.history_path.is_empty() && bare == config.history_path.as_bytes() {
            return Route::History;
        }
        if !config.dashboard_path.is_empty() && bare == config.dashboard_path.as_bytes() {
            return Route::Dashboard;
        }
    }
    if method == b"GET" && !config.retrieve_path.is_empty() {
        let rest = strip_query(path).strip_prefix(config.retrieve_path.as_bytes());
        if let Some(hash) = rest.and_then(|rest| rest.strip_prefix(b"/")) {
            let hash = std::str::from_utf8(hash)
                .ok()
                .and_then(ContentHash::from_hex);
            return Route::Retrieve(hash);
        }
    }
    if let Some(api) = Api::classify(method, path, &config.path_prefixes) {
        return Route::Provider(api);
    }
    match Billed::classify(method, path, &config.path_prefixes) {
        Some(billed) => Route::Billed(billed),
        None => Route::Other,
    }
}

/// A liveness or readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/livez`.
    Live,
    /// `/readyz`.
    Ready,
}

/// The probe's JSON body (docs/upstream.md §9, with this filter's one check): answered by a
/// running filter, so it is always healthy; a host answers 503 itself when no filter runs.
/// `timestamp` is RFC 3339 UTC, `uptime_seconds` the VM's.
pub fn probe_body(probe: Probe, timestamp: &str, uptime_seconds: f64) -> String {
    let uptime = (uptime_seconds * 1000.0).round() / 1000.0;
    let mut body = serde_json::json!({
        "service": "headroom",
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": timestamp,
        "uptime_seconds": uptime,
    });
    if let Some(object) = body.as_object_mut() {
        match probe {
            Probe::Live => {
                object.insert("alive".into(), true.into());
            }
            Probe::Ready => {
                object.insert("ready".into(), true.into());
                object.insert(
                    "checks".into(),
                    serde_json::json!({"filter": {"enabled": true, "ready": true, "status": "healthy"}}),
                );
            }
        }
    }
    body.to_string()
}

/// Content type of every retrieval answer.
pub const RETRIEVE_CONTENT_TYPE: &str = "application/json";

/// The local answer to a retrieval: status and JSON body. `hash` is `None` when the path did
/// not end in a hash; `original` is what the store holds under it.
pub fn retrieve_response(hash: Option<ContentHash>, original: Option<&[u8]>) -> (u32, String) {
    let error = |status: u32, kind: &str, message: &str| {
        let body = format!(
            r#"{{"error":{{"type":"{kind}","message":{}}}}}"#,
            encode_string(message)
        );
        (status, body)
    };
    let Some(hash) = hash else {
        return error(400, "invalid_hash", "expected 16 hex digits after the path");
    };
    match original.map(String::from_utf8_lossy) {
        Some(text) => (
            200,
            format!(r#"{{"hash":"{hash}","original":{}}}"#, encode_string(&text)),
        ),
        None => error(
            404,
            "not_found",
            &format!("no original kept under {hash} (never stored, or evicted)"),
        ),
    }
}

/// What to do with a provider request's body, decided from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Buffer the body until end of stream, then rewrite it (`content-length` must go).
    Buffer,
    /// The request has no body (headers ended the stream): nothing to do.
    NoBody,
    /// Do not buffer: forward unchanged and count the reason.
    Skip(FailOpen),
}

/// Plans the body of a provider request: only identity-encoded JSON bodies are buffered.
pub fn body_plan(
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    end_of_stream: bool,
) -> BodyPlan {
    if end_of_stream {
        return BodyPlan::NoBody;
    }
    if !content_type.is_some_and(is_json_content_type) {
        return BodyPlan::Skip(FailOpen::ContentType);
    }
    // A compressed body is not JSON text we can scan; don't buffer it just to fail later.
    let encoded = content_encoding
        .map(<[u8]>::trim_ascii)
        .is_some_and(|enc| !enc.is_empty() && !enc.eq_ignore_ascii_case(b"identity"));
    if encoded {
        return BodyPlan::Skip(FailOpen::ContentType);
    }
    BodyPlan::Buffer
}

/// The next step while buffering a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Keep buffering (the host calls again with a larger cumulative size).
    Wait,
    /// The body passed `max_body_bytes`: stop buffering, forward unchanged.
    TooLarge,
    /// The whole body is buffered: read it once and rewrite it.
    Complete,
}

/// Decides a body callback. `body_size` is the cumulative buffered size; end of stream may come
/// in a later call with the same size, or with 0 for an empty body.
pub fn body_step(body_size: usize, end_of_stream: bool, max_body_bytes: u64) -> BodyStep {
    let size = u64::try_from(body_size).unwrap_or(u64::MAX);
    if size > max_body_bytes {
        BodyStep::TooLarge
    } else if end_of_stream {
        BodyStep::Complete
    } else {
        BodyStep::Wait
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn health_body_is_exact() {
        assert_eq!(
            HEALTH_BODY,
            format!(
                r#"{{"status":"healthy","service":"headroom","version":"{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
        let parsed: serde_json::Value = serde_json::from_str(HEALTH_BODY).unwrap();
        assert_eq!(parsed["status"], "healthy");
    }

    #[test]
    fn routes_requests() {
        let config = Config::default();
        let r = |method: &[u8], path: &[u8]| route(&config, Some(method), Some(path));
        assert_eq!(r(b"GET", b"/health"), Route::Health);
        assert_eq!(r(b"GET", b"/health?probe=1"), Route::Health);
        assert_eq!(r(b"GET", b"/stats"), Route::Stats);
        assert_eq!(r(b"GET", b"/stats-history?format=csv"), Route::History);
        assert_eq!(r(b"GET", b"/dashboard"), Route::Dashboard);
        assert_eq!(r(b"POST", b"/dashboard"), Route::Other);
        assert_eq!(r(b"GET", b"/livez"), Route::Probe(Probe::Live));
        assert_eq!(r(b"GET", b"/readyz?verbose"), Route::Probe(Probe::Ready));
        assert_eq!(r(b"POST", b"/stats"), Route::Other);
        assert_eq!(r(b"POST", b"/health"), Route::Other);
        assert_eq!(r(b"GET", b"/healthz"), Route::Other);
        assert_eq!(
            r(b"POST", b"/v1/chat/completions"),
            Route::Provider(Api::OpenAiChat)
        );
        assert_eq!(r(b"GET", b"/v1/chat/completions"), Route::Other);
        assert_eq!(
            r(b"POST", b"/v1/embeddings"),
            Route::Billed(Billed::OpenAiEmbeddings)
        );
        assert_eq!(r(b"POST", b"/v1/moderations"), Route::Other);
        assert_eq!(route(&config, None, Some(b"/health")), Route::Other);
        let hash = ContentHash::of(b"x");
        let path = format!("/v1/headroom/retrieve/{hash}?x=1");
        assert_eq!(r(b"GET", path.as_bytes()), Route::Retrieve(Some(hash)));
        assert_eq!(
            r(b"GET", b"/v1/headroom/retrieve/zz"),
            Route::Retrieve(None)
        );
        assert_eq!(r(b"GET", b"/v1/headroom/retrieve"), Route::Other);
        assert_eq!(r(b"POST", path.as_bytes()), Route::Other);
        assert_eq!(route(&config, Some(b"GET"), None), Route::Other);

        let config = Config {
            health_path: String::new(),
            path_prefixes: vec!["/llm".to_owned()],
            ..Config::default()
        };
        assert_eq!(route(&config, Some(b"GET"), Some(b"/health")), Route::Other);
        assert_eq!(route(&config, Some(b"GET"), Some(b"")), Route::Other);
        assert_eq!(
            route(&config, Some(b"POST"), Some(b"/llm/v1/messages")),
            Route::Provider(Api::AnthropicMessages)
        );
    }

    #[test]
    fn probe_bodies() {
        let live: serde_json::Value =
            serde_json::from_str(&probe_body(Probe::Live, "2026-11-27T00:00:00Z", 1.23456))
                .unwrap();
        assert_eq!(live["alive"], true);
        assert_eq!(live["uptime_seconds"], 1.235);
        let ready: serde_json::Value =
            serde_json::from_str(&probe_body(Probe::Ready, "t", 0.0)).unwrap();
        assert_eq!(ready["ready"], true);
        assert_eq!(ready["checks"]["filter"]["status"], "healthy");
    }

    #[test]
    fn answers_retrievals() {
        let hash = ContentHash::of(b"x");
        let (status, body) = retrieve_response(Some(hash), Some("a\"b\né".as_bytes()));
        assert_eq!(status, 200);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["original"], "a\"b\né");
        assert_eq!(parsed["hash"], hash.to_hex());
        let (status, body) = retrieve_response(Some(hash), None);
        assert_eq!(status, 404);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"]["type"], "not_found");
        assert_eq!(retrieve_response(None, None).0, 400);
    }

    #[test]
    fn plans_bodies() {
        let json = Some(&b"application/json"[..]);
        assert_eq!(body_plan(json, None, false), BodyPlan::Buffer);
        assert_eq!(body_plan(json, Some(b"identity"), false), BodyPlan::Buffer);
        assert_eq!(body_plan(json, Some(b""), false), BodyPlan::Buffer);
        assert_eq!(body_plan(json, None, true), BodyPlan::NoBody);
        assert_eq!(body_plan(None, None, true), BodyPlan::NoBody);
        assert_eq!(
            body_plan(None, None, false),
            BodyPlan::Skip(FailOpen::ContentType)
        );
        assert_eq!(
            body_plan(Some(b"text/plain"), None, false),
            BodyPlan::Skip(FailOpen::ContentType)
        );
        assert_eq!(
            body_plan(json, Some(b"gzip"), false),
            BodyPlan::Skip(FailOpen::ContentType)
        );
    }

    #[test]
    fn steps_through_a_buffered_body() {
        // Envoy's observed sequence: cumulative sizes, then a separate end-of-stream call.
        assert_eq!(body_step(13, false, 100), BodyStep::Wait);
        assert_eq!(body_step(66, false, 100), BodyStep::Wait);
        assert_eq!(body_step(66, true, 100), BodyStep::Complete);
        assert_eq!(body_step(0, true, 100), BodyStep::Complete);
        assert_eq!(body_step(100, true, 100), BodyStep::Complete);
        assert_eq!(body_step(101, false, 100), BodyStep::TooLarge);
        assert_eq!(body_step(101, true, 100), BodyStep::TooLarge);
        assert_eq!(body_step(1, true, 0), BodyStep::TooLarge);
    }
}
