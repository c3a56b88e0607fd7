//! The OTLP metrics exporter's configuration, read from the seed's environment variables
//! (docs/upstream.md §6), and its `/stats.otel` status.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// The exporter's default service name (`HEADROOM_OTEL_SERVICE_NAME` unset or blank).
pub const DEFAULT_SERVICE_NAME: &str = "headroom-proxy";
/// Where OTLP/HTTP metrics go when no endpoint is configured (the OTLP exporters' default).
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/metrics";
/// The export interval when `HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS` is unset or not a
/// positive integer.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10_000);

/// Where the metrics go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP/HTTP, protobuf body (`application/x-protobuf`).
    OtlpHttp,
    /// One JSON line per export on standard output.
    Console,
}

impl ExporterKind {
    /// The configuration value: `otlp_http` or `console`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtlpHttp => "otlp_http",
            Self::Console => "console",
        }
    }
}

/// How sums and histograms are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    /// Totals since the process started (the default; what Prometheus-style backends expect).
    Cumulative,
    /// What changed since the previous export (some backends, e.g. Datadog or Dynatrace, need
    /// it).
    Delta,
}

impl Temporality {
    /// The configuration value: `cumulative` or `delta`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cumulative => "cumulative",
            Self::Delta => "delta",
        }
    }
}

/// The exporter's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelConfig {
    /// `HEADROOM_OTEL_METRICS_ENABLED` (default off).
    pub enabled: bool,
    /// `HEADROOM_OTEL_METRICS_EXPORTER` (default `otlp_http`).
    pub exporter: ExporterKind,
    /// `HEADROOM_OTEL_METRICS_ENDPOINT` as given (`None`: unset or empty).
    pub endpoint: Option<String>,
    /// `HEADROOM_OTEL_METRICS_HEADERS`: sent with every export, never shown or logged.
    pub headers: Vec<(String, String)>,
    /// `HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS`.
    pub interval: Duration,
    /// `HEADROOM_OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `HEADROOM_OTEL_RESOURCE_ATTRIBUTES`, in order (merged after `service.name` and
    /// `service.version`, so they may override them).
    pub resource_attributes: Vec<(String, String)>,
    /// `HEADROOM_OTEL_METRICS_TEMPORALITY`, else the standard
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`delta` or `cumulative`; default
    /// cumulative).
    pub temporality: Temporality,
}

/// The seed's boolean: `1/true/yes/on` → true, `0/false/no/off` → false, anything else (or
/// unset) → `default`; trimmed, any case.
pub fn parse_bool(value: Option<&str>, default: bool) -> bool {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("1" | "true" | "yes" | "on") => true,
        Some("0" | "false" | "no" | "off") => false,
        _ => default,
    }
}

