//! The exchange layer run natively on [`InMemoryHost`]: what an exchange counts, records,
//! charges and answers, with no proxy in the loop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::rc::Rc;
use std::time::Duration;

use super::cache::{self, Lookup};
use super::*;
use crate::credential::Scope;
use crate::host::{Clock as _, InMemoryHost, SharedData as _};
use crate::metrics::Counter;
use crate::operator;
use crate::pipeline::{PipelineHost as _, compress_request};

pub(super) fn configure(config: &str) -> (Rc<InMemoryHost>, Shared) {
    let host = Rc::new(InMemoryHost::default());
    let config = Config::from_bytes(config.as_bytes()).unwrap();
    let shared = Shared::configure(config, host.clone());
    (host, shared)
}

/// An OpenAI chat request whose tool output is a JSON array of `rows` records.
pub(super) fn chat_request(rows: usize) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..rows)
        .map(|i| {
            let region = ["eu-west-1", "us-east-1", "ap-south-1"][i % 3];
            serde_json::json!({
                "id": i,
                "name": format!("service-{}", i % 7),
                "status": if i % 50 == 0 { "error" } else { "ok" },
                "latency_ms": 20 + (i * 37) % 400,
                "region": region,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "Which services are failing?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "list_services", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1",
                "content": serde_json::to_string(&records).unwrap()},
        ],
    }))
    .unwrap()
}

const RESPONSE: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Two."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":40,"total_tokens":1240,"prompt_tokens_details":{"cached_tokens":1024}}}"#;

/// Runs one compressed chat exchange through the layer as the glue does; returns its record.
fn run_exchange(host: &InMemoryHost, shared: &Shared, body: &[u8]) -> serde_json::Value {
    let api = Api::OpenAiChat;
    let mut exchange = ExchangeState::default();
    exchange.begin(
        shared,
        api,
        &ProviderHeaders {
            path: Some(b"/v1/chat/completions?x=1"),
            project: Some(b"alpha"),
            stack: Some(b"claude_code"),
        },
    );
    exchange.admitted(shared, api);
    let began = host.now();
    let mut stores = shared.stores.clone();
    let outcome = compress_request(api, body, &shared.config.pipeline, &mut stores);
    exchange.count_run(shared, &stores.timed, outcome.as_ref().ok());
    let outcome = outcome.unwrap();
    assert!(outcome.body.is_some(), "the tool output was compressed");
    exchange.count_rewrite(shared, &outcome);
    host.advance(Duration::from_millis(3));
    exchange.body_done(shared, began);
    host.advance(Duration::from_millis(40));
    exchange.response_started(shared, Some(200));
    let mut parser = UsageParser::for_content_type(api, b"application/json");
    parser.feed(RESPONSE);
    exchange.usage = Some(parser);
    host.advance(Duration::from_millis(10));
    let record = exchange.finish(shared).expect("a record");
    assert_eq!(
        exchange.finish(shared),
        None,
        "an exchange is recorded once"
    );
    serde_json::from_slice(&record).unwrap()
}

