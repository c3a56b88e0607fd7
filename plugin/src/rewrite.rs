//! Request rewriting: finds the tool outputs of an OpenAI or Anthropic request body and
//! replaces the JSON ones by their minified form, by byte range, so every other byte of the
//! body is forwarded exactly as the client sent it. Deterministic: same body and configuration,
//! same output bytes (prompt caches depend on it).

use std::ops::Range;

use crate::api::Api;
use crate::config::Config;
use crate::fail_open::FailOpen;
use crate::json::{Document, Kind, Value, encode_string, minify_bounded};
use crate::shape::{object, required_array, string_field_is};

/// The outcome of [`rewrite_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new body, or `None` when the original is forwarded unchanged.
    pub body: Option<Vec<u8>>,
    /// Tool output texts found (each text part of a tool output counts once).
    pub tool_outputs: u32,
    /// Tool output texts replaced by a compacted form.
    pub compacted: u32,
    /// Size of the original body.
    pub bytes_before: u64,
    /// Size of the forwarded body.
    pub bytes_after: u64,
}

impl Rewrite {
    /// Bytes removed from the body.
    pub fn bytes_saved(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// Rewrites a request body of `api`. Errors say why the original must be forwarded unchanged:
/// [`FailOpen::NotJson`] for invalid or too deep JSON (or a tool output with a lone surrogate
/// escape), [`FailOpen::UnexpectedShape`] when the JSON does not look like a request of `api`.
pub fn rewrite_request(api: Api, body: &[u8], config: &Config) -> Result<Rewrite, FailOpen> {
    let doc = Document::parse(body, config.max_json_depth).map_err(|_| FailOpen::NotJson)?;
    let root = doc.root();
    if root.kind() != Kind::Object {
        return Err(FailOpen::UnexpectedShape);
    }
    let mut outputs = Vec::new();
    match api {
        Api::OpenAiChat => openai_chat_tool_outputs(root, &mut outputs)?,
        Api::AnthropicMessages => anthropic_tool_outputs(root, &mut outputs)?,
        Api::OpenAiResponses => openai_responses_tool_outputs(root, &mut outputs)?,
    }
    let before = len_u64(body.len());
    let mut rewrite = Rewrite {
        body: None,
        tool_outputs: saturating_u32(outputs.len()),
        compacted: 0,
        bytes_before: before,
        bytes_after: before,
    };
    if !config.compact_json_tool_outputs {
        return Ok(rewrite);
    }
    let mut replacements = Vec::new();
    for output in outputs {
        if let Some(compacted) = compact_json_text(output, config.max_json_depth)? {
            replacements.push((output.span(), compacted));
        }
    }
    if replacements.is_empty() {
        return Ok(rewrite);
    }
    let new_body = splice(body, &replacements)?;
    rewrite.compacted = saturating_u32(replacements.len());
    rewrite.bytes_after = len_u64(new_body.len());
    rewrite.body = Some(new_body);
    Ok(rewrite)
}

/// Chat Completions: `messages[*]` with `role: "tool"`; `content` is a string or an array of
/// parts whose `{type: "text"}` parts carry `text`.
fn openai_chat_tool_outputs<'d>(root: Value<'d>, out: &mut Vec<Value<'d>>) -> Result<(), FailOpen> {
    for message in required_array(root, "messages")? {
        let message = object(message)?;
        if string_field_is(message, "role", "tool")?
            && let Some(content) = message.get("content")
        {
            text_content(content, out)?;
        }
    }
    Ok(())
}

/// Messages: `messages[*].content` arrays; `{type: "tool_result"}` blocks whose `content` is a
/// string or an array of `{type: "text", text}` parts (other parts, e.g. images, are kept).
fn anthropic_tool_outputs<'d>(root: Value<'d>, out: &mut Vec<Value<'d>>) -> Result<(), FailOpen> {
    for message in required_array(root, "messages")? {
        let message = object(message)?;
        let Some(content) = message.get("content") else {
            continue;
        };
        match content.kind() {
            // Plain text content of a user or assistant turn: not a tool output.
            Kind::String | Kind::Null => continue,
            Kind::Array => {}
            _ => return Err(FailOpen::UnexpectedShape),
        }
        for block in content.elements() {
            let block = object(block)?;
            if string_field_is(block, "type", "tool_result")?
                && let Some(result) = block.get("content")
            {
                text_content(result, out)?;
            }
        }
    }
    Ok(())
}

