//! The host's record endpoints, answered before a request reaches the filter, on these exact
//! paths only:
//!
//! - `GET /v1/headroom/metrics?start=&end=&model=&limit=` → `{"records":[…],"count":N}`, newest
//!   first;
//! - `GET /v1/headroom/summary?start=&end=` → totals (the upstream SDK's `get_summary` keys and
//!   more);
//! - `GET /v1/headroom/validate` → `{"valid":bool,"checks":[…],"issues":[…]}`, run at most
//!   every 30 s (a cached report in between).
//!
//! `start`/`end` are RFC 3339 times or unix seconds. A bad parameter gets a 400 naming it and
//! its allowed form. Database work runs on the blocking pool, never on a worker's event loop.

use std::sync::Arc;

use http::{Method, Response, StatusCode, Uri};

use super::validate::{self, ValidateConfig};
use crate::proxy::body::{ClientBody, full};
use crate::records::store::{self, Query, Readers};
use crate::records::{readers, time};

/// `GET` the stored records.
pub const METRICS_PATH: &str = "/v1/headroom/metrics";
/// `GET` the totals of the stored records.
pub const SUMMARY_PATH: &str = "/v1/headroom/summary";
/// `GET` the setup checks.
pub const VALIDATE_PATH: &str = "/v1/headroom/validate";

/// The default `limit` of `/v1/headroom/metrics`.
pub const DEFAULT_LIMIT: u64 = 100;
/// The largest `limit` of `/v1/headroom/metrics`.
pub const MAX_LIMIT: u64 = 10_000;

const INSTANT_FORM: &str = "an RFC 3339 time (2026-11-27T07:10:14Z) or unix seconds";

/// Answers a request for one of the record endpoints (`validate`: what `/validate` checks, if
/// set up); `None` for any other path.
pub async fn answer(
    method: &Method,
    uri: &Uri,
    validate: Option<Arc<ValidateConfig>>,
) -> Option<Response<ClientBody>> {
    let path = uri.path();
    if ![METRICS_PATH, SUMMARY_PATH, VALIDATE_PATH].contains(&path) {
        return None;
    }
    if method != Method::GET {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
            &format!("{path} only answers GET"),
        );
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return Some(response);
    }
    let query = uri.query().unwrap_or_default();
    Some(match path {
        METRICS_PATH => metrics(query).await,
        SUMMARY_PATH => summary(query).await,
        _ => validate_endpoint(query, validate).await,
    })
}

/// A bad parameter: its name and what it should look like.
#[derive(Debug, PartialEq, Eq)]
pub struct BadParam {
    /// The parameter.
    pub param: String,
    /// What is wrong and the allowed form.
    pub message: String,
}

/// Parses the query string of `/metrics` (`allow_filters`: also `model` and `limit`) or
/// `/summary`.
pub fn parse_query(query: &str, allow_filters: bool) -> Result<Query, BadParam> {
    let allowed: &[&str] = if allow_filters {
        &["start", "end", "model", "limit"]
    } else {
        &["start", "end"]
    };
    let mut out = Query::default();
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name);
        let value = percent_decode(raw_value);
        let bad = |message: String| BadParam {
            param: name.clone(),
            message,
        };
        if !allowed.contains(&name.as_str()) {
            return Err(bad(format!(
                "unknown parameter {name:?}; allowed: {}",
                allowed.join(", ")
            )));
        }
        if seen.contains(&name) {
            return Err(bad(format!("{name} is given more than once")));
        }
        seen.push(name.clone());
        match name.as_str() {
            "start" | "end" => {
                let at = time::parse_instant(&value)
                    .ok_or_else(|| bad(format!("{name} must be {INSTANT_FORM}, got {value:?}")))?;
                if name == "start" {
                    out.start = Some(at);
                } else {
                    out.end = Some(at);
                }
            }
            "model" => {
                if value.is_empty() {
                    return Err(bad("model must be a model name, got an empty value".into()));
                }
                out.model = Some(value);
            }
            _ => {
                let limit = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be an integer from 1 to {MAX_LIMIT}, got {value:?}"
                        ))
                    })?;
                out.limit = Some(limit);
            }
        }
    }
    if let (Some(start), Some(end)) = (out.start, out.end)
        && start > end
    {
        return Err(BadParam {
            param: "end".into(),
            message: "end must not be before start".into(),
        });
    }
    if allow_filters && out.limit.is_none() {
        out.limit = Some(DEFAULT_LIMIT);
    }
    Ok(out)
}

