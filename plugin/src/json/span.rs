//! The scanner: validates a whole document in one pass without recursion and records a flat
//! span tree (pre-order, one 16-byte node per value) so callers can walk objects and arrays and
//! replace values by byte range.

use std::borrow::Cow;
use std::ops::Range;

use super::special::{find_special, first_flagged, special_bytes, word_at};
use super::string::decode_string;
use super::{ErrorKind, JsonError, is_ws};

/// "No node" / "no key" marker in the 32-bit node fields.
const NONE: u32 = u32::MAX;

/// One value of the document. The kind is not stored: it follows from the first byte at `start`.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Offset of the value's first byte.
    start: u32,
    /// Offset just past the value's last byte.
    end: u32,
    /// Index of the next sibling in the parent container, or `NONE`.
    next: u32,
    /// Offset of the opening quote of this value's key when the parent is an object, or `NONE`.
    key: u32,
}

/// The JSON type of a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// A number, kept as its source text.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`
    Null,
}

/// A validated JSON document and the span of every value in it.
#[derive(Debug)]
pub struct Document<'a> {
    src: &'a str,
    nodes: Vec<Node>,
}

impl<'a> Document<'a> {
    /// Validates `bytes` as one strict RFC 8259 JSON text (UTF-8, no BOM, any top-level value,
    /// surrounding whitespace allowed) whose objects and arrays nest at most `max_depth` deep,
    /// and records the span tree. Linear in the input; never recurses.
    pub fn parse(bytes: &'a [u8], max_depth: u32) -> Result<Self, JsonError> {
        Self::parse_bounded(bytes, max_depth, super::DEFAULT_MAX_VALUES)
    }

    /// [`Document::parse`] with at most `max_values` values (objects, arrays, strings, numbers
    /// and literals, the top level included): a document with more is refused with
    /// [`ErrorKind::TooManyValues`] once that many are recorded, so its span tree never holds
    /// more than `16 × max_values` bytes, whatever the input.
    pub fn parse_bounded(
        bytes: &'a [u8],
        max_depth: u32,
        max_values: usize,
    ) -> Result<Self, JsonError> {
        let src = std::str::from_utf8(bytes)
            .map_err(|e| JsonError::new(ErrorKind::InvalidUtf8, e.valid_up_to()))?;
        Self::parse_str_bounded(src, max_depth, max_values)
    }

    /// [`Document::parse_bounded`] of a `str`: the same checks but the UTF-8 validation, which
    /// the type guarantees. A decoded tool output is parsed this way (its validation was 0.8 %
    /// of the JSON request path in the guest, where UTF-8 checks have no SIMD).
    pub fn parse_str_bounded(
        src: &'a str,
        max_depth: u32,
        max_values: usize,
    ) -> Result<Self, JsonError> {
        let bytes = src.as_bytes();
        check_len(bytes)?;
        let mut nodes = Vec::new();
        scan(bytes, max_depth, Some((&mut nodes, max_values)))?;
        Ok(Self { src, nodes })
    }

    /// The top-level value.
    pub fn root(&self) -> Value<'_> {
        // A successful scan always records the top-level value first.
        self.value(0).unwrap_or(Value {
            doc: self,
            index: 0,
            node: Node {
                start: 0,
                end: 0,
                next: NONE,
                key: NONE,
            },
        })
    }

    /// The scanned text.
    pub fn source(&self) -> &'a str {
        self.src
    }

    fn value(&self, index: usize) -> Option<Value<'_>> {
        let node = *self.nodes.get(index)?;
        Some(Value {
            doc: self,
            index,
            node,
        })
    }
}

/// Validates `bytes` exactly like [`Document::parse`] but records nothing.
pub fn validate(bytes: &[u8], max_depth: u32) -> Result<(), JsonError> {
    std::str::from_utf8(bytes)
        .map_err(|e| JsonError::new(ErrorKind::InvalidUtf8, e.valid_up_to()))?;
    check_len(bytes)?;
    scan(bytes, max_depth, None)
}

/// A value inside a [`Document`]: its kind, its byte span and its children.
#[derive(Debug, Clone, Copy)]
pub struct Value<'d> {
    doc: &'d Document<'d>,
    index: usize,
    node: Node,
}

