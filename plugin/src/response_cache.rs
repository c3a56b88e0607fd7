//! The optional exact-match response cache: which requests it may answer, the key they are
//! stored under, and the stored form of a response. The glue keeps entries in a byte-bounded
//! shared-data store (oldest evicted first) and replays a hit as a local response.
//!
//! Off by default, and when on, by default only for requests that ask for deterministic
//! sampling (`"temperature": 0`): replaying a sampled answer would silently change what a
//! client that asked twice gets, and a gateway must not decide that for it. An operator who
//! wants every identical request answered from the cache sets `deterministic_only: false`.
//!
//! The key is the request's credential scope (so one key never reads another's responses),
//! its API, and its body with insignificant whitespace removed (key order kept: providers may
//! read it). `stream` is part of the body, so a streaming request is answered with the SSE
//! bytes a streaming request received, a non-streaming one with JSON.
//!
//! Expiry without deletes: an entry is stored under the key of the TTL-long window its store
//! time falls in, and looked up in the current and the previous window, where its own age
//! decides. A store never meets an expired entry under its key (that would be two windows old),
//! so "first write wins" in the shared store never keeps a stale answer alive.

use serde::Deserialize;

use crate::credential::Scope;
use crate::json::{Document, ErrorKind, Kind};
use crate::pipeline::ContentHash;

/// The response header a cache hit carries: `x-headroom-cache: hit`.
pub const HIT_HEADER: &str = "x-headroom-cache";

/// The `response_cache` object of the plugin configuration; absent: no cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseCacheConfig {
    /// How long an answer is served, seconds (at least 1). Default 3600 (the seed's).
    pub ttl_seconds: u64,
    /// Byte budget of all entries together (shared data, every VM). Default 16 MiB.
    pub max_bytes: u64,
    /// Larger responses are not kept. Default 1 MiB.
    pub max_entry_bytes: u64,
    /// Only requests with `"temperature": 0` are cached. Default true.
    pub deterministic_only: bool,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 3_600,
            max_bytes: 16 << 20,
            max_entry_bytes: 1 << 20,
            deterministic_only: true,
        }
    }
}

/// Why a request is not answered from (or stored into) the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCacheable {
    /// The body is not a JSON object.
    NotJson,
    /// `deterministic_only` and the request does not set `"temperature": 0`.
    Sampled,
    /// The body holds more JSON values than the pipeline would read.
    TooLarge,
}

/// Where a cacheable request's answer lives: a hash of scope, API and canonical body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey(ContentHash);

impl CacheKey {
    /// The key of `body` sent to `api_path` under `scope`, if the request may be cached.
    pub fn of(
        config: &ResponseCacheConfig,
        scope: Scope,
        api_path: &str,
        body: &[u8],
    ) -> Result<CacheKey, NotCacheable> {
        // Bounded like the pipeline's parse (a hostile body cannot make this one unbounded),
        // and before any copy: most requests stop at the temperature check.
        let doc = Document::parse_bounded(
            body,
            crate::json::DEFAULT_MAX_DEPTH,
            crate::json::DEFAULT_MAX_VALUES,
        )
        .map_err(|e| match e.kind {
            ErrorKind::TooManyValues => NotCacheable::TooLarge,
            _ => NotCacheable::NotJson,
        })?;
        let root = doc.root();
        if root.kind() != Kind::Object {
            return Err(NotCacheable::NotJson);
        }
        if config.deterministic_only {
            let zero = root
                .get("temperature")
                .filter(|t| t.kind() == Kind::Number)
                .and_then(|t| t.raw().parse::<f64>().ok())
                .is_some_and(|t| t == 0.0);
            if !zero {
                return Err(NotCacheable::Sampled);
            }
        }
        let text = std::str::from_utf8(body).map_err(|_| NotCacheable::NotJson)?;
        let canonical = crate::json::minify(text).ok_or(NotCacheable::NotJson)?;
        Ok(CacheKey(scope.keyed(&[
            b"headroom-response-v1",
            api_path.as_bytes(),
            canonical.as_bytes(),
        ])))
    }

