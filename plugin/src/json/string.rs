//! The JSON string codec: decoding a raw string span to text and encoding text as a string
//! literal, deterministically, so the same text always yields the same bytes.

use std::borrow::Cow;

use super::special::{find_special, first_flagged, special_bytes, word_at};
use super::{ErrorKind, JsonError};

/// Decodes a raw JSON string span (including its quotes) to its text: resolves every escape,
/// joins `\uXXXX` surrogate pairs and rejects lone surrogates, which have no Unicode text.
/// Borrows when the span has no escapes.
pub fn decode_string(raw: &str) -> Result<Cow<'_, str>, JsonError> {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Err(JsonError::new(ErrorKind::NotAString, 0));
    };
    let bytes = inner.as_bytes();
    let Some(first) = find_special(bytes) else {
        return Ok(Cow::Borrowed(inner));
    };
    let mut out = String::with_capacity(inner.len());
    let mut run_start = 0;
    // A string inside a string (a tool's JSON output) has an escape every few bytes: every
    // flagged byte of a word is handled before the next word is read, as in `scan_string`.
    let mut at = first;
    while let Some(word) = word_at(bytes, at) {
        let mut flags = special_bytes(word);
        let mut next = at.saturating_add(8);
        while flags != 0 {
            let i = at.saturating_add(first_flagged(flags));
            let after = unescape_at(inner, i, &mut run_start, &mut out)?;
            if after >= next {
                next = after;
                break;
            }
            // Drop the flags of the bytes the escape covers.
            flags &= u64::MAX << (8 * (after - at));
        }
        at = next;
    }
    while let Some(skip) = find_special(bytes.get(at..).unwrap_or_default()) {
        at = unescape_at(inner, at.saturating_add(skip), &mut run_start, &mut out)?;
    }
    out.push_str(inner.get(run_start..).unwrap_or_default());
    Ok(Cow::Owned(out))
}

/// Handles the special byte at `i` of a string's inside: an escape is decoded onto `out`
/// after the plain run since `run_start`, and the offset after it returned (the next run's
/// start); a quote or control character is an error. Always inlined: an out-of-line call per
/// escape cost more in the guest than the word walk saved.
#[inline(always)]
fn unescape_at(
    inner: &str,
    i: usize,
    run_start: &mut usize,
    out: &mut String,
) -> Result<usize, JsonError> {
    let bytes = inner.as_bytes();
    // Offsets in errors are relative to the raw span, whose first byte is the quote.
    let error = |kind| JsonError::new(kind, i.saturating_add(1));
    match bytes.get(i) {
        Some(b'\\') => {
            // Escapes are ASCII, so every run between them falls on char boundaries.
            out.push_str(inner.get(*run_start..i).unwrap_or_default());
            let (ch, len) = decode_escape(bytes, i).map_err(error)?;
            out.push(ch);
            *run_start = i.saturating_add(len);
            Ok(*run_start)
        }
        Some(b'"') => Err(error(ErrorKind::UnexpectedByte)),
        _ => Err(error(ErrorKind::ControlCharacter)),
    }
}

/// Decodes the escape whose backslash is at `pos`; returns the character and the escape length.
/// Always inlined into the decoder's loop (`\uXXXX` goes out of line).
#[inline(always)]
fn decode_escape(bytes: &[u8], pos: usize) -> Result<(char, usize), ErrorKind> {
    let ch = match bytes.get(pos.saturating_add(1)) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => return decode_unicode_escape(bytes, pos),
        Some(_) => return Err(ErrorKind::InvalidEscape),
        None => return Err(ErrorKind::UnexpectedEnd),
    };
    Ok((ch, 2))
}

/// `\uXXXX`, or a `\uD8xx\uDCxx` surrogate pair, at `pos`.
fn decode_unicode_escape(bytes: &[u8], pos: usize) -> Result<(char, usize), ErrorKind> {
    let high = hex4(bytes, pos.saturating_add(2))?;
    let code = match high {
        0xD800..=0xDBFF => {
            let low_at = pos.saturating_add(6);
            let is_escape_u =
                bytes.get(low_at..low_at.saturating_add(2)) == Some(b"\\u".as_slice());
            if !is_escape_u {
                return Err(ErrorKind::LoneSurrogate);
            }
            let low = hex4(bytes, low_at.saturating_add(2))?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(ErrorKind::LoneSurrogate);
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return char::from_u32(code)
                .map(|ch| (ch, 12))
                .ok_or(ErrorKind::LoneSurrogate);
        }
        0xDC00..=0xDFFF => return Err(ErrorKind::LoneSurrogate),
        code => code,
    };
    char::from_u32(code)
        .map(|ch| (ch, 6))
        .ok_or(ErrorKind::InvalidEscape)
}

fn hex4(bytes: &[u8], pos: usize) -> Result<u32, ErrorKind> {
    let digits = bytes
        .get(pos..pos.saturating_add(4))
        .ok_or(ErrorKind::UnexpectedEnd)?;
    digits.iter().try_fold(0u32, |acc, &digit| {
        let value = char::from(digit)
            .to_digit(16)
            .ok_or(ErrorKind::InvalidEscape)?;
        Ok((acc << 4) | value)
    })
}

