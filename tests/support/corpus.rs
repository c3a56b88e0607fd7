//! Realistic, deterministic request bodies for tests and benchmarks: what coding agents send
//! (chat histories whose newest tool output is a large JSON array, build logs, several tool
//! results), sized as asked. No randomness: the same call always gives the same bytes.

use serde_json::{Value, json};

/// A small deterministic PRNG (xorshift64*), so corpora vary without being random.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `n` API records as a pretty-printed JSON array, with a few errors among them.
pub fn records_json(n: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let services = [
        "billing",
        "auth",
        "search",
        "checkout",
        "inventory",
        "notifications",
    ];
    let regions = ["us-east-1", "eu-west-1", "ap-south-1"];
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let error = rng.below(97) == 0;
            json!({
                "id": format!("evt_{:06}", i + 1),
                "timestamp": format!("2026-11-2{}T{:02}:{:02}:{:02}Z", 1 + rng.below(6), rng.below(24), rng.below(60), rng.below(60)),
                "service": services[rng.below(services.len() as u64) as usize],
                "region": regions[rng.below(regions.len() as u64) as usize],
                "status": if error { "error" } else { "ok" },
                "latency_ms": if error { 2000 + rng.below(8000) } else { 20 + rng.below(180) },
                "retries": if error { 3 } else { 0 },
                "message": if error { "upstream timeout while calling payments-gateway".to_string() } else { format!("request {} completed", i + 1) },
                "user": {"id": format!("usr_{:05}", rng.below(50_000)), "plan": if rng.below(4) == 0 { "enterprise" } else { "free" }},
            })
        })
        .collect();
    serde_json::to_string_pretty(&records).unwrap_or_default()
}

/// A build/application log of about `bytes` bytes with warnings, errors and a stack trace.
pub fn log_text(bytes: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(bytes + 256);
    let mut i = 0u64;
    while out.len() < bytes {
        i += 1;
        let line = match rng.below(200) {
            0 => format!(
                "2026-11-27T10:{:02}:{:02}.{:03}Z ERROR worker-{} job {} failed: connection reset by peer\n    at net::tcp::read (src/net/tcp.rs:{})\n    at worker::run (src/worker.rs:88)\n",
                i % 60,
                rng.below(60),
                rng.below(1000),
                rng.below(8),
                i,
                100 + rng.below(400)
            ),
            1..=4 => format!(
                "2026-11-27T10:{:02}:{:02}.{:03}Z WARN  worker-{} slow query took {}ms (threshold 500ms)\n",
                i % 60,
                rng.below(60),
                rng.below(1000),
                rng.below(8),
                500 + rng.below(3000)
            ),
            _ => format!(
                "2026-11-27T10:{:02}:{:02}.{:03}Z INFO  worker-{} processed batch {} ({} items) in {}ms\n",
                i % 60,
                rng.below(60),
                rng.below(1000),
                rng.below(8),
                i,
                rng.below(500),
                rng.below(90)
            ),
        };
        out.push_str(&line);
    }
    out
}

fn history(turns: usize) -> Vec<Value> {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a coding agent. Use the tools to inspect the system before answering."}),
    ];
    for t in 0..turns {
        messages.push(json!({"role": "user", "content": format!("Step {t}: check the service health and summarise anomalies.")}));
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{t}"), "type": "function", "function": {"name": "query_events", "arguments": "{\"limit\": 20}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{t}"), "content": format!("ok: {} events, none failed", 20 + t)}));
    }
    messages
}

