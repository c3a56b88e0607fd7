//! The incremental `text/event-stream` reader: splits a stream fed in chunks (cut at any byte,
//! including between the `\r` and `\n` of a line ending) into events, following the WHATWG
//! HTML "event stream interpretation" rules, and knows each event's byte range in the stream.
//!
//! It stores no event: the value of every `data:` line is handed on as it arrives (lines of
//! one event joined by `\n`, the one space after `data:` removed), and the event's end is
//! announced when its blank line is read. Only the first bytes of a line's field name are
//! kept, so memory stays constant however long a line or an event is.

use std::ops::Range;

use super::scan::split;

/// Where the data of the stream's events goes.
pub(crate) trait EventSink {
    /// The next bytes of the current event's data (the `\n` between two `data:` lines included).
    fn data(&mut self, bytes: &[u8]);
    /// The current event is complete; `range` is its span in the stream, from the first byte
    /// of its first field line to just past the line ending of the blank line that ends it.
    fn dispatch(&mut self, range: Range<u64>);
    /// The current event had no `data:` line and ends without being dispatched.
    fn discard(&mut self);
}

/// Where the reader is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the first byte of a line.
    Start,
    /// In a field name (its first bytes are in `name`).
    Name,
    /// Just after `data:`: one space is dropped here.
    DataStart,
    /// In the value of a `data:` line.
    Data,
    /// In a comment or a field this reader ignores.
    Skip,
}

/// The byte-order mark a stream may start with (WHATWG: removed once, at the start).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental event-stream reader.
#[derive(Debug)]
pub(crate) struct SseReader {
    /// Stream offset of the next byte.
    pos: u64,
    line: Line,
    /// The first bytes of the current field name; `name_len` past 4 means "not `data`".
    name: [u8; 4],
    name_len: usize,
    /// The previous byte was a `\r` line ending: a `\n` right after it belongs to it.
    after_cr: bool,
    /// Offset of the current event's first field line, once one started.
    event_start: Option<u64>,
    /// `data:` lines in the current event.
    data_lines: u64,
    /// A blank line ended with `\r` completed the event ending at this offset; it is
    /// dispatched when the next byte shows whether a `\n` belongs to that line ending.
    pending_end: Option<u64>,
    /// The stream's first bytes were checked for a byte-order mark.
    bom_done: bool,
}

impl SseReader {
    /// A reader at the start of a stream.
    pub(crate) fn new() -> Self {
        Self {
            pos: 0,
            line: Line::Start,
            name: [0; 4],
            name_len: 0,
            after_cr: false,
            event_start: None,
            data_lines: 0,
            pending_end: None,
            bom_done: false,
        }
    }

    /// Offset of the first byte of the event not yet dispatched, when one has begun.
    pub(crate) fn pending_event_start(&self) -> Option<u64> {
        self.event_start
    }

    /// Reads the next chunk of the stream.
    pub(crate) fn feed(&mut self, chunk: &[u8], sink: &mut impl EventSink) {
        let mut rest = chunk;
        // WHATWG: one leading U+FEFF is not part of the stream.
        while !self.bom_done {
            let Some((&byte, tail)) = rest.split_first() else {
                return;
            };
            let expected = usize::try_from(self.pos)
                .ok()
                .and_then(|at| BOM.get(at))
                .copied();
            if expected != Some(byte) {
                self.bom_done = true;
                break;
            }
            self.pos += 1;
            self.bom_done = self.pos >= 3;
            rest = tail;
        }
        while let Some(&byte) = rest.first() {
            let used = match self.line {
                Line::Start => {
                    self.line_start(byte, sink);
                    1
                }
                Line::Name => {
                    self.name_byte(byte, sink);
                    1
                }
                Line::DataStart => {
                    if byte == b' ' {
                        self.line = Line::Data;
                        1
                    } else {
                        self.line = Line::Data;
                        0
                    }
                }
                Line::Data | Line::Skip => {
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n' || b == b'\r')
                        .unwrap_or(rest.len());
                    let (value, tail) = split(rest, end);
                    if self.line == Line::Data && !value.is_empty() {
                        sink.data(value);
                    }
                    match tail.first() {
                        Some(&ending) => {
                            self.line_end(ending);
                            end.saturating_add(1)
                        }
                        None => end,
                    }
                }
            };
            rest = split(rest, used).1;
            self.pos = self.pos.saturating_add(to_u64(used));
        }
    }

    /// The stream ended: an event still pending is dispatched, and so is an event whose blank
    /// line never came if it has data (lenient: a cut stream keeps what it had).
    pub(crate) fn finish(&mut self, sink: &mut impl EventSink) {
        if let Some(end) = self.pending_end.take() {
            self.dispatch(end, sink);
        } else if self.data_lines > 0 {
            self.dispatch(self.pos, sink);
        }
    }

    fn line_start(&mut self, byte: u8, sink: &mut impl EventSink) {
        if self.after_cr {
            self.after_cr = false;
            if byte == b'\n' {
                if let Some(end) = self.pending_end.take() {
                    self.dispatch(end.saturating_add(1), sink);
                }
                return;
            }
        }
        if let Some(end) = self.pending_end.take() {
            self.dispatch(end, sink);
        }
        match byte {
            b'\n' | b'\r' => {
                // A blank line ends the event.
                if self.data_lines == 0 {
                    self.event_start = None;
                    sink.discard();
                } else if byte == b'\r' {
                    self.pending_end = Some(self.pos.saturating_add(1));
                } else {
                    self.dispatch(self.pos.saturating_add(1), sink);
                }
                self.after_cr = byte == b'\r';
            }
            b':' => self.line = Line::Skip,
            _ => {
                self.event_start.get_or_insert(self.pos);
                self.name_len = 0;
                self.line = Line::Name;
                self.name_byte(byte, sink);
            }
        }
    }