/// Encodes `text` as a JSON string literal: escapes `"` and `\`, writes control characters as
/// `\b \t \n \f \r` or lowercase `\u00XX`, and everything else (including `/`, DEL and non-ASCII)
/// as raw UTF-8. This is also the shortest escaping JSON allows.
pub fn encode_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len().saturating_add(2));
    out.push('"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    while let Some(skip) = find_special(bytes.get(run_start..).unwrap_or_default()) {
        let i = run_start.saturating_add(skip);
        let byte = bytes.get(i).copied().unwrap_or_default();
        // Escaped bytes are ASCII, so `run_start..i` always falls on char boundaries.
        out.push_str(text.get(run_start..i).unwrap_or_default());
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0C => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            _ => {
                out.push_str("\\u00");
                out.push(hex_digit(byte >> 4));
                out.push(hex_digit(byte & 0x0F));
            }
        }
        run_start = i.saturating_add(1);
    }
    out.push_str(text.get(run_start..).unwrap_or_default());
    out.push('"');
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode(raw: &str) -> Result<String, ErrorKind> {
        decode_string(raw).map(Cow::into_owned).map_err(|e| e.kind)
    }

    #[test]
    fn decodes_plain_strings_without_allocating() {
        assert!(matches!(
            decode_string(r#""abc""#).unwrap(),
            Cow::Borrowed("abc")
        ));
        assert_eq!(decode(r#""""#).unwrap(), "");
        assert_eq!(decode("\"caf\u{e9}\"").unwrap(), "caf\u{e9}");
    }

    #[test]
    fn decodes_every_escape() {
        assert_eq!(
            decode(r#""a\"b\\c\/d\be\ff\ng\rh\ti""#).unwrap(),
            "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti"
        );
        assert_eq!(
            decode(r#""\u0041\u00e9\u00E9\u20ac""#).unwrap(),
            "A\u{e9}\u{e9}\u{20ac}"
        );
        assert_eq!(decode(r#""\u0000""#).unwrap(), "\u{0}");
        assert_eq!(decode(r#""x\uD83D\uDE00y""#).unwrap(), "x\u{1F600}y");
        assert_eq!(decode(r#""\udbff\udfff""#).unwrap(), "\u{10FFFF}");
    }

    #[test]
    fn rejects_lone_surrogates() {
        for raw in [
            r#""\uD800""#,
            r#""\uD800x""#,
            r#""\uD800\n""#,
            r#""\uD800\u0041""#,
            r#""\uD800\uD800""#,
            r#""\uDC00""#,
            r#""\uDE00\uD83D""#,
        ] {
            assert_eq!(decode(raw).unwrap_err(), ErrorKind::LoneSurrogate, "{raw}");
        }
    }

    #[test]
    fn rejects_malformed_spans() {
        assert_eq!(decode("abc").unwrap_err(), ErrorKind::NotAString);
        assert_eq!(decode("\"").unwrap_err(), ErrorKind::NotAString);
        assert_eq!(decode(r#""\x""#).unwrap_err(), ErrorKind::InvalidEscape);
        assert_eq!(decode(r#""\u12""#).unwrap_err(), ErrorKind::UnexpectedEnd);
        assert_eq!(decode(r#""\u12g4""#).unwrap_err(), ErrorKind::InvalidEscape);
        assert_eq!(decode(r#""a"b""#).unwrap_err(), ErrorKind::UnexpectedByte);
        assert_eq!(decode("\"a\nb\"").unwrap_err(), ErrorKind::ControlCharacter);
        assert_eq!(decode("\"\\").unwrap_err(), ErrorKind::NotAString);
    }

    #[test]
    fn encodes_deterministically_with_minimal_escapes() {
        assert_eq!(encode_string(""), r#""""#);
        assert_eq!(encode_string("plain"), r#""plain""#);
        assert_eq!(encode_string("a\"b\\c/d"), r#""a\"b\\c/d""#);
        assert_eq!(
            encode_string("\u{8}\t\n\u{c}\r\u{0}\u{1f}\u{7f}"),
            "\"\\b\\t\\n\\f\\r\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(
            encode_string("caf\u{e9} \u{1F600} \u{2028}"),
            "\"caf\u{e9} \u{1F600} \u{2028}\""
        );
    }

    proptest::proptest! {
        /// Strings made of escapes of every kind, runs of plain text between them of every
        /// length (the dense `\"` of a document inside a string included) and non-ASCII
        /// text: decoded as serde_json decodes them, and rejected where it rejects them.
        #[test]
        fn decodes_as_serde_json_does(
            parts in proptest::collection::vec(
                "(\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-f]|\\\\uD83D\\\\uDE00|\\\\x|[a-z:,{}]{0,9}|é|日本|\"|\n)",
                0..24,
            )
        ) {
            let raw = format!("\"{}\"", parts.concat());
            let ours = decode_string(&raw).ok().map(Cow::into_owned);
            let theirs: Option<String> = serde_json::from_str(&raw).ok();
            proptest::prop_assert_eq!(ours, theirs, "{}", raw);
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("\u{e9}\u{1F600}\u{FFFF}");
        let encoded = encode_string(&text);
        assert_eq!(decode(&encoded).unwrap(), text);
        assert!(crate::json::validate(encoded.as_bytes(), 1).is_ok());
    }
}
