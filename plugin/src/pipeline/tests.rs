//! Pipeline-level tests: the realistic corpus with its targets, the 12-turn replay, property
//! tests over requests, and upstream's smart_crusher and diff_compressor fixtures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::api::Api;
use crate::pipeline::block::compress_block;
use crate::pipeline::relevance::Query;
use crate::tokens::Encoding;
use proptest::prelude::*;

/// A tiny deterministic generator for corpus variety.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CUSTOMERS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];

fn api_json() -> (String, Vec<String>) {
    let mut rng = Lcg(7);
    let mut rows = Vec::new();
    for i in 0..200u64 {
        let (status, error) = match i {
            37 => (
                "failed",
                r#", "error": "card_declined: insufficient funds""#,
            ),
            121 => ("failed", r#", "error": "gateway timeout after 30s""#),
            170 => ("failed", r#", "error": "fraud check rejected""#),
            _ => (
                if rng.below(3) == 0 {
                    "pending"
                } else {
                    "shipped"
                },
                "",
            ),
        };
        let amount = if i == 88 {
            "98250.00".to_owned()
        } else {
            format!("{}.{:02}", 20 + rng.below(180), rng.below(100))
        };
        rows.push(format!(
            "    {{\n      \"id\": \"ord_{:05}\",\n      \"customer\": \"{}\",\n      \"status\": \"{status}\",\n      \"amount\": {amount},\n      \"currency\": \"USD\",\n      \"created_at\": \"2024-06-{:02}T{:02}:{:02}:00Z\"{error}\n    }}",
            10_000 + i,
            CUSTOMERS[rng.below(8) as usize],
            1 + i / 10,
            rng.below(24),
            rng.below(60)
        ));
    }
    let text = format!(
        "{{\n  \"object\": \"list\",\n  \"data\": [\n{}\n  ],\n  \"has_more\": false\n}}",
        rows.join(",\n")
    );
    let needles = [
        "ord_10037",
        "card_declined",
        "ord_10121",
        "gateway timeout",
        "ord_10170",
        "fraud check rejected",
        "98250.00",
    ];
    (text, needles.map(str::to_owned).to_vec())
}

fn app_log() -> (String, Vec<String>) {
    let mut rng = Lcg(11);
    let templates = [
        "INFO  [http-nio-8080-exec-{}] c.a.api.OrderController : GET /api/orders/{} 200 {}ms",
        "INFO  [http-nio-8080-exec-{}] c.a.api.CartController : POST /api/cart/{}/items 201 {}ms",
        "DEBUG [scheduler-{}] c.a.jobs.CacheWarmer : refreshed {} keys in {}ms",
        "INFO  [kafka-consumer-{}] c.a.events.Listener : consumed offset {} partition {}",
        "DEBUG [hikari-{}] c.z.h.pool.HikariPool : Pool stats (total={}, active={})",
        "INFO  [http-nio-8080-exec-{}] c.a.auth.TokenFilter : token ok user={} scope={}",
    ];
    let mut lines = Vec::new();
    let mut needles = Vec::new();
    for i in 0..2000u64 {
        let ts = format!(
            "2024-06-01 12:{:02}:{:02}.{:03}",
            (i / 60) % 60,
            i % 60,
            rng.below(1000)
        );
        let t = templates[rng.below(templates.len() as u64) as usize];
        let mut line = t.to_owned();
        for _ in 0..3 {
            line = line.replacen("{}", &rng.below(5000).to_string(), 1);
        }
        lines.push(format!("{ts} {line}"));
        match i {
            400 => {
                let l = format!(
                    "{ts} WARN  [http-nio-8080-exec-3] c.a.api.OrderController : slow query took 2300ms"
                );
                needles.push(l.clone());
                lines.push(l);
            }
            777 => {
                let l = format!(
                    "{ts} ERROR [http-nio-8080-exec-7] c.a.pay.PaymentService : charge failed for order ord_55120"
                );
                needles.push(l.clone());
                lines.push(l);
                for frame in [
                    "java.lang.IllegalStateException: Payment provider returned 502",
                    "\tat com.acme.pay.PaymentService.charge(PaymentService.java:142)",
                    "\tat com.acme.api.OrderController.checkout(OrderController.java:88)",
                    "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)",
                    "Caused by: java.net.SocketTimeoutException: Read timed out",
                    "\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)",
                    "\t... 42 more",
                ] {
                    needles.push(frame.to_owned());
                    lines.push(frame.to_owned());
                }
            }
            1500 => {
                let l = format!("{ts} ERROR [worker-2] app.tasks : task sync_inventory crashed");
                needles.push(l.clone());
                lines.push(l);
                for frame in [
                    "Traceback (most recent call last):",
                    "  File \"/srv/app/tasks.py\", line 51, in sync_inventory",
                    "    stock = fetch_stock(sku)",
                    "KeyError: 'SKU-7781'",
                ] {
                    needles.push(frame.to_owned());
                    lines.push(frame.to_owned());
                }
            }
            _ => {}
        }
    }
    (lines.join("\n") + "\n", needles)
}

fn grep_output() -> (String, Vec<String>, String) {
    let mut rng = Lcg(5);
    let mut out = String::new();
    let mut needles = Vec::new();
    for f in 0..12 {
        let path = format!("services/gateway/src/handlers/module_{f:02}/request_pipeline.rs");
        let mut line = 1;
        for m in 0..25 {
            line += 1 + rng.below(40);
            let text = if (f == 4 || f == 9) && (m == 7 || m == 18) {
                let t = format!("    let claims = validate_token(&headers, &keys)?; // {f}.{m}");
                needles.push(format!("{line}:{t}"));
                t
            } else {
                format!(
                    "    let ctx = RequestContext::from_parts(&parts, {})?;",
                    rng.below(100)
                )
            };
            out.push_str(&format!("{path}:{line}:{text}\n"));
        }
    }
    (out, needles, "where is validate_token called?".to_owned())
}

fn git_diff() -> (String, Vec<String>) {
    let mut rng = Lcg(3);
    let mut out = String::from(
        "commit 4f1c2a9e\nAuthor: Dev <dev@example.com>\n\n    Retry payment calls and bump deps\n\n",
    );
    let mut needles = Vec::new();
    for f in 0..8 {
        let path = format!("src/payments/provider_{f}.rs");
        out.push_str(&format!("diff --git a/{path} b/{path}\nindex {:07x}..{:07x} 100644\n--- a/{path}\n+++ b/{path}\n", rng.next() & 0xfffffff, rng.next() & 0xfffffff));
        let mut old = 10 + rng.below(100);
        for h in 0..3 {
            // git's default three lines of context, and a longer unchanged stretch between two
            // changes of one hunk (as `git diff -U10` or close edits produce).
            let ctx_between = 8 + rng.below(6) as usize;
            let body_old = 3 + 1 + ctx_between + 1 + 3;
            out.push_str(&format!(
                "@@ -{old},{body_old} +{old},{} @@ impl Provider{f} {{\n",
                body_old + 1
            ));
            for k in 0..3 {
                out.push_str(&format!(
                    "     let value_{k} = self.config.get(\"key_{k}\");\n"
                ));
            }
            let minus = "-        self.client.post(&url).send()?".to_owned();
            let plus = format!("+        self.retry(|| self.client.post(&url).send(), {h})?");
            out.push_str(&format!("{minus}\n{plus}\n"));
            needles.push(minus);
            needles.push(plus);
            for k in 0..ctx_between {
                out.push_str(&format!("         // unchanged line {k} of handler {h}\n"));
            }
            let add = format!("+        tracing::info!(provider = {f}, hunk = {h}, \"sent\");");
            out.push_str(&format!("-        log::debug!(\"sent\");\n{add}\n"));
            needles.push(add);
            for k in 0..3 {
                out.push_str(&format!("     }} // end {k}\n"));
            }
            old += 60;
        }
    }
    out.push_str("diff --git a/Cargo.lock b/Cargo.lock\nindex 1111111..2222222 100644\n--- a/Cargo.lock\n+++ b/Cargo.lock\n@@ -100,12 +100,12 @@\n");
    for k in 0..6 {
        out.push_str(&format!(
            " [[package]]\n-version = \"1.{k}.0\"\n+version = \"1.{k}.1\"\n"
        ));
    }
    (out, needles)
}

fn source_code() -> String {
    let mut out = String::from(
        "use std::collections::BTreeMap;\n\n/// A registry.\npub struct Registry {\n    items: BTreeMap<String, u64>,\n}\n\nimpl Registry {\n",
    );
    for i in 0..60 {
        out.push_str(&format!("    /// Adds item {i}.\n    pub fn add_{i}(&mut self, key: &str) -> u64 {{\n        let value = self.items.len() as u64 + {i};\n        self.items.insert(key.to_owned(), value);\n        value\n    }}\n\n"));
    }
    out.push_str("}\n");
    out
}

/// The realistic corpus texts, for differential tests elsewhere (the tokenizer's).
pub(crate) fn corpus_texts() -> Vec<String> {
    vec![
        api_json().0,
        app_log().0,
        grep_output().0,
        git_diff().0,
        source_code(),
    ]
}

fn tokens(text: &str) -> usize {
    Encoding::O200kBase.count(text)
}

/// Runs one corpus text through the block pipeline and returns (tokens before, after, output).
fn run_block(text: &str, query: &str) -> (usize, usize, String) {
    let config = PipelineConfig::default();
    let result = compress_block(
        text,
        &config,
        &Query::new(query),
        ContentHash::of(text.as_bytes()),
    );
    let out = result.text.unwrap_or_else(|| text.to_owned());
    (tokens(text), tokens(&out), out)
}

#[test]
fn corpus_meets_targets_and_keeps_every_needle() {
    let (json, json_needles) = api_json();
    let (log, log_needles) = app_log();
    let (grep, grep_needles, grep_query) = grep_output();
    let (diff, diff_needles) = git_diff();
    let code = source_code();
    let cases: [(&str, &str, &str, Vec<String>, f64); 5] = [
        (
            "json api (200 rows, 3 errors, 1 outlier)",
            &json,
            "Why did some orders fail?",
            json_needles,
            0.85,
        ),
        (
            "app log (2000 lines, 2 traces)",
            &log,
            "why did checkout fail?",
            log_needles,
            0.90,
        ),
        (
            "grep (300 matches, 12 files)",
            &grep,
            &grep_query,
            grep_needles,
            0.40,
        ),
        (
            "git diff (8 files + Cargo.lock)",
            &diff,
            "",
            diff_needles,
            0.30,
        ),
        ("rust source (500 lines)", &code, "", Vec::new(), 0.0),
    ];
    println!(
        "| content | bytes before | bytes after | tokens before | tokens after | saved | needles kept |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, text, query, needles, target) in cases {
        let (before, after, out) = run_block(text, query);
        let saved = 1.0 - after as f64 / before as f64;
        let kept = needles.iter().filter(|n| out.contains(n.as_str())).count();
        println!(
            "| {name} | {} | {} | {before} | {after} | {:.1} % | {kept}/{} |",
            text.len(),
            out.len(),
            saved * 100.0,
            needles.len()
        );
        for needle in &needles {
            assert!(
                out.contains(needle.as_str()),
                "{name}: lost {needle:?}\n{out}"
            );
        }
        assert!(
            saved >= target,
            "{name}: saved {saved:.3} < {target}\n{out}"
        );
    }
}

fn chat_request(outputs: &[(&str, &str)], user: &str) -> String {
    let mut messages = vec![
        format!(r#"{{"role":"system","content":"You are helpful."}}"#),
        format!(
            r#"{{"role":"user","content":{}}}"#,
            crate::json::encode_string(user)
        ),
    ];
    for (i, (tool, output)) in outputs.iter().enumerate() {
        messages.push(format!(
            r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_{i}","type":"function","function":{{"name":"{tool}","arguments":"{{}}"}}}}]}}"#
        ));
        messages.push(format!(
            r#"{{"role":"tool","tool_call_id":"call_{i}","content":{}}}"#,
            crate::json::encode_string(output)
        ));
    }
    format!(
        r#"{{"model":"gpt-4o","messages":[{}]}}"#,
        messages.join(",")
    )
}

#[test]
fn request_level_manifest_and_shape() {
    let (json, _) = api_json();
    let (log, _) = app_log();
    let small = "tiny output";
    let body = chat_request(
        &[
            ("http_get", &json),
            ("Bash", &log),
            ("Read", &log),
            ("Bash", small),
        ],
        "Why did orders fail?",
    );
    let mut host = MemoryHost::default();
    let outcome = compress_request(
        Api::OpenAiChat,
        body.as_bytes(),
        &PipelineConfig::default(),
        &mut host,
    )
    .unwrap();
    let decisions: Vec<&str> = outcome.blocks.iter().map(|b| b.decision.as_str()).collect();
    assert_eq!(
        decisions,
        vec!["compressed", "compressed", "protected_tool", "too_small"]
    );
    assert_eq!(outcome.blocks[0].tool.as_deref(), Some("http_get"));
    assert_eq!(outcome.blocks[0].strategy, "json:select");
    assert!(outcome.tokens_saved() > 10_000);
    let out = outcome.body.unwrap();
    assert_same_shape(body.as_bytes(), &out);
    // The originals of both lossy blocks are retrievable by the hash in their markers.
    for block in &outcome.blocks[..2] {
        assert_eq!(
            OmittedStore::get(&host.omitted, block.hash).map(|b| b.len()),
            Some(block.bytes_before)
        );
    }
    // Compressing the output again changes nothing.
    let again = compress_request(
        Api::OpenAiChat,
        &out,
        &PipelineConfig::default(),
        &mut MemoryHost::default(),
    )
    .unwrap();
    assert_eq!(again.body, None);
}

/// Same messages, roles, ids and order; only tool output strings may differ.
fn assert_same_shape(before: &[u8], after: &[u8]) {
    let a: serde_json::Value = serde_json::from_slice(before).unwrap();
    let b: serde_json::Value = serde_json::from_slice(after).expect("output is valid JSON");
    let strip = |v: &serde_json::Value| -> Vec<String> {
        let mut shape = Vec::new();
        let list = v
            .get("messages")
            .or_else(|| v.get("input"))
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        for m in list {
            let mut m = m.clone();
            if let Some(obj) = m.as_object_mut() {
                if obj.get("role").and_then(|r| r.as_str()) == Some("tool") {
                    obj.remove("content");
                }
                if let Some(serde_json::Value::Array(blocks)) = obj.get_mut("content") {
                    for block in blocks {
                        if let Some(block) = block.as_object_mut()
                            && block.get("type").and_then(|t| t.as_str()) == Some("tool_result")
                        {
                            block.remove("content");
                        }
                    }
                }
                obj.remove("output");
            }
            shape.push(m.to_string());
        }
        shape
    };
    assert_eq!(strip(&a), strip(&b));
}

fn anthropic_turn(history: &mut Vec<String>, turn: usize, output: &str, question: &str) -> String {
    history.push(format!(
        r#"{{"role":"assistant","content":[{{"type":"text","text":"Looking."}},{{"type":"tool_use","id":"toolu_{turn}","name":"{}","input":{{}}}}]}}"#,
        if turn % 5 == 4 { "Read" } else { "Bash" }
    ));
    history.push(format!(
        r#"{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{turn}","content":{},"cache_control":{{"type":"ephemeral"}}}},{{"type":"text","text":{}}}]}}"#,
        crate::json::encode_string(output),
        crate::json::encode_string(question)
    ));
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{}]}}"#,
        history.join(",")
    )
}

