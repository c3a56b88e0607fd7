//! The pure compression pipeline, natively: each compressor end to end through
//! `compress_request` (detection, hashing, the compressor, both token counts, the stores and
//! the splice) on one realistic tool output of 10 KB to 10 MB, exact token counting alone, and
//! the ~110 KB agent request the filter is budgeted for (≤ 1 ms).
//!
//! - `json/<size>`, `log/<size>`, `search/<size>`, `diff/<size>`: a chat request whose newest
//!   tool output is a JSON array of records, a build log, ripgrep output or a `git diff` of
//!   that size; throughput is the tool output's bytes. Every iteration gets empty stores, so
//!   nothing is replayed.
//! - `tokens_o200k/<kind>/<size>`, `tokens_cl100k/<kind>/<size>`: `Encoding::count` on JSON,
//!   a log and source code.
//! - `compress_request/agent_json_300`: `corpus::agent_json_request(300, false)`;
//!   `…_request_path` is what the filter does before that request (and the 155 KB log one)
//!   leaves, `…_request_path_and_settle` the same with what it settles at the exchange's end;
//!   `agent_log_155k_naming_nothing_…` the log with a question that names no word of it.
//! - `hostile/<input>/<size>`: the bodies of issue 12 that stalled a worker (unclosed HTML
//!   comments, a search result of hundreds of thousands of error matches, a huge relevance
//!   query against a JSON array of the same text, a JSON array of zeros, deeply nested
//!   arrays, a long run without spaces); throughput is the tool output's bytes, so criterion's
//!   time per MB at two sizes shows whether the work is linear.
//!
//! Run: `cargo bench --bench pipeline` (add `-- --quick` for a fast pass, or a filter such as
//! `-- tokens_o200k`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use headroom_plugin::api::Api;
use headroom_plugin::pipeline::waste::content_signals;
use headroom_plugin::pipeline::{
    MemoryHost, Outcome, PipelineConfig, compress_request, compress_request_unsettled,
};
use headroom_plugin::tokens::{Encoding, Tokenizer};
use headroom_tests::corpus;

const SIZES: &[(&str, usize)] = &[("10KB", 10_000), ("100KB", 100_000), ("1MB", 1_000_000)];
const JSON_SIZES: &[(&str, usize)] = &[
    ("10KB", 10_000),
    ("100KB", 100_000),
    ("1MB", 1_000_000),
    ("10MB", 10_000_000),
];

/// A pretty-printed JSON array of records of about `bytes` bytes.
fn json_text(bytes: usize) -> String {
    // One pretty-printed record is about 330 bytes.
    let mut n = (bytes / 330).max(1);
    loop {
        let text = corpus::records_json(n, 42);
        if text.len() >= bytes || n > 1 << 24 {
            return text;
        }
        n += (bytes - text.len()) / 330 + 1;
    }
}

fn run(body: &[u8], config: &PipelineConfig) -> (Outcome, MemoryHost) {
    let mut host = MemoryHost::default();
    let outcome = compress_request(Api::OpenAiChat, body, config, &mut host)
        .unwrap_or_else(|e| panic!("the corpus is a valid request: {e:?}"));
    (outcome, host)
}

fn describe(name: &str, outcome: &Outcome) {
    for block in outcome.blocks.iter().filter(|b| b.bytes_before >= 512) {
        eprintln!(
            "{name}: {} {} {} bytes -> {} ({:?} -> {:?} tokens)",
            block.strategy,
            block.decision.as_str(),
            block.bytes_before,
            block.bytes_after,
            block.tokens_before,
            block.tokens_after
        );
    }
}