/// Responses: `input` items whose `type` ends with `_call_output` and whose `output` is a string.
/// `input` may be absent or a plain string (nothing to do).
fn openai_responses_tool_outputs<'d>(
    root: Value<'d>,
    out: &mut Vec<Value<'d>>,
) -> Result<(), FailOpen> {
    let Some(input) = root.get("input") else {
        return Ok(());
    };
    match input.kind() {
        Kind::String | Kind::Null => return Ok(()),
        Kind::Array => {}
        _ => return Err(FailOpen::UnexpectedShape),
    }
    for item in input.elements() {
        let item = object(item)?;
        let Some(kind) = item.get("type") else {
            // Easy input messages (`{role, content}`) have no type.
            continue;
        };
        if kind.kind() != Kind::String {
            return Err(FailOpen::UnexpectedShape);
        }
        let kind = kind.decode_str().map_err(|_| FailOpen::NotJson)?;
        if !kind.ends_with("_call_output") {
            continue;
        }
        // Non-string outputs (arrays of content parts) are left as they are.
        if let Some(output) = item.get("output").filter(|o| o.kind() == Kind::String) {
            out.push(output);
        }
    }
    Ok(())
}

/// Collects the text of a tool output `content`: a string, or the `text` of its
/// `{type: "text"}` parts. `null` means no content.
fn text_content<'d>(content: Value<'d>, out: &mut Vec<Value<'d>>) -> Result<(), FailOpen> {
    match content.kind() {
        Kind::String => out.push(content),
        Kind::Null => {}
        Kind::Array => {
            for part in content.elements() {
                let part = object(part)?;
                if string_field_is(part, "type", "text")? {
                    match part.get("text") {
                        Some(text) if text.kind() == Kind::String => out.push(text),
                        _ => return Err(FailOpen::UnexpectedShape),
                    }
                }
            }
        }
        _ => return Err(FailOpen::UnexpectedShape),
    }
    Ok(())
}

/// The replacement literal for a tool output string whose text is a JSON object or array that
/// minifies strictly shorter; `None` to keep it.
fn compact_json_text(output: Value<'_>, max_depth: u32) -> Result<Option<String>, FailOpen> {
    if !may_hold_json_container(output.raw()) {
        return Ok(None);
    }
    let text = output.decode_str().map_err(|_| FailOpen::NotJson)?;
    let Some(minified) = minify_bounded(&text, max_depth) else {
        return Ok(None);
    };
    if minified.len() >= text.len() {
        return Ok(None);
    }
    let encoded = encode_string(&minified);
    // The shortest encoding of shorter text is shorter, but the body must never grow.
    if encoded.len() >= output.raw().len() {
        return Ok(None);
    }
    Ok(Some(encoded))
}

/// Cheap test on a raw string literal, before decoding it: does its text start, after
/// whitespace, with `{` or `[`? Plain-text outputs (logs, prose) are then never decoded.
/// A `\u` escape is left to the decoder.
fn may_hold_json_container(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 1;
    loop {
        match (bytes.get(i), bytes.get(i.saturating_add(1))) {
            (Some(b' '), _) => i = i.saturating_add(1),
            (Some(b'\\'), Some(b'n' | b'r' | b't')) => i = i.saturating_add(2),
            (Some(b'{' | b'['), _) | (Some(b'\\'), Some(b'u')) => return true,
            _ => return false,
        }
    }
}

