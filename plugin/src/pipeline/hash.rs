//! The pipeline's content hashes, 64 bits written as 16 lowercase hex digits.
//!
//! - **The name of a text** ([`ContentHash::of`], [`ContentHash::digest`]): BLAKE3 of the
//!   original, truncated. Markers name omitted originals by it, the
//!   [`OmittedStore`](super::store::OmittedStore) keeps them under it, and every first sight of
//!   an output hashes the whole output for it, so it is on the request's latency path. It was
//!   SHA-256 until issue 18: wasm has no SHA instructions, so SHA-256 ran in software at about
//!   0.3 GB/s in V8 (a third of a millisecond per 100 KB output, and 5 % of `headroom`'s CPU on
//!   a cold JSON request), where BLAKE3 with simd128 runs at 1.6 GB/s. Names sent before keep
//!   working: a stored original stays under the name it was given.
//! - **Keys of several small parts** ([`ContentHash::of_parts`]): SHA-256, each part framed by
//!   its length (the configuration and query fingerprints, the waste key). Unchanged, so the keys
//!   of stored decisions survive an upgrade and their bytes are replayed as they were sent.
//! - **The replay key of an output's raw bytes** ([`ContentHash::blake3_of_parts`]): BLAKE3,
//!   framed the same way, computed by every later turn for every output it resends.
//!
//! Why cryptographic hashes and not a fast non-cryptographic one: the stores are shared by
//! every request of the gateway, so a key must not be forgeable. Truncated to 64 bits, a
//! colliding pair costs about 2^32 work and only between two texts the attacker chose; matching
//! someone else's content (a second preimage) costs 2^64. FNV or xxHash collisions can be
//! constructed at will. 64 bits keep markers short (about 8 tokens).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A content hash: the first 8 bytes of a 32-byte digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 8]);

impl ContentHash {
    /// The name of the text `bytes`: its BLAKE3 [`ContentHash::digest`], truncated.
    pub fn of(bytes: &[u8]) -> ContentHash {
        Self::from_digest(&Self::digest(bytes))
    }

    /// The full BLAKE3 digest of `bytes`, for callers that derive more than one key from one
    /// pass over a large text ([`ContentHash::from_digest`] gives its [`ContentHash`]).
    pub fn digest(bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }

    /// The content hash of the text whose [`ContentHash::digest`] is `digest`.
    pub fn from_digest(digest: &[u8; 32]) -> ContentHash {
        let mut short = [0u8; 8];
        for (out, byte) in short.iter_mut().zip(digest) {
            *out = *byte;
        }
        ContentHash(short)
    }

    /// The SHA-256 key of `parts`, each prefixed by its length when there is more than one (so
    /// part boundaries matter).
    pub fn of_parts(parts: &[&[u8]]) -> ContentHash {
        let mut sha = Sha256::new();
        frame_parts(parts, |bytes| sha.update(bytes));
        Self::from_digest(&sha.finalize().into())
    }

    /// The BLAKE3 hash of `parts`, framed as [`ContentHash::of_parts`] frames them and
    /// truncated the same way: for keys of large texts on the hot path, never for a name that
    /// is sent upstream.
    pub fn blake3_of_parts(parts: &[&[u8]]) -> ContentHash {
        let mut hasher = blake3::Hasher::new();
        frame_parts(parts, |bytes| {
            hasher.update(bytes);
        });
        Self::from_digest(hasher.finalize().as_bytes())
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(self) -> String {
        self.to_string()
    }

    /// Parses 16 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<ContentHash> {
        if text.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ContentHash(out))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Feeds `parts` to `feed`, each prefixed by its length when there is more than one (the
/// framing [`ContentHash::of_parts`] has always used, so its hashes are unchanged).
fn frame_parts(parts: &[&[u8]], mut feed: impl FnMut(&[u8])) {
    for part in parts {
        if parts.len() > 1 {
            feed(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
        }
        feed(part);
    }
}

/// The deployment secret (`marker_secret` in the filter's configuration) that keys the hashes
/// markers carry and the credential scopes of the retrieval store. Without it a marker names
/// the plain content hash, which anyone can compute for a text they guess; with it the name is
/// HMAC-SHA256 of the content's BLAKE3 digest, which only the fleet can. Every replica must be
/// given the same secret, or the same conversation would get different bytes from different
/// replicas. Its `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MarkerKey(Option<Vec<u8>>);

impl fmt::Debug for MarkerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "MarkerKey(<redacted>)"
        } else {
            "MarkerKey(None)"
        })
    }
}