/// Twelve turns, each appending a tool result and resending the whole history: every
/// request's prefix is byte-identical to what was sent for the previous turn, although each
/// turn asks a different question (which would change a fresh lossy selection).
#[test]
fn twelve_turn_conversation_keeps_the_cached_prefix() {
    let (json, _) = api_json();
    let (log, _) = app_log();
    let (grep, _, _) = grep_output();
    let (diff, _) = git_diff();
    let outputs = [
        json.as_str(),
        log.as_str(),
        grep.as_str(),
        diff.as_str(),
        "short",
        json.as_str(),
    ];
    let config = PipelineConfig::default();
    let mut host = MemoryHost::default();
    let mut history = vec![r#"{"role":"user","content":"Investigate the incident."}"#.to_owned()];
    let mut previous: Option<String> = None;
    let mut saved_total = 0;
    for turn in 0..12 {
        let question = format!(
            "turn {turn}: what about ord_{:05} and module_{:02}?",
            10_000 + turn * 17,
            turn
        );
        let mut output = outputs[turn % outputs.len()].to_owned();
        if turn >= outputs.len() {
            output.push_str(&format!("\n(refreshed at turn {turn})"));
        }
        let body = anthropic_turn(&mut history, turn, &output, &question);
        let outcome =
            compress_request(Api::AnthropicMessages, body.as_bytes(), &config, &mut host).unwrap();
        saved_total += outcome.tokens_saved();
        let sent = String::from_utf8(
            outcome
                .body
                .clone()
                .unwrap_or_else(|| body.clone().into_bytes()),
        )
        .unwrap();
        assert_same_shape(body.as_bytes(), sent.as_bytes());
        if let Some(previous) = &previous {
            let prefix = previous.strip_suffix("]}").unwrap();
            assert!(sent.starts_with(prefix), "turn {turn}: the prefix changed");
        }
        previous = Some(sent);
    }
    assert!(saved_total > 50_000, "{saved_total}");
}

/// A request with arbitrary tool outputs built from a few realistic kinds and noise.
fn arb_output() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (1usize..120, any::<u8>()).prop_map(|(n, seed)| {
            let rows: Vec<String> = (0..n)
                .map(|i| {
                    let err = if (i as u8).wrapping_add(seed) % 29 == 0 {
                        ",\"error\":\"boom\""
                    } else {
                        ""
                    };
                    format!(
                        "{{\"id\":{i},\"name\":\"n{}\",\"v\":{}{err}}}",
                        (i * seed as usize) % 7,
                        (i * 31 + seed as usize) % 97
                    )
                })
                .collect();
            format!("[{}]", rows.join(","))
        }),
        (20usize..300, any::<u8>()).prop_map(|(n, seed)| {
            (0..n)
                .map(|i| {
                    if (i + seed as usize).is_multiple_of(53) {
                        format!("ERROR step {i} failed\n")
                    } else {
                        format!("INFO step {i} ok in {}ms\n", (i * 7) % 13)
                    }
                })
                .collect::<String>()
        }),
        (1usize..200).prop_map(|n| (0..n)
            .map(|i| format!("src/f{}.rs:{}:let x = {i};\n", i % 4, i + 1))
            .collect::<String>()),
        "[ -~\n]{0,2000}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn requests_keep_shape_lose_tokens_and_are_idempotent(outputs in proptest::collection::vec(arb_output(), 1..4), user in "[ -~]{0,40}") {
        let pairs: Vec<(&str, &str)> = outputs.iter().map(|o| ("Bash", o.as_str())).collect();
        let body = chat_request(&pairs, &user);
        let config = PipelineConfig { min_block_bytes: 64, ..PipelineConfig::default() };
        let outcome = compress_request(Api::OpenAiChat, body.as_bytes(), &config, &mut MemoryHost::default()).unwrap();
        for block in &outcome.blocks {
            if let (Some(before), Some(after)) = (block.tokens_before, block.tokens_after)
                && block.decision.replaced()
            {
                prop_assert!(after < before);
            }
        }
        if let Some(out) = &outcome.body {
            assert_same_shape(body.as_bytes(), out);
            let again = compress_request(Api::OpenAiChat, out, &config, &mut MemoryHost::default()).unwrap();
            prop_assert!(again.body.is_none(), "not idempotent: {:?}", again.blocks);
        }
        // Deterministic.
        let twice = compress_request(Api::OpenAiChat, body.as_bytes(), &config, &mut MemoryHost::default()).unwrap();
        prop_assert_eq!(twice.body, outcome.body);
    }

    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), api in 0usize..3) {
        let api = Api::ALL[api];
        let _ = compress_request(api, &bytes, &PipelineConfig::default(), &mut MemoryHost::default());
    }

    #[test]
    fn arbitrary_texts_never_panic_any_compressor(text in any::<String>(), query in "[a-z ]{0,20}") {
        let config = PipelineConfig::default();
        let hash = ContentHash::of(text.as_bytes());
        let q = Query::new(&query);
        let _ = compress_block(&text, &config, &q, hash);
        let _ = log::compress(&text, 2, &q, hash);
        let _ = diff::compress(&text, 2, &q, hash);
        let _ = search::compress(&text, &q, 5, 0, true, hash);
        let _ = Encoding::O200kBase.count(&text);
    }
}