fn compressor_group(
    c: &mut Criterion,
    group_name: &str,
    sizes: &[(&str, usize)],
    make: fn(usize) -> String,
) {
    let config = PipelineConfig::default();
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &(label, size) in sizes {
        let output = make(size);
        let bytes = output.len() as u64;
        let body = corpus::tool_output_request(output);
        describe(&format!("{group_name}/{label}"), &run(&body, &config).0);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter_batched(
                || (),
                |()| run(black_box(body), &config),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn compressors(c: &mut Criterion) {
    compressor_group(c, "json", JSON_SIZES, json_text);
    compressor_group(c, "log", SIZES, |n| corpus::log_text(n, 11));
    compressor_group(c, "search", SIZES, |n| corpus::grep_text(n, 5));
    compressor_group(c, "diff", SIZES, |n| corpus::diff_text(n, 9));
}

fn tokens(c: &mut Criterion) {
    for (group_name, encoding) in [
        ("tokens_o200k", Encoding::O200kBase),
        ("tokens_cl100k", Encoding::Cl100kBase),
    ] {
        // Load the rank table outside the measurement.
        black_box(encoding.count("warm up"));
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for &(label, size) in SIZES {
            let inputs = [
                ("json", json_text(size)),
                ("log", corpus::log_text(size, 3)),
                ("code", corpus::code_text(size, 4)),
            ];
            for (kind, text) in inputs {
                group.throughput(Throughput::Bytes(text.len() as u64));
                group.bench_with_input(BenchmarkId::new(kind, label), text.as_str(), |b, text| {
                    b.iter(|| encoding.count(black_box(text)))
                });
            }
        }
        group.finish();
    }
}

fn agent_request(c: &mut Criterion) {
    let config = PipelineConfig::default();
    let body = corpus::agent_json_request(300, false);
    describe("compress_request/agent_json_300", &run(&body, &config).0);
    let mut group = c.benchmark_group("compress_request");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("agent_json_300", |b| {
        b.iter_batched(
            || (),
            |()| run(black_box(&body), &config),
            BatchSize::PerIteration,
        )
    });
    // The same without waste signals: what examining the new outputs costs.
    let quiet = PipelineConfig {
        waste_signals: false,
        ..PipelineConfig::default()
    };
    group.bench_function("agent_json_300_no_waste_signals", |b| {
        b.iter_batched(
            || (),
            |()| run(black_box(&body), &quiet),
            BatchSize::PerIteration,
        )
    });
    // What the filter does before the request leaves (the rest is settled at the end of the
    // exchange), beside the whole run, on a JSON and a log output.
    let log = corpus::agent_log_request(155_000);
    let plain = corpus::agent_log_request_naming_nothing(155_000);
    for (name, body) in [
        ("agent_json_300", &body),
        ("agent_log_155k", &log),
        ("agent_log_155k_naming_nothing", &plain),
    ] {
        group.bench_function(format!("{name}_request_path"), |b| {
            b.iter_batched(
                MemoryHost::default,
                |mut host| {
                    compress_request_unsettled(Api::OpenAiChat, black_box(body), &config, &mut host)
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("{name}_request_path_and_settle"), |b| {
            b.iter_batched(
                MemoryHost::default,
                |mut host| {
                    let (mut outcome, unsettled) =
                        compress_request_unsettled(Api::OpenAiChat, body, &config, &mut host)
                            .expect("the agent request parses");
                    unsettled.settle(&mut outcome, &mut host);
                    outcome
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The content signals alone, per kind of tool output (100 KB, o200k).
fn waste_signals(c: &mut Criterion) {
    let tokenizer = Tokenizer::OpenAi(Encoding::O200kBase);
    black_box(tokenizer.count("warm up"));
    let mut group = c.benchmark_group("waste_signals");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let size = 100 << 10;
    let inputs = [
        ("json", json_text(size)),
        ("log", corpus::log_text(size, 11)),
        ("search", corpus::grep_text(size, 5)),
        ("diff", corpus::diff_text(size, 9)),
    ];
    for (kind, text) in inputs {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new(kind, "100KB"), text.as_str(), |b, text| {
            b.iter(|| content_signals(black_box(text), tokenizer, None, false))
        });
    }
    group.finish();
}

/// A chat request: one user message `query`, then one tool output `output`, so `query` is the
/// output's relevance query.
fn query_then_output_request(query: &str, output: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": query},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "fetch", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": output},
        ],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `words` distinct words (`w0 w1 …`, about 7 bytes each).
fn distinct_words(words: usize) -> String {
    (0..words)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One hostile body of about `bytes` bytes of tool output: the request and the output's size.
fn hostile_body(kind: &str, bytes: usize) -> (Vec<u8>, usize) {
    let output = |text: String| {
        let len = text.len();
        (corpus::tool_output_request(text), len)
    };
    match kind {
        "html_comments" => output("<!--".repeat(bytes / 4)),
        "search_errors" => output("a:1:error\n".repeat(bytes / 10)),
        "zeros_array" => output(format!("[{}0]", "0,".repeat(bytes / 2))),
        "nested_arrays" => {
            // 200 levels (the depth limit is 256), each holding numbers and the next level.
            let depth = 200;
            let width = (bytes / depth / 2).max(6);
            let level = "1,".repeat(width);
            let text = format!(
                "{}0{}",
                format!("[{level}").repeat(depth),
                "]".repeat(depth)
            );
            output(text)
        }
        "no_spaces" => output("aZ9+".repeat(bytes / 4)),
        "relevance_query" => {
            // The query: distinct words; the output: an array of eight items of that text.
            let query = distinct_words(bytes / 16);
            let items = vec![query.clone(); 8];
            let text = serde_json::to_string(&items).unwrap_or_default();
            let len = text.len();
            (query_then_output_request(&query, &text), len)
        }
        _ => (Vec::new(), 0),
    }
}

/// The hostile inputs of issue 12, end to end through `compress_request`.
fn hostile(c: &mut Criterion) {
    let config = PipelineConfig::default();
    let mut group = c.benchmark_group("hostile");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(2));
    for kind in [
        "html_comments",
        "search_errors",
        "relevance_query",
        "zeros_array",
        "nested_arrays",
        "no_spaces",
    ] {
        for (label, size) in [("256KB", 256 << 10), ("1MB", 1 << 20)] {
            let (body, bytes) = hostile_body(kind, size);
            describe(&format!("hostile/{kind}/{label}"), &run(&body, &config).0);
            group.throughput(Throughput::Bytes(bytes as u64));
            group.bench_with_input(BenchmarkId::new(kind, label), &body, |b, body| {
                b.iter_batched(
                    || (),
                    |()| run(black_box(body), &config),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    compressors,
    tokens,
    agent_request,
    waste_signals,
    hostile
);
criterion_main!(benches);
