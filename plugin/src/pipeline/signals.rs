//! The signals that say which items of a collection matter, shared by the JSON, log and
//! search compressors: error words, statistical outliers, rare values. Lossy selection is only
//! allowed when at least one signal fires (otherwise nothing says which items to keep).

use super::short_eq::same_str;

/// Words that mark an item as an error (matched as whole lowercase words).
pub const ERROR_WORDS: [&str; 16] = [
    "error",
    "errors",
    "exception",
    "failed",
    "failure",
    "fatal",
    "critical",
    "panic",
    "panicked",
    "crash",
    "crashed",
    "abort",
    "aborted",
    "timeout",
    "denied",
    "rejected",
];

/// Whether `text` contains an error word (ASCII case-insensitive, whole words: runs of
/// alphanumeric characters, as `text.split(|c: char| !c.is_alphanumeric())` gives them).
///
/// Found as [`has_severity_root`] finds roots, not by splitting `text` into words (this runs
/// on every string of every array item): every error word is five or more ASCII letters, so
/// where the fifth byte from here is no letter, none starts at any of these five bytes and the
/// walk moves on by five. Elsewhere this byte picks the words that can start with it, and one
/// that matches counts when the characters on both sides of it are not alphanumeric.
pub fn has_error_word(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0usize;
    while let Some(&fifth) = bytes.get(at.saturating_add(4)) {
        if !fifth.is_ascii_alphabetic() {
            at += 5;
            continue;
        }
        let rest = bytes.get(at..).unwrap_or_default();
        if no_word_char_before(text, at)
            && any_starting_with(&ERROR_WORDS, &ERROR_WORDS_BY_FIRST, rest, |word| {
                rest.get(..word.len())
                    .is_some_and(|part| part.eq_ignore_ascii_case(word.as_bytes()))
                    && no_word_char_at(text, at + word.len())
            })
        {
            return true;
        }
        at += 1;
    }
    false
}

/// Whether no alphanumeric character ends at byte `at` of `text` (a character boundary:
/// [`has_error_word`] passes the start of an ASCII letter).
fn no_word_char_before(text: &str, at: usize) -> bool {
    match at.checked_sub(1).and_then(|i| text.as_bytes().get(i)) {
        None => true,
        Some(b) if b.is_ascii() => !b.is_ascii_alphanumeric(),
        Some(_) => text
            .get(..at)
            .and_then(|before| before.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric()),
    }
}

/// Whether no alphanumeric character starts at byte `at` of `text` (a character boundary:
/// [`has_error_word`] passes the end of an ASCII word).
fn no_word_char_at(text: &str, at: usize) -> bool {
    match text.as_bytes().get(at) {
        None => true,
        Some(b) if b.is_ascii() => !b.is_ascii_alphanumeric(),
        Some(_) => text
            .get(at..)
            .and_then(|after| after.chars().next())
            .is_none_or(|c| !c.is_alphanumeric()),
    }
}

/// [`by_first_byte`] of [`ERROR_WORDS`].
const ERROR_WORDS_BY_FIRST: [u16; 256] = by_first_byte(&ERROR_WORDS);

/// The pieces of `text` between ASCII characters other than letters and digits, split on
/// bytes: an ASCII byte is never part of a longer UTF-8 sequence, so this is the same split as
/// by characters without decoding each one.
fn ascii_separated(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0usize;
    text.as_bytes()
        .split(|b| b.is_ascii() && !b.is_ascii_alphanumeric())
        .map(move |chunk| {
            let piece = text.get(start..start + chunk.len()).unwrap_or_default();
            start += chunk.len() + 1;
            piece
        })
}

/// Roots of severity words, found inside words whatever their case: `failure`, `Failed`,
/// `JSchException`, `errorCode`, `WARNING`, `timeout`. Broader than [`ERROR_WORDS`]: a log or
/// build line holding one is never reduced to a count alone (one line per template stays).
pub const SEVERITY_ROOTS: [&str; 13] = [
    "error",
    "exception",
    "fail",
    "fatal",
    "panic",
    "critical",
    "severe",
    "warn",
    "denied",
    "refused",
    "timeout",
    "abort",
    "crash",
];

/// Whether `text` holds a severity root inside one of its words (letters and digits, at least
/// four characters). ASCII case-insensitive, no allocation.
///
/// The words need not be split out: a root is four or more ASCII letters, and letters are
/// never separators, so a root found anywhere in `text` lies inside one word of at least four
/// characters (the property test below checks this against the word split).
pub fn has_severity_root(text: &str) -> bool {
    holds_severity_root(text.as_bytes())
}

