//! The incremental JSON path scanner: follows the structure of a JSON text fed in chunks split
//! at any byte, and keeps a copy of only the values found at a few object-key paths (such as
//! `usage` or `message.usage`), each up to its own byte cap. Everything else is skipped
//! without being stored, so memory does not grow with the text.
//!
//! The scanner is lenient: it tracks strings, escapes and nesting but does not validate the
//! grammar. A captured value is re-parsed strictly by [`crate::json::Document`] when it is
//! read, so malformed input can only make a capture unreadable, never wrong in structure.

use crate::json::is_ws;

/// Containers nested deeper than this stop the scan: what was captured so far is kept.
const MAX_DEPTH: usize = crate::json::DEFAULT_MAX_DEPTH as usize;

/// Bytes of a key compared with target keys; longer keys never match.
const KEY_BYTES: usize = 24;

/// A value the scanner keeps: the object keys leading to it from the top-level value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Keys from the root, e.g. `[b"message", b"usage"]`. Matched on the raw (still escaped)
    /// key bytes; provider keys are plain ASCII.
    pub path: &'static [&'static [u8]],
    /// Largest capture kept, in bytes; a longer value is dropped (see [`Capture::Overflowed`]).
    pub cap: Cap,
}

/// How many bytes a [`Target`] may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// At most this many bytes; an overflow is expected and not worth counting (used to tell
    /// an empty array from any other value).
    Small(usize),
    /// The configured value cap ([`super::Limits::max_value_bytes`]); an overflow is counted.
    Value,
}

/// What the scanner holds for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture<'a> {
    /// No complete value was seen at the path.
    None,
    /// The raw bytes of the last complete value at the path (duplicate keys: the last wins).
    Complete(&'a [u8]),
    /// The last value at the path was longer than the target's cap.
    Overflowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Capturing,
    Complete,
    Overflowed,
}

#[derive(Debug)]
struct Slot {
    buf: Vec<u8>,
    state: SlotState,
    cap: usize,
}

/// The lexical state between bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Outside strings and scalars: structural bytes and whitespace.
    Between,
    /// Inside a string: an object key or a value; `escape` after a backslash.
    Str { key: bool, escape: bool },
    /// Inside a number or literal (`true`, `false`, `null`, or garbage).
    Scalar,
}

/// An open container.
#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// In an object: the next string is a key (after `{` and `,`).
    expect_key: bool,
    /// The raw bytes of the current member's key (first [`KEY_BYTES`]).
    key: [u8; KEY_BYTES],
    /// Length of the key; `KEY_BYTES + 1` when it is longer than `key` holds.
    key_len: usize,
}

impl Frame {
    fn new(object: bool) -> Self {
        Self {
            object,
            expect_key: object,
            key: [0; KEY_BYTES],
            key_len: 0,
        }
    }

    fn key_is(&self, key: &[u8]) -> bool {
        self.object && self.key.get(..self.key_len).is_some_and(|k| k == key)
    }

    fn push_key(&mut self, bytes: &[u8]) {
        let end = self.key_len.saturating_add(bytes.len());
        match self.key.get_mut(self.key_len..end) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.key_len = end;
            }
            None => self.key_len = KEY_BYTES + 1,
        }
    }
}

/// An incremental scanner over one JSON text that keeps the values at its targets.
#[derive(Debug)]
pub(crate) struct PathScanner {
    targets: &'static [Target],
    slots: Vec<Slot>,
    /// The slot being filled and the container depth its value started at.
    active: Option<(usize, usize)>,
    /// Bytes go into the active slot (it has not overflowed).
    copying: bool,
    lex: Lex,
    frames: Vec<Frame>,
    /// Longest target path: keys of deeper frames are not recorded.
    key_depth: usize,
    /// Nesting went past [`MAX_DEPTH`]: the rest of the text is ignored.
    stopped: bool,
    /// Values dropped for exceeding a counted cap (see [`Cap::Value`]).
    overflows: u64,
}

impl PathScanner {
    /// A scanner for `targets`; [`Cap::Value`] targets keep at most `value_cap` bytes.
    pub(crate) fn new(targets: &'static [Target], value_cap: usize) -> Self {
        let slots = targets
            .iter()
            .map(|target| Slot {
                buf: Vec::new(),
                state: SlotState::Empty,
                cap: match target.cap {
                    Cap::Small(cap) => cap,
                    Cap::Value => value_cap,
                },
            })
            .collect();
        Self {
            targets,
            slots,
            active: None,
            copying: false,
            lex: Lex::Between,
            frames: Vec::new(),
            key_depth: targets.iter().map(|t| t.path.len()).max().unwrap_or(0),
            stopped: false,
            overflows: 0,
        }
    }

    /// Forgets the text scanned so far (keeps the buffers' memory and the overflow count), to
    /// scan a new text.
    pub(crate) fn reset(&mut self) {
        for slot in &mut self.slots {
            slot.buf.clear();
            slot.state = SlotState::Empty;
        }
        self.active = None;
        self.copying = false;
        self.lex = Lex::Between;
        self.frames.clear();
        self.stopped = false;
    }

