//! Lossless normalisation of plain text and code: what changes no meaning for a reader.
//! Text: ANSI escape sequences removed, CRLF made LF, trailing spaces and tabs removed, runs of
//! more than one blank line collapsed to one. Code: only ANSI, CRLF and trailing whitespace
//! (blank lines can matter to a diff or a line number a model quotes).

/// How much to normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalise {
    /// Plain text, logs and search results.
    Text,
    /// Source code.
    Code,
}

/// Normalises `text`; `None` when nothing changes.
pub fn normalise(text: &str, mode: Normalise) -> Option<String> {
    let stripped = strip_ansi(text);
    let mut out = String::with_capacity(stripped.len());
    let mut blank_run = 0usize;
    let mut lines = stripped.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches(['\r', ' ', '\t']);
        if line.is_empty() {
            blank_run += 1;
        } else {
            blank_run = 0;
        }
        let last = lines.peek().is_none();
        if mode == Normalise::Text && blank_run > 1 && !last {
            continue;
        }
        out.push_str(line);
        if !last {
            out.push('\n');
        }
    }
    (out != text).then_some(out)
}

/// Removes ANSI CSI (`ESC [ ... final`) and OSC (`ESC ] ... BEL|ST`) sequences.
pub fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(0x1b, text.as_bytes()).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalises_without_losing_words() {
        let text = "a  \r\nb\t\n\n\n\nc\u{1b}[31mred\u{1b}[0m\n";
        assert_eq!(
            normalise(text, Normalise::Text).unwrap(),
            "a\nb\n\nc red\n".replace("c red", "cred")
        );
        assert_eq!(normalise("x\n\n\ny", Normalise::Code), None);
        assert_eq!(normalise("clean\n", Normalise::Text), None);
        let once = normalise(text, Normalise::Text).unwrap();
        assert_eq!(normalise(&once, Normalise::Text), None);
    }
}
