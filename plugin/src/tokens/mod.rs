//! Token counting: exact BPE counts equal to tiktoken's for OpenAI models (o200k_base,
//! cl100k_base, from rank tables embedded in the module: nothing is ever downloaded) and a
//! calibrated estimate for Anthropic models, whose tokenizer is not public. Every figure says
//! which kind it is ([`Exactness`]).
//!
//! Memory: the rank tables sit in the module's data segment (0.74 MB cl100k, 1.60 MB o200k);
//! each table's index is built on first use per VM (1.4 MB cl100k, 2.8 MB o200k of heap), and
//! so is a 256 KiB piece-count cache per encoding ([`bpe::PieceCache`]). The pre-tokenizer is a
//! hand-written matcher with a 35 KB Unicode class table and allocates nothing.

mod bpe;
mod pretokenize;
mod unicode;

/// A fast, fixed 64-bit hash of bytes (the rank index's), for pre-filters elsewhere.
pub(crate) use bpe::hash_bytes;

use std::cell::RefCell;
use std::ops::ControlFlow;

thread_local! {
    /// The piece caches of this VM (one thread), by encoding: cl100k_base, o200k_base.
    static CACHES: RefCell<[Option<bpe::PieceCache>; 2]> = const { RefCell::new([None, None]) };
}

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `cl100k_base` (GPT-4, GPT-3.5).
    Cl100kBase,
    /// `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series).
    O200kBase,
}

impl Encoding {
    /// tiktoken's name of the encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
        }
    }

    fn ranks(self) -> &'static bpe::Ranks {
        match self {
            Self::Cl100kBase => bpe::cl100k(),
            Self::O200kBase => bpe::o200k(),
        }
    }

    /// The exact number of tokens tiktoken's `encode_ordinary` makes of `text` (special tokens
    /// are not recognised: a tool output saying `<|endoftext|>` is ordinary text).
    pub fn count(self, text: &str) -> usize {
        self.count_while(text, |_| true).0
    }

    /// Counts `text` piece by piece while `go_on` accepts the running total; returns the total
    /// and, when it stopped early, the [`CountedPrefix`] that total is the count of. Every
    /// piece is at least one token, so a running total is a lower bound of the whole count.
    #[inline]
    fn count_while(
        self,
        text: &str,
        mut go_on: impl FnMut(usize) -> bool,
    ) -> (usize, Option<CountedPrefix>) {
        let ranks = self.ranks();
        let mut total = 0usize;
        let mut stopped = None;
        let slot = match self {
            Self::Cl100kBase => 0,
            Self::O200kBase => 1,
        };
        // `tail` runs from the piece's start to the text's end, so the piece ends
        // `tail.len() - piece.len()` bytes before the end.
        let mut add = |n: usize, piece: &[u8], tail: &[u8]| {
            total += n;
            if go_on(total) {
                ControlFlow::Continue(())
            } else {
                let bytes = text
                    .len()
                    .saturating_sub(tail.len().saturating_sub(piece.len()));
                stopped = Some(CountedPrefix { bytes, base: total });
                ControlFlow::Break(())
            }
        };
        let cached = CACHES.try_with(|caches| {
            let Ok(mut caches) = caches.try_borrow_mut() else {
                return false;
            };
            let Some(cache) = caches.get_mut(slot) else {
                return false;
            };
            let cache = cache.get_or_insert_with(bpe::PieceCache::new);
            pretokenize::for_each_piece(self, text, |piece, tail| {
                add(cache.count(ranks, piece, tail), piece, tail)
            });
            true
        });
        // Only an unusable cache falls back, and before it counted anything.
        if cached != Ok(true) {
            pretokenize::for_each_piece(self, text, |piece, tail| {
                add(ranks.count_piece(piece), piece, tail)
            });
        }
        (total, stopped)
    }

    /// Heap bytes of this encoding's piece-count cache (allocated on first count, per VM).
    pub fn cache_heap_bytes(self) -> usize {
        bpe::PieceCache::BYTES
    }

    /// Heap bytes of this encoding's rank index once loaded (loads it).
    pub fn index_heap_bytes(self) -> usize {
        self.ranks().heap_bytes()
    }
}

