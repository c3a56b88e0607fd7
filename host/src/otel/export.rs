//! Sending one export: OTLP/HTTP (protobuf, the host's own hyper client, a deadline) or a JSON
//! line on standard output.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;

use super::config::{ExporterKind, OtelConfig};
use super::encode::Report;

/// How long one export may take (connect, send, answer), as the OTLP exporters' default.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a collector's answer that is read (it is only drained, never kept).
const MAX_ANSWER: usize = 64 * 1024;

/// Why an export failed. Never holds a header value or the endpoint's credentials.
#[derive(Debug)]
pub struct Failed(pub String);

/// Sends reports where the configuration says. Lives on the exporter's thread, with its own
/// single-threaded runtime: an export never runs on (or waits for) a proxy worker.
pub struct Sender {
    kind: ExporterKind,
    url: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    resource: Vec<(String, String)>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Runtime,
}

impl Sender {
    /// A sender for `config`. Headers that are not valid HTTP are left out (and named, by key
    /// only, in the returned warnings).
    pub fn new(config: &OtelConfig) -> anyhow::Result<(Self, Vec<String>)> {
        let mut warnings = Vec::new();
        let url: http::Uri = config.export_url().parse().map_err(|_| {
            anyhow::anyhow!(
                "HEADROOM_OTEL_METRICS_ENDPOINT {:?} is not a URL",
                super::config::mask_userinfo(config.export_url())
            )
        })?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            anyhow::bail!("HEADROOM_OTEL_METRICS_ENDPOINT must be an http:// or https:// URL");
        }
        let mut headers = Vec::new();
        for (k, v) in &config.headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(mut value)) => {
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
                _ => warnings.push(format!(
                    "HEADROOM_OTEL_METRICS_HEADERS: the header {k:?} is not valid HTTP and is not sent"
                )),
            }
        }
        let https = crate::proxy::upstream::https_connector(TIMEOUT)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = {
            let _guard = runtime.enter();
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https)
        };
        Ok((
            Self {
                kind: config.exporter,
                url,
                headers,
                resource: config.resource(),
                client,
                runtime,
            },
            warnings,
        ))
    }

    /// Sends one report (blocking this thread, at most [`TIMEOUT`]).
    pub fn send(&self, report: &Report) -> Result<(), Failed> {
        match self.kind {
            ExporterKind::Console => {
                let line = report.to_json(&self.resource).to_string();
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .map_err(|e| Failed(format!("writing to stdout: {e}")))
            }
            ExporterKind::OtlpHttp => {
                let body = report.to_otlp(&self.resource).encode_to_vec();
                self.post(body)
            }
        }
    }

    fn post(&self, body: Vec<u8>) -> Result<(), Failed> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::header::USER_AGENT,
                concat!("headroom/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failed(format!("building the request: {e}")))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let exchange = async {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| Failed(format!("sending: {}", describe(&e))))?;
                let status = response.status();
                // Drain (a bounded part of) the answer so the connection can be reused.
                let mut body = response.into_body();
                let mut read = 0;
                while read < MAX_ANSWER {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, |d| d.len());
                        }
                        _ => break,
                    }
                }
                if status.is_success() {
                    Ok(())
                } else {
                    Err(Failed(format!("the collector answered {status}")))
                }
            };
            match tokio::time::timeout(TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(Failed(format!("no answer within {} s", TIMEOUT.as_secs()))),
            }
        })
    }
}

/// A client error's kind and cause, without the request (hence without headers).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
