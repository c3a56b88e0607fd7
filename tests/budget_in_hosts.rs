//! Budgets in both hosts (the standalone host and Envoy 1.40 with 2 workers):
//!
//! - a spent budget refuses every paid provider path (chat, responses, messages, completions,
//!   embeddings, batches, images, audio, fine-tuning, Anthropic batches and text completions)
//!   with a 429 in the provider's own error shape, without reaching the upstream, and lets
//!   the free ones (moderations, token counting, reads) through;
//! - completions and embeddings are charged what their responses report, and a request whose
//!   estimate does not fit is refused before it runs;
//! - an unpriced model is refused by default, allowed (uncharged) with `"unknown_model":
//!   "allow"`, and charged at `fallback_price` when one is set;
//! - per-API-key and per-project budgets hold separately, and `/stats` and Prometheus report
//!   them (never the key itself);
//! - concurrent requests cannot overshoot: of 8 requests at once against a budget that fits
//!   2 estimates, at most 2 are admitted;
//! - a client that goes away mid-stream releases its reservation.

use std::time::Duration;

use anyhow::{Result, ensure};
use headroom_tests::client::{self, ClientRequest, ClientResponse};
use headroom_tests::envoy::EnvoyTarget;
use headroom_tests::headroom::{InProcess, test_config};
use headroom_tests::prom;
use headroom_tests::scenario::Target;
use headroom_tests::upstream::{Reply, Scripted, Upstream};
use serde_json::{Value, json};

/// gpt-4o-mini's list prices, USD per token (input, output).
const MINI: (f64, f64) = (0.15e-6, 0.6e-6);
/// What the provider-shaped upstream reports for every chat answer: 12 input, 5 output tokens.
const MINI_REAL: f64 = 12.0 * MINI.0 + 5.0 * MINI.1;

fn post(path: &str, body: &str, headers: &[(&str, &str)]) -> ClientRequest {
    let mut request = ClientRequest::post_json(path, body.as_bytes().to_vec());
    for (name, value) in headers {
        request
            .headers
            .push(((*name).to_owned(), value.as_bytes().to_vec()));
    }
    request
}

async fn send(target: &impl Target, request: &ClientRequest) -> Result<ClientResponse> {
    client::send(target.addr(), request, |_| {}).await
}

async fn stats(target: &impl Target) -> Result<Value> {
    client::send(target.addr(), &ClientRequest::get("/stats"), |_| {})
        .await?
        .json()
}