#[test]
fn a_compressed_exchange_counts_records_and_enters_the_ledger() {
    let (host, shared) = configure("{}");
    let body = chat_request(300);
    let record = run_exchange(&host, &shared, &body);

    assert_eq!(host.counter(&Counter::Requests.name()), 1);
    assert_eq!(
        host.counter(&Counter::RequestsByProvider(Provider::OpenAi).name()),
        1
    );
    let tokens_saved = host.counter(&Counter::TokensSaved.name());
    assert!(tokens_saved > 1000, "tokens saved: {tokens_saved}");
    assert!(host.counter(&Counter::BytesSaved.name()) > 10_000);
    assert_eq!(host.counter(&Counter::TokensInput.name()), 1200);
    assert_eq!(host.counter(&Counter::TokensOutput.name()), 40);
    assert_eq!(host.counter(&Counter::RequestsCached.name()), 1);
    assert_eq!(host.counter(&Counter::CostKnownRequests.name()), 1);
    // The model label is the normalised one, and its cost is under the same label.
    let label = pricing::normalize_model_label("gpt-4o-2024-08-06");
    assert_eq!(host.counter(&metrics::requests_by_model(&label)), 1);
    assert!(host.counter(&metrics::cost_by_model(&label)) > 0);
    assert!(host.counter(&metrics::savings_by_model(&label)) > 0);
    assert_eq!(host.counter(&metrics::requests_by_stack("claude_code")), 1);
    // Timings: whole milliseconds, from the host's clock.
    assert_eq!(host.samples(Histogram::LatencyMs.name()), vec![53]);
    assert_eq!(host.samples(Histogram::TtfbMs.name()), vec![43]);
    assert_eq!(host.samples(Histogram::OverheadMs.name()), vec![3]);
    assert_eq!(host.gauge("headroom_latency_ms_max"), Some(53));

    assert_eq!(record["model"], label.as_str());
    assert_eq!(record["path"], "/v1/chat/completions");
    assert_eq!(record["tokens_saved"], tokens_saved);
    assert_eq!(record["stack"], "claude_code");

    let (ledger, _) = shared_store::savings(&*host, 10);
    assert_eq!(ledger.head.lifetime.requests, 1);
    assert_eq!(ledger.head.lifetime.tokens_saved, tokens_saved);
    assert_eq!(host.counter(&Counter::PersistentRequests.name()), 1);
}

#[test]
fn a_second_vm_configured_on_a_restored_ledger_claims_its_seed_once() {
    let (host, shared) = configure("{}");
    run_exchange(&host, &shared, &chat_request(300));
    // The host restored a ledger: its totals enter the persistent counters once per process.
    let (ledger, _) = shared_store::savings(&*host, 10);
    assert_eq!(ledger.head.lifetime.requests, 1);
    let host: Rc<dyn Host> = host;
    let again = Shared::configure(Config::from_bytes(b"{}").unwrap(), Rc::clone(&host));
    let another = Shared::configure(Config::from_bytes(b"{}").unwrap(), host);
    assert_eq!(
        again.host.value(Counter::PersistentRequests),
        another.host.value(Counter::PersistentRequests)
    );
}

#[test]
fn model_labels_are_bounded_and_costs_follow_the_label_counted() {
    let prices: serde_json::Map<String, serde_json::Value> = (0..60)
        .map(|i| {
            (
                format!("model-{i}"),
                serde_json::json!({"input": 1.0, "output": 2.0}),
            )
        })
        .collect();
    let (host, shared) = configure(&serde_json::json!({ "prices": prices }).to_string());
    for i in 0..60 {
        let mut exchange = ExchangeState::default();
        exchange.begin(&shared, Api::OpenAiChat, &ProviderHeaders::default());
        let response = String::from_utf8(RESPONSE.to_vec())
            .unwrap()
            .replace("gpt-4o-2024-08-06", &format!("model-{i}"));
        let mut parser = UsageParser::for_content_type(Api::OpenAiChat, b"application/json");
        parser.feed(response.as_bytes());
        exchange.usage = Some(parser);
        exchange.finish(&shared).unwrap();
    }
    let labelled: Vec<_> = host
        .counters()
        .into_iter()
        .filter(|(name, _)| name.starts_with(metrics::REQUESTS_BY_MODEL))
        .collect();
    // 48 models have their own label; the other 12 count as `other`.
    assert_eq!(labelled.len(), 49, "{labelled:?}");
    assert_eq!(host.counter(&metrics::requests_by_model(OTHER_MODEL)), 12);
    assert!(host.counter(&metrics::cost_by_model(OTHER_MODEL)) > 0);
    assert_eq!(shared_store::MODELS.values(&*host).len(), 48);
}

