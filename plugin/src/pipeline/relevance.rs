//! Relevance of items (rows, lines, matches) to the latest user text: BM25 over simple word
//! tokens. It is one of the signals that allow lossy selection; it never decides alone how
//! much is dropped.

use std::collections::BTreeSet;

/// Words too common to say anything about relevance.
const STOP_WORDS: [&str; 40] = [
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "has", "have", "what", "when", "which", "who", "why", "how", "this",
    "that", "with", "from", "into", "there", "their", "then", "than", "them", "these", "those",
    "does", "did", "show", "please",
];

/// Lowercase word tokens of `text`: runs of letters, digits and `_`, at least 2 characters
/// (numbers of any length count: ids are what users ask about).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    raw_words(text).map(str::to_lowercase)
}

/// The words of [`words`] before lowercasing.
pub(crate) fn raw_words(text: &str) -> impl Iterator<Item = &str> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 2 || w.chars().all(|c| c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
}

/// Calls `each` with every word of [`words`] (lowercased into a reused buffer: no allocation
/// for ASCII words).
pub(crate) fn for_each_word(text: &str, buf: &mut String, mut each: impl FnMut(&str)) {
    for word in raw_words(text) {
        buf.clear();
        if word.is_ascii() {
            buf.push_str(word);
            buf.make_ascii_lowercase();
        } else {
            buf.push_str(&word.to_lowercase());
        }
        each(buf);
    }
}

/// The terms of a query: its distinct words minus stop words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    terms: BTreeSet<String>,
}

impl Query {
    /// The query of `text` (the latest user text of the request).
    pub fn new(text: &str) -> Query {
        Query {
            terms: words(text)
                .filter(|w| !STOP_WORDS.contains(&w.as_str()))
                .collect(),
        }
    }

    /// Whether the query has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// BM25 scores (k1 = 1.2, b = 0.75) of `docs` against the query, in order. Terms present
    /// in more than half of the documents score nothing: they do not discriminate.
    pub fn scores<S: AsRef<str>>(&self, docs: &[S]) -> Vec<f64> {
        let n = docs.len();
        if self.terms.is_empty() || n == 0 {
            return vec![0.0; n];
        }
        // Per document: its number of words and, for each term present (in term order), how
        // often it occurs.
        let terms: Vec<&str> = self.terms.iter().map(String::as_str).collect();
        let mut buf = String::new();
        let mut lengths = Vec::with_capacity(n);
        let mut counts: Vec<Vec<(usize, usize)>> = Vec::with_capacity(n);
        let mut df = vec![0usize; terms.len()];
        for doc in docs {
            let mut length = 0usize;
            let mut tf: Vec<(usize, usize)> = Vec::new();
            for_each_word(doc.as_ref(), &mut buf, |word| {
                length += 1;
                if let Ok(t) = terms.binary_search(&word) {
                    match tf.iter_mut().find(|(term, _)| *term == t) {
                        Some((_, count)) => *count += 1,
                        None => tf.push((t, 1)),
                    }
                }
            });
            tf.sort_unstable();
            for &(t, _) in &tf {
                if let Some(slot) = df.get_mut(t) {
                    *slot += 1;
                }
            }
            lengths.push(length);
            counts.push(tf);
        }
        let avg_len = lengths.iter().sum::<usize>() as f64 / n as f64;
        let (k1, b) = (1.2, 0.75);
        counts
            .iter()
            .zip(&lengths)
            .map(|(tf, &doc_len)| {
                tf.iter()
                    .map(|&(term, count)| {
                        let df = df.get(term).copied().unwrap_or(0);
                        if df * 2 > n {
                            return 0.0;
                        }
                        let idf = ((n - df) as f64 + 0.5) / (df as f64 + 0.5);
                        let idf = (idf + 1.0).ln();
                        let count = count as f64;
                        let norm = 1.0 - b + b * doc_len as f64 / avg_len.max(1.0);
                        idf * count * (k1 + 1.0) / (count + k1 * norm)
                    })
                    .sum()
            })
            .collect()
    }

    /// Indices of the documents relevant to the query: a positive score of at least half the
    /// best one, at most `limit` of them (best first, ties by position).
    pub fn relevant<S: AsRef<str>>(&self, docs: &[S], limit: usize) -> Vec<usize> {
        let scores = self.scores(docs);
        let best = scores.iter().copied().fold(0.0f64, f64::max);
        if best <= 0.0 {
            return Vec::new();
        }
        let mut ranked: Vec<(usize, f64)> = scores
            .into_iter()
            .enumerate()
            .filter(|(_, s)| *s > 0.0 && *s >= best * 0.5)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let mut indices: Vec<usize> = ranked.into_iter().map(|(i, _)| i).collect();
        indices.sort_unstable();
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rows_a_query_names() {
        let docs: Vec<String> = (0..20)
            .map(|i| format!("order ord_{i} status shipped"))
            .collect();
        let query = Query::new("What happened to order ord_7?");
        assert_eq!(query.relevant(&docs, 5), vec![7]);
        assert!(Query::new("the and").is_empty());
        assert!(Query::new("").relevant(&docs, 5).is_empty());
    }
}
