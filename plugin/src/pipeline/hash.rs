//! The one content hash of the pipeline: SHA-256 of the original bytes, truncated to 64 bits
//! and written as 16 lowercase hex digits. It names omitted originals in markers and in the
//! [`OmittedStore`](super::store::OmittedStore), and keys the replay map.
//!
//! Why SHA-256 and not a fast non-cryptographic hash: the stores are shared by every request
//! of the gateway, so a key must not be forgeable. With SHA-256 a colliding pair costs about
//! 2^32 work even truncated, but can only be made between two texts the attacker chose;
//! matching someone else's content (a second preimage) costs 2^64. FNV or xxHash collisions
//! can be constructed at will. 64 bits keep markers short (about 8 tokens).
//!
//! One key is BLAKE3 instead ([`ContentHash::blake3_of_parts`]): the replay key of a tool
//! output's raw bytes, which every later turn computes for every output it resends. BLAKE3 is as
//! hard to forge as SHA-256 and 5× faster in wasm (1.6 GB/s against 0.3 GB/s in V8 with
//! simd128); markers keep SHA-256 because their names are part of the bytes sent upstream.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A content hash: the first 8 bytes of SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 8]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        Self::of_parts(&[bytes])
    }

    /// The full SHA-256 digest of `bytes`, for callers that derive more than one key from one
    /// pass over a large text ([`ContentHash::from_digest`] gives its [`ContentHash`]).
    pub fn digest(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// The content hash of the text whose [`ContentHash::digest`] is `digest`.
    pub fn from_digest(digest: &[u8; 32]) -> ContentHash {
        let mut short = [0u8; 8];
        for (out, byte) in short.iter_mut().zip(digest) {
            *out = *byte;
        }
        ContentHash(short)
    }

    /// The hash of the concatenation of `parts` (each prefixed by its length, so part
    /// boundaries matter).
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
/// HMAC-SHA256 of the content's digest, which only the fleet can. Every replica must be given
/// the same secret, or the same conversation would get different bytes from different
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

    /// The hash a marker names for the original whose SHA-256 is `digest`: the content hash
    /// without a secret (the bytes every earlier version sent), else keyed.
    pub fn marker_hash(&self, digest: &[u8; 32]) -> ContentHash {
        if self.is_set() {
            self.hash_parts(&[b"headroom-marker-v1", digest])
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
    fn sha256_vectors() {
        let digest = |input: &[u8]| hex(&ContentHash::digest(input));
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            digest(&[b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
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
        assert_eq!(hash.to_hex(), "ba7816bf8f01cfea");
        assert_eq!(ContentHash::from_hex("BA7816BF8F01CFEA"), Some(hash));
        assert_eq!(ContentHash::from_hex("ba78"), None);
        assert_ne!(
            ContentHash::of_parts(&[b"ab", b"c"]),
            ContentHash::of_parts(&[b"a", b"bc"])
        );
    }
}