impl<'d> Value<'d> {
    /// The JSON type of this value.
    pub fn kind(&self) -> Kind {
        match self.doc.src.as_bytes().get(to_usize(self.node.start)) {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// Byte range of the value in the document (a string's range includes its quotes).
    pub fn span(&self) -> Range<usize> {
        to_usize(self.node.start)..to_usize(self.node.end)
    }

    /// The value's source text, exactly as in the document.
    pub fn raw(&self) -> &'d str {
        self.doc.src.get(self.span()).unwrap_or_default()
    }

    /// The source text of this value's key (with quotes) when its parent is an object.
    pub fn key_raw(&self) -> Option<&'d str> {
        if self.node.key == NONE {
            return None;
        }
        let start = to_usize(self.node.key);
        let end = key_end(self.doc.src.as_bytes(), start, to_usize(self.node.start))?;
        self.doc.src.get(start..end)
    }

    /// The children of an object or array in document order (nothing for scalars).
    pub fn children(&self) -> Children<'d> {
        let first = self.index.saturating_add(1);
        let next = match self.kind() {
            // In pre-order the node after a container is its first child when it starts inside it.
            Kind::Object | Kind::Array => self
                .doc
                .nodes
                .get(first)
                .filter(|child| child.start < self.node.end)
                .map_or(NONE, |_| to_offset(first)),
            _ => NONE,
        };
        Children {
            doc: self.doc,
            next,
        }
    }

    /// The elements of an array (nothing for other kinds).
    pub fn elements(&self) -> Children<'d> {
        if self.kind() == Kind::Array {
            self.children()
        } else {
            Children::none(self.doc)
        }
    }

    /// The members of an object as `(raw key, value)` pairs (nothing for other kinds).
    pub fn members(&self) -> Members<'d> {
        let children = if self.kind() == Kind::Object {
            self.children()
        } else {
            Children::none(self.doc)
        };
        Members { children }
    }

    /// The member of an object named `key`. With duplicate keys the last one wins, as in most
    /// JSON parsers (serde_json, Python's json) that providers run.
    pub fn get(&self, key: &str) -> Option<Value<'d>> {
        self.members()
            .filter(|(raw, _)| raw_string_eq(raw, key))
            .last()
            .map(|(_, value)| value)
    }

    /// Whether this value is a string whose text equals `text` (after decoding escapes).
    pub fn is_str(&self, text: &str) -> bool {
        self.kind() == Kind::String && raw_string_eq(self.raw(), text)
    }

    /// The decoded text of a string value (borrowed when it has no escapes).
    pub fn decode_str(&self) -> Result<Cow<'d, str>, JsonError> {
        if self.kind() != Kind::String {
            return Err(JsonError::new(
                ErrorKind::NotAString,
                to_usize(self.node.start),
            ));
        }
        decode_string(self.raw())
    }
}

/// Iterator over the children of a container, see [`Value::children`].
/// It holds the next child's index, not the child: the walk reads each node once.
#[derive(Debug, Clone)]
pub struct Children<'d> {
    doc: &'d Document<'d>,
    /// Index of the next child, or `NONE`.
    next: u32,
}

impl<'d> Children<'d> {
    fn none(doc: &'d Document<'d>) -> Self {
        Children { doc, next: NONE }
    }
}

impl<'d> Iterator for Children<'d> {
    type Item = Value<'d>;

    fn next(&mut self) -> Option<Value<'d>> {
        let index = to_usize(self.next);
        let node = *self.doc.nodes.get(index)?;
        self.next = node.next;
        Some(Value {
            doc: self.doc,
            index,
            node,
        })
    }
}

/// Iterator over the members of an object, see [`Value::members`].
#[derive(Debug, Clone)]
pub struct Members<'d> {
    children: Children<'d>,
}

impl<'d> Iterator for Members<'d> {
    type Item = (&'d str, Value<'d>);

    fn next(&mut self) -> Option<Self::Item> {
        let value = self.children.next()?;
        Some((value.key_raw().unwrap_or_default(), value))
    }
}

/// Whether a raw string span (with quotes) decodes to `text`; compares without allocating when
/// the span has no escapes.
fn raw_string_eq(raw: &str, text: &str) -> bool {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return false;
    };
    if !inner.contains('\\') {
        return inner == text;
    }
    decode_string(raw).is_ok_and(|decoded| decoded == text)
}

