//! The one content hash of the pipeline: SHA-256 of the original bytes, truncated to 64 bits
//! and written as 16 lowercase hex digits. It names omitted originals in markers and in the
//! [`OmittedStore`](super::store::OmittedStore), and keys the replay map.
//!
//! Why SHA-256 and not a fast non-cryptographic hash: the stores are shared by every request
//! of the gateway, so a key must not be forgeable. With SHA-256 a colliding pair costs about
//! 2^32 work even truncated, but can only be made between two texts the attacker chose;
//! matching someone else's content (a second preimage) costs 2^64. FNV or xxHash collisions
//! can be constructed at will. 64 bits keep markers short (about 8 tokens).

use std::fmt;

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
        let mut sha = Sha256::new();
        sha.update(bytes);
        sha.finish()
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
        for part in parts {
            if parts.len() > 1 {
                sha.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
            }
            sha.update(part);
        }
        let digest = sha.finish();
        let mut short = [0u8; 8];
        for (out, byte) in short.iter_mut().zip(digest) {
            *out = byte;
        }
        ContentHash(short)
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

/// SHA-256 (FIPS 180-4), streaming.
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    length: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A fresh hasher.
    pub fn new() -> Sha256 {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.length = self
            .length
            .wrapping_add(u64::try_from(bytes.len()).unwrap_or(0));
        let mut bytes = bytes;
        // Whole blocks go straight to the compression function.
        if self.filled == 0 && bytes.len() >= 64 {
            let (blocks, rest) = bytes.split_at(bytes.len() / 64 * 64);
            self.compress_blocks(blocks);
            bytes = rest;
        }
        for &byte in bytes {
            if let Some(slot) = self.block.get_mut(self.filled) {
                *slot = byte;
            }
            self.filled += 1;
            if self.filled == 64 {
                self.compress();
                self.filled = 0;
            }
        }
    }

    /// The 32-byte digest.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        self.update_padding(0x80);
        while self.filled != 56 {
            self.update_padding(0);
        }
        for byte in bits.to_be_bytes() {
            self.update_padding(byte);
        }
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn update_padding(&mut self, byte: u8) {
        let length = self.length;
        self.update(&[byte]);
        self.length = length;
    }

    /// Compresses whole 64-byte blocks: with the CPU's SHA instructions when it has them
    /// (x86-64 SHA-NI), otherwise in portable code (always on wasm32).
    fn compress_blocks(&mut self, blocks: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if shani::available() {
            shani::compress(&mut self.state, blocks);
            return;
        }
        for block in blocks.chunks_exact(64) {
            self.block.copy_from_slice(block);
            self.compress();
        }
    }

    fn compress(&mut self) {
        let mut w = [0u32; 64];
        for (word, chunk) in w.iter_mut().zip(self.block.chunks_exact(4)) {
            *word = u32::from_be_bytes([
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
                chunk.get(3).copied().unwrap_or(0),
            ]);
        }
        for i in 16..64 {
            let at = |j: usize| w.get(j).copied().unwrap_or(0);
            let s0 = at(i - 15).rotate_right(7) ^ at(i - 15).rotate_right(18) ^ (at(i - 15) >> 3);
            let s1 = at(i - 2).rotate_right(17) ^ at(i - 2).rotate_right(19) ^ (at(i - 2) >> 10);
            let value = at(i - 16)
                .wrapping_add(s0)
                .wrapping_add(at(i - 7))
                .wrapping_add(s1);
            if let Some(slot) = w.get_mut(i) {
                *slot = value;
            }
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for (k, wi) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, value) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *state = state.wrapping_add(value);
        }
    }
}

/// SHA-256 with the x86-64 SHA extensions (Intel SHA-NI, also on AMD Zen): the same function,
/// about ten times faster than the portable rounds.
#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    /// Whether this CPU has the instructions [`compress`] uses (detected once, then cached by
    /// the standard library).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }

    /// Compresses the whole 64-byte blocks of `blocks` into `state`. Call only when
    /// [`available`] says so.
    pub(super) fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        if !available() {
            return;
        }
        // SAFETY: the CPU has every feature `compress_blocks` is compiled for (checked above).
        unsafe { compress_blocks(state, blocks) }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_blocks(state: &mut [u32; 8], blocks: &[u8]) {
        let word = |i: usize| super::K.get(i).copied().unwrap_or(0) as i32;
        let k: [__m128i; 16] = std::array::from_fn(|g| {
            _mm_set_epi32(
                word(4 * g + 3),
                word(4 * g + 2),
                word(4 * g + 1),
                word(4 * g),
            )
        });
        let byte_swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let [a, b, c, d, e, f, g, h] = state.map(|w| w as i32);
        // The instructions keep the state as ABEF and CDGH.
        let mut abef = _mm_set_epi32(a, b, e, f);
        let mut cdgh = _mm_set_epi32(c, d, g, h);
        for block in blocks.chunks_exact(64) {
            let (abef_before, cdgh_before) = (abef, cdgh);
            let load = |i: usize| {
                let half = |at: usize| {
                    block
                        .get(16 * i + at..16 * i + at + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(0, i64::from_le_bytes)
                };
                _mm_shuffle_epi8(_mm_set_epi64x(half(8), half(0)), byte_swap)
            };
            // The message schedule, four words per register: the last four groups, oldest
            // first.
            let [mut w0, mut w1, mut w2, mut w3] = [load(0), load(1), load(2), load(3)];
            for (group, k) in k.iter().enumerate() {
                let current = match group {
                    0 => w0,
                    1 => w1,
                    2 => w2,
                    3 => w3,
                    _ => {
                        let t = _mm_sha256msg1_epu32(w0, w1);
                        let t = _mm_add_epi32(t, _mm_alignr_epi8(w3, w2, 4));
                        let next = _mm_sha256msg2_epu32(t, w3);
                        [w0, w1, w2, w3] = [w1, w2, w3, next];
                        next
                    }
                };
                let wk = _mm_add_epi32(current, *k);
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0e));
            }
            abef = _mm_add_epi32(abef, abef_before);
            cdgh = _mm_add_epi32(cdgh, cdgh_before);
        }
        let mut out = [0i32; 8];
        for (i, slot) in out.iter_mut().enumerate() {
            let (v, lane) = match i {
                0 => (abef, 3),
                1 => (abef, 2),
                4 => (abef, 1),
                5 => (abef, 0),
                2 => (cdgh, 3),
                3 => (cdgh, 2),
                6 => (cdgh, 1),
                _ => (cdgh, 0),
            };
            let lanes: [i32; 4] = [
                _mm_cvtsi128_si32(v),
                _mm_extract_epi32(v, 1),
                _mm_extract_epi32(v, 2),
                _mm_extract_epi32(v, 3),
            ];
            *slot = lanes.get(lane).copied().unwrap_or(0);
        }
        *state = out.map(|w| w as u32);
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
        let digest = |input: &[u8]| {
            let mut sha = Sha256::new();
            sha.update(input);
            hex(&sha.finish())
        };
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

    /// The SHA-NI path (when this CPU has it) and the portable rounds agree on every length.
    #[test]
    fn accelerated_and_portable_rounds_agree() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..700).chain([4095, 4096, 4097, 5000]) {
            let input = &data[..len];
            let mut fast = Sha256::new();
            fast.update(input);
            let mut portable = Sha256::new();
            for block in input.chunks(64) {
                if block.len() == 64 {
                    portable.block.copy_from_slice(block);
                    portable.compress();
                    portable.length += 64;
                } else {
                    portable.update(block);
                }
            }
            assert_eq!(hex(&fast.finish()), hex(&portable.finish()), "{len}");
        }
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