/// Whether a token figure is the model's own count or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exactness {
    /// Exact: the model's own BPE, equal to tiktoken's count.
    Exact(Encoding),
    /// Estimated: the model's tokenizer is not public (Anthropic); see [`Tokenizer::Anthropic`].
    Estimate,
}

impl Exactness {
    /// A short label: `o200k_base`, `cl100k_base` or `estimate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact(encoding) => encoding.as_str(),
            Self::Estimate => "estimate",
        }
    }
}

/// A token count and what kind of figure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenCount {
    /// The number of tokens.
    pub tokens: u64,
    /// Exact or estimated.
    pub exactness: Exactness,
}

/// What [`Tokenizer::count_to`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The whole text was counted: this is its figure.
    Whole(u64),
    /// Counting stopped at this figure, reached by a prefix: the whole text has at least as
    /// many. [`Tokenizer::count_rest`] finishes the count from where it stopped.
    AtLeast(u64, CountedPrefix),
}

/// Where a count stopped early: the pieces the whole text's pre-tokenization found in its first
/// `bytes` (which end where a piece ends) make `base` tokens of the encoding, before any scaling.
///
/// A piece is found from its start on, never from what lies before it, so the pieces of the
/// rest of the text are the whole text's pieces after `bytes`: the rest's count plus `base` is
/// the whole count, exactly. (Not so the prefix on its own: its last piece can end otherwise
/// without the text after it, as `\s+(?!\S)` looks ahead.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedPrefix {
    /// Length of the counted prefix, in bytes (a character boundary).
    pub bytes: usize,
    /// Its token count under the encoding.
    pub base: usize,
}

/// How tokens are counted for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tokenizer {
    /// An OpenAI model: exact counts with its encoding.
    OpenAi(Encoding),
    /// An Anthropic model: `ceil(cl100k_base count × 1.10)`. Claude's tokenizer is not public;
    /// the factor is the one upstream Headroom's provider side uses (docs/upstream.md §P3),
    /// which keeps the estimate content-aware (code, JSON and prose tokenize differently),
    /// unlike a characters-per-token rule.
    Anthropic,
}

/// Numerator and denominator of the Anthropic calibration factor (1.10).
const ANTHROPIC_FACTOR: (u64, u64) = (11, 10);

impl Tokenizer {
    /// The tokenizer for `model` as named in a request body. OpenAI: `gpt-4o*`, `gpt-4.1*`,
    /// `gpt-4.5*`, `gpt-5*`, `o1*`, `o3*`, `o4*`, `chatgpt-*`, `codex*` and unknown names use
    /// o200k_base (every current OpenAI model does); `gpt-4*` (other) and `gpt-3.5*` use
    /// cl100k_base. Names starting with `claude` (any provider prefix such as
    /// `anthropic/` or `us.anthropic.` is ignored) are Anthropic.
    pub fn for_model(model: &str) -> Tokenizer {
        let model = model.trim().to_ascii_lowercase();
        let base = model
            .rsplit(['/', '.'])
            .find(|s| !s.is_empty())
            .unwrap_or("");
        if model.contains("claude") || base.starts_with("claude") {
            return Tokenizer::Anthropic;
        }
        let name = model.rsplit('/').next().unwrap_or(&model);
        let o200k = [
            "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt", "codex",
        ];
        if o200k.iter().any(|p| name.starts_with(p)) {
            return Tokenizer::OpenAi(Encoding::O200kBase);
        }
        if name.starts_with("gpt-4") || name.starts_with("gpt-3.5") {
            return Tokenizer::OpenAi(Encoding::Cl100kBase);
        }
        Tokenizer::OpenAi(Encoding::O200kBase)
    }

