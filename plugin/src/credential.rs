//! Whose request is this: the provider credential a request carries, reduced to a scope that
//! keys what Headroom keeps for it (the originals a retrieval may read). The credential itself
//! is never stored: only a hash of it, keyed with the deployment's marker secret when one is
//! configured, so a stored scope cannot be checked against guessed keys without the secret.

use crate::pipeline::{ContentHash, MarkerKey, OmittedStore};

/// The request headers that carry a provider credential: OpenAI and most gateways use
/// `Authorization`, Anthropic `x-api-key`, Azure OpenAI `api-key`. All present ones count, in
/// this order, so two requests share a scope only when they present the same values.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// A hash of the [`CREDENTIAL_HEADERS`] values `values` (same order; `None` where absent) for
/// the use named by `tag`, keyed with `key`: the one way a credential is identified without
/// being kept (retrieval scopes, budget key ids).
pub fn hash_credentials(key: &MarkerKey, tag: &[u8], values: [Option<&[u8]>; 3]) -> ContentHash {
    let mut parts: Vec<&[u8]> = vec![tag];
    for value in values {
        match value {
            // A presence byte keeps "absent" apart from "present and empty".
            Some(value) => parts.extend_from_slice(&[b"1", value]),
            None => parts.push(b"0"),
        }
    }
    key.hash_parts(&parts)
}

/// The scope of one credential (or of requests that carried none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    hash: ContentHash,
    /// Whether the request carried any credential.
    pub credentialed: bool,
}

impl Scope {
    /// The scope of a request whose [`CREDENTIAL_HEADERS`] have the values `values` (same
    /// order; `None` where absent). Values are compared as bytes, exactly as sent.
    pub fn of(key: &MarkerKey, values: [Option<&[u8]>; 3]) -> Scope {
        Scope {
            hash: hash_credentials(key, b"headroom-credential-v1", values),
            credentialed: values.iter().any(Option::is_some),
        }
    }

    /// A hash of `parts` within this scope: equal only for the same credential and parts.
    pub fn keyed(self, parts: &[&[u8]]) -> ContentHash {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&self.hash.0);
        all.extend_from_slice(parts);
        ContentHash::of_parts(&all)
    }

    /// The key under which the original a marker names as `hash` is stored for this scope.
    pub fn store_key(self, hash: ContentHash) -> ContentHash {
        ContentHash::of_parts(&[b"headroom-omitted-v1", &self.hash.0, &hash.0])
    }
}

/// An omitted-originals store seen through one [`Scope`]: the pipeline puts and gets by
/// marker hash, the entries live under [`Scope::store_key`], so a retrieval under another
/// credential finds nothing, exactly as if nothing had been stored.
#[derive(Debug, Clone)]
pub struct ScopedStore<S> {
    /// The store every scope shares.
    pub store: S,
    /// The scope of the request at hand.
    pub scope: Scope,
}

impl<S: OmittedStore> OmittedStore for ScopedStore<S> {
    fn put(&mut self, hash: ContentHash, original: &[u8]) {
        self.store.put(self.scope.store_key(hash), original);
    }

    fn get(&self, hash: ContentHash) -> Option<Vec<u8>> {
        self.store.get(self.scope.store_key(hash))
    }

    fn contains(&self, hash: ContentHash) -> bool {
        self.store.contains(self.scope.store_key(hash))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_credential_same_scope_only() {
        let key = MarkerKey::default();
        let a = Scope::of(&key, [Some(b"Bearer sk-a"), None, None]);
        assert_eq!(a, Scope::of(&key, [Some(b"Bearer sk-a"), None, None]));
        assert!(a.credentialed);
        for other in [
            [Some(&b"Bearer sk-b"[..]), None, None],
            [None, Some(b"Bearer sk-a"), None],
            [Some(b"Bearer sk-a"), Some(b""), None],
            [Some(b"bearer sk-a"), None, None],
        ] {
            assert_ne!(
                a.store_key(ContentHash::of(b"x")),
                Scope::of(&key, other).store_key(ContentHash::of(b"x"))
            );
        }
        let none = Scope::of(&key, [None, None, None]);
        assert!(!none.credentialed);
        assert_ne!(none, a);
    }

    #[test]
    fn a_scoped_store_answers_its_own_scope_only() {
        let key = MarkerKey::default();
        let mine = Scope::of(&key, [Some(b"Bearer sk-a"), None, None]);
        let theirs = Scope::of(&key, [Some(b"Bearer sk-b"), None, None]);
        let mut store = ScopedStore {
            store: crate::pipeline::store::MemoryStore::new(1 << 20),
            scope: mine,
        };
        let hash = ContentHash::of(b"original");
        store.put(hash, b"original");
        assert_eq!(store.get(hash).as_deref(), Some(&b"original"[..]));
        let other = ScopedStore {
            store: store.store.clone(),
            scope: theirs,
        };
        assert_eq!(other.get(hash), None);
        assert_eq!(OmittedStore::get(&store.store, hash), None);
    }

    #[test]
    fn the_secret_changes_every_scope() {
        let values = [None, Some(&b"sk-ant-1"[..]), None];
        let plain = Scope::of(&MarkerKey::default(), values);
        let keyed = Scope::of(&MarkerKey::new(b"fleet secret"), values);
        assert_ne!(plain, keyed);
        assert_eq!(keyed, Scope::of(&MarkerKey::new(b"fleet secret"), values));
        assert_ne!(keyed, Scope::of(&MarkerKey::new(b"other secret"), values));
    }
}
