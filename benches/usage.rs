//! The response usage parsers (`headroom_plugin::usage`), natively: ~1 MB responses of each
//! API fed to a fresh `UsageParser` in realistic 4–16 KB chunks, as the filter feeds the
//! body chunks it passes on; throughput is the body's bytes.
//!
//! - `json/<api>`: one non-streaming response whose answer text is ~1 MB (with escapes and
//!   multi-byte characters), the usage object at the end.
//! - `sse/<api>`: a stream of ~1 MB of small delta events (a few words each, as providers
//!   send them) and the usage events: OpenAI Chat with `include_usage`, Anthropic
//!   `message_start` / `message_delta`, and OpenAI Responses, whose final `response.completed`
//!   event repeats the whole answer.
//!
//! Run: `cargo bench --bench usage` (add `-- --quick` for a fast pass, or a filter such as
//! `-- sse/`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headroom_plugin::api::Api;
use headroom_plugin::usage::{Usage, UsageParser};

/// About how large each response is.
const BODY_BYTES: usize = 1_000_000;

/// Chunk sizes the body is cut into, in turn: 4–16 KB, as proxies deliver them.
const CHUNK_SIZES: &[usize] = &[4096, 16384, 7000, 11_000, 5200, 13_500, 9000];

/// A word of generated text as it appears inside a JSON string.
const WORDS: &[&str] = &[
    "the ",
    "request ",
    "returned ",
    "\\\"ok\\\" ",
    "with ",
    "latency ",
    "of ",
    "42ms; ",
    "naïve ",
    "cafés ",
    "日本語 ",
    "— ",
    "🚀 ",
    "fn main() {}\\n",
    "and ",
    "then ",
];

fn text(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 32);
    let mut i = 0;
    while out.len() < bytes {
        out += WORDS[i % WORDS.len()];
        i += 7;
        if i % 5 == 0 {
            i += 1;
        }
    }
    out
}

/// Groups of a few words, one per SSE delta event.
fn deltas(bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < bytes {
        let delta: String = (0..3).map(|k| WORDS[(i * 3 + k) % WORDS.len()]).collect();
        total += delta.len();
        out.push(delta);
        i += 1;
    }
    out
}

fn chunks(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = CHUNK_SIZES.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(8192).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        out.push(chunk);
        rest = tail;
    }
    out
}

fn openai_chat_json() -> String {
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{{"cached_tokens":1920,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf"}}"#,
        text(BODY_BYTES)
    )
}

fn anthropic_json() -> String {
    format!(
        r#"{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"cache_creation":{{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048}},"output_tokens":345,"service_tier":"standard"}}}}"#,
        text(BODY_BYTES)
    )
}

fn chat_chunk(choices: &str, usage: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":{choices},\"usage\":{usage}}}\n\n"
    )
}

fn openai_chat_sse() -> String {
    let mut body = String::new();
    for delta in deltas(BODY_BYTES) {
        if body.len() >= BODY_BYTES {
            break;
        }
        body += &chat_chunk(
            &format!(
                r#"[{{"index":0,"delta":{{"content":"{delta}"}},"logprobs":null,"finish_reason":null}}]"#
            ),
            "null",
        );
    }
    body += &chat_chunk(
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
        "null",
    );
    body += &chat_chunk(
        "[]",
        r#"{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
    );
    body + "data: [DONE]\n\n"
}

fn event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_sse() -> String {
    let mut body = event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048},"output_tokens":1,"service_tier":"standard"}}}"#,
    );
    body += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    for delta in deltas(BODY_BYTES) {
        if body.len() >= BODY_BYTES {
            break;
        }
        body += &event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{delta}"}}}}"#
            ),
        );
    }
    body += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    body += &event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":2048,"cache_read_input_tokens":30000,"output_tokens":345}}"#,
    );
    body + &event("message_stop", r#"{"type":"message_stop"}"#)
}

fn response_object(status: &str, text: &str, usage: &str) -> String {
    format!(
        r#"{{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"{status}","error":null,"model":"gpt-4.1-2025-04-14","output":[{{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}}],"parallel_tool_calls":true,"store":true,"temperature":1.0,"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#
    )
}

fn openai_responses_sse() -> String {
    let mut body = event(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response_object("in_progress", "", "null")
        ),
    );
    let mut answer = String::new();
    for (n, delta) in deltas(BODY_BYTES).iter().enumerate() {
        // The final event repeats the answer: stop when both make up the body.
        if body.len() + answer.len() >= BODY_BYTES {
            break;
        }
        body += &event(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_1","output_index":0,"content_index":0,"delta":"{delta}"}}"#,
                n + 1
            ),
        );
        answer += delta;
    }
    body + &event(
        "response.completed",
        &format!(
            r#"{{"type":"response.completed","sequence_number":999999,"response":{}}}"#,
            response_object(
                "completed",
                &answer,
                r#"{"input_tokens":5120,"input_tokens_details":{"cached_tokens":4096},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":5207}"#
            )
        ),
    )
}

fn parse(api: Api, streaming: bool, chunks: &[&[u8]]) -> Option<Usage> {
    let mut parser = UsageParser::new(api, streaming);
    for chunk in chunks {
        parser.feed(black_box(chunk));
    }
    parser.finish()
}

fn usage_parsers(c: &mut Criterion) {
    let cases = [
        (
            "json/openai_chat",
            Api::OpenAiChat,
            false,
            openai_chat_json(),
        ),
        (
            "json/anthropic",
            Api::AnthropicMessages,
            false,
            anthropic_json(),
        ),
        ("sse/openai_chat", Api::OpenAiChat, true, openai_chat_sse()),
        (
            "sse/anthropic",
            Api::AnthropicMessages,
            true,
            anthropic_sse(),
        ),
        (
            "sse/openai_responses",
            Api::OpenAiResponses,
            true,
            openai_responses_sse(),
        ),
    ];
    let mut group = c.benchmark_group("usage");
    group.sample_size(20);
    for (name, api, streaming, body) in &cases {
        let chunks = chunks(body.as_bytes());
        let usage = parse(*api, *streaming, &chunks);
        // The corpus must be read correctly, or the numbers mean nothing.
        let read = usage
            .as_ref()
            .and_then(|u| u.input_tokens.zip(u.output_tokens));
        assert!(read.is_some(), "{name}: no usage read: {usage:?}");
        eprintln!(
            "usage/{name}: {} bytes in {} chunks -> {:?}",
            body.len(),
            chunks.len(),
            usage.map(|u| u.cache_figures())
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse(*api, *streaming, &chunks)));
    }
    group.finish();
}

criterion_group!(benches, usage_parsers);
criterion_main!(benches);
