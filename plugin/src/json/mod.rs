//! Strict RFC 8259 JSON handling over raw request bytes: one linear scan that validates a document
//! and records where every value lies ([`Document`]), the string codec ([`decode_string`],
//! [`encode_string`]) and whitespace-only minification ([`minify`]).
//!
//! Nothing here re-serialises a document: callers splice new bytes into byte ranges of the
//! original, so every byte they do not replace reaches the provider unchanged.

mod minify;
mod span;
pub(crate) mod special;
mod string;

pub use minify::{minify, minify_bounded};
pub use span::{Children, Document, Kind, Members, Value, validate};
pub use string::{decode_string, encode_string};

use std::fmt;

/// Nesting depth (objects and arrays) accepted when no configuration says otherwise.
pub const DEFAULT_MAX_DEPTH: u32 = 256;

/// Values one document may hold when no configuration says otherwise (2^20): its span tree
/// then takes at most 16 MiB, so no body can exhaust a VM's memory through the parser alone
/// (DESIGN.md decision 10). A large agent conversation holds tens of thousands.
pub const DEFAULT_MAX_VALUES: usize = 1 << 20;

/// What made a text invalid JSON (or a string span undecodable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes are not UTF-8 (RFC 8259 §8.1).
    InvalidUtf8,
    /// The text ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue the expected token.
    UnexpectedByte,
    /// A malformed number (leading zero, missing digits, ...).
    InvalidNumber,
    /// A backslash escape that RFC 8259 does not define, or a bad `\u` hex group.
    InvalidEscape,
    /// An unescaped control character (U+0000..U+001F) inside a string.
    ControlCharacter,
    /// A `\u` escape of a UTF-16 surrogate without its partner: valid grammar, but no text.
    LoneSurrogate,
    /// Objects and arrays nest deeper than the allowed depth.
    TooDeep,
    /// The document holds more values than [`Document::parse_bounded`] allows.
    TooManyValues,
    /// Something other than whitespace follows the top-level value.
    TrailingCharacters,
    /// The text is too long for the 32-bit offsets of the span tree.
    TooLong,
    /// A string operation was asked of a value that is not a string.
    NotAString,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::UnexpectedEnd => "unexpected end of input",
            Self::UnexpectedByte => "unexpected byte",
            Self::InvalidNumber => "invalid number",
            Self::InvalidEscape => "invalid escape",
            Self::ControlCharacter => "unescaped control character in string",
            Self::LoneSurrogate => "lone UTF-16 surrogate escape",
            Self::TooDeep => "nesting too deep",
            Self::TooManyValues => "too many values",
            Self::TrailingCharacters => "trailing characters",
            Self::TooLong => "document too long",
            Self::NotAString => "value is not a string",
        }
    }
}

/// A JSON error and the byte offset where it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Byte offset in the scanned text (for string decoding: in the string span).
    pub offset: usize,
}

impl JsonError {
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.describe(), self.offset)
    }
}

impl std::error::Error for JsonError {}

/// JSON insignificant whitespace (RFC 8259 §2): space, tab, line feed, carriage return.
pub(crate) fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}