/// Copies `body` with each range replaced; ranges must be in order and disjoint.
fn splice(body: &[u8], replacements: &[(Range<usize>, String)]) -> Result<Vec<u8>, FailOpen> {
    let mut out = Vec::with_capacity(body.len());
    let mut cursor = 0;
    for (range, replacement) in replacements {
        let kept = body.get(cursor..range.start).ok_or(FailOpen::Internal)?;
        out.extend_from_slice(kept);
        out.extend_from_slice(replacement.as_bytes());
        cursor = range.end;
    }
    out.extend_from_slice(body.get(cursor..).ok_or(FailOpen::Internal)?);
    Ok(out)
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn saturating_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A JSON tool output as a client would send it: pretty-printed, then string-encoded.
    const PRETTY: &str = r#""{\n  \"rows\": [\n    1,\n    2.50\n  ],\n  \"name\": \"a b\\n\"\n}""#;
    const COMPACT: &str = r#""{\"rows\":[1,2.50],\"name\":\"a b\\n\"}""#;

    fn run(api: Api, body: &str) -> Result<Rewrite, FailOpen> {
        rewrite_request(api, body.as_bytes(), &Config::default())
    }

    fn rewritten(api: Api, body: &str) -> String {
        String::from_utf8(run(api, body).unwrap().body.unwrap()).unwrap()
    }

    #[test]
    fn openai_chat_string_content() {
        let body = format!(
            r#"{{"model":"gpt-4o",  "messages":[{{"role":"user","content":"{{ \"q\": 1 }}"}},
              {{"role":"tool","tool_call_id":"c1","content":{PRETTY}}}], "stream" : true}}"#
        );
        let result = run(Api::OpenAiChat, &body).unwrap();
        let expected = body.replace(PRETTY, COMPACT);
        assert_eq!(
            String::from_utf8(result.body.clone().unwrap()).unwrap(),
            expected
        );
        assert_eq!(result.tool_outputs, 1);
        assert_eq!(result.compacted, 1);
        assert_eq!(result.bytes_before, len_u64(body.len()));
        assert_eq!(result.bytes_after, len_u64(expected.len()));
        assert_eq!(result.bytes_saved(), len_u64(PRETTY.len() - COMPACT.len()));
    }

    #[test]
    fn openai_chat_text_parts() {
        let body = format!(
            r#"{{"messages":[{{"role":"tool","content":[{{"type":"text","text":{PRETTY}}},
              {{"type":"text","text":"not json"}},{{"type":"image_url","image_url":{{"url":"x"}}}},
              {{"type":"text","text":{PRETTY}}}]}}]}}"#
        );
        let result = run(Api::OpenAiChat, &body).unwrap();
        assert_eq!(result.tool_outputs, 3);
        assert_eq!(result.compacted, 2);
        assert_eq!(
            String::from_utf8(result.body.unwrap()).unwrap(),
            body.replace(PRETTY, COMPACT)
        );
    }

    #[test]
    fn openai_chat_ignores_other_roles() {
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":{PRETTY}}},{{"role":"assistant","content":null,"tool_calls":[]}}]}}"#
        );
        let result = run(Api::OpenAiChat, &body).unwrap();
        assert_eq!((result.body, result.tool_outputs), (None, 0));
    }

    #[test]
    fn anthropic_tool_results() {
        let body = format!(
            r#"{{"model":"claude","max_tokens":5,"messages":[
              {{"role":"user","content":"hi"}},
              {{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"f","input":{{"a":1}}}}]}},
              {{"role":"user","content":[
                {{"type":"tool_result","tool_use_id":"t1","content":{PRETTY}}},
                {{"type":"tool_result","tool_use_id":"t2","content":[{{"type":"text","text":{PRETTY}}},{{"type":"image","source":{{}}}}]}},
                {{"type":"tool_result","tool_use_id":"t3","is_error":true}},
                {{"type":"text","text":{PRETTY}}}]}}]}}"#
        );
        let result = run(Api::AnthropicMessages, &body).unwrap();
        assert_eq!(result.tool_outputs, 2);
        assert_eq!(result.compacted, 2);
        let out = String::from_utf8(result.body.unwrap()).unwrap();
        // The plain text block keeps its pretty JSON: only tool results are rewritten.
        assert_eq!(out.matches(PRETTY).count(), 1);
        assert_eq!(out.matches(COMPACT).count(), 2);
        let expected = body.replacen(PRETTY, COMPACT, 2);
        assert_eq!(out, expected);
    }

    #[test]
    fn openai_responses_call_outputs() {
        let body = format!(
            r#"{{"model":"gpt-5","input":[{{"role":"user","content":"x"}},
              {{"type":"function_call","call_id":"c","name":"f","arguments":"{{ }}"}},
              {{"type":"function_call_output","call_id":"c","output":{PRETTY}}},
              {{"type":"custom_tool_call_output","call_id":"d","output":{PRETTY}}},
              {{"type":"function_call_output","call_id":"e","output":[{{"type":"input_text","text":{PRETTY}}}]}},
              {{"type":"message","role":"user","content":{PRETTY}}}]}}"#
        );
        let result = run(Api::OpenAiResponses, &body).unwrap();
        assert_eq!(result.tool_outputs, 2);
        assert_eq!(result.compacted, 2);
        assert_eq!(
            String::from_utf8(result.body.unwrap()).unwrap(),
            body.replacen(PRETTY, COMPACT, 2)
        );
        for body in [
            r#"{"input":"hello"}"#,
            r#"{"model":"m"}"#,
            r#"{"input":null}"#,
            r#"{"input":[]}"#,
        ] {
            let result = run(Api::OpenAiResponses, body).unwrap();
            assert_eq!((result.body, result.tool_outputs), (None, 0), "{body}");
        }
    }

    #[test]
    fn non_json_and_compact_outputs_stay_unchanged() {
        for content in [
            r#""plain text output""#,
            r#""{\"already\":\"compact\",\"n\":[1,2]}""#,
            r#""  \"just a string\"  ""#,
            r#""  42  ""#,
            r#""{ not json }""#,
            r#""[1, 2,]""#,
            r#""""#,
        ] {
            let body = format!(r#"{{"messages":[{{"role":"tool","content":{content}}}]}}"#);
            let result = run(Api::OpenAiChat, &body).unwrap();
            assert_eq!(result.body, None, "{content}");
            assert_eq!((result.tool_outputs, result.compacted), (1, 0), "{content}");
            assert_eq!(result.bytes_after, result.bytes_before);
        }
    }

    #[test]
    fn untouched_bytes_are_identical() {
        // Odd spacing, escapes, number spellings and key order outside the tool output survive.
        let body = format!(
            "{{ \"z\":1.0E+2 ,\"messages\" :[ {{\"content\":{PRETTY},\t\"role\":\"\\u0074ool\"}} ],\"a\":\"\\u00e9\\/\" }}\n"
        );
        let expected = body.replace(PRETTY, COMPACT);
        assert_eq!(rewritten(Api::OpenAiChat, &body), expected);
    }

    #[test]
    fn compaction_keeps_inner_escapes_and_unicode() {
        let content = r#""[ {\"k\": \"\\u00e9 \\\" caf\u00e9 \ud83d\ude00\"} ]""#;
        let body = format!(r#"{{"messages":[{{"role":"tool","content":{content}}}]}}"#);
        // Outer escapes are normalised (the shortest form), inner JSON escapes are preserved.
        let expected = "{\"messages\":[{\"role\":\"tool\",\"content\":\"[{\\\"k\\\":\\\"\\\\u00e9 \\\\\\\" caf\u{e9} \u{1F600}\\\"}]\"}]}";
        assert_eq!(rewritten(Api::OpenAiChat, &body), expected);
    }

    #[test]
    fn prefilter_only_skips_texts_that_cannot_be_containers() {
        for raw in [
            r#""{""#,
            r#""[""#,
            r#"" \n\r\t {""#,
            r#""\u0020[""#,
            r#""\u007b""#,
        ] {
            assert!(may_hold_json_container(raw), "{raw}");
        }
        for raw in [r#""""#, r#""x{""#, r#"" \"{""#, r#""\\[""#, r#""  ""#] {
            assert!(!may_hold_json_container(raw), "{raw}");
        }
        // An escaped opening brace still compacts.
        let body = r#"{"messages":[{"role":"tool","content":"\u007b \"a\": 1 }"}]}"#;
        assert_eq!(
            rewritten(Api::OpenAiChat, body),
            r#"{"messages":[{"role":"tool","content":"{\"a\":1}"}]}"#
        );
        // A lone surrogate in plain text is never decoded; in a JSON-looking output it fails open.
        let plain = r#"{"messages":[{"role":"tool","content":"x \ud800"}]}"#;
        assert_eq!(run(Api::OpenAiChat, plain).unwrap().body, None);
    }

    #[test]
    fn rewriting_is_deterministic_and_idempotent() {
        let body = format!(r#"{{"messages":[{{"role":"tool","content":{PRETTY}}}]}}"#);
        let first = rewritten(Api::OpenAiChat, &body);
        assert_eq!(rewritten(Api::OpenAiChat, &body), first);
        assert_eq!(run(Api::OpenAiChat, &first).unwrap().body, None);
    }

    #[test]
    fn disabled_compaction_forwards_unchanged() {
        let body = format!(r#"{{"messages":[{{"role":"tool","content":{PRETTY}}}]}}"#);
        let config = Config {
            compact_json_tool_outputs: false,
            ..Config::default()
        };
        let result = rewrite_request(Api::OpenAiChat, body.as_bytes(), &config).unwrap();
        assert_eq!(
            (result.body, result.tool_outputs, result.compacted),
            (None, 1, 0)
        );
    }

    #[test]
    fn invalid_json_fails_open() {
        for body in [
            "",
            "{",
            r#"{"messages":[]"#,
            "{\"messages\":[]} x",
            "\u{feff}{}",
        ] {
            assert_eq!(
                run(Api::OpenAiChat, body),
                Err(FailOpen::NotJson),
                "{body:?}"
            );
        }
        assert_eq!(
            rewrite_request(
                Api::OpenAiChat,
                b"{\"messages\":[\"\xff\"]}",
                &Config::default()
            ),
            Err(FailOpen::NotJson)
        );
        let lone = r#"{"messages":[{"role":"tool","content":"[\ud800]"}]}"#;
        assert_eq!(run(Api::OpenAiChat, lone), Err(FailOpen::NotJson));
    }

    #[test]
    fn depth_limit_fails_open() {
        let config = Config {
            max_json_depth: 5,
            ..Config::default()
        };
        // object > messages > message > content > part: depth 5.
        let ok = r#"{"messages":[{"role":"tool","content":[{"type":"text","text":"x"}]}]}"#;
        assert!(rewrite_request(Api::OpenAiChat, ok.as_bytes(), &config).is_ok());
        let deep =
            r#"{"messages":[{"role":"tool","content":[{"type":"text","text":"x","m":{}}]}]}"#;
        assert_eq!(
            rewrite_request(Api::OpenAiChat, deep.as_bytes(), &config),
            Err(FailOpen::NotJson)
        );
        // A tool output deeper than the limit is kept, not a failure.
        let inner = r#"{"messages":[{"role":"tool","content":"[[[[[[ ]]]]]]"}]}"#;
        let result = rewrite_request(Api::OpenAiChat, inner.as_bytes(), &config).unwrap();
        assert_eq!(result.body, None);
    }

    #[test]
    fn wrong_shapes_fail_open() {
        let shape = Err(FailOpen::UnexpectedShape);
        for (api, body) in [
            (Api::OpenAiChat, "[]"),
            (Api::OpenAiChat, "\"x\""),
            (Api::OpenAiChat, "{}"),
            (Api::OpenAiChat, r#"{"messages":{}}"#),
            (Api::OpenAiChat, r#"{"messages":null}"#),
            (Api::OpenAiChat, r#"{"messages":[1]}"#),
            (Api::OpenAiChat, r#"{"messages":[{"role":1}]}"#),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":5}]}"#,
            ),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":["x"]}]}"#,
            ),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":[{"type":"text"}]}]}"#,
            ),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":[{"type":"text","text":1}]}]}"#,
            ),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":[{"type":2}]}]}"#,
            ),
            (Api::AnthropicMessages, "{}"),
            (Api::AnthropicMessages, r#"{"messages":"x"}"#),
            (
                Api::AnthropicMessages,
                r#"{"messages":[{"role":"user","content":3}]}"#,
            ),
            (
                Api::AnthropicMessages,
                r#"{"messages":[{"role":"user","content":[[]]}]}"#,
            ),
            (
                Api::AnthropicMessages,
                r#"{"messages":[{"content":[{"type":"tool_result","content":{}}]}]}"#,
            ),
            (Api::OpenAiResponses, "[]"),
            (Api::OpenAiResponses, r#"{"input":5}"#),
            (Api::OpenAiResponses, r#"{"input":{}}"#),
            (Api::OpenAiResponses, r#"{"input":[1]}"#),
            (Api::OpenAiResponses, r#"{"input":[{"type":7}]}"#),
        ] {
            assert_eq!(run(api, body), shape, "{api:?} {body}");
        }
    }

    #[test]
    fn lenient_where_the_apis_are() {
        for (api, body) in [
            (Api::OpenAiChat, r#"{"messages":[]}"#),
            (Api::OpenAiChat, r#"{"messages":[{"role":"tool"}]}"#),
            (
                Api::OpenAiChat,
                r#"{"messages":[{"role":"tool","content":null}]}"#,
            ),
            (Api::OpenAiChat, r#"{"messages":[{"content":5}]}"#),
            (Api::AnthropicMessages, r#"{"messages":[{"role":"user"}]}"#),
            (
                Api::AnthropicMessages,
                r#"{"messages":[{"content":[{"type":"tool_result","content":null}]}]}"#,
            ),
        ] {
            let result = run(api, body).unwrap();
            assert_eq!(result.body, None, "{body}");
        }
    }
}
