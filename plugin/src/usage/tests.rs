//! Usage parsing end to end on realistic response bodies of each API, JSON and SSE: the
//! expected figures, the same answer for every split of the body into chunks, SSE event ranges,
//! OpenAI's usage-only chunk, limits, truncation and arbitrary bytes.
//!
//! The bodies are modelled on real provider shapes: the OpenAI and Anthropic SDK response
//! types (`openai` 3.57 `types/completion_usage.py`, `types/responses/response_usage.py`,
//! `response_completed_event.py`; `anthropic` 2.14 `types/usage.py`, `message_delta_usage.py`,
//! `cache_creation.py`, `raw_message_start_event.py`, in the project's `.venv`), the test
//! upstream's replies (`tests/support/upstream.rs`) and the Anthropic streaming scenario
//! (`tests/scenarios/anthropic_messages_sse.scenario.json`).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;

/// A body and what it must yield.
struct Case {
    name: &'static str,
    api: Api,
    streaming: bool,
    body: Vec<u8>,
    expected: Option<Usage>,
}

fn parse(api: Api, streaming: bool, chunks: &[&[u8]]) -> (Option<Usage>, Vec<SseEvent>) {
    let mut parser = UsageParser::new(api, streaming);
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed_with(chunk, |event| events.push(event.clone()));
    }
    let usage = parser.finish_with(|event| events.push(event.clone()));
    (usage, events)
}

fn parse_whole(case: &Case) -> (Option<Usage>, Vec<SseEvent>) {
    parse(case.api, case.streaming, &[&case.body])
}

fn usage(api: Api, model: &str) -> Usage {
    Usage {
        model: Some(model.to_owned()),
        ..Usage::empty(api)
    }
}

/// Generated text with escapes, multi-byte characters and JSON-looking content.
const TEXT: &str = "Here is the plan: \\\"usage\\\": {\\\"prompt_tokens\\\": 1} is not usage. Héllo — 日本語 🚀\\n";

fn openai_chat_json() -> Case {
    let body = format!(
        r#"{{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {{
      "index": 0,
      "message": {{
        "role": "assistant",
        "content": "{TEXT}{TEXT}",
        "tool_calls": [{{"id": "call_1", "type": "function", "function": {{"name": "report", "arguments": "{{\"usage\":{{\"prompt_tokens\":7}},\"model\":\"x\"}}"}}}}],
        "refusal": null,
        "annotations": []
      }},
      "logprobs": null,
      "finish_reason": "stop"
    }}
  ],
  "usage": {{
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {{"cached_tokens": 1920, "audio_tokens": 0}},
    "completion_tokens_details": {{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
  }},
  "service_tier": "default",
  "system_fingerprint": "fp_f9f4fb6dbf"
}}
"#
    );
    Case {
        name: "openai_chat_json",
        api: Api::OpenAiChat,
        streaming: false,
        body: body.into_bytes(),
        expected: Some(Usage {
            input_tokens: Some(2006),
            output_tokens: Some(300),
            cache_read_tokens: Some(1920),
            ..usage(Api::OpenAiChat, "gpt-4o-2024-08-06")
        }),
    }
}

fn chat_chunk(choices: &str, usage: &str) -> String {
    format!(
        r#"data: {{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":{choices},"usage":{usage}}}"#
    ) + "\n\n"
}

const CHAT_USAGE: &str = r#"{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;

fn openai_chat_sse_body(include_usage: bool) -> String {
    let mut body = chat_chunk(
        r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
        "null",
    );
    for word in ["Hé", "llo", " — ", "日本語", " 🚀", "\\n\\\"usage\\\":{}"] {
        body += &chat_chunk(
            &format!(
                r#"[{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}]"#
            ),
            "null",
        );
    }
    body += &chat_chunk(
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
        "null",
    );
    if include_usage {
        body += &chat_chunk("[]", CHAT_USAGE);
    }
    body + "data: [DONE]\n\n"
}

fn openai_chat_sse() -> Case {
    Case {
        name: "openai_chat_sse",
        api: Api::OpenAiChat,
        streaming: true,
        body: openai_chat_sse_body(true).into_bytes(),
        expected: Some(Usage {
            input_tokens: Some(2006),
            output_tokens: Some(300),
            cache_read_tokens: Some(1920),
            ..usage(Api::OpenAiChat, "gpt-4o-2024-08-06")
        }),
    }
}

