//! The plugin configuration: the JSON document a gateway passes to `on_configure`, its
//! defaults, and errors that name the offending field.

use std::fmt;

use serde::Deserialize;

use crate::budget::BudgetConfig;
use crate::pipeline::PipelineConfig;
use crate::pricing::PriceOverrides;

/// Default for [`Config::max_body_bytes`]: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Default for [`Config::health_path`].
pub const DEFAULT_HEALTH_PATH: &str = "/health";

/// Default for [`Config::stats_path`].
pub const DEFAULT_STATS_PATH: &str = "/stats";

/// Default for [`Config::history_path`].
pub const DEFAULT_HISTORY_PATH: &str = "/stats-history";

/// Default for [`Config::dashboard_path`].
pub const DEFAULT_DASHBOARD_PATH: &str = "/dashboard";

/// Default for [`Config::retrieve_path`].
pub const DEFAULT_RETRIEVE_PATH: &str = "/v1/headroom/retrieve";

/// Default for [`Config::omitted_store_bytes`] and [`Config::replay_store_bytes`]: 16 MiB each.
pub const DEFAULT_STORE_BYTES: u64 = 16 * 1024 * 1024;

/// The filter's configuration. Every field is optional; unknown fields are rejected so a typo
/// cannot silently fall back to a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Mount prefixes of the provider APIs: a path is an API path when it equals
    /// `prefix + api path` for some prefix. Each is empty or starts with `/` and does not end
    /// with `/` (e.g. `"/llm"`). Default `[""]`.
    pub path_prefixes: Vec<String>,
    /// Bodies larger than this are forwarded unchanged (fail open `too_large`). Default 32 MiB.
    pub max_body_bytes: u64,
    /// Compress tool outputs; false forwards every body unchanged (metrics still count).
    /// Default true.
    pub compress: bool,
    /// How tool outputs are compressed: [`PipelineConfig`], every field defaulted.
    pub pipeline: PipelineConfig,
    /// `GET` on this path (query ignored) answers the health document; empty disables it.
    /// Default `/health`.
    pub health_path: String,
    /// `GET` on this path answers the `/stats` document (docs/upstream.md §1); empty disables
    /// it. Default `/stats`.
    pub stats_path: String,
    /// `GET` on this path answers `/stats-history` (savings history, rollups, CSV;
    /// docs/upstream.md §3); empty disables it. Default `/stats-history`.
    pub history_path: String,
    /// `GET` on this path answers the dashboard page; empty disables it. Default `/dashboard`.
    pub dashboard_path: String,
    /// `GET {retrieve_path}/{hash}` answers the original a marker's hash names, from shared
    /// data; empty disables it. Default `/v1/headroom/retrieve`.
    pub retrieve_path: String,
    /// Byte budget of the originals of lossy compressions kept for retrieval (shared by every
    /// VM; oldest evicted first). Default 16 MiB.
    pub omitted_store_bytes: u64,
    /// Byte budget of the replay map (content hash of an original → the bytes sent for it),
    /// which keeps later turns byte-identical for prompt caches. Default 16 MiB.
    pub replay_store_bytes: u64,
    /// Read the usage report of every provider response (tokens, prompt-cache figures) for the
    /// metrics. Responses then must arrive readable, so `accept-encoding` is removed from
    /// provider requests (LLM responses are small next to their requests; SSE is rarely
    /// compressed anyway). Default true.
    pub read_usage: bool,
    /// With `read_usage`: a streaming OpenAI chat request without `stream_options` gets
    /// `"stream_options":{"include_usage":true}` so the provider reports usage, and the
    /// usage-only chunk this adds is removed from what the client receives (clients see exactly
    /// the stream they asked for). Default true.
    pub stream_usage: bool,
    /// Prices (USD per million tokens) that replace or extend the built-in table, by model:
    /// `{"my-model": {"input": 1.0, "output": 2.0, "cache_read": 0.1}}`. Default none.
    pub prices: PriceOverrides,
    /// Optional spending limits: `{"limit_usd": 25.0, "period": "daily"}` (hourly, daily,
    /// weekly or monthly, UTC), optionally per API key and per project, with the policy for
    /// unpriced models ([`BudgetConfig`]). A paid provider request that would cross any of
    /// them gets a 429 in the provider's error shape. Default none.
    pub budget: Option<BudgetConfig>,
    /// The token that opens the operators' endpoints (`/stats`, `/stats-history`, the
    /// dashboard, retrieval) to clients that are not on loopback, presented as
    /// `Authorization: Bearer <token>`. Never logged, never in `/stats`. Default none: only
    /// loopback clients are answered ([`crate::operator`]).
    pub admin_token: Option<Secret>,
    /// `Host` names the operators' endpoints accept besides the listener's own (`localhost`,
    /// `127.0.0.1`, `[::1]`, the address the client connected to): `"name"` (any port) or
    /// `"name:port"`. Default none.
    pub allowed_hosts: Vec<String>,
    /// The deployment secret that keys marker hashes and the retrieval store's credential
    /// scopes ([`MarkerKey`](crate::pipeline::MarkerKey)): set the same value on every
    /// replica of a fleet. Never logged, never in `/stats`. Default none: markers name plain
    /// content hashes.
    pub marker_secret: Option<Secret>,
    /// The exact-match response cache ([`crate::response_cache`]): `{}` turns it on with its
    /// defaults (`ttl_seconds` 3600, `max_bytes` 16 MiB, `max_entry_bytes` 1 MiB,
    /// `deterministic_only` true). Default none: off.
    pub response_cache: Option<crate::response_cache::ResponseCacheConfig>,
    /// Langfuse traces of the pipeline ([`crate::trace`]): `public_key`, `secret_key` and
    /// `base_url` with a cluster of that name (`cluster`, default `langfuse`) that reaches
    /// it. Default none: no traces.
    pub langfuse: Option<crate::trace::LangfuseConfig>,
}