    /// The store key of the window `ttl`-long that `unix_secs` falls in.
    fn in_window(self, ttl: u64, unix_secs: u64) -> ContentHash {
        let window = unix_secs / ttl.max(1);
        ContentHash::of_parts(&[&self.0.0, &window.to_le_bytes()])
    }

    /// Where a response stored at `now` goes.
    pub fn store_key(self, ttl: u64, now: u64) -> ContentHash {
        self.in_window(ttl, now)
    }

    /// Where a response still fresh at `now` may be: the current window, then the previous.
    pub fn lookup_keys(self, ttl: u64, now: u64) -> [ContentHash; 2] {
        [
            self.in_window(ttl, now),
            self.in_window(ttl, now.saturating_sub(ttl.max(1))),
        ]
    }
}

/// One stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// Unix seconds when it was stored.
    pub stored_at: u64,
    /// The response's `content-type` (JSON, or `text/event-stream` for a stream).
    pub content_type: String,
    /// The bytes the client received.
    pub body: Vec<u8>,
}

/// Leading bytes of an encoded [`CachedResponse`]: a tag and a format version.
const ENTRY_MAGIC: &[u8; 4] = b"HRC\x01";

impl CachedResponse {
    /// `HRC\x01`, `stored_at` (u64 LE), the content type's length (u16 LE) and bytes, the body.
    pub fn encode(&self) -> Vec<u8> {
        let content_type = self.content_type.as_bytes();
        let len = u16::try_from(content_type.len()).unwrap_or(0);
        let content_type = content_type.get(..usize::from(len)).unwrap_or_default();
        let mut out = Vec::with_capacity(14 + content_type.len() + self.body.len());
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.stored_at.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(content_type);
        out.extend_from_slice(&self.body);
        out
    }

    /// What `encode` wrote; `None` for anything else (treated as a miss).
    pub fn decode(bytes: &[u8]) -> Option<CachedResponse> {
        let rest = bytes.strip_prefix(ENTRY_MAGIC.as_slice())?;
        let (stored_at, rest) = rest.split_first_chunk::<8>()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let content_type = std::str::from_utf8(rest.get(..len)?).ok()?;
        Some(CachedResponse {
            stored_at: u64::from_le_bytes(*stored_at),
            content_type: content_type.to_owned(),
            body: rest.get(len..)?.to_vec(),
        })
    }

    /// Whether it may still be served at `now` (younger than the TTL; a clock that went back
    /// does not make an entry fresher than new).
    pub fn fresh(&self, ttl: u64, now: u64) -> bool {
        now.saturating_sub(self.stored_at) < ttl
    }
}

/// How full the cache's store is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Entries held (expired ones included until evicted).
    pub entries: u64,
    /// Bytes charged for them.
    pub bytes: u64,
}