impl MarkerKey {
    /// A key from the configured secret; an empty secret is no key.
    pub fn new(secret: &[u8]) -> MarkerKey {
        MarkerKey((!secret.is_empty()).then(|| secret.to_vec()))
    }

    /// Whether a secret is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The hash of `parts` (framed as [`ContentHash::of_parts`] frames them): keyed with the
    /// secret when there is one, else the plain [`ContentHash::of_parts`].
    pub fn hash_parts(&self, parts: &[&[u8]]) -> ContentHash {
        let Some(secret) = &self.0 else {
            return ContentHash::of_parts(parts);
        };
        match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mut mac) => {
                frame_parts(parts, |bytes| mac.update(bytes));
                ContentHash::from_digest(&mac.finalize().into_bytes().into())
            }
            // HMAC takes keys of any length; kept total rather than trusted.
            Err(_) => ContentHash::of_parts(parts),
        }
    }

    /// The hash a marker names for the original whose [`ContentHash::digest`] is `digest`: the
    /// content hash without a secret, else keyed (`v2`: the digest is BLAKE3's, no longer
    /// SHA-256's).
    pub fn marker_hash(&self, digest: &[u8; 32]) -> ContentHash {
        if self.is_set() {
            self.hash_parts(&[b"headroom-marker-v2", digest])
        } else {
            ContentHash::from_digest(digest)
        }
    }

    /// A name for the key that reveals nothing of it, for the replay fingerprint (a new secret
    /// starts new decisions, since the bytes sent name different hashes); `None` without one.
    pub fn id(&self) -> Option<ContentHash> {
        self.is_set()
            .then(|| self.hash_parts(&[b"headroom-marker-key-id", b""]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn names_are_blake3() {
        // The official BLAKE3 test vectors for the empty input and "abc".
        let digest = |input: &[u8]| hex(&ContentHash::digest(input));
        assert_eq!(
            digest(b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            digest(b"abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(ContentHash::of(b"abc").to_hex(), "6437b3ac38465133");
    }

    #[test]
    fn keys_of_parts_are_sha256() {
        // FIPS 180-2's vectors: a single part is hashed unframed.
        let key = |input: &[u8]| ContentHash::of_parts(&[input]).to_hex();
        assert_eq!(key(b""), "e3b0c44298fc1c14");
        assert_eq!(key(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(
            key(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8"
        );
        assert_eq!(key(&[b'a'; 1_000_000]), "cdc76e5c9914fb92");
    }

    #[test]
    fn blake3_vectors_and_framing() {
        // The official BLAKE3 test vectors for the empty input and "abc".
        assert_eq!(
            ContentHash::blake3_of_parts(&[b""]).to_hex(),
            "af1349b9f5f9a1a6"
        );
        assert_eq!(
            ContentHash::blake3_of_parts(&[b"abc"]).to_hex(),
            "6437b3ac38465133"
        );
        // Parts are framed: moving a boundary changes the key.
        assert_ne!(
            ContentHash::blake3_of_parts(&[b"ab", b"c"]),
            ContentHash::blake3_of_parts(&[b"a", b"bc"])
        );
        assert_ne!(
            ContentHash::blake3_of_parts(&[b"abc"]),
            ContentHash::of_parts(&[b"abc"])
        );
    }

    #[test]
    fn content_hash_is_short_and_round_trips() {
        let hash = ContentHash::of(b"abc");
        assert_eq!(hash.to_hex(), "6437b3ac38465133");
        assert_eq!(ContentHash::from_hex("6437B3AC38465133"), Some(hash));
        assert_eq!(ContentHash::from_hex("ba78"), None);
        assert_ne!(
            ContentHash::of_parts(&[b"ab", b"c"]),
            ContentHash::of_parts(&[b"a", b"bc"])
        );
    }
}