/// The offset past the closing quote of the key whose opening quote is at `key` and whose
/// value starts at `value`. The scan validated the member, so only whitespace and the colon lie
/// between the two: the last `"` before the value closes the key. Found from the value's side,
/// usually one or two bytes back, instead of scanning the key again: member walks read every
/// key of every record, and rescanning them was most of their cost.
fn key_end(bytes: &[u8], key: usize, value: usize) -> Option<usize> {
    let after_open = key.checked_add(1)?;
    let between = bytes.get(after_open..value)?;
    let close = between.iter().rposition(|&b| b == b'"')?;
    Some(after_open + close + 1)
}

fn to_usize(offset: u32) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// Offsets are stored as u32 (with `NONE` reserved), which bounds a document to 4 GiB - 1.
fn check_len(bytes: &[u8]) -> Result<(), JsonError> {
    match u32::try_from(bytes.len()) {
        Ok(len) if len < NONE => Ok(()),
        _ => Err(JsonError::new(ErrorKind::TooLong, 0)),
    }
}

fn to_offset(pos: usize) -> u32 {
    // check_len guarantees every position fits; NONE is never a valid position.
    u32::try_from(pos).unwrap_or(NONE)
}

/// An open container on the scanner's explicit stack.
struct Frame {
    node: u32,
    last_child: u32,
    object: bool,
}