    /// What kind of figure [`Tokenizer::count`] gives.
    pub fn exactness(self) -> Exactness {
        match self {
            Self::OpenAi(encoding) => Exactness::Exact(encoding),
            Self::Anthropic => Exactness::Estimate,
        }
    }

    /// Counts the tokens of `text`.
    pub fn count(self, text: &str) -> TokenCount {
        TokenCount {
            tokens: self.scale(to_u64(self.encoding().count(text))),
            exactness: self.exactness(),
        }
    }

    /// Counts the tokens of `text` until the figure reaches `floor`: the whole count when it
    /// stays below (or the text ends first), else a figure of at least `floor` that the whole
    /// count is not below. A decision that holds for every count from `floor` up needs no more
    /// (issue 18: the token gate of a large output that shrinks is settled by a prefix).
    pub fn count_to(self, text: &str, floor: u64) -> Counted {
        let (base, stopped) = self
            .encoding()
            .count_while(text, |total| self.scale(to_u64(total)) < floor);
        let tokens = self.scale(to_u64(base));
        match stopped {
            None => Counted::Whole(tokens),
            Some(prefix) => Counted::AtLeast(tokens, prefix),
        }
    }

    /// The whole count of `text` when `prefix` of it was counted already (by
    /// [`Tokenizer::count_to`] on the same text): what [`Tokenizer::count`] gives, without
    /// counting the prefix again (issue 18: the token gate counts a prefix before the request
    /// leaves, and the exact figure is settled after it).
    pub fn count_rest(self, text: &str, prefix: CountedPrefix) -> TokenCount {
        let rest = text.get(prefix.bytes..).unwrap_or_default();
        let base = prefix.base.saturating_add(self.encoding().count(rest));
        TokenCount {
            tokens: self.scale(to_u64(base)),
            exactness: self.exactness(),
        }
    }

    /// The encoding counts are made with (for Anthropic, the one the estimate scales).
    pub fn encoding(self) -> Encoding {
        match self {
            Self::OpenAi(encoding) => encoding,
            Self::Anthropic => Encoding::Cl100kBase,
        }
    }