fn openai_request(mut messages: Vec<Value>, tool_outputs: Vec<String>, stream: bool) -> Vec<u8> {
    for (i, output) in tool_outputs.into_iter().enumerate() {
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_big_{i}"), "type": "function", "function": {"name": "query_events", "arguments": "{\"limit\": 300}"}}]}));
        messages.push(
            json!({"role": "tool", "tool_call_id": format!("call_big_{i}"), "content": output}),
        );
    }
    messages.push(json!({"role": "user", "content": "Which requests failed, and why?"}));
    let mut body = json!({"model": "gpt-4o-mini", "messages": messages});
    if stream {
        body["stream"] = json!(true);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A tiny chat request (~150 bytes).
pub fn tiny_chat(stream: bool) -> Vec<u8> {
    let mut body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]});
    if stream {
        body["stream"] = json!(true);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An agent request whose newest tool output is a pretty JSON array of `records` records
/// (300 records ≈ 110 KB in all).
pub fn agent_json_request(records: usize, stream: bool) -> Vec<u8> {
    openai_request(history(4), vec![records_json(records, 7)], stream)
}

/// An agent request carrying a log tool output of about `bytes` bytes.
pub fn agent_log_request(bytes: usize) -> Vec<u8> {
    openai_request(history(3), vec![log_text(bytes, 11)], false)
}

/// [`agent_log_request`] whose question before the log names no word of it (`Step 2: check
/// ...` names `2`, a word of most log lines; most questions name nothing in a tool output).
pub fn agent_log_request_naming_nothing(bytes: usize) -> Vec<u8> {
    let body = String::from_utf8_lossy(&agent_log_request(bytes)).replace("Step 2: check", "Check");
    body.into_bytes()
}

/// An agent request with four large tool results (two JSON arrays, two logs).
pub fn agent_multi_request() -> Vec<u8> {
    openai_request(
        history(6),
        vec![
            records_json(300, 1),
            log_text(80_000, 2),
            records_json(250, 3),
            log_text(60_000, 4),
        ],
        false,
    )
}

/// A chat request of about `bytes` bytes, made of JSON-array tool outputs (for size sweeps).
pub fn sized_request(bytes: usize) -> Vec<u8> {
    // One record pretty-printed is ~330 bytes; JSON-escaped in the request ~380.
    let records = (bytes / 380).max(1);
    let per_output = 3_000;
    let mut outputs = Vec::new();
    let mut left = records;
    let mut seed = 1;
    while left > 0 {
        let n = left.min(per_output);
        outputs.push(records_json(n, seed));
        left -= n;
        seed += 1;
    }
    openai_request(history(1), outputs, false)
}

/// ripgrep output (`path:line:text`, with a few `path-line-text` context lines) of about
/// `bytes` bytes: many files, many matches each, a few carrying error words.
pub fn grep_text(bytes: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let dirs = [
        "src/services",
        "src/handlers",
        "src/db",
        "lib/util",
        "tests/integration",
    ];
    let names = [
        "handler", "client", "pool", "retry", "config", "session", "cache",
    ];
    let bodies = [
        "    let value = compute_total(&input, options)?;",
        "    if let Err(e) = client.send(request).await {",
        "        return Err(Error::Timeout(elapsed));",
        "    // TODO: remove the fallback once the migration is done",
        "    let config = Config::from_env().context(\"reading config\")?;",
        "    debug!(\"processed {} items in {:?}\", count, started.elapsed());",
        "    assert_eq!(response.status(), StatusCode::OK);",
        "fn handle_request(req: Request<Body>) -> Result<Response<Body>, Error> {",
    ];
    let mut out = String::with_capacity(bytes + 256);
    let mut file = 0u64;
    while out.len() < bytes {
        file += 1;
        let path = format!(
            "{}/{}_{}/{}.rs",
            dirs[rng.below(dirs.len() as u64) as usize],
            names[rng.below(names.len() as u64) as usize],
            file,
            names[rng.below(names.len() as u64) as usize]
        );
        let matches = 1 + rng.below(40);
        let mut line = 1 + rng.below(50);
        for _ in 0..matches {
            line += 1 + rng.below(60);
            if rng.below(10) == 0 {
                out.push_str(&format!("{path}-{}-    // context\n", line - 1));
            }
            let body = if rng.below(150) == 0 {
                "        panic!(\"connection failed: upstream error\");"
            } else {
                bodies[rng.below(bodies.len() as u64) as usize]
            };
            out.push_str(&format!("{path}:{line}:{body}\n"));
        }
    }
    out
}

/// A `git diff` of about `bytes` bytes: many files, hunks with three lines of context (git's
/// default) and larger unchanged stretches between changes, an occasional lock file.
pub fn diff_text(bytes: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let code = [
        "    let mut total = 0;",
        "    for item in items.iter() {",
        "        total += item.price * item.quantity;",
        "    }",
        "    if total > limit {",
        "        return Err(Error::LimitExceeded { total, limit });",
        "    Ok(total)",
        "}",
        "",
        "/// Computes the order total, in cents.",
        "pub fn order_total(items: &[Item], limit: u64) -> Result<u64, Error> {",
        "    tracing::debug!(count = items.len(), \"computing total\");",
    ];
    let mut out = String::with_capacity(bytes + 512);
    let mut file = 0u64;
    while out.len() < bytes {
        file += 1;
        let lock = rng.below(25) == 0;
        let name = if lock {
            format!("crates/c{file}/Cargo.lock")
        } else {
            format!("src/module_{file}/orders.rs")
        };
        out.push_str(&format!(
            "diff --git a/{name} b/{name}\nindex {:07x}..{:07x} 100644\n--- a/{name}\n+++ b/{name}\n",
            rng.below(1 << 28),
            rng.below(1 << 28)
        ));
        let hunks = 1 + rng.below(4);
        let mut old = 1 + rng.below(100);
        for _ in 0..hunks {
            let mut body = Vec::new();
            let (mut old_count, mut new_count) = (0u64, 0u64);
            let changes = 1 + rng.below(3);
            for c in 0..changes {
                let context = if c == 0 { 3 } else { 3 + rng.below(9) };
                for _ in 0..context {
                    body.push(format!(" {}", code[rng.below(code.len() as u64) as usize]));
                    old_count += 1;
                    new_count += 1;
                }
                for _ in 0..1 + rng.below(3) {
                    body.push(format!("-{}", code[rng.below(code.len() as u64) as usize]));
                    old_count += 1;
                }
                for _ in 0..1 + rng.below(4) {
                    body.push(format!("+{}", code[rng.below(code.len() as u64) as usize]));
                    new_count += 1;
                }
            }
            for _ in 0..3 {
                body.push(format!(" {}", code[rng.below(code.len() as u64) as usize]));
                old_count += 1;
                new_count += 1;
            }
            out.push_str(&format!(
                "@@ -{old},{old_count} +{old},{new_count} @@ fn order_total\n"
            ));
            for line in body {
                out.push_str(&line);
                out.push('\n');
            }
            old += old_count + 20 + rng.below(200);
        }
    }
    out
}

/// Rust-like source code of about `bytes` bytes (for token-counting benchmarks).
pub fn code_text(bytes: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let types = [
        "Order", "Customer", "Invoice", "Shipment", "Payment", "Ledger",
    ];
    let mut out = String::with_capacity(bytes + 1024);
    let mut i = 0u64;
    while out.len() < bytes {
        i += 1;
        let ty = types[rng.below(types.len() as u64) as usize];
        out.push_str(&format!(
            "/// Loads the {lower} with id `{i}` and checks its invariants.\n\
             pub async fn load_{lower}_{i}(db: &Pool, id: u64) -> Result<{ty}, Error> {{\n    \
             let row = sqlx::query_as::<_, {ty}Row>(\"SELECT * FROM {lower}s WHERE id = $1\")\n        \
             .bind(id as i64)\n        .fetch_optional(db)\n        .await?\n        \
             .ok_or(Error::NotFound {{ kind: \"{lower}\", id }})?;\n    \
             if row.version < {v} {{\n        \
             tracing::warn!(id, version = row.version, \"stale {lower}, migrating\");\n        \
             return migrate_{lower}(db, row).await;\n    }}\n    \
             Ok({ty}::try_from(row)?)\n}}\n\n",
            lower = ty.to_lowercase(),
            v = rng.below(12),
        ));
    }
    out
}

/// An OpenAI chat request whose newest tool output is `output` (from a non-protected tool).
pub fn tool_output_request(output: String) -> Vec<u8> {
    openai_request(history(1), vec![output], false)
}

/// Bodies anyone can send that once held a worker for seconds to minutes (issue 12), by name:
/// Anthropic requests whose one tool result is 1 MB of unclosed HTML comments, 4.4 MB of
/// grep-like error lines, 200,000 words (which are also the user's question) and a 12 MB JSON
/// array of zeros.
pub fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let anthropic = |question: &str, output: &str| {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": output}]}
            ]
        })
        .to_string()
        .into_bytes()
    };
    let words: Vec<String> = (0..200_000).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    let array = serde_json::to_string(&vec![text.as_str(); 4]).unwrap_or_default();
    vec![
        (
            "unclosed html comments, 1 MB",
            anthropic("why?", &"<!--".repeat(262_144)),
        ),
        (
            "grep-like error lines, 4.4 MB",
            anthropic("why?", &"a:1:error\n".repeat(400_000)),
        ),
        ("200,000-word question and output", anthropic(&text, &array)),
        (
            "JSON array of zeros, 12 MB",
            anthropic("why?", &format!("[{}0]", "0,".repeat(6_000_000))),
        ),
    ]
}

/// The files under `dir`, at any depth, that `keep` accepts, sorted (none when `dir` is missing).
pub fn files_under(
    dir: &std::path::Path,
    keep: impl Fn(&std::path::Path) -> bool + Copy,
) -> Vec<std::path::PathBuf> {
    fn walk(
        dir: &std::path::Path,
        keep: impl Fn(&std::path::Path) -> bool + Copy,
        out: &mut Vec<std::path::PathBuf>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                walk(&path, keep, out);
            } else if keep(&path) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, keep, &mut out);
    out.sort();
    out
}
