//! A fleet serves one conversation (DESIGN.md decision 5): an agent session whose turns go
//! round robin to two `headroom` processes and one Envoy 1.40 with two workers, every process
//! fresh, reaches the upstream with every earlier message byte-identical on every later turn —
//! although the user asks a new question every third turn and Claude Code moves its cache
//! breakpoint onto the newest tool result. Then the same with the process that serves each
//! turn restarted just before it (no replay record anywhere), and in the OpenAI Chat and
//! Responses shapes. Every body also equals what the native pipeline sends from empty stores.

use anyhow::{Context as _, Result, ensure};
use headroom_plugin::api::Api;
use headroom_plugin::pipeline::{MemoryHost, PipelineConfig, compress_request};
use headroom_tests::client::{self, ClientRequest};
use headroom_tests::corpus;
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::Process;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Upstream};
use serde_json::{Value, json};

/// The tool output of turn `turn`: JSON records, logs, grep results and diffs in rotation.
fn tool_output(turn: usize) -> String {
    let seed = turn as u64 + 101;
    match turn % 4 {
        0 => corpus::records_json(200, seed),
        1 => corpus::log_text(20_000, seed),
        2 => corpus::grep_text(10_000, seed),
        _ => corpus::diff_text(10_000, seed),
    }
}

/// A new question every third turn, naming things the outputs contain.
fn question(turn: usize) -> Option<String> {
    (turn % 3 == 2).then(|| {
        format!(
            "Now look at ord_{:05} and why the {} step timed out.",
            10_000 + turn * 37,
            ["payment", "inventory", "shipping", "auth"][turn % 4]
        )
    })
}

/// The request body of turn `turns` (1-based) of the session in `api`'s shape.
fn request(api: Api, turns: usize) -> Vec<u8> {
    let mut items = vec![match api {
        Api::OpenAiResponses => {
            json!({"role": "user", "content": [{"type": "input_text", "text": "Investigate the checkout outage."}]})
        }
        _ => json!({"role": "user", "content": "Investigate the checkout outage."}),
    }];
    for t in 0..turns {
        let newest = t + 1 == turns;
        match api {
            Api::AnthropicMessages => {
                let id = format!("toolu_{t:02}");
                items.push(json!({"role": "assistant", "content": [
                    {"type": "text", "text": format!("Step {t}.")},
                    {"type": "tool_use", "id": id, "name": "bash", "input": {"step": t}}
                ]}));
                let mut result =
                    json!({"type": "tool_result", "tool_use_id": id, "content": tool_output(t)});
                if newest {
                    result["cache_control"] = json!({"type": "ephemeral"});
                }
                let mut content = vec![result];
                if let Some(q) = question(t) {
                    content.push(json!({"type": "text", "text": q}));
                }
                items.push(json!({"role": "user", "content": content}));
            }
            Api::OpenAiChat => {
                let id = format!("call_{t:02}");
                items.push(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": "bash", "arguments": "{}"}}
                ]}));
                items.push(json!({"role": "tool", "tool_call_id": id, "content": tool_output(t)}));
                if let Some(q) = question(t) {
                    items.push(json!({"role": "user", "content": q}));
                }
            }
            Api::OpenAiResponses => {
                let id = format!("call_{t:02}");
                items.push(json!({"type": "function_call", "call_id": id, "name": "bash", "arguments": "{}"}));
                items.push(json!({"type": "function_call_output", "call_id": id, "output": tool_output(t)}));
                if let Some(q) = question(t) {
                    items.push(
                        json!({"role": "user", "content": [{"type": "input_text", "text": q}]}),
                    );
                }
            }
        }
    }
    let items: Vec<String> = items.iter().map(Value::to_string).collect();
    let items = items.join(",");
    match api {
        Api::AnthropicMessages => format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{items}]}}"#
        ),
        Api::OpenAiChat => format!(r#"{{"model":"gpt-4o","messages":[{items}]}}"#),
        Api::OpenAiResponses => format!(r#"{{"model":"gpt-4o","input":[{items}]}}"#),
    }
    .into_bytes()
}

fn path(api: Api) -> &'static str {
    match api {
        Api::AnthropicMessages => "/v1/messages",
        Api::OpenAiChat => "/v1/chat/completions",
        Api::OpenAiResponses => "/v1/responses",
    }
}