/// Decodes `%XX` escapes and `+` (a space) in a query component; invalid escapes stay as they
/// are, invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<ClientBody> {
    json_text(status, body.to_string())
}

/// A JSON response from already serialised text (which keeps the fields in their order).
fn json_text(status: StatusCode, body: String) -> Response<ClientBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(
    status: StatusCode,
    kind: &str,
    param: Option<&str>,
    message: &str,
) -> Response<ClientBody> {
    let mut body = serde_json::json!({"error": {"type": kind, "message": message}});
    if let Some(param) = param {
        body["error"]["param"] = param.into();
    }
    json(status, &body)
}

fn bad_request(bad: &BadParam) -> Response<ClientBody> {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some(&bad.param),
        &bad.message,
    )
}

/// Runs `f` on a read connection on the blocking pool.
async fn with_db<R: Send + 'static>(
    f: impl FnOnce(&rusqlite::Connection) -> Result<R, rusqlite::Error> + Send + 'static,
) -> Result<R, Response<ClientBody>> {
    let readers: Arc<Readers> = readers()
        .map_err(|why| error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None, &why))?;
    match tokio::task::spawn_blocking(move || readers.with(f)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            tracing::warn!("querying the request database: {e}");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database_error",
                None,
                &format!("the request database could not be read: {e}"),
            ))
        }
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            None,
            &format!("the query did not finish: {e}"),
        )),
    }
}

async fn metrics(query: &str) -> Response<ClientBody> {
    let query = match parse_query(query, true) {
        Ok(q) => q,
        Err(bad) => return bad_request(&bad),
    };
    match with_db(move |conn| store::list(conn, &query)).await {
        Ok(records) => {
            // Each record in the filter's field order, as in the log file.
            let mut body = format!("{{\"count\":{},\"records\":[", records.len());
            for (i, record) in records.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&record.to_json());
            }
            body.push_str("]}");
            json_text(StatusCode::OK, body)
        }
        Err(response) => response,
    }
}

/// The summary document: the totals, then the selection they cover.
#[derive(serde::Serialize)]
struct SummaryDocument<'a> {
    #[serde(flatten)]
    totals: &'a store::Summary,
    start: Option<String>,
    end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records_dropped: Option<u64>,
}

/// The summary document as JSON text: the totals, `start` and `end` of the selection (`null`
/// when open), and, from a running proxy, `records_dropped` since it started.
pub fn summary_json(
    summary: &store::Summary,
    query: &Query,
    records_dropped: Option<u64>,
) -> String {
    let document = SummaryDocument {
        totals: summary,
        start: query.start.map(time::format_unix),
        end: query.end.map(time::format_unix),
        records_dropped,
    };
    serde_json::to_string(&document).unwrap_or_default()
}

async fn summary(query: &str) -> Response<ClientBody> {
    let query = match parse_query(query, false) {
        Ok(q) => q,
        Err(bad) => return bad_request(&bad),
    };
    let selection = query.clone();
    match with_db(move |conn| store::summary(conn, &selection)).await {
        Ok(summary) => json_text(
            StatusCode::OK,
            summary_json(&summary, &query, Some(crate::records::dropped_total())),
        ),
        Err(response) => response,
    }
}

async fn validate_endpoint(
    query: &str,
    config: Option<Arc<ValidateConfig>>,
) -> Response<ClientBody> {
    if let Some(pair) = query.split('&').find(|p| !p.is_empty()) {
        let name = percent_decode(pair.split('=').next().unwrap_or_default());
        return bad_request(&BadParam {
            message: format!("unknown parameter {name:?}; /v1/headroom/validate takes none"),
            param: name,
        });
    }
    let Some(config) = config else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
            "validation is not set up in this host",
        );
    };
    json_text(StatusCode::OK, cached_report(config).await)
}