/// [`by_first_byte`] of [`SEVERITY_ROOTS`].
const SEVERITY_ROOTS_BY_FIRST: [u16; 256] = by_first_byte(&SEVERITY_ROOTS);

const _: () = assert!(ERROR_WORDS.len() <= 16 && SEVERITY_ROOTS.len() <= 16);

// [`has_error_word`] relies on every error word being five or more lowercase ASCII letters,
// [`has_severity_root`] on every root being four or more.
const _: () = assert!(lowercase_letters_at_least(&ERROR_WORDS, 5));
const _: () = assert!(lowercase_letters_at_least(&SEVERITY_ROOTS, 4));

/// Whether every one of `words` is at least `min` lowercase ASCII letters, for the
/// compile-time checks above.
// Indexing in a constant: evaluation fails the build, not a request.
#[allow(clippy::indexing_slicing)]
const fn lowercase_letters_at_least(words: &[&str], min: usize) -> bool {
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_bytes();
        if word.len() < min {
            return false;
        }
        let mut j = 0;
        while j < word.len() {
            if !word[j].is_ascii_lowercase() {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// For each byte, the words of `words` (bit `i` for word `i`; at most 16) that start with it
/// in either case, built at compile time: a byte then picks its few candidates with one
/// lookup instead of a comparison with every word (these tests run on every word of every
/// line and item).
// Indexing in a constant: a byte indexes 256 entries, and evaluation fails the build, not a
// request, if it ever could not.
#[allow(clippy::indexing_slicing)]
const fn by_first_byte(words: &[&str]) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < words.len() && i < 16 {
        if let Some(&first) = words[i].as_bytes().first() {
            table[first.to_ascii_lowercase() as usize] |= 1u16 << i;
            table[first.to_ascii_uppercase() as usize] |= 1u16 << i;
        }
        i += 1;
    }
    table
}

/// Whether `test` holds for one of the `words` that `rest` starts with in either case by its
/// first byte (`table` is `by_first_byte(words)`).
fn any_starting_with(
    words: &[&str],
    table: &[u16; 256],
    rest: &[u8],
    test: impl Fn(&str) -> bool,
) -> bool {
    let mut candidates = rest
        .first()
        .and_then(|&b| table.get(usize::from(b)))
        .copied()
        .unwrap_or(0);
    while candidates != 0 {
        let i = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        if words.get(i).is_some_and(|word| test(word)) {
            return true;
        }
    }
    false
}

/// Bit 5 of every byte: set in a lowercase letter, so `byte | 0x20` equals a lowercase letter
/// exactly when `byte` is that letter in either case.
const CASE_BITS: u32 = 0x2020_2020;

/// Whether a severity root starts at some byte of `bytes`, ASCII case-insensitively (this runs
/// on every line of every log). Every root is four or more letters, so:
/// - where the fourth byte from here is no letter, no root starts at any of these four bytes:
///   the walk moves on by four;
/// - elsewhere this byte picks the roots that can start with it ([`any_starting_with`]), and
///   each is compared on its first four bytes at once, case folded, before the rest.
fn holds_severity_root(bytes: &[u8]) -> bool {
    let mut at = 0usize;
    while let Some(&[first, second, third, fourth]) = bytes.get(at..at.saturating_add(4)) {
        if !fourth.is_ascii_alphabetic() {
            at += 4;
            continue;
        }
        let head = u32::from_le_bytes([first, second, third, fourth]) | CASE_BITS;
        let rest = bytes.get(at..).unwrap_or_default();
        if any_starting_with(&SEVERITY_ROOTS, &SEVERITY_ROOTS_BY_FIRST, rest, |root| {
            let root = root.as_bytes();
            root.get(..4)
                .and_then(|h| <[u8; 4]>::try_from(h).ok())
                .is_some_and(|h| u32::from_le_bytes(h) == head)
                && rest
                    .get(..root.len())
                    .is_some_and(|part| part.eq_ignore_ascii_case(root))
        }) {
            return true;
        }
        at += 1;
    }
    false
}

/// Number of distinct error words in `text`, counting only the roots upstream uses to spot
/// error outputs (error, fail, exception, traceback, fatal, panic, crash).
pub fn distinct_error_roots(text: &str) -> usize {
    const ROOTS: [&str; 7] = [
        "error",
        "fail",
        "exception",
        "traceback",
        "fatal",
        "panic",
        "crash",
    ];
    let mut seen = [false; 7];
    let mark = |seen: &mut [bool; 7], word: &str| {
        let bytes = word.as_bytes();
        for (i, &first) in bytes.iter().enumerate() {
            if !matches!(first, b'e' | b'f' | b't' | b'p' | b'c') {
                continue;
            }
            let rest = bytes.get(i..).unwrap_or_default();
            for (slot, root) in seen.iter_mut().zip(ROOTS) {
                if !*slot && rest.starts_with(root.as_bytes()) {
                    *slot = true;
                }
            }
        }
    };
    // ASCII characters other than letters and digits separate words before and after
    // lowercasing, so the text is taken chunk by chunk between them: an ASCII chunk is one
    // word (lowercased in place), anything else goes through Unicode lowercasing as a whole.
    let mut buf = String::new();
    for chunk in ascii_separated(text) {
        if chunk.len() < 4 {
            // Every root has four ASCII letters or more, each lowercased from a byte or more.
            continue;
        }
        if chunk.is_ascii() {
            buf.clear();
            buf.push_str(chunk);
            buf.make_ascii_lowercase();
            mark(&mut seen, &buf);
        } else {
            let lower = chunk.to_lowercase();
            for word in lower.split(|c: char| !c.is_alphanumeric()) {
                mark(&mut seen, word);
            }
        }
        if seen.iter().all(|s| *s) {
            break;
        }
    }
    seen.iter().filter(|s| **s).count()
}

/// Indices of numeric outliers among `values` (`None` = not a number for that item), by the
/// modified z-score (|0.6745·(x − median) / MAD| > 3.5), robust to the outliers themselves.
/// When most values are equal (MAD 0), the few that differ (at most a tenth) are outliers.
/// Monotonic series (ids, timestamps) have no outliers.
pub fn numeric_outliers(values: &[Option<f64>]) -> Vec<usize> {
    let present: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x)))
        .collect();
    if present.len() < 5 {
        return Vec::new();
    }
    let increasing = present.windows(2).all(|w| matches!(w, [a, b] if a.1 < b.1));
    let decreasing = present.windows(2).all(|w| matches!(w, [a, b] if a.1 > b.1));
    if increasing || decreasing {
        return Vec::new();
    }
    let mut sorted: Vec<f64> = present.iter().map(|(_, x)| *x).collect();
    sorted.sort_by(f64::total_cmp);
    let median = median_of_sorted(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median_of_sorted(&deviations);
    if mad > 0.0 {
        present
            .iter()
            .filter(|(_, x)| (0.6745 * (x - median) / mad).abs() > 3.5)
            .map(|(i, _)| *i)
            .collect()
    } else {
        let differing: Vec<usize> = present
            .iter()
            .filter(|(_, x)| *x != median)
            .map(|(i, _)| *i)
            .collect();
        if differing.len() * 10 <= present.len() {
            differing
        } else {
            Vec::new()
        }
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let at = |i: usize| sorted.get(i).copied().unwrap_or(0.0);
    if n % 2 == 1 {
        at(mid)
    } else {
        (at(mid - 1) + at(mid)) / 2.0
    }
}

/// Indices of items whose categorical value is rare: among `values` (`None` = absent), when a
/// dominant value covers at least half of the items and there are at most 12 distinct values,
/// items whose value occurs in at most a tenth of the items (at least once allowed).
pub fn rare_values<'v>(values: impl IntoIterator<Item = Option<&'v str>>) -> Vec<usize> {
    rare_values_by(values, same_str)
}