/// A `k=v,k2=v2` list: split on the first `=`, both sides trimmed; items without `=` or with an
/// empty key or value are dropped.
pub fn parse_pairs(value: Option<&str>) -> Vec<(String, String)> {
    value
        .unwrap_or_default()
        .split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty() && !v.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

impl OtelConfig {
    /// The configuration from the environment as `get` reads it. Warnings (an unknown exporter)
    /// are returned for the caller to log.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let nonempty = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let exporter = match nonempty("HEADROOM_OTEL_METRICS_EXPORTER")
            .map(|v| v.to_ascii_lowercase().replace('-', "_"))
            .as_deref()
        {
            None | Some("otlp_http") => ExporterKind::OtlpHttp,
            Some("console") => ExporterKind::Console,
            Some(other) => {
                warnings.push(format!(
                    "HEADROOM_OTEL_METRICS_EXPORTER={other:?} is not otlp_http or console: using otlp_http"
                ));
                ExporterKind::OtlpHttp
            }
        };
        let interval = nonempty("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_INTERVAL, Duration::from_millis);
        let temporality = match nonempty("HEADROOM_OTEL_METRICS_TEMPORALITY")
            .or_else(|| nonempty("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("cumulative") => Temporality::Cumulative,
            Some("delta") => Temporality::Delta,
            Some(other) => {
                warnings.push(format!(
                    "metrics temporality {other:?} is not cumulative or delta: using cumulative"
                ));
                Temporality::Cumulative
            }
        };
        let config = Self {
            enabled: parse_bool(get("HEADROOM_OTEL_METRICS_ENABLED").as_deref(), false),
            exporter,
            endpoint: nonempty("HEADROOM_OTEL_METRICS_ENDPOINT"),
            headers: parse_pairs(get("HEADROOM_OTEL_METRICS_HEADERS").as_deref()),
            interval,
            service_name: nonempty("HEADROOM_OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            resource_attributes: parse_pairs(get("HEADROOM_OTEL_RESOURCE_ATTRIBUTES").as_deref()),
            temporality,
        };
        (config, warnings)
    }

    /// The configuration from the process's environment.
    pub fn from_process_env() -> (Self, Vec<String>) {
        Self::from_env(|name| std::env::var(name).ok())
    }

    /// Where OTLP/HTTP exports are posted: the configured endpoint verbatim, else the default.
    pub fn export_url(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)
    }

    /// The resource attributes in the order they apply: `service.name`, `service.version`,
    /// then the configured ones (a later key overrides an earlier one).
    pub fn resource(&self) -> Vec<(String, String)> {
        let mut merged: Vec<(String, String)> = vec![
            ("service.name".into(), self.service_name.clone()),
            ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ];
        for (k, v) in &self.resource_attributes {
            match merged.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => merged.push((k.clone(), v.clone())),
            }
        }
        merged
    }

    /// `/stats.otel` in the seed's shape (`configured` is always true), plus the host's extras
    /// (`temporality`, `export_interval_ms`, and `exports` when given). The headers are never
    /// included, and credentials in the endpoint's URL are masked.
    pub fn status(&self, exports: Option<Value>) -> Value {
        let resource: Map<String, Value> = self
            .resource_attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut status = json!({
            "configured": true,
            "enabled": self.enabled,
            "service_name": self.service_name,
            "exporter": self.exporter.as_str(),
            "endpoint": self.endpoint.as_deref().map(mask_userinfo),
            "resource_attributes": resource,
            "temporality": self.temporality.as_str(),
            "export_interval_ms": self.interval.as_millis() as u64,
        });
        if let (Some(exports), Value::Object(map)) = (exports, &mut status) {
            map.insert("exports".into(), exports);
        }
        status
    }
}

/// `scheme://user:pass@host/…` → `scheme://***@host/…` (any other string unchanged).
pub fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> (OtelConfig, Vec<String>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelConfig::from_env(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let (c, warnings) = config(&[]);
        assert!(warnings.is_empty());
        assert!(!c.enabled);
        assert_eq!(c.exporter, ExporterKind::OtlpHttp);
        assert_eq!(c.endpoint, None);
        assert_eq!(c.export_url(), DEFAULT_ENDPOINT);
        assert_eq!(c.interval, Duration::from_millis(10_000));
        assert_eq!(c.service_name, "headroom-proxy");
        assert_eq!(c.temporality, Temporality::Cumulative);
    }

    #[test]
    fn the_seeds_parsing() {
        let (c, warnings) = config(&[
            ("HEADROOM_OTEL_METRICS_ENABLED", " Yes "),
            ("HEADROOM_OTEL_METRICS_EXPORTER", "Console"),
            (
                "HEADROOM_OTEL_METRICS_HEADERS",
                "a=1, b = x=y ,novalue,=v,k=,",
            ),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "-5"),
            ("HEADROOM_OTEL_SERVICE_NAME", "  "),
            (
                "HEADROOM_OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=edge",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(c.enabled);
        assert_eq!(c.exporter, ExporterKind::Console);
        assert_eq!(
            c.headers,
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.service_name, "headroom-proxy");
        assert_eq!(c.temporality, Temporality::Delta);
        let resource = c.resource();
        assert_eq!(resource[0], ("service.name".into(), "edge".into()));
        assert_eq!(
            resource[2],
            ("deployment.environment".into(), "prod".into())
        );

        let (c, warnings) = config(&[
            ("HEADROOM_OTEL_METRICS_ENABLED", "maybe"),
            ("HEADROOM_OTEL_METRICS_EXPORTER", "otlp-grpc"),
            ("HEADROOM_OTEL_METRICS_EXPORT_INTERVAL_MS", "250"),
            ("HEADROOM_OTEL_METRICS_TEMPORALITY", "cumulative"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ]);
        assert!(!c.enabled);
        assert_eq!(c.exporter, ExporterKind::OtlpHttp);
        assert_eq!(warnings.len(), 1);
        assert_eq!(c.interval, Duration::from_millis(250));
        assert_eq!(c.temporality, Temporality::Cumulative);
    }

    #[test]
    fn status_has_the_seeds_shape_and_no_secret() {
        let (c, _) = config(&[
            ("HEADROOM_OTEL_METRICS_ENABLED", "1"),
            ("HEADROOM_OTEL_METRICS_EXPORTER", "console"),
            (
                "HEADROOM_OTEL_METRICS_ENDPOINT",
                "https://user:s3cret@otel.example/v1/metrics",
            ),
            (
                "HEADROOM_OTEL_METRICS_HEADERS",
                "authorization=Bearer s3cret",
            ),
        ]);
        let status = c.status(None);
        assert_eq!(status["configured"], true);
        assert_eq!(status["enabled"], true);
        assert_eq!(status["service_name"], "headroom-proxy");
        assert_eq!(status["exporter"], "console");
        assert_eq!(status["endpoint"], "https://***@otel.example/v1/metrics");
        assert_eq!(status["resource_attributes"], json!({}));
        assert!(!status.to_string().contains("s3cret"));
        assert_eq!(mask_userinfo("http://a/b@c"), "http://a/b@c");
    }
}