#[test]
fn an_exchange_without_usage_counts_why() {
    let (host, shared) = configure("{}");
    let mut exchange = ExchangeState::default();
    exchange.begin(&shared, Api::AnthropicMessages, &ProviderHeaders::default());
    exchange.usage_missing = Some(UsageMissing::Encoded);
    let record: serde_json::Value =
        serde_json::from_slice(&exchange.finish(&shared).unwrap()).unwrap();
    assert_eq!(
        host.counter(&Counter::UsageMissing(UsageMissing::Encoded).name()),
        1
    );
    assert_eq!(record["model"], UNKNOWN_MODEL);
}

#[test]
fn failures_count_by_the_response_code_and_its_origin() {
    let (host, shared) = configure("{}");
    let mut exchange = ExchangeState::default();
    exchange.begin(&shared, Api::OpenAiChat, &ProviderHeaders::default());
    exchange.count_failure(&shared, Some(200), None);
    exchange.count_failure(&shared, Some(503), Some(b"via_upstream"));
    assert_eq!(host.counter(&Counter::RequestsFailed.name()), 0);
    exchange.count_failure(
        &shared,
        Some(503),
        Some(b"upstream_reset_before_response_started"),
    );
    exchange.count_failure(&shared, None, None);
    assert_eq!(host.counter(&Counter::RequestsFailed.name()), 2);
}

#[test]
fn a_fail_open_is_counted_by_reason() {
    let (host, shared) = configure("{}");
    let mut exchange = ExchangeState::default();
    exchange.fail_open(&shared, Api::OpenAiChat, FailOpen::TooLarge);
    assert_eq!(exchange.fail_open, Some(FailOpen::TooLarge));
    assert_eq!(
        host.counter(&Counter::FailOpen(FailOpen::TooLarge).name()),
        1
    );
}

/// A budget of $0.01 a day with known prices.
const BUDGET: &str = r#"{"budget":{"limit_usd":0.01,"default_max_output_tokens":100}}"#;

#[test]
fn a_budget_reserves_settles_and_then_refuses() {
    let (host, shared) = configure(BUDGET);
    let facts = RequestFacts {
        content_type: Some(b"application/json"),
        ..RequestFacts::default()
    };
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let mut exchange = ExchangeState::default();
    exchange.begin(&shared, Api::OpenAiChat, &ProviderHeaders::default());
    let guard = &mut exchange.budget;
    assert_eq!(
        guard.on_request_headers(&shared, Provider::OpenAi, None, &facts, false),
        None
    );
    assert!(
        guard.wants_body(),
        "a priced request is estimated from its body"
    );
    assert_eq!(guard.reserve(&shared, Some(body)), None);
    let remaining = metrics::budget_gauge(metrics::BUDGET_REMAINING, "global", "global");
    let reserved = host.gauge(&remaining).unwrap();
    assert!(
        reserved < 10_000_000,
        "the estimate is reserved: {reserved}"
    );
    // The response reports 1200 input tokens: that, not the estimate, is charged.
    let mut parser = UsageParser::for_content_type(Api::OpenAiChat, b"application/json");
    parser.feed(RESPONSE);
    exchange.usage = Some(parser);
    exchange.finish(&shared).unwrap();
    let spent = metrics::budget_gauge(metrics::BUDGET_SPENT, "global", "global");
    let spent_nano = host.gauge(&spent).unwrap();
    assert!(spent_nano > 0 && spent_nano < 10_000_000, "{spent_nano}");
    assert_eq!(
        exchange.budget.reserve(&shared, Some(body)),
        None,
        "settled once"
    );

    // Spend the rest of the day's budget: the next request is refused at its headers.
    for _ in 0..20 {
        let mut exchange = ExchangeState::default();
        let guard = &mut exchange.budget;
        if guard
            .on_request_headers(&shared, Provider::OpenAi, None, &facts, false)
            .is_some()
        {
            break;
        }
        guard.reserve(&shared, Some(body));
        guard.settle(&shared, Some(0.002));
    }
    let mut guard = BudgetGuard::default();
    let refusal = guard
        .on_request_headers(&shared, Provider::Anthropic, None, &facts, false)
        .expect("refused");
    assert_eq!(refusal.status, 429);
    let error: serde_json::Value = serde_json::from_slice(&refusal.body).unwrap();
    assert_eq!(error["type"], "error", "Anthropic's error shape: {error}");
    assert!(host.counter(&Counter::BudgetRejected.name()) >= 1);
    let stats: serde_json::Value = serde_json::from_slice(&stats(&shared).body).unwrap();
    assert_eq!(stats["budget"]["exceeded"], true, "{}", stats["budget"]);
}