    /// What is held for target number `index` (in the order given to [`PathScanner::new`]).
    pub(crate) fn capture(&self, index: usize) -> Capture<'_> {
        match self.slots.get(index) {
            Some(slot) if slot.state == SlotState::Complete => Capture::Complete(&slot.buf),
            Some(slot) if slot.state == SlotState::Overflowed => Capture::Overflowed,
            _ => Capture::None,
        }
    }

    /// Values dropped so far for being longer than the value cap.
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Scans the next bytes of the text.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.stopped {
            rest = match self.lex {
                Lex::Str { key, escape: true } => {
                    let (head, tail) = split_first(rest);
                    self.take(head, key);
                    self.lex = Lex::Str { key, escape: false };
                    tail
                }
                Lex::Str { key, escape: false } => {
                    match rest.iter().position(|&b| b == b'"' || b == b'\\') {
                        None => {
                            self.take(rest, key);
                            &[]
                        }
                        Some(at) => {
                            let (run, tail) = split(rest, at);
                            self.take(run, key);
                            let (special, tail) = split_first(tail);
                            self.capture_bytes(special);
                            if special == b"\\" {
                                if key {
                                    self.key_bytes(special);
                                }
                                self.lex = Lex::Str { key, escape: true };
                            } else {
                                self.lex = Lex::Between;
                                if key {
                                    if let Some(frame) = self.frames.last_mut() {
                                        frame.expect_key = false;
                                    }
                                } else {
                                    self.value_end();
                                }
                            }
                            tail
                        }
                    }
                }
                Lex::Scalar => match rest.iter().position(|&b| is_delimiter(b)) {
                    None => {
                        self.capture_bytes(rest);
                        &[]
                    }
                    Some(at) => {
                        // The delimiter itself is scanned next, in `Between`.
                        let (run, tail) = split(rest, at);
                        self.capture_bytes(run);
                        self.lex = Lex::Between;
                        self.value_end();
                        tail
                    }
                },
                Lex::Between => {
                    // Structural bytes one by one until a string or scalar starts.
                    let mut used = 0;
                    for byte in rest {
                        used += 1;
                        self.structural(*byte);
                        if self.lex != Lex::Between || self.stopped {
                            break;
                        }
                    }
                    split(rest, used).1
                }
            };
        }
    }

    /// One byte outside strings and scalars.
    fn structural(&mut self, byte: u8) {
        let raw = std::slice::from_ref(&byte);
        match byte {
            b'{' | b'[' => {
                self.value_start();
                self.capture_bytes(raw);
                if self.frames.len() >= MAX_DEPTH {
                    self.stopped = true;
                } else {
                    self.frames.push(Frame::new(byte == b'{'));
                }
            }
            b'}' | b']' => {
                self.capture_bytes(raw);
                if self.frames.pop().is_some() {
                    self.value_end();
                }
            }
            b'"' => {
                let key = self
                    .frames
                    .last()
                    .is_some_and(|frame| frame.object && frame.expect_key);
                if key {
                    if let Some(frame) = self.frames.last_mut() {
                        frame.key_len = 0;
                    }
                } else {
                    self.value_start();
                }
                self.capture_bytes(raw);
                self.lex = Lex::Str { key, escape: false };
            }
            b',' => {
                self.capture_bytes(raw);
                if let Some(frame) = self.frames.last_mut() {
                    frame.expect_key = frame.object;
                }
            }
            b':' => self.capture_bytes(raw),
            _ if is_ws(byte) => self.capture_bytes(raw),
            _ => {
                self.value_start();
                self.capture_bytes(raw);
                self.lex = Lex::Scalar;
            }
        }
    }

    /// String content: part of the capture, and of the key when it is one.
    fn take(&mut self, bytes: &[u8], key: bool) {
        self.capture_bytes(bytes);
        if key {
            self.key_bytes(bytes);
        }
    }

    fn key_bytes(&mut self, bytes: &[u8]) {
        if self.frames.len() <= self.key_depth
            && let Some(frame) = self.frames.last_mut()
        {
            frame.push_key(bytes);
        }
    }

    /// A value begins at the current position: start capturing it when its path is a target's.
    fn value_start(&mut self) {
        if self.active.is_some() {
            return;
        }
        let depth = self.frames.len();
        let found = self.targets.iter().position(|target| {
            target.path.len() == depth
                && depth > 0
                && self
                    .frames
                    .iter()
                    .zip(target.path)
                    .all(|(frame, key)| frame.key_is(key))
        });
        if let Some(index) = found
            && let Some(slot) = self.slots.get_mut(index)
        {
            slot.buf.clear();
            slot.state = SlotState::Capturing;
            self.active = Some((index, depth));
            self.copying = true;
        }
    }

    /// A value ended at the current position: complete the capture when it was the captured one.
    fn value_end(&mut self) {
        if let Some((index, depth)) = self.active
            && depth == self.frames.len()
        {
            self.active = None;
            self.copying = false;
            if let Some(slot) = self.slots.get_mut(index)
                && slot.state == SlotState::Capturing
            {
                slot.state = SlotState::Complete;
            }
        }
    }

    #[inline(always)]
    fn capture_bytes(&mut self, bytes: &[u8]) {
        if self.copying
            && let Some((index, _)) = self.active
        {
            self.capture_into(index, bytes);
        }
    }

    fn capture_into(&mut self, index: usize, bytes: &[u8]) {
        let counted = self
            .targets
            .get(index)
            .is_some_and(|target| target.cap == Cap::Value);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        match slot.state {
            SlotState::Capturing if slot.buf.len().saturating_add(bytes.len()) <= slot.cap => {
                slot.buf.extend_from_slice(bytes);
            }
            SlotState::Capturing => {
                slot.state = SlotState::Overflowed;
                slot.buf.clear();
                self.copying = false;
                if counted {
                    self.overflows = self.overflows.saturating_add(1);
                }
            }
            _ => {}
        }
    }
}

