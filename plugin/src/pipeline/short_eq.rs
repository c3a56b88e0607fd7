//! Equality of short strings (words, keys, values) without a `memcmp` call.
//!
//! Why by hand: in wasm, `==` on slices calls wasi-libc's `memcmp`, a byte-at-a-time loop behind
//! a function call. The JSON selection compares a short word or key for almost every word and
//! member it reads (novelty's seen words, rare values, column keys), and those calls were 2.6 %
//! of `headroom`'s CPU on a cold JSON request (issue 18). Eight bytes at a time, inline, is as
//! fast natively and spares the call in the guest.

/// Whether `a` and `b` hold the same bytes.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut left = a.chunks_exact(8);
    let mut right = b.chunks_exact(8);
    if !(&mut left).zip(&mut right).all(|(x, y)| word(x) == word(y)) {
        return false;
    }
    // The last eight bytes, overlapping the chunks already compared: no byte loop for the tail.
    let tail = a.len() - 8;
    word(a.get(tail..).unwrap_or_default()) == word(b.get(tail..).unwrap_or_default())
}

/// Whether `a` and `b` are the same string.
#[inline]
pub(crate) fn same_str(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Eight bytes as one integer (zero when `bytes` is not eight long, which no caller passes).
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_bytes_is_equality(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            prop_assert_eq!(same_bytes(&a, &b), a == b);
            prop_assert!(same_bytes(&a, &a.clone()));
        }
    }

    #[test]
    fn one_differing_byte_anywhere_is_seen() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                if let Some(byte) = b.get_mut(at) {
                    *byte ^= 0x80;
                }
                assert!(!same_bytes(&a, &b), "len {len}, byte {at}");
            }
        }
    }
}
