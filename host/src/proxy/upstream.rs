//! Where requests go: the two provider upstreams, the path routing between them, and the HTTP
//! client (rustls with bundled roots for HTTPS, plain HTTP for loopback test upstreams).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::UpstreamBody;

/// One upstream origin (scheme, authority and an optional base path).
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Name (`openai`, `anthropic`), also its `http_call` cluster name.
    pub name: &'static str,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
}

impl Upstream {
    /// Parses an upstream URL such as `https://api.openai.com` or `http://127.0.0.1:9000`.
    pub fn parse(name: &'static str, url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid {name} upstream URL {url:?}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            bail!("{name} upstream URL {url:?} needs a scheme and a host");
        };
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            bail!("{name} upstream URL {url:?} must be http or https");
        }
        let mut base_path = uri.path().trim_end_matches('/').to_string();
        // `https://api.openai.com/v1` is a common way to write the base URL; requests already
        // carry `/v1`.
        if base_path.ends_with("/v1") {
            base_path.truncate(base_path.len() - 3);
        }
        Ok(Self {
            name,
            scheme,
            authority,
            base_path,
        })
    }

    /// The URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri> {
        Ok(Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()?)
    }

    /// The `host` header value for this upstream.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

/// The provider upstreams and the client that reaches them.
pub struct Upstreams {
    /// OpenAI-compatible API: every `/v1/*` path but Anthropic's.
    pub openai: Upstream,
    /// Anthropic Messages API: `/v1/messages` and below.
    pub anthropic: Upstream,
    /// The shared client (connection pools per origin).
    pub client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
}

impl Upstreams {
    /// Builds the client (10 s connect timeout) and parses both upstream URLs.
    pub fn new(openai_url: &str, anthropic_url: &str) -> Result<Self> {
        Self::with_connect_timeout(openai_url, anthropic_url, Duration::from_secs(10))
    }

    /// Builds the client with `connect_timeout` for each TCP connection and parses both
    /// upstream URLs.
    pub fn with_connect_timeout(
        openai_url: &str,
        anthropic_url: &str,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let https = https_connector(connect_timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Self {
            openai: Upstream::parse("openai", openai_url)?,
            anthropic: Upstream::parse("anthropic", anthropic_url)?,
            client,
        })
    }

    /// The upstream for a request: `/v1/messages…`, or any `/v1/…` request from an Anthropic
    /// client (it sends `anthropic-version`), goes to Anthropic; any other `/v1/…` to OpenAI;
    /// nothing else is proxied. Envoy's bootstrap routes the same way.
    pub fn route(&self, path: &str, anthropic_client: bool) -> Option<&Upstream> {
        let path = path.split('?').next().unwrap_or_default();
        let v1 = path.starts_with("/v1/");
        if path == "/v1/messages" || path.starts_with("/v1/messages/") || (v1 && anthropic_client) {
            Some(&self.anthropic)
        } else if v1 {
            Some(&self.openai)
        } else {
            None
        }
    }

    /// The upstream named `name` (for the filter's `http_call` clusters).
    pub fn by_name(&self, name: &str) -> Option<&Upstream> {
        [&self.openai, &self.anthropic]
            .into_iter()
            .find(|u| u.name == name)
    }
}

/// The host's outbound connector: HTTP or HTTPS (webpki roots, ring), HTTP/1 and HTTP/2,
/// `connect_timeout` per TCP connection, no Nagle delay. Upstreams and exporters share it.
pub fn https_connector(connect_timeout: Duration) -> Result<HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_provider_path() {
        let u = Upstreams::new("https://api.openai.com", "http://127.0.0.1:9/").unwrap();
        let name = |path: &str, anthropic: bool| u.route(path, anthropic).map(|u| u.name);
        assert_eq!(name("/v1/messages", false), Some("anthropic"));
        assert_eq!(name("/v1/messages?beta=true", false), Some("anthropic"));
        assert_eq!(name("/v1/messages/count_tokens", false), Some("anthropic"));
        assert_eq!(name("/v1/chat/completions", false), Some("openai"));
        assert_eq!(name("/v1/models", false), Some("openai"));
        assert_eq!(name("/v1/models", true), Some("anthropic"));
        assert_eq!(name("/v1/messagesX", false), Some("openai"));
        assert_eq!(name("/v1", false), None);
        assert_eq!(name("/health", true), None);
    }

    #[test]
    fn base_urls_with_v1_are_not_doubled() {
        let up = Upstream::parse("openai", "https://example.test/proxy/v1/").unwrap();
        assert_eq!(
            up.uri("/v1/models").unwrap().to_string(),
            "https://example.test/proxy/v1/models"
        );
        assert!(Upstream::parse("openai", "ftp://x").is_err());
        assert!(Upstream::parse("openai", "/relative").is_err());
    }
}