/// The scan shared by [`Document::parse`] and [`validate`]: an iterative state machine whose
/// explicit stack holds one frame per open container, so depth costs heap, not guest stack.
fn scan(
    bytes: &[u8],
    max_depth: u32,
    record_into: Option<(&mut Vec<Node>, usize)>,
) -> Result<(), JsonError> {
    let max_depth = usize::try_from(max_depth).unwrap_or(usize::MAX);
    let (mut nodes, max_values) = match record_into {
        Some((nodes, max)) => (Some(nodes), max),
        None => (None, usize::MAX),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = skip_ws(bytes, 0);
    let mut key = NONE;
    loop {
        // A value starts at `pos`.
        let Some(&first) = bytes.get(pos) else {
            return Err(JsonError::new(ErrorKind::UnexpectedEnd, pos));
        };
        let index = match nodes.as_deref_mut() {
            Some(nodes) if nodes.len() >= max_values => {
                return Err(JsonError::new(ErrorKind::TooManyValues, pos));
            }
            Some(nodes) => record(nodes, stack.last_mut(), pos, key),
            None => NONE,
        };
        key = NONE;
        match first {
            b'{' | b'[' => {
                if stack.len() >= max_depth {
                    return Err(JsonError::new(ErrorKind::TooDeep, pos));
                }
                let object = first == b'{';
                pos = skip_ws(bytes, pos.saturating_add(1));
                let close = if object { b'}' } else { b']' };
                if bytes.get(pos) == Some(&close) {
                    pos = pos.saturating_add(1);
                    set_end(nodes.as_deref_mut(), index, pos);
                } else {
                    stack.push(Frame {
                        node: index,
                        last_child: NONE,
                        object,
                    });
                    if object {
                        key = to_offset(pos);
                        pos = scan_key(bytes, pos)?;
                    }
                    continue;
                }
            }
            b'"' => {
                pos = scan_string(bytes, pos)?;
                set_end(nodes.as_deref_mut(), index, pos);
            }
            b't' => pos = scan_literal(bytes, pos, b"true", &mut nodes, index)?,
            b'f' => pos = scan_literal(bytes, pos, b"false", &mut nodes, index)?,
            b'n' => pos = scan_literal(bytes, pos, b"null", &mut nodes, index)?,
            b'-' | b'0'..=b'9' => {
                pos = scan_number(bytes, pos)?;
                set_end(nodes.as_deref_mut(), index, pos);
            }
            _ => return Err(JsonError::new(ErrorKind::UnexpectedByte, pos)),
        }
        // A value just ended: close finished containers until a ',' starts the next value.
        loop {
            pos = skip_ws(bytes, pos);
            let Some(top) = stack.last() else {
                return if pos == bytes.len() {
                    Ok(())
                } else {
                    Err(JsonError::new(ErrorKind::TrailingCharacters, pos))
                };
            };
            let close = if top.object { b'}' } else { b']' };
            match bytes.get(pos) {
                Some(b',') => {
                    pos = skip_ws(bytes, pos.saturating_add(1));
                    if top.object {
                        key = to_offset(pos);
                        pos = scan_key(bytes, pos)?;
                    }
                    break;
                }
                Some(&byte) if byte == close => {
                    let node = top.node;
                    stack.pop();
                    pos = pos.saturating_add(1);
                    set_end(nodes.as_deref_mut(), node, pos);
                }
                Some(_) => return Err(JsonError::new(ErrorKind::UnexpectedByte, pos)),
                None => return Err(JsonError::new(ErrorKind::UnexpectedEnd, pos)),
            }
        }
    }
}

/// Appends a node for the value starting at `pos` and links it after its previous sibling.
fn record(nodes: &mut Vec<Node>, parent: Option<&mut Frame>, pos: usize, key: u32) -> u32 {
    let index = to_offset(nodes.len());
    nodes.push(Node {
        start: to_offset(pos),
        end: to_offset(pos),
        next: NONE,
        key,
    });
    if let Some(parent) = parent {
        if let Some(previous) = nodes.get_mut(to_usize(parent.last_child)) {
            previous.next = index;
        }
        parent.last_child = index;
    }
    index
}

fn set_end(nodes: Option<&mut Vec<Node>>, index: u32, end: usize) {
    if let Some(node) = nodes.and_then(|nodes| nodes.get_mut(to_usize(index))) {
        node.end = to_offset(end);
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|&b| is_ws(b)) {
        pos = pos.saturating_add(1);
    }
    pos
}

/// Scans `"key" :` starting at `pos` and returns the position of the member's value.
fn scan_key(bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    match bytes.get(pos) {
        Some(b'"') => {}
        Some(_) => return Err(JsonError::new(ErrorKind::UnexpectedByte, pos)),
        None => return Err(JsonError::new(ErrorKind::UnexpectedEnd, pos)),
    }
    let pos = skip_ws(bytes, scan_string(bytes, pos)?);
    match bytes.get(pos) {
        Some(b':') => Ok(skip_ws(bytes, pos.saturating_add(1))),
        Some(_) => Err(JsonError::new(ErrorKind::UnexpectedByte, pos)),
        None => Err(JsonError::new(ErrorKind::UnexpectedEnd, pos)),
    }
}

/// Scans the string whose opening quote is at `pos`; returns the offset past its closing quote.
/// UTF-8 validity is checked once for the whole text by the callers.
///
/// Eight bytes at a time: every `"`, `\` and control character of a word is flagged at once
/// and handled in order without reloading the word, so strings dense in escapes (a JSON
/// document inside a JSON string, `\"` every few bytes) cost one load per eight bytes.
pub(super) fn scan_string(bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    let mut at = pos.saturating_add(1);
    while let Some(word) = word_at(bytes, at) {
        let mut flags = special_bytes(word);
        let mut next = at.saturating_add(8);
        while flags != 0 {
            let i = at.saturating_add(first_flagged(flags));
            match bytes.get(i) {
                Some(b'"') => return Ok(i.saturating_add(1)),
                Some(b'\\') => {
                    // One-character escapes inline (most are); `\u` and errors out of line.
                    let after = match bytes.get(i.saturating_add(1)) {
                        Some(&b) if is_short_escape(b) => i.saturating_add(2),
                        _ => scan_escape(bytes, i)?,
                    };
                    if after >= next {
                        next = after;
                        break;
                    }
                    // Drop the flags of the bytes the escape covers.
                    flags &= u64::MAX << (8 * (after - at));
                }
                _ => return Err(JsonError::new(ErrorKind::ControlCharacter, i)),
            }
        }
        at = next;
    }
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        let Some(skip) = find_special(rest) else {
            return Err(JsonError::new(ErrorKind::UnexpectedEnd, bytes.len()));
        };
        at = at.saturating_add(skip);
        match bytes.get(at) {
            Some(b'"') => return Ok(at.saturating_add(1)),
            Some(b'\\') => at = scan_escape(bytes, at)?,
            _ => return Err(JsonError::new(ErrorKind::ControlCharacter, at)),
        }
    }
}

