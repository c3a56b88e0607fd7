//! Removing the usage-only chunk the filter itself asked for (it set
//! `stream_options.include_usage` on a stream that had not): an SSE event is forwarded once it
//! is complete, and dropped when it is that chunk, so only an incomplete event's bytes ever
//! wait, until the next chunk completes it.

use super::{UsageParser, without_ranges};

/// The response bytes held back while a usage-only chunk may still be forming.
#[derive(Debug, Default)]
pub struct UsageStrip {
    /// Bytes received but not forwarded yet.
    held: Vec<u8>,
    /// Offset in the response body of `held[0]`.
    held_from: u64,
}

/// What to forward in place of a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Forward {
    /// The chunk itself, unchanged.
    Chunk,
    /// These bytes instead (held bytes released, a usage-only event removed, an incomplete
    /// event kept back).
    Bytes(Vec<u8>),
}

impl UsageStrip {
    /// Feeds `chunk` to `parser` and says what to forward for it (`end`: the response ends
    /// with it, so nothing is held back).
    pub fn process(&mut self, parser: &mut UsageParser, chunk: &[u8], end: bool) -> Forward {
        let mut drop_ranges = Vec::new();
        parser.feed_with(chunk, |event| {
            if event.openai_usage_only {
                drop_ranges.push(event.range.clone());
            }
        });
        let was_holding = !self.held.is_empty();
        self.held.extend_from_slice(chunk);
        let stop = self.held_from + self.held.len() as u64;
        let cut = if end {
            stop
        } else {
            parser
                .pending_event_start()
                .unwrap_or(stop)
                .max(self.held_from)
                .min(stop)
        };
        let split = usize::try_from(cut - self.held_from).unwrap_or(0);
        let rest = self.held.split_off(split.min(self.held.len()));
        let ready = std::mem::replace(&mut self.held, rest);
        let ready_from = self.held_from;
        self.held_from = cut;
        if !was_holding && cut == stop && drop_ranges.is_empty() {
            // `ready` is this very chunk.
            Forward::Chunk
        } else {
            Forward::Bytes(without_ranges(&ready, ready_from, &drop_ranges))
        }
    }

    /// Stops stripping: the bytes held back, to go out ahead of the current chunk.
    pub fn release(self) -> Vec<u8> {
        self.held
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::api::Api;

    const CONTENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    const USAGE_ONLY: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    /// Forwards `chunks` through a strip; returns what the client receives and the usage read.
    fn client_sees(chunks: &[&[u8]]) -> (Vec<u8>, Option<crate::usage::Usage>) {
        let mut parser = UsageParser::for_content_type(Api::OpenAiChat, b"text/event-stream");
        let mut strip = UsageStrip::default();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            match strip.process(&mut parser, chunk, i + 1 == chunks.len()) {
                Forward::Chunk => out.extend_from_slice(chunk),
                Forward::Bytes(bytes) => out.extend_from_slice(&bytes),
            }
        }
        (out, parser.finish())
    }

    #[test]
    fn the_usage_only_event_is_removed_and_still_read() {
        let (seen, usage) = client_sees(&[CONTENT, USAGE_ONLY, DONE]);
        assert_eq!(seen, [CONTENT, DONE].concat());
        assert_eq!(usage.unwrap().input_tokens, Some(5));
    }

    #[test]
    fn an_event_split_across_chunks_waits_for_its_end() {
        let whole = [CONTENT, USAGE_ONLY, DONE].concat();
        for cut in 1..whole.len() {
            let (seen, usage) = client_sees(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(seen, [CONTENT, DONE].concat(), "cut at {cut}");
            assert!(usage.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn complete_events_without_usage_pass_as_they_are() {
        let mut parser = UsageParser::for_content_type(Api::OpenAiChat, b"text/event-stream");
        let mut strip = UsageStrip::default();
        assert_eq!(strip.process(&mut parser, CONTENT, false), Forward::Chunk);
        let half = &CONTENT[..10];
        assert_eq!(
            strip.process(&mut parser, half, false),
            Forward::Bytes(Vec::new())
        );
        assert_eq!(strip.release(), half);
    }
}
