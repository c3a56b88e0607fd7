//! Relevance of items (rows, lines, matches) to the latest user text: BM25 over simple word
//! tokens. It is one of the signals that allow lossy selection; it never decides alone how
//! much is dropped.

use std::collections::BTreeSet;

use super::byte_class::{
    ALPHANUMERIC, DIGIT, NON_ASCII, UNDERSCORE, UPPER, ascii_word_count, class,
};
use super::fixed_hash::FixedMap;

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
    raw_words(text).map(|word| word.text.to_lowercase())
}

/// The words of [`words`] before lowercasing: the runs between characters that are neither
/// alphanumeric nor `_`, of at least 2 characters or one ASCII digit.
pub(crate) fn raw_words(text: &str) -> RawWords<'_> {
    RawWords { text, pos: 0 }
}

/// A word as [`raw_words`] found it, with what the scan saw of its bytes, so a caller
/// lowercases or masks only the words that need it, without another pass over each word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawWord<'t> {
    /// The word, as it is in the text.
    pub text: &'t str,
    /// Every byte is ASCII.
    pub ascii: bool,
    /// It holds an ASCII uppercase letter.
    pub upper: bool,
    /// It holds an ASCII digit.
    pub digit: bool,
}

/// The iterator of [`raw_words`]. It walks bytes through their [`class`] and decodes a
/// character only where a byte is not ASCII: tool outputs are mostly ASCII.
pub(crate) struct RawWords<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Iterator for RawWords<'t> {
    type Item = RawWord<'t>;

    #[inline]
    fn next(&mut self) -> Option<RawWord<'t>> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            let mut i = start;
            // The union of the classes of the word's bytes; a non-ASCII alphanumeric
            // character adds NON_ASCII.
            let mut seen = 0u8;
            // The word: the longest run of word characters from `start`.
            let separator_len = loop {
                let Some(&b) = bytes.get(i) else { break 0 };
                let flags = class(b);
                if flags & (ALPHANUMERIC | UNDERSCORE) != 0 {
                    seen |= flags;
                    i += 1;
                    continue;
                }
                if flags & NON_ASCII == 0 {
                    break 1;
                }
                match self.text.get(i..).and_then(|rest| rest.chars().next()) {
                    Some(c) if c.is_alphanumeric() => {
                        seen |= NON_ASCII;
                        i += c.len_utf8();
                    }
                    Some(c) => break c.len_utf8(),
                    None => break 1,
                }
            };
            self.pos = i + separator_len;
            let Some(text) = self.text.get(start..i) else {
                continue;
            };
            let ascii = seen & NON_ASCII == 0;
            // At least 2 characters, or one ASCII digit. An ASCII word has as many characters
            // as bytes; only a word with a non-ASCII character is counted.
            let long_enough = if ascii {
                text.len() >= 2 || seen & DIGIT != 0
            } else {
                text.chars().nth(1).is_some()
            };
            if long_enough {
                return Some(RawWord {
                    text,
                    ascii,
                    upper: seen & UPPER != 0,
                    digit: seen & DIGIT != 0,
                });
            }
        }
        None
    }
}

/// What else a walk over documents' words feeds: one walk serves BM25 and another signal
/// ([`super::adaptive::Novelty`]) instead of two walks over every item.
pub(crate) trait WordSink<'t> {
    /// Whether it takes words at all (a walk that finds nothing for BM25 is made only for a
    /// sink that does).
    const TAKES_WORDS: bool = true;
    /// The next word of the current document, as [`raw_words`] finds it.
    fn word(&mut self, word: RawWord<'t>);
    /// The current document has no more words.
    fn end_doc(&mut self);
}

/// A sink that takes nothing (a walk made for BM25 alone).
struct NoSink;

impl WordSink<'_> for NoSink {
    const TAKES_WORDS: bool = false;
    fn word(&mut self, _: RawWord<'_>) {}
    fn end_doc(&mut self) {}
}

/// `word` lowercased: the word itself when it has nothing to lowercase, otherwise into `buf`.
pub(crate) fn lowercase<'a>(word: RawWord<'a>, buf: &'a mut String) -> &'a str {
    if word.ascii && !word.upper {
        return word.text;
    }
    buf.clear();
    if word.ascii {
        buf.push_str(word.text);
        buf.make_ascii_lowercase();
    } else {
        buf.push_str(&word.text.to_lowercase());
    }
    buf
}

/// A query keeps at most this many distinct terms: the first ones in the text's order. The
/// user text is as large as the body allows, and every term costs memory in each VM and a
/// step of every lookup; a question, even with a pasted page, has far fewer distinct words.
/// A fixed count (never a time budget) keeps the query a function of the text alone.
pub const MAX_QUERY_TERMS: usize = 16_384;