/// `bytes` cut before `at` (everything when `at` is past the end).
pub(crate) fn split(bytes: &[u8], at: usize) -> (&[u8], &[u8]) {
    bytes.split_at_checked(at).unwrap_or((bytes, &[]))
}

/// The first byte of `bytes` (as a slice) and the rest.
pub(crate) fn split_first(bytes: &[u8]) -> (&[u8], &[u8]) {
    split(bytes, 1)
}

/// A byte that ends a number or literal.
fn is_delimiter(byte: u8) -> bool {
    matches!(byte, b',' | b'}' | b']' | b':' | b'"' | b'{' | b'[') || is_ws(byte)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TARGETS: &[Target] = &[
        Target {
            path: &[b"usage"],
            cap: Cap::Value,
        },
        Target {
            path: &[b"message", b"model"],
            cap: Cap::Value,
        },
        Target {
            path: &[b"choices"],
            cap: Cap::Small(8),
        },
    ];

    fn scan(text: &[u8], cap: usize) -> PathScanner {
        let mut scanner = PathScanner::new(TARGETS, cap);
        scanner.feed(text);
        scanner
    }

    #[test]
    fn captures_values_at_their_paths_only() {
        let text = br#"{"a":{"usage":{"x":1}},"usage" : {"input_tokens": 3, "s":"}\"{"} ,"message":{"model":"claude-\u00e9","usage":7},"choices":[]}"#;
        let scanner = scan(text, 1024);
        assert_eq!(
            scanner.capture(0),
            Capture::Complete(br#"{"input_tokens": 3, "s":"}\"{"}"#.as_slice())
        );
        assert_eq!(
            scanner.capture(1),
            Capture::Complete(br#""claude-\u00e9""#.as_slice())
        );
        assert_eq!(scanner.capture(2), Capture::Complete(b"[]".as_slice()));
    }

    #[test]
    fn scalars_and_the_last_duplicate_win() {
        let scanner = scan(
            br#"{"usage":12,"usage":null , "choices":[{"index":0}]}"#,
            64,
        );
        assert_eq!(scanner.capture(0), Capture::Complete(b"null".as_slice()));
        assert_eq!(scanner.capture(2), Capture::Overflowed);
        assert_eq!(scanner.overflows(), 0, "small caps are not counted");
    }

    #[test]
    fn long_values_overflow_and_are_counted() {
        let scanner = scan(br#"{"usage":{"input_tokens":1234567}}"#, 8);
        assert_eq!(scanner.capture(0), Capture::Overflowed);
        assert_eq!(scanner.overflows(), 1);
    }

    #[test]
    fn keys_in_strings_and_arrays_do_not_match() {
        let scanner = scan(
            br#"{"text":"\"usage\":{\"a\":1}","list":[{"usage":1}],"usagex":2}"#,
            64,
        );
        assert_eq!(scanner.capture(0), Capture::None);
    }

    #[test]
    fn every_split_scans_the_same() {
        let text = br#"{"message":{"model":"m\"x"},"usage":{"a":[1,2,{"b":"\\"}]},"choices":[ ]}"#;
        let whole = scan(text, 1024);
        for at in 0..=text.len() {
            let mut scanner = PathScanner::new(TARGETS, 1024);
            scanner.feed(&text[..at]);
            scanner.feed(&text[at..]);
            for index in 0..TARGETS.len() {
                assert_eq!(
                    scanner.capture(index),
                    whole.capture(index),
                    "split at {at}"
                );
            }
        }
    }

    #[test]
    fn deep_nesting_stops_the_scan() {
        let mut text = br#"{"usage":1,"x":"#.to_vec();
        text.extend(std::iter::repeat_n(b'[', 10_000));
        let scanner = scan(&text, 64);
        assert_eq!(scanner.capture(0), Capture::Complete(b"1".as_slice()));
        assert!(scanner.frames.len() <= MAX_DEPTH);
    }

    #[test]
    fn reset_forgets_the_text() {
        let mut scanner = scan(br#"{"usage":{"a":1}}"#, 64);
        scanner.reset();
        assert_eq!(scanner.capture(0), Capture::None);
        scanner.feed(br#"{"usage":2}"#);
        assert_eq!(scanner.capture(0), Capture::Complete(b"2".as_slice()));
    }
}
