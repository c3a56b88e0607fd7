//! Accounting that no byte sent depends on, left until after the body is forwarded (issue 18).
//!
//! A compressed output's token gate needs only enough of the original's count to pass: the
//! gate holds for every count from some floor up, so [`Tokenizer::count_to`] stops there. The
//! exact figure the reports, metrics and replay record carry (counted on from where the gate
//! stopped, [`Tokenizer::count_rest`]), and the waste signals of the outputs a request adds,
//! are owed: [`Unsettled`] keeps what they need and
//! [`Unsettled::settle`] pays them, with the same results as the request path would have had.
//! The filter settles at the end of the exchange, so the request reaches the upstream sooner
//! at the same CPU; [`super::compress_request`] settles at once.

use super::hash::ContentHash;
use super::request::{Outcome, PipelineHost, timed};
use super::store::{ReplayEntry, Sent};
use super::waste::{WasteTokens, content_signals};
use crate::tokens::{Counted, CountedPrefix, Tokenizer};

/// The smallest token count of an original for which the gate "`after` tokens saves at least
/// `min_savings` of it (and at least one token)" holds, when it holds for every larger count
/// too; `None` when that cannot be relied on (a share so close to 1 that float rounding could
/// break monotonicity), and the original must be counted whole.
pub(crate) fn gate_floor(after: u64, min_savings: f64) -> Option<u64> {
    // `b - ceil(b·m)` never decreases in b: `ceil(b·m)` grows by at most one a token, and the
    // float rounding of `b·m` (under 2^-21 for counts below 2^32) could make that two only for
    // an m within 2^-21 of 1.
    if !(0.0..=0.999).contains(&min_savings) || after >= 1 << 31 {
        return None;
    }
    // From `(after + 1) / (1 - m)` up the gate holds (`b - ceil(b·m) > b·(1 - m) - 1 ≥ after`);
    // the least such count lies between `after` (never passes) and there.
    let mut high = (((after + 1) as f64 / (1.0 - min_savings)).ceil() as u64).max(after + 1);
    let mut grown = 0;
    while !gate_passes(high, after, min_savings) {
        grown += 1;
        if grown > 64 {
            return None;
        }
        high = high.saturating_add(high / 64 + 1);
    }
    let mut low = after;
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if gate_passes(mid, after, min_savings) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

/// The token gate: `after` tokens are kept in place of `before` only when they save at least
/// `min_savings` of them, and at least one.
pub(crate) fn gate_passes(before: u64, after: u64, min_savings: f64) -> bool {
    let needed = (before as f64 * min_savings.clamp(0.0, 1.0)).ceil() as u64;
    after < before && before - after >= needed.max(1)
}

/// Counts an original for the gate: whole, or (`early`) only up to the gate's floor.
pub(crate) fn count_for_gate(
    tokenizer: Tokenizer,
    text: &str,
    after: u64,
    min_savings: f64,
    early: bool,
) -> Counted {
    match early.then(|| gate_floor(after, min_savings)).flatten() {
        Some(floor) => match tokenizer.count_to(text, floor) {
            Counted::AtLeast(n, prefix) if !gate_passes(n, after, min_savings) => {
                Counted::Whole(tokenizer.count_rest(text, prefix).tokens)
            }
            counted => counted,
        },
        None => Counted::Whole(tokenizer.count(text).tokens),
    }
}

/// The waste signals of an output new in the conversation (timed as `waste_signals`), kept
/// under `cache` for a later replay of it.
pub(crate) fn examine_new_output(
    host: &mut dyn PipelineHost,
    tokenizer: Tokenizer,
    text: &str,
    counted: Option<u64>,
    parsed_json: bool,
    cache: Option<ContentHash>,
) -> WasteTokens {
    let found = timed(host, "waste_signals", || {
        content_signals(text, tokenizer, counted, parsed_json)
    });
    if let Some(cache) = cache {
        host.replay().put(cache, &found.encode());
    }
    found
}

/// What is owed for one tool output of a request.
#[derive(Debug)]
struct Owed {
    /// Its index in [`Outcome::blocks`].
    block: usize,
    /// The original text.
    text: String,
    /// Its exact count and its replay record, when only a prefix was counted.
    count: Option<OwedRecord>,
    /// Its waste signals, when it is new in the conversation and they were not cached.
    waste: Option<OwedWaste>,
}

/// A compressed output's replay record, waiting for the original's count.
#[derive(Debug)]
struct OwedRecord {
    key: ContentHash,
    candidate: String,
    /// The report's reason after the count (`" tokens -> …"`).
    reason_tail: String,
    /// What the token gate counted before the request left: the count goes on from there.
    counted: CountedPrefix,
}

/// What a compressed output's exact count still needs: the report's reason after the count
/// (`" tokens -> …"`) and the prefix the token gate counted.
pub(crate) type OwedCount = (String, CountedPrefix);

/// A new output's waste signals.
#[derive(Debug)]
struct OwedWaste {
    parsed_json: bool,
    /// Where the signals are cached for a replay of the same output.
    cache: Option<ContentHash>,
}

/// The accounting a request still owes, made by
/// [`compress_request_unsettled`](super::compress_request_unsettled).
#[derive(Debug, Default)]
pub struct Unsettled {
    owed: Vec<Owed>,
}

impl Unsettled {
    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// Bytes of text kept until settled.
    pub fn retained_bytes(&self) -> usize {
        self.owed
            .iter()
            .map(|o| o.text.len() + o.count.as_ref().map_or(0, |c| c.candidate.len()))
            .sum()
    }

    /// Owes `block`'s exact count, of which the gate counted `counted`, and replay record.
    pub(crate) fn owe_count(
        &mut self,
        block: usize,
        text: &str,
        key: ContentHash,
        candidate: String,
        (reason_tail, counted): OwedCount,
    ) {
        if let Some(owed) = self.entry(block, text) {
            owed.count = Some(OwedRecord {
                key,
                candidate,
                reason_tail,
                counted,
            });
        }
    }

    /// Owes `block`'s waste signals.
    pub(crate) fn owe_waste(
        &mut self,
        block: usize,
        text: &str,
        parsed_json: bool,
        cache: Option<ContentHash>,
    ) {
        if let Some(owed) = self.entry(block, text) {
            owed.waste = Some(OwedWaste { parsed_json, cache });
        }
    }

    /// The owed entry of `block`: blocks are owed in order, so one owing both a count and its
    /// waste signals is the last.
    fn entry(&mut self, block: usize, text: &str) -> Option<&mut Owed> {
        if self.owed.last().is_none_or(|o| o.block != block) {
            self.owed.push(Owed {
                block,
                text: text.to_owned(),
                count: None,
                waste: None,
            });
        }
        self.owed.last_mut()
    }

    /// Pays what is owed into `outcome` (its blocks' original counts and reasons, its waste)
    /// and `host`'s replay store.
    pub fn settle(self, outcome: &mut Outcome, host: &mut dyn PipelineHost) {
        let tokenizer = outcome.tokenizer;
        for owed in self.owed {
            let Some(report) = outcome.blocks.get_mut(owed.block) else {
                continue;
            };
            if let Some(record) = owed.count {
                let before = timed(host, "token_count", || {
                    tokenizer.count_rest(&owed.text, record.counted).tokens
                });
                report.tokens_before = Some(before);
                report.reason = format!("{before}{}", record.reason_tail);
                let entry = ReplayEntry {
                    hash: report.hash,
                    original_len: u64::try_from(owed.text.len()).unwrap_or(u64::MAX),
                    sent: Sent::Replaced {
                        text: record.candidate,
                        tokens_before: before,
                        tokens_after: report.tokens_after.unwrap_or(0),
                    },
                };
                host.replay().put(record.key, &entry.encode());
            }
            if let Some(waste) = owed.waste {
                let counted = report.tokens_before;
                let found = examine_new_output(
                    host,
                    tokenizer,
                    &owed.text,
                    counted,
                    waste.parsed_json,
                    waste.cache,
                );
                outcome.waste.merge(&found);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tokens::Encoding;
    use proptest::prelude::*;

    proptest! {
        /// The floor is the least passing count, and every count from it up passes: a prefix
        /// reaching it decides the gate as the whole count would.
        #[test]
        fn the_gate_holds_from_its_floor_up(after in 0u64..2_000_000, m in 0.0f64..=0.999, extra in 0u64..10_000) {
            let floor = gate_floor(after, m).unwrap();
            prop_assert!(gate_passes(floor, after, m));
            prop_assert!(floor == 0 || !gate_passes(floor - 1, after, m));
            prop_assert!(gate_passes(floor + extra, after, m));
        }
    }

    #[test]
    fn shares_too_close_to_one_are_counted_whole() {
        assert_eq!(gate_floor(10, 0.9995), None);
        assert_eq!(gate_floor(10, -0.1), None);
        assert_eq!(gate_floor(10, f64::NAN), None);
        assert_eq!(gate_floor(1 << 31, 0.05), None);
        assert_eq!(gate_floor(0, 0.0), Some(1));
        assert_eq!(gate_floor(95, 0.05), Some(100));
    }

    #[test]
    fn a_count_for_the_gate_decides_as_the_whole_count() {
        let tokenizer = Tokenizer::OpenAi(Encoding::O200kBase);
        let text = "{\"id\": 1, \"status\": \"ok\"}, ".repeat(500);
        let whole = tokenizer.count(&text).tokens;
        for after in [0, 10, whole / 2, whole - 1, whole, whole + 5] {
            for m in [0.0, 0.05, 0.5, 0.999, 1.0] {
                let early = count_for_gate(tokenizer, &text, after, m, true);
                let passes = match early {
                    Counted::Whole(n) => {
                        assert_eq!(n, whole);
                        gate_passes(n, after, m)
                    }
                    Counted::AtLeast(n, prefix) => {
                        assert!(n <= whole && gate_passes(n, after, m));
                        assert_eq!(tokenizer.count_rest(&text, prefix).tokens, whole);
                        true
                    }
                };
                assert_eq!(passes, gate_passes(whole, after, m), "after {after}, m {m}");
                assert_eq!(
                    count_for_gate(tokenizer, &text, after, m, false),
                    Counted::Whole(whole)
                );
            }
        }
    }
}