/// [`Query::mentions`] looks for at most this many terms inside words.
pub const MAX_SUBSTRING_TERMS: usize = 16;

/// A query of at most this many ASCII terms is searched for in the documents' lowercased bytes
/// ([`Lowered`]), one `memmem` pass per term, instead of BM25 walking every word of every
/// document; a longer query walks the words, which then costs less than its searches.
pub const MAX_PREFILTER_TERMS: usize = 8;

/// Documents ASCII-lowercased into one buffer, each followed by a NUL byte (which no term
/// holds, so no match spans two documents): one SIMD substring search per term over all of
/// them (`memchr::memmem`) instead of a comparison at every byte or a lookup per word.
struct Lowered {
    bytes: Vec<u8>,
    /// Where each document's bytes end (its NUL).
    ends: Vec<usize>,
    /// Whether each document is ASCII.
    ascii: Vec<bool>,
}

impl Lowered {
    fn of<S: AsRef<str>>(docs: &[S]) -> Lowered {
        let mut bytes = Vec::with_capacity(docs.iter().map(|d| d.as_ref().len() + 1).sum());
        let mut ends = Vec::with_capacity(docs.len());
        let mut ascii = Vec::with_capacity(docs.len());
        for doc in docs {
            let doc = doc.as_ref();
            bytes.extend(doc.bytes().map(|b| b.to_ascii_lowercase()));
            ends.push(bytes.len());
            bytes.push(0);
            ascii.push(doc.is_ascii());
        }
        Lowered { bytes, ends, ascii }
    }

    /// The lowercased bytes of document `doc`.
    fn doc(&self, doc: usize) -> &[u8] {
        let start = doc
            .checked_sub(1)
            .and_then(|previous| self.ends.get(previous))
            .map_or(0, |end| end + 1);
        let end = self.ends.get(doc).copied().unwrap_or(start);
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// Calls `hit` with the index of the document of each occurrence of `needle`, in order
    /// (once per occurrence).
    fn each_doc_holding(&self, needle: &[u8], mut hit: impl FnMut(usize)) {
        let mut doc = 0usize;
        for at in memchr::memmem::find_iter(&self.bytes, needle) {
            while self.ends.get(doc).is_some_and(|&end| end <= at) {
                doc += 1;
            }
            hit(doc);
        }
    }
}

/// BM25's score (k1 = 1.2, b = 0.75) of a term found `count` times in a document of
/// `doc_len` words, present in `df` of `n` documents whose average length is `avg_len`.
fn term_score(n: usize, df: usize, count: usize, doc_len: usize, avg_len: f64) -> f64 {
    let (k1, b) = (1.2, 0.75);
    let idf = ((n - df) as f64 + 0.5) / (df as f64 + 0.5);
    let idf = (idf + 1.0).ln();
    let count = count as f64;
    let norm = 1.0 - b + b * doc_len as f64 / avg_len.max(1.0);
    idf * count * (k1 + 1.0) / (count + k1 * norm)
}

/// The BM25 score of a document of `doc_len` words whose terms occur as `tf` says, among `n`
/// documents of `total` words whose terms occur in as many as `df` says. Terms present in more
/// than half of the documents score nothing.
fn bm25(
    tf: &[(usize, usize)],
    doc_len: usize,
    df: &FixedMap<usize, usize>,
    n: usize,
    total: usize,
) -> f64 {
    let avg_len = total as f64 / n as f64;
    tf.iter()
        .map(|&(term, count)| {
            let df = df.get(&term).copied().unwrap_or(0);
            if df * 2 > n {
                return 0.0;
            }
            term_score(n, df, count, doc_len, avg_len)
        })
        .sum()
}

/// The terms of a query: its distinct words minus stop words (at most [`MAX_QUERY_TERMS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Sorted and distinct, so each word of a document is looked up by binary search.
    terms: Vec<String>,
    /// Whether the text had more distinct terms than [`MAX_QUERY_TERMS`].
    truncated: bool,
    /// The terms' signatures, made once per question rather than per scored collection.
    signatures: Signatures,
}

/// The signatures of a query's terms, for [`Query::scores`] to rule out most words without a
/// lookup: a term's signature is its length (capped at 63) and its first and last bytes ASCII
/// lowercased, hashed into a bit set of at least 128 bits per term (64 past 8,192 terms), so a
/// word that is no term passes about once in 128 (length and first byte alone let most words
/// of a log through: the terms of a question start with most letters and have most lengths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Signatures {
    bits: Vec<u64>,
    /// `32 - log2(bits.len() * 64)`: the top bits of a multiplicative hash index the set.
    shift: u32,
}

