//! Who may read the operators' endpoints (DESIGN decision 11): `/stats`, `/stats-history`, the
//! dashboard and retrieval in the filter; `/metrics` and `/v1/headroom/{metrics,summary,validate}`
//! in the `headroom` host, which asks this same rule natively.
//!
//! The rule, in order:
//! 1. a `Host` that is not the listener's own (`localhost`, `127.0.0.1`, `[::1]`, the address the
//!    client connected to, or a name in `allowed_hosts`) is refused (403), whatever the
//!    credential: a browser tricked by DNS rebinding sends the attacker's name;
//! 2. a loopback client needs no credential;
//! 3. anyone else presents `Authorization: Bearer <admin_token>`: none is 401, a wrong one (or
//!    any, when no token is configured) is 403.
//!
//! A request without `Host` passes step 1 (browsers always send one). The token is compared in
//! constant time ([`subtle`]).

use std::net::{IpAddr, SocketAddr};

use subtle::ConstantTimeEq;

/// What an operator endpoint request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer it.
    Allow,
    /// 401: not from loopback and no bearer credential.
    MissingCredential,
    /// 403: a bearer credential that is not the admin token (or no token is configured).
    WrongCredential,
    /// 403: the `Host` header names some other site.
    ForeignHost,
}

impl Decision {
    /// The HTTP status of a refusal (200 for [`Decision::Allow`]).
    pub fn status(self) -> u32 {
        match self {
            Decision::Allow => 200,
            Decision::MissingCredential => 401,
            Decision::WrongCredential | Decision::ForeignHost => 403,
        }
    }

    /// The JSON error body of a refusal, in the host's error shape
    /// (`{"error":{"type":…,"message":…}}`); `None` for [`Decision::Allow`].
    pub fn error_body(self) -> Option<String> {
        let (kind, message) = match self {
            Decision::Allow => return None,
            Decision::MissingCredential => (
                "unauthorized",
                "operator endpoint: send Authorization: Bearer <admin token>, or connect from loopback",
            ),
            Decision::WrongCredential => (
                "forbidden",
                "operator endpoint: the credential is not the admin token",
            ),
            Decision::ForeignHost => (
                "forbidden",
                "operator endpoint: the Host header is not this gateway's own (add the name to allowed_hosts)",
            ),
        };
        Some(serde_json::json!({"error": {"type": kind, "message": message}}).to_string())
    }

    /// Extra response headers of a refusal (`WWW-Authenticate` on a 401).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Decision::MissingCredential => &[("www-authenticate", "Bearer")],
            _ => &[],
        }
    }
}

/// Who may read the operators' endpoints: the admin token and the extra `Host` names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access<'a> {
    /// The admin token (`None`: only loopback clients are answered).
    pub admin_token: Option<&'a str>,
    /// `Host` names accepted besides the listener's own.
    pub allowed_hosts: &'a [String],
}

/// One request, as the gate sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The client's address: `ip:port`, `[v6]:port` or a bare IP (Envoy's `source.address`).
    pub source: Option<&'a [u8]>,
    /// The address the client connected to, same forms (`destination.address`).
    pub destination: Option<&'a [u8]>,
    /// The `Host` header (`:authority`).
    pub host: Option<&'a [u8]>,
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
}

/// Decides an operator endpoint request.
pub fn decide(access: &Access<'_>, request: &Request<'_>) -> Decision {
    if let Some(host) = request.host
        && !own_host(access, host, request.destination)
    {
        return Decision::ForeignHost;
    }
    if request.source.and_then(parse_ip).is_some_and(is_loopback) {
        return Decision::Allow;
    }
    let Some(presented) = request.authorization.and_then(bearer) else {
        return Decision::MissingCredential;
    };
    match access.admin_token {
        Some(token) if !token.is_empty() && bool::from(token.as_bytes().ct_eq(presented)) => {
            Decision::Allow
        }
        _ => Decision::WrongCredential,
    }
}