/// A configuration value that must not be printed: its `Debug` says `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path_prefixes: vec![String::new()],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            compress: true,
            pipeline: PipelineConfig::default(),
            health_path: DEFAULT_HEALTH_PATH.to_owned(),
            stats_path: DEFAULT_STATS_PATH.to_owned(),
            history_path: DEFAULT_HISTORY_PATH.to_owned(),
            dashboard_path: DEFAULT_DASHBOARD_PATH.to_owned(),
            retrieve_path: DEFAULT_RETRIEVE_PATH.to_owned(),
            omitted_store_bytes: DEFAULT_STORE_BYTES,
            replay_store_bytes: DEFAULT_STORE_BYTES,
            read_usage: true,
            stream_usage: true,
            prices: PriceOverrides::new(),
            budget: None,
            admin_token: None,
            allowed_hosts: Vec::new(),
            marker_secret: None,
            response_cache: None,
            langfuse: None,
        }
    }
}

impl Config {
    /// Who may read the operators' endpoints, as [`crate::operator::decide`] takes it.
    pub fn operator_access(&self) -> crate::operator::Access<'_> {
        crate::operator::Access {
            admin_token: self.admin_token.as_ref().map(Secret::expose),
            allowed_hosts: &self.allowed_hosts,
        }
    }

    /// Parses the plugin configuration: empty or whitespace-only input (and `{}`) gives the
    /// defaults.
    pub fn from_bytes(raw: &[u8]) -> Result<Config, ConfigError> {
        let mut config: Config = parse_object(raw)?;
        config.validate()?;
        if let Some(secret) = &config.marker_secret {
            config.pipeline.marker_key =
                crate::pipeline::MarkerKey::new(secret.expose().as_bytes());
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (index, prefix) in self.path_prefixes.iter().enumerate() {
            let valid = prefix.is_empty() || (prefix.starts_with('/') && !prefix.ends_with('/'));
            if !valid || prefix.contains(['?', '#']) {
                return Err(ConfigError::at(
                    format!("path_prefixes[{index}]"),
                    "must be empty or start with '/', not end with '/', and have no '?' or '#'",
                ));
            }
        }
        for (name, path) in [
            ("health_path", &self.health_path),
            ("stats_path", &self.stats_path),
            ("history_path", &self.history_path),
            ("dashboard_path", &self.dashboard_path),
            ("retrieve_path", &self.retrieve_path),
        ] {
            if !path.is_empty() && (!path.starts_with('/') || path.contains(['?', '#'])) {
                return Err(ConfigError::at(
                    name.to_owned(),
                    "must be empty (disabled) or start with '/' and have no '?' or '#'",
                ));
            }
        }
        if !self.retrieve_path.is_empty() && self.retrieve_path == self.health_path {
            return Err(ConfigError::at(
                "retrieve_path".to_owned(),
                "must differ from health_path",
            ));
        }
        if let Err(err) = crate::pricing::PriceTable::builtin().with_overrides(&self.prices) {
            return Err(ConfigError::at(
                format!("prices.{}", err.model),
                &err.message,
            ));
        }
        if self
            .response_cache
            .is_some_and(|cache| cache.ttl_seconds == 0)
        {
            return Err(ConfigError::at(
                "response_cache.ttl_seconds".to_owned(),
                "must be at least 1",
            ));
        }
        if let Some((field, message)) = self.langfuse.as_ref().and_then(|l| l.problem()) {
            return Err(ConfigError::at(format!("langfuse.{field}"), message));
        }
        if self.pipeline.max_json_depth == 0 {
            return Err(ConfigError::at(
                "pipeline.max_json_depth".to_owned(),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Parses a JSON object into `T` (every field defaulted, unknown ones refused): empty or
/// whitespace-only input gives `T::default()`; errors name the offending field's path. The one
/// parser of the filter's configuration and of the pipeline component's options.
pub fn parse_object<T: serde::de::DeserializeOwned + Default>(
    raw: &[u8],
) -> Result<T, ConfigError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // Parse syntax first, then map types from the value: serde_json reports positions for
    // syntax errors only, so type errors read "invalid type: ..." without "at line 1 ...".
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|err| ConfigError {
        path: None,
        message: err.to_string(),
    })?;
    // serde would also accept a struct as a sequence ("[]"): only an object is a config.
    if !value.is_object() {
        return Err(ConfigError {
            path: None,
            message: "expected a JSON object".to_owned(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        ConfigError {
            path: (path != ".").then_some(path),
            message: err.into_inner().to_string(),
        }
    })
}

/// An invalid plugin configuration, with the path of the offending field when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path such as `max_body_bytes`, `path_prefixes[0]` or an unknown field's name;
    /// `None` for syntax errors and a top level that is not an object.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn at(path: String, message: &str) -> Self {
        Self {
            path: Some(path),
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(
                f,
                "invalid plugin configuration at '{path}': {}",
                self.message
            ),
            None => write!(f, "invalid plugin configuration: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error(raw: &str) -> String {
        Config::from_bytes(raw.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.path_prefixes, vec![String::new()]);
        assert_eq!(config.max_body_bytes, 33_554_432);
        assert!(config.compress);
        assert_eq!(config.health_path, "/health");
        assert_eq!(config.retrieve_path, "/v1/headroom/retrieve");
        assert_eq!(config.pipeline, PipelineConfig::default());
        assert_eq!(config.pipeline.max_json_depth, 256);
        for raw in ["", " \n\t", "{}", " { } "] {
            assert_eq!(
                Config::from_bytes(raw.as_bytes()).unwrap(),
                config,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn parses_every_field() {
        let config = Config::from_bytes(
            br#"{"path_prefixes":["/llm",""],"max_body_bytes":1024,"compress":false,
                "pipeline":{"max_json_depth":8,"min_block_bytes":64},"health_path":"",
                "retrieve_path":"/r","omitted_store_bytes":10,"replay_store_bytes":20,
                "read_usage":false}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            Config {
                path_prefixes: vec!["/llm".to_owned(), String::new()],
                max_body_bytes: 1024,
                compress: false,
                pipeline: PipelineConfig {
                    max_json_depth: 8,
                    min_block_bytes: 64,
                    ..PipelineConfig::default()
                },
                health_path: String::new(),
                stats_path: "/stats".to_owned(),
                history_path: "/stats-history".to_owned(),
                dashboard_path: "/dashboard".to_owned(),
                retrieve_path: "/r".to_owned(),
                omitted_store_bytes: 10,
                replay_store_bytes: 20,
                read_usage: false,
                stream_usage: true,
                prices: PriceOverrides::new(),
                budget: None,
                admin_token: None,
                allowed_hosts: Vec::new(),
                marker_secret: None,
                response_cache: None,
                langfuse: None,
            }
        );
        let keyed = Config::from_bytes(br#"{"marker_secret":"fleet-s3cret"}"#).unwrap();
        assert_eq!(
            keyed.pipeline.marker_key,
            crate::pipeline::MarkerKey::new(b"fleet-s3cret")
        );
        assert!(!format!("{keyed:?}").contains("fleet-s3cret"));
        let config =
            Config::from_bytes(br#"{"admin_token":"t0k","allowed_hosts":["gw.internal"]}"#)
                .unwrap();
        assert_eq!(config.operator_access().admin_token, Some("t0k"));
        assert_eq!(config.allowed_hosts, vec!["gw.internal".to_owned()]);
        assert!(!format!("{config:?}").contains("t0k"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert_eq!(
            error(r#"{"max_body_bytes":"x"}"#),
            r#"invalid plugin configuration at 'max_body_bytes': invalid type: string "x", expected u64"#
        );
        assert_eq!(
            error(r#"{"path_prefixes":["/a",3]}"#),
            "invalid plugin configuration at 'path_prefixes[1]': invalid type: integer `3`, expected a string"
        );
        assert_eq!(
            error(r#"{"pipeline":{"max_json_depth":-1}}"#),
            "invalid plugin configuration at 'pipeline.max_json_depth': invalid value: integer `-1`, expected u32"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_eq!(
            error(r#"{"max_body_byte":1}"#),
            "invalid plugin configuration at 'max_body_byte': unknown field `max_body_byte`, expected one of \
             `path_prefixes`, `max_body_bytes`, `compress`, `pipeline`, `health_path`, `stats_path`, `history_path`, `dashboard_path`, `retrieve_path`, \
             `omitted_store_bytes`, `replay_store_bytes`, `read_usage`, `stream_usage`, `prices`, `budget`, `admin_token`, `allowed_hosts`, `marker_secret`, `response_cache`, `langfuse`"
        );
        assert!(error(r#"{"pipeline":{"max_item":1}}"#).starts_with(
            "invalid plugin configuration at 'pipeline.max_item': unknown field `max_item`"
        ));
    }

    #[test]
    fn rejects_invalid_values_and_documents() {
        assert_eq!(
            error(r#"{"path_prefixes":["/llm/"]}"#),
            "invalid plugin configuration at 'path_prefixes[0]': must be empty or start with '/', not end with '/', and have no '?' or '#'"
        );
        assert!(error(r#"{"path_prefixes":["llm"]}"#).contains("'path_prefixes[0]'"));
        assert!(error(r#"{"path_prefixes":["/"]}"#).contains("'path_prefixes[0]'"));
        assert!(error(r#"{"health_path":"health"}"#).contains("'health_path'"));
        assert!(
            error(r#"{"pipeline":{"max_json_depth":0}}"#).contains("'pipeline.max_json_depth'")
        );
        assert!(error(r#"{"retrieve_path":"r"}"#).contains("'retrieve_path'"));
        assert!(error(r#"{"retrieve_path":"/health"}"#).contains("must differ"));
        assert!(error("{").starts_with("invalid plugin configuration: EOF"));
        for raw in ["null", "[]", "[1]", "\"x\"", "1"] {
            assert_eq!(
                error(raw),
                "invalid plugin configuration: expected a JSON object",
                "{raw}"
            );
        }
    }
}