impl Signatures {
    fn of(terms: &[String]) -> Signatures {
        // At least 4096 bits, at most 2^20 (16,384 terms).
        let words = (terms.len() * 2).next_power_of_two().clamp(64, 1 << 14);
        let mut signatures = Signatures {
            bits: vec![0; words],
            shift: 32 - (words * 64).trailing_zeros(),
        };
        for term in terms {
            if let Some((word, mask)) = signatures.bit(term)
                && let Some(slot) = signatures.bits.get_mut(word)
            {
                *slot |= mask;
            }
        }
        signatures
    }

    /// The word of `bits` and the mask of `text`'s signature (`None` for an empty text).
    fn bit(&self, text: &str) -> Option<(usize, u64)> {
        let bytes = text.as_bytes();
        let first = bytes.first()?.to_ascii_lowercase();
        let last = bytes.last()?.to_ascii_lowercase();
        let key = (bytes.len().min(63) as u32) << 16 | u32::from(first) << 8 | u32::from(last);
        let index = (key.wrapping_mul(0x9e37_79b1) >> self.shift) as usize;
        Some((index / 64, 1 << (index % 64)))
    }

    /// Whether `word` (or its ASCII lowercasing) may be a term; false only when it is none.
    fn may_hold(&self, word: &str) -> bool {
        self.bit(word)
            .is_some_and(|(word, mask)| self.bits.get(word).is_some_and(|slot| slot & mask != 0))
    }
}

impl Query {
    /// The query of `text` (the latest user text of the request).
    pub fn new(text: &str) -> Query {
        let mut terms: BTreeSet<String> = BTreeSet::new();
        let mut truncated = false;
        for word in words(text).filter(|w| !STOP_WORDS.contains(&w.as_str())) {
            if terms.len() >= MAX_QUERY_TERMS && !terms.contains(&word) {
                // Later words are either known terms or past the limit: stop reading.
                truncated = true;
                break;
            }
            terms.insert(word);
        }
        let terms: Vec<String> = terms.into_iter().collect();
        Query {
            signatures: Signatures::of(&terms),
            terms,
            truncated,
        }
    }

    /// Whether the query has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the user text had more distinct terms than [`MAX_QUERY_TERMS`] (the query holds
    /// the first ones).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// BM25 scores (k1 = 1.2, b = 0.75) of `docs` against the query, in order. Terms present
    /// in more than half of the documents score nothing: they do not discriminate.
    ///
    /// O(w log w + w log t) for w words in `docs` and t query terms, whatever the overlap:
    /// nothing here is proportional to the number of query terms per document word (a
    /// document holding a whole long query used to cost a scan of its term list per word).
    /// A query of at most [`MAX_PREFILTER_TERMS`] ASCII terms adds at most that many linear
    /// substring searches, and skips the walk where its terms are rare.
    pub fn scores<S: AsRef<str>>(&self, docs: &[S]) -> Vec<f64> {
        self.scores_feeding(docs, &mut NoSink)
    }

    /// [`Query::scores`], feeding every word of every document to `sink` on the way (all of
    /// them, in order, whether or not the query has terms).
    fn scores_feeding<'t, S: AsRef<str>, W: WordSink<'t>>(
        &self,
        docs: &'t [S],
        sink: &mut W,
    ) -> Vec<f64> {
        let n = docs.len();
        if self.terms.is_empty() || n == 0 {
            if W::TAKES_WORDS {
                for doc in docs {
                    raw_words(doc.as_ref()).for_each(|word| sink.word(word));
                    sink.end_doc();
                }
            }
            return vec![0.0; n];
        }
        if !W::TAKES_WORDS
            && self.prefilters()
            && let Some(scores) = self.scores_prefiltered(docs, &Lowered::of(docs))
        {
            return scores;
        }
        self.scores_walked(docs, sink)
    }

    /// [`Query::scores_feeding`] by a walk over every word of every document (the query has
    /// terms and there are documents).
    fn scores_walked<'t, S: AsRef<str>, W: WordSink<'t>>(
        &self,
        docs: &'t [S],
        sink: &mut W,
    ) -> Vec<f64> {
        let n = docs.len();
        let mut tally = Tally::default();
        let mut lengths = Vec::with_capacity(n);
        let mut counts: Vec<TermCounts> = Vec::with_capacity(n);
        // Document frequency per term that occurs at all (few terms do, per call).
        let mut df: FixedMap<usize, usize> = FixedMap::default();
        for doc in docs {
            let (length, tf) = self.tally(doc.as_ref(), sink, &mut tally);
            for &(t, _) in &tf {
                *df.entry(t).or_default() += 1;
            }
            lengths.push(length);
            counts.push(tf);
        }
        let total = lengths.iter().sum::<usize>();
        counts
            .iter()
            .zip(&lengths)
            .map(|(tf, &doc_len)| bm25(tf, doc_len, &df, n, total))
            .collect()
    }