/// Whether `\` followed by `byte` is a complete escape (RFC 8259's one-character escapes).
const fn is_short_escape(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
}

/// Checks the escape whose backslash is at `pos`; returns the offset after it.
fn scan_escape(bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    match bytes.get(pos.saturating_add(1)) {
        Some(&b) if is_short_escape(b) => Ok(pos.saturating_add(2)),
        Some(b'u') => {
            let digits = pos.saturating_add(2)..pos.saturating_add(6);
            match bytes.get(digits) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(pos.saturating_add(6)),
                Some(_) => Err(JsonError::new(ErrorKind::InvalidEscape, pos)),
                None => Err(JsonError::new(ErrorKind::UnexpectedEnd, bytes.len())),
            }
        }
        Some(_) => Err(JsonError::new(ErrorKind::InvalidEscape, pos)),
        None => Err(JsonError::new(ErrorKind::UnexpectedEnd, bytes.len())),
    }
}

fn scan_literal(
    bytes: &[u8],
    pos: usize,
    literal: &[u8],
    nodes: &mut Option<&mut Vec<Node>>,
    index: u32,
) -> Result<usize, JsonError> {
    let end = pos.saturating_add(literal.len());
    match bytes.get(pos..end) {
        Some(found) if found == literal => {
            set_end(nodes.as_deref_mut(), index, end);
            Ok(end)
        }
        Some(_) => Err(JsonError::new(ErrorKind::UnexpectedByte, pos)),
        None => Err(JsonError::new(ErrorKind::UnexpectedEnd, bytes.len())),
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; returns the offset after the number.
fn scan_number(bytes: &[u8], pos: usize) -> Result<usize, JsonError> {
    let digits_from = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i = i.saturating_add(1);
        }
        i
    };
    let required_digits = |i: usize| {
        let end = digits_from(i);
        if end == i {
            Err(JsonError::new(ErrorKind::InvalidNumber, i))
        } else {
            Ok(end)
        }
    };
    let mut i = pos;
    if bytes.get(i) == Some(&b'-') {
        i = i.saturating_add(1);
    }
    i = match bytes.get(i) {
        Some(b'0') => i.saturating_add(1),
        Some(b'1'..=b'9') => digits_from(i),
        _ => return Err(JsonError::new(ErrorKind::InvalidNumber, i)),
    };
    if bytes.get(i) == Some(&b'.') {
        i = required_digits(i.saturating_add(1))?;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i = i.saturating_add(1);
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i = i.saturating_add(1);
        }
        i = required_digits(i)?;
    }
    Ok(i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document<'_>, JsonError> {
        Document::parse(text.as_bytes(), 256)
    }

    fn error_kind(text: &str) -> ErrorKind {
        parse(text).unwrap_err().kind
    }

    /// Pieces of string content: plain runs, every escape (valid or not), raw control
    /// characters and quotes, multi-byte characters; enough of them to cross word boundaries.
    fn string_piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z ]{0,9}",
            Just(r#"\""#.to_owned()),
            Just(r"\\".to_owned()),
            Just(r"\n".to_owned()),
            Just(r"\/".to_owned()),
            Just(r"\u00e9".to_owned()),
            Just(r"\u12G4".to_owned()),
            Just(r"\x".to_owned()),
            Just(r"\".to_owned()),
            Just("\n".to_owned()),
            Just("\u{1f}".to_owned()),
            Just(r#"""#.to_owned()),
            Just("é😀".to_owned()),
        ]
    }

    proptest::proptest! {
        /// The word-at-a-time string scan accepts exactly the strings serde_json accepts, and
        /// ends each where it ends.
        #[test]
        fn string_scan_agrees_with_serde_json(
            pieces in proptest::collection::vec(string_piece(), 0..24),
            pad in 0usize..8,
        ) {
            let content: String = pieces.concat();
            let text = format!("[{}\"{content}\",1]", " ".repeat(pad));
            let ours = parse(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{}", text);
            if let (Ok(doc), Ok(value)) = (ours, theirs) {
                let first = doc.root().children().next().unwrap();
                proptest::prop_assert_eq!(first.decode_str().unwrap(), value[0].as_str().unwrap());
                proptest::prop_assert_eq!(first.span().start, 1 + pad);
            }
        }
    }

    proptest::proptest! {
        /// A member's raw key, found back from its value, is the key the forward scan ends,
        /// whatever the key holds (escaped quotes, backslashes) and whatever whitespace
        /// surrounds the colon.
        #[test]
        fn a_members_key_is_the_scanned_key(
            members in proptest::collection::vec(
                (
                    proptest::collection::vec(
                        proptest::sample::select(vec!["a", r#"\""#, r"\\", " ", "é", r"\u0022", ":"]),
                        0..6,
                    ),
                    proptest::sample::select(vec!["", " ", "\t\n "]),
                    proptest::sample::select(vec!["", " ", "  "]),
                    proptest::sample::select(vec!["1", r#""v""#, r#""\"""#, "[]", r#"{"k":2}"#]),
                ),
                1..6,
            ),
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(key, before, after, value)| format!("\"{}\"{before}:{after}{value}", key.concat()))
                .collect();
            let text = format!("{{{}}}", body.join(","));
            let doc = parse(&text).unwrap();
            let bytes = text.as_bytes();
            for (key, value) in doc.root().members() {
                let start = to_usize(value.node.key);
                let scanned = &text[start..scan_string(bytes, start).unwrap()];
                proptest::prop_assert_eq!(key, scanned);
            }
            proptest::prop_assert_eq!(doc.root().members().count(), members.len());
        }
    }

    #[test]
    fn accepts_valid_documents() {
        for text in [
            "{}",
            "[]",
            " \t\r\n{ } \n",
            "0",
            "-0",
            "-0.5e+10",
            "1E-2",
            "123456789012345678901234567890",
            "\"\"",
            "true",
            "false",
            "null",
            r#"{"a":[1,2,{"b":null}],"c":"d","e":true}"#,
            r#"["\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"]"#,
            "[\"caf\u{e9} \u{1F600}\"]",
            r#"{"a":1,"a":2}"#,
        ] {
            assert!(parse(text).is_ok(), "{text:?} should be valid");
            assert!(
                validate(text.as_bytes(), 256).is_ok(),
                "{text:?} should validate"
            );
        }
    }

    #[test]
    fn rejects_invalid_documents() {
        for (text, kind) in [
            ("", ErrorKind::UnexpectedEnd),
            ("   ", ErrorKind::UnexpectedEnd),
            ("{", ErrorKind::UnexpectedEnd),
            ("[1,", ErrorKind::UnexpectedEnd),
            (r#"{"a":"#, ErrorKind::UnexpectedEnd),
            (r#"{"a""#, ErrorKind::UnexpectedEnd),
            (r#"["abc"#, ErrorKind::UnexpectedEnd),
            (r#"["\u12"#, ErrorKind::UnexpectedEnd),
            ("[1,]", ErrorKind::UnexpectedByte),
            (r#"{"a":1,}"#, ErrorKind::UnexpectedByte),
            ("{a:1}", ErrorKind::UnexpectedByte),
            (r#"{"a" 1}"#, ErrorKind::UnexpectedByte),
            ("[1 2]", ErrorKind::UnexpectedByte),
            ("[1}", ErrorKind::UnexpectedByte),
            ("01", ErrorKind::TrailingCharacters),
            ("[01]", ErrorKind::UnexpectedByte),
            ("1.", ErrorKind::InvalidNumber),
            (".5", ErrorKind::UnexpectedByte),
            ("-", ErrorKind::InvalidNumber),
            ("+1", ErrorKind::UnexpectedByte),
            ("1e", ErrorKind::InvalidNumber),
            ("1e+", ErrorKind::InvalidNumber),
            ("NaN", ErrorKind::UnexpectedByte),
            ("tru", ErrorKind::UnexpectedEnd),
            ("trux", ErrorKind::UnexpectedByte),
            ("nulll", ErrorKind::TrailingCharacters),
            ("{} {}", ErrorKind::TrailingCharacters),
            (r#"["\x"]"#, ErrorKind::InvalidEscape),
            (r#"["\u12G4"]"#, ErrorKind::InvalidEscape),
            ("[\"a\nb\"]", ErrorKind::ControlCharacter),
            ("[\"\t\"]", ErrorKind::ControlCharacter),
            ("\u{feff}{}", ErrorKind::UnexpectedByte),
            ("[1]\u{a0}", ErrorKind::TrailingCharacters),
        ] {
            assert_eq!(error_kind(text), kind, "{text:?}");
            assert_eq!(
                validate(text.as_bytes(), 256).unwrap_err().kind,
                kind,
                "{text:?}"
            );
        }
        let not_utf8 = b"[\"\xff\"]";
        assert_eq!(
            Document::parse(not_utf8, 256).unwrap_err().kind,
            ErrorKind::InvalidUtf8
        );
    }

    #[test]
    fn every_truncation_of_a_document_is_rejected() {
        let text = r#"{"a":[1,-2.5e3,{"b":null,"c":"x\"y\u00e9"}],"d":true,"e":false}"#;
        assert!(parse(text).is_ok());
        for end in 0..text.len() {
            assert!(parse(&text[..end]).is_err(), "prefix {end} accepted");
        }
    }

    #[test]
    fn depth_limit_counts_nested_containers() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(Document::parse(nested(3).as_bytes(), 3).is_ok());
        assert_eq!(
            Document::parse(nested(4).as_bytes(), 3).unwrap_err().kind,
            ErrorKind::TooDeep
        );
        assert_eq!(
            Document::parse(b"{}", 0).unwrap_err().kind,
            ErrorKind::TooDeep
        );
        assert!(Document::parse(b"1", 0).is_ok());
        // Depth far beyond any call stack is rejected, not overflowed.
        let deep = nested(1_000_000);
        assert_eq!(
            validate(deep.as_bytes(), 256).unwrap_err().kind,
            ErrorKind::TooDeep
        );
        // With an unbounded limit the iterative scanner still copes.
        assert!(validate(deep.as_bytes(), u32::MAX).is_ok());
    }

    #[test]
    fn records_spans_keys_and_children() {
        let text = r#" { "a" : [ 1 , "x\"" , { } ] , "b\u0063" : null } "#;
        let doc = parse(text).unwrap();
        let root = doc.root();
        assert_eq!(root.kind(), Kind::Object);
        assert_eq!(root.raw(), &text[1..text.len() - 1]);
        let members: Vec<_> = root.members().map(|(k, v)| (k, v.kind())).collect();
        assert_eq!(
            members,
            vec![(r#""a""#, Kind::Array), (r#""b\u0063""#, Kind::Null)]
        );
        let a = root.get("a").unwrap();
        let elements: Vec<_> = a.elements().map(|v| (v.kind(), v.raw())).collect();
        assert_eq!(
            elements,
            vec![
                (Kind::Number, "1"),
                (Kind::String, r#""x\"""#),
                (Kind::Object, "{ }")
            ]
        );
        assert_eq!(a.elements().nth(1).unwrap().decode_str().unwrap(), "x\"");
        assert!(a.elements().nth(2).unwrap().children().next().is_none());
        assert_eq!(root.get("bc").unwrap().kind(), Kind::Null);
        assert!(root.get("missing").is_none());
        assert!(a.get("a").is_none());
        assert_eq!(&text[a.span()], a.raw());
        assert_eq!(
            a.elements().next().unwrap().decode_str().unwrap_err().kind,
            ErrorKind::NotAString
        );
    }

    #[test]
    fn duplicate_keys_resolve_to_the_last() {
        let doc = parse(r#"{"role":"user","role":"tool"}"#).unwrap();
        assert!(doc.root().get("role").unwrap().is_str("tool"));
    }

    #[test]
    fn scalar_and_nested_siblings_link_correctly() {
        let doc = parse(r#"[[1,[2]],[],3,{"k":[4]}]"#).unwrap();
        let raws: Vec<_> = doc.root().elements().map(|v| v.raw()).collect();
        assert_eq!(raws, vec!["[1,[2]]", "[]", "3", r#"{"k":[4]}"#]);
        let scalar = doc.root().elements().nth(2).unwrap();
        assert!(scalar.children().next().is_none());
        assert!(doc.root().members().next().is_none());
    }

    #[test]
    fn is_str_compares_decoded_text() {
        let doc = parse(r#"["tool","\u0074ool",1]"#).unwrap();
        let values: Vec<_> = doc.root().elements().map(|v| v.is_str("tool")).collect();
        assert_eq!(values, vec![true, true, false]);
    }
}