#[test]
fn speed_on_a_one_megabyte_json_array() {
    let mut rows = Vec::new();
    let mut i = 0;
    let mut size = 0;
    while size < 1_000_000 {
        let row = format!(
            r#"{{"id":{i},"user":"user_{}","event":"page_view","path":"/products/{}","ms":{}}}"#,
            i % 977,
            i % 313,
            20 + i % 50
        );
        size += row.len() + 1;
        rows.push(row);
        i += 1;
    }
    rows[4321] = rows[4321].replace("page_view", "checkout_error");
    let text = format!("[{}]", rows.join(","));
    let body = chat_request(&[("http_get", &text)], "what went wrong at checkout?");
    let start = std::time::Instant::now();
    let outcome = compress_request(
        Api::OpenAiChat,
        body.as_bytes(),
        &PipelineConfig::default(),
        &mut MemoryHost::default(),
    )
    .unwrap();
    let elapsed = start.elapsed();
    let block = &outcome.blocks[0];
    println!(
        "1 MB JSON array ({} rows): {:?}, {} -> {} bytes, {:?} -> {:?} tokens, {}",
        rows.len(),
        elapsed,
        block.bytes_before,
        block.bytes_after,
        block.tokens_before,
        block.tokens_after,
        block.decision.as_str()
    );
    assert!(block.decision.replaced());
    println!(
        "BPE index heap: o200k_base {} bytes, cl100k_base {} bytes",
        Encoding::O200kBase.index_heap_bytes(),
        Encoding::Cl100kBase.index_heap_bytes()
    );
}