    /// Whether [`Query::scores`] searches the documents for the terms before walking words:
    /// at most [`MAX_PREFILTER_TERMS`] ASCII terms.
    fn prefilters(&self) -> bool {
        self.terms.iter().filter(|t| t.is_ascii()).count() <= MAX_PREFILTER_TERMS
    }

    /// [`Query::scores`] without walking the words of ASCII documents, or `None` when the
    /// terms occur too often for that to pay (the caller walks every word instead).
    ///
    /// In an ASCII document a word is a maximal run of ASCII letters, digits and `_`, so a word
    /// equal to an ASCII term is exactly an occurrence of the term in the lowercased bytes
    /// with no such byte on either side (a term is made of them, so no occurrence overlaps one
    /// of those); a non-ASCII term is never a word of an ASCII document. The length of an ASCII
    /// document is [`ascii_word_count`]'s. Documents that are not ASCII are walked as before:
    /// Unicode lowercasing can make one of their words an ASCII term (`\u{212a}b` is `kb`).
    /// The same numbers, bit for bit, as the walk over every word.
    fn scores_prefiltered<S: AsRef<str>>(&self, docs: &[S], lowered: &Lowered) -> Option<Vec<f64>> {
        let n = docs.len();
        let bytes = &lowered.bytes;
        let is_word_byte = |at: Option<usize>| {
            at.and_then(|at| bytes.get(at))
                .is_some_and(|&b| class(b) & (ALPHANUMERIC | UNDERSCORE) != 0)
        };
        // Occurrences looked at before the walk is the cheaper way (a term such as `2` or `id`
        // occurs in most lines of a log).
        let budget = bytes.len() / 16 + 64;
        let mut seen = 0usize;
        // (document, term) of every word of an ASCII document that is a term.
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for (t, term) in self.terms.iter().enumerate() {
            if !term.is_ascii() {
                continue;
            }
            let mut doc = 0usize;
            for at in memchr::memmem::find_iter(bytes, term.as_bytes()) {
                seen += 1;
                if seen > budget {
                    return None;
                }
                if is_word_byte(at.checked_sub(1)) || is_word_byte(Some(at + term.len())) {
                    continue;
                }
                while lowered.ends.get(doc).is_some_and(|&end| end <= at) {
                    doc += 1;
                }
                if lowered.ascii.get(doc).copied().unwrap_or(false) {
                    hits.push((doc, t));
                }
            }
        }
        hits.sort_unstable();
        let mut tally = Tally::default();
        // (document, its length, its term counts in term order) of every document with a term.
        let mut found: Vec<(usize, usize, TermCounts)> = Vec::new();
        // The words of the documents that are not ASCII, as counted and as walked.
        let (mut counted, mut walked) = (0usize, 0usize);
        for (i, doc) in docs.iter().enumerate() {
            if lowered.ascii.get(i).copied().unwrap_or(true) {
                continue;
            }
            let (length, tf) = self.tally(doc.as_ref(), &mut NoSink, &mut tally);
            counted += ascii_word_count(lowered.doc(i));
            walked += length;
            if !tf.is_empty() {
                found.push((i, length, tf));
            }
        }
        for run in hits.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(i, _)) = run.first() else { continue };
            let mut tf: Vec<(usize, usize)> = Vec::new();
            for &(_, t) in run {
                match tf.last_mut() {
                    Some((term, count)) if *term == t => *count += 1,
                    _ => tf.push((t, 1)),
                }
            }
            found.push((i, ascii_word_count(lowered.doc(i)), tf));
        }
        // The average length matters only to a document with a term: most questions name
        // nothing in most tool outputs, and then no word is counted.
        let total = if found.is_empty() {
            0
        } else {
            (ascii_word_count(bytes) + walked).saturating_sub(counted)
        };
        let mut df: FixedMap<usize, usize> = FixedMap::default();
        for (_, _, tf) in &found {
            for &(t, _) in tf {
                *df.entry(t).or_default() += 1;
            }
        }
        // A document without terms scores an empty sum, as in the walk (-0.0).
        let mut scores = vec![bm25(&[], 0, &df, n, total); n];
        for (i, length, tf) in found {
            if let Some(slot) = scores.get_mut(i) {
                *slot = bm25(&tf, length, &df, n, total);
            }
        }
        Some(scores)
    }

    /// The number of words of `doc` and, for each term present (in term order), how often it
    /// occurs; every word is fed to `sink`.
    fn tally<'t, W: WordSink<'t>>(
        &self,
        doc: &'t str,
        sink: &mut W,
        tally: &mut Tally,
    ) -> (usize, TermCounts) {
        let Tally { buf, hits } = tally;
        let mut length = 0usize;
        hits.clear();
        // Most words are no term: a word whose signature (length, first and last byte) no
        // term has is not looked up (exact: the filter only skips searches that would fail).
        // Lowercasing keeps an ASCII word's length, and its first and last bytes lowercased
        // are the lowercased word's: an ASCII word is ruled out before it is lowercased,
        // another after.
        for word in raw_words(doc) {
            length += 1;
            sink.word(word);
            if word.ascii && !self.signatures.may_hold(word.text) {
                continue;
            }
            let lowered = lowercase(word, buf);
            if (word.ascii || self.signatures.may_hold(lowered))
                && let Ok(t) = self
                    .terms
                    .binary_search_by(|term| term.as_str().cmp(lowered))
            {
                hits.push(t);
            }
        }
        sink.end_doc();
        hits.sort_unstable();
        let mut tf: Vec<(usize, usize)> = Vec::new();
        for &t in hits.iter() {
            match tf.last_mut() {
                Some((term, count)) if *term == t => *count += 1,
                _ => tf.push((t, 1)),
            }
        }
        (length, tf)
    }

    /// Which documents mention a query term inside a longer word (`digest` in
    /// `test_digestauth_401`, `connecttimeout` in `ConnectTimeoutError`), ASCII
    /// case-insensitively, where BM25's whole words miss it. Only discriminating terms count:
    /// at least four characters, among the first [`MAX_SUBSTRING_TERMS`], found in at most
    /// half of the documents. Linear: at most that many scans of each document.
    pub fn mentions<S: AsRef<str>>(&self, docs: &[S]) -> Vec<bool> {
        if self.substring_terms().next().is_none() {
            return vec![false; docs.len()];
        }
        self.mentions_in(&Lowered::of(docs))
    }

    /// The terms [`Query::mentions`] looks for inside words.
    fn substring_terms(&self) -> impl Iterator<Item = &str> {
        self.terms
            .iter()
            .filter(|t| t.len() >= 4 && t.is_ascii())
            .take(MAX_SUBSTRING_TERMS)
            .map(String::as_str)
    }

    /// [`Query::mentions`] of the documents `lowered` holds.
    fn mentions_in(&self, lowered: &Lowered) -> Vec<bool> {
        let n = lowered.ends.len();
        let mut mentioned = vec![false; n];
        let mut hits = vec![false; n];
        for term in self.substring_terms() {
            hits.fill(false);
            let mut count = 0usize;
            lowered.each_doc_holding(term.as_bytes(), |doc| {
                if let Some(hit) = hits.get_mut(doc).filter(|hit| !**hit) {
                    *hit = true;
                    count += 1;
                }
            });
            if count > 0 && count * 2 <= n {
                for (m, h) in mentioned.iter_mut().zip(&hits) {
                    *m |= *h;
                }
            }
        }
        mentioned
    }

    /// [`Query::relevant`] and [`Query::mentions`] of the same documents, lowercased once for
    /// both.
    pub fn relevant_and_mentions<S: AsRef<str>>(
        &self,
        docs: &[S],
        limit: usize,
    ) -> (Vec<usize>, Vec<bool>) {
        let n = docs.len();
        if self.terms.is_empty() || n == 0 {
            return (Vec::new(), vec![false; n]);
        }
        let mentions = self.substring_terms().next().is_some();
        let prefilters = self.prefilters();
        if !mentions && !prefilters {
            return (
                ranked(self.scores_walked(docs, &mut NoSink), limit),
                vec![false; n],
            );
        }
        let lowered = Lowered::of(docs);
        let scores = prefilters
            .then(|| self.scores_prefiltered(docs, &lowered))
            .flatten()
            .unwrap_or_else(|| self.scores_walked(docs, &mut NoSink));
        let mentioned = if mentions {
            self.mentions_in(&lowered)
        } else {
            vec![false; n]
        };
        (ranked(scores, limit), mentioned)
    }

    /// Indices of the documents relevant to the query: a positive score of at least three quarters of the
    /// best one, at most `limit` of them (best first, ties by position).
    pub fn relevant<S: AsRef<str>>(&self, docs: &[S], limit: usize) -> Vec<usize> {
        self.relevant_feeding(docs, limit, &mut NoSink)
    }

    /// [`Query::relevant`], feeding every word of every document to `sink` on the way.
    pub(crate) fn relevant_feeding<'t, S: AsRef<str>, W: WordSink<'t>>(
        &self,
        docs: &'t [S],
        limit: usize,
        sink: &mut W,
    ) -> Vec<usize> {
        ranked(self.scores_feeding(docs, sink), limit)
    }
}