/// The credential of `Bearer <token>` (scheme in any case, surrounding spaces ignored).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = (value.get(..6)?, value.get(6..)?);
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// An address in `ip:port`, `[v6]:port`, `v6` or `ip` form.
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The name part of a `Host` value: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn host_name(host: &[u8]) -> &[u8] {
    let host = host.trim_ascii();
    if host.first() == Some(&b'[') {
        return match host.iter().position(|b| *b == b']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        };
    }
    match host.iter().rposition(|b| *b == b':') {
        Some(colon) => host.get(..colon).unwrap_or(host),
        None => host,
    }
}

/// Whether `host` names this listener.
fn own_host(access: &Access<'_>, host: &[u8], destination: Option<&[u8]>) -> bool {
    let name = host_name(host);
    let name = name.strip_suffix(b".").unwrap_or(name);
    if [&b"localhost"[..], b"127.0.0.1", b"[::1]"]
        .iter()
        .any(|own| name.eq_ignore_ascii_case(own))
    {
        return true;
    }
    if let (Some(named), Some(local)) = (parse_ip(name), destination.and_then(parse_ip))
        && (named == local || is_loopback(named) && is_loopback(local))
    {
        return true;
    }
    access.allowed_hosts.iter().any(|allowed| {
        let allowed = allowed.as_bytes();
        allowed.eq_ignore_ascii_case(name) || allowed.eq_ignore_ascii_case(host.trim_ascii())
    })
}

impl std::fmt::Debug for Access<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("admin_token", &self.admin_token.map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token";

    fn decide_with(
        token: Option<&str>,
        allowed: &[String],
        source: &str,
        host: Option<&str>,
        authorization: Option<&str>,
    ) -> Decision {
        decide(
            &Access {
                admin_token: token,
                allowed_hosts: allowed,
            },
            &Request {
                source: Some(source.as_bytes()),
                destination: Some(b"10.200.0.1:8787"),
                host: host.map(str::as_bytes),
                authorization: authorization.map(str::as_bytes),
            },
        )
    }

    fn d(source: &str, host: Option<&str>, authorization: Option<&str>) -> Decision {
        decide_with(Some(TOKEN), &[], source, host, authorization)
    }

    #[test]
    fn loopback_needs_no_credential() {
        for source in [
            "127.0.0.1:5000",
            "[::1]:5000",
            "127.9.9.9:1",
            "::1",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(
                d(source, Some("127.0.0.1:8787"), None),
                Decision::Allow,
                "{source}"
            );
        }
        assert_eq!(d("127.0.0.1:5000", None, None), Decision::Allow);
        assert_eq!(
            d("127.0.0.1:5000", Some("localhost"), None),
            Decision::Allow
        );
        assert_eq!(
            d("127.0.0.1:5000", Some("[::1]:8787"), None),
            Decision::Allow
        );
        // No token configured: loopback still answered.
        assert_eq!(
            decide_with(None, &[], "127.0.0.1:1", Some("localhost:1"), None),
            Decision::Allow
        );
    }

    #[test]
    fn others_need_the_token() {
        let host = Some("10.200.0.1:8787");
        assert_eq!(
            d("10.200.0.2:40000", host, None),
            Decision::MissingCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Basic abc")),
            Decision::MissingCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Bearer")),
            Decision::MissingCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Bearer nope")),
            Decision::WrongCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Bearer s3cret-toke")),
            Decision::WrongCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Bearer s3cret-token1")),
            Decision::WrongCredential
        );
        assert_eq!(
            d("10.200.0.2:40000", host, Some("Bearer s3cret-token")),
            Decision::Allow
        );
        assert_eq!(
            d("[2001:db8::1]:1", host, Some("bearer  s3cret-token ")),
            Decision::Allow
        );
        // Unparseable or missing source: not loopback.
        assert_eq!(
            d("envoy://internal", host, None),
            Decision::MissingCredential
        );
        assert_eq!(
            decide(&Access::default(), &Request::default()),
            Decision::MissingCredential
        );
        // No token configured: every credential is wrong, including an empty one.
        assert_eq!(
            decide_with(None, &[], "10.0.0.2:1", host, Some("Bearer x")),
            Decision::WrongCredential
        );
        assert_eq!(
            decide_with(Some(""), &[], "10.0.0.2:1", host, Some("Bearer x")),
            Decision::WrongCredential
        );
    }

    #[test]
    fn foreign_hosts_are_refused_even_with_the_token() {
        assert_eq!(
            d("127.0.0.1:1", Some("evil.example"), None),
            Decision::ForeignHost
        );
        assert_eq!(
            d("127.0.0.1:1", Some("evil.example:8787"), None),
            Decision::ForeignHost
        );
        assert_eq!(
            d(
                "10.0.0.2:1",
                Some("evil.example"),
                Some("Bearer s3cret-token")
            ),
            Decision::ForeignHost
        );
        assert_eq!(
            d("127.0.0.1:1", Some("10.9.9.9:8787"), None),
            Decision::ForeignHost
        );
        assert_eq!(
            d("127.0.0.1:1", Some("localhost.evil.example"), None),
            Decision::ForeignHost
        );
        // The listener's own address and the allowed names pass.
        assert_eq!(d("127.0.0.1:1", Some("10.200.0.1"), None), Decision::Allow);
        assert_eq!(
            d("127.0.0.1:1", Some("LOCALHOST.:8787"), None),
            Decision::Allow
        );
        let allowed = vec!["Gateway.Internal".to_owned(), "ops:9000".to_owned()];
        let with = |host| decide_with(Some(TOKEN), &allowed, "127.0.0.1:1", Some(host), None);
        assert_eq!(with("gateway.internal:8787"), Decision::Allow);
        assert_eq!(with("ops:9000"), Decision::Allow);
        assert_eq!(with("ops:9001"), Decision::ForeignHost);
    }

    #[test]
    fn refusals_have_a_status_and_a_json_body() {
        assert_eq!(Decision::Allow.status(), 200);
        assert_eq!(Decision::Allow.error_body(), None);
        assert_eq!(Decision::MissingCredential.status(), 401);
        assert_eq!(
            Decision::MissingCredential.headers(),
            &[("www-authenticate", "Bearer")]
        );
        for decision in [Decision::WrongCredential, Decision::ForeignHost] {
            assert_eq!(decision.status(), 403);
            let body: serde_json::Value =
                serde_json::from_str(&decision.error_body().unwrap()).unwrap();
            assert_eq!(body["error"]["type"], "forbidden");
        }
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let access = Access {
            admin_token: Some(TOKEN),
            allowed_hosts: &[],
        };
        assert!(!format!("{access:?}").contains(TOKEN));
    }
}