#[test]
fn a_budget_fails_open_when_shared_data_fails() {
    /// Shared data that refuses everything.
    struct Broken(InMemoryHost);
    impl crate::host::SharedData for Broken {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, crate::host::HostError> {
            Err(crate::host::HostError)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<bool, crate::host::HostError> {
            Err(crate::host::HostError)
        }
    }
    impl crate::host::Metrics for Broken {
        fn add(&self, c: Counter, d: u64) {
            self.0.add(c, d);
        }
        fn add_named(&self, n: &str, d: u64) {
            self.0.add_named(n, d);
        }
        fn has_named(&self, n: &str) -> bool {
            self.0.has_named(n)
        }
        fn value(&self, c: Counter) -> u64 {
            self.0.value(c)
        }
        fn value_named(&self, n: &str) -> u64 {
            self.0.value_named(n)
        }
        fn record(&self, h: Histogram, v: u64) {
            self.0.record(h, v);
        }
        fn record_named(&self, n: &str, v: u64) {
            self.0.record_named(n, v);
        }
        fn set_extremes(&self, h: Histogram, min: u64, max: u64) {
            self.0.set_extremes(h, min, max);
        }
        fn set_gauge_named(&self, n: &str, v: u64) {
            self.0.set_gauge_named(n, v);
        }
    }
    impl crate::host::Clock for Broken {
        fn now(&self) -> Option<SystemTime> {
            self.0.now()
        }
    }
    let host = Rc::new(Broken(InMemoryHost::default()));
    let shared = Shared::configure(Config::from_bytes(BUDGET.as_bytes()).unwrap(), host.clone());
    let mut guard = BudgetGuard::default();
    let facts = RequestFacts::default();
    assert_eq!(
        guard.on_request_headers(&shared, Provider::OpenAi, None, &facts, true),
        None,
        "admitted: a budget it cannot read does not refuse"
    );
    // Nothing else breaks: the exchange still records, without the ledger.
    let mut exchange = ExchangeState::default();
    exchange.begin(&shared, Api::OpenAiChat, &ProviderHeaders::default());
    assert!(exchange.finish(&shared).is_some());
    assert_eq!(host.0.counter(&Counter::PersistentRequests.name()), 0);
}

#[test]
fn the_response_cache_misses_stores_then_answers() {
    let (host, shared) = configure(r#"{"response_cache":{}}"#);
    let scope = Scope::of(
        &shared.config.pipeline.marker_key,
        [Some(b"Bearer sk-a"), None, None],
    );
    let body =
        br#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"2+2?"}]}"#;
    let Lookup::Miss(key) = cache::lookup(&shared, scope, Api::OpenAiChat, body) else {
        panic!("a deterministic request is cacheable and not held yet");
    };
    assert_eq!(
        cache::capture_limit(&shared, Some(200), true, None),
        None,
        "an encoded response is not kept"
    );
    assert!(cache::capture_limit(&shared, Some(200), false, Some(100)).is_some());
    let mut too_large = cache::Capture::new("application/json".to_owned(), 10);
    too_large.push(RESPONSE);
    cache::store(&shared, &key, too_large);
    assert!(matches!(
        cache::lookup(&shared, scope, Api::OpenAiChat, body),
        Lookup::Miss(_)
    ));
    let mut capture = cache::Capture::new("application/json".to_owned(), 1 << 20);
    capture.push(&RESPONSE[..10]);
    capture.push(&RESPONSE[10..]);
    cache::store(&shared, &key, capture);
    host.advance(Duration::from_secs(5));
    let Lookup::Hit(reply) = cache::lookup(&shared, scope, Api::OpenAiChat, body) else {
        panic!("stored, so answered");
    };
    assert_eq!(reply.body, RESPONSE);
    assert!(reply.headers.contains(&("age".to_owned(), "5".to_owned())));
    // Another credential does not see it.
    let theirs = Scope::of(
        &shared.config.pipeline.marker_key,
        [Some(b"Bearer sk-b"), None, None],
    );
    assert!(matches!(
        cache::lookup(&shared, theirs, Api::OpenAiChat, body),
        Lookup::Miss(_)
    ));
    assert_eq!(host.counter(&Counter::ResponseCacheHits.name()), 1);
    assert_eq!(host.counter(&Counter::ResponseCacheMisses.name()), 3);
    let stats: serde_json::Value = serde_json::from_slice(&stats(&shared).body).unwrap();
    assert_eq!(stats["cache"]["entries"], 1, "{}", stats["cache"]);
}

#[test]
fn retrievals_are_scoped_and_counted() {
    let (host, shared) = configure("{}");
    let key = &shared.config.pipeline.marker_key;
    let mine = Scope::of(key, [Some(b"Bearer sk-a"), None, None]);
    let theirs = Scope::of(key, [Some(b"Bearer sk-b"), None, None]);
    let mut stores = shared.stores.clone();
    stores.omitted.scope = mine;
    let hash = crate::pipeline::ContentHash::of(b"the original");
    stores.omitted().put(hash, b"the original");
    let found = retrieval(&shared, mine, Some(hash));
    assert_eq!(found.status, 200);
    let missing = retrieval(&shared, theirs, Some(hash));
    assert_eq!(missing.status, 404);
    // The same answer as a hash never stored.
    let never = crate::pipeline::ContentHash::of(b"never stored");
    let expected = retrieval(&shared, mine, Some(never));
    assert_eq!(
        String::from_utf8(missing.body).unwrap(),
        String::from_utf8(expected.body)
            .unwrap()
            .replace(&never.to_hex(), &hash.to_hex())
    );
    assert_eq!(host.counter(&Counter::Retrievals(true).name()), 1);
    assert_eq!(host.counter(&Counter::Retrievals(false).name()), 2);
    assert_eq!(expected.status, 404);
}

#[test]
fn stats_and_history_read_what_exchanges_wrote() {
    let (host, shared) = configure("{}");
    run_exchange(&host, &shared, &chat_request(120));
    let stats: serde_json::Value = serde_json::from_slice(&stats(&shared).body).unwrap();
    assert_eq!(stats["requests"]["total"], 1, "{stats}");
    assert_eq!(stats["persistent_savings"]["lifetime"]["requests"], 1);
    // A host's own block (our host's `otel`) is served beside the filter's.
    host.set(
        shared_store::HOST_STATS_KEY,
        br#"{"otel":{"enabled":true}}"#,
        None,
    )
    .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&super::stats(&shared).body).unwrap();
    assert_eq!(stats["otel"]["enabled"], true);
    let csv = history(&shared, b"/stats-history?format=csv&series=history");
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/csv"))
    );
    let bad = history(&shared, b"/stats-history?format=xml");
    assert_eq!(bad.status, 400);
}

#[test]
fn operator_endpoints_answer_loopback_and_refuse_others_without_the_token() {
    let (_, shared) = configure(r#"{"admin_token":"s3cret"}"#);
    let request = |source: &'static [u8], authorization: Option<&'static [u8]>| operator::Request {
        source: Some(source),
        destination: Some(b"127.0.0.1:8787"),
        host: Some(b"127.0.0.1:8787"),
        authorization,
    };
    assert_eq!(
        operator_refusal(&shared, &request(b"127.0.0.1:5000", None)),
        None
    );
    let refused = operator_refusal(&shared, &request(b"10.0.0.2:5000", None)).unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(
        operator_refusal(&shared, &request(b"10.0.0.2:5000", Some(b"Bearer s3cret"))),
        None
    );
}