/// Upstream's smart_crusher fixtures (recorded without the lossless stage, with row drops
/// marked by a `_ccr_dropped` sentinel). We compare which items survive. Differences, each
/// deliberate:
///
/// | label | upstream | ours | why |
/// |---|---|---|---|
/// | dict_array_30*, dict_array_100_sequential | 15 rows kept, no error rows in the 100 case | every error row + first/last; no drop without a signal | lossy only when a signal says which rows matter; bias only scales the count (B1) |
/// | number_array_40_changepoint | 15 of 40 kept | all kept (no outlier by MAD) | a level shift is not an outlier; change points are not a drop signal here |
/// | string_array_25, mixed_array | 15 / 13 kept | all kept | no signal (no errors, no duplicates, no query) |
/// | nested_*, time_series_50, unicode_dict_array | unchanged rows | unchanged rows (maybe as a table) | same |
/// | duplicate_dicts_40 | 1 kept | 1 kept | same |
#[test]
fn upstream_smart_crusher_fixtures() {
    let Some(dir) = fixtures::dir("smart_crusher") else {
        return;
    };
    let mut lines = Vec::new();
    let (mut same, mut total) = (0, 0);
    for (name, case) in fixtures::load(&dir) {
        let input = &case["input"];
        let content = input["content"].as_str().unwrap();
        let query = input["query"].as_str().unwrap_or("");
        let bias = input["bias"].as_f64().unwrap_or(1.0);
        let config = PipelineConfig {
            bias,
            table_min_savings: 2.0,
            ..PipelineConfig::default()
        };
        let ours = json_crush::crush(
            content,
            &config,
            &Query::new(query),
            ContentHash::of(content.as_bytes()),
        );
        let upstream: serde_json::Value =
            serde_json::from_str(case["output"]["compressed"].as_str().unwrap())
                .unwrap_or(serde_json::Value::Null);
        let upstream_kept = upstream
            .as_array()
            .map(|a| a.iter().filter(|v| v.get("_ccr_dropped").is_none()).count());
        let ours_value: Option<serde_json::Value> = ours
            .as_ref()
            .map(|c| serde_json::from_str(&c.text).unwrap());
        let ours_kept = ours_value.as_ref().and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter(|v| !v.as_str().is_some_and(marker::contains_marker))
                .count()
        });
        total += 1;
        if upstream_kept == ours_kept {
            same += 1;
        }
        lines.push(format!(
            "{:<45} upstream kept {:?}, ours {:?}",
            case["label"].as_str().unwrap_or(&name),
            upstream_kept,
            ours_kept
        ));
        // Whatever we keep must be valid JSON and every error row must survive.
        if let Some(value) = &ours_value {
            let text = value.to_string();
            for row in serde_json::from_str::<serde_json::Value>(content)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
            {
                if row.get("status").and_then(|s| s.as_str()) == Some("error") {
                    assert!(
                        text.contains(&row["msg"].to_string()),
                        "{name}: lost error row {row}"
                    );
                }
            }
        }
    }
    println!(
        "smart_crusher fixtures: {same}/{total} keep the same number of items\n{}",
        lines.join("\n")
    );
}