fn openai_chat_sse_without_usage() -> Case {
    Case {
        name: "openai_chat_sse_without_usage",
        api: Api::OpenAiChat,
        streaming: true,
        body: openai_chat_sse_body(false).into_bytes(),
        expected: Some(usage(Api::OpenAiChat, "gpt-4o-2024-08-06")),
    }
}

/// The Responses object (`openai` `types/responses/response.py`) with `output` text and `usage`.
fn response_object(status: &str, text: &str, usage: &str) -> String {
    let output = if text.is_empty() {
        "[]".to_owned()
    } else {
        format!(
            r#"[{{"type":"message","id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}}]"#
        )
    };
    format!(
        r#"{{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"{status}","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":{output},"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":null,"summary":null}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}}}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#
    )
}

const RESPONSES_USAGE: &str = r#"{"input_tokens":5120,"input_tokens_details":{"cached_tokens":4096},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":5207}"#;

fn responses_expected() -> Option<Usage> {
    Some(Usage {
        input_tokens: Some(5120),
        output_tokens: Some(87),
        cache_read_tokens: Some(4096),
        ..usage(Api::OpenAiResponses, "gpt-4.1-2025-04-14")
    })
}

fn openai_responses_json() -> Case {
    Case {
        name: "openai_responses_json",
        api: Api::OpenAiResponses,
        streaming: false,
        body: response_object("completed", TEXT, RESPONSES_USAGE).into_bytes(),
        expected: responses_expected(),
    }
}

fn sse_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn openai_responses_sse_body(text: &str) -> String {
    let mut body = sse_event(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response_object("in_progress", "", "null")
        ),
    );
    body += &sse_event(
        "response.in_progress",
        &format!(
            r#"{{"type":"response.in_progress","sequence_number":1,"response":{}}}"#,
            response_object("in_progress", "", "null")
        ),
    );
    body += &sse_event(
        "response.output_item.added",
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#,
    );
    body += &sse_event(
        "response.content_part.added",
        r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":""}}"#,
    );
    body += &sse_event(
        "response.output_text.delta",
        &format!(
            r#"{{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":0,"content_index":0,"delta":"{text}"}}"#
        ),
    );
    body += &sse_event(
        "response.output_text.done",
        &format!(
            r#"{{"type":"response.output_text.done","sequence_number":5,"item_id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","output_index":0,"content_index":0,"text":"{text}"}}"#
        ),
    );
    body + &sse_event(
        "response.completed",
        &format!(
            r#"{{"type":"response.completed","sequence_number":6,"response":{}}}"#,
            response_object("completed", text, RESPONSES_USAGE)
        ),
    )
}

fn openai_responses_sse() -> Case {
    Case {
        name: "openai_responses_sse",
        api: Api::OpenAiResponses,
        streaming: true,
        body: openai_responses_sse_body(TEXT).into_bytes(),
        expected: responses_expected(),
    }
}

const MESSAGE_START_USAGE: &str = r#"{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048},"output_tokens":1,"service_tier":"standard"}"#;

fn anthropic_json() -> Case {
    let body = format!(
        r#"{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"{TEXT}"}},{{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"record","input":{{"usage":{{"input_tokens":999}},"model":"nested"}}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"cache_creation":{{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048}},"output_tokens":345,"service_tier":"standard","server_tool_use":null}}}}"#
    );
    Case {
        name: "anthropic_json",
        api: Api::AnthropicMessages,
        streaming: false,
        body: body.into_bytes(),
        expected: Some(anthropic_expected(345)),
    }
}

fn anthropic_expected(output: u64) -> Usage {
    Usage {
        input_tokens: Some(12),
        output_tokens: Some(output),
        cache_read_tokens: Some(30000),
        cache_write_tokens: Some(2048),
        cache_write_5m_tokens: Some(0),
        cache_write_1h_tokens: Some(2048),
        ..usage(Api::AnthropicMessages, "claude-sonnet-4-5-20250929")
    }
}

fn anthropic_sse_body(delta_usage: &str) -> String {
    let mut body = sse_event(
        "message_start",
        &format!(
            r#"{{"type":"message_start","message":{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{MESSAGE_START_USAGE}}}}}"#
        ),
    );
    body += &sse_event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    body += &sse_event("ping", r#"{"type": "ping"}"#);
    for word in [
        "Hé",
        "llo — 日本語",
        " 🚀 \\\"usage\\\":{\\\"output_tokens\\\":9}",
    ] {
        body += &sse_event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{word}"}}}}"#
            ),
        );
    }
    body += &sse_event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    body += &sse_event(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{delta_usage}}}"#
        ),
    );
    body + &sse_event("message_stop", r#"{"type":"message_stop"}"#)
}