/// How long a `/v1/headroom/validate` report is served before the checks run again.
pub const VALIDATE_CACHE: std::time::Duration = std::time::Duration::from_secs(30);

/// The last report: when it was made, for which configuration, and its JSON.
type CachedReport = (std::time::Instant, usize, String);

static LAST_REPORT: tokio::sync::Mutex<Option<CachedReport>> = tokio::sync::Mutex::const_new(None);

/// The validation report, run at most once per [`VALIDATE_CACHE`]: the checks compile the
/// filter and call the upstreams, too dear to repeat per GET. Concurrent requests wait for one
/// run.
async fn cached_report(config: Arc<validate::ValidateConfig>) -> String {
    let key = Arc::as_ptr(&config) as usize;
    let mut last = LAST_REPORT.lock().await;
    if let Some((at, for_config, json)) = last.as_ref()
        && *for_config == key
        && at.elapsed() < VALIDATE_CACHE
    {
        return json.clone();
    }
    let report = validate::run(config).await;
    let json = serde_json::to_string(&report).unwrap_or_default();
    *last = Some((std::time::Instant::now(), key, json.clone()));
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/v1/headroom/validate` runs its checks once per 30 s: a fixed problem still shows in
    /// the cached report; another configuration runs them afresh.
    #[tokio::test]
    async fn validate_reports_are_cached() {
        let dir =
            std::env::temp_dir().join(format!("headroom-validate-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let blocked = dir.join("file");
        std::fs::write(&blocked, b"x").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = Arc::new(validate::ValidateConfig {
            plugin_wasm: Arc::from(&b"not wasm"[..]),
            plugin_source: "test".into(),
            plugin_config: Vec::new(),
            openai_url: format!("http://{closed}"),
            anthropic_url: format!("http://{closed}"),
            savings_path: blocked.join("proxy_savings.json"),
            database_path: None,
            vm_limits: Default::default(),
            cache_dir: None,
            timeout: std::time::Duration::from_secs(2),
        });
        let savings_ok = |json: &str| {
            let report: serde_json::Value = serde_json::from_str(json).unwrap();
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "savings")
                .map(|c| c["ok"] == true)
                .unwrap()
        };
        let first = cached_report(config.clone()).await;
        assert!(!savings_ok(&first), "{first}");
        std::fs::remove_file(&blocked).unwrap();
        let started = std::time::Instant::now();
        let second = cached_report(config.clone()).await;
        assert_eq!(first, second);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        let other = Arc::new((*config).clone());
        let fresh = cached_report(other).await;
        assert!(savings_ok(&fresh), "{fresh}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parameters() {
        let q = parse_query(
            "start=2026-11-27T07%3A10%3A14Z&end=1795849814&model=gpt-4o&limit=5",
            true,
        )
        .unwrap();
        assert_eq!(q.start, Some(1_795_763_414));
        assert_eq!(q.end, Some(1_795_849_814));
        assert_eq!(q.model.as_deref(), Some("gpt-4o"));
        assert_eq!(q.limit, Some(5));
        assert_eq!(parse_query("", true).unwrap().limit, Some(DEFAULT_LIMIT));
        assert_eq!(parse_query("", false).unwrap().limit, None);
        let q = parse_query("start=2026-11-27T08:10:14%2B01:00&model=a+b%2Fc", true).unwrap();
        assert_eq!(q.start, Some(1_795_763_414));
        assert_eq!(q.model.as_deref(), Some("a b/c"));
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |q: &str, filters: bool| parse_query(q, filters).unwrap_err().param;
        assert_eq!(bad("start=yesterday", true), "start");
        assert_eq!(bad("end=-1", true), "end");
        assert_eq!(bad("limit=0", true), "limit");
        assert_eq!(bad("limit=10001", true), "limit");
        assert_eq!(bad("limit=x", true), "limit");
        assert_eq!(bad("model=", true), "model");
        assert_eq!(bad("model=a", false), "model");
        assert_eq!(bad("since=1h", true), "since");
        assert_eq!(bad("start=1&start=2", true), "start");
        assert_eq!(bad("start=20&end=10", true), "end");
        let e = parse_query("start=x", false).unwrap_err();
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