/// The `cache` block of `/stats`: the seed's `entries` and `total_hits` (here every hit since
/// the process started, not only the current entries'), with `enabled`, `ttl_seconds`,
/// `max_bytes`, `bytes` and `misses`. Without a cache: `enabled` false and zeros.
pub fn stats_json(
    config: Option<&ResponseCacheConfig>,
    occupancy: Occupancy,
    hits: u64,
    misses: u64,
) -> serde_json::Value {
    serde_json::json!({
        "enabled": config.is_some(),
        "entries": occupancy.entries,
        "bytes": occupancy.bytes,
        "max_bytes": config.map(|c| c.max_bytes),
        "ttl_seconds": config.map(|c| c.ttl_seconds),
        "deterministic_only": config.map(|c| c.deterministic_only),
        "total_hits": hits,
        "misses": misses,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::pipeline::MarkerKey;

    fn scope(key: &[u8]) -> Scope {
        Scope::of(&MarkerKey::default(), [Some(key), None, None])
    }

    const DETERMINISTIC: &[u8] =
        br#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"2+2?"}]}"#;

    #[test]
    fn keys_follow_scope_api_and_body_but_not_whitespace() {
        let config = ResponseCacheConfig::default();
        let key = |scope: Scope, path: &str, body: &[u8]| CacheKey::of(&config, scope, path, body);
        let a = key(scope(b"sk-a"), "/v1/chat/completions", DETERMINISTIC).unwrap();
        let spaced = br#"{ "model": "gpt-4o", "temperature": 0,
            "messages": [ {"role":"user", "content":"2+2?"} ] }"#;
        assert_eq!(key(scope(b"sk-a"), "/v1/chat/completions", spaced), Ok(a));
        assert_ne!(
            key(scope(b"sk-b"), "/v1/chat/completions", DETERMINISTIC),
            Ok(a)
        );
        assert_ne!(key(scope(b"sk-a"), "/v1/responses", DETERMINISTIC), Ok(a));
        let other =
            br#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"2+3?"}]}"#;
        assert_ne!(key(scope(b"sk-a"), "/v1/chat/completions", other), Ok(a));
        // A string with spaces inside keeps them: only insignificant whitespace goes.
        let inner = br#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"2 + 2?"}]}"#;
        assert_ne!(key(scope(b"sk-a"), "/v1/chat/completions", inner), Ok(a));
    }

    #[test]
    fn only_deterministic_requests_by_default() {
        let config = ResponseCacheConfig::default();
        for body in [
            &br#"{"model":"m","messages":[]}"#[..],
            br#"{"model":"m","temperature":0.7,"messages":[]}"#,
            br#"{"model":"m","temperature":"0","messages":[]}"#,
        ] {
            assert_eq!(
                CacheKey::of(&config, scope(b"k"), "/v1/messages", body),
                Err(NotCacheable::Sampled)
            );
        }
        for body in [
            &br#"{"model":"m","temperature":0,"messages":[]}"#[..],
            br#"{"model":"m","temperature":0.0,"messages":[]}"#,
        ] {
            assert!(CacheKey::of(&config, scope(b"k"), "/v1/messages", body).is_ok());
        }
        let everything = ResponseCacheConfig {
            deterministic_only: false,
            ..config
        };
        assert!(
            CacheKey::of(
                &everything,
                scope(b"k"),
                "/v1/messages",
                br#"{"model":"m"}"#
            )
            .is_ok()
        );
        for body in [&b"not json"[..], b"[1,2]", b"\xff"] {
            assert_eq!(
                CacheKey::of(&everything, scope(b"k"), "/v1/messages", body),
                Err(NotCacheable::NotJson)
            );
        }
    }

    /// A hostile body is refused by the same value bound as the pipeline's parse, not indexed.
    #[test]
    fn a_body_with_too_many_values_is_not_cacheable() {
        let values = vec!["0"; crate::json::DEFAULT_MAX_VALUES + 1].join(",");
        let body = format!(r#"{{"temperature":0,"a":[{values}]}}"#);
        let config = ResponseCacheConfig::default();
        assert_eq!(
            CacheKey::of(&config, scope(b"k"), "/v1/messages", body.as_bytes()),
            Err(NotCacheable::TooLarge)
        );
    }

    #[test]
    fn an_entry_is_found_for_exactly_its_ttl() {
        let config = ResponseCacheConfig::default();
        let key = CacheKey::of(&config, scope(b"k"), "/v1/messages", DETERMINISTIC).unwrap();
        let ttl = 60;
        for stored_at in [0, 1, 59, 60, 61, 119, 120, 1_000_000] {
            let stored = key.store_key(ttl, stored_at);
            let entry = CachedResponse {
                stored_at,
                content_type: "application/json".into(),
                body: b"{}".to_vec(),
            };
            for age in 0..=2 * ttl + 1 {
                let now = stored_at + age;
                let reachable = key.lookup_keys(ttl, now).contains(&stored);
                let served = reachable && entry.fresh(ttl, now);
                assert_eq!(served, age < ttl, "stored {stored_at}, age {age}");
            }
        }
    }

    #[test]
    fn entries_round_trip_and_junk_is_a_miss() {
        let entry = CachedResponse {
            stored_at: 1_700_000_000,
            content_type: "text/event-stream; charset=utf-8".into(),
            body: b"data: {}\n\n".to_vec(),
        };
        assert_eq!(CachedResponse::decode(&entry.encode()), Some(entry.clone()));
        let encoded = entry.encode();
        for cut in 0..14 {
            assert_eq!(CachedResponse::decode(&encoded[..cut]), None);
        }
        assert_eq!(CachedResponse::decode(b"HRC\x02junk"), None);
    }
}