    /// Turns a count made with [`Tokenizer::encoding`] into this tokenizer's figure. Sums of
    /// many small pieces are scaled once, so the estimate's rounding is not repeated.
    pub fn scale(self, base: u64) -> u64 {
        match self {
            Self::OpenAi(_) => base,
            Self::Anthropic => {
                let (num, den) = ANTHROPIC_FACTOR;
                base.saturating_mul(num).div_ceil(den)
            }
        }
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A count stopped early names where it stopped and the figure it had there, and
        /// finishing from there gives the whole count: for texts whose pieces meet in
        /// every way the pre-tokenizers tell apart (spaces before words and punctuation, line
        /// breaks after punctuation and slashes, contractions, digit runs, Unicode letters,
        /// marks and whitespace).
        #[test]
        fn a_count_finished_from_its_prefix_is_the_whole_count(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "hello", " world", "Foo", "BAR", "'s", "'LL", " ", "   ", "\t", "\n", "\r\n",
                    "\n\n  ", ".", "/", "{\"", "\":", " =>", "12345", "7", "é", "日本", "\u{301}",
                    "\u{a0}", "ǅ", "😀", "x", "=\n/", "--",
                ]),
                0..60,
            ),
            floor in 1u64..40,
        ) {
            let text: String = parts.concat();
            for tokenizer in [
                Tokenizer::OpenAi(Encoding::O200kBase),
                Tokenizer::OpenAi(Encoding::Cl100kBase),
                Tokenizer::Anthropic,
            ] {
                let whole = tokenizer.count(&text).tokens;
                match tokenizer.count_to(&text, floor) {
                    Counted::AtLeast(n, prefix) => {
                        prop_assert!(text.is_char_boundary(prefix.bytes), "{:?}", prefix);
                        prop_assert_eq!(tokenizer.scale(to_u64(prefix.base)), n);
                        prop_assert_eq!(tokenizer.count_rest(&text, prefix).tokens, whole);
                    }
                    Counted::Whole(n) => prop_assert_eq!(n, whole),
                }
            }
        }
    }

    #[test]
    fn known_counts() {
        // Reference values from tiktoken.
        assert_eq!(Encoding::O200kBase.count("hello world"), 2);
        assert_eq!(Encoding::Cl100kBase.count("hello world"), 2);
        assert_eq!(Encoding::O200kBase.count(""), 0);
        assert_eq!(
            Encoding::Cl100kBase.count("The quick brown fox jumps over the lazy dog."),
            10
        );
    }

    #[test]
    fn picks_tokenizers_by_model() {
        use Encoding::*;
        for (model, expected) in [
            ("gpt-4o-mini", Tokenizer::OpenAi(O200kBase)),
            ("gpt-4.1", Tokenizer::OpenAi(O200kBase)),
            ("gpt-5-codex", Tokenizer::OpenAi(O200kBase)),
            ("o3-mini", Tokenizer::OpenAi(O200kBase)),
            ("gpt-4-turbo", Tokenizer::OpenAi(Cl100kBase)),
            ("gpt-3.5-turbo", Tokenizer::OpenAi(Cl100kBase)),
            ("claude-sonnet-4-5", Tokenizer::Anthropic),
            ("us.anthropic.claude-3-7-sonnet", Tokenizer::Anthropic),
            ("something-else", Tokenizer::OpenAi(O200kBase)),
        ] {
            assert_eq!(Tokenizer::for_model(model), expected, "{model}");
        }
        let count = Tokenizer::Anthropic.count("hello world");
        assert_eq!(count.tokens, 3);
        assert_eq!(count.exactness, Exactness::Estimate);
    }

    #[test]
    fn count_to_stops_at_the_floor_and_never_above_the_whole_count() {
        let text = "fn main() { println!(\"hello, world\"); }\n".repeat(200)
            + "2026-12-06T10:00:00Z ERROR db timeout after 30s\n";
        for tokenizer in [
            Tokenizer::OpenAi(Encoding::O200kBase),
            Tokenizer::OpenAi(Encoding::Cl100kBase),
            Tokenizer::Anthropic,
        ] {
            let whole = tokenizer.count(&text).tokens;
            assert_eq!(tokenizer.count_to(&text, whole + 1), Counted::Whole(whole));
            assert_eq!(tokenizer.count_to(&text, u64::MAX), Counted::Whole(whole));
            for floor in [1, 7, whole / 3, whole / 2, whole - 1] {
                match tokenizer.count_to(&text, floor) {
                    Counted::AtLeast(n, prefix) => {
                        assert!(
                            n >= floor && n <= whole,
                            "{tokenizer:?} {floor}: {n} of {whole}"
                        );
                        // A prefix: stopped within a piece or two of the floor.
                        assert!(n < floor + 64, "{tokenizer:?} {floor}: {n}");
                        assert!(prefix.bytes <= text.len(), "{tokenizer:?} {floor}");
                        assert_eq!(tokenizer.count_rest(&text, prefix).tokens, whole);
                    }
                    Counted::Whole(n) => assert_eq!(n, whole, "{tokenizer:?} {floor}"),
                }
            }
            assert_eq!(tokenizer.count_to("", 1), Counted::Whole(0));
        }
    }

    /// Upstream's tokenizer fixtures (gpt-4o-mini = o200k_base) must match exactly.
    #[test]
    fn upstream_tokenizer_fixtures() {
        let Some(dir) = crate::pipeline::fixtures::dir("tokenizer") else {
            return;
        };
        let mut checked = 0;
        for (name, case) in crate::pipeline::fixtures::load(&dir) {
            let text = case["input"].as_str().unwrap();
            let expected = case["output"].as_u64().unwrap();
            let got = to_u64(Encoding::O200kBase.count(text));
            assert_eq!(got, expected, "{name}");
            checked += 1;
        }
        println!("tokenizer fixtures: {checked}/{checked} match");
        assert!(checked >= 40);
    }
}