/// Upstream's fidelity golden set: lossy JSON compression must keep what answers each
/// question. Recall is the share of `answer_evidence` and `supporting_facts` strings present in
/// the compressed text, averaged over cases; upstream's baseline is 0.9167 ± 0.02, the issue
/// asks for ≥ 0.95 overall and 1.0 for the evidence (which sits in error and anomaly rows).
/// Cases run as upstream ran them: no lossless table stage, `max_items_after_crush` as the
/// item budget, the question as the query.
#[test]
fn upstream_fidelity_golden_recall() {
    let Some(dir) = fixtures::under("tests/fixtures/fidelity_golden") else {
        return;
    };
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let mut recalls = Vec::new();
    for case in cases.as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        // The rows as JSON text, as a tool would return them.
        let content = &case["content"].to_string();
        let config = PipelineConfig {
            table_min_savings: 2.0,
            max_items: case["compress"]["max_items_after_crush"]
                .as_u64()
                .unwrap_or(15) as usize,
            ..PipelineConfig::default()
        };
        let crushed = json_crush::crush(
            content,
            &config,
            &Query::new(case["question"].as_str().unwrap()),
            ContentHash::of(content.as_bytes()),
        )
        .unwrap();
        let rows_before = serde_json::from_str::<serde_json::Value>(content).unwrap();
        let rows_after = serde_json::from_str::<serde_json::Value>(&crushed.text).unwrap();
        assert!(
            rows_after.as_array().unwrap().len() < rows_before.as_array().unwrap().len(),
            "{id}: nothing was dropped, so recall would say nothing"
        );
        let strings = |key: &str| -> Vec<String> {
            case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        let evidence = strings("answer_evidence");
        let facts = strings("supporting_facts");
        for needle in &evidence {
            assert!(
                crushed.text.contains(needle.as_str()),
                "{id}: lost evidence {needle:?}"
            );
        }
        let all: Vec<&String> = evidence.iter().chain(&facts).collect();
        let found = all
            .iter()
            .filter(|n| crushed.text.contains(n.as_str()))
            .count();
        let recall = found as f64 / all.len() as f64;
        println!(
            "{id}: recall {recall:.3} ({found}/{}), {} of {} rows kept",
            all.len(),
            rows_after.as_array().unwrap().len(),
            rows_before.as_array().unwrap().len()
        );
        recalls.push(recall);
    }
    let aggregate = recalls.iter().sum::<f64>() / recalls.len() as f64;
    println!("fidelity_golden aggregate recall {aggregate:.4} (upstream baseline 0.9167)");
    assert!(aggregate >= 0.95, "aggregate recall {aggregate}");
}