/// Indices of items whose value's template is rare, as [`rare_values`] says of values. A
/// value's template is the value with every run of ASCII digits made one `#`: values that
/// differ only in their numbers (`ping 7`, `ping 12`) share one.
pub fn rare_templates<'v>(values: impl IntoIterator<Item = Option<&'v str>>) -> Vec<usize> {
    rare_values_by(values, same_template)
}

/// [`rare_values`] with `same` saying which values count as one.
///
/// The values come one at a time and the walk stops at a thirteenth distinct one: most columns
/// of a tool output (ids, names, timestamps) are distinct from their first rows on, so their
/// remaining values are never compared.
fn rare_values_by<'v>(
    values: impl IntoIterator<Item = Option<&'v str>>,
    same: impl Fn(&str, &str) -> bool,
) -> Vec<usize> {
    // At most 12 entries: a linear search is cheaper than any map.
    let mut distinct: Vec<(&'v str, usize)> = Vec::new();
    let mut of_item: Vec<Option<usize>> = Vec::new();
    for value in values {
        let id = match value {
            None => None,
            Some(value) => match distinct.iter().position(|(d, _)| same(d, value)) {
                Some(at) => {
                    if let Some((_, count)) = distinct.get_mut(at) {
                        *count += 1;
                    }
                    Some(at)
                }
                None if distinct.len() == 12 => return Vec::new(),
                None => {
                    distinct.push((value, 1));
                    Some(distinct.len() - 1)
                }
            },
        };
        of_item.push(id);
    }
    let total: usize = distinct.iter().map(|(_, count)| count).sum();
    let top = distinct.iter().map(|(_, count)| *count).max().unwrap_or(0);
    if distinct.len() < 2 || total < 5 || top * 2 < total {
        return Vec::new();
    }
    let rare_limit = (total / 10).max(1);
    of_item
        .iter()
        .enumerate()
        .filter(|(_, id)| {
            id.and_then(|id| distinct.get(id))
                .is_some_and(|&(_, c)| c <= rare_limit && c < top)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Whether `a` and `b` have the same template ([`rare_templates`]), compared byte by byte as
/// both are read, without making either (a column's values are compared with at most 12
/// others; making each template cost an allocation and a pass per value).
pub fn same_template(a: &str, b: &str) -> bool {
    same_str(a, b) || template_bytes(a.as_bytes()).eq(template_bytes(b.as_bytes()))
}

/// The bytes of a template: `#` for each run of ASCII digits, any other byte as it is (an
/// ASCII digit is never part of a longer UTF-8 sequence, so characters are kept whole).
fn template_bytes(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let &byte = bytes.get(at)?;
        at += 1;
        if byte.is_ascii_digit() {
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            Some(b'#')
        } else {
            Some(byte)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template of a value, made: every run of ASCII digits becomes one `#`.
    fn template_of(value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut in_digits = false;
        for ch in value.chars() {
            if ch.is_ascii_digit() {
                if !in_digits {
                    out.push('#');
                }
                in_digits = true;
            } else {
                out.push(ch);
                in_digits = false;
            }
        }
        out
    }

    proptest::proptest! {
        /// Values of digit runs, literal `#`, letters and non-ASCII characters: the same
        /// templates exactly when the made templates are equal.
        #[test]
        fn same_template_compares_made_templates(
            parts in proptest::collection::vec(("([0-9]{1,3}|#|a|b|é|日| )", "([0-9]{1,3}|#)"), 0..6),
            other in "([0-9]{1,3}|#|a|b|é|日| ){0,6}",
        ) {
            // `b` is `a` with its digit runs swapped for others or for `#`.
            let a: String = parts.iter().map(|(p, _)| p.as_str()).collect();
            let b: String = parts
                .iter()
                .map(|(p, q)| if p.starts_with(|c: char| c.is_ascii_digit()) { q.as_str() } else { p.as_str() })
                .collect();
            for (x, y) in [(&a, &b), (&a, &other), (&b, &other)] {
                proptest::prop_assert_eq!(same_template(x, y), template_of(x) == template_of(y), "{:?} {:?}", x, y);
            }
        }

        /// A column of values that mostly share a template: the same indices as counting the
        /// made templates.
        #[test]
        fn rare_templates_count_made_templates(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, "(ping [0-9]{1,4}|ping #|pong 7|step [0-9]x|ping)"),
                0..60,
            )
        ) {
            let made: Vec<Option<String>> = values.iter().map(|v| v.as_deref().map(template_of)).collect();
            let made: Vec<Option<&str>> = made.iter().map(Option::as_deref).collect();
            let raw: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
            proptest::prop_assert_eq!(rare_templates(raw.iter().copied()), rare_values(made.iter().copied()));
        }
    }

    #[test]
    fn templates_ignore_numbers() {
        assert_eq!(template_of("heartbeat ping 17"), "heartbeat ping #");
        assert_eq!(template_of("step 4500 of 10"), "step # of #");
        assert_eq!(template_of("v1.2.30"), "v#.#.#");
        assert_eq!(template_of("no digits"), "no digits");
    }

    #[test]
    fn severity_roots_inside_words() {
        assert!(has_severity_root("Dec 10 sshd: Failed password for root"));
        assert!(has_severity_root(
            "com.jcraft.jsch.JSchException: Auth fail"
        ));
        assert!(has_severity_root("insert fail errorCode = 3"));
        assert!(has_severity_root(
            "RAS KERNEL INFO instruction cache parity error corrected"
        ));
        assert!(!has_severity_root("Captured stderr call"));
        assert!(!has_severity_root("session opened for user root"));
    }

    #[test]
    fn error_words() {
        assert!(has_error_word("Connection TIMEOUT after 30s"));
        assert!(!has_error_word("no problems; terrorist is not a match"));
        assert_eq!(
            distinct_error_roots("Traceback ... ValueError ... failed"),
            3
        );
    }

    proptest::proptest! {
        /// The byte-level word split finds the words the character split finds: ASCII and
        /// non-ASCII separators (an em dash, a no-break space), non-ASCII letters inside words.
        #[test]
        fn word_tests_match_the_character_split(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "error", "Failed", "TIMEOUT", "errorCode", "warnings", "ok", "é", "—",
                    "\u{a0}", " ", "_", "-", "ß", "日本", "x1", "panicked", "crash", ".",
                    "Exception", "ABORTED", "Rejected", "errors", "criticality", "DENIED",
                    "err", "OR", "Fai", "l", "3", "wa", "RN", "@", "[", "`", "{", "tIMEOUt",
                ]),
                0..12,
            )
        ) {
            let text: String = parts.concat();
            let words = || text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 4);
            let error = words().any(|w| ERROR_WORDS.iter().any(|e| w.eq_ignore_ascii_case(e)));
            let severity = words().any(|w| {
                SEVERITY_ROOTS.iter().any(|root| {
                    w.as_bytes().windows(root.len()).any(|p| p.eq_ignore_ascii_case(root.as_bytes()))
                })
            });
            proptest::prop_assert_eq!(has_error_word(&text), error, "{:?}", text);
            proptest::prop_assert_eq!(has_severity_root(&text), severity, "{:?}", text);
        }
    }

    #[test]
    #[allow(clippy::indexing_slicing)]
    fn outliers_and_rare_values() {
        let mut values: Vec<Option<f64>> =
            (0..50).map(|i| Some(100.0 + f64::from(i % 7))).collect();
        values[17] = Some(9000.0);
        assert_eq!(numeric_outliers(&values), vec![17]);
        let ids: Vec<Option<f64>> = (0..50).map(|i| Some(f64::from(i))).collect();
        assert!(numeric_outliers(&ids).is_empty());
        let mut statuses = vec![Some("ok"); 40];
        statuses[3] = Some("error");
        statuses[30] = None;
        assert_eq!(rare_values(statuses.iter().copied()), vec![3]);
        let uniform: Vec<Option<&str>> = ["a", "b", "c", "d", "e", "f"]
            .into_iter()
            .map(Some)
            .collect();
        assert!(rare_values(uniform.iter().copied()).is_empty());
    }

    /// `rare_values` as it was: every value counted in an ordered map, then the limits.
    fn reference_rare_values(values: &[Option<&str>]) -> Vec<usize> {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for value in values.iter().flatten() {
            *counts.entry(value).or_default() += 1;
        }
        let total: usize = counts.values().sum();
        let top = counts.values().copied().max().unwrap_or(0);
        if counts.len() < 2 || counts.len() > 12 || total < 5 || top * 2 < total {
            return Vec::new();
        }
        let rare_limit = (total / 10).max(1);
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                v.and_then(|v| counts.get(v))
                    .is_some_and(|&c| c <= rare_limit && c < top)
            })
            .map(|(i, _)| i)
            .collect()
    }

    proptest::proptest! {
        /// Columns with few and many distinct values (the stop at a thirteenth), absent
        /// values and a dominant one: the same indices as counting them all.
        #[test]
        fn rare_values_are_the_reference(
            picks in proptest::collection::vec(proptest::option::weighted(0.9, 0usize..40), 0..120),
            spread in 1usize..40,
        ) {
            let names: Vec<String> = (0..40).map(|k| format!("v{k}")).collect();
            // Most picks fold onto value 0 so a dominant value is common.
            let values: Vec<Option<&str>> = picks
                .iter()
                .map(|p| p.map(|k| names.get(if k >= spread { 0 } else { k }).map_or("v0", String::as_str)))
                .collect();
            proptest::prop_assert_eq!(rare_values(values.iter().copied()), reference_rare_values(&values));
        }
    }
}