/// The body without Anthropic cache breakpoints: the client moves them, and the provider's
/// cached prefix is the content around them.
fn without_breakpoints(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace(r#""cache_control":{"type":"ephemeral"},"#, "")
        .replace(r#","cache_control":{"type":"ephemeral"}"#, "")
        .into_bytes()
}

/// One member of the fleet.
enum Member {
    Headroom(Process),
    Envoy(EnvoyTarget),
}

impl Member {
    async fn start(kind: usize, upstream: &Upstream) -> Result<Member> {
        let port = upstream.addr().port().to_string();
        let url = format!("http://127.0.0.1:{port}");
        Ok(if kind == 2 {
            Member::Envoy(EnvoyTarget::start(upstream.addr().port(), "{}", 2).await?)
        } else {
            Member::Headroom(Process::start(
                &[
                    "--openai-api-url",
                    &url,
                    "--anthropic-api-url",
                    &url,
                    "--workers",
                    "2",
                    "--stateless",
                ],
                &[],
            )?)
        })
    }

    fn name(&self) -> &str {
        match self {
            Member::Headroom(p) => p.name(),
            Member::Envoy(e) => e.name(),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Member::Headroom(p) => p.addr(),
            Member::Envoy(e) => e.addr(),
        }
    }
}

/// Sends `turns` turns of the session in `api`'s shape round robin across a fleet of two
/// `headroom` processes and one Envoy; with `restart`, the member serving a turn is started
/// afresh just before it. Returns the number of earlier outputs compressed again from scratch.
async fn session(api: Api, turns: usize, restart: bool) -> Result<usize> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: std::time::Duration::ZERO,
    })
    .await?;
    let mut fleet = Vec::new();
    for kind in 0..3 {
        fleet.push(Member::start(kind, &upstream).await?);
    }
    let config = PipelineConfig::default();
    let mut previous: Option<Vec<u8>> = None;
    let mut recompressed = 0;
    for turn in 1..=turns {
        let kind = (turn - 1) % 3;
        if restart && turn > 3 {
            // Stopped by PID on drop, then a fresh one in its place.
            fleet[kind] = Member::start(kind, &upstream).await?;
        }
        let member = &fleet[kind];
        let name = format!("{api:?} turn {turn} via {}", member.name());
        let body = request(api, turn);
        // What any process sends for this body from empty stores.
        let native = compress_request(api, &body, &config, &mut MemoryHost::default())
            .map_err(|e| anyhow::anyhow!("native pipeline: {e}"))?;
        recompressed += native.recompressed_history;
        let expected = native.body.unwrap_or_else(|| body.clone());
        let request = ClientRequest::post_json(path(api), body.clone());
        let response = client::send(member.addr(), &request, |_| {})
            .await
            .with_context(|| name.clone())?;
        ensure!(response.status == 200, "{name}: status {}", response.status);
        let received = upstream.take_received();
        ensure!(
            received.len() == 1,
            "{name}: {} upstream requests",
            received.len()
        );
        let sent = &received[0].body;
        ensure!(sent.len() < body.len(), "{name}: nothing was compressed");
        ensure!(
            *sent == expected,
            "{name}: the upstream body differs from the pipeline's from empty stores ({} vs {} bytes)",
            sent.len(),
            expected.len()
        );
        let sent = without_breakpoints(sent);
        if let Some(previous) = &previous {
            let prefix = previous.strip_suffix(b"]}").context("closing brackets")?;
            ensure!(
                sent.starts_with(prefix),
                "{name}: the previous turn's bytes are not this turn's prefix (first difference at byte {})",
                sent.iter().zip(prefix).take_while(|(a, b)| a == b).count()
            );
        }
        previous = Some(sent);
    }
    Ok(recompressed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_session_round_robin_across_a_fleet() -> Result<()> {
    let recompressed = session(Api::AnthropicMessages, 12, false).await?;
    // Each fresh member saw earlier outputs it had never compressed: the bytes matched
    // without any replay record.
    ensure!(recompressed > 0, "no earlier output was compressed again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_session_with_a_restart_before_every_turn() -> Result<()> {
    session(Api::AnthropicMessages, 12, true).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_session_round_robin_with_restarts() -> Result<()> {
    session(Api::OpenAiChat, 7, true).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_responses_session_round_robin_with_restarts() -> Result<()> {
    session(Api::OpenAiResponses, 7, true).await.map(drop)
}