/// Upstream's diff_compressor fixtures: every added and removed line must survive, and when
/// upstream changes nothing we change nothing but drop `index` lines. Differences: upstream
/// keeps `index` lines and writes an un-updated hunk header after trimming context (the hunk
/// no longer applies); we drop `index` lines and split hunks with recomputed headers, and
/// name the omission with one marker.
#[test]
fn upstream_diff_compressor_fixtures() {
    let Some(dir) = fixtures::dir("diff_compressor") else {
        return;
    };
    let (mut same_changes, mut total, mut identical) = (0, 0, 0);
    for (name, case) in fixtures::load(&dir) {
        let input = case["input"].as_str().unwrap();
        let context = case["config"]["max_context_lines"].as_u64().unwrap_or(2) as usize;
        let upstream = case["output"]["compressed"].as_str().unwrap();
        let ours = diff::compress(
            input,
            context,
            &Query::default(),
            ContentHash::of(input.as_bytes()),
        )
        .map_or(input.to_owned(), |d| d.text);
        let changes = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| {
                    (l.starts_with('+') && !l.starts_with("+++"))
                        || (l.starts_with('-') && !l.starts_with("---"))
                })
                .map(str::to_owned)
                .collect()
        };
        total += 1;
        // Every changed line is kept, in order, or counted where its long run was cut.
        let counted: usize = ours
            .lines()
            .filter_map(|l| {
                l.strip_prefix("[+")?
                    .strip_suffix(" changed lines omitted]")
            })
            .filter_map(|counts| {
                let (added, removed) = counts.split_once(" -")?;
                Some(added.parse::<usize>().ok()? + removed.parse::<usize>().ok()?)
            })
            .sum();
        let (kept, all) = (changes(&ours), changes(input));
        assert_eq!(
            kept.len() + counted,
            all.len(),
            "{name}: a changed line was lost"
        );
        let mut rest = all.iter();
        assert!(
            kept.iter().all(|k| rest.any(|a| a == k)),
            "{name}: changed lines out of order"
        );
        if changes(&ours) == changes(upstream) {
            same_changes += 1;
        }
        if ours == upstream {
            identical += 1;
        }
    }
    println!(
        "diff_compressor fixtures: {same_changes}/{total} keep the same changed lines as upstream, {identical}/{total} byte-identical"
    );
}