fn anthropic_sse() -> Case {
    Case {
        name: "anthropic_sse",
        api: Api::AnthropicMessages,
        streaming: true,
        // The current API repeats the cumulative input figures in message_delta.
        body: anthropic_sse_body(
            r#"{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"output_tokens":345}"#,
        )
        .into_bytes(),
        expected: Some(anthropic_expected(345)),
    }
}

fn anthropic_sse_output_only_delta() -> Case {
    Case {
        name: "anthropic_sse_output_only_delta",
        api: Api::AnthropicMessages,
        streaming: true,
        body: anthropic_sse_body(r#"{"output_tokens":345}"#).into_bytes(),
        expected: Some(anthropic_expected(345)),
    }
}

fn anthropic_sse_updated_delta() -> Case {
    // A server tool ran: the cumulative input grew after message_start; the later value wins.
    Case {
        name: "anthropic_sse_updated_delta",
        api: Api::AnthropicMessages,
        streaming: true,
        body: anthropic_sse_body(
            r#"{"input_tokens":4012,"cache_creation_input_tokens":null,"cache_read_input_tokens":31000,"output_tokens":345,"server_tool_use":{"web_search_requests":1}}"#,
        )
        .into_bytes(),
        expected: Some(Usage {
            input_tokens: Some(4012),
            cache_read_tokens: Some(31000),
            ..anthropic_expected(345)
        }),
    }
}

/// The same stream with other line endings, comments and multi-line data.
fn variant(case: Case, name: &'static str, rewrite: impl Fn(&str) -> String) -> Case {
    let text = String::from_utf8(case.body).unwrap();
    Case {
        name,
        body: rewrite(&text).into_bytes(),
        ..case
    }
}

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

fn cr(text: &str) -> String {
    text.replace('\n', "\r")
}

/// Keep-alive comments between and inside events, a BOM, and every JSON `data:` value cut
/// into two `data:` lines at its first `,` (the lines are joined with `\n`, JSON whitespace).
fn decorated(text: &str) -> String {
    let mut out = String::from("\u{feff}: keep-alive\n\n");
    for line in text.split_inclusive('\n') {
        if let Some(data) = line.strip_prefix("data: {")
            && let Some(at) = data.find(',')
        {
            out += ": comment inside an event\n";
            out += "data:{";
            out += &data[..=at];
            out += "\ndata:";
            out += &data[at + 1..];
            out += "id: 7\nretry: 100\nunknown field\n";
        } else {
            out += line;
            if line == "\n" {
                out += ":ping\n";
            }
        }
    }
    out
}

fn cases() -> Vec<Case> {
    vec![
        openai_chat_json(),
        openai_chat_sse(),
        openai_chat_sse_without_usage(),
        variant(openai_chat_sse(), "openai_chat_sse_crlf", crlf),
        variant(openai_chat_sse(), "openai_chat_sse_decorated", decorated),
        openai_responses_json(),
        openai_responses_sse(),
        variant(openai_responses_sse(), "openai_responses_sse_cr", cr),
        anthropic_json(),
        anthropic_sse(),
        anthropic_sse_output_only_delta(),
        anthropic_sse_updated_delta(),
        variant(anthropic_sse(), "anthropic_sse_crlf", crlf),
        variant(anthropic_sse(), "anthropic_sse_decorated_crlf", |t| {
            crlf(&decorated(t))
        }),
    ]
}

#[test]
fn realistic_bodies_yield_their_usage() {
    for case in cases() {
        let (got, events) = parse_whole(&case);
        assert_eq!(got, case.expected, "{}", case.name);
        assert_eq!(events.is_empty(), !case.streaming, "{}", case.name);
    }
}

#[test]
fn every_two_chunk_split_gives_the_same_answer() {
    for case in cases() {
        let whole = parse_whole(&case);
        for at in 0..=case.body.len() {
            let (head, tail) = case.body.split_at(at);
            assert_eq!(
                parse(case.api, case.streaming, &[head, tail]),
                whole,
                "{} split at {at}",
                case.name
            );
        }
    }
}

#[test]
fn byte_by_byte_gives_the_same_answer() {
    for case in cases() {
        let chunks: Vec<&[u8]> = case.body.chunks(1).collect();
        assert_eq!(
            parse(case.api, case.streaming, &chunks),
            parse_whole(&case),
            "{}",
            case.name
        );
    }
}

#[test]
fn event_ranges_cover_whole_events() {
    for case in cases().into_iter().filter(|c| c.streaming) {
        let (_, events) = parse_whole(&case);
        let len = case.body.len() as u64;
        let mut previous_end = 0;
        for event in &events {
            assert!(event.range.start >= previous_end && event.range.end <= len);
            previous_end = event.range.end;
            // Each range alone is exactly one event.
            let bytes = &case.body[event.range.start as usize..event.range.end as usize];
            let (_, alone) = parse(case.api, true, &[bytes]);
            assert_eq!(
                alone.len(),
                1,
                "{}: {:?}",
                case.name,
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(alone[0].range, 0..event.range.end - event.range.start);
        }
        // Only comments and blank lines follow the last event.
        let tail = std::str::from_utf8(&case.body[previous_end as usize..]).unwrap();
        assert!(
            tail.lines().all(|l| l.is_empty() || l.starts_with(':')),
            "{}: {tail:?}",
            case.name
        );
    }
}

#[test]
fn the_usage_only_chunk_is_found_and_can_be_stripped() {
    for case in [
        openai_chat_sse(),
        variant(openai_chat_sse(), "crlf", crlf),
        variant(openai_chat_sse(), "decorated", decorated),
    ] {
        let (_, events) = parse_whole(&case);
        let flagged: Vec<&SseEvent> = events.iter().filter(|e| e.openai_usage_only).collect();
        assert_eq!(flagged.len(), 1, "{}", case.name);
        let range = flagged[0].range.start as usize..flagged[0].range.end as usize;
        let text = std::str::from_utf8(&case.body[range.clone()]).unwrap();
        assert!(text.contains(r#""choices":[]"#), "{text}");
        assert!(
            text.ends_with("\n\n") || text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
        // The standalone helper agrees on the event's data.
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|v| v.strip_prefix(' ').unwrap_or(v))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(is_openai_usage_only_chunk(data.as_bytes()), "{data}");
        // Without it the stream is what the client would have had without include_usage.
        let mut stripped = case.body.clone();
        stripped.drain(range);
        let (got, rest) = parse(Api::OpenAiChat, true, &[&stripped]);
        assert_eq!(got, Some(usage(Api::OpenAiChat, "gpt-4o-2024-08-06")));
        assert_eq!(rest.len(), events.len() - 1);
        assert!(rest.iter().all(|e| !e.openai_usage_only));
    }
    let (_, events) = parse_whole(&openai_chat_sse_without_usage());
    assert!(events.iter().all(|e| !e.openai_usage_only));
    // Other APIs never flag an event.
    for case in [anthropic_sse(), openai_responses_sse()] {
        assert!(parse_whole(&case).1.iter().all(|e| !e.openai_usage_only));
    }
}

#[test]
fn pending_event_start_tracks_the_unfinished_event() {
    let body = openai_chat_sse_body(true);
    let second = body.find("\n\n").unwrap() + 2;
    let mut parser = UsageParser::new(Api::OpenAiChat, true);
    assert_eq!(parser.pending_event_start(), None);
    parser.feed(&body.as_bytes()[..second + 10]);
    assert_eq!(parser.pending_event_start(), Some(second as u64));
    let mut events = Vec::new();
    parser.feed_with(&body.as_bytes()[second + 10..], |e| events.push(e.clone()));
    assert_eq!(parser.pending_event_start(), None);
    assert_eq!(events[0].range.start, second as u64);
    assert_eq!(parser.stats().events, 10);
    assert_eq!(parser.stats().bytes, body.len() as u64);
    assert!(
        UsageParser::new(Api::OpenAiChat, false)
            .pending_event_start()
            .is_none()
    );
}

#[test]
fn a_bare_cr_event_end_is_reported_once_the_next_byte_is_known() {
    let body = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\r\r";
    let mut parser = UsageParser::new(Api::OpenAiChat, true);
    let mut events = Vec::new();
    parser.feed_with(body, |e| events.push(e.clone()));
    assert!(events.is_empty());
    parser.feed_with(b"\ndata: [DONE]\r\n\r\n", |e| events.push(e.clone()));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].range, 0..body.len() as u64 + 1);
    assert!(events[0].openai_usage_only);
    // Pending at the end of the stream: still counted.
    let mut parser = UsageParser::new(Api::OpenAiChat, true);
    parser.feed(body);
    assert_eq!(parser.finish().unwrap().input_tokens, Some(3));
}

#[test]
fn events_larger_than_any_buffer_still_yield_usage() {
    // A 3 MB `response.completed` event (the whole answer repeated in it): nothing of it is
    // kept but the usage object.
    let text = "lorem ipsum \\\"dolor\\\" — 日本語 ".repeat(80_000);
    let case = Case {
        name: "big_responses",
        api: Api::OpenAiResponses,
        streaming: true,
        body: openai_responses_sse_body(&text).into_bytes(),
        expected: responses_expected(),
    };
    assert!(case.body.len() > 3_000_000);
    let chunks: Vec<&[u8]> = case.body.chunks(8191).collect();
    let (got, events) = parse(case.api, true, &chunks);
    assert_eq!(got, case.expected);
    assert_eq!(events.len(), 7);
    let (json, _) = parse(
        Api::OpenAiResponses,
        false,
        &[response_object("completed", &text, RESPONSES_USAGE).as_bytes()],
    );
    assert_eq!(json, responses_expected());
}

#[test]
fn a_usage_object_over_the_cap_is_dropped_and_counted() {
    let case = anthropic_json();
    let limits = Limits {
        max_value_bytes: 64,
    };
    let mut parser = UsageParser::with_limits(case.api, false, limits);
    parser.feed(&case.body);
    assert_eq!(parser.stats().dropped_values, 1);
    assert_eq!(
        parser.finish(),
        Some(usage(Api::AnthropicMessages, "claude-sonnet-4-5-20250929"))
    );
    let case = anthropic_sse();
    let mut parser = UsageParser::with_limits(case.api, true, limits);
    parser.feed(&case.body);
    // message_start's usage and message_delta's usage.
    assert_eq!(parser.stats().dropped_values, 2);
    assert_eq!(parser.stats().events, 9);
}

#[test]
fn truncated_bodies_yield_what_was_complete() {
    let case = anthropic_sse();
    let cut = String::from_utf8(case.body.clone())
        .unwrap()
        .find("event: content_block_delta")
        .unwrap();
    let (got, _) = parse(case.api, true, &[&case.body[..cut + 30]]);
    assert_eq!(
        got,
        Some(anthropic_expected(1)),
        "message_start's own output count"
    );
    // An event cut before its blank line still counts when its data is complete.
    let body = chat_chunk("[]", CHAT_USAGE);
    let cut = body.trim_end();
    let (got, events) = parse(Api::OpenAiChat, true, &[cut.as_bytes()]);
    assert_eq!(got.unwrap().input_tokens, Some(2006));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].range, 0..cut.len() as u64);
    // A JSON body cut inside its usage object: only the model.
    let case = openai_chat_json();
    let text = String::from_utf8(case.body.clone()).unwrap();
    let cut = text.find("\"total_tokens\"").unwrap();
    let (got, _) = parse(case.api, false, &[&case.body[..cut]]);
    assert_eq!(got, Some(usage(Api::OpenAiChat, "gpt-4o-2024-08-06")));
}

