//! The response cache's part of an exchange: answering a request from it, deciding whether
//! a response may be kept, and storing it.

use log::debug;

use super::{LocalReply, Shared};
use crate::api::Api;
use crate::credential::Scope;
use crate::metrics::Counter;
use crate::response_cache::{CacheKey, CachedResponse, HIT_HEADER};

/// What the response cache makes of a request.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Off, or the request is not cacheable.
    Uncacheable,
    /// Cacheable, not held: the key to store its response under.
    Miss(CacheKey),
    /// A fresh answer.
    Hit(LocalReply),
}

/// Looks the request up in the response cache (counted as a hit or a miss).
pub(crate) fn lookup(shared: &Shared, scope: Scope, api: Api, body: &[u8]) -> Lookup {
    let (Some(config), Some(store)) = (
        shared.config.response_cache.as_ref(),
        shared.responses.as_ref(),
    ) else {
        return Lookup::Uncacheable;
    };
    let key = match CacheKey::of(config, scope, api.path(), body) {
        Ok(key) => key,
        Err(reason) => {
            debug!("headroom: response not cacheable ({reason:?})");
            return Lookup::Uncacheable;
        }
    };
    let Some(now) = shared.host.unix_now() else {
        return Lookup::Uncacheable;
    };
    let ttl = config.ttl_seconds;
    let hit = key
        .lookup_keys(ttl, now)
        .into_iter()
        .filter_map(|at| store.read(at))
        .filter_map(|bytes| CachedResponse::decode(&bytes))
        .find(|entry| entry.fresh(ttl, now));
    let Some(hit) = hit else {
        shared.host.inc(Counter::ResponseCacheMisses);
        return Lookup::Miss(key);
    };
    shared.host.inc(Counter::ResponseCacheHits);
    shared.host.inc(Counter::RequestsCached);
    let age = now.saturating_sub(hit.stored_at).to_string();
    Lookup::Hit(LocalReply {
        status: 200,
        headers: vec![
            ("content-type".to_owned(), hit.content_type),
            (HIT_HEADER.to_owned(), "hit".to_owned()),
            ("age".to_owned(), age),
        ],
        body: hit.body,
        what: "response cache hit",
    })
}

/// The most bytes of a response that may be kept for the cache: a 200 the client receives
/// unencoded whose declared length (if any) fits; `None`: do not keep it.
pub(crate) fn capture_limit(
    shared: &Shared,
    status: Option<u32>,
    encoded: bool,
    declared_length: Option<usize>,
) -> Option<usize> {
    let config = shared.config.response_cache.as_ref()?;
    if status != Some(200) || encoded {
        return None;
    }
    let max = usize::try_from(config.max_entry_bytes).unwrap_or(usize::MAX);
    if declared_length.is_some_and(|len| len > max) {
        return None;
    }
    Some(max)
}

/// A response on its way into the response cache, as the client receives it.
#[derive(Debug)]
pub(crate) struct Capture {
    /// Its `content-type`.
    content_type: String,
    /// The bytes forwarded so far.
    body: Vec<u8>,
    /// The most it may hold; beyond, nothing is kept.
    max: usize,
    /// Set once the response outgrew `max`.
    too_large: bool,
}

impl Capture {
    /// An empty capture of a response of `content_type`, kept up to `max` bytes.
    pub(crate) fn new(content_type: String, max: usize) -> Self {
        Self {
            content_type,
            body: Vec::new(),
            max,
            too_large: false,
        }
    }

    /// Appends forwarded bytes, giving up past the limit.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.too_large || self.body.len().saturating_add(bytes.len()) > self.max {
            self.too_large = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }
}

/// Stores a response that ended whole under `key` (nothing when it outgrew its limit).
pub(crate) fn store(shared: &Shared, key: &CacheKey, capture: Capture) {
    let Capture {
        content_type,
        body,
        too_large,
        ..
    } = capture;
    if too_large {
        return;
    }
    let (Some(config), Some(store), Some(now)) = (
        shared.config.response_cache.as_ref(),
        shared.responses.as_ref(),
        shared.host.unix_now(),
    ) else {
        return;
    };
    if body.is_empty() {
        return;
    }
    let entry = CachedResponse {
        stored_at: now,
        content_type,
        body,
    };
    store.write(key.store_key(config.ttl_seconds, now), &entry.encode());
    shared.host.inc(Counter::ResponseCacheStores);
}