/// How often each term present in a document occurs in it: (term index, count), in term
/// order.
type TermCounts = Vec<(usize, usize)>;

/// The scratch space of [`Query::tally`], kept across documents.
#[derive(Default)]
struct Tally {
    /// A word lowercased.
    buf: String,
    /// The terms found in the document, as indices.
    hits: Vec<usize>,
}

/// Indices of the documents whose score is positive and at least three quarters of the best
/// one, at most `limit` of them (the best first, ties by position), in order.
fn ranked(scores: Vec<f64>, limit: usize) -> Vec<usize> {
    let best = scores.iter().copied().fold(0.0f64, f64::max);
    if best <= 0.0 {
        return Vec::new();
    }
    let mut ranked: Vec<(usize, f64)> = scores
        .into_iter()
        .enumerate()
        .filter(|(_, s)| *s > 0.0 && *s >= best * 0.75)
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(limit);
    let mut indices: Vec<usize> = ranked.into_iter().map(|(i, _)| i).collect();
    indices.sort_unstable();
    indices
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The definition [`raw_words`] implements without decoding every character.
    fn reference_words(text: &str) -> Vec<&str> {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| w.chars().count() >= 2 || w.chars().all(|c| c.is_ascii_digit()))
            .filter(|w| !w.is_empty())
            .collect()
    }

    /// The words [`raw_words`] finds, after checking what it says of each one's bytes.
    fn scanned(text: &str) -> Vec<&str> {
        raw_words(text)
            .map(|word| {
                let RawWord {
                    text,
                    ascii,
                    upper,
                    digit,
                } = word;
                assert_eq!(ascii, text.is_ascii(), "{text:?}");
                assert_eq!(
                    upper,
                    text.bytes().any(|b| b.is_ascii_uppercase()),
                    "{text:?}"
                );
                assert_eq!(digit, text.bytes().any(|b| b.is_ascii_digit()), "{text:?}");
                text
            })
            .collect()
    }

    #[test]
    fn raw_words_match_their_definition() {
        let texts = [
            "",
            "a",
            "7",
            "ab",
            " a b 1 22 _ __ x_y ",
            "caf\u{e9} na\u{ef}ve \u{e9} \u{4e2d}\u{6587} \u{4e2d} x\u{2014}y \u{1F600}ok\u{1F600}",
            "id=42,name:\"foo-bar\"\n\tstatus: ERROR 500; path=/a/b_c.rs:12",
            "\u{663}\u{664} \u{663} \u{2163}\u{2163} \u{a0}nbsp\u{a0}",
            "trailing separator.",
            "\u{e9}",
            "5\u{e9}",
        ];
        for text in texts {
            assert_eq!(scanned(text), reference_words(text), "{text:?}");
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet: Vec<char> = "aZ09_ -.\u{e9}\u{c9}\u{212a}\u{4e2d}\u{663}\u{a0}\u{1F600}\n"
            .chars()
            .collect();
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            assert_eq!(scanned(&text), reference_words(&text), "{text:?}");
        }
    }

    /// The scoring before issue 12 (a linear search of the document's terms per word), kept
    /// as the reference the linear version must equal bit for bit.
    fn reference_scores(query: &Query, docs: &[String]) -> Vec<f64> {
        let n = docs.len();
        let terms: Vec<&str> = query.terms.iter().map(String::as_str).collect();
        let mut lengths = Vec::new();
        let mut counts: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut df = vec![0usize; terms.len()];
        for doc in docs {
            let mut length = 0usize;
            let mut tf: Vec<(usize, usize)> = Vec::new();
            for word in words(doc) {
                length += 1;
                if let Ok(t) = terms.binary_search(&word.as_str()) {
                    match tf.iter_mut().find(|(term, _)| *term == t) {
                        Some((_, count)) => *count += 1,
                        None => tf.push((t, 1)),
                    }
                }
            }
            tf.sort_unstable();
            for &(t, _) in &tf {
                df[t] += 1;
            }
            lengths.push(length);
            counts.push(tf);
        }
        let avg_len = lengths.iter().sum::<usize>() as f64 / n as f64;
        counts
            .iter()
            .zip(&lengths)
            .map(|(tf, &doc_len)| {
                tf.iter()
                    .map(|&(term, count)| {
                        let df = df[term];
                        if df * 2 > n {
                            return 0.0;
                        }
                        term_score(n, df, count, doc_len, avg_len)
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn scores_equal_the_reference_bit_for_bit() {
        let query =
            Query::new("Why did order ord_7 fail with a timeout on shard 3 of the EU cluster?");
        let mut vocabulary: Vec<String> = [
            "order",
            "ord_7",
            "ord_8",
            "fail",
            "timeout",
            "shard",
            "3",
            "eu",
            "cluster",
            "ok",
            "retry",
            "Order",
            "FAIL",
            "naïve",
            "Ünïcode",
        ]
        .map(str::to_owned)
        .to_vec();
        vocabulary.extend((0..60).map(|k| format!("filler{k}")));
        let docs: Vec<String> = (0..300)
            .map(|i| {
                (0..(i % 9))
                    .map(|j| vocabulary[(i * 7 + j * 13) % vocabulary.len()].as_str())
                    .collect::<Vec<_>>()
                    .join(if i % 2 == 0 { " " } else { ", " })
            })
            .collect();
        let scores = query.scores(&docs);
        let reference = reference_scores(&query, &docs);
        assert_eq!(scores.len(), reference.len());
        for (a, b) in scores.iter().zip(&reference) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert!(scores.iter().any(|s| *s > 0.0));
    }

    #[test]
    fn a_query_keeps_its_first_distinct_terms() {
        let text: Vec<String> = (0..MAX_QUERY_TERMS + 10).map(|i| format!("w{i}")).collect();
        let text = format!("{} w1 w2", text.join(" "));
        let query = Query::new(&text);
        assert!(query.truncated());
        assert_eq!(query.terms.len(), MAX_QUERY_TERMS);
        let last = format!("w{}", MAX_QUERY_TERMS - 1);
        let past = format!("w{MAX_QUERY_TERMS}");
        assert!(query.terms.contains(&last) && !query.terms.contains(&past));
        let short = Query::new("w1 w2 w1 the w3");
        assert!(!short.truncated());
        assert_eq!(short.terms, vec!["w1", "w2", "w3"]);
    }

    /// Issue 12: a document holding a whole long query scanned its term list once per word.
    #[test]
    fn a_long_query_inside_long_documents() {
        for words in [20_000, 80_000] {
            let text: Vec<String> = (0..words).map(|i| format!("w{i}")).collect();
            let text = text.join(" ");
            let query = Query::new(&text);
            let mut docs = vec![text.clone(); 3];
            docs.push("w1 w2 unrelated".to_owned());
            docs.push("nothing here".to_owned());
            let scores = query.scores(&docs);
            // Every term is in the three long documents, more than half: none discriminates.
            assert_eq!(scores, vec![0.0; 5]);
            let reference = reference_scores(&query, &docs[3..]);
            assert_eq!(query.scores(&docs[3..]), reference);
        }
    }

    #[test]
    fn mentions_inside_words_when_discriminating() {
        let docs = [
            "def test_digestauth_401_count():",
            "def test_basic():",
            "raise ConnectTimeoutError(e)",
            "def test_redirect():",
            "x = 1",
        ];
        let query = Query::new("Which digest tests? connecttimeout? def");
        assert_eq!(query.mentions(&docs), vec![true, false, true, false, false]);
        // `test` is in most documents: it says nothing.
        assert_eq!(Query::new("test").mentions(&docs), vec![false; 5]);
    }

    /// What [`Query::mentions`] computed before it searched with `memmem`: a case-insensitive
    /// comparison at every byte of every document.
    fn reference_mentions(query: &Query, docs: &[String]) -> Vec<bool> {
        let n = docs.len();
        let mut mentioned = vec![false; n];
        let terms = query
            .terms
            .iter()
            .filter(|t| t.len() >= 4 && t.is_ascii())
            .take(MAX_SUBSTRING_TERMS);
        for term in terms {
            let needle = term.as_bytes();
            let hits: Vec<bool> = docs
                .iter()
                .map(|doc| {
                    doc.as_bytes()
                        .windows(needle.len())
                        .any(|w| w.eq_ignore_ascii_case(needle))
                })
                .collect();
            let count = hits.iter().filter(|h| **h).count();
            if count > 0 && count * 2 <= n {
                for (m, h) in mentioned.iter_mut().zip(&hits) {
                    *m |= *h;
                }
            }
        }
        mentioned
    }

    proptest::proptest! {
        /// Documents made of a few words in mixed case, joined by punctuation, empty or with
        /// non-ASCII text: the substring search finds what the byte comparison found.
        #[test]
        fn mentions_agree_with_the_byte_comparison(
            docs in proptest::collection::vec(
                proptest::collection::vec(
                    "(Conn|conn|TIMEOUT|timeout|Digest|dig|éte|test|_|::|-| |[a-z]{1,3})", 0..8),
                0..12),
            query in "(connect|Timeout|digest|test|éte|[a-z]{4,6}| ){1,6}",
        ) {
            let docs: Vec<String> = docs.into_iter().map(|parts| parts.concat()).collect();
            let query = Query::new(&query);
            proptest::prop_assert_eq!(query.mentions(&docs), reference_mentions(&query, &docs));
        }

        /// Questions and documents from one mixed-case, partly non-ASCII vocabulary, with
        /// words that hold a term inside them and the Kelvin sign (which lowercases to an ASCII
        /// `k`): ruling words out by their signatures changes no score (a term ruled out
        /// would), and neither does searching the lowercased bytes instead of walking words
        /// (the prefiltered scores equal the walk's bit for bit).
        #[test]
        fn scores_equal_the_reference_for_any_question(
            docs in proptest::collection::vec(
                proptest::collection::vec(
                    "(Order|ORDER|ORDERS|reorder|ORD_7|fail|Fail|FAIL|FAILED|x|7|42|naïve|NAÏVE|Ünïcode|ünïcode|\u{212a}b|KB|é|日本|[a-z]{1,4}|[A-Z]{2})",
                    0..9),
                1..14),
            query in proptest::collection::vec(
                "(order|ord_7|FAIL|42|7|naïve|ÜNÏCODE|kb|é|日本|[a-z]{1,4})", 1..12),
        ) {
            let docs: Vec<String> = docs.into_iter().map(|parts| parts.join(" ")).collect();
            let query = Query::new(&query.join(" "));
            let scores = query.scores(&docs);
            let reference = reference_scores(&query, &docs);
            proptest::prop_assert_eq!(scores.len(), reference.len());
            for (a, b) in scores.iter().zip(&reference) {
                // A query without terms scores 0.0 where the reference's empty sum is -0.0.
                proptest::prop_assert!(a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0));
            }
            let walked = query.scores_feeding(&docs, &mut Walk(0));
            if !query.is_empty() {
                // A query without terms is never prefiltered (every score is 0.0).
                let prefiltered = query
                    .scores_prefiltered(&docs, &Lowered::of(&docs))
                    .unwrap_or_else(|| query.scores_feeding(&docs, &mut Walk(0)));
                proptest::prop_assert_eq!(walked.len(), prefiltered.len());
                for (a, b) in walked.iter().zip(&prefiltered) {
                    proptest::prop_assert_eq!(a.to_bits(), b.to_bits());
                }
            }
            let limit = docs.len() / 2 + 1;
            proptest::prop_assert_eq!(
                query.relevant_and_mentions(&docs, limit),
                (ranked(walked, limit), query.mentions(&docs))
            );
        }
    }

    /// A sink that takes every word, so [`Query::scores_feeding`] walks every document.
    struct Walk(usize);

    impl WordSink<'_> for Walk {
        fn word(&mut self, _: RawWord<'_>) {
            self.0 += 1;
        }
        fn end_doc(&mut self) {}
    }

    #[test]
    fn a_term_in_most_lines_is_walked_for() {
        let docs: Vec<String> = (0..200)
            .map(|i| format!("2026-12-0{} worker-{} took {}ms", i % 9, i % 4, i))
            .collect();
        let query = Query::new("Step 2: which worker?");
        assert!(query.prefilters());
        assert_eq!(query.scores_prefiltered(&docs, &Lowered::of(&docs)), None);
        let walked = ranked(query.scores_walked(&docs, &mut NoSink), 8);
        assert_eq!(walked, vec![2, 6, 10, 14, 18, 22, 26, 30]);
        assert_eq!(query.relevant(&docs, 8), walked);
        assert_eq!(query.relevant_and_mentions(&docs, 8).0, walked);
    }

    #[test]
    fn a_kelvin_sign_word_is_walked_and_found() {
        let docs = ["size 4 \u{212a}B", "size 5 MB", "size 6 GB", "size 7 TB"];
        let query = Query::new("which kb?");
        assert!(query.prefilters());
        assert_eq!(query.relevant(&docs, 4), vec![0]);
        assert_eq!(query.relevant_and_mentions(&docs, 4).0, vec![0]);
    }

    #[test]
    fn a_query_past_the_prefilter_walks_every_word() {
        let terms: Vec<String> = (0..=MAX_PREFILTER_TERMS)
            .map(|i| format!("t{i}x"))
            .collect();
        let query = Query::new(&terms.join(" "));
        assert!(!query.prefilters());
        let docs = ["t3x here", "nothing", "t3x t3x and t4x", "other words"];
        let walked = ranked(query.scores_feeding(&docs, &mut Walk(0)), 4);
        assert!(!walked.is_empty());
        assert_eq!(query.relevant(&docs, 4), walked);
        assert_eq!(
            query.relevant_and_mentions(&docs, 4),
            (walked, query.mentions(&docs))
        );
    }

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