/// The `/stats` budget block once no reservation is held (every exchange has settled: costs
/// are recorded as the response ends, a moment after the client may have it).
async fn settled(target: &impl Target) -> Result<Value> {
    let mut budget = Value::Null;
    for _ in 0..100 {
        budget = stats(target).await?["budget"].clone();
        let reserved = |b: &Value| b["reserved_usd"].as_f64() == Some(0.0);
        let all = |list: &Value| list.as_array().is_none_or(|l| l.iter().all(reserved));
        if reserved(&budget) && all(&budget["keys"]) && all(&budget["projects"]) {
            return Ok(budget);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{}: reservations never released: {budget}", target.name())
}

/// The estimate the filter reserves for a gpt-4o-mini request of `body` capped at
/// `max_tokens`: one input token per 3 bytes (rounded up), the cap as output.
fn mini_estimate(body: &str, max_tokens: u64) -> f64 {
    (body.len() as f64 / 3.0).ceil() * MINI.0 + max_tokens as f64 * MINI.1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-9 * b.abs()
}

/// A request refused once its body is known may have had its headers forwarded (a host starts
/// the upstream request with the headers); the upstream stream is then reset before the
/// body, so the provider never receives a complete request.
fn no_body_reached(upstream: &Upstream, name: &str) -> Result<()> {
    let received = upstream.take_received();
    ensure!(
        received.iter().all(|r| r.body.is_empty()),
        "{name}: a refused request's body reached the upstream: {:?}",
        received.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    Ok(())
}

/// The OpenAI 429 of a budget, or the Anthropic one on Anthropic paths.
fn is_budget_429(response: &ClientResponse, anthropic: bool, code: &str) -> Result<bool> {
    if response.status != 429 {
        return Ok(false);
    }
    ensure!(
        response.header("x-should-retry").as_deref() == Some("false"),
        "no x-should-retry"
    );
    let body = response.json()?;
    Ok(if anthropic {
        body["type"] == "error" && body["error"]["type"] == "rate_limit_error"
    } else {
        body["error"]["type"] == "insufficient_quota" && body["error"]["code"] == code
    })
}

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

/// Every paid path, with a body its endpoint takes, and whether it is Anthropic's.
const PAID: &[(&str, &str, bool)] = &[
    ("/v1/chat/completions", CHAT, false),
    (
        "/v1/responses",
        r#"{"model":"gpt-4o-mini","input":"hi"}"#,
        false,
    ),
    (
        "/v1/messages",
        r#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        true,
    ),
    (
        "/v1/completions",
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":"hi"}"#,
        false,
    ),
    (
        "/v1/embeddings",
        r#"{"model":"text-embedding-3-small","input":"hi"}"#,
        false,
    ),
    (
        "/v1/batches",
        r#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}"#,
        false,
    ),
    (
        "/v1/images/generations",
        r#"{"model":"dall-e-3","prompt":"a cat"}"#,
        false,
    ),
    ("/v1/images/edits", r#"{"prompt":"a cat"}"#, false),
    ("/v1/images/variations", r#"{}"#, false),
    (
        "/v1/audio/speech",
        r#"{"model":"tts-1","input":"hi","voice":"alloy"}"#,
        false,
    ),
    ("/v1/audio/transcriptions", r#"{}"#, false),
    ("/v1/audio/translations", r#"{}"#, false),
    (
        "/v1/fine_tuning/jobs",
        r#"{"model":"gpt-4o-mini","training_file":"file-1"}"#,
        false,
    ),
    ("/v1/messages/batches", r#"{"requests":[]}"#, true),
    (
        "/v1/complete",
        r#"{"model":"claude-2.1","prompt":"\n\nHuman: hi\n\nAssistant:","max_tokens_to_sample":5}"#,
        true,
    ),
];

/// With a limit of 0, every paid path is refused before the upstream; free ones pass.
async fn every_paid_path_refused(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    for (path, body, anthropic) in PAID {
        let response = send(target, &post(path, body, &[])).await?;
        ensure!(
            is_budget_429(&response, *anthropic, "budget_exceeded")?,
            "{name}: {path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    ensure!(
        upstream.take_received().is_empty(),
        "{name}: a refused request reached the upstream"
    );
    let free = [
        post("/v1/moderations", r#"{"input":"hi"}"#, &[]),
        post(
            "/v1/messages/count_tokens",
            r#"{"model":"claude-haiku-4-5","messages":[]}"#,
            &[],
        ),
        post("/v1/batches/batch_1/cancel", "{}", &[]),
        ClientRequest::get("/v1/batches"),
        ClientRequest::get("/v1/models"),
    ];
    for request in &free {
        let response = send(target, request).await?;
        ensure!(
            response.status != 429,
            "{name}: free {} {} refused",
            request.method,
            request.path
        );
    }
    ensure!(
        upstream.take_received().len() == free.len(),
        "{name}: free requests must reach the upstream"
    );
    let stats = stats(target).await?;
    ensure!(stats["budget"]["exceeded"] == true, "{name}: {stats}");
    ensure!(
        stats["cost"]["budget_rejected_requests"] == PAID.len(),
        "{name}: {}",
        stats["cost"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paid_path_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = br#"{"budget":{"limit_usd":0}}"#.to_vec();
    let host = InProcess::start(config)?;
    every_paid_path_refused(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paid_path_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let target =
        EnvoyTarget::start(upstream.addr().port(), r#"{"budget":{"limit_usd":0}}"#, 2).await?;
    target.explain(every_paid_path_refused(&target, &upstream).await)
}

/// A JSON answer with OpenAI-style usage, as completions and embeddings report it.
fn usage_reply(model: &str, prompt: u64, completion: Option<u64>) -> Reply {
    let mut usage = json!({"prompt_tokens": prompt, "total_tokens": prompt});
    if let Some(completion) = completion {
        usage["completion_tokens"] = completion.into();
    }
    Reply::Scripted(Scripted {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: vec![
            json!({"object": "list", "model": model, "data": [], "usage": usage})
                .to_string()
                .into_bytes(),
        ],
        ..Scripted::default()
    })
}

/// Unpriced models at $1 per input token and $2 per output token, 10 output tokens for a
/// request without a cap: the figures are exact in USD.
const FALLBACK: &str = r#"{"budget":{"limit_usd":100,"fallback_price":{"input_per_mtok":1000000,"output_per_mtok":2000000},"default_max_output_tokens":10}}"#;

/// Completions and embeddings are charged their reported usage; a request whose estimate
/// does not fit is refused; batches pass uncharged while the budget is not spent.
async fn billed_paths_are_charged(target: &impl Target, upstream: &Upstream) -> Result<()> {
    let name = target.name();
    upstream.set_reply(usage_reply("acme-embed", 8, None));
    let embed = r#"{"model":"acme-embed","input":"hello"}"#;
    let response = send(target, &post("/v1/embeddings", embed, &[])).await?;
    ensure!(
        response.status == 200,
        "{name}: embeddings {}",
        response.status
    );
    let budget = settled(target).await?;
    ensure!(
        close(budget["spent_usd"].as_f64().unwrap_or(-1.0), 8.0),
        "{name}: {budget}"
    );

    upstream.set_reply(usage_reply("acme-text", 8, Some(5)));
    let complete = r#"{"model":"acme-text","prompt":"hello","max_tokens":5}"#;
    let response = send(target, &post("/v1/completions", complete, &[])).await?;
    ensure!(
        response.status == 200,
        "{name}: completions {}",
        response.status
    );
    let budget = settled(target).await?;
    // 8 + (8 input × $1 + 5 output × $2).
    ensure!(
        close(budget["spent_usd"].as_f64().unwrap_or(-1.0), 26.0),
        "{name}: {budget}"
    );

    // Estimated at ceil(bytes / 3) + 40 output tokens × $2 > the $74 left: refused unsent.
    let big = r#"{"model":"acme-text","prompt":"hello","max_tokens":40}"#;
    let estimate = (big.len() as f64 / 3.0).ceil() + 80.0;
    ensure!(26.0 + estimate > 100.0, "the test's arithmetic");
    upstream.take_received();
    let response = send(target, &post("/v1/completions", big, &[])).await?;
    ensure!(
        is_budget_429(&response, false, "budget_exceeded")?,
        "{name}: {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let message = response.json()?["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(message.contains("does not fit"), "{name}: {message}");
    no_body_reached(upstream, name)?;

    // A batch cannot be priced when it is created: admitted while the budget is not spent.
    upstream.set_reply(Reply::Provider {
        chunk_delay: Duration::ZERO,
    });
    let response = send(
        target,
        &post(
            "/v1/batches",
            r#"{"input_file_id":"f","endpoint":"/v1/embeddings","completion_window":"24h"}"#,
            &[],
        ),
    )
    .await?;
    ensure!(response.status != 429, "{name}: batch refused");
    let budget = settled(target).await?;
    ensure!(
        close(budget["spent_usd"].as_f64().unwrap_or(-1.0), 26.0),
        "{name}: {budget}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billed_paths_charged_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = FALLBACK.as_bytes().to_vec();
    let host = InProcess::start(config)?;
    billed_paths_are_charged(&host, &upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billed_paths_charged_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), FALLBACK, 2).await?;
    target.explain(billed_paths_are_charged(&target, &upstream).await)
}

/// Default policy: an unpriced model is refused (OpenAI and Anthropic shapes); priced ones
/// pass and are charged. Then, reconfigured to allow, it passes and is not charged.
async fn unknown_models(target: &impl Target, upstream: &Upstream, allow: bool) -> Result<()> {
    let name = target.name();
    let acme =
        r#"{"model":"acme-llm-9","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = send(target, &post("/v1/chat/completions", acme, &[])).await?;
    if allow {
        ensure!(
            response.status == 200,
            "{name}: allowed: {}",
            response.status
        );
    } else {
        ensure!(
            is_budget_429(&response, false, "model_not_priced")?,
            "{name}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        let anthropic = r#"{"model":"acme-anthropic-1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
        let response = send(target, &post("/v1/messages", anthropic, &[])).await?;
        ensure!(
            is_budget_429(&response, true, "")?,
            "{name}: {}",
            response.status
        );
        no_body_reached(upstream, name)?;
    }
    let budget = settled(target).await?;
    ensure!(
        budget["spent_usd"] == 0.0,
        "{name}: unpriced charged: {budget}"
    );
    let response = send(target, &post("/v1/chat/completions", CHAT, &[])).await?;
    ensure!(
        response.status == 200,
        "{name}: priced: {}",
        response.status
    );
    let budget = settled(target).await?;
    ensure!(
        close(budget["spent_usd"].as_f64().unwrap_or(-1.0), MINI_REAL),
        "{name}: {budget}"
    );
    Ok(())
}

const REJECT_UNKNOWN: &str = r#"{"budget":{"limit_usd":1}}"#;
const ALLOW_UNKNOWN: &str = r#"{"budget":{"limit_usd":1,"unknown_model":"allow"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_in_the_headroom_host() -> Result<()> {
    for (config_json, allow) in [(REJECT_UNKNOWN, false), (ALLOW_UNKNOWN, true)] {
        let upstream = Upstream::start(Reply::Provider {
            chunk_delay: Duration::ZERO,
        })
        .await?;
        let mut config = test_config(upstream.addr());
        config.plugin_config = config_json.as_bytes().to_vec();
        let host = InProcess::start(config)?;
        unknown_models(&host, &upstream, allow).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_in_envoy() -> Result<()> {
    for (config_json, allow) in [(REJECT_UNKNOWN, false), (ALLOW_UNKNOWN, true)] {
        let upstream = Upstream::start(Reply::Provider {
            chunk_delay: Duration::ZERO,
        })
        .await?;
        let target = EnvoyTarget::start(upstream.addr().port(), config_json, 2).await?;
        target.explain(unknown_models(&target, &upstream, allow).await)?;
    }
    Ok(())
}

/// Per-key limit: three gpt-4o-mini requests fit (the fourth's estimate does not); per
/// project: `alpha` fits one; `beta` falls under the default project limit.
const SCOPED: &str = r#"{"budget":{"limit_usd":100,"per_key":{"limit_usd":0.00002,"period":"hourly"},"projects":{"alpha":{"limit_usd":0.00001,"period":"weekly"}},"default_project":{"limit_usd":100,"period":"monthly"}}}"#;

/// Sends `CHAT` with `headers` until refused (at most `max` times); returns how many passed
/// and the refusal's message.
async fn until_refused(
    target: &impl Target,
    headers: &[(&str, &str)],
    max: usize,
) -> Result<(usize, String)> {
    for passed in 0..max {
        let response = send(target, &post("/v1/chat/completions", CHAT, headers)).await?;
        if response.status == 429 {
            ensure!(is_budget_429(&response, false, "budget_exceeded")?, "shape");
            let message = response.json()?["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return Ok((passed, message));
        }
        ensure!(response.status == 200, "status {}", response.status);
        settled(target).await?;
    }
    Ok((max, String::new()))
}

async fn scoped_budgets(target: &impl Target) -> Result<()> {
    let name = target.name();
    let estimate = mini_estimate(CHAT, 5);
    // Admitted while spent + estimate ≤ limit, spent growing by the real cost.
    let fits = |limit: f64| {
        (0..)
            .take_while(|k| *k as f64 * MINI_REAL + estimate <= limit)
            .count()
    };
    let key_a = [("authorization", "Bearer sk-test-alpha-key-0001")];
    let (passed, message) = until_refused(target, &key_a, 10).await?;
    ensure!(
        passed == fits(0.00002) && passed == 3,
        "{name}: key A passed {passed}"
    );
    ensure!(message.contains("(API key "), "{name}: {message}");
    ensure!(message.contains("hourly"), "{name}: {message}");
    // Another key (Anthropic's header) has its own budget.
    let key_b = [("x-api-key", "sk-ant-test-b")];
    let response = send(target, &post("/v1/chat/completions", CHAT, &key_b)).await?;
    ensure!(response.status == 200, "{name}: key B {}", response.status);
    settled(target).await?;

    let alpha = [
        ("authorization", "Bearer sk-test-c"),
        ("x-headroom-project", "alpha"),
    ];
    let (passed, message) = until_refused(target, &alpha, 10).await?;
    ensure!(
        passed == fits(0.00001) && passed == 1,
        "{name}: alpha passed {passed}"
    );
    ensure!(message.contains("(project alpha)"), "{name}: {message}");
    let beta = [
        ("authorization", "Bearer sk-test-c"),
        ("x-headroom-project", "beta"),
    ];
    let response = send(target, &post("/v1/chat/completions", CHAT, &beta)).await?;
    ensure!(response.status == 200, "{name}: beta {}", response.status);

    let budget = settled(target).await?;
    let text = budget.to_string();
    ensure!(!text.contains("sk-"), "{name}: a key in /stats: {text}");
    let keys = budget["keys"].as_array().cloned().unwrap_or_default();
    ensure!(keys.len() == 3, "{name}: keys {text}");
    ensure!(
        keys.iter()
            .all(|k| k["key"].as_str().is_some_and(|id| id.len() == 16)),
        "{name}: {text}"
    );
    let spent: Vec<f64> = keys
        .iter()
        .filter_map(|k| k["spent_usd"].as_f64())
        .collect();
    ensure!(
        spent.iter().any(|s| close(*s, 3.0 * MINI_REAL)),
        "{name}: key A spent {spent:?}"
    );
    let exceeded_keys = keys.iter().filter(|k| k["exceeded"] == true).count();
    ensure!(exceeded_keys == 0, "{name}: {text}");
    let project = |id: &str| {
        budget["projects"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["project"] == id).cloned())
            .unwrap_or(Value::Null)
    };
    let alpha = project("alpha");
    ensure!(alpha["period"] == "weekly", "{name}: {text}");
    ensure!(
        close(alpha["spent_usd"].as_f64().unwrap_or(-1.0), MINI_REAL),
        "{name}: {text}"
    );
    let beta = project("beta");
    ensure!(beta["period"] == "monthly", "{name}: {text}");
    ensure!(
        close(beta["limit_usd"].as_f64().unwrap_or(-1.0), 100.0),
        "{name}: {text}"
    );
    // Global: every admitted request (3 + 1 + 1 + 1).
    ensure!(
        close(
            budget["spent_usd"].as_f64().unwrap_or(-1.0),
            6.0 * MINI_REAL
        ),
        "{name}: {text}"
    );

    // Prometheus gauges (limit, spent, remaining) in nano-USD, labelled by scope and budget.
    let nano = |usd: f64| (usd * 1e9).round();
    let mut last = String::new();
    for _ in 0..100 {
        let scrape = prom::parse(&target.scrape().await?);
        let value = |series: &str| scrape.get(&prom::normalize(series)).copied();
        let want = [
            (
                r#"headroom_budget_limit_nanousd{scope="project",budget="alpha"}"#,
                nano(0.00001),
            ),
            (
                r#"headroom_budget_spent_nanousd{scope="project",budget="alpha"}"#,
                nano(MINI_REAL),
            ),
            (
                r#"headroom_budget_remaining_nanousd{scope="project",budget="alpha"}"#,
                nano(0.00001) - nano(MINI_REAL),
            ),
            (
                r#"headroom_budget_limit_nanousd{scope="global",budget="global"}"#,
                nano(100.0),
            ),
        ];
        let got: Vec<Option<f64>> = want.iter().map(|(s, _)| value(s)).collect();
        if want
            .iter()
            .zip(&got)
            .all(|((_, w), g)| g.is_some_and(|g| (g - w).abs() <= 1.0))
        {
            ensure!(
                scrape
                    .keys()
                    .any(|k| k.starts_with("headroom_budget_spent_nanousd")
                        && k.contains(r#"scope="key""#)),
                "{name}: no key gauge"
            );
            return Ok(());
        }
        last = format!("{got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{name}: budget gauges never reached their values: {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_budgets_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = SCOPED.as_bytes().to_vec();
    let host = InProcess::start(config)?;
    scoped_budgets(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_budgets_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::ZERO,
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), SCOPED, 2).await?;
    target.explain(scoped_budgets(&target).await)
}

/// A streamed chat request (slow: 7 events 150 ms apart, so the 8 overlap).
const STREAM: &str = r#"{"model":"gpt-4o-mini","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// 8 requests at once against a budget of 2.5 estimates: at most 2 are admitted (the stated
/// bound: no more than floor(limit / estimate) in flight at once), and the spend stays below
/// the limit (each costs less than its estimate).
async fn concurrent_overshoot(target: &impl Target, limit: f64) -> Result<()> {
    let name = target.name();
    let estimate = mini_estimate(STREAM, 5);
    let bound = (limit / estimate).floor() as usize;
    ensure!(bound == 2, "the test's arithmetic: {bound}");
    // The budget's shared-data key exists before the burst: a request over the limit is
    // refused, and its check writes the (empty) state. Proxy-wasm shared data has no atomic
    // create, so two workers whose first reservations on a missing key overlap can each
    // write over the other (README, "Overshoot bound"); this test checks the bound that
    // compare-and-swap gives once the key exists.
    let over = STREAM.replace("\"max_tokens\":5", "\"max_tokens\":100000");
    let refused = send(target, &post("/v1/chat/completions", &over, &[])).await?;
    ensure!(
        refused.status == 429,
        "{name}: over the limit: {}",
        refused.status
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = target.addr();
        tasks.push(tokio::spawn(async move {
            client::send(addr, &post("/v1/chat/completions", STREAM, &[]), |_| {})
                .await
                .map(|r| r.status)
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await??);
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    ensure!(admitted + refused == 8, "{name}: {statuses:?}");
    ensure!(
        (1..=bound).contains(&admitted),
        "{name}: {admitted} admitted (bound {bound}): {statuses:?}"
    );
    let budget = settled(target).await?;
    let spent = budget["spent_usd"].as_f64().unwrap_or(-1.0);
    ensure!(
        close(spent, admitted as f64 * MINI_REAL) && spent <= limit,
        "{name}: spent {spent} of {limit}: {budget}"
    );
    Ok(())
}

fn overshoot_config() -> (f64, String) {
    let limit = 2.5 * mini_estimate(STREAM, 5);
    (limit, format!(r#"{{"budget":{{"limit_usd":{limit}}}}}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overshoot_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::from_millis(150),
    })
    .await?;
    let (limit, json) = overshoot_config();
    let mut config = test_config(upstream.addr());
    config.plugin_config = json.into_bytes();
    let host = InProcess::start(config)?;
    concurrent_overshoot(&host, limit).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overshoot_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::from_millis(150),
    })
    .await?;
    let (limit, json) = overshoot_config();
    let target = EnvoyTarget::start(upstream.addr().port(), &json, 2).await?;
    target.explain(concurrent_overshoot(&target, limit).await)
}

/// A client that goes away mid-stream: its reservation is released when the stream ends (no
/// usage was reported), so the budget that fits one estimate admits the next request.
async fn dropped_stream_releases(target: &impl Target) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = target.name();
    let mut stream = tokio::net::TcpStream::connect(target.addr()).await?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{STREAM}",
        STREAM.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut first = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await??;
    ensure!(
        first[..read].starts_with(b"HTTP/1.1 200"),
        "{name}: {}",
        String::from_utf8_lossy(&first[..read])
    );
    let held = stats(target).await?["budget"]["reserved_usd"]
        .as_f64()
        .unwrap_or(0.0);
    ensure!(held > 0.0, "{name}: no reservation while streaming");
    // While it streams, the budget (1.5 estimates) has no room for another.
    let response = send(target, &post("/v1/chat/completions", STREAM, &[])).await?;
    ensure!(
        response.status == 429,
        "{name}: second admitted: {}",
        response.status
    );
    drop(stream);
    let budget = settled(target).await?;
    ensure!(budget["spent_usd"] == 0.0, "{name}: {budget}");
    let response = send(target, &post("/v1/chat/completions", STREAM, &[])).await?;
    ensure!(
        response.status == 200,
        "{name}: after release: {}",
        response.status
    );
    Ok(())
}

fn one_stream_config() -> String {
    let limit = 1.5 * mini_estimate(STREAM, 5);
    format!(r#"{{"budget":{{"limit_usd":{limit}}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_releases_in_the_headroom_host() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::from_millis(300),
    })
    .await?;
    let mut config = test_config(upstream.addr());
    config.plugin_config = one_stream_config().into_bytes();
    let host = InProcess::start(config)?;
    dropped_stream_releases(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_releases_in_envoy() -> Result<()> {
    let upstream = Upstream::start(Reply::Provider {
        chunk_delay: Duration::from_millis(300),
    })
    .await?;
    let target = EnvoyTarget::start(upstream.addr().port(), &one_stream_config(), 2).await?;
    target.explain(dropped_stream_releases(&target).await)
}
