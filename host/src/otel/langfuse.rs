//! Langfuse from the seed's environment variables (docs/upstream.md §7). The filter builds and
//! exports the spans itself (`headroom_plugin::trace`, the same code in Envoy); the host only
//! turns the variables into the filter's `langfuse` block and an `http_call` cluster named
//! `langfuse` that reaches the base URL's origin.

use serde_json::{Value, json};

use super::config::{parse_bool, parse_pairs};

/// The default base URL (Langfuse Cloud).
pub const DEFAULT_BASE_URL: &str = "https://cloud.langfuse.com";

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct LangfuseEnv {
    /// The filter's `langfuse` block (holds the secret key: never log it).
    pub block: Value,
    /// The `langfuse` cluster's URL (the base URL's scheme and authority), when it parses.
    pub cluster_url: Option<String>,
}

/// The Langfuse settings of the environment as `get` reads it: `None` when none of
/// `HEADROOM_LANGFUSE_ENABLED`, `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY`, `LANGFUSE_BASE_URL`
/// is set (the seed's "not configured"). Warnings are returned for the caller to log.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Option<LangfuseEnv>, Vec<String>) {
    let nonempty = |name: &str| {
        get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let any = [
        "HEADROOM_LANGFUSE_ENABLED",
        "LANGFUSE_PUBLIC_KEY",
        "LANGFUSE_SECRET_KEY",
        "LANGFUSE_BASE_URL",
    ]
    .iter()
    .any(|name| nonempty(name).is_some());
    if !any {
        return (None, Vec::new());
    }
    let mut warnings = Vec::new();
    let public_key = nonempty("LANGFUSE_PUBLIC_KEY");
    let secret_key = nonempty("LANGFUSE_SECRET_KEY");
    let mut enabled = parse_bool(get("HEADROOM_LANGFUSE_ENABLED").as_deref(), false);
    if enabled && (public_key.is_none() || secret_key.is_none()) {
        warnings.push(
            "HEADROOM_LANGFUSE_ENABLED is set but LANGFUSE_PUBLIC_KEY or LANGFUSE_SECRET_KEY is \
             missing: no traces are exported"
                .to_owned(),
        );
        enabled = false;
    }
    let base_url = nonempty("LANGFUSE_BASE_URL")
        .or_else(|| nonempty("LANGFUSE_OTEL_HOST"))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let service_name =
        nonempty("HEADROOM_LANGFUSE_SERVICE_NAME").unwrap_or_else(|| "headroom-proxy".to_owned());
    let attributes: serde_json::Map<String, Value> =
        parse_pairs(get("HEADROOM_LANGFUSE_RESOURCE_ATTRIBUTES").as_deref())
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
    let mut block = json!({
        "enabled": enabled,
        "base_url": base_url,
        "service_name": service_name,
        "resource_attributes": attributes,
    });
    if let Some(map) = block.as_object_mut() {
        if let Some(key) = public_key {
            map.insert("public_key".into(), Value::String(key));
        }
        if let Some(key) = secret_key {
            map.insert("secret_key".into(), Value::String(key));
        }
    }
    let cluster_url = origin(&base_url);
    if cluster_url.is_none() {
        warnings.push(format!(
            "LANGFUSE_BASE_URL {base_url:?} is not an http(s) URL with a host"
        ));
    }
    (Some(LangfuseEnv { block, cluster_url }), warnings)
}

/// `scheme://authority` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    Some(format!("{scheme}://{}", uri.authority()?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> (Option<LangfuseEnv>, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_set_is_not_configured() {
        assert_eq!(env(&[]), (None, Vec::new()));
        assert_eq!(env(&[("LANGFUSE_PUBLIC_KEY", "  ")]).0, None);
    }

    #[test]
    fn enabled_with_keys_exports_to_the_base_url() {
        let (got, warnings) = env(&[
            ("HEADROOM_LANGFUSE_ENABLED", " Yes "),
            ("LANGFUSE_PUBLIC_KEY", "pk-lf-1"),
            ("LANGFUSE_SECRET_KEY", "sk-lf-2"),
            ("LANGFUSE_BASE_URL", "https://langfuse.example:8443/lf/"),
            ("HEADROOM_LANGFUSE_SERVICE_NAME", "edge"),
            (
                "HEADROOM_LANGFUSE_RESOURCE_ATTRIBUTES",
                "env=prod,bad,team=ai",
            ),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let got = got.unwrap();
        assert_eq!(
            got.cluster_url.as_deref(),
            Some("https://langfuse.example:8443")
        );
        assert_eq!(
            got.block,
            json!({
                "enabled": true,
                "base_url": "https://langfuse.example:8443/lf/",
                "service_name": "edge",
                "resource_attributes": {"env": "prod", "team": "ai"},
                "public_key": "pk-lf-1",
                "secret_key": "sk-lf-2",
            })
        );
        // The filter accepts the block as its configuration.
        let config = headroom_plugin::config::Config::from_bytes(
            json!({ "langfuse": got.block }).to_string().as_bytes(),
        )
        .unwrap();
        assert!(config.langfuse.is_some());
    }

    #[test]
    fn otel_host_is_the_fallback_and_cloud_the_default() {
        let (got, _) = env(&[
            ("LANGFUSE_PUBLIC_KEY", "pk"),
            ("LANGFUSE_OTEL_HOST", "http://127.0.0.1:3000"),
        ]);
        let got = got.unwrap();
        assert_eq!(got.block["base_url"], "http://127.0.0.1:3000");
        assert_eq!(got.block["enabled"], false);
        let (got, _) = env(&[("HEADROOM_LANGFUSE_ENABLED", "0")]);
        assert_eq!(got.unwrap().block["base_url"], DEFAULT_BASE_URL);
    }

    #[test]
    fn enabled_without_keys_warns_and_stays_off() {
        let (got, warnings) = env(&[
            ("HEADROOM_LANGFUSE_ENABLED", "1"),
            ("LANGFUSE_PUBLIC_KEY", "pk"),
        ]);
        assert_eq!(got.unwrap().block["enabled"], false);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("LANGFUSE_SECRET_KEY"), "{warnings:?}");
    }
}