#[test]
fn bodies_without_usage_yield_none() {
    for (api, streaming, body) in [
        (Api::OpenAiChat, false, &br#"{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}"#[..]),
        (Api::AnthropicMessages, false, br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        (Api::AnthropicMessages, true, b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
        (Api::OpenAiResponses, true, b": nothing\n\ndata: [DONE]\n\n"),
        (Api::OpenAiChat, true, b""),
        (Api::OpenAiChat, false, b""),
        (Api::OpenAiChat, false, b"\x1f\x8b\x08\x00gzip"),
        (Api::OpenAiChat, false, br#"{"usage":"many","model":""}"#),
    ] {
        assert_eq!(parse(api, streaming, &[body]).0, None, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn backend_style_openai_fields() {
    // LiteLLM / Bedrock-style: non-zero top-level cache fields win over the details.
    let body = br#"{"model":"claude-via-litellm","usage":{"prompt_tokens":500,"completion_tokens":5,"cache_read_input_tokens":300,"cache_creation_input_tokens":150,"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0}}}"#;
    let got = parse(Api::OpenAiChat, false, &[body]).0.unwrap();
    assert_eq!(got.cache_read_tokens, Some(300));
    assert_eq!(got.cache_write_tokens, Some(150));
    assert_eq!(got.cache_figures().write, 150);
    assert_eq!(got.cache_figures().uncached, 200);
    // Zero top-level fields fall back to the details.
    let body = br#"{"usage":{"input_tokens":500,"cache_read_input_tokens":0,"input_tokens_details":{"cached_tokens":64,"cache_write_tokens":32}}}"#;
    let got = parse(Api::OpenAiResponses, false, &[body]).0.unwrap();
    assert_eq!(got.cache_read_tokens, Some(64));
    assert_eq!(got.cache_write_tokens, Some(32));
}

fn arb_splits(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..12).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    })
}

fn split_at_cuts<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.min(body.len()).max(start);
        chunks.push(&body[start..cut]);
        start = cut;
    }
    chunks.push(&body[start..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_multi_chunk_splits_give_the_same_answer(
        index in 0usize..14,
        cuts in arb_splits(4096),
    ) {
        let cases = cases();
        let case = &cases[index % cases.len()];
        let cuts: Vec<usize> = cuts.iter().map(|c| c * case.body.len() / 4096).collect();
        let chunks = split_at_cuts(&case.body, &cuts);
        prop_assert_eq!(parse(case.api, case.streaming, &chunks), parse_whole(case));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_ignore_splits(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in arb_splits(600),
        api in 0usize..3,
        streaming in any::<bool>(),
    ) {
        let api = Api::ALL[api];
        let whole = parse(api, streaming, &[&bytes]);
        prop_assert_eq!(parse(api, streaming, &split_at_cuts(&bytes, &cuts)), whole);
    }

    #[test]
    fn mutated_bodies_never_panic_and_ignore_splits(
        index in 0usize..14,
        edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
        cuts in arb_splits(4096),
    ) {
        let cases = cases();
        let case = &cases[index % cases.len()];
        let mut body = case.body.clone();
        for (at, byte) in edits {
            let at = at * body.len() / 4096;
            if at < body.len() {
                body[at] = byte;
            }
        }
        let cuts: Vec<usize> = cuts.iter().map(|c| c * body.len() / 4096).collect();
        let whole = parse(case.api, case.streaming, &[&body]);
        prop_assert_eq!(parse(case.api, case.streaming, &split_at_cuts(&body, &cuts)), whole);
    }

    #[test]
    fn sse_structure_noise_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just("data:".to_owned()), Just("data: ".to_owned()), Just("\n".to_owned()),
            Just("\r".to_owned()), Just("\r\n".to_owned()), Just(":".to_owned()),
            Just("{\"usage\":{\"input_tokens\":5}".to_owned()), Just("}".to_owned()),
            Just("\"".to_owned()), Just("\\".to_owned()), Just("[".to_owned()),
            Just("{\"message\":{\"usage\":".to_owned()), Just("event: x".to_owned()),
            "[a-z0-9 ,:]{0,6}",
        ], 0..40),
        cuts in arb_splits(400),
        api in 0usize..3,
    ) {
        let body = parts.concat().into_bytes();
        let api = Api::ALL[api];
        let whole = parse(api, true, &[&body]);
        prop_assert_eq!(parse(api, true, &split_at_cuts(&body, &cuts)), whole);
    }
}

#[test]
fn include_usage_is_added_as_the_last_member() {
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[]} "#;
    let out = super::with_include_usage(body).unwrap();
    assert_eq!(
        out,
        br#"{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}} "#
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["stream_options"]["include_usage"], true);
    assert_eq!(super::with_include_usage(b"[1]"), None);
    assert_eq!(super::with_include_usage(b"   "), None);
}

#[test]
#[allow(clippy::single_range_in_vec_init)]
fn ranges_are_removed_by_body_offset() {
    let bytes = b"0123456789";
    assert_eq!(super::without_ranges(bytes, 100, &[]), bytes);
    assert_eq!(
        super::without_ranges(bytes, 100, &[102..104, 108..200]),
        b"014567"
    );
    // Ranges partly or wholly outside the bytes.
    assert_eq!(super::without_ranges(bytes, 100, &[90..101]), b"123456789");
    assert_eq!(super::without_ranges(bytes, 100, &[300..400]), bytes);
}