fn html_page() -> String {
    let rows: Vec<String> = (0..40)
        .map(|i| {
            format!(r#"<tr class="row"><td><a href="/item/{i}">Item {i}</a></td><td>{i} units</td></tr>"#)
        })
        .collect();
    format!(
        "<!DOCTYPE html><html><head><title>Stock</title></head><body><table>{}</table></body></html>",
        rows.join("\n")
    )
}

/// Waste is counted on the outputs a request adds, once each; a new copy of an output served
/// four messages earlier is a re-read, attributable to compression when the earlier copy went
/// out with a marker; switching the signals off changes no byte.
#[test]
fn waste_signals_count_each_new_output_once() {
    use crate::pipeline::waste::{WasteSignal, content_signals};
    use crate::tokens::Tokenizer;
    let (log, _) = app_log();
    let page = html_page();
    let config = PipelineConfig::default();
    let mut host = MemoryHost::default();
    let mut history = vec![r#"{"role":"user","content":"Check the service."}"#.to_owned()];
    let mut run = |body: String, config: &PipelineConfig| {
        compress_request(Api::AnthropicMessages, body.as_bytes(), config, &mut host).unwrap()
    };
    let first = run(anthropic_turn(&mut history, 0, &log, "Why?"), &config);
    assert_eq!(first.blocks[0].decision, Decision::Compressed);
    let log_signals = content_signals(
        &log,
        Tokenizer::Anthropic,
        first.blocks[0].tokens_before,
        false,
    );
    assert_eq!(first.waste, log_signals);
    assert!(!first.waste.is_empty());

    let second = run(
        anthropic_turn(&mut history, 1, &page, "And the stock?"),
        &config,
    );
    let page_signals = content_signals(
        &page,
        Tokenizer::Anthropic,
        second.blocks[1].tokens_before,
        false,
    );
    assert!(page_signals.get(WasteSignal::HtmlNoise) > 0);
    // The log is history now: only the page counts.
    assert_eq!(second.waste, page_signals);

    let third_body = anthropic_turn(&mut history, 2, &log, "Once more?");
    let third = run(third_body.clone(), &config);
    let log_tokens = Tokenizer::Anthropic.count(&log).tokens;
    let mut expected = log_signals;
    expected.add(WasteSignal::Reread, log_tokens);
    expected.add(WasteSignal::RereadCompressed, log_tokens);
    assert_eq!(third.waste, expected);

    let off = PipelineConfig {
        waste_signals: false,
        ..PipelineConfig::default()
    };
    let quiet = run(third_body, &off);
    assert!(quiet.waste.is_empty());
    assert_eq!(quiet.body, third.body);
}

/// Responses: the model's turns are its calls and reasoning; outputs after the last of them
/// are new.
#[test]
fn responses_waste_counts_outputs_after_the_last_call() {
    use crate::pipeline::waste::WasteSignal;
    let page = html_page();
    let other = page
        .replace("Stock", "Inventory")
        .replace("units", "pieces");
    let item = |call: &str, output: &str| {
        format!(
            r#"{{"type":"function_call","call_id":"{call}","name":"fetch","arguments":"{{}}"}},{{"type":"function_call_output","call_id":"{call}","output":{}}}"#,
            crate::json::encode_string(output)
        )
    };
    let body = format!(
        r#"{{"model":"gpt-4o","input":[{{"role":"user","content":"stock?"}},{},{}]}}"#,
        item("c1", &page),
        item("c2", &other)
    );
    let outcome = compress_request(
        Api::OpenAiResponses,
        body.as_bytes(),
        &PipelineConfig::default(),
        &mut MemoryHost::default(),
    )
    .unwrap();
    let only_other = crate::pipeline::waste::content_signals(
        &other,
        outcome.tokenizer,
        outcome.blocks[1].tokens_before,
        false,
    );
    assert!(only_other.get(WasteSignal::HtmlNoise) > 0);
    assert_eq!(outcome.waste, only_other);
}

/// An earlier tool output compressed with no replay record (the process restarted, or another
/// instance served the previous turn) is compressed again, to the same bytes; with the record
/// it is a replay.
#[test]
fn recompressed_history_is_counted_and_sends_the_same_bytes() {
    let (log, _) = app_log();
    let (json, _) = api_json();
    let config = PipelineConfig::default();
    let mut host = MemoryHost::default();
    let mut history = vec![r#"{"role":"user","content":"Check the service."}"#.to_owned()];
    let first = anthropic_turn(&mut history, 0, &log, "Why?");
    let outcome = compress_request(Api::AnthropicMessages, first.as_bytes(), &config, &mut host);
    assert_eq!(outcome.unwrap().recompressed_history, 0);
    let second = anthropic_turn(&mut history, 1, &json, "And the orders?");
    let replayed = compress_request(
        Api::AnthropicMessages,
        second.as_bytes(),
        &config,
        &mut host,
    )
    .unwrap();
    assert_eq!(replayed.blocks[0].decision, Decision::Replayed);
    assert_eq!(replayed.recompressed_history, 0);
    let forgotten = compress_request(
        Api::AnthropicMessages,
        second.as_bytes(),
        &config,
        &mut MemoryHost::default(),
    )
    .unwrap();
    assert_eq!(forgotten.blocks[0].decision, Decision::Compressed);
    assert_eq!(forgotten.recompressed_history, 1);
    assert_eq!(forgotten.body, replayed.body);
}

/// A later turn finds its decisions by the outputs' raw bytes and reports what the first
/// decision reported (hash, sizes, tokens) without decoding them; a protected tool is never
/// replayed, and the same text escaped otherwise is decided afresh to the same bytes.
#[test]
fn a_replay_reports_what_the_first_decision_did() {
    let (json, _) = api_json();
    let code = source_code();
    let small = "ok: 3 rows".to_owned();
    let config = PipelineConfig {
        protected_tools: vec!["secret_*".into()],
        ..PipelineConfig::default()
    };
    let mut host = MemoryHost::default();
    let outputs = [
        ("get_orders", &json),
        ("read_file", &code),
        ("ping", &small),
    ];
    let body = chat_request(
        &outputs.map(|(t, o)| (t, o.as_str())),
        "Which orders failed?",
    );
    let first = compress_request(Api::OpenAiChat, body.as_bytes(), &config, &mut host).unwrap();
    let again = compress_request(Api::OpenAiChat, body.as_bytes(), &config, &mut host).unwrap();
    assert_eq!(again.body, first.body);
    let decisions: Vec<_> = first.blocks.iter().map(|b| b.decision).collect();
    assert_eq!(
        decisions,
        [Decision::Compressed, Decision::NoChange, Decision::TooSmall]
    );
    let replays: Vec<_> = again.blocks.iter().map(|b| b.decision).collect();
    assert_eq!(
        replays,
        [
            Decision::Replayed,
            Decision::ReplayedUnchanged,
            Decision::TooSmall
        ]
    );
    for (was, now) in first.blocks.iter().zip(&again.blocks) {
        assert_eq!(
            (now.hash, now.bytes_before, now.bytes_after),
            (was.hash, was.bytes_before, was.bytes_after),
            "{}",
            was.location
        );
    }
    assert_eq!(again.blocks[0].tokens_before, first.blocks[0].tokens_before);
    assert_eq!(again.blocks[0].tokens_after, first.blocks[0].tokens_after);

    // The same bytes from a protected tool: protected, not replayed.
    let protected = chat_request(&[("secret_orders", &json)], "Which orders failed?");
    let outcome =
        compress_request(Api::OpenAiChat, protected.as_bytes(), &config, &mut host).unwrap();
    assert_eq!(outcome.blocks[0].decision, Decision::ProtectedTool);
    assert_eq!(outcome.body, None);

    // The same text with one character escaped as \u0069: another key, the same bytes out.
    let escaped = body.replacen(r#"\"id\""#, r#"\"\u0069d\""#, 1);
    assert_ne!(escaped, body);
    let outcome =
        compress_request(Api::OpenAiChat, escaped.as_bytes(), &config, &mut host).unwrap();
    assert_eq!(outcome.blocks[0].decision, Decision::Compressed);
    assert_eq!(outcome.blocks[0].hash, first.blocks[0].hash);
    assert_eq!(outcome.body, first.body);
}
