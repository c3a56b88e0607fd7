//! How many items a lossy selection keeps: between a floor and a ceiling, growing with how
//! much new information the items carry, times the bias (1.0 neutral; upstream's live-zone path
//! passed 0.0 and collapsed every selection to its floor, bug B1).

use super::fixed_hash::FixedSet;

use super::relevance::for_each_word;

/// The fraction of items (0..=1) that bring at least one word not seen in earlier items.
/// Digits are masked first, so ids, counters and timestamps do not count as new information.
pub fn novelty<S: AsRef<str>>(items: &[S]) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    // Which words were seen is all that matters (not their order), so a hash set with a fixed
    // hasher keeps this deterministic.
    let mut seen: FixedSet<String> = FixedSet::default();
    let mut buf = String::new();
    let mut masked = String::new();
    let mut novel = 0usize;
    for item in items {
        let mut brought = false;
        for_each_word(item.as_ref(), &mut buf, |word| {
            let word = if word.bytes().any(|b| b.is_ascii_digit()) {
                masked.clear();
                masked.extend(
                    word.chars()
                        .map(|c| if c.is_ascii_digit() { '0' } else { c }),
                );
                masked.as_str()
            } else {
                word
            };
            if !seen.contains(word) {
                seen.insert(word.to_owned());
                brought = true;
            }
        });
        if brought {
            novel += 1;
        }
    }
    novel as f64 / items.len() as f64
}

/// The number of items to keep out of `n`: `bias × (min_k + novelty × (max_k − min_k))`,
/// rounded, at least `min_k`, at most `n`.
pub fn keep_count(n: usize, novelty: f64, bias: f64, min_k: usize, max_k: usize) -> usize {
    let max_k = max_k.max(min_k);
    let span = (max_k - min_k) as f64;
    let base = min_k as f64 + novelty.clamp(0.0, 1.0) * span;
    let k = (base * bias).round();
    let k = if k.is_finite() && k > 0.0 {
        k as usize
    } else {
        min_k
    };
    k.max(min_k).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_bias_scales_with_novelty() {
        let same: Vec<String> = (0..50).map(|i| format!("request {i} ok")).collect();
        let varied: Vec<String> = (0..50)
            .map(|i| format!("word{} other{}", (b'a' + (i % 26) as u8) as char, i))
            .collect();
        assert!(novelty(&same) < 0.05);
        assert!(novelty(&varied) > 0.4);
        assert_eq!(keep_count(50, 0.0, 1.0, 3, 15), 3);
        assert_eq!(keep_count(50, 1.0, 1.0, 3, 15), 15);
        assert_eq!(keep_count(50, 1.0, 1.5, 3, 15), 23);
        assert_eq!(keep_count(2, 1.0, 1.0, 3, 15), 2);
        // Bias 0 would collapse to the floor; it is never the neutral value.
        assert_eq!(keep_count(50, 1.0, 0.0, 3, 15), 3);
    }
}
