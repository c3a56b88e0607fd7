//! Whitespace-only minification: removes insignificant whitespace from a JSON object or array
//! and changes nothing else (key order, numbers, escapes and duplicate keys stay byte for byte).

use super::{DEFAULT_MAX_DEPTH, is_ws, validate};

/// Minifies `text` if it is a valid JSON object or array (surrounding whitespace allowed),
/// nested at most [`DEFAULT_MAX_DEPTH`] deep; `None` otherwise.
pub fn minify(text: &str) -> Option<String> {
    minify_bounded(text, DEFAULT_MAX_DEPTH)
}

/// [`minify`] with an explicit nesting limit.
pub fn minify_bounded(text: &str, max_depth: u32) -> Option<String> {
    let first = text.bytes().find(|&b| !is_ws(b))?;
    if first != b'{' && first != b'[' {
        return None;
    }
    // Validate the original: dropping whitespace from invalid text can make it valid ("[1 2]").
    validate(text.as_bytes(), max_depth).ok()?;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut run_start = 0;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'"' {
            // Copy the string through: jump past its closing quote (validated, so it exists).
            i = i.saturating_add(1);
            loop {
                let rest = bytes.get(i..)?;
                let skip = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
                i = i.saturating_add(skip);
                if bytes.get(i) == Some(&b'"') {
                    i = i.saturating_add(1);
                    break;
                }
                // Skip the escaped byte too, so `\"` does not end the string.
                i = i.saturating_add(2);
            }
        } else if is_ws(byte) {
            // Whitespace is ASCII, so the run ends on a char boundary.
            out.push_str(text.get(run_start..i)?);
            i = i.saturating_add(1);
            run_start = i;
        } else {
            i = i.saturating_add(1);
        }
    }
    out.push_str(text.get(run_start..)?);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_insignificant_whitespace() {
        let text = "\n {\r\n  \"b\" : [ 1.50 , -0E+2 , 1e400 ] ,\t\"a\" : \"x  y\\\" \\u00e9 \\n\" ,\n  \"b\": { } }\n";
        assert_eq!(
            minify(text).unwrap(),
            r#"{"b":[1.50,-0E+2,1e400],"a":"x  y\" \u00e9 \n","b":{}}"#
        );
    }

    #[test]
    fn keeps_strings_byte_for_byte() {
        let text = r#"[ "a \\" , "\\\" ]" , " \u0020 " ]"#;
        assert_eq!(minify(text).unwrap(), r#"["a \\","\\\" ]"," \u0020 "]"#);
    }

    #[test]
    fn compact_input_is_returned_unchanged() {
        let text = r#"{"a":[1,2,{"b":"c d"}]}"#;
        assert_eq!(minify(text).unwrap(), text);
    }

    #[test]
    fn rejects_scalars_and_invalid_json() {
        for text in [
            "",
            " ",
            "1",
            "\"a\"",
            "true",
            "null",
            "[1 2]",
            "{\"a\":tr ue}",
            "[1,]",
            "{} x",
            "[",
            "x[]",
        ] {
            assert_eq!(minify(text), None, "{text:?}");
        }
    }

    #[test]
    fn honours_the_depth_limit() {
        assert_eq!(minify_bounded("[ [ ] ]", 2).unwrap(), "[[]]");
        assert_eq!(minify_bounded("[ [ ] ]", 1), None);
    }
}