    fn name_byte(&mut self, byte: u8, sink: &mut impl EventSink) {
        match byte {
            b':' if self.is_data() => {
                self.begin_data_line(sink);
                self.line = Line::DataStart;
            }
            b':' => self.line = Line::Skip,
            b'\n' | b'\r' => {
                // A field without a colon has an empty value.
                if self.is_data() {
                    self.begin_data_line(sink);
                }
                self.line_end(byte);
            }
            _ => {
                if let Some(slot) = self.name.get_mut(self.name_len) {
                    *slot = byte;
                }
                self.name_len = self.name_len.saturating_add(1);
            }
        }
    }

    fn is_data(&self) -> bool {
        self.name_len == 4 && &self.name == b"data"
    }

    fn begin_data_line(&mut self, sink: &mut impl EventSink) {
        if self.data_lines > 0 {
            sink.data(b"\n");
        }
        self.data_lines = self.data_lines.saturating_add(1);
    }

    /// A `\r` or `\n` ended a non-blank line.
    fn line_end(&mut self, byte: u8) {
        self.line = Line::Start;
        self.after_cr = byte == b'\r';
    }

    fn dispatch(&mut self, end: u64, sink: &mut impl EventSink) {
        let start = self.event_start.take().unwrap_or(end);
        self.data_lines = 0;
        sink.dispatch(start..end);
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Records every event as (range, data).
    #[derive(Default)]
    struct Recorder {
        data: Vec<u8>,
        events: Vec<(Range<u64>, String)>,
        discarded: usize,
    }

    impl EventSink for Recorder {
        fn data(&mut self, bytes: &[u8]) {
            self.data.extend_from_slice(bytes);
        }
        fn dispatch(&mut self, range: Range<u64>) {
            let data = String::from_utf8(std::mem::take(&mut self.data)).unwrap();
            self.events.push((range, data));
        }
        fn discard(&mut self) {
            self.discarded += 1;
            self.data.clear();
        }
    }

    fn read(chunks: &[&[u8]]) -> Recorder {
        let mut reader = SseReader::new();
        let mut sink = Recorder::default();
        for chunk in chunks {
            reader.feed(chunk, &mut sink);
        }
        reader.finish(&mut sink);
        sink
    }

    fn events(text: &str) -> Vec<(Range<u64>, String)> {
        let whole = read(&[text.as_bytes()]).events;
        for at in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(at);
            assert_eq!(read(&[a, b]).events, whole, "split at {at} of {text:?}");
        }
        whole
    }

    #[test]
    fn fields_comments_and_multi_line_data() {
        let text = ": hello\nevent: x\ndata: a\ndata:b\ndata\ndata:  c\nid: 1\n: c\n\n";
        assert_eq!(
            events(text),
            vec![(8..text.len() as u64, "a\nb\n\n c".to_owned())]
        );
    }

    #[test]
    fn line_endings_cr_lf_and_crlf() {
        for text in [
            "data: 1\n\ndata: 2\n\n",
            "data: 1\r\rdata: 2\r\r",
            "data: 1\r\n\r\ndata: 2\r\n\r\n",
        ] {
            let got = events(text);
            let half = (text.len() / 2) as u64;
            assert_eq!(
                got,
                vec![(0..half, "1".to_owned()), (half..2 * half, "2".to_owned())],
                "{text:?}"
            );
        }
        // Mixed: `\r` then `\n` is one line ending, `\n` then `\r` two.
        assert_eq!(
            events("data: 1\n\rdata: 2\r\n\n"),
            vec![(0..9, "1".to_owned()), (9..19, "2".to_owned())]
        );
    }

    #[test]
    fn only_the_data_field_is_data() {
        let got = events("datum: x\ndata2: y\nDATA: z\ndat: w\n\ndata: ok\n\n");
        assert_eq!(got, vec![(34..44, "ok".to_owned())]);
    }

    #[test]
    fn events_without_data_are_discarded_not_dispatched() {
        let sink = read(&[b"event: ping\n\n\n\n: c\n\ndata: 1\n\n"]);
        assert_eq!(sink.events, vec![(20..29, "1".to_owned())]);
        assert_eq!(sink.discarded, 4);
    }

    #[test]
    fn a_leading_bom_is_skipped_once() {
        let text = "\u{feff}data: 1\n\n\u{feff}data: 2\n\n";
        // The second BOM starts a field name that is not `data`.
        assert_eq!(events(text), vec![(3..12, "1".to_owned())]);
        assert_eq!(events("\u{feff}"), vec![]);
        // A broken BOM: its first byte is dropped, the rest read.
        assert_eq!(
            read(&[b"\xEFdata: 1\n\n"]).events,
            vec![(1..10, "1".to_owned())]
        );
    }

    #[test]
    fn the_end_of_the_stream_dispatches_what_is_pending() {
        assert_eq!(
            events("data: 1\n\ndata: 2"),
            vec![(0..9, "1".to_owned()), (9..16, "2".to_owned())]
        );
        assert_eq!(events("data: 1\r\r"), vec![(0..9, "1".to_owned())]);
        let mut reader = SseReader::new();
        let mut sink = Recorder::default();
        reader.feed(b"data: 1\n\ndata", &mut sink);
        assert_eq!(reader.pending_event_start(), Some(9));
        reader.feed(b": 2\r\r", &mut sink);
        assert_eq!(reader.pending_event_start(), Some(9));
        assert_eq!(sink.events.len(), 1);
        reader.feed(b"\n", &mut sink);
        assert_eq!(reader.pending_event_start(), None);
        assert_eq!(sink.events[1], (9..19, "2".to_owned()));
    }
}
